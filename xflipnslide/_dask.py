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
from itertools import accumulate

import dask.array as da
import numpy as np
from dask.array.core import concatenate3
from dask.base import tokenize
from dask.highlevelgraph import HighLevelGraph
from dask.utils import parse_bytes

from ._array import Strip, check_dtype, strip_source, strips
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
        raise InvalidParameterError(f"tile_chunks must be 'auto', a size or a count; got {tile_chunks!r}")
    if isinstance(tile_chunks, (int, np.integer)):
        if tile_chunks <= 0:
            raise InvalidParameterError(f"tile_chunks must be a positive tile count; got {tile_chunks}")
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


def _tile_chunk(blocks: list, specs: list, n: int, other: tuple, tile_size: int, dtype) -> np.ndarray:
    """Task body: assemble each strip from its input chunks and gather its tiles."""
    out = np.empty((n, math.prod(other), tile_size, tile_size), dtype=dtype)
    for nested, (strip, ysl, xsl) in zip(blocks, specs):
        block = concatenate3(nested)[..., ysl, xsl]
        src = strip_source(block, strip)
        gather_tiles(as_bits(src), strip.rows, strip.cols, strip.codes, as_bits(out[strip.start : strip.stop]))
    return out.reshape((n, *other, tile_size, tile_size))


def tile_dask(x: da.Array, plan: TilePlan, *, tile_chunks: int | str = "auto") -> da.Array:
    """Lazily tile a dask array ``(*other, H, W)`` into ``(n, *other, T, T)``."""
    check_dtype(x.dtype)
    n, T, other = len(plan), plan.tile_size, tuple(x.shape[:-2])
    tile_bytes = T * T * math.prod(other) * x.dtype.itemsize
    per = tiles_per_chunk(tile_chunks, tile_bytes, n)
    starts = list(range(0, n, per))
    sizes = tuple(min(per, n - a) for a in starts)
    name = "fns-tile-" + tokenize(x, plan.shape, T, plan.strategy, plan.edge, per)

    bounds = [list(accumulate(c, initial=0)) for c in x.chunks]
    other_idx = [range(len(c)) for c in x.chunks[:-2]]
    nd = x.ndim
    zeros = (0,) * (nd - 2 + 2)
    dsk = {}
    for i, a in enumerate(starts):
        blocks, specs = [], []
        for s in strips(plan, a, a + sizes[i]):
            iy, ix = _chunk_span(bounds[-2], s.y), _chunk_span(bounds[-1], s.x)
            nested = _nest((x.name,), [*other_idx, iy, ix])
            y_off, x_off = bounds[-2][iy[0]], bounds[-1][ix[0]]
            local = Strip(s.start - a, s.stop - a, s.y, s.x, s.pad, s.rows, s.cols, s.codes)
            specs.append(
                (local, slice(s.y.start - y_off, s.y.stop - y_off), slice(s.x.start - x_off, s.x.stop - x_off))
            )
            blocks.append(nested)
        dsk[(name, i, *zeros)] = (_tile_chunk, blocks, specs, sizes[i], other, T, x.dtype)
    graph = HighLevelGraph.from_collections(name, dsk, dependencies=[x])
    chunks = (sizes, *((d,) for d in other), (T,), (T,))
    meta = np.empty((0,) * (nd + 1), dtype=x.dtype)
    return da.Array(graph, name, chunks, meta=meta)


def _nest(prefix: tuple, ranges: list[range]) -> list:
    """Nested list of the keys ``(*prefix, i, j, ...)`` over ``ranges``, the
    shape :func:`dask.array.core.concatenate3` assembles."""
    if len(ranges) == 1:
        return [(*prefix, i) for i in ranges[0]]
    return [_nest((*prefix, i), ranges[1:]) for i in ranges[0]]
