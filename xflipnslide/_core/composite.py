"""Array layer of the time composite: reduce the last axis, on numpy or as a dask graph.

Every pixel of a ``(..., T)`` float array is reduced over its ``T``
observations, skipping NaN: the median, the mean, or the first valid one in
a given order (the observation nearest a reference date). A pixel with no
valid observation stays NaN. On dask the time axis is first brought into one
chunk, and each chunk is reduced in its own task (one graph layer, named by
a token of the input and the options); nothing is computed while the graph
is built.
"""

from __future__ import annotations

import logging
from collections.abc import Hashable

import numpy as np

from . import graph as _graph

__all__ = ["composite_array"]

log = logging.getLogger(__name__)

_HOW = ("median", "mean", "nearest")


def _nan_skipping(func, a: np.ndarray) -> np.ndarray:
    """``func`` (a NaN-skipping reduction) over the last axis, leaving
    all-NaN pixels NaN without numpy's "All-NaN slice" warning (warning
    filters are not thread-safe, so the all-NaN pixels are set aside)."""
    empty = np.isnan(a).all(axis=-1)
    if empty.any():
        a = np.where(empty[..., None], 0, a)
    out = func(a, axis=-1)
    out[empty] = np.nan
    return out


def _first_valid(a: np.ndarray, order: np.ndarray) -> np.ndarray:
    """Along the last axis (in ``order``), the first non-NaN value (NaN if none)."""
    a = np.take(a, order, axis=-1)
    first = (~np.isnan(a)).argmax(axis=-1)[..., None]
    return np.take_along_axis(a, first, axis=-1)[..., 0]


def _composite_block(block: np.ndarray, how: str, order) -> np.ndarray:
    if how == "nearest":
        return _first_valid(block, order)
    return _nan_skipping(np.nanmedian if how == "median" else np.nanmean, block)


def composite_array(x, how: str, *, order=None, label: Hashable = "time"):
    """``x`` reduced over its last axis: ``how`` is ``"median"`` or
    ``"mean"`` (NaN skipped), or ``"nearest"``: the first valid value in
    ``order`` (indices of the last axis, nearest first). Keeps the dtype;
    dask in, dask out (the last axis rechunked to one chunk first, logged
    with ``label``, the axis' name)."""
    if how not in _HOW:
        raise ValueError(f"how must be one of {_HOW}; got {how!r}")
    if how == "nearest":
        order = np.asarray(order, np.int64)
    if _graph.is_lazy(x):
        import dask.array as da
        from dask.base import tokenize

        if len(x.chunks[-1]) > 1:
            log.info("preprocess: rechunking %r to one chunk for the %s composite", label, how)
            x = x.rechunk({x.ndim - 1: -1})
        return da.map_blocks(
            _composite_block,
            x,
            how,
            order,
            dtype=x.dtype,
            drop_axis=x.ndim - 1,
            meta=np.empty((0,) * (x.ndim - 1), x.dtype),
            name="fns-composite-" + tokenize(x.name, x.chunks, how, order),
        )
    return _composite_block(np.asarray(x), how, order)
