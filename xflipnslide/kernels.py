"""Numba kernels: pure functions on numpy arrays, writing into ``out``.

Tiling moves bytes and never does arithmetic on them, so the kernels work on
unsigned-integer *views* of the same item size (see :func:`as_bits`): four
compiled variants serve every dtype, and values (NaN payloads included) come
out bit for bit. No dask, no xarray here.

Speed notes (measured, see ``ci/bench_tile.py``): index arithmetic is done in
unsigned integers so numba emits no negative-index wrap-around checks and
LLVM vectorises the row copies, reversed ones included; the four codes that
transpose a window copy it in 8 x 8 blocks so reads and writes both stay in
cache lines, and reverse rows of the output rather than columns of the input
(reading a row backwards inside a transpose costs 50 % more).
"""

from __future__ import annotations

import numpy as np
from numba import njit

__all__ = ["as_bits", "gather_tiles"]

_BITS = {1: np.uint8, 2: np.uint16, 4: np.uint32, 8: np.uint64}


def as_bits(a: np.ndarray) -> np.ndarray:
    """View ``a`` as unsigned integers of the same item size (no copy)."""
    return a.view(_BITS[a.dtype.itemsize])


@njit(nogil=True, cache=True, boundscheck=False)
def _copy_row(srow, x0, orow):
    """``orow[j] = srow[x0 + j]``."""
    for j in range(orow.shape[0]):
        orow[j] = srow[x0 + np.uint64(j)]


@njit(nogil=True, cache=True, boundscheck=False)
def _copy_row_reversed(srow, xe, orow):
    """``orow[j] = srow[xe - j]``."""
    for j in range(orow.shape[0]):
        orow[j] = srow[xe - np.uint64(j)]


@njit(nogil=True, cache=True, boundscheck=False)
def _copy_rows(s, o, y0, x0, flip_y, flip_x):
    """``o[r, j] = s[y0 + (t-r if flip_y else r), x0 + (t-j if flip_x else j)]``."""
    T = o.shape[0]
    t = np.uint64(T - 1)
    for r in range(T):
        u = y0 + t - np.uint64(r) if flip_y else y0 + np.uint64(r)
        if flip_x:
            _copy_row_reversed(s[u], x0 + t, o[r])
        else:
            _copy_row(s[u], x0, o[r])


@njit(nogil=True, cache=True, boundscheck=False)
def _copy_transposed(v, o):
    """``o[r, j] = v[j, r]``, in 8 x 8 blocks when the size allows."""
    T = o.shape[0]
    if T % 8 == 0:
        for jb in range(0, T, 8):
            for ib in range(0, T, 8):
                for a in range(8):
                    for b in range(8):
                        o[ib + a, jb + b] = v[jb + b, ib + a]
    else:
        for r in range(T):
            for j in range(T):
                o[r, j] = v[j, r]


@njit(nogil=True, cache=True, boundscheck=False)
def gather_tiles(src, rows, cols, codes, out):
    """Gather windows of ``src`` and apply their D4 transform, in one pass.

    Parameters
    ----------
    src : ndarray, shape (C, H, W)
        Source pixels, C-contiguous for full speed.
    rows, cols : int64 ndarray, shape (n,)
        Window origins in ``src``; every window must lie inside it (not
        checked here: the plan guarantees it).
    codes : int8 ndarray, shape (n,)
        Transform code of each window (``xflipnslide.plan.TRANSFORMS``).
    out : ndarray, shape (n, C, T, T)
        Where tile ``k`` is written; same dtype as ``src``.

    Notes
    -----
    ``out[k, c, r, j]`` is window pixel ``(u, v)`` with, for ``t = T - 1``:
    identity ``(r, j)``; rot270 ``(t-j, r)``; rot180 ``(t-r, t-j)``;
    rot90 ``(j, t-r)``; flip_x ``(r, t-j)``; flip_y ``(t-r, j)``;
    antitranspose ``(t-j, t-r)``; transpose ``(j, r)``.
    """
    T = out.shape[-1]
    for k in range(rows.shape[0]):
        y0 = rows[k]
        x0 = cols[k]
        code = codes[k]
        for c in range(src.shape[0]):
            o = out[k, c]
            if code == 0 or code == 2 or code == 4 or code == 5:
                _copy_rows(
                    src[c],
                    o,
                    np.uint64(y0),
                    np.uint64(x0),
                    code == 2 or code == 5,
                    code == 2 or code == 4,
                )
            else:
                w = src[c, y0 : y0 + T, x0 : x0 + T]
                if code == 1:
                    _copy_transposed(w[::-1, :], o)
                elif code == 3:
                    _copy_transposed(w, o[::-1, :])
                elif code == 6:
                    _copy_transposed(w[::-1, :], o[::-1, :])
                else:
                    _copy_transposed(w, o)
