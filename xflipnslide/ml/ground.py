"""Where the tiles of a collection lie on the ground, for a split that keeps
its subsets ground-disjoint where scenes overlap.

Scenes are first grouped into *regions*: scenes whose extents (their
outlines, densified, as longitude/latitude boxes) meet. Each region gets one
grid of square blocks, laid on the pixel grid of its *reference* scene (the
one with the most tiles; the first of them on a tie), extended over the
whole region. Every tile's footprint (the pixels it reads, reflected padding
included) is mapped into the reference scene's pixels: exactly through the
two affine transforms where the scenes share a CRS, through pyproj with a
densified outline where they do not (then its bounding box, grown by one
pixel, so curved edges never slip past a block edge). A tile then touches a
range of blocks; a split keeps it only where every block it touches went to
one subset, so tiles of different subsets share no ground, whichever scene
they come from. Blocks, regions and scene groups are plain numpy and
pyproj (which rioxarray already needs).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .. import schema
from ..collection.footprints import scene_crs
from ..collection.format import scene_geometries
from ..errors import InvalidParameterError, check_positive_int
from ..plan import read_ranges

__all__ = ["GroundBlocks", "ground_blocks"]

#: Points per footprint edge when it is reprojected.
_DENSIFY = 16
#: Share of its larger side a scene's longitude/latitude box is grown by.
_GROW = 0.01
#: Coordinates this close to a whole pixel of the reference grid are that
#: pixel (float round-off of the affine arithmetic).
_SNAP = 1e-6


@dataclass
class _Scene:
    id: str
    where: np.ndarray  # positions along ``tile``
    geometry: schema.TileGeometry
    crs: object  # pyproj.CRS or None


@dataclass
class GroundBlocks:
    """The blocks each tile of a collection touches, per tile: its
    ``region``, the first and last block row ``by`` and column ``bx``
    (``(n, 2)``, in the region's grid of ``block_size`` px) and its scene
    (``scene_of``, an index into ``ids``); per scene: ``groups``, the group
    of scenes that overlap on the ground (connected)."""

    block_size: int
    tile_size: int
    region: np.ndarray
    by: np.ndarray
    bx: np.ndarray
    scene_of: np.ndarray
    ids: list[str]
    groups: np.ndarray

    def touched(self) -> tuple[np.ndarray, np.ndarray]:
        """``(tile, block)`` pairs: every block each tile touches (block ids
        dense from 0, in order of first appearance by region, row, column)."""
        span_y = self.by[:, 1] - self.by[:, 0] + 1
        span_x = self.bx[:, 1] - self.bx[:, 0] + 1
        tiles, keys = [], []
        for dy in range(int(span_y.max(initial=1))):
            for dx in range(int(span_x.max(initial=1))):
                ok = (dy < span_y) & (dx < span_x)
                t = np.flatnonzero(ok)
                tiles.append(t)
                keys.append(
                    np.stack([self.region[t], self.by[t, 0] + dy, self.bx[t, 0] + dx], axis=1)
                )
        tiles_all = np.concatenate(tiles)
        keys_all = np.concatenate(keys)
        _, block = np.unique(keys_all, axis=0, return_inverse=True)
        return tiles_all, block.ravel()


def _scenes(tiles, pyproj) -> list[_Scene]:
    out, cache = [], {}
    for id, where, part in scene_geometries(tiles):
        g = schema.read_geometry(part, what="split")
        if g.transform is None or g.scene_shape is None:
            raise InvalidParameterError(
                f"split: scene {id!r} records no transform (it had no regular x/y coordinates "
                "when tiled), so where it lies on the ground, and whether it overlaps the other "
                "scenes, is unknown: tile scenes with their coordinates, or split it alone "
                "(xflipnslide.scene_tiles)"
            )
        out.append(_Scene(id, where, g, scene_crs(part, pyproj, cache)))
    known = [s.crs is not None for s in out]
    if any(known) and not all(known):
        bare = [s.id for s in out if s.crs is None]
        raise InvalidParameterError(
            f"split: scenes {bare} have no CRS while the others do, so they cannot be placed "
            "beside them on the ground: write their CRS (scene.rio.write_crs(...)) before tiling"
        )
    return out


def _ring(k: int) -> tuple[np.ndarray, np.ndarray]:
    """``(u, v)``: ``4 k`` points along the unit square's outline, ``k`` per edge."""
    t = np.arange(k) / k
    return (
        np.concatenate([t, np.ones(k), 1 - t, np.zeros(k)]),
        np.concatenate([np.zeros(k), t, np.ones(k), 1 - t]),
    )


def _affine(t) -> np.ndarray:
    a, b, c, d, e, f = (float(v) for v in t[:6])
    return np.array([[a, b, c], [d, e, f], [0.0, 0.0, 1.0]])


def _apply(m: np.ndarray, u, v):
    return m[0, 0] * u + m[0, 1] * v + m[0, 2], m[1, 0] * u + m[1, 1] * v + m[1, 2]


def _lonlat_boxes(scenes: list[_Scene], pyproj) -> np.ndarray:
    """``(n_scenes, 4)`` west, south, east, north of each scene's outline (its
    CRS's own units where the scenes have no CRS), grown on every side by
    :data:`_GROW` of its larger side: far more than an edge can bulge between
    two of its sample points, so scenes that overlap by a sliver still share
    a region (sharing one needlessly is only coarser, never a leak)."""
    boxes = []
    for s in scenes:
        h, w = s.geometry.scene_shape
        u, v = _ring(_DENSIFY)
        x, y = _apply(_affine(s.geometry.transform), u * w, v * h)
        if s.crs is not None and not s.crs.is_geographic:
            to = pyproj.Transformer.from_crs(s.crs, "EPSG:4326", always_xy=True)
            x, y = to.transform(x, y)
        x, y = np.asarray(x), np.asarray(y)
        if not (np.isfinite(x).all() and np.isfinite(y).all()):
            raise InvalidParameterError(
                f"split: the outline of scene {s.id!r} does not map to longitude/latitude "
                "(pyproj returned inf): check its CRS and transform"
            )
        grow = _GROW * max(np.ptp(x), np.ptp(y))
        boxes.append((x.min() - grow, y.min() - grow, x.max() + grow, y.max() + grow))
    return np.array(boxes, dtype=np.float64)


def _meet(a: np.ndarray, b: np.ndarray, pad: float = 0.0) -> np.ndarray:
    """Whether boxes ``a`` and ``b`` (west, south, east, north; either may be
    an ``(n, 4)`` stack) overlap with a positive area, each grown by ``pad``."""
    a, b = np.asarray(a).T, np.asarray(b).T
    return (a[0] - pad < b[2]) & (b[0] - pad < a[2]) & (a[1] - pad < b[3]) & (b[1] - pad < a[3])


def _pairs(boxes: np.ndarray, pad: float, key: np.ndarray) -> list[tuple[int, int]]:
    """Every pair ``i < j`` of boxes that :func:`_meet` (rows of NaN meet
    none; ``key`` must be equal), in order: a sweep over the boxes sorted by
    their west edge, each compared at once with those starting before its
    east edge (no pairwise loop: linear in the boxes where few overlap)."""
    ok = np.flatnonzero(~np.isnan(boxes).any(axis=1))
    order = ok[np.argsort(boxes[ok, 0], kind="stable")]
    west = boxes[order, 0]
    east = boxes[order, 2] + pad
    ends = np.searchsorted(west, east + 1e-9 * (1 + np.abs(east)), side="right")  # a superset
    pairs = []
    for a, i in enumerate(order.tolist()):
        near = order[a + 1 : ends[a]]
        near = near[(key[near] == key[i]) & _meet(boxes[i], boxes[near], pad)]
        pairs.extend((min(i, j), max(i, j)) for j in near.tolist())
    return sorted(pairs)


def _components(n: int, pairs: list[tuple[int, int]]) -> np.ndarray:
    """Connected components of ``n`` nodes under ``pairs`` (sorted), labelled
    by their roots' order."""
    parent = list(range(n))

    def root(i):
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for i, j in pairs:
        if root(i) != root(j):
            parent[root(j)] = root(i)
    roots = [root(i) for i in range(n)]
    _, label = np.unique(roots, return_inverse=True)
    return label.ravel()


def _into_reference(s: _Scene, ref: _Scene, ys, xs, pyproj):
    """Each tile's read extent in the reference scene's pixels: ``(n, 2)``
    rows and ``(n, 2)`` columns (low, high), conservative where reprojected."""
    to_ref = np.linalg.inv(_affine(ref.geometry.transform))
    own = _affine(s.geometry.transform)
    if s.crs == ref.crs:  # one CRS: the affine arithmetic is exact
        m = to_ref @ own
        corners_u = np.stack([xs[:, 0], xs[:, 1], xs[:, 1], xs[:, 0]], axis=1).astype(float)
        corners_v = np.stack([ys[:, 0], ys[:, 0], ys[:, 1], ys[:, 1]], axis=1).astype(float)
        cu, cv = _apply(m, corners_u, corners_v)
        margin = 0.0
    else:
        du, dv = _ring(_DENSIFY)
        wide, tall = (xs[:, 1] - xs[:, 0])[:, None], (ys[:, 1] - ys[:, 0])[:, None]
        u, v = xs[:, :1] + du * wide, ys[:, :1] + dv * tall
        x, y = _apply(own, u, v)
        to = pyproj.Transformer.from_crs(s.crs, ref.crs, always_xy=True)
        x, y = (np.asarray(a) for a in to.transform(x, y))
        if not (np.isfinite(x).all() and np.isfinite(y).all()):
            raise InvalidParameterError(
                f"split: tiles of scene {s.id!r} do not map into the CRS of scene {ref.id!r} "
                "they overlap (pyproj returned inf): reproject one of them first"
            )
        cu, cv = _apply(to_ref, x, y)
        margin = 1.0
    rows = np.stack([cv.min(1) - margin, cv.max(1) + margin], axis=1)
    cols = np.stack([cu.min(1) - margin, cu.max(1) + margin], axis=1)
    return rows, cols


def _snap(a: np.ndarray) -> np.ndarray:
    near = np.rint(a)
    return np.where(np.abs(a - near) < _SNAP, near, a)


def _block_span(lo_hi: np.ndarray, origin: int, size: int) -> np.ndarray:
    """First and last block index of half-open ``[lo, hi)`` pixel ranges."""
    lo_hi = _snap(lo_hi)
    first = np.floor((lo_hi[:, 0] - origin) / size)
    last = np.ceil((lo_hi[:, 1] - origin) / size) - 1
    return np.stack([first, np.maximum(last, first)], axis=1).astype(np.int64)


def ground_blocks(tiles, block_size: int | None, default) -> GroundBlocks:
    """The blocks of ``block_size`` reference pixels (``None``:
    ``default(shape, tile_size)`` of the largest scene) every tile of the
    collection ``tiles`` touches, and the groups of overlapping scenes."""
    import pyproj

    scenes = _scenes(tiles, pyproj)
    if block_size is None:
        big = max(scenes, key=lambda s: math.prod(s.geometry.scene_shape))
        block_size = default(tuple(big.geometry.scene_shape), big.geometry.tile_size)
    block_size = check_positive_int(block_size, "block_size")
    n = tiles.sizes[schema.TILE_DIM]
    boxes = _lonlat_boxes(scenes, pyproj)
    # Regions: scenes whose longitude/latitude boxes meet (a coarse test: it only
    # decides which scenes share one block grid).
    regions = _components(len(scenes), _pairs(boxes, 1e-9, np.zeros(len(scenes))))
    out = GroundBlocks(
        block_size=block_size,
        tile_size=scenes[0].geometry.tile_size,
        region=np.empty(n, np.int64),
        by=np.empty((n, 2), np.int64),
        bx=np.empty((n, 2), np.int64),
        scene_of=np.empty(n, np.int64),
        ids=[s.id for s in scenes],
        groups=np.zeros(len(scenes), np.int64),
    )
    extents = np.full((len(scenes), 4), np.nan)  # NaN: a scene without tiles
    by_region = np.argsort(regions, kind="stable")
    for r, members in zip(*_runs(regions[by_region], by_region)):
        members = members.tolist()
        ref = scenes[max(members, key=lambda k: (len(scenes[k].where), -k))]
        oy, ox = (
            max(int(v.min()), 0) if len(v) else 0 for v in (ref.geometry.rows, ref.geometry.cols)
        )
        for k in members:
            s = scenes[k]
            T, (h, w) = s.geometry.tile_size, s.geometry.scene_shape
            ys, xs = read_ranges(s.geometry.rows, T, h), read_ranges(s.geometry.cols, T, w)
            rows, cols = _into_reference(s, ref, ys, xs, pyproj)
            out.region[s.where], out.scene_of[s.where] = r, k
            out.by[s.where] = _block_span(rows, oy, block_size)
            out.bx[s.where] = _block_span(cols, ox, block_size)
            if len(rows):
                extents[k] = (
                    cols[:, 0].min(),
                    rows[:, 0].min(),
                    cols[:, 1].max(),
                    rows[:, 1].max(),
                )
    # by="scene" groups: scenes of one region whose tiles' extents (in the
    # region's reference pixels) overlap with a positive area.
    out.groups = _components(len(scenes), _pairs(extents, 0.0, regions))
    return out


def _runs(values: np.ndarray, items: np.ndarray) -> tuple[list, list]:
    """The distinct ``values`` (sorted) and the ``items`` of each run."""
    firsts = np.flatnonzero(np.r_[True, values[1:] != values[:-1]])
    return values[firsts].tolist(), np.split(items, firsts[1:])
