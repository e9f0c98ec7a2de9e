"""The ``.fns`` accessor on DataArray and Dataset: one-line forwards.

Each method calls the public function of the same name with the object as
first argument and shares its docstring. No logic lives here.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import xarray as xr

from . import classes, collection, export, loading, ml, tiling
from . import plot as _plot
from . import predict as _predict
from . import preprocess as _preprocess
from .export import zarr as _store

__all__ = ["FnsDataArrayAccessor", "FnsDatasetAccessor"]


def _forward(func: Callable) -> Callable:
    """A method that calls ``func(self._obj, ...)``, with ``func``'s docs."""

    @functools.wraps(func)
    def method(self, *args, **kwargs):
        return func(self._obj, *args, **kwargs)

    return method


class _FnsAccessor:
    def __init__(self, obj: xr.DataArray | xr.Dataset) -> None:
        self._obj = obj

    preprocess = _forward(_preprocess.preprocess)
    tile = _forward(tiling.tile)
    untile = _forward(tiling.untile)
    load = _forward(loading.load)
    split = _forward(ml.split)
    batches = _forward(ml.batches)
    torch_loader = _forward(ml.torch_loader)
    tf_dataset = _forward(ml.tf_dataset)
    export_chips = _forward(export.export_chips)
    to_zarr = _forward(_store.to_zarr)
    class_counts = _forward(classes.class_counts)
    tile_labels = _forward(classes.tile_labels)
    footprints = _forward(collection.footprints)
    plot_rgb = _forward(_plot.plot_rgb)
    plot_tiles = _forward(_plot.plot_tiles)
    plot_samples = _forward(_plot.plot_samples)
    plot_footprints = _forward(_plot.plot_footprints)


@xr.register_dataarray_accessor("fns")
class FnsDataArrayAccessor(_FnsAccessor):
    """Flip-n-Slide methods on a DataArray: ``da.fns.tile(...)`` and friends."""

    predict = _forward(_predict.predict)


@xr.register_dataset_accessor("fns")
class FnsDatasetAccessor(_FnsAccessor):
    """Flip-n-Slide methods on a Dataset: ``ds.fns.tile(...)`` and friends.

    The figures (``plot_*``) draw the variable ``"image"``, or the one
    named by ``variable=``.
    """
