"""Class-balanced sampling order: tiles drawn with replacement, in
proportion to a weight, reading each drawn chunk once per epoch.

Pure numpy, no framework, like :mod:`.order` (whose
:class:`~.order.TileOrder` interface :class:`BalancedOrder` mirrors, so
the feeds can take either).

An epoch draws ``n_draws`` tiles (by default as many as there are) with
replacement, tile ``i`` with probability ``w_i / sum_j w_j``: one
multinomial draw over all tiles from the epoch's seed, so the distribution
is exact whatever the chunking. The drawn tiles are then grouped by the tile
chunk they live in; the chunks that got a draw are cut into *windows* of
``ceil(buffer / mean chunk)`` chunks, stratified by position along ``tile``
as :class:`~.order.TileOrder` does (window ``j`` takes one random chunk
of every stratum). An epoch visits the windows in a random order, shuffles
the draws of each window and cuts batches, carrying a partial batch over
into the next window. Each chunk is in one window, so it is read once per
epoch, and a chunk no tile was drawn from is not read at all.

:func:`tile_weights_from_counts` gives the weights the feeds use: the
inverse pixel share of the rarest class a tile holds.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np

from .._core.blocks import chunk_bounds
from ..errors import InvalidParameterError, check_positive_int, check_seed

__all__ = ["BalancedOrder", "balanced_order", "tile_weights_from_counts"]


def tile_weights_from_counts(counts, *, ignore: int | Sequence[int] | None = None) -> np.ndarray:
    """Sampling weight of each tile: the inverse pixel share, over the whole
    set, of the rarest class present in the tile.

    With ``n_tc`` the pixels of class ``c`` in tile ``t``, ``n_c = sum_t
    n_tc`` and ``N = sum_c n_c``: ``w_t = max {N / n_c : n_tc > 0}``. A tile
    holding a pixel of a class with 1 % of the set's pixels is drawn 100
    times as often as a tile of a class with all of them; a tile holding only
    common classes weighs what its rarest one does. A tile with no labelled
    pixel gets weight 0 and is never drawn: all its pixels are ignored by the
    loss, so a draw of it would be a wasted step.

    Parameters
    ----------
    counts
        ``(tile, class)`` pixel counts (non-negative integers), e.g.
        ``tiles.fns.class_counts(...).values``.
    ignore
        Class ids (columns) to leave out, as if unlabelled.

    Returns
    -------
    numpy.ndarray
        ``(tile,)`` float64 weights (only their ratios matter).

    Examples
    --------
    >>> counts = np.array([[80, 0], [10, 10], [0, 0]])  # class 1: 10 % of the pixels
    >>> tile_weights_from_counts(counts)
    array([ 1.11111111, 10.        ,  0.        ])
    """
    counts = np.asarray(counts)
    if counts.ndim != 2 or counts.dtype.kind not in "iub":
        raise InvalidParameterError(
            f"counts must be (tile, class) integer pixel counts; got dtype {counts.dtype} "
            f"with shape {counts.shape}"
        )
    if counts.size and counts.min() < 0:
        raise InvalidParameterError("counts must be non-negative pixel counts")
    counts = counts.astype(np.int64)
    if ignore is not None:
        drop = np.atleast_1d(np.asarray(ignore, dtype=np.int64))
        bad = drop[(drop < 0) | (drop >= counts.shape[1])]
        if bad.size:
            raise InvalidParameterError(
                f"ignore names classes {bad.tolist()}, but the counts have classes "
                f"0..{counts.shape[1] - 1}"
            )
        counts = counts.copy()
        counts[:, drop] = 0
    totals = counts.sum(0)
    n = totals.sum()
    if not n:
        raise InvalidParameterError(
            "no tile has a labelled pixel, so no tile can be weighted: check the counts "
            "(label=, ignore_index=)"
        )
    with np.errstate(divide="ignore"):
        inverse = np.where(totals > 0, n / np.maximum(totals, 1), 0.0)
    return np.where(counts > 0, inverse, 0.0).max(1, initial=0.0)


@dataclass(frozen=True, eq=False)
class BalancedOrder:
    """Which tiles go in which batch, epoch by epoch, drawn with replacement
    in proportion to ``weights`` (the interface of
    :class:`~.order.TileOrder`).

    Parameters
    ----------
    weights
        ``(tile,)`` non-negative weights, not all 0 (e.g.
        :func:`tile_weights_from_counts`).
    chunks
        Tile count of each chunk along ``tile``, in order (one chunk for
        in-memory tiles).
    batch_size
        Tiles per batch.
    seed
        Seed (``None``: 0): epoch ``e`` draws from
        ``numpy.random.SeedSequence((seed, e))``, the same draws on every
        worker and every run.
    drop_last
        Leave out the last partial batch (of each worker).
    buffer
        Least number of tiles to shuffle among: a window holds
        ``ceil(buffer / mean chunk)`` of the drawn chunks.
    n_draws
        Tiles per epoch; by default as many as there are tiles.

    Examples
    --------
    >>> order = BalancedOrder(np.array([1.0, 0.0, 0.0, 3.0]), chunks=(2, 2), batch_size=3, seed=0)
    >>> len(order)
    2
    >>> batches = list(order.batches(epoch=0))
    >>> sum(len(idx) for _, idx in batches), {int(t) for _, idx in batches for t in idx} <= {0, 3}
    (4, True)
    """

    weights: np.ndarray
    chunks: tuple[int, ...]
    batch_size: int
    seed: int | None = None
    drop_last: bool = False
    buffer: int = 1024
    n_draws: int | None = None

    def __post_init__(self) -> None:
        w = np.asarray(self.weights, dtype=np.float64)
        if w.ndim != 1 or not np.isfinite(w).all() or (w < 0).any() or not w.sum() > 0:
            raise InvalidParameterError(
                "weights must be one finite, non-negative weight per tile, not all 0"
            )
        chunks = tuple(check_positive_int(c, "a chunk size", minimum=0) for c in self.chunks)
        if sum(chunks) != w.size:
            raise InvalidParameterError(
                f"the chunks hold {sum(chunks)} tiles but there are {w.size} weights"
            )
        w = w.copy()
        w.flags.writeable = False
        object.__setattr__(self, "weights", w)
        object.__setattr__(self, "chunks", chunks)
        object.__setattr__(self, "batch_size", check_positive_int(self.batch_size, "batch_size"))
        object.__setattr__(self, "buffer", check_positive_int(self.buffer, "buffer"))
        object.__setattr__(self, "seed", check_seed(self.seed, "BalancedOrder", default=0))
        if self.n_draws is not None:
            object.__setattr__(self, "n_draws", check_positive_int(self.n_draws, "n_draws"))

    @property
    def n(self) -> int:
        """Number of tiles."""
        return int(self.weights.size)

    @property
    def draws_per_epoch(self) -> int:
        return self.n_draws if self.n_draws is not None else self.n

    def __len__(self) -> int:
        """Batches per epoch with one worker (the same every epoch)."""
        return self.count(1)

    def count(self, workers: int = 1, epoch: int = 0) -> int:
        """Batches in ``epoch`` over all ``workers`` (each keeps its own last
        partial batch unless ``drop_last``). With one worker it is the same
        every epoch; with more it may differ between epochs by up to
        ``workers - 1``, as the windows fall to the workers."""
        sizes = [sum(len(t) for _, t in self._plan(epoch, workers)[w]) for w in range(workers)]
        full, rest = np.divmod(np.asarray(sizes, np.int64), self.batch_size)
        return int(full.sum()) + (0 if self.drop_last else int(np.count_nonzero(rest)))

    def rng(self, epoch: int, *key: int) -> np.random.Generator:
        """The stream ``key`` of ``epoch``: ``(0,)`` the draws, ``(1,)`` the
        windows, ``(2, w)`` the order within window ``w``."""
        entropy = (self.seed, int(epoch))
        return np.random.default_rng(np.random.SeedSequence(entropy, spawn_key=key))

    def draws(self, epoch: int) -> np.ndarray:
        """``(tile,)`` int64: how many times each tile is drawn in ``epoch``."""
        p = self.weights / self.weights.sum()
        return self.rng(epoch, 0).multinomial(self.draws_per_epoch, p)

    def windows(
        self, epoch: int, worker: int = 0, workers: int = 1
    ) -> list[tuple[list[int], np.ndarray]]:
        """``worker``'s windows in ``epoch``, in the order it visits them: the
        chunks each loads (ascending) and its drawn tile indices, shuffled."""
        return self._plan(epoch, workers)[worker]

    def _plan(self, epoch: int, workers: int) -> list[list[tuple[list[int], np.ndarray]]]:
        """Every worker's windows, from one stream per epoch (each worker
        draws the whole plan, so all agree on it)."""
        workers = check_positive_int(workers, "workers")
        layout = self.rng(epoch, 1)
        times = self.draws(epoch)
        bounds = np.asarray(chunk_bounds(self.chunks), dtype=np.int64)
        owner = np.repeat(np.arange(len(self.chunks)), self.chunks)
        per_chunk = np.bincount(owner, weights=times, minlength=len(self.chunks))
        drawn = np.flatnonzero(per_chunk)
        k = drawn.size
        mean_chunk = max(sum(self.chunks[c] for c in drawn) / max(k, 1), 1)
        per = max(1, min(k, math.ceil(self.buffer / mean_chunk)))
        strata = np.array_split(drawn, per)
        for s in strata:
            layout.shuffle(s)
        nwin = max((len(s) for s in strata), default=0)
        wins = [sorted(int(s[j]) for s in strata if j < len(s)) for j in range(nwin)]
        wins = [wins[j] for j in layout.permutation(nwin)]
        plan: list[list[tuple[list[int], np.ndarray]]] = [[] for _ in range(workers)]
        held = np.zeros(workers, np.int64)
        for w, window in enumerate(wins):
            tiles = np.concatenate([np.arange(bounds[c], bounds[c + 1]) for c in window])
            tiles = np.repeat(tiles, times[tiles])
            # a stream per window, so a window's order does not depend on the others
            shuffle = self.rng(epoch, 2, w)
            owner = int(np.argmin(held))  # the worker with the fewest draws so far
            plan[owner].append((window, shuffle.permutation(tiles)))
            held[owner] += tiles.size
        return plan

    def batches(
        self, epoch: int, worker: int = 0, workers: int = 1
    ) -> Iterator[tuple[list[int], np.ndarray]]:
        """Yield ``(chunks to load, tile indices of the next batch)`` of
        ``worker`` (of ``workers``), as :meth:`~.order.TileOrder.batches`
        does: the chunk list is non-empty when the batch needs chunks not yet
        loaded (a new window), and the caller may drop the others then. A
        tile drawn twice appears twice."""
        bounds = np.asarray(chunk_bounds(self.chunks), dtype=np.int64)
        carry = np.empty(0, np.int64)
        carry_chunks: list[int] = []
        for window, tiles in self.windows(epoch, worker, workers):
            pool = np.concatenate([carry, tiles])
            needs = sorted(set(carry_chunks) | set(window))
            full = len(pool) // self.batch_size * self.batch_size
            for a in range(0, full, self.batch_size):
                yield (needs if a == 0 else []), pool[a : a + self.batch_size]
                needs = []
            carry = pool[full:]
            carry_chunks = sorted(
                {int(c) for c in np.searchsorted(bounds, carry, side="right") - 1}
            )
            if needs:  # nothing yielded from this window: still keep it loaded
                carry_chunks = sorted(set(carry_chunks) | set(window))
        if len(carry) and not self.drop_last:
            yield carry_chunks, carry


def balanced_order(
    weights,
    *,
    chunks: Sequence[int] | None = None,
    seed: int | None = 0,
    epoch: int = 0,
    n_draws: int | None = None,
    buffer: int = 1024,
) -> list[tuple[list[int], np.ndarray]]:
    """One balanced epoch: tiles drawn with replacement in proportion to
    ``weights``, grouped into windows of whole tile chunks.

    Parameters
    ----------
    weights
        ``(tile,)`` non-negative weights, not all 0
        (:func:`tile_weights_from_counts`).
    chunks
        Tile count of each chunk along ``tile`` (default: one chunk).
    seed, epoch
        The draws and their order depend on these alone.
    n_draws
        Tiles drawn (default: as many as there are tiles).
    buffer
        Least number of tiles shuffled among (see :class:`BalancedOrder`).

    Returns
    -------
    list of (list of int, numpy.ndarray)
        Each window, in the order an epoch visits it: the chunks to read
        (each chunk in at most one window) and the drawn tile indices in the
        order they are fed. The drawn indices of all windows together are
        the epoch: ``n_draws`` of them.

    Examples
    --------
    >>> wins = balanced_order(np.array([0.0, 1.0, 1.0, 0.0, 0.0, 2.0]), chunks=(3, 3), seed=0)
    >>> sum(len(t) for _, t in wins), sorted(c for cs, _ in wins for c in cs)
    (6, [0, 1])
    """
    n = np.asarray(weights).shape[0] if np.ndim(weights) else 0
    sizes = tuple(chunks) if chunks is not None else (n,)
    order = BalancedOrder(weights, sizes, 1, seed=seed, buffer=buffer, n_draws=n_draws)
    return order.windows(epoch)
