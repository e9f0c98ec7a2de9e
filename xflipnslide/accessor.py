"""The ``.fns`` accessor on DataArray and Dataset: one-line forwards.

Each method calls the public function of the same name with the object as
first argument and shares its docstring. No logic lives here.
"""

from __future__ import annotations

import functools
import importlib
import types

import xarray as xr

__all__ = ["FnsDataArrayAccessor", "FnsDatasetAccessor"]


class _Forward:
    """A method that calls ``module.name(self._obj, ...)``, with that
    function's docs; the module is imported at the first use, so registering
    the accessor imports nothing but xarray."""

    def __init__(self, module: str, name: str) -> None:
        self.module, self.name, self.method = module, name, None

    def __get__(self, obj, owner=None):
        if self.method is None:
            func = getattr(importlib.import_module(self.module, __package__), self.name)

            @functools.wraps(func)
            def method(self, *args, **kwargs):
                return func(self._obj, *args, **kwargs)

            self.method = method
        return self.method if obj is None else types.MethodType(self.method, obj)


class _FnsAccessor:
    def __init__(self, obj: xr.DataArray | xr.Dataset) -> None:
        self._obj = obj

    preprocess = _Forward(".preprocess", "preprocess")
    tile = _Forward(".tiling", "tile")
    untile = _Forward(".tiling", "untile")
    load = _Forward(".loading", "load")
    split = _Forward(".ml", "split")
    batches = _Forward(".ml", "batches")
    torch_loader = _Forward(".ml", "torch_loader")
    tf_dataset = _Forward(".ml", "tf_dataset")
    export_chips = _Forward(".export", "export_chips")
    to_zarr = _Forward(".export.zarr", "to_zarr")
    class_counts = _Forward(".classes", "class_counts")
    tile_labels = _Forward(".classes", "tile_labels")
    footprints = _Forward(".collection", "footprints")
    plot_rgb = _Forward(".plot", "plot_rgb")
    plot_tiles = _Forward(".plot", "plot_tiles")
    plot_samples = _Forward(".plot", "plot_samples")
    plot_footprints = _Forward(".plot", "plot_footprints")


@xr.register_dataarray_accessor("fns")
class FnsDataArrayAccessor(_FnsAccessor):
    """Flip-n-Slide methods on a DataArray: ``da.fns.tile(...)`` and friends."""

    predict = _Forward(".predict", "predict")


@xr.register_dataset_accessor("fns")
class FnsDatasetAccessor(_FnsAccessor):
    """Flip-n-Slide methods on a Dataset: ``ds.fns.tile(...)`` and friends.

    The figures (``plot_*``) draw the variable ``"image"``, or the one
    named by ``variable=``.
    """
