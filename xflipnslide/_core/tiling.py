"""Array layer of tiling: ``tile_array`` and ``valid_fractions`` on numpy or
dask (``untile_array`` is in :mod:`.blend`, ``load_arrays`` in :mod:`.load`).

Each entry point takes numpy or dask and dispatches once. The numpy runners
split the work over threads (the kernels release the GIL). A dask graph of
tiles (or of their valid fractions) is one layer chunked along ``tile``
only, in chunks of equal tile count, so it writes straight to Zarr: each
task receives, for each strip its tiles read (:func:`.blocks.strips`),
exactly the input chunks that strip overlaps, so its memory is its output
chunk plus those strips, whatever the input's chunking, and the result does
not depend on that chunking.
"""

from __future__ import annotations

import itertools
import math

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
from .graph import check_known_chunks, map_threads, threads
from .kernels import as_bits, gather_tiles
from .schedule import write_in_groups

__all__ = [
    "check_tileable",
    "regular_tile_chunks",
    "tile_array",
    "tiles_per_chunk",
    "valid_fractions",
    "write_by_rows",
]


def check_tileable(x, name: str = "the input") -> None:
    """Raise unless the kernels can tile ``x``: a dtype they move (numeric
    or boolean, 1, 2, 4 or 8 bytes) and, on dask, known chunk sizes."""
    dtype = np.dtype(x.dtype)
    if dtype.hasobject or dtype.itemsize not in (1, 2, 4, 8):
        raise InvalidParameterError(
            f"{name} has dtype {dtype}, which cannot be tiled: use a numeric or "
            "boolean dtype of 1, 2, 4 or 8 bytes (cast first, e.g. .astype('float32'))"
        )
    check_known_chunks(x, name)


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
    check_tileable(x)
    if _graph.is_lazy(x):
        other = tuple(x.shape[:-2])
        tile_bytes = plan.tile_size**2 * math.prod(other) * x.dtype.itemsize
        per = tiles_per_chunk(tile_chunks, tile_bytes, len(plan))
        chunks = (*((d,) for d in other), (plan.tile_size,), (plan.tile_size,))

        def task(blocks, tasks, n):
            return (_tile_chunk, blocks, tasks, n, other, plan.tile_size, x.dtype)

        name = "fns-tile-" + _token(x, plan, per, x.dtype)
        return _by_strips(x, plan, per, name, task, chunks, x.dtype)
    return _tile_numpy(np.asarray(x), plan)


def _token(*args) -> str:
    from dask.base import tokenize

    return tokenize(*args)


def _gather_range(x: np.ndarray, plan: TilePlan, out: np.ndarray, start: int, stop: int) -> None:
    """Write tiles ``start:stop`` of ``plan`` from ``x`` into ``out[start:stop]``."""
    if x.flags.c_contiguous and not any(plan.pad[0] + plan.pad[1]):
        base = x.reshape((-1, *x.shape[-2:]))  # a view: windows read in place
        sl = slice(start, stop)
        gather_tiles.auto(
            as_bits(base), plan.rows[sl], plan.cols[sl], plan.codes[sl], as_bits(out[sl])
        )
        return
    for s in strips(plan, start, stop):
        src = strip_source(x[..., s.y, s.x], s.pad)
        gather_tiles.auto(as_bits(src), s.rows, s.cols, s.codes, as_bits(out[s.start : s.stop]))


def _tile_numpy(x: np.ndarray, plan: TilePlan) -> np.ndarray:
    n, T, other = len(plan), plan.tile_size, x.shape[:-2]
    out = np.empty((n, math.prod(other), T, T), dtype=x.dtype)
    workers = threads()
    parts = max(1, min(n, workers * 4))
    bounds = np.linspace(0, n, parts + 1).astype(int)
    map_threads(lambda ab: _gather_range(x, plan, out, *ab), itertools.pairwise(bounds), workers)
    return out.reshape((n, *other, T, T))


class ChunkStrips:
    """The strips one tile chunk's tiles read, compact (one small table per
    task, not Python objects per strip: a scene's graph holds one per tile
    chunk): ``table`` has a row ``(start, stop, y0, y1, x0, x1, top, bottom,
    left, right)`` per strip (its tiles, counted from the chunk's first; its
    clipped input rows and columns; its reflect padding), ``rows``,
    ``cols`` and ``codes`` each tile's window origin in its padded strip
    and its transform. ``bounds`` are the input's chunk edges along y and
    x, ``others`` its chunk counts along the dims before them.

    :meth:`chunks` lists the input chunks the strips overlap, each once, in
    the order the task receives them; :meth:`sources` cuts each strip out
    of them."""

    __slots__ = ("bounds", "codes", "cols", "others", "rows", "table")

    def __init__(self, strips: list[Strip], first: int, bounds: tuple, others: tuple) -> None:
        self.bounds, self.others = bounds, others
        self.table = np.array(
            [
                (s.start - first, s.stop - first, s.y.start, s.y.stop, s.x.start, s.x.stop)
                + s.pad[0]
                + s.pad[1]
                for s in strips
            ],
            dtype=np.int64,
        ).reshape((-1, 10))
        self.rows = _joined([s.rows for s in strips], np.int64)
        self.cols = _joined([s.cols for s in strips], np.int64)
        self.codes = _joined([s.codes for s in strips], np.int8)

    def _spans(self, row) -> tuple[slice, slice, range, range]:
        y, x = slice(int(row[2]), int(row[3])), slice(int(row[4]), int(row[5]))
        return y, x, chunk_span(self.bounds[0], y), chunk_span(self.bounds[1], x)

    def _nested(self, iy: range, ix: range) -> list:
        return _graph.nest_keys((), [*(range(n) for n in self.others), iy, ix])

    def chunks(self) -> list[tuple]:
        """The input chunk indices the strips read, each once, in first-read order."""
        index: dict = {}
        for row in self.table:
            _, _, iy, ix = self._spans(row)
            _places(self._nested(iy, ix), index)
        return list(index)

    def sources(self, blocks: list):
        """For each strip, ``(src, rows, cols, codes, start, stop)``: the
        kernel's ``(C, h, w)`` source cut from ``blocks`` (the input chunks of
        :meth:`chunks`, in that order), the strip's window origins in it,
        their transforms and the tiles they fill."""
        index: dict = {}  # filled in first-read order: the places of chunks()
        depth = len(self.others)
        for row in self.table:
            start, stop = int(row[0]), int(row[1])
            pad = ((int(row[6]), int(row[7])), (int(row[8]), int(row[9])))
            y, x, iy, ix = self._spans(row)
            nested = _pick(blocks, _places(self._nested(iy, ix), index))
            rows, cols = self.rows[start:stop], self.cols[start:stop]
            codes = self.codes[start:stop]
            block = only(nested)
            if block is not None and block.flags.c_contiguous and not any(pad[0] + pad[1]):
                # The whole strip lies in one chunk: read the windows in place.
                dy, dx = y.start - self.bounds[0][iy[0]], x.start - self.bounds[1][ix[0]]
                src = block.reshape((-1, *block.shape[-2:]))
                yield src, rows + dy, cols + dx, codes, start, stop
                continue
            ys, xs = local_slices(self.bounds[0], iy, y), local_slices(self.bounds[1], ix, x)
            src = strip_source(assemble(nested, ys, xs, depth), pad)
            yield src, rows, cols, codes, start, stop


def _joined(parts: list, dtype) -> np.ndarray:
    return np.concatenate(parts).astype(dtype, copy=False) if parts else np.empty(0, dtype)


def _pick(blocks: list, picks: list) -> list:
    """``picks`` (nested lists of indices) with each index replaced by its block."""
    if picks and isinstance(picks[0], list):
        return [_pick(blocks, p) for p in picks]
    return [blocks[i] for i in picks]


def _places(nested: list, index: dict) -> list:
    """``nested`` keys as indices into ``index`` (a key's first place; new
    keys are added)."""
    if nested and isinstance(nested[0], list):
        return [_places(n, index) for n in nested]
    return [index.setdefault(k, len(index)) for k in nested]


def gather_strips(blocks: list, strips: ChunkStrips, flat: np.ndarray) -> None:
    """Gather each strip's tiles from the task's chunks ``blocks`` into its
    rows of ``flat`` (``(n, C, T, T)``)."""
    for src, rows, cols, codes, start, stop in strips.sources(blocks):
        gather_tiles.auto(as_bits(src), rows, cols, codes, as_bits(flat[start:stop]))


def _tile_chunk(
    blocks: list, strips: ChunkStrips, n: int, other: tuple, size: int, dtype
) -> np.ndarray:
    """Task body: gather the tiles of each strip into one output chunk."""
    out = np.empty((n, math.prod(other), size, size), dtype=dtype)
    gather_strips(blocks, strips, out)
    return out.reshape((n, *other, size, size))


def _by_strips(x, plan: TilePlan, per: int, name: str, task, block_chunks: tuple, dtype):
    """A one-layer dask array of one task per chunk of ``per`` tiles of
    ``plan``: ``task(blocks, strips, n)`` is the task of one chunk
    (``strips`` its :class:`ChunkStrips`),
    handed the input chunks its strips overlap (each once: a chunk several
    strips read is one reference in the graph, not one per strip);
    ``block_chunks`` are the output's chunks after ``tile``."""
    check_known_chunks(x)
    n = len(plan)
    starts = list(range(0, n, per))
    sizes = tuple(min(per, n - a) for a in starts)
    ybounds, xbounds = (chunk_bounds(c) for c in x.chunks[-2:])
    zeros = (0,) * len(block_chunks)
    others = tuple(len(c) for c in x.chunks[:-2])
    dsk = {}
    for i, a in enumerate(starts):
        found = strips(plan, a, a + sizes[i], bounds=(ybounds, xbounds))
        table = ChunkStrips(found, a, (ybounds, xbounds), others)
        blocks = [(x.name, *idx) for idx in table.chunks()]
        dsk[(name, i, *zeros)] = task(blocks, table, sizes[i])
    return _graph.array(name, dsk, (sizes, *block_chunks), dtype, [x])


# --- valid fractions --------------------------------------------------------


def valid_fractions(mask, plan: TilePlan, *, tile_chunks: int | str = "auto"):
    """Share of True pixels of a ``(H, W)`` ``mask`` in each window of
    ``plan`` (reflect padding included), float32 along ``tile``.

    One way on both backends: the True pixels of a window are four reads of
    a summed-area table. numpy in, numpy out (one table over the padded
    mask); dask in, a lazy array chunked like :func:`tile_array` with the
    same ``tile_chunks`` (one table per strip of windows, from the mask
    chunks that strip overlaps).
    """
    if _graph.is_lazy(mask):
        mask = mask if mask.dtype == bool else mask.astype(bool)
        per = tiles_per_chunk(tile_chunks, plan.tile_size**2, len(plan))

        def task(blocks, tasks, n):
            return (_fractions_chunk, blocks, tasks, n, plan.tile_size)

        name = "fns-valid-fraction-" + _token(mask, plan, per)
        return _by_strips(mask, plan, per, name, task, (), np.float32)
    mask = np.asarray(mask, dtype=bool)
    if any(plan.pad[0] + plan.pad[1]):
        mask = np.pad(mask, plan.pad, mode="reflect")
    rows, cols = plan.rows + plan.pad[0][0], plan.cols + plan.pad[1][0]
    return _window_fractions(mask, rows, cols, plan.tile_size)


def _window_fractions(mask: np.ndarray, rows, cols, tile_size: int) -> np.ndarray:
    """Share of True pixels of the windows at ``rows``/``cols`` of a
    ``(h, w)`` mask they lie inside, from a summed-area table of the part
    they cover."""
    T = tile_size
    if not len(rows):
        return np.empty(0, np.float32)
    r0, c0 = int(rows.min()), int(cols.min())
    part = mask[r0 : int(rows.max()) + T, c0 : int(cols.max()) + T]
    table = np.zeros((part.shape[0] + 1, part.shape[1] + 1), np.int64)
    table[1:, 1:] = part.cumsum(0, dtype=np.int64).cumsum(1)
    r, c = rows - r0, cols - c0
    total = table[r + T, c + T] - table[r, c + T] - table[r + T, c] + table[r, c]
    return (total / (T * T)).astype(np.float32)


def _fractions_chunk(blocks: list, strips: ChunkStrips, n: int, size: int) -> np.ndarray:
    """Task body: the valid fractions of the windows of each strip."""
    out = np.empty(n, np.float32)
    for src, rows, cols, _, start, stop in strips.sources(blocks):
        out[start:stop] = _window_fractions(src[0], rows, cols, size)
    return out


def regular_tile_chunks(x):
    """``x`` with chunks along its first axis (``tile``) that Zarr stores:
    all equal but the last, which is no larger. A lazy subset (a split, an
    ``isel``) has uneven chunks, which Zarr refuses; they are rechunked to
    the largest of them (lazy, each new chunk from its neighbours). Numpy
    arrays and regular chunks are returned as they are."""
    if not _graph.is_lazy(x) or not x.chunks[0]:
        return x
    sizes = x.chunks[0]
    if len(set(sizes[:-1])) <= 1 and sizes[-1] <= sizes[0]:
        return x
    return x.rechunk({0: max(sizes)})


def write_by_rows(write, arrays: list, rows: np.ndarray, memory=None) -> None:
    """Write tiles band by band of window rows: ``write(compute)`` is the
    writer (``Dataset.to_zarr`` with ``compute=compute``), ``arrays`` the
    tiled data it stores (numpy or dask), ``rows`` each tile's window row.

    With dask tiles, the writer's delayed graph is computed chunk group by
    chunk group (:func:`.schedule.write_in_groups`), the tile chunks sorted
    by their first window row: the outer and inner Flip-n-Slide grids of the
    same rows, at opposite ends of the tile order, are written together, and
    the input chunks of a band of rows are released once the next band no
    longer reads them. Memory is then a band of the scene as wide as the
    scene (plus one group's output chunks), whatever its height; dask's own
    order for the whole graph keeps most of the scene's chunks at once. Low
    level fusion is off for the graph built here, so the tile chunks keep
    their keys. ``memory`` bounds what the run holds
    (:func:`.schedule.compute_in_groups`): the band, dropped and read again
    past it.
    """
    lazy = [a for a in arrays if _graph.is_lazy(a)]
    if not lazy:
        write(True)
        return
    from dask.core import flatten

    chunks = lazy[0].chunks[0]
    same = [a for a in lazy if a.chunks[0] == chunks]
    bounds = chunk_bounds(chunks)
    # Empty chunks (an empty selection) have no first row: they go first.
    first = [int(rows[a:b].min()) if b > a else -1 for a, b in itertools.pairwise(bounds)]
    ordered = sorted(range(len(chunks)), key=lambda i: (first[i], i))
    width = threads()
    # [key] not key: flatten would split a 1-D array's (name, i) keys
    keys = [[list(flatten([a.__dask_keys__()[i]])) for a in same] for i in range(len(chunks))]
    groups = [
        [k for i in ordered[g : g + width] for per in keys[i] for k in per]
        for g in range(0, len(ordered), width)
    ]
    write_in_groups(write, lazy[0], groups, memory)
