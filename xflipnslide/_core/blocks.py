"""Chunk geometry: which input pixels a group of windows reads, which chunks
hold them, and assembling a region from chunks. Pure numpy, no dask.

Tiling works run by run: a *run* is a set of tiles side by side on one
window row of one grid (:meth:`TilePlan.runs`), so the input it needs is one
strip ``T`` rows high and as wide as the run. A :class:`Strip` says which
input pixels that is, how much reflect padding it needs at the scene's edges
and where each window starts inside it.
"""

from __future__ import annotations

import itertools
from bisect import bisect_left, bisect_right
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ..plan import TilePlan, read_range

__all__ = [
    "Strip",
    "assemble",
    "chunk_bounds",
    "chunk_span",
    "local_slices",
    "strip_source",
    "strips",
]


@dataclass(frozen=True, eq=False)
class Strip:
    """The input strip one run of tiles reads.

    ``y``/``x`` are the clipped input slices; ``pad`` the reflect padding
    ``((top, bottom), (left, right))`` that completes it; ``rows``/``cols``
    the window origins relative to the padded strip; ``start``/``stop`` the
    tiles (in plan order) it fills.
    """

    start: int
    stop: int
    y: slice
    x: slice
    pad: tuple[tuple[int, int], tuple[int, int]]
    rows: np.ndarray
    cols: np.ndarray
    codes: np.ndarray


def chunk_bounds(chunks: Sequence[int]) -> list[int]:
    """Cumulative edges ``[0, c0, c0 + c1, ...]`` of chunk sizes along one axis."""
    return list(itertools.accumulate(chunks, initial=0))


def chunk_span(bounds: list[int], sl: slice) -> range:
    """Indices of the chunks (with cumulative ``bounds``) that ``sl`` overlaps."""
    return range(bisect_right(bounds, sl.start) - 1, bisect_left(bounds, sl.stop))


def local_slices(bounds: list[int], span: range, sl: slice) -> list[slice]:
    """Per chunk of ``span``, the part of ``sl`` in that chunk's own indices."""
    return [
        slice(max(sl.start, bounds[i]) - bounds[i], min(sl.stop, bounds[i + 1]) - bounds[i])
        for i in span
    ]


def strips(
    plan: TilePlan,
    start: int = 0,
    stop: int | None = None,
    *,
    bounds: tuple[list[int], list[int]] | None = None,
) -> list[Strip]:
    """The strips of tiles ``start:stop`` of ``plan``, one per run.

    With ``bounds`` (the cumulative chunk edges along y and x of a chunked
    input), runs are further split so that windows lying wholly in one chunk
    share a strip with neighbours in the same chunk only: such a strip can
    be read in place from that chunk, without copying.
    """
    T, (h, w) = plan.tile_size, plan.shape
    out = []
    for a, b in _split_runs(plan, plan.runs(start, stop), bounds):
        rows, cols = plan.rows[a:b], plan.cols[a:b]
        y0, y1 = int(rows.min()), int(rows.max()) + T
        x0, x1 = int(cols.min()), int(cols.max()) + T
        cy0, cy1 = read_range(y0, y1, h)
        cx0, cx1 = read_range(x0, x1, w)
        pad = ((max(cy0 - y0, 0), max(y1 - cy1, 0)), (max(cx0 - x0, 0), max(x1 - cx1, 0)))
        out.append(
            Strip(
                start=a,
                stop=b,
                y=slice(cy0, cy1),
                x=slice(cx0, cx1),
                pad=pad,
                rows=rows - (cy0 - pad[0][0]),
                cols=cols - (cx0 - pad[1][0]),
                codes=plan.codes[a:b],
            )
        )
    return out


def _containing_chunk(bounds: list[int], origins: np.ndarray, size: int) -> np.ndarray:
    """Index of the chunk holding each window ``[o, o + size)`` whole, else -1."""
    edges = np.asarray(bounds)
    first = np.searchsorted(edges, origins, side="right") - 1
    last = np.searchsorted(edges, origins + size, side="left") - 1
    return np.where((first == last) & (origins >= 0), first, -1)


def _split_runs(plan: TilePlan, runs: list[tuple[int, int]], bounds) -> list[tuple[int, int]]:
    if bounds is None:
        return runs
    T = plan.tile_size
    ky = _containing_chunk(bounds[0], plan.rows, T)
    kx = _containing_chunk(bounds[1], plan.cols, T)
    key = np.where((ky < 0) | (kx < 0), -1, ky * len(bounds[1]) + kx)
    out = []
    for a, b in runs:
        cuts = np.flatnonzero(key[a + 1 : b] != key[a : b - 1]) + a + 1
        out.extend(itertools.pairwise([a, *cuts.tolist(), b]))
    return out


def strip_source(block: np.ndarray, pad) -> np.ndarray:
    """``block`` (a strip's clipped input, ``(*other, h, w)``) as the kernel's
    C-contiguous ``(C, h', w')`` source, reflect-padded by ``pad``
    (``((top, bottom), (left, right))``, a :class:`Strip`'s) where the strip
    leaves the scene."""
    if any(pad[0]) or any(pad[1]):
        block = np.pad(block, ((0, 0),) * (block.ndim - 2) + tuple(pad), mode="reflect")
    flat = block.reshape((-1, *block.shape[-2:]))
    return np.ascontiguousarray(flat)


def assemble(nested: list, ys: list[slice], xs: list[slice], depth: int) -> np.ndarray:
    """Cut ``ys[i]``/``xs[j]`` out of each chunk of a nested list (``depth``
    levels of other dims above y and x) and join them into one array."""

    def cut(level: list, d: int) -> list:
        if d:
            return [cut(n, d - 1) for n in level]
        return [[b[..., y, x] for b, x in zip(row, xs)] for row, y in zip(level, ys)]

    parts = cut(nested, depth)
    single = only(parts)
    return single if single is not None else np.block(parts)


def only(nested: list):
    """The one array of a nested list of one element, else ``None``."""
    while isinstance(nested, list):
        if len(nested) != 1:
            return None
        nested = nested[0]
    return nested
