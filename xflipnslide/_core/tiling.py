"""Array layer of tiling: ``tile_array`` and ``untile_array`` on numpy or dask.

Each entry point takes numpy or dask and dispatches once. The numpy runner
splits the tiles over threads (the kernels release the GIL). The dask graph
is one layer chunked along ``tile`` only, in chunks of equal tile count, so it
writes straight to Zarr: each task receives, for each strip its tiles read
(:func:`._blocks.strips`), exactly the input chunks that strip overlaps, so
its memory is its output chunk plus those strips, whatever the input's
chunking, and the result does not depend on that chunking.
"""

from __future__ import annotations

import itertools
import math
import os
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from ..errors import InvalidParameterError
from ..plan import TilePlan
from . import graph as _graph
from .blocks import (
    Strip,
    assemble,
    chunk_bounds,
    chunk_span,
    local_slices,
    only,
    strip_source,
    strips,
)
from .kernels import as_bits, gather_tiles, normalize_weights, scatter_tiles

__all__ = [
    "BLENDS",
    "blend_weights",
    "check_dtype",
    "tile_array",
    "tiles_per_chunk",
    "untile_array",
]

#: Weights ``untile`` and ``predict`` blend overlapping tiles with.
BLENDS = ("mean", "hann", "distance", "spline")


def threads() -> int:
    """Threads the numpy runners use: ``XFLIPNSLIDE_THREADS`` if set, else
    the CPU count, at most 8."""
    try:
        return max(1, int(os.environ["XFLIPNSLIDE_THREADS"]))
    except (KeyError, ValueError):
        return min(os.cpu_count() or 1, 8)


def check_dtype(dtype: np.dtype, name: str = "the input") -> None:
    """Raise unless the kernels can move items of ``dtype``."""
    dtype = np.dtype(dtype)
    if dtype.hasobject or dtype.itemsize not in (1, 2, 4, 8):
        raise InvalidParameterError(
            f"{name} has dtype {dtype}, which cannot be tiled: use a numeric or "
            "boolean dtype of 1, 2, 4 or 8 bytes (cast first, e.g. .astype('float32'))"
        )


def check_known_chunks(x, name: str = "the input") -> None:
    """Raise for a dask array whose chunk sizes are unknown (NaN)."""
    chunks = getattr(x, "chunks", None)
    if chunks and any(math.isnan(c) for dim in chunks for c in dim):
        raise InvalidParameterError(
            f"{name} has unknown chunk sizes (NaN), so its windows cannot be planned: call "
            ".compute_chunk_sizes() on the dask array (or persist it) first"
        )


def tiles_per_chunk(tile_chunks: int | str, tile_bytes: int, n_tiles: int) -> int:
    """Tiles per output chunk from ``tile_chunks``.

    ``"auto"`` uses dask's ``array.chunk-size`` setting (128 MiB by default);
    a string such as ``"64MiB"`` is a target size in bytes; an int is a tile
    count.
    """
    import dask
    from dask.utils import parse_bytes

    how = "'auto', a byte size such as '64MiB' or a positive tile count"
    if isinstance(tile_chunks, bool):
        raise InvalidParameterError(f"tile_chunks must be {how}; got {tile_chunks!r}")
    if isinstance(tile_chunks, (int, np.integer)):
        if tile_chunks <= 0:
            raise InvalidParameterError(f"tile_chunks must be {how}; got {tile_chunks}")
        return int(min(tile_chunks, max(n_tiles, 1)))
    if isinstance(tile_chunks, str):
        text = dask.config.get("array.chunk-size") if tile_chunks == "auto" else tile_chunks
        try:
            target = parse_bytes(text)
        except (ValueError, TypeError) as exc:
            raise InvalidParameterError(f"tile_chunks must be {how}; got {tile_chunks!r}") from exc
        return int(min(max(target // max(tile_bytes, 1), 1), max(n_tiles, 1)))
    raise InvalidParameterError(f"tile_chunks must be {how}; got {tile_chunks!r}")


# --- tile -----------------------------------------------------------------


def tile_array(x, plan: TilePlan, *, tile_chunks: int | str = "auto"):
    """Tile ``(*other, H, W)`` into ``(n, *other, T, T)``: numpy in, numpy out
    (threaded); dask in, a lazy dask array out."""
    check_dtype(x.dtype)
    if _graph.is_lazy(x):
        return _tile_dask(x, plan, tile_chunks)
    return _tile_numpy(np.asarray(x), plan)


def _gather_range(x: np.ndarray, plan: TilePlan, out: np.ndarray, start: int, stop: int) -> None:
    """Write tiles ``start:stop`` of ``plan`` from ``x`` into ``out[start:stop]``."""
    if x.flags.c_contiguous and not any(plan.pad[0] + plan.pad[1]):
        base = x.reshape((-1, *x.shape[-2:]))  # a view: windows read in place
        sl = slice(start, stop)
        gather_tiles(as_bits(base), plan.rows[sl], plan.cols[sl], plan.codes[sl], as_bits(out[sl]))
        return
    for s in strips(plan, start, stop):
        src = strip_source(x[..., s.y, s.x], s)
        gather_tiles(as_bits(src), s.rows, s.cols, s.codes, as_bits(out[s.start : s.stop]))


def _tile_numpy(x: np.ndarray, plan: TilePlan) -> np.ndarray:
    n, T, other = len(plan), plan.tile_size, x.shape[:-2]
    out = np.empty((n, math.prod(other), T, T), dtype=x.dtype)
    workers = threads()
    parts = max(1, min(n, workers * 4))
    bounds = np.linspace(0, n, parts + 1).astype(int)
    if workers == 1 or parts == 1:
        for a, b in itertools.pairwise(bounds):
            _gather_range(x, plan, out, a, b)
    else:
        with ThreadPoolExecutor(workers) as pool:
            list(pool.map(lambda ab: _gather_range(x, plan, out, *ab), itertools.pairwise(bounds)))
    return out.reshape((n, *other, T, T))


class _StripTask:
    """How a task builds one strip from the input chunks it overlaps:
    ``ys[i]``/``xs[j]`` slice the strip's part out of the ``i``-th row and
    ``j``-th column of those chunks; ``offset`` is the first chunk's origin."""

    __slots__ = ("depth", "offset", "strip", "xs", "ys")

    def __init__(self, strip: Strip, ys, xs, offset, depth) -> None:
        self.strip, self.ys, self.xs, self.offset, self.depth = strip, ys, xs, offset, depth

    def source(self, nested: list) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The kernel's source for the strip, and the window origins in it."""
        s = self.strip
        block = only(nested)
        if block is not None and block.flags.c_contiguous and not s.padded:
            # The whole strip lies in one chunk: read the windows in place.
            dy, dx = s.y.start - self.offset[0], s.x.start - self.offset[1]
            return block.reshape((-1, *block.shape[-2:])), s.rows + dy, s.cols + dx
        src = strip_source(assemble(nested, self.ys, self.xs, self.depth), s)
        return src, s.rows, s.cols


def _tile_chunk(blocks: list, tasks: list, n: int, other: tuple, size: int, dtype) -> np.ndarray:
    """Task body: gather the tiles of each strip into one output chunk."""
    out = np.empty((n, math.prod(other), size, size), dtype=dtype)
    for nested, task in zip(blocks, tasks, strict=True):
        src, rows, cols = task.source(nested)
        s = task.strip
        gather_tiles(as_bits(src), rows, cols, s.codes, as_bits(out[s.start : s.stop]))
    return out.reshape((n, *other, size, size))


def _tile_dask(x, plan: TilePlan, tile_chunks):
    from dask.base import tokenize

    check_known_chunks(x)
    n, T, other = len(plan), plan.tile_size, tuple(x.shape[:-2])
    per = tiles_per_chunk(tile_chunks, T * T * math.prod(other) * x.dtype.itemsize, n)
    starts = list(range(0, n, per))
    sizes = tuple(min(per, n - a) for a in starts)
    # a token of all the values depend on: the input, every window and code (the
    # plan's own token), the tiles per chunk and the dtype
    name = "fns-tile-" + tokenize(x, plan, per, x.dtype)
    ybounds, xbounds = (chunk_bounds(c) for c in x.chunks[-2:])
    other_idx = [range(len(c)) for c in x.chunks[:-2]]
    zeros = (0,) * (len(other) + 2)
    dsk = {}
    for i, a in enumerate(starts):
        blocks, tasks = [], []
        for s in strips(plan, a, a + sizes[i], bounds=(ybounds, xbounds)):
            iy, ix = chunk_span(ybounds, s.y), chunk_span(xbounds, s.x)
            blocks.append(_graph.nest_keys((x.name,), [*other_idx, iy, ix]))
            tasks.append(
                _StripTask(
                    s.shifted(a),
                    local_slices(ybounds, iy, s.y),
                    local_slices(xbounds, ix, s.x),
                    (ybounds[iy[0]], xbounds[ix[0]]),
                    len(other),
                )
            )
        dsk[(name, i, *zeros)] = (_tile_chunk, blocks, tasks, sizes[i], other, T, x.dtype)
    chunks = (sizes, *((d,) for d in other), (T,), (T,))
    return _graph.array(name, dsk, chunks, x.dtype, [x])


# --- untile ---------------------------------------------------------------


def blend_weights(tile_size: int, blend: str, floor: float = 1e-3) -> np.ndarray:
    """Per-pixel weights of a ``(T, T)`` tile for overlap-adding, float64.

    With ``u = (i + 0.5) / T`` the pixel centre in ``(0, 1)`` and ``w`` applied
    on each axis (the 2-D weight is ``w(u_y) * w(u_x)``):

    * ``"mean"``: ``w = 1``.
    * ``"hann"``: ``w = sin(pi u)^2``.
    * ``"distance"``: ``w = 1 - |2u - 1|``, falling linearly from the centre
      to the tile edge (seamless_seg's trust weights).
    * ``"spline"``: the second-order spline window of Smoothly-Blend-Image-
      Patches: ``w = 1 - 2 (1 - d)^2`` for ``d = 1 - |2u - 1| >= 1/2`` (the
      middle half) and ``w = 2 d^2`` outside it, then divided by its mean.

    ``untile`` floors every 2-D weight at ``floor`` (1e-3) of its maximum, so
    a pixel that only one tile covers near its edge still comes back;
    ``predict``, whose windows cover every pixel away from their edges, uses
    the weights as they are (``floor=0``; all are positive). Every weight is
    symmetric under D4, so a transformed tile needs no transformed weights.
    """
    u = (np.arange(tile_size) + 0.5) / tile_size
    if blend == "mean":
        w = np.ones(tile_size)
    elif blend == "hann":
        w = np.sin(np.pi * u) ** 2
    elif blend == "distance":
        w = 1 - np.abs(2 * u - 1)
    elif blend == "spline":
        d = 1 - np.abs(2 * u - 1)
        w = np.where(d >= 0.5, 1 - 2 * (1 - d) ** 2, 2 * d**2)
        w = w / w.mean()
    else:
        raise InvalidParameterError(
            f"blend must be one of {', '.join(map(repr, BLENDS))}; got {blend!r}"
        )
    out = np.outer(w, w)
    return np.maximum(out, floor * out.max())


def untile_array(
    tiles,
    rows: np.ndarray,
    cols: np.ndarray,
    codes: np.ndarray,
    shape: tuple[int, int],
    weight: np.ndarray,
    *,
    chunks=None,
    acc_dtype=None,
):
    """Undo each tile's transform and overlap-add ``(n, *other, T, T)`` into
    ``(*other, H, W)`` (float, float32 for float32 or small integer tiles);
    NaN where no tile. Dask in, dask out: ``chunks`` is the output chunking
    along y and x (a pair of chunk tuples, a side or ``None`` for a default
    bounding each task's memory). ``acc_dtype`` (float64) sums many
    overlapping views to within one rounding of the result."""
    dtype = np.result_type(tiles.dtype, np.float32)
    if _graph.is_lazy(tiles):
        check_known_chunks(tiles, "the tiles")
        return _untile_dask(tiles, rows, cols, codes, shape, weight, dtype, chunks, acc_dtype)
    return _untile_numpy(np.asarray(tiles), rows, cols, codes, shape, weight, dtype, acc_dtype)


def _untile_numpy(tiles, rows, cols, codes, shape, weight, dtype, acc_dtype=None) -> np.ndarray:
    """Overlap-add into ``dtype``; ``acc_dtype`` (float64) sums many views
    to within one rounding of ``dtype``. Threaded by horizontal bands of the
    output: each thread adds the tiles overlapping its band into its own rows
    (the kernel clips windows to the band), so no two threads write a pixel."""
    other = tiles.shape[1:-2]
    flat = np.ascontiguousarray(tiles.reshape((tiles.shape[0], -1, *tiles.shape[-2:])))
    flat = flat.astype(acc_dtype or dtype, copy=False)
    acc = np.zeros((flat.shape[1], *shape), dtype=flat.dtype)
    wsum = np.zeros(shape)
    T = flat.shape[-1]
    workers = threads() if len(rows) > 64 and shape[0] >= 4 * T else 1
    edges = np.linspace(0, shape[0], workers + 1).astype(int)

    def band(y0: int, y1: int) -> None:
        near = np.flatnonzero((rows < y1) & (rows + T > y0))
        # contiguous runs of tiles (plan order keeps window rows together): views, no copies
        cuts = np.flatnonzero(np.diff(near) != 1) + 1
        for run in np.split(near, cuts):
            if not len(run):
                continue
            sl = slice(int(run[0]), int(run[-1]) + 1)
            scatter_tiles(
                flat[sl], rows[sl] - y0, cols[sl], codes[sl], weight, acc[:, y0:y1], wsum[y0:y1]
            )
        normalize_weights(acc[:, y0:y1], wsum[y0:y1])

    if workers == 1:
        band(0, shape[0])
    else:
        with ThreadPoolExecutor(workers) as pool:
            list(pool.map(lambda ab: band(*ab), itertools.pairwise(edges.tolist())))
    return acc.reshape((*other, *shape)).astype(dtype, copy=False)


def load_array(x):
    """``x`` as numpy; several dask arrays in one pass (shared inputs read
    once), each stored straight into a preallocated array (no second copy)."""
    return load_arrays([x])[0]


def load_arrays(arrays: list) -> list:
    """:func:`load_array` of several arrays in one computation.

    On the threaded or synchronous scheduler the chunks are stored straight
    into preallocated arrays; on any other (a ``dask.distributed`` cluster,
    processes) the tasks run in other processes, which cannot write into
    this process's memory, so the arrays are computed and gathered instead.
    """
    lazy = [i for i, a in enumerate(arrays) if _graph.is_lazy(a)]
    if not lazy:
        return [np.asarray(a) for a in arrays]
    import dask
    import dask.array as da
    import dask.local
    import dask.threaded
    from dask.base import get_scheduler

    sources = [arrays[i] for i in lazy]
    out = list(arrays)
    if get_scheduler(collections=sources) in (dask.threaded.get, dask.local.get_sync):
        targets = [np.empty(a.shape, a.dtype) for a in sources]
        da.store(sources, targets, lock=False)
    else:
        targets = dask.compute(*sources)
    for i, t in zip(lazy, targets):
        out[i] = t
    return [np.asarray(a) for a in out]


def _untile_block(
    parts: list, picks: list, rows, cols, codes, block_shape, weight, dtype, other, acc_dtype
):
    """Task body: scatter the tiles overlapping one output block into it."""
    if not parts:
        return np.full((*other, *block_shape), np.nan, dtype=dtype)
    tiles = np.concatenate([p[idx] for p, idx in zip(parts, picks)])
    return _untile_numpy(tiles, rows, cols, codes, block_shape, weight, dtype, acc_dtype)


def output_chunks(chunks, shape: tuple[int, int], tile_size: int, other_items: int, dtype):
    """Output chunks along (y, x) for ``untile``/``predict`` on dask.

    ``None``: square blocks, a multiple of the tile size, of about a quarter
    of dask's ``array.chunk-size`` (all other dims included), so a task holds
    its block, its weights and the tiles overlapping it in bounded memory.
    """
    import dask
    from dask.array.core import normalize_chunks
    from dask.utils import parse_bytes

    if chunks is None:
        target = parse_bytes(dask.config.get("array.chunk-size")) / 4
        side = math.sqrt(target / max(other_items * np.dtype(dtype).itemsize, 1))
        side = max(tile_size, int(side // tile_size) * tile_size)
        chunks = (side, side)
    elif not isinstance(chunks, tuple) or len(chunks) != 2:
        chunks = (chunks, chunks)
    return normalize_chunks(chunks, shape=shape, dtype=dtype)


def _untile_dask(tiles, rows, cols, codes, shape, weight, dtype, chunks, acc_dtype=None):
    from dask.base import tokenize

    if any(len(c) > 1 for c in tiles.chunks[1:]):
        tiles = tiles.rechunk({i: -1 for i in range(1, tiles.ndim)})
    T, other = tiles.shape[-1], tuple(tiles.shape[1:-2])
    chunks = output_chunks(chunks, shape, T, math.prod(other), dtype)
    name = "fns-untile-" + tokenize(
        tiles, rows, cols, codes, shape, weight, dtype, chunks, np.dtype(acc_dtype or dtype)
    )
    tbounds = chunk_bounds(tiles.chunks[0])
    owner = np.searchsorted(tbounds, np.arange(len(rows)), side="right") - 1
    ybounds, xbounds = (chunk_bounds(c) for c in chunks)
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
                acc_dtype,
            )
    out_chunks = (*((d,) for d in other), *chunks)
    return _graph.array(name, dsk, out_chunks, dtype, [tiles])
