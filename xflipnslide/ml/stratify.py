"""Stratified assignment of spatial blocks to subsets (train, val, test...).

Pure numpy. A split deals whole blocks of the scene to the subsets, so no
pixel is in two of them; stratifying chooses *which* blocks go where, so
that every class of the set is in every subset (a rare class hidden from
validation cannot be measured) and each subset's class shares track the
whole set's.

The algorithm is iterative stratification (Sechidis, Tsoumakas & Vlahavas
2011, "On the Stratification of Multi-label Data", ECML PKDD, LNCS 6913,
pp. 145-158), with blocks as the examples and the classes whose pixels a
block holds as its labels, adapted in three ways:

1. *Demands are pixels.* Subset ``j`` of fraction ``r_j`` wants
   ``r_j n_c`` pixels of class ``c`` (``n_c`` the set's), and ``r_j S``
   of the block sizes (``S`` their sum); assigning a block subtracts its
   pixels and size.
2. *Presence first.* As in the paper, the class with the fewest unassigned
   blocks is taken next (ties at random) and all its unassigned blocks are
   dealt, in a seeded random order, each to the subset that wants most
   pixels of that class (ties: the subset that wants the most size, then
   at random) -- but among the subsets that hold no block of the class yet,
   while there are any. A class found in at least as many blocks as there
   are subsets so reaches every subset unless rarer classes already claimed
   its blocks.
3. *Repair.* Where that greedy pass left a class out of a subset though it
   has enough blocks, a block of it is moved there from a subset that has
   two or more of them and keeps every class it covers (or uncovers only
   classes too rare to be everywhere, which move along); a block of about
   the same size goes back the other way when that keeps coverage too.
   Where classes are still missing (small, tangled sets: blocks that each
   hold several of the rare classes), a bounded depth-first search over the
   blocks that hold coverable classes looks for a deal that covers them
   all, trying each block's current subset first.

Blocks without a labelled pixel go last, each to the subset that wants the
most size. Classes that still miss a subset (too few blocks, or blocks so
entangled with other classes' that no deal within the search's budget
covers them all) are returned, so the caller can warn naming them. The
result depends on the inputs and the seed alone.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import NamedTuple

import numpy as np

from ..errors import InvalidParameterError, check_seed

__all__ = ["Stratification", "assign_blocks"]


class Stratification(NamedTuple):
    """Result of :func:`assign_blocks`."""

    #: ``(n_blocks,)`` int64: the subset index of each block.
    subset: np.ndarray
    #: Class ids present in the set but missing from at least one subset.
    uncovered: tuple[int, ...]


def _fractions(fractions: Mapping[str, float] | Sequence[float]) -> np.ndarray:
    values = list(fractions.values()) if isinstance(fractions, Mapping) else list(fractions)
    try:
        r = np.array([float(v) for v in values])
    except (TypeError, ValueError) as exc:
        raise InvalidParameterError(f"fractions must be numbers; got {fractions!r}") from exc
    if not r.size or not np.isfinite(r).all() or (r <= 0).any() or abs(r.sum() - 1) > 1e-6:
        raise InvalidParameterError(
            f"fractions must be positive and add up to 1; got {fractions!r}"
        )
    return r


def _pick(rng: np.random.Generator, cands: np.ndarray, *keys: np.ndarray) -> int:
    """The candidate with the largest first key, then second..., then at random."""
    for key in keys:
        k = key[cands]
        cands = cands[k == k.max()]
    return int(cands[0] if cands.size == 1 else rng.choice(cands))


class _State:
    """Demands and coverage as blocks are dealt."""

    def __init__(self, hist: np.ndarray, sizes: np.ndarray, r: np.ndarray):
        self.hist, self.sizes, self.present = hist, sizes, hist > 0
        self.want = r[:, None] * hist.sum(0)[None, :].astype(np.float64)  # (subset, class) pixels
        self.room = r * sizes.sum()  # (subset,) size
        self.cover = np.zeros((r.size, hist.shape[1]), np.int64)  # blocks with the class
        self.owner = np.full(hist.shape[0], -1, np.int64)

    def put(self, b: int, j: int) -> None:
        self.owner[b] = j
        self.want[j] -= self.hist[b]
        self.room[j] -= self.sizes[b]
        self.cover[j] += self.present[b]

    def take(self, b: int) -> None:
        j = self.owner[b]
        self.owner[b] = -1
        self.want[j] += self.hist[b]
        self.room[j] += self.sizes[b]
        self.cover[j] -= self.present[b]

    def movable(self, b: int, to: int | None = None, rare: np.ndarray | None = None) -> bool:
        """Whether taking ``b`` from its subset keeps every class it covers
        there; with ``to`` and ``rare`` (classes in fewer blocks than there
        are subsets), also when the classes it uncovers are rare ones that
        ``to`` lacks (they move along, still in as many subsets)."""
        j = self.owner[b]
        lost = self.present[b] & (self.cover[j] < 2)
        if to is None or rare is None:
            return not lost.any()
        return bool((rare[lost] & (self.cover[to][lost] == 0)).all())


def _repair(state: _State, order: np.ndarray, passes: int = 8) -> None:
    """Move blocks into the subsets a coverable class misses (see the module notes)."""
    n_sub = state.cover.shape[0]
    blocks_of = state.present.sum(0)
    coverable, rare = np.flatnonzero(blocks_of >= n_sub), blocks_of < n_sub
    for _ in range(passes):
        moved = False
        for c in coverable:
            for k in np.flatnonzero(state.cover[:, c] == 0):
                holders = [
                    b for b in order if state.present[b, c] and state.cover[state.owner[b], c] >= 2
                ]
                blocks = [b for b in holders if state.movable(b)] or [
                    b for b in holders if state.movable(b, int(k), rare)
                ]
                if not blocks:
                    continue
                # from the subset most over its share of size
                b = min(blocks, key=lambda b: state.room[state.owner[b]])
                j = int(state.owner[b])
                state.take(b)
                state.put(b, int(k))
                moved = True
                back = [o for o in order if state.owner[o] == k and o != b and state.movable(o)]
                if back and state.room[k] < 0:
                    o = min(back, key=lambda o: abs(state.sizes[o] - state.sizes[b]))
                    if abs(state.room[k] + state.sizes[o]) + abs(state.room[j] - state.sizes[o]) < (
                        abs(state.room[k]) + abs(state.room[j])
                    ):
                        state.take(o)
                        state.put(o, j)
        if not moved:
            return


def _search(state: _State, limit: int = 20_000) -> None:
    """Depth-first search over the blocks holding coverable classes (those
    in at least as many blocks as there are subsets) for a deal that puts
    each in every subset, trying each block's current subset first, then the
    subsets it would bring most missing classes to. Adopted when found
    within ``limit`` steps; else the deal is left as it is."""
    n_sub = state.cover.shape[0]
    coverable = np.flatnonzero(state.present.sum(0) >= n_sub)
    present = state.present[:, coverable].astype(np.int64)
    var = np.flatnonzero(present.any(1))
    rarity = np.where(present[var] > 0, present.sum(0), np.iinfo(np.int64).max).min(1)
    var = var[np.argsort(rarity, kind="stable")]  # the most constrained blocks first
    current = state.owner[var]
    cover = np.zeros((n_sub, coverable.size), np.int64)
    left = present[var].sum(0)  # unassigned blocks of each class
    choice = current.copy()
    tries: list[list[int]] = []  # the subsets to try at each depth, the first tried first
    i = 0
    for _ in range(limit):
        ok = not ((cover == 0).sum(0) > left).any()
        if ok and i == var.size:
            break
        if ok:
            p = present[var[i]]
            left -= p
            gain = ((cover == 0) & (p > 0)).sum(1)
            tries.append(sorted(range(n_sub), key=lambda j: (j != current[i], -gain[j])))
            choice[i] = tries[-1].pop(0)
            cover[choice[i]] += p
            i += 1
            continue
        while tries:  # undo the last choice, try the next one
            i -= 1
            p = present[var[i]]
            cover[choice[i]] -= p
            if tries[-1]:
                choice[i] = tries[-1].pop(0)
                cover[choice[i]] += p
                i += 1
                break
            left += p
            tries.pop()
        else:
            return  # no deal covers every coverable class
    else:
        return  # out of steps
    for b, j in zip(var[choice != current], choice[choice != current]):
        state.take(int(b))
        state.put(int(b), int(j))


def assign_blocks(
    histograms,
    fractions: Mapping[str, float] | Sequence[float],
    seed: int = 0,
    *,
    sizes=None,
) -> Stratification:
    """Deal blocks to subsets so every class reaches every subset where it
    can, and each subset's class shares track the whole set's.

    Parameters
    ----------
    histograms
        ``(n_blocks, K)`` non-negative integer pixel counts of each class in
        each block (unlabelled pixels left out).
    fractions
        Subset fractions, positive and adding up to 1: a mapping (its values
        in order, e.g. ``{"train": 0.8, "val": 0.1, "test": 0.1}``) or a
        sequence. Subset ``j`` of the result is the ``j``-th.
    seed
        Seed of the block order and of the ties; the same inputs and seed
        give the same assignment.
    sizes
        ``(n_blocks,)`` size of each block that the subsets share in
        ``fractions`` (e.g. its number of tiles); by default its labelled
        pixels (the row sums), or 1 each when no pixel is labelled.

    Returns
    -------
    Stratification
        ``subset``: ``(n_blocks,)`` int64 subset index of each block; every
        subset gets at least one block. ``uncovered``: the classes present
        in the set that miss at least one subset (in fewer blocks than there
        are subsets, or entangled beyond repair): warn naming them.

    Raises
    ------
    InvalidParameterError
        For bad histograms, fractions or sizes, or fewer blocks than subsets.

    Examples
    --------
    >>> hist = np.array([[50, 0], [50, 1], [50, 0], [50, 2], [50, 0], [50, 3]])
    >>> parts = assign_blocks(hist, {"train": 0.5, "val": 0.5}, seed=0)
    >>> sorted(set(parts.subset[[1, 3, 5]].tolist())), parts.uncovered  # class 1 in both
    ([0, 1], ())
    """
    hist = np.asarray(histograms)
    if hist.ndim != 2 or hist.dtype.kind not in "iub" or (hist.size and hist.min() < 0):
        raise InvalidParameterError(
            "histograms must be (n_blocks, K) non-negative integer pixel counts; got dtype "
            f"{hist.dtype} with shape {hist.shape}"
        )
    hist = hist.astype(np.int64)
    r = _fractions(fractions)
    n_blocks, n_sub = hist.shape[0], r.size
    if n_blocks < n_sub:
        raise InvalidParameterError(
            f"{n_blocks} blocks cannot be dealt to {n_sub} subsets: use smaller blocks or fewer "
            "subsets"
        )
    if sizes is None:
        sizes = hist.sum(1).astype(np.float64)
        if not sizes.sum():
            sizes = np.ones(n_blocks)
    else:
        sizes = np.asarray(sizes, dtype=np.float64)
        if sizes.shape != (n_blocks,) or not np.isfinite(sizes).all() or (sizes < 0).any():
            raise InvalidParameterError(
                f"sizes must be {n_blocks} finite non-negative numbers, one per block"
            )
    rng = np.random.default_rng(check_seed(seed, "assign_blocks"))
    order = rng.permutation(n_blocks)
    class_tie = rng.permutation(hist.shape[1])
    state = _State(hist, sizes, r)
    subsets = np.arange(n_sub)

    left = state.present.copy()  # unassigned blocks holding each class
    while True:
        remaining = left.sum(0)
        active = np.flatnonzero(remaining)
        if not active.size:
            break
        fewest = active[remaining[active] == remaining[active].min()]
        c = int(fewest[np.argmin(class_tie[fewest])])
        for b in order[left[order, c]]:
            missing = subsets[state.cover[:, c] == 0]
            cands = missing if missing.size else subsets
            state.put(int(b), _pick(rng, cands, state.want[:, c], state.room))
            left[b] = False
    for b in order[state.owner[order] < 0]:  # blocks without a labelled pixel
        state.put(int(b), _pick(rng, subsets, state.room))

    _repair(state, order)
    coverable = state.present.sum(0) >= n_sub
    if (coverable & (state.cover == 0).any(0)).any():
        _search(state)
    for j in subsets:  # every subset gets a block
        if (state.owner == j).any():
            continue
        counts = np.bincount(state.owner, minlength=n_sub)
        donors = [b for b in order if counts[state.owner[b]] > 1]
        keep = [b for b in donors if state.movable(b)] or donors
        b = min(keep, key=lambda b: state.room[state.owner[b]])
        state.take(b)
        state.put(b, int(j))

    seen = state.present.any(0)
    uncovered = tuple(int(c) for c in np.flatnonzero(seen & (state.cover == 0).any(0)))
    return Stratification(state.owner.copy(), uncovered)
