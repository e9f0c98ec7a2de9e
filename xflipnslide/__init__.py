"""xflipnslide: Flip-n-Slide tiling of satellite scenes for xarray and dask.

Importing the package registers the ``.fns`` accessor on
:class:`xarray.DataArray` and :class:`xarray.Dataset`.
"""

from __future__ import annotations

import logging
from importlib.metadata import PackageNotFoundError, version
from importlib.util import find_spec

from . import accessor as _accessor  # noqa: F401  (registers .fns)
from . import errors as _errors
from .classes import class_weights
from .collection import concat_tiles, footprints, scene_tiles, tile_collection, untile_collection
from .errors import *  # noqa: F403  (the exception and warning classes)
from .export import export_chips, tfrecord_dataset
from .export.zarr import open_tiles, to_zarr
from .io import load_stac, open_image, sample_scene_path, zarr_encoding
from .labels import rasterize
from .loading import load
from .ml import batches, split, tf_dataset, torch_loader
from .plan import EDGES, STRATEGIES, TRANSFORMS, TilePlan, apply_transform, plan_tiles
from .predict import label_map, predict
from .preprocess import mask_clouds, preprocess, read_stats
from .tiling import tile, untile

try:
    __version__ = version("xflipnslide")
except PackageNotFoundError:  # pragma: no cover - running from a source tree
    __version__ = "0+unknown"

logging.getLogger(__name__).addHandler(logging.NullHandler())


def __getattr__(name: str):
    """``TileDataModule`` is imported on first use: it needs lightning (and
    torch), which ``import xflipnslide`` does not import."""
    if name == "TileDataModule":
        from .errors import require

        require("lightning", "lightning", "xflipnslide.TileDataModule")
        from .ml.lightning import TileDataModule

        return TileDataModule
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    *(name for name in _errors.__all__ if name[0].isupper()),  # classes, not helpers
    "tile",
    "untile",
    "load",
    "plan_tiles",
    "apply_transform",
    "TilePlan",
    "STRATEGIES",
    "EDGES",
    "TRANSFORMS",
    "tile_collection",
    "concat_tiles",
    "scene_tiles",
    "untile_collection",
    "footprints",
    "open_image",
    "sample_scene_path",
    "load_stac",
    "rasterize",
    "mask_clouds",
    "preprocess",
    "read_stats",
    "split",
    "class_weights",
    "batches",
    "torch_loader",
    "tf_dataset",
    "predict",
    "label_map",
    "to_zarr",
    "open_tiles",
    "zarr_encoding",
    "export_chips",
    "tfrecord_dataset",
]
if find_spec("lightning") is not None:  # listed where ``import *`` can import it
    __all__.append("TileDataModule")
