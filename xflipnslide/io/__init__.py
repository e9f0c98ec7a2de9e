"""Reading scenes: rasters through rioxarray and the built-in sample scene
(:mod:`.raster`), STAC searches loaded through odc-stac (:mod:`.stac`).

Importing this package (``import xflipnslide`` does) bounds GDAL's block
cache once, before anything reads or any worker starts:
:func:`.raster.limit_gdal_cache`.
"""

from __future__ import annotations

from ..export.zarr import zarr_encoding
from .raster import GDAL_CACHEMAX_MB, limit_gdal_cache, open_image, sample_scene_path
from .stac import PLANETARY_COMPUTER, CatalogError, band_scaling, load_stac

__all__ = [
    "GDAL_CACHEMAX_MB",
    "PLANETARY_COMPUTER",
    "CatalogError",
    "band_scaling",
    "load_stac",
    "open_image",
    "sample_scene_path",
    "zarr_encoding",
]

limit_gdal_cache()
