"""The dask graph of ``predict``: one fused task per output block, in
bounded memory whatever the scene's size.

Each window belongs to the output block holding its origin (clipped into
the scene). The block's *partial* task reads only the input chunks its
windows need, runs the model on them part by part (:func:`.predict.stream`:
gather, model, views averaged, overlap-add), and holds the weighted sums
over the block and the rows and columns its windows reach past it (at
most ``T - 1``; ``T - r`` on predict's regular grid, ``r`` the gap from a
block's last window origin to its end). Its *merged* task adds what
its left neighbour spills into it (its *right* spill: the columns its
windows reach past it, over the full height of its sums) into those
sums, in place, so that a corner reached from the block above left
travels on in the block above's *down* spill instead of waiting a whole
row on its own; two small tasks cut what spills right and below out of
the merged sums (float32 means and weights); the block's *final* task
adds the down spill of the block above to its own sums and divides by
the summed weights. So every window runs once, a block's output depends
only on its own row band of blocks and the one above, no model output
outlives its block's task, and what waits between two rows of blocks is
one strip at most ``T - 1`` pixels high, not the
model outputs. Odd rows of blocks read an independent copy of the input
graph (:func:`.graph.independent_copy`), so the input chunks two rows of
blocks share are read (or computed) twice rather than held across the
whole width in between.

Left to itself dask's ordering runs the partial tasks of a whole column of
blocks before any final one (their finals need the row below's neighbours
too): memory would grow with the scene's height. So block ``k`` in
row-major order waits for a token of block ``k - IN_FLIGHT`` (a task
returning None), and a block's output waits for its own spills to be
cut, so its partial sums are freed with it: at most :data:`IN_FLIGHT`
blocks' sums are held, in row order, which keeps two threads (or a few
workers) busy. The package's writers (``to_zarr``, ``to_cog``) run the
graph row of blocks by row on their own scheduler (:mod:`.schedule`),
where the chain costs nothing; dask's ordering of it costs memory
quadratic in the blocks, hence :data:`MAX_BLOCKS`.
"""

from __future__ import annotations

import numpy as np

from ..plan import TilePlan, read_range
from . import graph as _graph
from .blend import OverlapAdd, output_chunks
from .blocks import assemble, chunk_bounds, chunk_span, local_slices
from .kernels import gather_tiles, normalize_weights
from .predict import ModelRunner, stream, window_starts

__all__ = ["IN_FLIGHT", "block_of_windows", "block_side", "predict_dask"]

#: Blocks whose model work may run ahead of the last finished block: block
#: ``k`` (row-major) starts after block ``k - IN_FLIGHT`` is done, so dask
#: goes row band by row band and holds at most this many partial sums.
IN_FLIGHT = 4

#: Output blocks the default block side allows (it grows by ``T`` past 512 px
#: until the scene has no more): ordering a chain of tokens, dask keeps for
#: every task the set of input chunks it reaches, quadratic in the blocks
#: (1.4 GiB for 4096 blocks, measured). The package's writers
#: (:mod:`.schedule`) do not ask dask for an order, so they pay none of it.
MAX_BLOCKS = 4096


def block_side(T: int, shape: tuple[int, int] | None = None) -> int:
    """The default output block side: the largest multiple of ``T`` up to
    512 px, at least ``2 T`` (a task's sums, source and parts stay small);
    given the scene's ``shape``, larger by steps of ``T`` until it has at
    most :data:`MAX_BLOCKS` blocks (dask's ordering of the token chain).
    The package's writers need no such cap: the command passes the side
    without ``shape``."""
    side = max(2 * T, (512 // T) * T)
    if shape is not None:
        H, W = shape
        while -(-H // side) * -(-W // side) > MAX_BLOCKS:
            side += T
    return side


def block_of_windows(plan: TilePlan, ybounds: list[int], xbounds: list[int]):
    """``(starts, iy, ix)``: the edges of each window's views in ``plan``
    and the output block row and column that owns the window (the block
    holding its origin, clipped into the scene)."""
    starts = window_starts(plan)
    rows, cols = plan.rows[starts[:-1]], plan.cols[starts[:-1]]
    iy = np.searchsorted(ybounds, np.maximum(rows, 0), side="right") - 1
    ix = np.searchsorted(xbounds, np.maximum(cols, 0), side="right") - 1
    return starts, iy, ix


class _BlockSpec:
    """What one partial task needs: the input chunks' cut-outs and padding
    that make its source, and its windows (origins in the source and in
    the partial block, view codes, view edges)."""

    __slots__ = (
        "codes",
        "cols",
        "depth",
        "edges",
        "pad",
        "rows",
        "shape",
        "src_cols",
        "src_rows",
        "where",
        "xs",
        "ys",
    )

    def __init__(self, **kw):
        for k, v in kw.items():
            setattr(self, k, v)


def _partial(nested, spec: _BlockSpec, runner: ModelRunner, weight, classes: int, after=None):
    """Task body: the weighted sums ``(acc, wsum)`` of one block's windows
    over the block and what they reach past it (``after``: the ordering
    token of an earlier block, unused)."""
    acc = OverlapAdd(classes, spec.shape, weight, np.float64)
    if spec.codes is None:  # no window of the plan starts in this block
        return acc.acc, acc.wsum
    block = assemble(nested, spec.ys, spec.xs, spec.depth)
    if any(spec.pad[0]) or any(spec.pad[1]):
        block = np.pad(block, ((0, 0),) * (block.ndim - 2) + spec.pad, mode="reflect")
    src = np.ascontiguousarray(block.reshape((-1, *block.shape[-2:])), dtype=np.float32)
    T = weight.shape[0]
    g_rows, g_cols = spec.rows[spec.edges[:-1]], spec.cols[spec.edges[:-1]]

    def gather(a: int, b: int) -> np.ndarray:
        out = np.empty((b - a, src.shape[0], T, T), np.float32)
        gather_tiles(src, spec.src_rows[a:b], spec.src_cols[a:b], spec.codes[a:b], out)
        return out

    def blend(tiles: np.ndarray, g: int, h: int) -> None:
        acc.add(tiles, g_rows[g:h], g_cols[g:h], np.zeros(h - g, np.int8))

    # The scheduler's threads already run blocks side by side: a helper
    # thread per block pays only where the model runs on an accelerator.
    overlap = runner.on_accelerator()
    stream(runner, spec.edges, spec.codes, gather, blend, overlap=overlap).warn(spec.where)
    return acc.acc, acc.wsum


def _done(block) -> None:
    """Task body: an ordering token, ready once ``block`` is."""
    return None


def _piece(partial, ys: slice, xs: slice):
    """Task body: what ``partial`` spills into one neighbour, as float32
    ``(mean, weight)``: the weighted mean of its windows there and their
    summed weight (half the bytes of the float64 sums; a pixel that every
    window predicts alike keeps that value exactly)."""
    acc, wsum = partial[0][:, ys, xs], partial[1][ys, xs]
    mean = np.zeros(acc.shape, np.float32)
    np.divide(acc, wsum, out=mean, where=wsum > 0, casting="unsafe")
    return mean, wsum.astype(np.float32)


def _add(acc: np.ndarray, wsum: np.ndarray, piece) -> None:
    """Add a spill ``(mean, weight)`` into the top left of ``acc``, ``wsum``."""
    mean, weight = piece
    a, b = weight.shape
    acc[:, :a, :b] += np.multiply(mean, weight, dtype=np.float64)
    wsum[:a, :b] += weight


def _merge(partial, piece):
    """Task body: ``partial``'s sums with the left neighbour's right spill
    ``piece`` (None: none) added, in place: this task is the partial's
    only reader, and nothing drops and recomputes either (a
    ``fns-predict`` key, :func:`.graph.costly`)."""
    if piece is not None:
        _add(partial[0], partial[1], piece)
    return partial


def _final(merged, above, shape: tuple[int, int], cut=None) -> np.ndarray:
    """Task body: a block's merged sums plus the down spill of the block
    above (None: none), divided by the summed weights (NaN where no
    window), as float32 (``cut``: its own spills, unused: waiting for them
    frees the sums with it)."""
    h, w = shape
    acc, wsum = merged[0][:, :h, :w].copy(), merged[1][:h, :w].copy()
    if above is not None:
        _add(acc, wsum, above)
    normalize_weights(acc, wsum)
    return acc.astype(np.float32)


def _spec(plan, ids, starts, bounds, block, shape, depth):
    """``(spec, spans)``: the :class:`_BlockSpec` of windows ``ids`` owned
    by the block whose top-left pixel is ``block`` and partial sums are
    ``shape``, and the input chunks (rows, columns) it reads (None if no
    window)."""
    T, (H, W) = plan.tile_size, plan.shape
    if not len(ids):
        return _BlockSpec(codes=None, shape=shape), None
    entries = np.concatenate([np.arange(starts[g], starts[g + 1]) for g in ids.tolist()])
    sizes = starts[ids + 1] - starts[ids]
    edges = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
    rows, cols = plan.rows[entries], plan.cols[entries]
    y0, y1 = int(rows.min()), int(rows.max()) + T
    x0, x1 = int(cols.min()), int(cols.max()) + T
    cy, cx = read_range(y0, y1, H), read_range(x0, x1, W)
    pad = ((max(cy[0] - y0, 0), max(y1 - cy[1], 0)), (max(cx[0] - x0, 0), max(x1 - cx[1], 0)))
    sy, sx = slice(*cy), slice(*cx)
    iy, ix = chunk_span(bounds[0], sy), chunk_span(bounds[1], sx)
    spec = _BlockSpec(
        codes=plan.codes[entries],
        depth=depth,
        edges=edges,
        pad=pad,
        rows=rows - block[0],
        cols=cols - block[1],
        shape=shape,
        src_rows=rows - (cy[0] - pad[0][0]),
        src_cols=cols - (cx[0] - pad[1][0]),
        where=f" of the dask block at rows {block[0]}, cols {block[1]}",
        xs=local_slices(bounds[1], ix, sx),
        ys=local_slices(bounds[0], iy, sy),
    )
    return spec, (iy, ix)


def _reach(bounds: list[int], owner: np.ndarray, origins: np.ndarray, T: int, size: int):
    """Per row (or column) of blocks, where the furthest window it owns ends
    (its own end if further; clipped to the scene's ``size``): a block's
    partial sums, and what it spills into the next, reach no further (on a
    regular grid of windows ``T - r`` px, ``r`` the gap from the last
    origin in a block to its end, rather than ``T - 1``)."""
    reach = np.asarray(bounds[1:], dtype=np.int64)
    np.maximum.at(reach, owner, origins + T)
    return np.minimum(reach, size).tolist()


def predict_dask(x, plan: TilePlan, runner: ModelRunner, weight, classes: int, chunks=None):
    """``(K, H, W)`` float32 dask array: :func:`.predict.predict_array` as one
    graph of fused tasks per output block (module docstring)."""
    from dask.base import tokenize

    _graph.check_known_chunks(x, "the scene")
    T, (H, W) = plan.tile_size, plan.shape
    if chunks is None:
        chunks = block_side(T, (H, W))
    chunks = output_chunks(chunks, plan.shape, T, classes, np.float32)
    ybounds, xbounds = (chunk_bounds(c) for c in chunks)
    inb = tuple(chunk_bounds(c) for c in x.chunks[-2:])
    depth = x.ndim - 2
    other_idx = [range(len(c)) for c in x.chunks[:-2]]
    starts, wy, wx = block_of_windows(plan, ybounds, xbounds)
    model_key = f"fns-model-{tokenize(runner)}"
    token = tokenize(x, plan, model_key, weight, chunks)
    name, pname = f"fns-predict-{token}", f"fns-predict-partial-{token}"
    mname = f"fns-predict-merged-{token}"
    spill = {d: f"fns-predict-spill{d}-{token}" for d in ("right", "down")}
    done, lag = f"fns-predict-done-{token}", IN_FLIGHT
    dsk: dict = {model_key: runner}  # one key: a cluster ships the model once per worker
    ny, nx = len(chunks[0]), len(chunks[1])
    # Odd rows of blocks read an independent copy of the input graph: the input
    # chunks two rows of blocks share are read twice, not held between them.
    sources = [x, _graph.independent_copy(x, "fns-predict-odd")] if ny > 1 else [x]
    order = np.lexsort((wx, wy))
    cut = np.searchsorted(wy[order] * nx + wx[order], np.arange(ny * nx + 1))
    reach_y = _reach(ybounds, wy, plan.rows[starts[:-1]], T, H)
    reach_x = _reach(xbounds, wx, plan.cols[starts[:-1]], T, W)
    for i in range(ny):
        y0, y1 = ybounds[i], ybounds[i + 1]
        ph = reach_y[i] - y0
        for j in range(nx):
            x0, x1 = xbounds[j], xbounds[j + 1]
            pw = reach_x[j] - x0
            ids = np.sort(order[cut[i * nx + j] : cut[i * nx + j + 1]])
            spec, spans = _spec(plan, ids, starts, inb, (y0, x0), (ph, pw), depth)
            src = sources[i % len(sources)].name
            nested = [] if spans is None else _graph.nest_keys((src,), [*other_idx, *spans])
            k = i * nx + j
            after = (done, k - lag) if k >= lag else None
            dsk[(pname, i, j)] = (_partial, nested, spec, model_key, weight, classes, after)
            left = (spill["right"], i, j - 1) if j else None
            dsk[(mname, i, j)] = (_merge, (pname, i, j), left)
            h, w = y1 - y0, x1 - x0
            cuts = {"right": (slice(0, ph), slice(w, pw)), "down": (slice(h, ph), slice(0, w))}
            for d, (ys, xs) in cuts.items():
                dsk[(spill[d], i, j)] = (_piece, (mname, i, j), ys, xs)
            above = (spill["down"], i - 1, j) if i else None
            own = [(spill[d], i, j) for d in cuts]
            dsk[(name, 0, i, j)] = (_final, (mname, i, j), above, (h, w), own)
            dsk[(done, k)] = (_done, (name, 0, i, j))
    return _graph.array(name, dsk, ((classes,), *chunks), np.float32, sources)
