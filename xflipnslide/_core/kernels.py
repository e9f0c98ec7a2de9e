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

The kernels run without bounds checks, so an array of the wrong shape would
read or write outside its buffer. Each public kernel therefore declares a
*check* that its Python entry point (:class:`_Kernel`) runs before the
compiled code: shapes and lengths agree, windows lie inside the source. It
costs O(1) per call (O(n) in windows where origins are checked, never a
pass over pixels); calls between kernels inside compiled code skip it.
"""

from __future__ import annotations

import logging
import threading
import types

import numpy as np

from ..errors import InvalidParameterError
from ..plan import INVERSE_CODES

__all__ = [
    "as_bits",
    "fill_nearest",
    "gather_tiles",
    "kernel",
    "moments",
    "nearest_valid",
    "normalize_weights",
    "scatter_tiles",
    "standardize_into",
]

log = logging.getLogger(__name__)


_PENDING: dict[str, tuple] = {}
_COMPILED: dict[str, object] = {}  # name -> numba dispatcher
_LOCK = threading.Lock()


def _jit(func, options):
    """``numba.njit(nogil=True, cache=True, **options)``, uncached where numba
    finds no writable cache location (a read-only site-packages and home, as on
    many shared hubs and containers): compiling each session beats failing to
    import. ``NUMBA_CACHE_DIR`` points the cache somewhere writable."""
    from numba import njit

    try:
        return njit(nogil=True, cache=True, **options)(func)
    except RuntimeError as exc:  # "cannot cache function ...: no locator available"
        log.debug("numba cache unavailable for %s (%s): compiling uncached", func.__name__, exc)
        return njit(nogil=True, cache=False, **options)(func)


def _materialise() -> None:
    """Import numba and compile (or load) every kernel of this module (once,
    at the first kernel call: ``import xflipnslide`` stays light).

    The module's names stay the checking entry points (:class:`_Kernel`);
    the compiled kernels see a copy of the module's globals in which each
    kernel is its numba dispatcher, so kernels call each other directly."""
    with _LOCK:
        if not _PENDING:
            return
        namespace = {k: v for k, v in globals().items() if not isinstance(v, _Kernel)}
        for name, (func, options) in _PENDING.items():
            compiled = types.FunctionType(
                func.__code__, namespace, func.__name__, func.__defaults__, func.__closure__
            )
            compiled.__qualname__, compiled.__doc__ = func.__qualname__, func.__doc__
            namespace[name] = _COMPILED[name] = _jit(compiled, options)
        _PENDING.clear()


class _Kernel:
    """Stands for a numba kernel: the Python entry point that runs the
    kernel's argument check, then the compiled code (compiled or loaded at
    the first call)."""

    def __init__(self, func, options, check=None):
        self.__wrapped__, self.__name__, self.__doc__ = func, func.__name__, func.__doc__
        self._check = check
        _PENDING[func.__name__] = (func, options)

    def __call__(self, *args):
        if self._check is not None:
            self._check(*args)
        compiled = _COMPILED.get(self.__name__)
        if compiled is None:
            _materialise()
            compiled = _COMPILED[self.__name__]
        return compiled(*args)


def kernel(check=None, **options):
    """Declare a numba kernel, compiled with ``nogil=True, cache=True`` and
    ``options`` on first use (see :func:`_jit`). ``check(*args)`` raises
    for arguments the kernel would read or write out of bounds with."""

    def decorate(func):
        return _Kernel(func, options, check)

    return decorate


def _require(ok: bool, kernel_name: str, what: str, got: str) -> None:
    if not ok:
        raise InvalidParameterError(f"{kernel_name}: {what}; got {got}")


def _shapes(**arrays) -> str:
    return ", ".join(f"{k}{tuple(np.shape(v))}" for k, v in arrays.items())


def _check_windows(name, rows, cols, codes, n) -> None:
    """``rows``, ``cols``, ``codes``: 1-D, ``n`` each, codes in 0..7."""
    _require(
        all(np.ndim(a) == 1 and len(a) == n for a in (rows, cols, codes)),
        name,
        f"rows, cols and codes must be 1-D with one entry per tile ({n})",
        _shapes(rows=rows, cols=cols, codes=codes),
    )
    if n:
        lo, hi = int(np.min(codes)), int(np.max(codes))
        _require(lo >= 0 and hi <= 7, name, "codes must be in 0..7", f"{lo}..{hi}")


def _check_gather(src, rows, cols, codes, out) -> None:
    shapes = _shapes(src=src, out=out)
    _require(
        np.ndim(src) == 3 and np.ndim(out) == 4,
        "gather_tiles",
        "src must be (C, H, W) and out (n, C, T, T)",
        shapes,
    )
    n, C, T = out.shape[0], out.shape[1], out.shape[-1]
    _require(
        out.shape[2] == T and src.shape[0] == C and src.dtype == out.dtype,
        "gather_tiles",
        "out must be (n, C, T, T) with src's C and dtype",
        f"{shapes}, {src.dtype} -> {out.dtype}",
    )
    _check_windows("gather_tiles", rows, cols, codes, n)
    if n:
        H, W = src.shape[1:]
        r0, r1, c0, c1 = (int(f(a)) for a in (rows, cols) for f in (np.min, np.max))
        _require(
            r0 >= 0 and c0 >= 0 and r1 + T <= H and c1 + T <= W,
            "gather_tiles",
            f"every {T} x {T} window must lie inside src ({H} x {W})",
            f"origins rows {r0}..{r1}, cols {c0}..{c1}",
        )


def _check_scatter(tiles, rows, cols, codes, weight, acc, wsum) -> None:
    shapes = _shapes(tiles=tiles, weight=weight, acc=acc, wsum=wsum)
    ok = np.ndim(tiles) == 4 and np.ndim(acc) == 3 and np.ndim(wsum) == 2
    _require(ok, "scatter_tiles", "tiles must be (n, C, T, T), acc (C, H, W), wsum (H, W)", shapes)
    n, C, T = tiles.shape[0], tiles.shape[1], tiles.shape[-1]
    ok = tiles.shape[2] == T and acc.shape == (C, *wsum.shape) and np.shape(weight) == (T, T)
    _require(
        ok,
        "scatter_tiles",
        "tiles (n, C, T, T) need acc (C, H, W), wsum (H, W) and weight (T, T) of the same C and T",
        shapes,
    )
    _check_windows("scatter_tiles", rows, cols, codes, n)


def _check_normalize(acc, wsum) -> None:
    ok = np.ndim(acc) == 3 and np.ndim(wsum) == 2 and acc.shape[1:] == wsum.shape
    _require(
        ok,
        "normalize_weights",
        "acc must be (C, H, W) over wsum (H, W)",
        _shapes(acc=acc, wsum=wsum),
    )


def _check_nearest(valid, near_row, near_col) -> None:
    ok = np.ndim(valid) == 2 and np.shape(near_row) == np.shape(near_col) == np.shape(valid)
    _require(
        ok,
        "nearest_valid",
        "valid, near_row and near_col must be one (H, W) shape",
        _shapes(valid=valid, near_row=near_row, near_col=near_col),
    )


def _check_fill(data, valid, core, halo, fallback, out) -> None:
    shapes = _shapes(data=data, valid=valid, core=core, halo=halo, out=out)
    ok = np.ndim(data) == 2 and np.shape(valid) == np.shape(data)
    ok = ok and np.shape(core) == (4,) and np.shape(halo) == (4,)
    _require(
        ok, "fill_nearest", "data and valid must be one (H, W) shape, core and halo 4 long", shapes
    )
    y0, y1, x0, x1 = (int(v) for v in core)
    H, W = data.shape
    ok = 0 <= y0 <= y1 <= H and 0 <= x0 <= x1 <= W and np.shape(out) == (y1 - y0, x1 - x0)
    _require(
        ok,
        "fill_nearest",
        "core (y0, y1, x0, x1) must lie inside data and match out",
        f"core {(y0, y1, x0, x1)}, {shapes}",
    )


def _check_standardize(a, mean, scale, out) -> None:
    ok = np.size(a) == np.size(out) and getattr(out, "flags", None) is not None
    ok = ok and out.flags.c_contiguous  # ravel() of anything else would write into a copy
    _require(
        ok, "standardize_into", "a and a C-contiguous out must have one size", _shapes(a=a, out=out)
    )


_BITS = {1: np.uint8, 2: np.uint16, 4: np.uint32, 8: np.uint64}


def as_bits(a: np.ndarray) -> np.ndarray:
    """View ``a`` as unsigned integers of the same item size (no copy)."""
    return a.view(_BITS[a.dtype.itemsize])


@kernel(boundscheck=False)
def _copy_row(srow, x0, orow):
    """``orow[j] = srow[x0 + j]``."""
    for j in range(orow.shape[0]):
        orow[j] = srow[x0 + np.uint64(j)]


@kernel(boundscheck=False)
def _copy_row_reversed(srow, xe, orow):
    """``orow[j] = srow[xe - j]``."""
    for j in range(orow.shape[0]):
        orow[j] = srow[xe - np.uint64(j)]


@kernel(boundscheck=False)
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


@kernel(check=_check_gather, boundscheck=False)
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


@kernel()
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


@kernel()
def moments(a):
    """``(n, mean, m2)`` of the non-NaN values of ``a``: their count, mean and
    sum of squared deviations from the mean, in float64.

    Two passes (sum, then squared deviations), no temporaries; ``(0, 0, 0)``
    when ``a`` has no valid value. Moments of parts merge exactly
    (``xflipnslide._stats``), so chunked and whole inputs agree.
    """
    flat = a.ravel()
    total = 0.0
    n = 0
    for v in flat:
        if not np.isnan(v):
            total += v
            n += 1
    if n == 0:
        return np.array([0.0, 0.0, 0.0])
    mean = total / n
    dev = 0.0
    for v in flat:
        if not np.isnan(v):
            d = v - mean
            dev += d * d
    return np.array([float(n), mean, dev])


@kernel(check=_check_standardize)
def standardize_into(a, mean, scale, out):
    """``out[...] = (a - mean) / scale`` in one pass, cast to ``out``'s dtype."""
    src = a.ravel()
    dst = out.ravel()
    for k in range(src.size):
        dst[k] = (src[k] - mean) / scale


_INVERSE = INVERSE_CODES  # a global array numba freezes into the kernel


@kernel(check=_check_scatter, boundscheck=False)
def scatter_tiles(tiles, rows, cols, codes, weight, acc, wsum):
    """Undo each tile's transform and add it, weighted, onto a scene block.

    The inverse of :func:`gather_tiles`, built on it: each tile is first
    turned back into its window's frame (:func:`gather_tiles` with the
    inverse code, into a small buffer), then added row by row at
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
        Weighted sums, added to in place (same dtype as ``tiles``).
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
        code[0] = _INVERSE[codes[k]]
        gather_tiles(tiles[k], origin, origin, code, buf)
        y0, x0 = rows[k], cols[k]
        r0, r1 = max(0, -y0), min(T, H - y0)
        j0, j1 = max(0, -x0), min(T, W - x0)
        if r0 >= r1 or j0 >= j1:
            continue
        xs = np.uint64(x0 + j0)
        for r in range(r0, r1):
            y = np.uint64(y0 + r)
            wrow = weight[r]
            srow = wsum[y]
            for j in range(j1 - j0):
                srow[xs + np.uint64(j)] += wrow[j0 + j]
            for c in range(C):
                arow = acc[c, y]
                brow = buf[0, c, r]
                frow = w[r]
                for j in range(j1 - j0):
                    arow[xs + np.uint64(j)] += frow[j0 + j] * brow[j0 + j]


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
