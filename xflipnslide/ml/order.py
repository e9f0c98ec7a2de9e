"""The order tiles are fed in: per-tile shuffling that reads each chunk once.

Pure numpy, no framework: the PyTorch and TensorFlow feeds are built on
:class:`TileOrder`. Tiles are grouped into *windows* of whole tile chunks
(at least ``buffer`` tiles each); a shuffled epoch visits the windows in a
random order, loads each window's chunks once, shuffles its tiles and cuts
batches, carrying a partial batch over into the next window. Windows are
*stratified*: the chunks are sorted into as many strata as a window has
chunks (by position along ``tile``) and window ``j`` takes one random chunk
from every stratum, so each window, and so each batch, mixes tiles from
across the whole tile range (outer and inner Flip-n-Slide grids, top and
bottom of the scene). An in-order epoch reads runs of consecutive chunks of
at least ``buffer`` tiles, in order. In memory, the feed makes every tile
its own chunk (free to deal one by one) and shuffles among all of them: a
full shuffle.

With several workers (DataLoader processes) the chunks are *dealt*: each
worker reads its own chunks, so each chunk is still read once per epoch, and
batches its own tiles. Every worker gets the same number of chunks of each
size every epoch (which ones is drawn anew each shuffled epoch), so the
number of batches, the sum of the workers' own counts with each worker's
last partial batch, is known before the epoch and the same every epoch
(:meth:`TileOrder.count`).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from .._core.blocks import chunk_bounds
from ..errors import check_seed

__all__ = ["TileOrder"]


@dataclass(frozen=True)
class TileOrder:
    """Which tiles go in which batch, epoch by epoch.

    Parameters
    ----------
    chunks
        Tile count of each chunk along ``tile``, in order.
    batch_size
        Tiles per batch.
    shuffle
        Shuffle tiles (not only batches) every epoch.
    seed
        Seed, an int >= 0 (``None``: 0): epoch ``e`` uses
        ``numpy.random.default_rng((seed, e))``.
    drop_last
        Leave out the last partial batch (of each worker).
    buffer
        Least number of tiles held in memory to shuffle among (whole chunks
        are loaded: a window holds ``ceil(buffer / chunk)`` chunks); in
        order, windows are runs of chunks of at least ``buffer`` tiles.
    """

    chunks: tuple[int, ...]
    batch_size: int
    shuffle: bool = False
    seed: int | None = 0
    drop_last: bool = False
    buffer: int = 1024

    def __post_init__(self) -> None:
        object.__setattr__(self, "seed", check_seed(self.seed, "TileOrder", default=0))

    @property
    def n(self) -> int:
        return int(sum(self.chunks))

    def __len__(self) -> int:
        """Batches per epoch with one worker."""
        return self.count(1)

    def count(self, workers: int = 1, epoch: int = 0) -> int:
        """Batches per epoch over all ``workers``: each worker batches its own
        share of the tiles and keeps its own last partial batch (unless
        ``drop_last``), so this is the sum of the workers' counts. The shares
        are the same every epoch (:meth:`shares`), so the count is too
        (``epoch`` is taken for the interface of a balanced order)."""
        full, rest = np.divmod(self.shares(workers), self.batch_size)
        return int(full.sum()) + (0 if self.drop_last else int(np.count_nonzero(rest)))

    def shares(self, workers: int = 1) -> np.ndarray:
        """Tiles each worker gets per epoch: the same every epoch."""
        return sum((q * size for size, q in self._quotas(workers).items()), np.zeros(workers, int))

    def _quotas(self, workers: int) -> dict[int, np.ndarray]:
        """How many chunks of each size each worker gets: the chunks of one
        size are dealt evenly, the rest of them to the workers holding the
        fewest tiles so far (largest chunks first)."""
        sizes = np.asarray(self.chunks, dtype=np.int64)
        held = np.zeros(workers, np.int64)
        quotas = {}
        for size in sorted(set(self.chunks), reverse=True):
            m = int(np.count_nonzero(sizes == size))
            q = np.full(workers, m // workers, np.int64)
            q[np.argsort(held + q * size, kind="stable")[: m % workers]] += 1
            held += q * size
            quotas[size] = q
        return quotas

    def rng(self, epoch: int) -> np.random.Generator:
        return np.random.default_rng((self.seed, int(epoch)))

    def deal(self, epoch: int, workers: int = 1) -> list[np.ndarray]:
        """The chunk indices each worker reads in ``epoch``, ascending.

        Every worker gets the same number of chunks of each size every epoch
        (so the same number of tiles and batches); which chunks is drawn
        anew each shuffled epoch."""
        return self._plan(epoch, workers)[0]

    def windows(self, epoch: int, worker: int = 0, workers: int = 1) -> list[list[int]]:
        """The chunk indices of each of ``worker``'s windows, in the order it
        visits them."""
        return self._plan(epoch, workers)[1][worker]

    def _plan(self, epoch: int, workers: int) -> tuple[list[np.ndarray], list[list[list[int]]]]:
        """Every worker's chunks and windows, drawn from one stream per epoch
        (each worker draws the whole plan, so all agree on it)."""
        rng = self.rng(epoch) if self.shuffle else None
        if workers == 1:
            dealt = [np.arange(len(self.chunks))]
        else:
            sizes = np.asarray(self.chunks)
            owner = np.empty(len(sizes), np.int64)
            for size, quota in self._quotas(workers).items():
                ids = np.flatnonzero(sizes == size)
                if rng is not None:
                    ids = rng.permutation(ids)
                left, w = quota.copy(), 0
                for c in ids:  # round robin over the workers with room left
                    while not left[w]:
                        w = (w + 1) % workers
                    owner[c], left[w], w = w, left[w] - 1, (w + 1) % workers
            dealt = [np.flatnonzero(owner == w) for w in range(workers)]
        return dealt, [self._windows(ids, rng) for ids in dealt]

    def _windows(self, ids: np.ndarray, rng: np.random.Generator | None) -> list[list[int]]:
        """Stratified windows over the chunks ``ids`` (ascending), visited in
        a random order; when not shuffling, runs of consecutive chunks of at
        least ``buffer`` tiles, in order (read together, so a window's chunks
        are read in parallel)."""
        k = len(ids)
        if rng is None:  # in order: runs of chunks of at least ``buffer`` tiles
            wins: list[list[int]] = [[]]
            held = 0
            for c in ids.tolist():
                if held >= self.buffer:
                    wins.append([])
                    held = 0
                wins[-1].append(int(c))
                held += self.chunks[c]
            return wins if k else []
        if not k:
            return []
        mean_chunk = max(sum(self.chunks[c] for c in ids) / k, 1)
        per = max(1, min(k, math.ceil(self.buffer / mean_chunk)))
        strata = np.array_split(np.array(ids), per)
        for s in strata:
            rng.shuffle(s)
        nwin = max(len(s) for s in strata)
        wins = [[int(s[j]) for s in strata if j < len(s)] for j in range(nwin)]
        order = rng.permutation(nwin)
        return [wins[j] for j in order]

    def batches(
        self, epoch: int, worker: int = 0, workers: int = 1
    ) -> Iterator[tuple[list[int], np.ndarray]]:
        """Yield ``(chunks to load, tile indices of the next batch)`` of
        ``worker`` (of ``workers``); the chunk list is non-empty when the
        batch needs chunks not yet loaded (a new window), and the caller may
        drop earlier windows then."""
        bounds = np.asarray(chunk_bounds(self.chunks), dtype=np.int64)
        _, plan = self._plan(epoch, workers)
        first = sum(len(p) for p in plan[:worker])  # window numbers unique across workers
        carry = np.empty(0, np.int64)
        carry_chunks: list[int] = []
        for w, window in enumerate(plan[worker], start=first):
            tiles = np.concatenate([np.arange(bounds[c], bounds[c + 1]) for c in window])
            if self.shuffle:
                # a stream per window, so a window's order does not depend on the others
                tiles = np.random.default_rng((self.seed, int(epoch), w)).permutation(tiles)
            pool = np.concatenate([carry, tiles])
            needs = carry_chunks + window
            full = len(pool) // self.batch_size * self.batch_size
            for a in range(0, full, self.batch_size):
                yield (needs if a == 0 else []), pool[a : a + self.batch_size]
                needs = []
            carry = pool[full:]
            carry_chunks = sorted({int(np.searchsorted(bounds, t, "right") - 1) for t in carry})
            if needs:  # nothing yielded from this window: still keep it loaded
                carry_chunks = sorted(set(carry_chunks) | set(window))
        if len(carry) and not self.drop_last:
            yield carry_chunks, carry
