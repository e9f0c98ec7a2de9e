"""Numba kernels of tiling: gather windows under their D4 transform, and
the inverse, scatter-add tiles back onto a scene block.

Tiling moves bytes and never does arithmetic on them, so the gather works
on unsigned-integer *views* of the same item size (see :func:`as_bits`):
four compiled variants serve every dtype, and values (NaN payloads
included) come out bit for bit.

Speed notes (measured, see ``benchmarks/bench_tile.py``): index arithmetic
is done in unsigned integers so numba emits no negative-index wrap-around
checks and LLVM vectorises the row copies, reversed ones included; the four
codes that transpose a window copy it in 8 x 8 blocks so reads and writes
both stay in cache lines, and reverse rows of the output rather than
columns of the input (reading a row backwards inside a transpose costs
50 % more).

Below a few MiB the copies take milliseconds and starting numba takes a
second or more, so ``gather_tiles.auto`` runs :func:`_gather_numpy`, the
same copies in numpy, for small work until the kernel is compiled (see
:data:`._jit.TWIN_BUDGET`).
"""

from __future__ import annotations

import numpy as np

from ...plan import INVERSE_CODES, apply_transform
from ._jit import describe, kernel, require

__all__ = [
    "as_bits",
    "count_non_finite",
    "fold_views",
    "gather_tiles",
    "normalize_weights",
    "scatter_tiles",
]


def _check_windows(name, rows, cols, codes, n) -> None:
    """``rows``, ``cols``, ``codes``: 1-D, ``n`` each, codes in 0..7."""
    require(
        all(np.ndim(a) == 1 and len(a) == n for a in (rows, cols, codes)),
        name,
        f"rows, cols and codes must be 1-D with one entry per tile ({n})",
        describe(rows=rows, cols=cols, codes=codes),
    )
    if n:
        lo, hi = int(np.min(codes)), int(np.max(codes))
        require(lo >= 0 and hi <= 7, name, "codes must be in 0..7", f"{lo}..{hi}")


def _check_gather(src, rows, cols, codes, out) -> None:
    shapes = describe(src=src, out=out)
    require(
        np.ndim(src) == 3 and np.ndim(out) == 4,
        "gather_tiles",
        "src must be (C, H, W) and out (n, C, T, T)",
        shapes,
    )
    n, C, T = out.shape[0], out.shape[1], out.shape[-1]
    require(
        out.shape[2] == T and src.shape[0] == C and src.dtype == out.dtype,
        "gather_tiles",
        "out must be (n, C, T, T) with src's C and dtype",
        f"{shapes}, {src.dtype} -> {out.dtype}",
    )
    _check_windows("gather_tiles", rows, cols, codes, n)
    if n:
        H, W = src.shape[1:]
        r0, r1, c0, c1 = (int(f(a)) for a in (rows, cols) for f in (np.min, np.max))
        require(
            r0 >= 0 and c0 >= 0 and r1 + T <= H and c1 + T <= W,
            "gather_tiles",
            f"every {T} x {T} window must lie inside src ({H} x {W})",
            f"origins rows {r0}..{r1}, cols {c0}..{c1}",
        )


def _check_scatter(tiles, rows, cols, codes, weight, acc, wsum) -> None:
    shapes = describe(tiles=tiles, weight=weight, acc=acc, wsum=wsum)
    ok = np.ndim(tiles) == 4 and np.ndim(acc) == 3 and np.ndim(wsum) == 2
    require(ok, "scatter_tiles", "tiles must be (n, C, T, T), acc (C, H, W), wsum (H, W)", shapes)
    n, C, T = tiles.shape[0], tiles.shape[1], tiles.shape[-1]
    ok = tiles.shape[2] == T and acc.shape == (C, *wsum.shape) and np.shape(weight) == (T, T)
    require(
        ok,
        "scatter_tiles",
        "tiles (n, C, T, T) need acc (C, H, W), wsum (H, W) and weight (T, T) of the same C and T",
        shapes,
    )
    _check_windows("scatter_tiles", rows, cols, codes, n)


def _check_fold(tiles, starts, codes, out) -> None:
    shapes = describe(tiles=tiles, out=out)
    ok = np.ndim(tiles) == 4 and np.ndim(out) == 4 and tiles.shape[1:] == out.shape[1:]
    require(ok, "fold_views", "tiles must be (n, C, T, T) and out (m, C, T, T)", shapes)
    n, m = tiles.shape[0], out.shape[0]
    require(
        tiles.shape[2] == tiles.shape[3] and np.ndim(starts) == 1 and len(starts) == m + 1,
        "fold_views",
        "tiles must be square and starts hold m + 1 group edges",
        f"{shapes}, starts {np.shape(starts)}",
    )
    _check_windows("fold_views", codes, codes, codes, n)
    if m:
        edges = np.asarray(starts)
        ok = edges[0] == 0 and edges[-1] == n and bool(np.all(np.diff(edges) > 0))
        require(ok, "fold_views", "starts must rise from 0 to n, no group empty", str(edges))


def _check_count(a, out) -> None:
    ok = np.ndim(a) == 2 and np.shape(out) == (2,)
    require(ok, "count_non_finite", "a must be (n, m) and out (2,)", describe(a=a, out=out))


def _check_normalize(acc, wsum) -> None:
    ok = np.ndim(acc) == 3 and np.ndim(wsum) == 2 and acc.shape[1:] == wsum.shape
    require(
        ok,
        "normalize_weights",
        "acc must be (C, H, W) over wsum (H, W)",
        describe(acc=acc, wsum=wsum),
    )


_BITS = {1: np.uint8, 2: np.uint16, 4: np.uint32, 8: np.uint64}


def as_bits(a: np.ndarray) -> np.ndarray:
    """View ``a`` as unsigned integers of the same item size (no copy)."""
    return a.view(_BITS[a.dtype.itemsize])


#: Tiles per numpy copy in :func:`_gather_numpy`: at most this many bytes.
_TWIN_PART = 4 * 2**20


def _gather_numpy(src, rows, cols, codes, out):
    """:func:`gather_tiles` in numpy: the windows of each code taken from a
    sliding-window view of ``src`` (a few MiB of tiles per copy) and
    written through :func:`~xflipnslide.plan.apply_transform`, the codes'
    definition. Bytes are only moved, so the tiles equal the kernel's bit
    for bit; it runs at 0.3–0.55x the kernel's speed (``gather_tiles``'s
    twin, see :meth:`._jit.Kernel.auto`)."""
    n, T = out.shape[0], out.shape[-1]
    if n == 0:
        return
    windows = np.lib.stride_tricks.sliding_window_view(src, (T, T), axis=(1, 2))
    per = max(1, _TWIN_PART // max(1, out[0].nbytes))
    for code in np.unique(codes):
        (picked,) = np.nonzero(codes == code)
        for start in range(0, len(picked), per):
            k = picked[start : start + per]
            out[k] = apply_transform(windows[:, rows[k], cols[k]], code).swapaxes(0, 1)


@kernel(boundscheck=False)
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


@kernel(check=_check_gather, twin=_gather_numpy, boundscheck=False)
def gather_tiles(src, rows, cols, codes, out):
    """Gather windows of ``src`` and apply their D4 transform, in one pass.

    Parameters
    ----------
    src : ndarray, shape (C, H, W)
        Source pixels, C-contiguous for full speed.
    rows, cols : int64 ndarray, shape (n,)
        Window origins in ``src``; every window must lie inside it (the
        entry point checks it, with every shape).
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

    ``gather_tiles.auto(...)`` takes the same arguments and runs
    :func:`_gather_numpy` instead while the work is small and the kernel
    not yet compiled (the first tiles of a session start no numba).
    """
    T = out.shape[-1]
    t = np.uint64(T - 1)
    for k in range(rows.shape[0]):
        y0 = rows[k]
        x0 = cols[k]
        code = codes[k]
        for c in range(src.shape[0]):
            o = out[k, c]
            if code == 0 or code == 2 or code == 4 or code == 5:  # row by row
                s = src[c]
                uy, ux = np.uint64(y0), np.uint64(x0)
                flip_y, flip_x = code == 2 or code == 5, code == 2 or code == 4
                for r in range(T):
                    srow = s[uy + t - np.uint64(r) if flip_y else uy + np.uint64(r)]
                    orow = o[r]
                    if flip_x:
                        for j in range(T):
                            orow[j] = srow[ux + t - np.uint64(j)]
                    else:
                        for j in range(T):
                            orow[j] = srow[ux + np.uint64(j)]
            else:  # one signature of _copy_transposed: both views strided ("A")
                w = src[c, y0 : y0 + T, x0 : x0 + T]
                if code == 1:
                    _copy_transposed(w[::-1, :], o[::1, :])
                elif code == 3:
                    _copy_transposed(w, o[::-1, :])
                elif code == 6:
                    _copy_transposed(w[::-1, :], o[::-1, :])
                else:
                    _copy_transposed(w, o[::1, :])


_INVERSE = INVERSE_CODES  # a global array numba freezes into the kernel


@kernel(check=_check_scatter, boundscheck=False)
def scatter_tiles(tiles, rows, cols, codes, weight, acc, wsum):
    """Undo each tile's transform and add it, weighted, onto a scene block.

    The inverse of :func:`gather_tiles`, built on it: each tile is first
    turned back into its window's frame (:func:`gather_tiles` with the
    inverse code, into a small buffer; code 0 is read in place), then added
    row by row at
    ``(rows[k], cols[k])``; the parts of a window outside the block
    (padding, or another block's share) are skipped.

    Parameters
    ----------
    tiles : float ndarray, shape (n, C, T, T)
    rows, cols : int64 ndarray, shape (n,)
        Window origins relative to the block (may be negative or beyond it).
    codes : int8 ndarray, shape (n,)
    weight : float64 ndarray, shape (T, T)
        Per-pixel weight in the window's frame.
    acc : float ndarray, shape (C, H, W)
        Weighted sums, added to in place (float32 tiles may be added to a
        float64 ``acc``: no conversion pass).
    wsum : float64 ndarray, shape (H, W)
        Sums of weights, added to in place.
    """
    n, C, T = tiles.shape[0], tiles.shape[1], tiles.shape[-1]
    H, W = wsum.shape
    buf = np.empty((1, C, T, T), tiles.dtype)
    origin = np.zeros(1, np.int64)
    code = np.empty(1, np.int8)
    w = weight.astype(acc.dtype)
    for k in range(n):
        y0, x0 = rows[k], cols[k]
        r0, r1 = max(0, -y0), min(T, H - y0)
        j0, j1 = max(0, -x0), min(T, W - x0)
        if r0 >= r1 or j0 >= j1:
            continue
        code[0] = _INVERSE[codes[k]]
        if code[0] == 0:  # already in the window's frame: read in place
            src = tiles[k]
        else:
            gather_tiles(tiles[k], origin, origin, code, buf)
            src = buf[0]
        xs = np.uint64(x0 + j0)
        for r in range(r0, r1):
            y = np.uint64(y0 + r)
            wrow = weight[r]
            srow = wsum[y]
            for j in range(j1 - j0):
                srow[xs + np.uint64(j)] += wrow[j0 + j]
            for c in range(C):
                arow = acc[c, y]
                brow = src[c, r]
                frow = w[r]
                for j in range(j1 - j0):
                    arow[xs + np.uint64(j)] += frow[j0 + j] * brow[j0 + j]


@kernel(check=_check_fold, boundscheck=False)
def fold_views(tiles, starts, codes, out):
    """Average the D4 views of each window, each turned back first.

    ``out[g]`` is the mean over the tiles ``k`` in ``starts[g]:starts[g+1]``
    of tile ``k`` under the inverse of ``codes[k]`` (its window's frame),
    summed in float64 and rounded once into ``out``'s dtype: eight copies
    of one value average back to it exactly.

    Parameters
    ----------
    tiles : float ndarray, shape (n, C, T, T)
        Model outputs, the views of one window consecutive.
    starts : int64 ndarray, shape (m + 1,)
        Group edges: ``0 = starts[0] < ... < starts[m] = n``.
    codes : int8 ndarray, shape (n,)
        The D4 code each view was made with.
    out : float ndarray, shape (m, C, T, T)
    """
    C, T = tiles.shape[1], tiles.shape[-1]
    buf = np.empty((1, C, T, T), tiles.dtype)
    total = np.empty((C, T, T), np.float64)
    origin = np.zeros(1, np.int64)
    code = np.empty(1, np.int8)
    for g in range(out.shape[0]):
        total[:] = 0.0
        for k in range(starts[g], starts[g + 1]):
            code[0] = _INVERSE[codes[k]]
            if code[0] == 0:
                total += tiles[k]
            else:
                gather_tiles(tiles[k], origin, origin, code, buf)
                total += buf[0]
        inv = 1.0 / (starts[g + 1] - starts[g])
        for c in range(C):
            for r in range(T):
                for j in range(T):
                    out[g, c, r, j] = total[c, r, j] * inv


@kernel(check=_check_count)
def count_non_finite(a, out):
    """``out = [rows of a holding NaN or infinity, how many such values]``,
    one pass, no temporary (the runner checks every batch with it)."""
    tiles = 0
    values = 0
    for k in range(a.shape[0]):
        c = 0
        for j in range(a.shape[1]):
            v = a[k, j]
            c += v - v != 0  # NaN and infinity give NaN
        if c:
            tiles += 1
            values += c
    out[0] = tiles
    out[1] = values


@kernel(check=_check_normalize)
def normalize_weights(acc, wsum):
    """``acc[c] /= wsum`` in place, NaN where ``wsum`` is 0 (no tile)."""
    C = acc.shape[0]
    H, W = wsum.shape
    for y in range(H):
        for x in range(W):
            s = wsum[y, x]
            if s > 0:
                inv = 1.0 / s
                for c in range(C):
                    acc[c, y, x] *= inv
            else:
                for c in range(C):
                    acc[c, y, x] = np.nan
