"""How many tiles cover each pixel: ``plot_footprints(kind="density")``."""

from __future__ import annotations

import numpy as np
from affine import Affine

from ..schema import TileGeometry
from . import _axes


def coverage(rows, cols, tile_size: int, shape: tuple[int, int] | None):
    """How many windows cover each cell between window edges: the edges
    along rows and columns (pixels) and the ``(len(ys) - 1, len(xs) - 1)``
    counts. Exact per pixel, and small however large the scene."""
    T = tile_size
    rows, cols = np.asarray(rows, np.int64), np.asarray(cols, np.int64)
    outer_r = [0, shape[0]] if shape is not None else []
    outer_c = [0, shape[1]] if shape is not None else []
    ys = np.unique(np.concatenate([rows, rows + T, outer_r]).astype(np.int64))
    xs = np.unique(np.concatenate([cols, cols + T, outer_c]).astype(np.int64))
    diff = np.zeros((ys.size, xs.size), np.int64)
    r0, r1 = np.searchsorted(ys, rows), np.searchsorted(ys, rows + T)
    c0, c1 = np.searchsorted(xs, cols), np.searchsorted(xs, cols + T)
    np.add.at(diff, (r0, c0), 1)
    np.add.at(diff, (r0, c1), -1)
    np.add.at(diff, (r1, c0), -1)
    np.add.at(diff, (r1, c1), 1)
    return ys, xs, diff.cumsum(0).cumsum(1)[:-1, :-1]


def draw_density(fig, ax, rows, cols, g: TileGeometry, affine: Affine):
    """The coverage counts as a mesh (a discrete colour map, 0 transparent)
    with its colour bar; returns the colour bar, the map coordinates drawn
    ``(x, y)`` and the default title."""
    plt = _axes.pyplot()
    from matplotlib.colors import BoundaryNorm

    T = g.tile_size
    ey, ex, counts = coverage(rows, cols, T, g.scene_shape)
    mx, my = _axes.to_map(affine, ex[None, :], ey[:, None])
    top = max(int(counts.max()) if counts.size else 0, 1)
    cmap = plt.get_cmap("viridis", top)
    norm = BoundaryNorm(np.arange(0.5, top + 1), cmap.N)
    mesh = ax.pcolormesh(
        mx, my, np.ma.masked_equal(counts, 0), cmap=cmap, norm=norm, alpha=0.8, zorder=3
    )
    colorbar = fig.colorbar(mesh, ax=ax, shrink=0.8, label="tiles covering the pixel")
    if top <= 16:
        colorbar.set_ticks(range(1, top + 1))
    title = f"{len(rows)} tiles of {T} px: how many cover each pixel"
    return colorbar, (mx.ravel(), my.ravel()), title
