"""Backend helpers shared by the array layer: the one backend test
(:func:`is_lazy`), the numpy runners' thread count, dask chunk checks, keys,
nesting and graph copies (the order a graph runs in: :mod:`.schedule`).

With :mod:`.schedule`, the only module besides the array-layer features
that knows dask's graph internals; :func:`independent_copy` relies on one
of them, guarded by a test
(``tests/test_blocks.py::test_independent_copy_renames_every_key_and_reads_twice``)
that fails loudly when dask changes.
"""

from __future__ import annotations

import math
import os
from collections.abc import Hashable
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from ..errors import InvalidParameterError

__all__ = [
    "array",
    "check_known_chunks",
    "first_lazy",
    "independent_copy",
    "is_lazy",
    "map_threads",
    "nest_keys",
    "threads",
    "tile_chunk_sizes",
]


def is_lazy(x) -> bool:
    """True for a dask collection (the one backend test of the array layer;
    dask's own test, without importing dask)."""
    graph = getattr(x, "__dask_graph__", None)
    return callable(graph) and graph() is not None


def first_lazy(arrays):
    """The first dask array of ``arrays`` (a sequence, or ``None``), else ``None``."""
    return next((a for a in arrays or () if is_lazy(a)), None)


def threads() -> int:
    """Threads the numpy runners use: ``XFLIPNSLIDE_THREADS`` if set, else
    the CPU count, at most 8."""
    try:
        return max(1, int(os.environ["XFLIPNSLIDE_THREADS"]))
    except (KeyError, ValueError):
        return min(os.cpu_count() or 1, 8)


def map_threads(func, parts, workers: int) -> None:
    """``func`` of every part, on ``workers`` threads (in order on one)."""
    parts = list(parts)
    if workers == 1 or len(parts) == 1:
        for p in parts:
            func(p)
    else:
        with ThreadPoolExecutor(workers) as pool:
            list(pool.map(func, parts))


def check_known_chunks(x, name: str = "the input") -> None:
    """Raise for a dask array whose chunk sizes are unknown (NaN); numpy
    arrays pass."""
    if not is_lazy(x):
        return
    if any(math.isnan(c) for dim in x.chunks for c in dim):
        raise InvalidParameterError(
            f"{name} has unknown chunk sizes (NaN), so its windows cannot be planned: call "
            ".compute_chunk_sizes() on the dask array (or persist it) first"
        )


def tile_chunk_sizes(*arrays) -> tuple[int, ...]:
    """The chunk sizes along the first axis (``tile``) of the first lazy one
    of ``arrays`` (``None`` entries are skipped); one chunk of the whole
    length when none is lazy (numpy).

    Pass numpy or dask arrays, or xarray Variables (``tiles.variable``),
    which answer the same questions without loading anything.
    """
    given = [a for a in arrays if a is not None]
    for a in given:
        if is_lazy(a):
            return tuple(int(c) for c in a.chunks[0])
    return (int(given[0].shape[0]),)


def nest_keys(prefix: tuple, ranges: list[range]) -> list:
    """Nested list of the keys ``(*prefix, i, j, ...)`` over ``ranges``: the
    shape :func:`.blocks.assemble` (and :func:`numpy.block`) join."""
    if len(ranges) == 1:
        return [(*prefix, i) for i in ranges[0]]
    return [nest_keys((*prefix, i), ranges[1:]) for i in ranges[0]]


def array(name: str, dsk: dict, chunks: tuple, dtype, dependencies: list, ndim: int | None = None):
    """A dask array from a one-layer graph, with explicit chunks, dtype and meta."""
    import dask.array as da
    from dask.highlevelgraph import HighLevelGraph

    graph = HighLevelGraph.from_collections(name, dsk, dependencies=dependencies)
    meta = np.empty((0,) * (ndim if ndim is not None else len(chunks)), dtype=dtype)
    return da.Array(graph, name, chunks, meta=meta)


#: Name prefix of the layers that :func:`independent_copy` shares instead of
#: copying: a scene's statistics (``_core.stats``), a few numbers per band
#: computed from their own pass over the input. Sharing them keeps a copy
#: from recomputing a whole-scene pass for values it could hold for free.
SHARED_PREFIX = "fns-stats"

#: Name prefix of the layers whose tasks are too costly to run twice:
#: ``predict``'s (each runs the model). A memory budget never drops their
#: results nor anything that would have to run them again (:mod:`.ordered`).
COSTLY_PREFIX = "fns-predict"


def costly(key: Hashable) -> bool:
    """Whether ``key`` belongs to a layer of :data:`COSTLY_PREFIX`."""
    return _name(key).startswith(COSTLY_PREFIX)


def independent_copy(x, salt: str = "fns-pass"):
    """The same array from an independent copy of its graph.

    Every key is renamed, so computing both ``x`` and the copy runs every
    task twice (reading the input twice) instead of sharing results. A
    global statistic taken from the copy therefore does not force dask to
    hold all of ``x``'s chunks in memory until the statistic is known, and
    consumers of ``x`` that dask runs far apart (the outer and inner
    Flip-n-Slide grids of the same rows, a mask written after the pixels)
    each read their own copy instead of keeping ``x``'s chunks from one to
    the other: this is how a scene larger than memory streams with flat
    memory.

    Only the layers named ``fns-stats...`` (:data:`SHARED_PREFIX`: a
    scene's statistics, a few numbers per band with their own pass) and
    what they depend on keep their keys, so a copy shares them instead of
    taking a second whole-scene pass. The copy's keys are a function of
    ``x``'s and ``salt``: copying the same array twice with one salt gives
    the same graph (shared by dask), another salt another.

    :func:`dask.graph_manipulation.clone` does this in principle but leaves
    the dependencies inside task-spec nodes unrenamed in current dask
    (dask/dask#12455), which breaks graph optimisation; this renames them
    too, through ``dask._task_spec`` (private: a test in
    ``tests/test_blocks.py`` checks it still behaves).
    """
    import dask.array as da
    from dask._task_spec import convert_legacy_graph
    from dask.blockwise import optimize_blockwise
    from dask.core import flatten
    from dask.highlevelgraph import HighLevelGraph

    if x.name.startswith(SHARED_PREFIX):
        return x  # shared whole
    # Stacked blockwise layers fused first, as dask.compute (and dask's store,
    # for the writers' graphs) fuses them: a chunk's masking is one task.
    fused = optimize_blockwise(x.__dask_graph__(), keys=list(flatten(x.__dask_keys__())))
    graph = convert_legacy_graph(dict(fused))
    shared = _closure(graph, [k for k in graph if _name(k).startswith(SHARED_PREFIX)])

    def rename(key: Hashable):
        if key in shared:
            return key
        if isinstance(key, tuple):
            return (f"{key[0]}-{salt}", *key[1:])
        return f"{key}-{salt}"

    subs = {key: rename(key) for key in graph}
    renamed = {subs[key]: node.substitute(subs, key=subs[key]) for key, node in graph.items()}
    name = f"{x.name}-{salt}"
    hlg = HighLevelGraph.from_collections(name, renamed, dependencies=[])
    return da.Array(hlg, name, x.chunks, meta=x._meta)


def _name(key: Hashable) -> str:
    return str(key[0] if isinstance(key, tuple) else key)


def _closure(graph: dict, keys: list) -> set:
    """``keys`` and everything they depend on in ``graph``."""
    seen, todo = set(), list(keys)
    while todo:
        key = todo.pop()
        if key in seen or key not in graph:
            continue
        seen.add(key)
        todo.extend(graph[key].dependencies)
    return seen
