"""The blocks a split deals: a regular grid over the scene, recut where a
rare class would otherwise sit in too few blocks. Pure numpy.

A split keeps a tile in a subset when every pixel it reads lies in blocks of
that subset, so a class can reach only as many subsets as there are blocks
holding a whole tile of it. Sparse labels (a few digitised polygons) often
fall in one grid block each, or across the edge of two: dealt as they are,
such blocks take the class to one subset only. :func:`refine` recuts them:
the blocks around a tile of the class are merged into one rectangle, and it
(or a block that already holds tiles of the class) is cut in two or four
through the class's tiles, so that the parts hold tiles of it. Tiles that
cross a cut lie in two blocks, and are kept only if both go to one subset.

Blocks are rectangles ``(y0, y1, x0, x1)`` in scene pixels, half-open, that
cover the scene without overlapping.
"""

from __future__ import annotations

import numpy as np

__all__ = ["Partition", "refine"]

#: Most cut positions tried along each axis of a block.
_MAX_CANDIDATES = 64

Rect = tuple[int, int, int, int]


class Partition:
    """Rectangular blocks covering the scene from ``(oy, ox)``: at first the
    regular grid of ``size`` px blocks (``nby`` x ``nbx``, in grid order).

    The grid stays as an index: each grid cell lists the blocks that overlap
    it, so finding the blocks a tile touches looks at the cells of its four
    corners (a tile is no larger than a cell).
    """

    def __init__(self, oy: int, ox: int, size: int, nby: int, nbx: int):
        self.oy, self.ox, self.size, self.nby, self.nbx = oy, ox, size, nby, nbx
        s = size
        self.blocks: list[Rect] = [
            (oy + i * s, oy + (i + 1) * s, ox + j * s, ox + (j + 1) * s)
            for i in range(nby)
            for j in range(nbx)
        ]
        self._index()

    def copy(self) -> Partition:
        out = Partition.__new__(Partition)
        out.__dict__.update(self.__dict__, blocks=list(self.blocks))
        out._index()
        return out

    def _cell_range(self, a: int, b: int, lo: int, n: int) -> range:
        return range(max((a - lo) // self.size, 0), min((b - 1 - lo) // self.size + 1, n))

    def _index(self) -> None:
        """Each cell's blocks; ``whole[c]``: the block covering cell ``c``, else -1."""
        self.cells: list[list[int]] = [[] for _ in range(self.nby * self.nbx)]
        self.whole = np.full(self.nby * self.nbx, -1, np.int64)
        for k, (y0, y1, x0, x1) in enumerate(self.blocks):
            for i in self._cell_range(y0, y1, self.oy, self.nby):
                for j in self._cell_range(x0, x1, self.ox, self.nbx):
                    c = i * self.nbx + j
                    self.cells[c].append(k)
                    cy, cx = self.oy + i * self.size, self.ox + j * self.size
                    if y0 <= cy and cy + self.size <= y1 and x0 <= cx and cx + self.size <= x1:
                        self.whole[c] = k

    def owners(self, owner, ys: np.ndarray, xs: np.ndarray) -> np.ndarray:
        """Per tile, the one value of ``owner`` (one per block) of every block
        its read ranges ``ys[k]``/``xs[k]`` (``(n, 2)`` half-open pixel
        ranges) touch, else -1. With ``owner = arange(len(blocks))``: the
        block that holds the whole tile, else -1."""
        owner = np.asarray(owner, np.int64)
        iy = [(ys[:, 0] - self.oy) // self.size, (ys[:, 1] - 1 - self.oy) // self.size]
        ix = [(xs[:, 0] - self.ox) // self.size, (xs[:, 1] - 1 - self.ox) // self.size]
        corners = [i * self.nbx + j for i in iy for j in ix]
        simple = np.all([self.whole[c] >= 0 for c in corners], axis=0)
        own = [owner[np.maximum(self.whole[c], 0)] for c in corners]
        same = np.all([o == own[0] for o in own[1:]], axis=0)
        out = np.where(simple & same, own[0], -1)
        for k in np.flatnonzero(~simple).tolist():
            (y0, y1), (x0, x1) = ys[k], xs[k]
            near = {b for c in {int(cs[k]) for cs in corners} for b in self.cells[c]}
            seen = {
                int(owner[b])
                for b in near
                if y0 < self.blocks[b][1]
                and self.blocks[b][0] < y1
                and x0 < self.blocks[b][3]
                and self.blocks[b][2] < x1
            }
            out[k] = seen.pop() if len(seen) == 1 else -1
        return out

    def inside(self, ys: np.ndarray, xs: np.ndarray) -> np.ndarray:
        """Per tile, the one block holding all its pixels, else -1."""
        return self.owners(np.arange(len(self.blocks)), ys, xs)

    def merged(self, region: Rect) -> Rect:
        """The smallest union of blocks that covers ``region``: a rectangle
        (grown until no block crosses its edge)."""
        y0, y1, x0, x1 = region
        while True:
            hit = [b for b in self.blocks if b[0] < y1 and y0 < b[1] and b[2] < x1 and x0 < b[3]]
            grown = (
                min(b[0] for b in hit),
                max(b[1] for b in hit),
                min(b[2] for b in hit),
                max(b[3] for b in hit),
            )
            if grown == (y0, y1, x0, x1):
                return grown
            y0, y1, x0, x1 = grown

    def recut(self, region: Rect, py: int, px: int) -> None:
        """Replace the blocks inside ``region`` (a union of blocks) by its
        parts of positive area cut at ``(py, px)``."""
        y0, y1, x0, x1 = region
        keep = [
            b for b in self.blocks if not (y0 <= b[0] and b[1] <= y1 and x0 <= b[2] and b[3] <= x1)
        ]
        parts = [
            (a, b, u, v)
            for a, b in ((y0, py), (py, y1))
            for u, v in ((x0, px), (px, x1))
            if b > a and v > u
        ]
        self.blocks = keep + parts
        self._index()


def _candidates(lo: int, hi: int, edges: np.ndarray) -> np.ndarray:
    """Cut positions strictly inside ``(lo, hi)`` among ``edges``, plus ``lo``
    (no cut along this axis); at most :data:`_MAX_CANDIDATES`."""
    inner = np.unique(edges[(edges > lo) & (edges < hi)])
    if inner.size > _MAX_CANDIDATES - 1:
        inner = inner[np.linspace(0, inner.size - 1, _MAX_CANDIDATES - 1).astype(int)]
    return np.concatenate([[lo], inner]).astype(np.int64)


def _best_cut(region: Rect, ys, xs, has, want: int) -> tuple[int, int]:
    """The cut ``(py, px)`` of ``region`` that puts tiles of the class (the
    tiles wholly inside it read ``ys``/``xs``; ``has``: they hold the class)
    in the most parts (up to ``want``), then keeps the most tiles whole."""
    y0, y1, x0, x1 = region
    py = _candidates(y0, y1, ys[has].ravel())
    px = _candidates(x0, x1, xs[has].ravel())
    top, bottom = ys[None, :, 1] <= py[:, None], ys[None, :, 0] >= py[:, None]  # (a, m)
    left, right = xs[None, :, 1] <= px[:, None], xs[None, :, 0] >= px[:, None]  # (b, m)
    parts = np.zeros((py.size, px.size), np.int64)
    kept = np.zeros((py.size, px.size), np.int64)
    for rows in (top, bottom):
        for cols in (left, right):
            quad = rows[:, None, :] & cols[None, :, :]  # (a, b, m)
            parts += (quad & has).any(-1)
            kept += quad.sum(-1)
    score = np.minimum(parts, want) * (kept.max(initial=0) + 1) + kept
    a, b = np.unravel_index(int(np.argmax(score)), score.shape)
    return int(py[a]), int(px[b])


def _coverage(part: Partition, ys, xs, present, n_subsets: int) -> tuple[np.ndarray, tuple]:
    """Blocks holding a whole tile of each class, and the score a recut must
    raise: ``(sum_c min(n_subsets, blocks of c), whole tiles)``."""
    inside = part.inside(ys, xs)
    whole = inside >= 0
    held = np.array(
        [np.unique(inside[whole & present[:, c]]).size for c in range(present.shape[1])]
    )
    return held, (int(np.minimum(held, n_subsets).sum()), int(whole.sum()))


def refine(
    part: Partition, ys: np.ndarray, xs: np.ndarray, present: np.ndarray, n_subsets: int
) -> Partition:
    """Recut the blocks of ``part`` (in place) so that classes held by fewer
    than ``n_subsets`` blocks are held by more.

    A class counts in a block when a tile wholly inside the block holds it
    (``present``: ``(tile, class)`` bool). Rarest class first (fewest
    blocks, then smallest id), each step tries, for that class, every block
    holding tiles of it and, around every tile of it that crosses block
    edges, the merge of the blocks that tile touches; each region is cut at
    its :func:`_best_cut`. The recut that most raises the coverage score
    (:func:`_coverage`: over all classes, so no class loses what another
    gains) is made; a class no recut helps is left as it is. Every recut
    brings a class to one more block, so there are at most ``K n_subsets``.
    """
    present = np.asarray(present, bool)
    n_classes = present.shape[1]
    stuck: set[int] = set()
    held, score = _coverage(part, ys, xs, present, n_subsets)
    while True:  # each pass raises the coverage, or finds one more class stuck
        need = [
            c
            for c in range(n_classes)
            if present[:, c].any() and held[c] < n_subsets and c not in stuck
        ]
        if not need:
            break
        c = min(need, key=lambda c: (held[c], c))
        inside = part.inside(ys, xs)
        mine = present[:, c]
        regions = {part.blocks[b] for b in np.unique(inside[mine & (inside >= 0)]).tolist()}
        for k in np.flatnonzero(mine & (inside < 0)).tolist():
            regions.add(part.merged((int(ys[k, 0]), int(ys[k, 1]), int(xs[k, 0]), int(xs[k, 1]))))
        best = None
        for region in sorted(regions):
            y0, y1, x0, x1 = region
            m = (ys[:, 0] >= y0) & (ys[:, 1] <= y1) & (xs[:, 0] >= x0) & (xs[:, 1] <= x1)
            if not (m & mine).any():
                continue
            py, px = _best_cut(region, ys[m], xs[m], mine[m], n_subsets - held[c] + 1)
            trial = part.copy()
            trial.recut(region, py, px)
            got = _coverage(trial, ys, xs, present, n_subsets)
            if got[1][0] > score[0] and (best is None or got[1] > best[1][1]):
                best = (trial, got)
        if best is None:
            stuck.add(c)
            continue
        part.blocks, (held, score) = best[0].blocks, best[1]
        part._index()
        stuck.clear()
    return part
