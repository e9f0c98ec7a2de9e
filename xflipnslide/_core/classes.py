"""Array layer of class statistics: pixel counts per tile and class, class
totals, and the class of each tile, on numpy or dask.

Every operation reads the labels through one block function,
:func:`_tile_counts` (exact int64 counts of each class in each tile of a
block, after checking that every labelled value is a class id). numpy runs
it once on the whole array; dask runs it once per chunk:

* :func:`class_counts_array` maps it over the label chunks and sums the
  partial counts of the chunks of one tile chunk (one task per label chunk,
  a tree sum per tile chunk: the graph is linear in the chunks);
* :func:`class_totals_array` (the eager one: it returns numpy) computes one
  histogram per chunk, each as long as its own largest class id, and adds
  them up, so the number of classes is found in the same single pass;
* :func:`tile_labels_array` maps the majority or presence rule over the
  counts, tile chunk by tile chunk.

Labels are integer, boolean or integral float arrays with the tile axis
first. A labelled value (any value but ``ignore_index``) that is NaN, not an
integer, negative or not below ``classes`` raises :class:`InvalidLabelsError`
when the block is read: nothing is dropped without a word.
"""

from __future__ import annotations

import numpy as np

from ..errors import InvalidLabelsError, InvalidParameterError
from . import graph as _graph

__all__ = [
    "check_label_dtype",
    "class_counts_array",
    "class_totals_array",
    "counts_if_free",
    "majority_dtype",
    "tile_labels_array",
]

#: The rules :func:`tile_labels_array` knows.
RULES = ("majority", "presence")


def check_label_dtype(dtype) -> np.dtype:
    """``dtype`` if labels of it can hold class ids, else an error."""
    dtype = np.dtype(dtype)
    if dtype.kind not in "biuf":
        raise InvalidLabelsError(
            f"labels must be integer class ids; got dtype {dtype}: map class names to "
            "numbers first (e.g. with rasterize(column=...))"
        )
    return dtype


def _holds(dtype: np.dtype, value: int) -> bool:
    """Whether some element of ``dtype`` can equal the integer ``value``."""
    if dtype.kind == "b":
        return value in (0, 1)
    if dtype.kind in "iu":
        info = np.iinfo(dtype)
        return info.min <= value <= info.max
    return True


def _examples(values: np.ndarray) -> list:
    """A few distinct values, as plain Python numbers, for a message."""
    return np.unique(values)[:5].tolist()


def _class_ids(values: np.ndarray, classes: int | None) -> np.ndarray:
    """The labelled ``values`` of one tile as ``intp`` class ids, or an
    :class:`InvalidLabelsError` naming the values that are not class ids."""
    if not values.size:
        return np.empty(0, np.intp)
    lo, hi = values.min(), values.max()
    if values.dtype.kind == "f":
        if np.isnan(lo) or np.isnan(hi):
            raise InvalidLabelsError(
                "the labels hold NaN, which is no class: fill those pixels with a value that "
                "is no class and pass it as ignore_index (e.g. label.fillna(255) with "
                "ignore_index=255)"
            )
        fractional = values != np.floor(values)
        if fractional.any():
            raise InvalidLabelsError(
                f"the labels hold values that are not integers ({_examples(values[fractional])}):"
                " labels must be class ids 0, 1, ..., K-1"
            )
    if lo < 0 or (classes is not None and hi >= classes):
        bad = values[(values < 0) | (values >= (classes if classes is not None else np.inf))]
        if classes is None:
            raise InvalidLabelsError(
                f"label values {_examples(bad)} are negative, but class ids run from 0: pass "
                "ignore_index= the value of unlabelled pixels (e.g. ignore_index=-1)"
            )
        raise InvalidLabelsError(
            f"label values {_examples(bad)} are outside the classes 0..{classes - 1} "
            f"(classes={classes}): pass classes= more than the largest class id, or "
            "ignore_index= the value of unlabelled pixels"
        )
    return values.astype(np.intp, copy=False)


def _tile_counts(block: np.ndarray, classes: int | None, ignore_index: int | None) -> np.ndarray:
    """``(tiles, K)`` int64 pixel counts of each class in each tile of a
    block (tile axis first), ``ignore_index`` pixels left out. ``K`` is
    ``classes``, or one more than the largest class id found."""
    block = np.asarray(block)
    t = block.shape[0]
    flat = block.reshape(t, -1)
    if flat.dtype.kind == "b":
        flat = flat.view(np.uint8)
    skip = ignore_index is not None and _holds(flat.dtype, ignore_index)
    rows = []
    for i in range(t):
        values = flat[i][flat[i] != ignore_index] if skip else flat[i]
        rows.append(np.bincount(_class_ids(values, classes), minlength=classes or 0))
    k = classes if classes is not None else max((r.size for r in rows), default=0)
    out = np.zeros((t, k), np.int64)
    for i, r in enumerate(rows):
        out[i, : r.size] = r
    return out


def _block_counts(block: np.ndarray, classes: int, ignore_index: int | None) -> np.ndarray:
    """:func:`_tile_counts` of a dask block, shaped ``(tiles, 1, ..., 1, K)``
    so the partial counts of one tile chunk line up for the sum."""
    counts = _tile_counts(block, classes, ignore_index)
    return counts.reshape((block.shape[0], *(1,) * (block.ndim - 1), classes))


def class_counts_array(x, classes: int | None = None, ignore_index: int | None = None):
    """``(tile, K)`` int64 pixel counts of each class in each tile.

    Parameters
    ----------
    x
        Labels, tile axis first (numpy or dask).
    classes
        ``K``; on numpy ``None`` takes one more than the largest class id.
        Needed on dask, where the result's shape must be known before
        anything is read.
    ignore_index
        The value of unlabelled pixels, counted in no class.

    Returns
    -------
    numpy or dask array
        Chunked like ``x`` along ``tile`` and in one chunk along ``class``.
    """
    check_label_dtype(x.dtype)
    if _graph.is_lazy(x):
        if classes is None:
            raise InvalidParameterError(
                "on dask-backed labels the number of classes must be given, so the counts stay "
                "lazy: pass classes=K (e.g. classes=int(tiles['label'].max()) + 1, one pass "
                "over the labels, or class_weights(...), which finds K as it counts)"
            )
        import dask.array as da

        nd = x.ndim
        parts = da.map_blocks(
            _block_counts,
            x,
            classes,
            ignore_index,
            dtype=np.int64,
            chunks=(x.chunks[0], *((1,) * len(c) for c in x.chunks[1:]), (classes,)),
            new_axis=nd,
            meta=np.empty((0,) * (nd + 1), np.int64),
        )
        return parts.sum(axis=tuple(range(1, nd)), dtype=np.int64) if nd > 1 else parts
    return _tile_counts(np.asarray(x), classes, ignore_index)


def counts_if_free(x, classes: int | None = None, ignore_index: int | None = None):
    """:func:`class_counts_array` of in-memory labels, ``None`` for lazy ones:
    for checks nobody asked for, done only where they compute nothing."""
    if _graph.is_lazy(x):
        return None
    return class_counts_array(x, classes, ignore_index)


def _block_totals(block: np.ndarray, classes: int | None, ignore_index: int | None) -> np.ndarray:
    """Pixel count of each class over one block (as long as its largest
    class id when ``classes`` is None)."""
    return _tile_counts(block, classes, ignore_index).sum(0)


def class_totals_array(
    x, classes: int | None = None, ignore_index: int | None = None
) -> np.ndarray:
    """``(K,)`` int64 pixel count of each class over all of ``x``, as numpy.

    Computes dask input in one pass over its chunks (one histogram per
    chunk, added up here); with ``classes=None`` the number of classes is
    one more than the largest class id found in that same pass.
    """
    check_label_dtype(x.dtype)
    if _graph.is_lazy(x):
        import dask

        blocks = x.to_delayed().ravel().tolist()
        part = dask.delayed(_block_totals, pure=True)
        parts = dask.compute(*[part(b, classes, ignore_index) for b in blocks])
    else:
        parts = [_block_totals(np.asarray(x), classes, ignore_index)]
    k = classes if classes is not None else max((p.size for p in parts), default=0)
    total = np.zeros(k, np.int64)
    for p in parts:
        total[: p.size] += p
    return total


def majority_dtype(dtype, fill: int, filled: bool = True) -> np.dtype:
    """The dtype of majority labels: the labels' own when it holds ``fill``
    or no tile can be ``filled``, else the smallest integer dtype holding
    both (bool labels: as uint8; float labels: int64)."""
    dtype = np.dtype(dtype)
    if dtype.kind == "b":
        dtype = np.dtype(np.uint8)
    if dtype.kind == "f":
        return np.dtype(np.int64)
    if not filled or _holds(dtype, fill):
        return dtype
    wider = np.promote_types(dtype, np.min_scalar_type(fill))
    return wider if wider.kind in "iu" else np.dtype(np.int64)


def _majority(counts: np.ndarray, fill: int, min_fraction: float | None, dtype) -> np.ndarray:
    """The class with the most pixels of each tile (the smallest such id on a
    tie); ``fill`` where a tile has no labelled pixel, or where the winner's
    share of the labelled pixels is under ``min_fraction``."""
    total = counts.sum(1)
    if not counts.shape[1]:
        return np.full(counts.shape[0], fill, dtype)
    best = counts.argmax(1)  # the first maximum: the smallest class id
    ok = total > 0
    if min_fraction is not None:
        ok &= counts[np.arange(counts.shape[0]), best] >= min_fraction * total
    return np.where(ok, best, fill).astype(dtype)


def _presence(counts: np.ndarray, min_fraction: float | None) -> np.ndarray:
    """Multi-hot ``(tile, K)`` bool: class share of the tile's labelled
    pixels at least ``min_fraction`` (any pixel when None)."""
    if min_fraction is None:
        return counts > 0
    total = counts.sum(1, keepdims=True)
    return (counts > 0) & (counts >= min_fraction * total)


def tile_labels_array(
    x,
    rule: str,
    classes: int | None = None,
    ignore_index: int | None = None,
    min_fraction: float | None = None,
    fill: int = -1,
):
    """One class per tile (``rule="majority"``: ``(tile,)``, dtype
    :func:`majority_dtype`) or the classes present in it
    (``"presence"``: ``(tile, K)`` bool), from :func:`class_counts_array`;
    lazy for dask input."""
    if rule not in RULES:
        raise InvalidParameterError(f"rule must be one of {RULES}; got {rule!r}")
    counts = class_counts_array(x, classes, ignore_index)
    k = counts.shape[1]
    if rule == "majority" and 0 <= fill < k and fill != ignore_index:
        raise InvalidParameterError(
            f"fill={fill} is a class id (the classes run 0..{k - 1}), so an unlabelled tile "
            "could not be told from a tile of that class: use a negative fill or ignore_index"
        )
    lazy = _graph.is_lazy(counts)
    if rule == "majority":
        # a tile gets ``fill`` only where pixels can be ignored or a share is asked for
        skip = ignore_index is not None and _holds(np.dtype(x.dtype), ignore_index)
        dtype = majority_dtype(x.dtype, fill, skip or min_fraction is not None)
        if lazy:
            import dask.array as da

            return da.map_blocks(
                _majority,
                counts,
                fill,
                min_fraction,
                dtype,
                dtype=dtype,
                drop_axis=1,
                meta=np.empty((0,), dtype),
            )
        return _majority(counts, fill, min_fraction, dtype)
    if lazy:
        return counts.map_blocks(_presence, min_fraction, dtype=bool, meta=np.empty((0, 0), bool))
    return _presence(counts, min_fraction)
