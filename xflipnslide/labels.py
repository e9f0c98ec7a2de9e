"""Labels from vector data: polygons burned onto a scene's grid."""

from __future__ import annotations

import os
from collections.abc import Hashable, Sequence
from typing import Any

import numpy as np
import xarray as xr

from ._core.rasterize import rasterize_array
from .dims import find_spatial_dims, spatial_data
from .errors import InvalidParameterError, XFlipNSlideWarning, require, warn
from .georef import portable_grid_mapping, scene_transform
from .schema import LABEL

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
        The scene (or anything on its grid): an xarray DataArray or Dataset
        with a CRS and regular 1-D spatial coordinates (evenly spaced: an
        irregular grid is an :class:`~xflipnslide.errors.IrregularGridError`;
        regrid or reproject it first).
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
        Of the result; a value that does not fit it (out of range, or not a
        whole number for an integer dtype) is an error naming a dtype that
        fits, never a cast.
    dims
        ``(row_dim, column_dim)`` of ``like``, found by name by default.

    Returns
    -------
    DataArray
        ``(y, x)`` with ``like``'s spatial coordinates and CRS (the
        ``spatial_ref`` coordinate, named in the ``grid_mapping`` attr, so a
        store it is written to reopens with its CRS), named ``"label"``;
        lazy, chunked like ``like``, when ``like`` is dask-backed.

    Examples
    --------
    Two fields on the built-in sample (560 x 600 pixels): class 1 on the
    left half, class 2 on the bottom-right quarter.

    >>> import geopandas, numpy as np, shapely, xarray as xr, xflipnslide
    >>> scene = xflipnslide.open_image(xflipnslide.sample_scene_path())
    >>> x0, y0, x1, y1 = scene.rio.bounds()
    >>> xm, ym = (x0 + x1) / 2, (y0 + y1) / 2
    >>> fields = geopandas.GeoDataFrame(
    ...     {"class": [1, 2]},
    ...     geometry=[shapely.box(x0, y0, xm, y1), shapely.box(xm, y0, x1, ym)],
    ...     crs=scene.rio.crs,
    ... )
    >>> labels = xflipnslide.rasterize(fields, like=scene, column="class")
    >>> labels.dims, labels.dtype.name, labels.name
    (('y', 'x'), 'uint8', 'label')
    >>> np.bincount(labels.values.ravel()).tolist()  # 300 x 280, 300 x 560, 300 x 280
    [84000, 168000, 84000]
    >>> tiles = xr.Dataset({"image": scene, "label": labels}).fns.tile(40)
    >>> tiles.label.dims
    ('tile', 'y', 'x')
    """
    if not isinstance(like, (xr.DataArray, xr.Dataset)):
        raise InvalidParameterError(
            f"rasterize needs like= the scene as an xarray DataArray or Dataset with y/x "
            f"coordinates and a CRS; got {type(like).__name__}. Open it with "
            "xflipnslide.open_image(path) or rioxarray.open_rasterio(path), or wrap an array: "
            "xr.DataArray(a, dims=('y', 'x'), coords={'y': ..., 'x': ...}).rio.write_crs(...)"
        )
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
    values = _values(vector, column, burn)
    _check_fits(values, fill, dtype)
    geoms = vector.geometry.values
    keep = ~(vector.geometry.is_empty | vector.geometry.isna()).to_numpy()
    shapes = [(g, v) for g, v, k in zip(geoms, values.tolist(), keep) if k]
    transform = scene_transform(like, (ydim, xdim), what="rasterize(like=)")
    shape = (like.sizes[ydim], like.sizes[xdim])
    grid = spatial_data(like, (ydim, xdim))
    data = rasterize_array(
        shapes, transform, shape, fill=fill, all_touched=all_touched, dtype=dtype, like=grid
    )
    coords = {d: like[d].variable for d in (ydim, xdim) if d in like.coords}
    out = xr.DataArray(data, dims=(ydim, xdim), coords=coords, name=LABEL)
    if crs is None:
        return out
    return portable_grid_mapping(out.rio.write_crs(crs), (ydim, xdim))


def _values(vector, column, burn) -> np.ndarray:
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
    return values


#: Integer dtypes, smallest first, that rasterize suggests for values that do not fit.
_INTEGERS = ("uint8", "int8", "uint16", "int16", "uint32", "int32", "uint64", "int64")


def _check_fits(values: np.ndarray, fill: float, dtype: np.dtype) -> None:
    """Raise unless every value and the fill are finite and ``dtype`` holds
    them (integers: exactly; floats: in range); the message names a dtype
    that holds them all."""
    if not (np.issubdtype(dtype, np.integer) or np.issubdtype(dtype, np.floating)):
        raise InvalidParameterError(
            f"rasterize: dtype must be an integer or float dtype; got {dtype}. Pass e.g. "
            "dtype='uint8' for class ids or dtype='float32' for continuous values"
        )
    parts = {"values": np.asarray(values, dtype=float), "fill": np.asarray([fill], dtype=float)}
    for what, v in parts.items():
        if not np.isfinite(v).all():
            raise InvalidParameterError(
                f"rasterize: the {what} include NaN or infinity; drop or fill them first"
            )
    everything = np.concatenate(list(parts.values()))
    for what, v in parts.items():
        bad = _misfits(v, dtype)
        if bad.any():
            why = (
                "are not whole numbers"
                if np.issubdtype(dtype, np.integer) and (v[bad] != np.round(v[bad])).any()
                else "are out of its range"
            )
            raise InvalidParameterError(
                f"rasterize: {what} {v[bad][:3].tolist()} do not fit dtype {dtype} (they {why}); "
                f"pass dtype={_fitting_dtype(everything)!r}"
            )


def _misfits(v: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """Where ``dtype`` does not hold the finite ``v`` (integers: exactly)."""
    if np.issubdtype(dtype, np.integer):
        info = np.iinfo(dtype)
        return (v < info.min) | (v > info.max) | (v != np.round(v))
    return np.abs(v) > np.finfo(dtype).max


def _fitting_dtype(values: np.ndarray) -> str:
    """The smallest dtype holding every value: an integer dtype for whole
    numbers, else a float one."""
    if (values == np.round(values)).all():
        lo, hi = float(values.min()), float(values.max())
        for name in _INTEGERS:
            info = np.iinfo(name)
            if info.min <= lo and hi <= info.max:
                return name
    if (np.abs(values) <= np.finfo(np.float32).max).all():
        return "float32"
    return "float64"
