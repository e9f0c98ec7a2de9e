"""A dask graph in the least memory that running it needs, for the
package's own scheduler (:mod:`.ordered`).

A writer's graph comes from xarray as a task-spec graph
(``dask._task_spec``, private, as in :mod:`.schedule`): wrapping the store
in a delayed object renames every key (``ProhibitReuse``), so each task
is held twice (an identity task around a renamed copy), and every node,
down to each reference to another key, carries its own frozenset of
dependencies. At 40 000² in 512² blocks that is ~250 MiB for the 62 000
tasks of a ``predict`` map written to Zarr, more than the strips and
blocks in flight. :func:`compact` keeps what a run reads: per task its
function, its arguments (with one shared reference object per key) and
one tuple of the keys it needs; the identity wrappers go. Nodes of other
kinds (a cluster's barrier task, say) are kept whole and called as dask
calls them. A compacted node is called with its dependencies' values as
a task-spec node is, so the scheduler runs either.
"""

from __future__ import annotations

__all__ = ["Node", "compact"]


class _Ref:
    """A reference to another task's result."""

    __slots__ = ("key",)

    def __init__(self, key):
        self.key = key


class _Call:
    """A call inside a task: ``func(*args, **kwargs)`` with references and
    inner calls evaluated first."""

    __slots__ = ("args", "func", "kwargs")

    def __init__(self, func, args: tuple, kwargs: dict | None):
        self.func, self.args, self.kwargs = func, args, kwargs


class Node:
    """One task of a compacted graph: ``node(values)`` runs it on the values
    of its ``dependencies`` (a mapping from key to value)."""

    __slots__ = ("body", "dependencies")

    def __init__(self, body, dependencies: tuple):
        self.body, self.dependencies = body, dependencies

    def __call__(self, values):
        return _evaluate(self.body, values)

    def __repr__(self) -> str:
        return f"<Node {_label(self.body)} needs {len(self.dependencies)}>"


def _label(body) -> str:
    if isinstance(body, _Call):
        return getattr(body.func, "__name__", type(body.func).__name__)
    return type(body).__name__


def _evaluate(a, values):
    kind = type(a)
    if kind is _Ref:
        return values[a.key]
    if kind is _Call:
        args = [_evaluate(x, values) for x in a.args]
        if a.kwargs:
            return a.func(*args, **{k: _evaluate(v, values) for k, v in a.kwargs.items()})
        return a.func(*args)
    if kind is _Opaque:
        return a.node(values)
    return a


class _Opaque:
    """A node compact does not know, called as dask calls it."""

    __slots__ = ("node",)

    def __init__(self, node):
        self.node = node


def _list(*items):
    return list(items)


def _tuple(*items):
    return items


def _set(*items):
    return set(items)


#: The containers of results a task builds, by the type dask records.
_MAKERS = {list: _list, tuple: _tuple, set: _set}


def compact(graph: dict) -> dict:
    """``graph`` (task-spec nodes) as :class:`Node` objects, with equal keys,
    the same dependencies and results; the keys are fresh copies
    (:func:`_fresh`), one object per key shared by every reference to it,
    so nothing of ``graph`` is kept alive."""
    from dask._expr import ProhibitReuse
    from dask._task_spec import (
        Alias,
        DataNode,
        Dict,
        GraphNode,
        List,
        Set,
        Task,
        TaskRef,
        Tuple,
        _identity_cast,
    )

    tasks = {Task, List, Tuple, Set, Dict}
    containers = {List, Tuple, Set}
    makers = {List.to_container, _identity_cast}
    canonical = {k: _fresh(k) for k in graph}
    refs: dict = {}

    def ref(key):
        key = canonical.get(key, key)
        r = refs.get(key)
        if r is None:
            r = refs[key] = _Ref(key)
        return r

    def body(a):
        kind = type(a)
        if kind is Alias:
            return ref(a.target)
        if kind is TaskRef:
            return ref(a.key)
        if kind is DataNode:
            return a.value
        if kind in tasks:
            if a.func is ProhibitReuse._identity and len(a.args) == 1 and not a.kwargs:
                return body(a.args[0])  # the renaming's wrapper: its inner task
            args = tuple(body(x) for x in a.args)
            if len(a.kwargs) == 1:  # a list, tuple or set of results: no kwargs to hold
                made = a.kwargs.get("constructor" if kind in containers else "typ")
                if a.func in makers and made in _MAKERS:
                    return _Call(_MAKERS[made], args, None)
            kwargs = {k: body(v) for k, v in a.kwargs.items()} or None
            return _Call(a.func, args, kwargs)
        if isinstance(a, GraphNode):  # a kind of node compact does not know
            return _Opaque(a)
        return a

    return {
        canonical[key]: Node(body(node), tuple(canonical.get(d, d) for d in node.dependencies))
        for key, node in graph.items()
    }


def _fresh(key):
    """An equal copy of ``key`` sharing no object with it (so the memory of
    the graph it came from is freed whole once that graph goes)."""
    if isinstance(key, tuple):
        return tuple(_fresh(k) for k in key)
    if type(key) is str:
        return key.encode("utf-8", "surrogatepass").decode("utf-8", "surrogatepass")
    return key
