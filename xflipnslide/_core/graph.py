"""Backend helpers shared by the array layer: the one backend test
(:func:`is_lazy`), the numpy runners' thread count, dask chunk checks, keys,
nesting and graph copies.

The only module besides the array-layer features that knows dask's graph
internals; :func:`independent_copy` relies on one of them, guarded by a test
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
    "compute_in_groups",
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
    from dask.highlevelgraph import HighLevelGraph

    if x.name.startswith(SHARED_PREFIX):
        return x  # shared whole
    graph = convert_legacy_graph(dict(x.__dask_graph__()))
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


def compute_in_groups(collection, groups: list[list]) -> None:
    """Compute a dask collection (such as the delayed store of
    ``to_zarr(compute=False)``) group by group, in the order of ``groups``,
    holding between groups only what later groups still need.

    ``groups`` is a list of lists of keys of the collection's graph (the
    *anchors*: the chunks of the array being stored, say). Group ``g`` runs
    every task downstream of its anchors (their store tasks) whose other
    anchors are in groups up to ``g``, together with whatever those tasks
    need that no earlier group computed; tasks downstream of no anchor (the
    final one) run with the last group. The groups are chained in one call
    of the threaded (or synchronous) scheduler: every task of group ``g + 1``
    waits for a *gate* that waits for the tasks of group ``g`` nothing else
    in that group reads, so memory holds one group's work plus what crosses
    to the next, each task runs once, and callbacks (a progress bar) see one
    computation.

    This is how a store is written band by band of rows whatever order
    :func:`dask.order.order` picks for the whole graph (which, for the
    tiles of a scene, visits the chunks in no useful order and keeps most
    of the scene's chunks at once). A whole-scene pass that every chunk
    waits for (a scene's statistics) runs in the first group, streaming,
    and only its result is carried. On any other scheduler (a
    ``dask.distributed`` cluster) the collection is computed as one graph,
    where the cluster's own memory management applies.

    The anchors must be keys of the graph as built, so build the collection
    with low-level fusion off (``dask.config.set({"optimization.fuse.active":
    False})``, as :func:`.tiling.write_by_rows` does): fused keys match no
    anchor, and a collection whose anchors match fewer than two groups is
    computed as one graph (the same result, without the bound).
    """
    import dask
    import dask.local
    import dask.threaded
    from dask._task_spec import convert_legacy_graph
    from dask.base import get_scheduler, tokenize

    get = get_scheduler(collections=[collection])
    if get not in (dask.threaded.get, dask.local.get_sync) or len(groups) < 2:
        dask.compute(collection)
        return
    finals = _flat(collection.__dask_keys__())
    full = convert_legacy_graph(dict(collection.__dask_graph__()))
    graph = {k: full[k] for k in _closure(full, finals)}
    groups = _matching(graph, groups)
    if sum(map(bool, groups)) < 2:
        dask.compute(collection)
        return
    runs, dependents = _group_runs(graph, groups, set(finals))
    get(_chained(graph, runs, dependents, f"fns-gate-{tokenize(finals)}"), finals)


def _matching(graph: dict, groups: list[list]) -> list[list]:
    """The keys of ``graph`` that stand for each group's keys: the same key,
    or the key a collection's conversion to a delayed object renamed (its
    name with a ``-token`` added, the indices unchanged)."""
    names: dict = {}
    for key in graph:
        if isinstance(key, tuple) and isinstance(key[0], str):
            names[key] = key
            names.setdefault((key[0].rsplit("-", 1)[0], *key[1:]), key)
    return [[names[k] for k in keys if k in names] for keys in groups]


def _flat(keys) -> list:
    if isinstance(keys, list):
        return [k for sub in keys for k in _flat(sub)]
    return [keys]


def _group_runs(graph: dict, groups: list[list], finals: set) -> tuple[list[list], dict]:
    """The tasks each group runs (in no particular order), and each task's
    dependents."""
    dependents: dict = {k: [] for k in graph}
    for k, node in graph.items():
        for d in node.dependencies:
            dependents[d].append(k)
    # Each task's group: the latest group of the anchors upstream of it.
    group: dict = {}
    for g, anchors in enumerate(groups):
        for a in anchors:
            group[a] = g
    for k in _topological(graph, dependents):
        ups = [group[d] for d in graph[k].dependencies if d in group]
        if ups and k not in group:
            group[k] = max(ups)
    final_group = len(groups) - 1
    targets: list[list] = [[] for _ in groups]
    for k in graph:
        if k in group:
            targets[group[k]].append(k)
        elif k in finals:
            targets[final_group].append(k)
    done: set = set()
    runs = []
    for tops in targets:
        todo, stack = [], list(tops)
        while stack:
            k = stack.pop()
            if k in done:
                continue
            done.add(k)
            todo.append(k)
            stack.extend(graph[k].dependencies)
        runs.append(todo)
    return runs, dependents


def _chained(graph: dict, runs: list[list], dependents: dict, name: str) -> dict:
    """``graph`` with the groups ``runs`` run one after the other: each task
    of a group waits for the gate of the group before it, a task that waits
    for the tasks of its group that no other task of the group reads."""
    from dask._task_spec import Task, TaskRef

    out = dict(graph)
    gate = None
    for g, todo in enumerate(runs):
        if not todo:
            continue
        if gate is not None:
            for k in todo:
                if isinstance(graph[k], Task):  # data needs no wait
                    out[k] = Task(k, _first, graph[k], TaskRef(gate))
        members = set(todo)
        ends = [k for k in todo if not any(d in members for d in dependents[k])]
        gate = (name, g)
        out[gate] = Task(gate, _nothing, *(TaskRef(k) for k in ends))
    return out


def _first(value, *_):
    return value


def _nothing(*_) -> None:
    return None


def _topological(graph: dict, dependents: dict) -> list:
    """The keys of ``graph``, each after its dependencies (Kahn's algorithm)."""
    count = {k: len(node.dependencies) for k, node in graph.items()}
    ready = [k for k, c in count.items() if c == 0]
    out = []
    while ready:
        k = ready.pop()
        out.append(k)
        for d in dependents[k]:
            count[d] -= 1
            if not count[d]:
                ready.append(d)
    return out
