"""Array layer on numpy: read the input a strip at a time and run the kernels.

Both the numpy path (here) and the dask path (:mod:`._dask`) work run by run:
a *run* is a set of tiles side by side on one window row of one grid
(:meth:`TilePlan.runs`), so the input it needs is one strip ``T`` rows high
and as wide as the run. :class:`Strip` says which input pixels that is, how
much reflect padding it needs at the scene's edges and where each window
starts inside it.
"""

from __future__ import annotations

import itertools
import math
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

from .errors import InvalidParameterError
from .kernels import as_bits, gather_tiles, normalize_weights, scatter_tiles
from .plan import TilePlan

__all__ = ["Strip", "check_dtype", "strip_source", "strips", "tile_numpy"]


@dataclass(eq=False)
class Strip:
    """The input strip one run of tiles reads.

    ``y``/``x`` are the clipped input slices; ``pad`` the reflect padding
    ``((top, bottom), (left, right))`` that completes it; ``rows``/``cols``
    the window origins relative to the padded strip; ``start``/``stop`` the
    tiles (in plan order) it fills.
    """

    start: int
    stop: int
    y: slice
    x: slice
    pad: tuple[tuple[int, int], tuple[int, int]]
    rows: np.ndarray
    cols: np.ndarray
    codes: np.ndarray


def strips(
    plan: TilePlan,
    start: int = 0,
    stop: int | None = None,
    *,
    chunk_bounds: tuple[list[int], list[int]] | None = None,
) -> list[Strip]:
    """The strips of tiles ``start:stop`` of ``plan``, one per run.

    With ``chunk_bounds`` (the cumulative chunk edges along y and x of a
    chunked input), runs are further split so that windows lying wholly in
    one chunk share a strip with neighbours in the same chunk only: such a
    strip can be read in place from that chunk, without copying.
    """
    T, (h, w) = plan.tile_size, plan.shape
    out = []
    for a, b in _split_runs(plan, plan.runs(start, stop), chunk_bounds):
        rows, cols = plan.rows[a:b], plan.cols[a:b]
        y0, y1 = int(rows.min()), int(rows.max()) + T
        x0, x1 = int(cols.min()), int(cols.max()) + T
        cy0, cy1 = _read_range(y0, y1, h)
        cx0, cx1 = _read_range(x0, x1, w)
        pad = ((max(cy0 - y0, 0), max(y1 - cy1, 0)), (max(cx0 - x0, 0), max(x1 - cx1, 0)))
        out.append(
            Strip(
                start=a,
                stop=b,
                y=slice(cy0, cy1),
                x=slice(cx0, cx1),
                pad=pad,
                rows=rows - (cy0 - pad[0][0]),
                cols=cols - (cx0 - pad[1][0]),
                codes=plan.codes[a:b],
            )
        )
    return out


def _containing_chunk(bounds: list[int], origins: np.ndarray, size: int) -> np.ndarray:
    """Index of the chunk holding each window ``[o, o + size)`` whole, else -1."""
    edges = np.asarray(bounds)
    first = np.searchsorted(edges, origins, side="right") - 1
    last = np.searchsorted(edges, origins + size, side="left") - 1
    return np.where((first == last) & (origins >= 0), first, -1)


def _split_runs(plan: TilePlan, runs: list[tuple[int, int]], chunk_bounds) -> list[tuple[int, int]]:
    if chunk_bounds is None:
        return runs
    T = plan.tile_size
    ky = _containing_chunk(chunk_bounds[0], plan.rows, T)
    kx = _containing_chunk(chunk_bounds[1], plan.cols, T)
    key = np.where((ky < 0) | (kx < 0), -1, ky * len(chunk_bounds[1]) + kx)
    out = []
    for a, b in runs:
        cuts = np.flatnonzero(key[a + 1 : b] != key[a : b - 1]) + a + 1
        edges = [a, *cuts.tolist(), b]
        out.extend(itertools.pairwise(edges))
    return out


def _read_range(lo: int, hi: int, size: int) -> tuple[int, int]:
    """Input pixels ``[a, b)`` to read so that reflect-padding them gives ``[lo, hi)``.

    Reflection about the scene's edge reaches as far inside as the padding
    is wide, which may be further than the strip itself.
    """
    a, b = max(lo, 0), min(hi, size)
    if lo < 0:
        b = max(b, min(size, -lo + 1))
    if hi > size:
        a = min(a, max(0, size - 1 - (hi - size)))
    return a, b


def strip_source(block: np.ndarray, strip: Strip) -> np.ndarray:
    """``block`` (the strip's clipped input, ``(*other, h, w)``) as the kernel's
    C-contiguous ``(C, h', w')`` source, reflect-padded where the strip leaves
    the scene."""
    if any(strip.pad[0]) or any(strip.pad[1]):
        block = np.pad(block, ((0, 0),) * (block.ndim - 2) + strip.pad, mode="reflect")
    flat = block.reshape((-1, *block.shape[-2:]))
    return np.ascontiguousarray(flat)


def check_dtype(dtype: np.dtype, name: str = "the input") -> None:
    """Raise unless the kernels can move items of ``dtype``."""
    dtype = np.dtype(dtype)
    if dtype.hasobject or dtype.itemsize not in (1, 2, 4, 8):
        raise InvalidParameterError(
            f"{name} has dtype {dtype}, which cannot be tiled: use a numeric or "
            "boolean dtype of 1, 2, 4 or 8 bytes (cast first, e.g. .astype('float32'))"
        )


def _fill(x: np.ndarray, plan: TilePlan, out: np.ndarray, start: int, stop: int) -> None:
    """Write tiles ``start:stop`` of ``plan`` from ``x`` into ``out[start:stop]``."""
    base = None
    if x.flags.c_contiguous and not any(plan.pad[0] + plan.pad[1]):
        base = x.reshape((-1, *x.shape[-2:]))  # a view: windows read in place
    if base is not None:
        sl = slice(start, stop)
        gather_tiles(as_bits(base), plan.rows[sl], plan.cols[sl], plan.codes[sl], as_bits(out[sl]))
        return
    for s in strips(plan, start, stop):
        src = strip_source(x[..., s.y, s.x], s)
        gather_tiles(as_bits(src), s.rows, s.cols, s.codes, as_bits(out[s.start : s.stop]))


def tile_numpy(x: np.ndarray, plan: TilePlan, *, threads: int | None = None) -> np.ndarray:
    """Tile a numpy array ``(*other, H, W)`` into ``(n, *other, T, T)``.

    The kernels release the GIL, so the tiles are split over ``threads``
    threads (default: the CPU count, at most 8).
    """
    check_dtype(x.dtype)
    n, T, other = len(plan), plan.tile_size, x.shape[:-2]
    out = np.empty((n, math.prod(other), T, T), dtype=x.dtype)
    threads = threads or min(os.cpu_count() or 1, 8)
    parts = max(1, min(n, threads * 4))
    bounds = np.linspace(0, n, parts + 1).astype(int)
    if threads == 1 or parts == 1:
        for a, b in itertools.pairwise(bounds):
            _fill(x, plan, out, a, b)
    else:
        with ThreadPoolExecutor(threads) as pool:
            list(pool.map(lambda ab: _fill(x, plan, out, *ab), itertools.pairwise(bounds)))
    return out.reshape((n, *other, T, T))


def blend_weights(tile_size: int, blend: str) -> np.ndarray:
    """Per-pixel weights of a tile for ``untile``: ``(T, T)`` float64.

    ``"mean"``: all ones. ``"hann"``: the separable window
    ``sin(pi * (u + 0.5) / T) ** 2`` on each axis, largest in the middle and
    falling toward the edges, floored at 1e-3 so edge pixels keep a small
    positive weight (a pixel only one tile covers still comes back).
    Both are symmetric under every D4 transform.
    """
    if blend == "mean":
        return np.ones((tile_size, tile_size))
    if blend == "hann":
        w = np.sin(np.pi * (np.arange(tile_size) + 0.5) / tile_size) ** 2
        return np.maximum(np.outer(w, w), 1e-3)
    raise InvalidParameterError(f"blend must be 'mean' or 'hann'; got {blend!r}")


def untile_numpy(
    tiles: np.ndarray,
    rows: np.ndarray,
    cols: np.ndarray,
    codes: np.ndarray,
    shape: tuple[int, int],
    weight: np.ndarray,
    dtype: np.dtype,
) -> np.ndarray:
    """Overlap-add ``(n, *other, T, T)`` tiles into ``(*other, H, W)``; NaN where no tile."""
    other = tiles.shape[1:-2]
    flat = np.ascontiguousarray(tiles.reshape((tiles.shape[0], -1, *tiles.shape[-2:])))
    acc = np.zeros((flat.shape[1], *shape), dtype=dtype)
    wsum = np.zeros(shape)
    scatter_tiles(flat.astype(dtype, copy=False), rows, cols, codes, weight, acc, wsum)
    normalize_weights(acc, wsum)
    return acc.reshape((*other, *shape))
