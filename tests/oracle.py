"""Slow, obviously-correct references the library is checked against.

Written straight from the geometry of docs/tiling.md: plain loops for the windows, the numpy
operations of the transform table, slicing for the tiles.
"""

from __future__ import annotations

import numpy as np

# The transform table of docs/tiling.md, verbatim.
TRANSFORM = {
    0: lambda a: a,
    1: lambda a: np.rot90(a, 3, axes=(-2, -1)),
    2: lambda a: np.rot90(a, 2, axes=(-2, -1)),
    3: lambda a: np.rot90(a, 1, axes=(-2, -1)),
    4: lambda a: a[..., :, ::-1],
    5: lambda a: a[..., ::-1, :],
    6: lambda a: np.rot90(a, 1, axes=(-2, -1))[..., :, ::-1],
    7: lambda a: np.rot90(a, 1, axes=(-2, -1))[..., ::-1, :],
}


def windows(h: int, w: int, t: int, strategy: str, edge: str = "crop"):
    """[(row, col, code, grid)] in tile order, per docs/tiling.md (crop or pad, then windows)."""
    if edge == "crop":
        hc, wc = (h // t) * t, (w // t) * t
        oy, ox = (h - hc) // 2, (w - wc) // 2
    else:
        hc, wc = -(-h // t) * t, -(-w // t) * t
        oy, ox = -((hc - h) // 2), -((wc - w) // 2)
    s, q = t // 2, t // 4
    out = []
    if strategy == "no_overlap":
        for i in range(hc // t):
            for j in range(wc // t):
                out.append((oy + i * t, ox + j * t, 0, "regular"))
        return out
    outer = {(0, 0): 0, (0, 1): 3, (1, 0): 2, (1, 1): 1}
    for i in range((hc - t) // s + 1):
        for j in range((wc - t) // s + 1):
            code = 0 if strategy == "overlap" else outer[(i % 2, j % 2)]
            out.append(
                (oy + i * s, ox + j * s, code, "regular" if strategy == "overlap" else "outer")
            )
    if strategy == "flipnslide":
        inner = {(0, 0): 4, (0, 1): 5, (1, 1): 6, (1, 0): 7}
        i = 0
        while q + i * s + t <= hc - q:
            j = 0
            while q + j * s + t <= wc - q:
                out.append((oy + q + i * s, ox + q + j * s, inner[(i % 2, j % 2)], "inner"))
                j += 1
            i += 1
    return out


def tiles(x: np.ndarray, t: int, strategy: str, edge: str = "crop") -> np.ndarray:
    """The tiles of ``x`` (``(..., H, W)``), by slicing and the table above."""
    h, w = x.shape[-2:]
    wins = windows(h, w, t, strategy, edge)
    py = max([0] + [-r for r, *_ in wins]), max([0] + [r + t - h for r, *_ in wins])
    px = max([0] + [-c for _, c, *_ in wins]), max([0] + [c + t - w for _, c, *_ in wins])
    xp = np.pad(x, [(0, 0)] * (x.ndim - 2) + [py, px], mode="reflect")
    out = [
        TRANSFORM[code](xp[..., r + py[0] : r + py[0] + t, c + px[0] : c + px[0] + t])
        for r, c, code, _ in wins
    ]
    return np.stack(out)


def reflect(i: np.ndarray, n: int) -> np.ndarray:
    """Scene index of each (possibly padded) index ``i``, numpy's reflect mode."""
    i = np.abs(i)
    return np.where(i >= n, 2 * (n - 1) - i, i)


def window_sources(tiles, shape):
    """Per tile, the scene rows and columns its window reads (reflection included)."""
    T = tiles.sizes["y"]
    h, w = shape
    for r, c in zip(tiles.row.values, tiles.col.values):
        yield reflect(np.arange(r, r + T), h), reflect(np.arange(c, c + T), w)
