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
bottom of the scene). In-memory tiles are one chunk: a full shuffle.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np

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
        Seed: epoch ``e`` uses ``numpy.random.default_rng((seed, e))``.
    drop_last
        Leave out the last partial batch (of each worker).
    buffer
        Least number of tiles held in memory to shuffle among (whole chunks
        are loaded: a window holds ``ceil(buffer / chunk)`` chunks).
    """

    chunks: tuple[int, ...]
    batch_size: int
    shuffle: bool = False
    seed: int | None = None
    drop_last: bool = False
    buffer: int = 1024

    @property
    def n(self) -> int:
        return int(sum(self.chunks))

    def __len__(self) -> int:
        """Batches per epoch (with one worker)."""
        full, rest = divmod(self.n, self.batch_size)
        return full + (1 if rest and not self.drop_last else 0)

    def windows(self, epoch: int) -> list[list[int]]:
        """The chunk indices of each window, in the order they are visited."""
        k = len(self.chunks)
        if not self.shuffle:
            return [[i] for i in range(k)]
        mean_chunk = max(self.n / max(k, 1), 1)
        per = max(1, min(k, math.ceil(self.buffer / mean_chunk)))
        rng = self.rng(epoch)
        strata = np.array_split(np.arange(k), per)
        for s in strata:
            rng.shuffle(s)
        nwin = max(len(s) for s in strata)
        wins = [[int(s[j]) for s in strata if j < len(s)] for j in range(nwin)]
        order = rng.permutation(nwin)
        return [wins[j] for j in order]

    def rng(self, epoch: int) -> np.random.Generator:
        seed = self.seed if self.seed is not None else 0
        return np.random.default_rng((int(seed), int(epoch)))

    def batches(
        self, epoch: int, worker: int = 0, workers: int = 1
    ) -> Iterator[tuple[list[int], np.ndarray]]:
        """Yield ``(chunks to load, tile indices of the next batch)``; the
        chunk list is non-empty when the batch needs chunks not yet loaded
        (a new window), and the caller may drop earlier windows then."""
        bounds = np.concatenate([[0], np.cumsum(self.chunks)]).astype(np.int64)
        carry = np.empty(0, np.int64)
        carry_chunks: list[int] = []
        for w, window in enumerate(self.windows(epoch)):
            if w % workers != worker:
                continue
            tiles = np.concatenate([np.arange(bounds[c], bounds[c + 1]) for c in window])
            if self.shuffle:
                # a stream per window, so workers agree on each window's order
                tiles = np.random.default_rng((int(self.seed or 0), int(epoch), w)).permutation(
                    tiles
                )
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


def chunk_sizes(sizes: Sequence[int] | None, n: int) -> tuple[int, ...]:
    """Chunk sizes along ``tile`` (one chunk for in-memory tiles)."""
    return tuple(int(c) for c in sizes) if sizes else (n,)
