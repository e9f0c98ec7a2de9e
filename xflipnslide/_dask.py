"""Dask graph building for tiling; computes nothing.

The output is chunked along ``tile`` only, in chunks of equal tile count (the
last may be smaller), so it writes straight to Zarr. Each output chunk is one
task in a single graph layer. The task receives, for each strip its tiles
read (:func:`._array.strips`), exactly the input chunks that strip overlaps,
so a task's memory is its output chunk plus the strips it reads, whatever the
input's chunking, and the result does not depend on that chunking.
"""

from __future__ import annotations

import math
from bisect import bisect_left, bisect_right
from dataclasses import dataclass
from itertools import accumulate

import dask.array as da
import numpy as np
from dask.array.core import concatenate3
from dask.base import tokenize
from dask.highlevelgraph import HighLevelGraph
from dask.utils import parse_bytes

from ._array import Strip, check_dtype, strip_source, strips, untile_numpy
from .errors import InvalidParameterError
from .kernels import as_bits, gather_tiles
from .plan import TilePlan

__all__ = ["tile_dask", "tiles_per_chunk"]


def tiles_per_chunk(tile_chunks: int | str, tile_bytes: int, n_tiles: int) -> int:
    """Tiles per output chunk from ``tile_chunks``.

    ``"auto"`` uses dask's ``array.chunk-size`` setting (128 MiB by default);
    a string such as ``"64MiB"`` is a target size in bytes; an int is a tile
    count.
    """
    import dask

    if isinstance(tile_chunks, bool):
        raise InvalidParameterError(
            f"tile_chunks must be 'auto', a size or a count; got {tile_chunks!r}"
        )
    if isinstance(tile_chunks, (int, np.integer)):
        if tile_chunks <= 0:
            raise InvalidParameterError(
                f"tile_chunks must be a positive tile count; got {tile_chunks}"
            )
        return int(min(tile_chunks, max(n_tiles, 1)))
    if isinstance(tile_chunks, str):
        text = dask.config.get("array.chunk-size") if tile_chunks == "auto" else tile_chunks
        try:
            target = parse_bytes(text)
        except (ValueError, TypeError) as exc:
            raise InvalidParameterError(
                f"tile_chunks must be 'auto', a byte size such as '64MiB' or a tile "
                f"count; got {tile_chunks!r}"
            ) from exc
        return int(min(max(target // max(tile_bytes, 1), 1), max(n_tiles, 1)))
    raise InvalidParameterError(
        f"tile_chunks must be 'auto', a byte size such as '64MiB' or a tile count; got {tile_chunks!r}"
    )


def _chunk_span(bounds: list[int], sl: slice) -> range:
    """Indices of the chunks (with cumulative ``bounds``) that ``sl`` overlaps."""
    return range(bisect_right(bounds, sl.start) - 1, bisect_left(bounds, sl.stop))


@dataclass(eq=False)
class _StripTask:
    """How a task builds one strip from the input chunks it overlaps.

    ``ys[i]``/``xs[j]`` slice the strip's part out of the ``i``-th row and
    ``j``-th column of those chunks; ``offset`` is the first chunk's origin.
    """

    strip: Strip
    ys: list[slice]
    xs: list[slice]
    offset: tuple[int, int]
    depth: int  # nesting levels above (y, x): the other dims


def assemble(nested: list, ys: list[slice], xs: list[slice], depth: int) -> np.ndarray:
    """Cut ``ys[i]``/``xs[j]`` out of each chunk of a nested list (``depth``
    levels of other dims above y and x) and join them into one array."""

    def cut(level: list, d: int) -> list:
        if d:
            return [cut(n, d - 1) for n in level]
        return [[b[..., y, x] for b, x in zip(row, xs)] for row, y in zip(level, ys)]

    return concatenate3(cut(nested, depth))


def _single(nested: list) -> np.ndarray | None:
    """The one array of a nested list of one element, else ``None``."""
    while isinstance(nested, list):
        if len(nested) != 1:
            return None
        nested = nested[0]
    return nested


def _source(nested: list, task: _StripTask) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The kernel's source for one strip, and the window origins in it."""
    s = task.strip
    block = _single(nested)
    if block is not None and block.flags.c_contiguous and not any(s.pad[0] + s.pad[1]):
        # The whole strip lies in one chunk: read the windows in place.
        dy, dx = s.y.start - task.offset[0], s.x.start - task.offset[1]
        return block.reshape((-1, *block.shape[-2:])), s.rows + dy, s.cols + dx
    # Copy only the strip's part of each chunk, then assemble and pad it.
    src = strip_source(assemble(nested, task.ys, task.xs, task.depth), s)
    return src, s.rows, s.cols


def _tile_chunk(
    blocks: list, tasks: list, n: int, other: tuple, tile_size: int, dtype
) -> np.ndarray:
    """Task body: gather the tiles of each strip into one output chunk."""
    out = np.empty((n, math.prod(other), tile_size, tile_size), dtype=dtype)
    for nested, task in zip(blocks, tasks, strict=False):
        src, rows, cols = _source(nested, task)
        s = task.strip
        gather_tiles(as_bits(src), rows, cols, s.codes, as_bits(out[s.start : s.stop]))
    return out.reshape((n, *other, tile_size, tile_size))


def _local_slices(bounds: list[int], span: range, sl: slice) -> list[slice]:
    """Per chunk of ``span``, the part of ``sl`` in that chunk's own indices."""
    return [
        slice(max(sl.start, bounds[i]) - bounds[i], min(sl.stop, bounds[i + 1]) - bounds[i])
        for i in span
    ]


def tile_dask(x: da.Array, plan: TilePlan, *, tile_chunks: int | str = "auto") -> da.Array:
    """Lazily tile a dask array ``(*other, H, W)`` into ``(n, *other, T, T)``."""
    check_dtype(x.dtype)
    n, T, other = len(plan), plan.tile_size, tuple(x.shape[:-2])
    tile_bytes = T * T * math.prod(other) * x.dtype.itemsize
    per = tiles_per_chunk(tile_chunks, tile_bytes, n)
    starts = list(range(0, n, per))
    sizes = tuple(min(per, n - a) for a in starts)
    name = "fns-tile-" + tokenize(x, plan.shape, T, plan.strategy, plan.edge, per)

    ybounds, xbounds = (list(accumulate(c, initial=0)) for c in x.chunks[-2:])
    other_idx = [range(len(c)) for c in x.chunks[:-2]]
    zeros = (0,) * (len(other) + 2)
    dsk = {}
    for i, a in enumerate(starts):
        blocks, tasks = [], []
        for s in strips(plan, a, a + sizes[i], chunk_bounds=(ybounds, xbounds)):
            iy, ix = _chunk_span(ybounds, s.y), _chunk_span(xbounds, s.x)
            blocks.append(_nest((x.name,), [*other_idx, iy, ix]))
            local = Strip(s.start - a, s.stop - a, s.y, s.x, s.pad, s.rows, s.cols, s.codes)
            tasks.append(
                _StripTask(
                    strip=local,
                    ys=_local_slices(ybounds, iy, s.y),
                    xs=_local_slices(xbounds, ix, s.x),
                    offset=(ybounds[iy[0]], xbounds[ix[0]]),
                    depth=len(other),
                )
            )
        dsk[(name, i, *zeros)] = (_tile_chunk, blocks, tasks, sizes[i], other, T, x.dtype)
    graph = HighLevelGraph.from_collections(name, dsk, dependencies=[x])
    chunks = (sizes, *((d,) for d in other), (T,), (T,))
    meta = np.empty((0,) * (x.ndim + 1), dtype=x.dtype)
    return da.Array(graph, name, chunks, meta=meta)


def _nest(prefix: tuple, ranges: list[range]) -> list:
    """Nested list of the keys ``(*prefix, i, j, ...)`` over ``ranges``, the
    shape :func:`dask.array.core.concatenate3` assembles."""
    if len(ranges) == 1:
        return [(*prefix, i) for i in ranges[0]]
    return [_nest((*prefix, i), ranges[1:]) for i in ranges[0]]


def independent_copy(x: da.Array, salt: str = "fns-pass") -> da.Array:
    """The same array from an independent copy of its whole graph.

    Every key is renamed, so computing both ``x`` and the copy runs every
    task twice (reading the input twice) instead of sharing results. A
    global statistic taken from the copy therefore does not force dask to
    hold all of ``x``'s chunks in memory until the statistic is known: this
    is how a scene larger than memory gets a second pass with flat memory.

    :func:`dask.graph_manipulation.clone` does this in principle but leaves
    the dependencies inside task-spec nodes unrenamed in current dask
    (dask/dask#12455), which breaks graph optimisation; this renames them
    too.
    """
    from dask._task_spec import convert_legacy_graph

    graph = convert_legacy_graph(dict(x.__dask_graph__()))

    def rename(key):
        if isinstance(key, tuple):
            return (f"{key[0]}-{salt}", *key[1:])
        return f"{key}-{salt}"

    subs = {key: rename(key) for key in graph}
    renamed = {subs[key]: node.substitute(subs, key=subs[key]) for key, node in graph.items()}
    name = rename((x.name,))[0]
    hlg = HighLevelGraph.from_collections(name, renamed, dependencies=[])
    return da.Array(hlg, name, x.chunks, meta=x._meta)


def _untile_block(parts: list, picks: list, rows, cols, codes, block_shape, weight, dtype, other):
    """Task body: scatter the tiles overlapping one output block into it."""
    if not parts:
        return np.full((*other, *block_shape), np.nan, dtype=dtype)
    tiles = np.concatenate([p[idx] for p, idx in zip(parts, picks)])
    return untile_numpy(tiles, rows, cols, codes, block_shape, weight, dtype)


def untile_dask(
    tiles: da.Array,
    rows: np.ndarray,
    cols: np.ndarray,
    codes: np.ndarray,
    shape: tuple[int, int],
    weight: np.ndarray,
    dtype: np.dtype,
    chunks: tuple[tuple[int, ...], tuple[int, ...]],
) -> da.Array:
    """Lazily overlap-add ``(n, *other, T, T)`` tiles into ``(*other, H, W)``.

    One task per output block (``chunks`` along y and x; other dims whole),
    depending only on the tile chunks holding tiles that overlap the block.
    """
    if any(len(c) > 1 for c in tiles.chunks[1:]):
        tiles = tiles.rechunk({i: -1 for i in range(1, tiles.ndim)})
    T, other = tiles.shape[-1], tuple(tiles.shape[1:-2])
    name = "fns-untile-" + tokenize(tiles, rows, cols, codes, shape, weight, dtype, chunks)
    tbounds = list(accumulate(tiles.chunks[0], initial=0))
    owner = np.searchsorted(tbounds, np.arange(len(rows)), side="right") - 1
    ybounds, xbounds = (list(accumulate(c, initial=0)) for c in chunks)
    zeros = (0,) * len(other)
    inner = (0,) * (tiles.ndim - 1)
    dsk = {}
    for iy in range(len(chunks[0])):
        y0, y1 = ybounds[iy], ybounds[iy + 1]
        near_y = (rows < y1) & (rows + T > y0)
        for ix in range(len(chunks[1])):
            x0, x1 = xbounds[ix], xbounds[ix + 1]
            ks = np.flatnonzero(near_y & (cols < x1) & (cols + T > x0))
            parts, picks = [], []
            for chunk in np.unique(owner[ks]).tolist():
                mine = ks[owner[ks] == chunk]
                parts.append((tiles.name, chunk, *inner))
                picks.append(mine - tbounds[chunk])
            dsk[(name, *zeros, iy, ix)] = (
                _untile_block,
                parts,
                picks,
                rows[ks] - y0,
                cols[ks] - x0,
                codes[ks],
                (y1 - y0, x1 - x0),
                weight,
                dtype,
                other,
            )
    graph = HighLevelGraph.from_collections(name, dsk, dependencies=[tiles])
    out_chunks = (*((d,) for d in other), *chunks)
    return da.Array(graph, name, out_chunks, meta=np.empty((0,) * (len(other) + 2), dtype=dtype))
