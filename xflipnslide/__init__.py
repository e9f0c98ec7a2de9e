"""xflipnslide: Flip-n-Slide tiling of satellite scenes for xarray and dask.

Importing the package registers the ``.fns`` accessor on
:class:`xarray.DataArray` and :class:`xarray.Dataset`.
"""

from __future__ import annotations

import logging
from importlib.metadata import PackageNotFoundError, version

from . import accessor as _accessor  # noqa: F401  (registers .fns)
from .classes import class_weights
from .collection import concat_tiles, footprints, scene_tiles, tile_collection, untile_collection
from .errors import (
    AllMissingError,
    DataDroppedWarning,
    DataFilledWarning,
    EmptySubsetError,
    FillReachError,
    FillReachWarning,
    IncompleteStoreError,
    InvalidLabelsError,
    InvalidParameterError,
    InvalidTilesError,
    IrregularGridError,
    MissingClassWarning,
    MissingDependencyError,
    NonFiniteWarning,
    SceneTooSmallError,
    SpatialDimsError,
    XFlipNSlideError,
    XFlipNSlideWarning,
)
from .export import export_chips, tfrecord_dataset
from .export.zarr import open_tiles, to_zarr
from .io import load_stac, open_image, sample_scene_path, zarr_encoding
from .labels import rasterize
from .ml import batches, split, tf_dataset, torch_loader
from .plan import EDGES, STRATEGIES, TRANSFORMS, TilePlan, apply_transform, plan_tiles
from .predict import predict
from .preprocess import mask_clouds, preprocess, read_stats
from .tiling import load, tile, untile

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
    "EDGES",
    "STRATEGIES",
    "TRANSFORMS",
    "AllMissingError",
    "DataDroppedWarning",
    "DataFilledWarning",
    "EmptySubsetError",
    "FillReachError",
    "FillReachWarning",
    "IncompleteStoreError",
    "InvalidLabelsError",
    "InvalidParameterError",
    "InvalidTilesError",
    "IrregularGridError",
    "MissingClassWarning",
    "MissingDependencyError",
    "NonFiniteWarning",
    "SceneTooSmallError",
    "SpatialDimsError",
    "TileDataModule",
    "TilePlan",
    "XFlipNSlideError",
    "XFlipNSlideWarning",
    "apply_transform",
    "batches",
    "class_weights",
    "concat_tiles",
    "export_chips",
    "footprints",
    "load",
    "load_stac",
    "mask_clouds",
    "open_image",
    "open_tiles",
    "plan_tiles",
    "predict",
    "preprocess",
    "rasterize",
    "read_stats",
    "sample_scene_path",
    "scene_tiles",
    "split",
    "tf_dataset",
    "tfrecord_dataset",
    "tile",
    "tile_collection",
    "to_zarr",
    "torch_loader",
    "untile",
    "untile_collection",
    "zarr_encoding",
]
