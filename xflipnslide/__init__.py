"""xflipnslide: Flip-n-Slide tiling of satellite scenes for xarray and dask.

Importing the package registers the ``.fns`` accessor on
:class:`xarray.DataArray` and :class:`xarray.Dataset`.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.util
import logging
import sys
import types
from importlib.metadata import PackageNotFoundError, version
from typing import TYPE_CHECKING

from . import errors as _errors
from ._gdal import limit_gdal_cache as _limit_gdal_cache
from .errors import *  # noqa: F403  (the exception and warning classes)

if TYPE_CHECKING:  # for type checkers and editors; at run time, see __getattr__
    from .classes import class_weights
    from .collection import (
        concat_tiles,
        footprints,
        scene_tiles,
        tile_collection,
        untile_collection,
    )
    from .export import export_chips, tfrecord_dataset
    from .export.cog import to_cog
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
_limit_gdal_cache()  # before GDAL starts, here or in workers started from here

#: The module of each public name: imported at its first use, so that
#: ``import xflipnslide`` loads neither xarray nor dask and the command line
#: parses its arguments before anything heavy is imported.
_HOME = {
    "tile": "tiling",
    "untile": "tiling",
    "load": "loading",
    "plan_tiles": "plan",
    "apply_transform": "plan",
    "TilePlan": "plan",
    "STRATEGIES": "plan",
    "EDGES": "plan",
    "TRANSFORMS": "plan",
    "tile_collection": "collection",
    "concat_tiles": "collection",
    "scene_tiles": "collection",
    "untile_collection": "collection",
    "footprints": "collection",
    "open_image": "io",
    "sample_scene_path": "io",
    "load_stac": "io",
    "zarr_encoding": "io",
    "rasterize": "labels",
    "mask_clouds": "preprocess",
    "preprocess": "preprocess",
    "read_stats": "preprocess",
    "split": "ml",
    "batches": "ml",
    "torch_loader": "ml",
    "tf_dataset": "ml",
    "class_weights": "classes",
    "predict": "predict",
    "label_map": "predict",
    "to_zarr": "export.zarr",
    "open_tiles": "export.zarr",
    "export_chips": "export",
    "tfrecord_dataset": "export",
    "to_cog": "export.cog",
}


def __getattr__(name: str):
    """Public names and submodules are imported on first use.
    ``TileDataModule`` needs lightning (and torch)."""
    if name in _HOME:
        value = getattr(importlib.import_module(f".{_HOME[name]}", __name__), name)
        globals()[name] = value
        return value
    if name == "TileDataModule":
        from .errors import require

        require("lightning", "lightning", "xflipnslide.TileDataModule")
        from .ml.lightning import TileDataModule

        return TileDataModule
    if not name.startswith("__") and importlib.util.find_spec(f"{__name__}.{name}") is not None:
        return importlib.import_module(f".{name}", __name__)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})


class _AfterImport(importlib.abc.MetaPathFinder):
    """Imports ``then`` as soon as the module ``name`` has been imported
    (removes itself at once): the ``.fns`` accessor is registered when
    xarray is, whichever is imported first.

    If importing ``then`` fails, ``import xarray`` still succeeds (a user of
    xarray alone is never broken by this package) and an
    :class:`~xflipnslide.XFlipNSlideWarning` names the error; ``.fns`` is
    then missing until ``then`` imports."""

    def __init__(self, name: str, then: str) -> None:
        self.name, self.then = name, then

    def find_spec(self, fullname, path=None, target=None):
        if fullname != self.name:
            return None
        try:
            sys.meta_path.remove(self)
        except ValueError:  # another thread got here first
            return None
        spec = importlib.util.find_spec(fullname)
        loader = getattr(spec, "loader", None)
        if loader is None or not hasattr(loader, "exec_module"):  # pragma: no cover
            return spec
        run, then = loader.exec_module, self.then

        def exec_module(module):
            run(module)
            try:
                importlib.import_module(then)
            except Exception as error:  # never make ``import xarray`` fail for it
                _errors.warn(
                    f"xflipnslide could not register the .fns accessor ({type(error).__name__}: "
                    f"{error}); xarray works without it: run `import {then}` to see the error"
                )

        loader.exec_module = exec_module
        return spec


class _Package(types.ModuleType):
    """The package module: importing a submodule that shares its name with a
    public function (``preprocess``, ``predict``) binds that function, not
    the submodule, as ``import``'s own binding of submodules would."""

    def __setattr__(self, name: str, value) -> None:
        if (
            name in _HOME
            and isinstance(value, types.ModuleType)
            and value.__name__ == f"{__name__}.{name}"
        ):
            value = getattr(value, name)
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package

if "xarray" in sys.modules:
    from . import accessor as _accessor  # noqa: F401  (registers .fns)
elif not any(type(f).__name__ == "_AfterImport" for f in sys.meta_path):  # reload: one hook
    sys.meta_path.insert(0, _AfterImport("xarray", f"{__name__}.accessor"))

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
    "to_cog",
]
if importlib.util.find_spec("lightning") is not None:  # listed where ``import *`` can import it
    __all__.append("TileDataModule")
