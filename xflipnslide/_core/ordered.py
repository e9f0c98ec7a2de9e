"""The package's ordered scheduler at work: the state of one run (what is
ready, waiting, running, finished and held) and the threads that run it;
:mod:`.schedule` builds the order (each task's group and priority) and
calls :func:`run`.

**A memory budget.** Rows of windows overlap, so a band of input chunks
read by one row of tiles is read again by the next few rows; held between
them, the band is as wide as the scene, and grows with it. With a
``budget`` (bytes), once the results held pass it, the run drops large
results that are cheap to compute again, the one needed latest first
(Belady's rule, from each result's next reader in the run's order), down
to three quarters of it, and computes a dropped result again when a task
needs it, from what it was made of: memory stays near the budget whatever
the scene's size, at the cost of reading the dropped input chunks again.
A result is dropped only if it is

* at least :data:`MIN_DROP` bytes (statistics, tokens and small arrays
  are never dropped);
* next read by a later group than the ones that may run now (the
  earliest unfinished group and the ``ahead`` after it): what the running
  groups read stays, so a result is computed at most once per group that
  reads it, and a budget below a group's own needs costs memory above it,
  never a loop of recomputation;
* made again in at most :data:`MAX_RECOMPUTE` tasks: the chain back to
  small held results (kept, and then held until it is made again) and
  the graph's sources, counting the large results it passes as made again
  too. An input chunk's read, mask, fill and standardisation are; a
  whole-scene reduction (once its small result is released), or the
  partial sums one row of ``predict``'s blocks hands the next (chained to
  every row before), are not; nor is anything that would run ``predict``'s
  model again (:data:`.graph.COSTLY_PREFIX`);
* not an input of a task that is running or waiting for another input
  to be made again.

Results are never wrong for it: a task starts only with every input held.
Without a budget nothing is dropped and every result is held until its
last reader has run.
"""

from __future__ import annotations

import bisect
import heapq
import itertools
import threading
from collections import Counter
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait

from .graph import costly

__all__ = ["MAX_RECOMPUTE", "MIN_DROP", "run"]

#: The smallest result the budget drops (bytes).
MIN_DROP = 64 * 1024

#: The most tasks a dropped result may take to compute again.
MAX_RECOMPUTE = 64

#: What the budget drops down to, once passed: a share of it (fewer rounds).
_LOW = 0.75


def dependents(graph: dict) -> dict:
    """Each key's readers in ``graph``."""
    out: dict = {k: [] for k in graph}
    for k, node in graph.items():
        for d in node.dependencies:
            out[d].append(k)
    return out


class _State:
    """The bookkeeping of one run: what is ready (a heap by priority),
    waiting, running and finished, and the results held (``cache``), in
    the shape dask's callbacks read (``state`` of the local scheduler).

    Heap entries are ``(priority, depth, seq, key, group)``: a task of the
    order has depth 0; a dropped result computed again for a task takes
    that task's priority and group, and a depth below it, so it runs just
    before it (and its own dropped inputs before it)."""

    def __init__(self, graph: dict, runs: list[list], finals: set, ahead: int, budget):
        from dask.sizeof import sizeof

        self.graph, self.ahead, self.budget, self.sizeof = graph, ahead, budget, sizeof
        self.priority = {k: i for i, k in enumerate(k for run in runs for k in run)}
        self.group = {k: g for g, run in enumerate(runs) for k in run}
        self.left = [len(run) for run in runs]
        self.starts = list(itertools.accumulate((len(run) for run in runs[:-1]), initial=0))
        self.current = 0
        self.finals = finals
        self.deps = {k: list(graph[k].dependencies) for k in self.priority}
        self.dependents = dependents(graph)
        self.readers = {k: len(self.dependents[k]) + (k in finals) for k in graph}
        self.count = {k: len(v) for k, v in self.deps.items()}
        self.size: dict = {}  # bytes of each result, once it ran
        self.held = 0  # bytes of the results held
        self.shed_at = budget  # held bytes that start the next round of drops
        self.kept: Counter = Counter()  # small results a dropped one is made from
        self.sources: dict = {}  # dropped result -> the small results it keeps
        self.costly = {k for k in graph if costly(k)} if budget is not None else set()
        self.pinned: Counter = Counter()  # held for a task running or waiting
        self.pins: dict = {}  # task -> the inputs it pinned
        self.blocked: dict = {}  # result computed again -> tasks waiting for it
        self.missing: dict = {}  # waiting task -> (results it waits for, its entry)
        self.again: dict = {}  # result to compute again -> the priority of its reader
        self.recomputed = 0  # tasks run a second time or more
        self.seq = itertools.count()
        ready = [self._entry(k) for k, c in self.count.items() if not c]
        heapq.heapify(ready)
        self.view = {
            "cache": {},
            "ready": ready,
            "waiting": {k for k, c in self.count.items() if c},
            "running": set(),
            "finished": set(),
        }
        self._advance()

    def _entry(self, key, priority=None, depth: int = 0, group=None) -> tuple:
        p = self.priority[key] if priority is None else priority
        g = self.group[key] if group is None else group
        return (p, depth, next(self.seq), key, g)

    def _advance(self) -> None:
        while self.current < len(self.left) and not self.left[self.current]:
            self.current += 1

    def next_task(self):
        """The ready key to run now, or None (nothing ready, or the next one
        belongs to a group too far ahead). A ready task an input of which
        was dropped waits while that input is computed again."""
        ready, cache = self.view["ready"], self.view["cache"]
        while ready:
            entry = ready[0]
            if entry[4] > self.current + self.ahead:
                return None
            heapq.heappop(ready)
            key = entry[3]
            if key not in self.pins:
                self.pins[key] = self.deps[key]
                self.pinned.update(self.deps[key])
            gone = [d for d in self.deps[key] if d not in cache]
            if gone:
                self._wait_for(key, gone, entry)
                continue
            self.view["running"].add(key)
            return key
        return None

    def _wait_for(self, key, gone: list, entry: tuple) -> None:
        """``key`` waits for its dropped inputs ``gone``, each computed again
        just before it (its readers counted again: it reads them once more)."""
        p, depth, _, _, g = entry
        self.missing[key] = [len(gone), entry]
        self.view["waiting"].add(key)
        for d in gone:
            self.blocked.setdefault(d, []).append(key)
            if d in self.again:  # already on its way
                continue
            self.again[d] = p
            for dd in self.deps[d]:  # read once more
                self.readers[dd] += 1
            heapq.heappush(self.view["ready"], self._entry(d, p, depth - 1, g))

    def arguments(self, key) -> dict:
        cache = self.view["cache"]
        return {d: cache[d] for d in self.deps[key]}

    def finish(self, key, value) -> None:
        view = self.view
        first = key not in view["finished"]
        view["running"].discard(key)
        view["finished"].add(key)
        self._hold(key, value)
        self.pinned.subtract(self.pins.pop(key, ()))
        for d in self.deps[key]:
            self.readers[d] -= 1
            self._release(d)
        if first:
            for c in self.dependents[key]:
                self.count[c] -= 1
                if not self.count[c]:
                    view["waiting"].discard(c)
                    heapq.heappush(view["ready"], self._entry(c))
            self.left[self.group[key]] -= 1
            self._advance()
        else:
            self.recomputed += 1
            self.again.pop(key, None)
            for b in self.sources.pop(key, ()):
                self.kept[b] -= 1
                self._release(b)
        for t in self.blocked.pop(key, ()):
            wait_for = self.missing[t]
            wait_for[0] -= 1
            if not wait_for[0]:
                del self.missing[t]
                view["waiting"].discard(t)
                p, depth, _, _, g = wait_for[1]
                heapq.heappush(view["ready"], self._entry(t, p, depth, g))
        self._release(key)
        if self.budget is not None and self.held > self.shed_at:
            self._shed()

    def _hold(self, key, value) -> None:
        self.view["cache"][key] = value
        if self.budget is not None:
            self.size[key] = self.sizeof(value)
            self.held += self.size[key]

    def _release(self, key) -> None:
        """Free ``key`` if held and neither read again nor kept."""
        if not self.readers[key] and not self.kept[key] and key in self.view["cache"]:
            self._drop(key)

    def _drop(self, key) -> None:
        del self.view["cache"][key]
        if self.budget is not None:
            self.held -= self.size.get(key, 0)
            if self.held <= self.budget:
                self.shed_at = self.budget

    def _next_use(self, key) -> int:
        """The priority of ``key``'s next reader: the earliest unfinished one,
        or one to run again."""
        finished = self.view["finished"]
        return min(
            (
                self.again[c] if c in self.again else self.priority[c]
                for c in self.dependents[key]
                if c in self.again or c not in finished
            ),
            default=-1,
        )

    def _later(self, use: int) -> bool:
        """Whether the task of priority ``use`` is in a group that may not run
        yet."""
        return bisect.bisect_right(self.starts, use) - 1 > self.current + self.ahead

    def _made_from(self, key):
        """The small held results ``key`` is made again from, or None where
        that takes more than :data:`MAX_RECOMPUTE` tasks (module docstring)."""
        cache, seen, stack, small = self.view["cache"], {key}, [key], set()
        while stack:
            for d in self.deps[stack.pop()]:
                if d in seen or d in small:
                    continue
                if d in cache and self.size.get(d, 0) < MIN_DROP:
                    small.add(d)
                    continue
                seen.add(d)
                if len(seen) > MAX_RECOMPUTE or d in self.costly:
                    return None
                stack.append(d)
        return small

    def _shed(self) -> None:
        """Drop held results, needed latest first, down to :data:`_LOW` of the
        budget (module docstring). Where what may be dropped does not bring
        it there, the next round waits until the held bytes have grown by a
        quarter of the budget again (a round scans what is held)."""
        low, cache = self.budget * _LOW, self.view["cache"]
        candidates = [
            (self._next_use(k), k)
            for k in cache
            if self.size[k] >= MIN_DROP
            and not self.pinned[k]
            and k not in self.finals
            and k not in self.costly
        ]
        candidates = [c for c in candidates if self._later(c[0])]
        candidates.sort(key=lambda c: c[0], reverse=True)
        for _, k in candidates:
            if self.held <= low:
                break
            small = self._made_from(k)
            if small is not None:
                self.sources[k] = small
                self.kept.update(small)
                self._drop(k)
        self.shed_at = max(self.budget, self.held + self.budget - low)


def run(graph: dict, runs: list[list], finals: set, workers: int, ahead: int, budget=None) -> int:
    """Run ``graph`` in the order of ``runs`` on ``workers`` threads (in the
    calling thread on one), with dask's active callbacks: a task of a group
    more than ``ahead`` past the earliest unfinished one waits; ``budget``
    (bytes or None) bounds the results held (module docstring). Returns how
    many tasks ran again."""
    from dask.callbacks import local_callbacks, unpack_callbacks

    with local_callbacks() as callbacks:
        start, start_state, pretask, posttask, finish = unpack_callbacks(callbacks)
        for cb in start:
            cb(graph)
        state = _State(graph, runs, finals, ahead, budget)
        for cb in start_state:
            cb(graph, state.view)
        errored = True
        try:
            if workers <= 1:
                _run_inline(state, pretask, posttask)
            else:
                _run_pool(state, workers, pretask, posttask)
            errored = False
        finally:
            for cb in finish:
                cb(graph, state.view, errored)
    return state.recomputed


def _run_inline(state: _State, pretask, posttask) -> None:
    while (key := state.next_task()) is not None:
        for cb in pretask:
            cb(key, state.graph, state.view)
        _finished(state, key, state.graph[key](state.arguments(key)), posttask)


def _finished(state: _State, key, value, posttask) -> None:
    """Record ``key``'s result, then tell the callbacks (in the scheduling
    thread, as dask's local scheduler does)."""
    state.finish(key, value)
    for cb in posttask:
        cb(key, value, state.graph, state.view, threading.get_ident())


#: One pool of threads per worker count, kept between runs (as dask's
#: threaded scheduler keeps its own): no thread start-up per write.
_POOLS: dict[int, ThreadPoolExecutor] = {}
_POOLS_LOCK = threading.Lock()


def _pool(workers: int) -> ThreadPoolExecutor:
    with _POOLS_LOCK:
        if workers not in _POOLS:
            _POOLS[workers] = ThreadPoolExecutor(workers, thread_name_prefix="fns-schedule")
        return _POOLS[workers]


def _run_pool(state: _State, workers: int, pretask, posttask) -> None:
    pool, running = _pool(workers), {}
    try:
        while True:
            while len(running) < workers and (key := state.next_task()) is not None:
                for cb in pretask:
                    cb(key, state.graph, state.view)
                running[pool.submit(state.graph[key], state.arguments(key))] = key
            if not running:
                return
            done, _ = wait(running, return_when=FIRST_COMPLETED)
            for future in done:
                _finished(state, running.pop(future), future.result(), posttask)
    finally:
        for future in running:
            future.cancel()
        wait(running)  # a failed run returns once its other tasks have stopped
