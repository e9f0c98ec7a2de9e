"""Numba kernels of the gap fill: the exact Euclidean nearest valid pixel
of every pixel, and the fill of a block from it."""

from __future__ import annotations

import numpy as np

from ._jit import describe, kernel, require

__all__ = ["fill_nearest", "nearest_valid"]


def _check_nearest(valid, near_row, near_col) -> None:
    ok = np.ndim(valid) == 2 and np.shape(near_row) == np.shape(near_col) == np.shape(valid)
    require(
        ok,
        "nearest_valid",
        "valid, near_row and near_col must be one (H, W) shape",
        describe(valid=valid, near_row=near_row, near_col=near_col),
    )


def _check_fill(data, valid, core, halo, fallback, out) -> None:
    shapes = describe(data=data, valid=valid, core=core, halo=halo, out=out)
    ok = np.ndim(data) == 2 and np.shape(valid) == np.shape(data)
    ok = ok and np.shape(core) == (4,) and np.shape(halo) == (4,)
    require(
        ok, "fill_nearest", "data and valid must be one (H, W) shape, core and halo 4 long", shapes
    )
    y0, y1, x0, x1 = (int(v) for v in core)
    H, W = data.shape
    ok = 0 <= y0 <= y1 <= H and 0 <= x0 <= x1 <= W and np.shape(out) == (y1 - y0, x1 - x0)
    require(
        ok,
        "fill_nearest",
        "core (y0, y1, x0, x1) must lie inside data and match out",
        f"core {(y0, y1, x0, x1)}, {shapes}",
    )


@kernel(inline="always")  # compiled inside nearest_valid: one compilation less
def _nearest_in_columns(valid, near_row):
    """Per column, the row of the nearest valid pixel in that column (-1: none).

    Swept row by row (down, then up) so memory is read in order.
    """
    H, W = valid.shape
    last = np.full(W, -1, np.int64)
    for i in range(H):
        for j in range(W):
            if valid[i, j]:
                last[j] = i
            near_row[i, j] = last[j]
    nxt = np.full(W, -1, np.int64)
    for i in range(H - 1, -1, -1):
        for j in range(W):
            if valid[i, j]:
                nxt[j] = i
            n = nxt[j]
            up = near_row[i, j]
            if n >= 0 and (up < 0 or n - i < i - up):
                near_row[i, j] = n


@kernel(check=_check_nearest)
def nearest_valid(valid, near_row, near_col):
    """Exact Euclidean nearest valid pixel of every pixel (a feature transform).

    Two passes of the separable algorithm of Felzenszwalb & Huttenlocher
    (2012): first the nearest valid row in each column, then, along each
    row, the lower envelope of the parabolas ``(x - j)**2 + dy_j**2``.
    O(H*W) time; ties go to any one of the tied pixels.

    Parameters
    ----------
    valid : bool ndarray, shape (H, W)
    near_row, near_col : integer ndarray, shape (H, W)
        Output: coordinates of the nearest valid pixel; -1 where ``valid``
        has no True at all. int32 halves the memory (any H, W < 2**31).
    """
    H, W = valid.shape
    _nearest_in_columns(valid, near_row)
    v = np.empty(W, np.int64)  # sites of the envelope
    z = np.empty(W + 1, np.float64)  # boundaries between them
    rowbuf = np.empty(W, near_row.dtype)
    for i in range(H):
        gap = False
        for x in range(W):
            if not valid[i, x]:
                gap = True
                break
        if not gap:  # a row without gaps is its own answer
            for x in range(W):
                near_row[i, x] = i
                near_col[i, x] = x
            continue
        k = -1
        for q in range(W):
            r = near_row[i, q]
            if r < 0:
                continue
            fq = float((i - r) * (i - r) + q * q)
            if k < 0:
                k = 0
                v[0] = q
                z[0] = -np.inf
                z[1] = np.inf
                continue
            while True:
                p = v[k]
                rp = near_row[i, p]
                fp = float((i - rp) * (i - rp) + p * p)
                s = (fq - fp) / (2.0 * (q - p))
                if s <= z[k] and k > 0:
                    k -= 1
                else:
                    break
            if s <= z[k]:  # k == 0 and the new site dominates everywhere
                v[0] = q
                z[1] = np.inf
                continue
            k += 1
            v[k] = q
            z[k] = s
            z[k + 1] = np.inf
        if k < 0:
            for x in range(W):
                near_row[i, x] = -1
                near_col[i, x] = -1
            continue
        m = 0
        for x in range(W):
            while z[m + 1] < x:
                m += 1
            near_col[i, x] = v[m]
        # near_row[i] still holds the column pass; turn it into the answer
        for q in range(W):
            rowbuf[q] = near_row[i, q]
        for x in range(W):
            near_row[i, x] = rowbuf[near_col[i, x]]


@kernel(check=_check_fill)
def fill_nearest(data, valid, core, halo, fallback, out):
    """Fill the invalid pixels of ``data``'s core from their nearest valid pixel.

    Parameters
    ----------
    data : float ndarray, shape (H, W)
        A block plus the halo read around it.
    valid : bool ndarray, shape (H, W)
    core : int64 ndarray ``(y0, y1, x0, x1)``
        The block inside ``data``; ``out`` is its filled copy.
    halo : bool ndarray ``(top, bottom, left, right)``
        Which sides of ``data`` are cut from a larger scene. Beyond the
        others there is nothing, so they do not limit exactness.
    fallback : float
        Value for pixels with no valid pixel in ``data`` at all.
    out : float ndarray, shape (y1 - y0, x1 - x0)

    Returns
    -------
    int
        Pixels whose nearest valid pixel is not guaranteed to be the scene's
        nearest: further away than the nearest cut side of ``data`` (they
        take the nearest one in ``data``), or with none in ``data`` (they
        take ``fallback``).
    """
    H, W = data.shape
    near_row = np.empty((H, W), np.int32)
    near_col = np.empty((H, W), np.int32)
    nearest_valid(valid, near_row, near_col)
    big = H * H + W * W
    beyond = 0
    y0, y1, x0, x1 = core[0], core[1], core[2], core[3]
    for i in range(y0, y1):
        for j in range(x0, x1):
            if valid[i, j]:
                out[i - y0, j - x0] = data[i, j]
                continue
            r = near_row[i, j]
            if r < 0:
                out[i - y0, j - x0] = fallback
                beyond += 1
                continue
            c = near_col[i, j]
            out[i - y0, j - x0] = data[r, c]
            limit = big
            if halo[0]:
                limit = min(limit, i)
            if halo[1]:
                limit = min(limit, H - 1 - i)
            if halo[2]:
                limit = min(limit, j)
            if halo[3]:
                limit = min(limit, W - 1 - j)
            if (i - r) * (i - r) + (j - c) * (j - c) > limit * limit:
                beyond += 1
    return beyond
