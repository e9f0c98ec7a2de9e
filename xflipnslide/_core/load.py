"""Array layer of loading lazy arrays into memory: :func:`load_arrays` and
:func:`load_ranges`, on numpy or dask.

On the threaded or synchronous scheduler the result arrays are allocated
first and every chunk is written once, into its place: a tile chunk
(:func:`.tiling.tile_array`'s task) is gathered by the tiling kernel
straight into the result; any other chunk is computed and copied in once; a
range that is exactly one chunk is that chunk as computed (no copy at all).
One computation serves every array asked for, so inputs they share (the
scene chunks under the image and label tiles) are read once. On any other
scheduler (a ``dask.distributed`` cluster, processes) the tasks run in other
processes, which cannot write into this process's memory, so the ranges are
computed and gathered instead.
"""

from __future__ import annotations

import itertools
import math

import numpy as np

from . import graph as _graph
from . import tiling as _tiling
from .blocks import chunk_bounds

__all__ = ["feed_chunks", "feed_source", "load_arrays", "load_ranges"]


def feed_chunks(*arrays) -> tuple[tuple[int, ...], bool]:
    """The units a feed reads ``arrays`` (``None`` entries skipped) in along
    their first axis (``tile``), and whether they are free to split: the
    chunks of the first lazy one (``False``: a chunk is read whole, once),
    or, when none is lazy (in memory), one unit per tile, or per run of
    ``ceil(n / MAX_UNITS)`` tiles past :data:`MAX_UNITS` tiles (``True``:
    a range costs nothing to read, so tiles can be dealt one by one).

    Pass numpy or dask arrays, or xarray Variables.
    """
    given = [a for a in arrays if a is not None]
    if any(_graph.is_lazy(a) for a in given):
        return _graph.tile_chunk_sizes(*given), False
    n = int(given[0].shape[0])
    per = max(1, -(-n // MAX_UNITS))
    return tuple(min(per, n - a) for a in range(0, n, per)), True


#: At most this many units of in-memory tiles (one tile each below it), so
#: a feed's bookkeeping per epoch stays small for any number of tiles.
MAX_UNITS = 4096


def feed_source(v):
    """What a feed reads ranges of: the dask array of a lazy ``v`` (an xarray
    Variable or a dask array), else ``v`` itself (a Variable is then sliced
    before it is read, so a lazily indexed store reads only the range)."""
    return getattr(v, "data", v) if _graph.is_lazy(v) else v


def load_arrays(arrays: list) -> list:
    """Each of ``arrays`` as numpy, the dask ones in one computation (inputs
    they share read once, each chunk written once into its place)."""
    return load_ranges([(a, 0, a.shape[0] if a.ndim else 0) for a in arrays])


def load_ranges(parts: list) -> list:
    """``a[start:stop]`` (along the first axis) as numpy for each ``(a,
    start, stop)`` of ``parts``, the dask ones in one computation.

    A range of a dask array that is exactly one chunk comes back as that
    chunk, uncopied; a range spanning several is one array each chunk is
    written into once (:mod:`this module <xflipnslide._core.load>`).
    """
    out: list = [None] * len(parts)
    lazy = [i for i, (a, _, _) in enumerate(parts) if _graph.is_lazy(a)]
    _slice_in_memory(parts, [i for i in range(len(parts)) if i not in set(lazy)], out)
    if not lazy:
        return out
    import dask
    import dask.local
    import dask.threaded
    from dask.base import get_scheduler

    sources = [parts[i][0] for i in lazy]
    get = get_scheduler(collections=sources)
    if get not in (dask.threaded.get, dask.local.get_sync):
        done = dask.compute(*[_part(*parts[i]) for i in lazy])
        for i, d in zip(lazy, done, strict=True):
            out[i] = np.asarray(d)
        return out
    dsk: dict = {}
    for a in {id(a): a for a in sources}.values():
        dsk.update(a.__dask_graph__())
    wanted: dict[int, object] = {}  # part -> the key holding its result
    name = "fns-load-" + _tiling._token(*[(a.name, *parts[i][1:]) for a, i in zip(sources, lazy)])
    counter = itertools.count()
    for i in lazy:
        a, start, stop = parts[i]
        if a.ndim == 0:
            wanted[i] = (a.name,)
            continue
        edges = chunk_bounds(a.chunks[0])
        if start in edges and stop in edges:  # whole chunks: the array's own
            span = range(edges.index(start), edges.index(stop))
        else:
            a = a[start:stop]
            dsk.update(a.__dask_graph__())
            span = range(len(a.chunks[0]))
        grid = [span, *(range(len(c)) for c in a.chunks[1:])]
        if all(len(r) == 1 for r in grid):  # one chunk: it is the result
            wanted[i] = (a.name, *(r[0] for r in grid))
            continue
        target = np.empty((sum(a.chunks[0][b] for b in span), *a.shape[1:]), a.dtype)
        bounds = [chunk_bounds(c) for c in a.chunks]
        first = bounds[0][span.start]
        writes = []
        for idx in itertools.product(*grid):
            where = tuple(
                slice(b[j] - (first if d == 0 else 0), b[j + 1] - (first if d == 0 else 0))
                for d, (b, j) in enumerate(zip(bounds, idx, strict=True))
            )
            key = (a.name, *idx)
            write = (name, i, next(counter))
            dsk[write] = _write_task(dsk[key], key, target[where])
            writes.append(write)
        dsk[(name, i)] = (_done, target, writes)
        wanted[i] = (name, i)
    from dask.optimization import cull

    keys = list(wanted.values())
    results = get(cull(dsk, keys)[0], keys)
    for i, r in zip(wanted, results, strict=True):
        out[i] = np.asarray(r)
    return out


def _slice_in_memory(parts: list, which: list[int], out: list) -> None:
    """``out[i]`` = ``parts[i]``'s range for the in-memory ``which``: one
    slice per run of adjacent ranges of the same array, each range a view."""
    runs: dict = {}
    for i in sorted(which, key=lambda i: (id(parts[i][0]), parts[i][1])):
        a, start, stop = parts[i]
        group = runs.setdefault(id(a), [])
        if group and group[-1][2] == start:
            group[-1][2] = stop
            group[-1][3].append(i)
        else:
            group.append([a, start, stop, [i]])
    for group in runs.values():
        for a, start, stop, members in group:
            whole = np.asarray(a if np.ndim(a) == 0 else a[start:stop])
            for i in members:
                lo, hi = parts[i][1] - start, parts[i][2] - start
                out[i] = whole if whole.ndim == 0 else whole[lo:hi]


def _part(a, start: int, stop: int):
    """``a[start:stop]`` along the first axis (``a`` itself when that is all of it)."""
    if a.ndim == 0 or (start == 0 and stop == a.shape[0]):
        return a
    return a[start:stop]


def _write_task(task, key, view: np.ndarray):
    """The task that writes chunk ``key`` (whose task is ``task``) into ``view``."""
    tiles = isinstance(task, tuple) and task and task[0] is _tiling._tile_chunk
    if tiles and view.flags.c_contiguous:
        return (_tile_into, view, *task[1:])
    return (_copy_into, view, key)


def _tile_into(out, blocks, strips, n, other, size, dtype) -> None:
    """:func:`.tiling._tile_chunk`, gathering into ``out`` instead of a new array."""
    _tiling.gather_strips(blocks, strips, out.reshape((n, math.prod(other), size, size)))


def _copy_into(out: np.ndarray, block) -> None:
    out[...] = block


def _done(target: np.ndarray, _writes) -> np.ndarray:
    return target
