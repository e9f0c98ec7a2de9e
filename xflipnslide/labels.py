"""Labels from vector data: polygons burned onto a scene's grid."""

from __future__ import annotations

import os
from collections.abc import Hashable, Sequence
from typing import Any

import numpy as np
import xarray as xr

from ._labels import rasterize_array
from .dims import find_spatial_dims
from .errors import InvalidParameterError, XFlipNSlideWarning, require, warn
from .georef import scene_transform

__all__ = ["rasterize"]


def rasterize(
    vector: Any,
    like: xr.DataArray | xr.Dataset,
    *,
    column: Hashable | None = None,
    burn: float = 1,
    fill: float = 0,
    all_touched: bool = False,
    dtype: str | np.dtype = "uint8",
    dims: Sequence[Hashable] | None = None,
) -> xr.DataArray:
    """Burn vector labels onto a scene's grid: a ``(y, x)`` label raster.

    The geometries are reprojected to ``like``'s CRS and burned with
    :func:`rasterio.features.rasterize` on ``like``'s transform (the scan
    conversion is rasterio's, GDAL's); later geometries overwrite earlier
    ones where they overlap.

    Parameters
    ----------
    vector
        A :class:`geopandas.GeoDataFrame`, or a path any
        :func:`geopandas.read_file` reads (GeoPackage, Shapefile, GeoJSON...).
    like
        The scene (or anything on its grid, with a CRS and regular 1-D
        spatial coordinates).
    column
        The column holding each geometry's value (a number: map class names
        to numbers first, e.g. ``gdf.assign(cls=gdf.name.map({...}))``);
        by default every geometry burns ``burn``.
    burn, fill
        The value of geometries without ``column``, and of pixels no
        geometry covers.
    all_touched
        Burn every pixel a geometry touches, not only those whose centre it
        covers.
    dtype
        Of the result; a value that does not fit it is an error, not cast.
    dims
        ``(row_dim, column_dim)`` of ``like``, found by name by default.

    Returns
    -------
    DataArray
        ``(y, x)`` with ``like``'s spatial coordinates and CRS, named
        ``"label"``; lazy, chunked like ``like``, when ``like`` is dask-backed.

    Examples
    --------
    >>> labels = xflipnslide.rasterize("fields.gpkg", like=scene, column="class")  # doctest: +SKIP
    >>> tiles = xr.Dataset({"image": scene, "label": labels}).fns.tile(256)  # doctest: +SKIP
    """
    gpd = require("geopandas", "vector", "rasterize")
    if isinstance(vector, (str, os.PathLike)):
        vector = gpd.read_file(vector)
    if not isinstance(vector, gpd.GeoDataFrame):
        raise InvalidParameterError(
            f"rasterize takes a GeoDataFrame or a path geopandas reads; got {type(vector).__name__}"
        )
    ydim, xdim = find_spatial_dims(like, dims)
    import rioxarray  # noqa: F401  (registers .rio)

    crs = like.rio.crs
    if vector.crs is not None and crs is not None:
        vector = vector.to_crs(crs)
    elif vector.crs is None and crs is not None:
        warn(
            "rasterize: the vector data declare no CRS; taking them to be in the scene's "
            f"({crs.to_string()}). Set it with gdf.set_crs(...) if not",
            XFlipNSlideWarning,
        )
    dtype = np.dtype(dtype)
    values = _values(vector, column, burn, dtype)
    _check_fits(np.asarray([fill]), dtype, "fill")
    geoms = vector.geometry.values
    keep = ~(vector.geometry.is_empty | vector.geometry.isna()).to_numpy()
    shapes = [(g, v) for g, v, k in zip(geoms, values.tolist(), keep) if k]
    transform = scene_transform(like, (ydim, xdim))
    shape = (like.sizes[ydim], like.sizes[xdim])
    chunks = None
    sizes = like.chunksizes if like.chunks else {}
    if ydim in sizes and xdim in sizes:
        chunks = (tuple(sizes[ydim]), tuple(sizes[xdim]))
    data = rasterize_array(
        shapes, transform, shape, fill=fill, all_touched=all_touched, dtype=dtype, chunks=chunks
    )
    coords = {d: like[d].variable for d in (ydim, xdim) if d in like.coords}
    out = xr.DataArray(data, dims=(ydim, xdim), coords=coords, name="label")
    return out.rio.write_crs(crs) if crs is not None else out


def _values(vector, column, burn, dtype: np.dtype) -> np.ndarray:
    if column is None:
        values = np.full(len(vector), burn)
    else:
        if column not in vector.columns:
            raise InvalidParameterError(
                f"column={column!r} is not in the vector data; it has {list(vector.columns)}"
            )
        values = vector[column].to_numpy()
        if not np.issubdtype(values.dtype, np.number) or np.issubdtype(values.dtype, np.bool_):
            raise InvalidParameterError(
                f"column {column!r} holds {values.dtype} values; labels must be numbers: map "
                f"them first, e.g. gdf.assign(cls=gdf[{column!r}].map({{'water': 1, ...}}))"
            )
    _check_fits(values, dtype, "values")
    return values


def _check_fits(values: np.ndarray, dtype: np.dtype, what: str) -> None:
    values = np.asarray(values, dtype=float)
    if np.isnan(values).any():
        raise InvalidParameterError(f"rasterize: the {what} include NaN; drop or fill them first")
    if np.issubdtype(dtype, np.integer):
        info = np.iinfo(dtype)
        bad = (values < info.min) | (values > info.max) | (values != np.round(values))
        if bad.any():
            raise InvalidParameterError(
                f"rasterize: {what} {values[bad][:3].tolist()} do not fit dtype {dtype}; "
                "pass a wider dtype (e.g. dtype='int32')"
            )
