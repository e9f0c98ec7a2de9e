"""The order a graph runs in: :func:`compute_in_groups` computes a dask
graph group of chunks by group, in the order given, on its own small
scheduler.

Left to :func:`dask.order.order`, the tiles of a scene (or a predicted map)
are computed in no useful order, which keeps most of the scene's chunks in
memory at once; and a graph made to run in order by a chain of tokens (each
group waiting for the one before) costs :func:`dask.order.order` memory
quadratic in the chunks, since it records for every task the input chunks
it reaches (1.4 GiB for 4 096 blocks, measured). So the package's writers
run their graphs here instead: every task gets a priority from its group
(then dependencies first, depth first), a pool of threads runs the ready
task of lowest priority, a task of a group more than one past the earliest
unfinished group waits, and each result is released once its last reader
has run. Ordering is linear in the graph's edges; nothing is chained.
The run itself (threads, callbacks, a memory budget that drops and
recomputes input chunks held for later rows) is :mod:`.ordered`'s.

What dask's local schedulers offer is kept: the threaded scheduler's
``num_workers`` (``dask.config``), the synchronous scheduler (one task at a
time in the calling thread, the debugging path), dask's callbacks
(:class:`dask.callbacks.Callback`: a :class:`~dask.diagnostics.ProgressBar`
shows one bar per write, with the ``state`` keys it reads), and a failing
task's own exception. On a ``dask.distributed`` cluster the same order
goes to the cluster's scheduler as task priorities (an annotation per
key), which it honours before its own order, with its memory management
on top; any other scheduler (processes) computes the collection as one
graph.

Tasks are run through ``dask._task_spec`` (the graph form dask itself
executes; private, as in :func:`.graph.independent_copy`): a node called
with its dependencies' values.
"""

from __future__ import annotations

import itertools

from ..errors import InvalidParameterError
from .compact import compact
from .graph import _closure, is_lazy
from .ordered import dependents, run

__all__ = [
    "AHEAD",
    "chunk_rows",
    "compute_in_groups",
    "keyed",
    "memory_budget",
    "memory_size",
    "write_by_chunk_rows",
    "write_in_groups",
]

#: Groups past the earliest unfinished one whose tasks may start: one, so a
#: thread never idles at a group's end while memory holds two groups' work.
AHEAD = 1

#: The dask config key of the writers' default memory budget.
MEMORY_KEY = "xflipnslide.memory"


def memory_size(memory=None) -> int | None:
    """``memory`` checked: bytes (an int, or a string dask reads such as
    ``"2GiB"``), or None for ``"auto"``; ``None``: the ``xflipnslide.memory``
    dask config value, else ``"auto"``. Cheap (the writers check their
    argument with it before anything runs)."""
    import dask
    from dask.utils import parse_bytes

    value = dask.config.get(MEMORY_KEY, "auto") if memory is None else memory
    if isinstance(value, str) and value.strip().lower() == "auto":
        return None
    try:
        n = parse_bytes(value) if isinstance(value, str) else int(value)
    except (TypeError, ValueError):
        n = 0
    if isinstance(value, bool) or n <= 0:
        raise InvalidParameterError(
            f"memory={value!r} is not a memory size: give bytes (an int) or a string such as "
            f"'2GiB', or 'auto' (a quarter of this machine's memory)"
        )
    return n


def memory_budget(memory=None) -> int:
    """The bytes a writer's run may hold (:mod:`.ordered`): :func:`memory_size`,
    with ``"auto"`` a quarter of the memory this process may use (the
    machine's, or its container's limit, as ``dask.distributed`` reads it)."""
    size = memory_size(memory)
    if size is not None:
        return size
    from distributed.system import MEMORY_LIMIT

    return int(MEMORY_LIMIT // 4)


def compute_in_groups(collection, groups: list[list], memory=None) -> int:
    """Compute a dask collection (such as the delayed store of
    ``to_zarr(compute=False)``) group by group, in the order of ``groups``,
    holding only what later groups still need.

    ``groups`` is a list of lists of keys of the collection's graph (the
    *anchors*: the chunks of the array being stored, say). Group ``g`` runs
    every task downstream of its anchors (their store tasks) whose other
    anchors are in groups up to ``g``, together with whatever those tasks
    need that no earlier group computed; tasks downstream of no anchor (the
    final one) run with the last group. Each task runs once; a task of
    group ``g`` starts only once no task of a group before ``g - AHEAD`` is
    left (module docstring), so memory holds about two groups' work plus
    what crosses to later groups.

    This is how a store is written band by band of rows whatever order
    :func:`dask.order.order` would pick for the whole graph. A whole-scene
    pass that every chunk waits for (a scene's statistics) runs in the
    first group, streaming, and only its result is carried.

    The anchors must be keys of the graph as built, so build the collection
    with low-level fusion off (``dask.config.set({"optimization.fuse.active":
    False})``, as :func:`.tiling.write_by_rows` does): fused keys match no
    anchor, and a collection whose anchors match fewer than two groups is
    computed by dask as one graph (the same result, without the bound).

    ``memory`` (:func:`memory_budget`) bounds the results held on the
    threaded and synchronous schedulers: past it, large results cheap to
    compute again (input chunks later rows read) are dropped and recomputed
    when needed (:mod:`.ordered`). A cluster manages its own memory.
    Returns how many tasks ran again (0 where none did, or dask ran the
    graph).
    """
    return _compute_in_groups([collection], groups, memory)


def _compute_in_groups(held: list, groups: list[list], memory=None) -> int:
    """:func:`compute_in_groups` of the collection in ``held`` (a list of
    one, emptied): once its graph is taken, the run holds only the compacted
    graph (:mod:`.compact`), not the collection's own, where no one else
    holds the collection."""
    import dask
    import dask.local
    import dask.threaded
    from dask._task_spec import convert_legacy_graph
    from dask.base import get_scheduler
    from dask.system import CPU_COUNT

    collection = held.pop()
    get = get_scheduler(collections=[collection])
    local = get in (dask.threaded.get, dask.local.get_sync)
    if len(groups) < 2 or not (local or _is_cluster(get)):
        dask.compute(collection)
        return 0
    memory_size(memory)  # refused before anything runs
    finals = _flat(collection.__dask_keys__())
    full = convert_legacy_graph(dict(collection.__dask_graph__()))
    graph = {k: full[k] for k in _closure(full, finals)}
    del full
    groups = _matching(graph, groups)
    if sum(map(bool, groups)) < 2:
        dask.compute(collection)
        return 0
    runs = _group_runs(graph, groups, set(finals))
    if not local:  # a dask.distributed client: the same order, as task priorities
        _on_cluster(get, graph, runs, finals)
        return 0
    del collection  # its graph (task-spec, renamed: several times the compacted one)
    graph = compact(graph)
    same = {k: k for k in graph}  # the compacted graph's own key objects
    runs = [[same[k] for k in run] for run in runs]
    finals = [same[k] for k in finals]
    workers = 1 if get is dask.local.get_sync else dask.config.get("num_workers", None) or CPU_COUNT
    return run(graph, runs, set(finals), int(workers), AHEAD, memory_budget(memory))


def _is_cluster(get) -> bool:
    """Whether ``get`` is a ``dask.distributed`` client's (without importing
    distributed)."""
    owner = getattr(get, "__self__", None)
    return type(owner).__module__.startswith("distributed")


def _on_cluster(get, graph: dict, runs: list[list], finals: list) -> None:
    """Compute ``graph`` on a ``dask.distributed`` cluster with each task's
    priority its place in ``runs`` (earlier groups first): the scheduler
    runs the ready task of highest priority and releases root tasks as
    workers free up, so a cluster goes group by group too, with its own
    memory management (spilling, pausing) on top."""
    from dask.highlevelgraph import HighLevelGraph, MaterializedLayer

    place = {k: -i for i, k in enumerate(k for run in runs for k in run)}
    name = f"fns-ordered-{id(graph)}"
    layer = MaterializedLayer(graph, annotations={"priority": place.get})
    get(HighLevelGraph({name: layer}, {name: set()}), finals)


def write_in_groups(write, array, groups, memory=None) -> None:
    """Write through ``write(compute)`` (a writer such as
    ``Dataset.to_zarr`` or ``rio.to_raster`` with ``compute=compute``)
    group by group of ``array``'s chunks: ``groups`` are lists of its chunk
    keys, in the order to write them. Numpy data is written at once.

    The writer's graph is built with low-level fusion off, so the chunks
    keep their keys (:func:`compute_in_groups`, which takes ``memory``).
    """
    if not is_lazy(array):
        write(True)
        return
    import dask

    with dask.config.set({"optimization.fuse.active": False}):
        held = [write(False)]
    _compute_in_groups(held, groups, memory)


def write_by_chunk_rows(write, arrays: list, memory=None) -> None:
    """Write rasters through ``write(compute)`` (:func:`write_in_groups`)
    chunk row by chunk row (numpy: at once): a lazy map such as
    ``predict``'s is computed in bands of rows, holding what one band
    passes to the next, not the whole map. ``arrays`` are the rasters the
    writer stores (a mask beside the map too: it must be written with its
    rows, not at the end), passed through :func:`keyed` by the caller
    before the writer is built, so their chunks keep their keys in its
    graph; the lazy ones with as many chunk rows as the first are written
    together, row by row (``memory``: :func:`compute_in_groups`)."""
    lazy = [a for a in arrays if is_lazy(a) and a.ndim >= 2]
    if not lazy:
        write(True)
        return
    rows = len(lazy[0].chunks[-2])
    groups: list[list] = [[] for _ in range(rows)]
    for a in lazy:
        if len(a.chunks[-2]) == rows:
            for i, keys in enumerate(chunk_rows(a)):
                groups[i].extend(keys)
    write_in_groups(write, lazy[0], groups, memory)


def keyed(x):
    """``x`` (numpy: itself) behind a layer of its own chunk keys that graph
    optimisation keeps: dask fuses blockwise layers into whatever reads
    them (renaming their chunks), but not through a materialized layer, so
    these keys stay in any writer's graph to be grouped by
    (:func:`write_by_chunk_rows`). Each key is an alias of ``x``'s chunk:
    nothing is copied or run."""
    if not is_lazy(x):
        return x
    from dask._task_spec import Alias

    from .graph import array

    name = f"fns-keyed-{x.name}"
    dsk = {}
    for idx in itertools.product(*(range(n) for n in x.numblocks)):
        dsk[(name, *idx)] = Alias((name, *idx), (x.name, *idx))
    return array(name, dsk, x.chunks, x.dtype, [x])


def chunk_rows(array) -> list[list]:
    """The chunk keys of a dask array, one group per chunk row (its
    second-to-last axis), top to bottom: the order a raster is written in
    bands of rows."""
    *other, rows, cols = (range(n) for n in array.numblocks)
    groups: list[list] = [[] for _ in rows]
    for idx in itertools.product(*other, rows, cols):
        groups[idx[-2]].append((array.name, *idx))
    return groups


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


def _group_runs(graph: dict, groups: list[list], finals: set) -> list[list]:
    """The tasks each group runs, each after its dependencies (depth first
    from the group's anchors, in their order), a task downstream of
    anchors (a chunk's store) right after the last of them: a computed
    chunk is written and freed at once, not held to its group's end."""
    order = _topological(graph, dependents(graph))
    # Each task's group and place: the latest group, and the latest anchor
    # in the order of all groups, upstream of it.
    group: dict = {}
    place: dict = {}
    for g, anchors in enumerate(groups):
        for a in anchors:
            group[a], place[a] = g, len(place)
    for k in order:
        ups = [d for d in graph[k].dependencies if d in group]
        if ups and k not in group:
            group[k] = max(group[d] for d in ups)
            place[k] = max(place[d] for d in ups)
    targets: list[list] = [list(anchors) for anchors in groups]
    anchored = {a for anchors in groups for a in anchors}
    rank = {k: i for i, k in enumerate(order)}
    for k in order:
        if k in group and k not in anchored:
            targets[group[k]].append(k)
    for tops in targets:
        tops.sort(key=lambda k: (place[k], k not in anchored, rank[k]))
    targets[-1].extend(k for k in order if k not in group and k in finals)
    done: set = set()
    return [_postorder(graph, tops, done) for tops in targets]


def _postorder(graph: dict, tops: list, done: set) -> list:
    """``tops`` and what they need that is not in ``done`` (updated), each
    key after its dependencies, depth first."""
    out: list = []
    for top in tops:
        if top in done:
            continue
        done.add(top)
        stack = [(top, iter(sorted(graph[top].dependencies, key=str)))]
        while stack:
            key, deps = stack[-1]
            d = next(deps, None)
            if d is None:
                stack.pop()
                out.append(key)
            elif d not in done:
                done.add(d)
                stack.append((d, iter(sorted(graph[d].dependencies, key=str))))
    return out


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
