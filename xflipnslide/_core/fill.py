"""Array layer of gap filling: nearest valid pixel, on numpy or as a dask graph.

Every spatial slice (one band, say) of a ``(*other, H, W)`` float array is
filled independently: a NaN pixel takes the value of the valid pixel of the
same slice at the smallest Euclidean distance.

On numpy the whole slice is one block and the result is exact. On dask each
block is filled from itself plus a halo of ``reach`` pixels sliced from its
neighbouring chunks (one task per chunk, in one graph layer); the kernel then knows, per pixel,
whether its nearest valid pixel is provably the scene's nearest (it is
closer than every cut side of block + halo). Pixels where that is not
proven take the nearest valid pixel in block + halo, or the slice's
mean if there is none; they are counted, and the task
warns with :class:`FillReachWarning` or, with ``strict=True``, raises
:class:`FillReachError`.

What is invented is said with a :class:`DataFilledWarning`: on numpy by
:func:`report_missing` (the shares are known at once), on dask by each task that fills
pixels, when it runs. The tasks read each slice's count of valid pixels
from the statistics pass they depend on anyway (for the fallback mean), so
every task of a band chunk gives the same message, with the scene-wide
share per slice, and Python shows it once. Nothing is computed while the
graph is built.
"""

from __future__ import annotations

import logging
import math
import warnings
from concurrent.futures import ThreadPoolExecutor
from itertools import product

import numpy as np

from ..errors import (
    AllMissingError,
    DataDroppedWarning,
    DataFilledWarning,
    FillReachError,
    FillReachWarning,
    XFlipNSlideWarning,
    warn,
)
from . import graph as _graph
from .blocks import assemble, chunk_bounds, chunk_span, local_slices
from .graph import check_known_chunks, threads
from .kernels import fill_nearest, nearest_valid
from .stats import band_stats_array

__all__ = ["fill_array", "filled_message", "prepare_chunks", "report_missing"]

log = logging.getLogger(__name__)


def _fill_slices(
    block: np.ndarray,
    core: tuple[int, int, int, int],
    halo: tuple[bool, bool, bool, bool],
    fallback: np.ndarray,
    names: dict,
    threads: int = 1,
) -> tuple[np.ndarray, int, int]:
    """Fill the core of each spatial slice of ``block`` (``(*other, H, W)``):
    the filled core, the pixels not provably exact, the pixels filled."""
    y0, y1, x0, x1 = core
    out = np.empty((*block.shape[:-2], y1 - y0, x1 - x0), dtype=block.dtype)
    core_a, halo_a = np.asarray(core, np.int64), np.asarray(halo, np.bool_)

    def one(idx) -> tuple[int, int]:
        plane = np.ascontiguousarray(block[idx])
        valid = ~np.isnan(plane)
        fb = float(fallback[idx]) if fallback.ndim else float(fallback)
        if valid.all():
            out[idx] = plane[y0:y1, x0:x1]
            return 0, 0
        filled = int((~valid[y0:y1, x0:x1]).sum())
        n = fill_nearest(plane, valid, core_a, halo_a, fb, out[idx])
        if n and math.isnan(fb):
            raise AllMissingError(
                f"{names.get(idx, 'the data')} has no valid pixel at all, so its "
                "gaps cannot be filled: drop it, or check the nodata value"
            )
        return n, filled

    slices = list(np.ndindex(block.shape[:-2]))
    if threads > 1 and len(slices) > 1:  # the kernel releases the GIL
        with ThreadPoolExecutor(min(threads, len(slices))) as pool:
            counts = list(pool.map(one, slices))
    else:
        counts = list(map(one, slices))
    return out, sum(c[0] for c in counts), sum(c[1] for c in counts)


def filled_message(shares: list[tuple[str, float]]) -> str:
    """The :class:`DataFilledWarning` text for the missing share of each
    slice that has gaps (``[("band=red", 0.165), ...]``): one wording for
    numpy and dask."""
    listed = ", ".join(f"{lab}: {m:.1%}" for lab, m in shares[:6])
    if len(shares) > 6:
        listed += f", and {len(shares) - 6} more"
    hint = (
        " More than a quarter of a band is invented: tile with min_valid=... to drop "
        "mostly-filled tiles (each tile's valid_fraction records its share)."
        if max(m for _, m in shares) > 0.25
        else " Each tile's valid_fraction records its observed share."
    )
    return (
        "preprocess: missing pixels (nodata, NaN or infinite) are filled from their nearest "
        f"valid neighbour ({listed}).{hint}"
    )


def _slice_names(labels: list[str] | None, shape: tuple[int, ...]) -> dict:
    if not labels:
        return {}
    return dict(zip(np.ndindex(shape), labels))


def fill_array(
    x,
    slice_stats=None,
    *,
    reach: int = 512,
    strict: bool = False,
    labels: list[str] | None = None,
):
    """Nearest fill of every spatial slice of ``x``: exact on numpy; on dask
    one task per chunk reading a halo of ``reach`` pixels. ``slice_stats``
    (dask only; numpy ignores it): the ``(*x.shape[:-2], 3)`` mean, std and
    valid count of each slice, as :func:`.stats.band_stats_array` gives
    them, lazy: the mean for pixels with nothing valid in reach, the count
    for the :class:`DataFilledWarning` each filling task gives. Pass the
    standardisation's statistics where the slices are its bands (one pass
    less); by default the dask fill takes its own pass."""
    if _graph.is_lazy(x):
        if slice_stats is None:
            slice_stats = band_stats_array(x, x.ndim - 2)
        return _fill_dask(x, slice_stats, reach=reach, strict=strict, labels=labels)
    return _fill_numpy(np.asarray(x), labels=labels)


def report_missing(x, labels: list[str], *, filled: bool) -> None:
    """Warn about the missing (NaN) pixels of each spatial slice of ``x``:
    those the fill will invent (:class:`DataFilledWarning`, with the shares)
    or, without a fill, slices more than a quarter missing
    (:class:`DataDroppedWarning`). numpy only: on dask nothing is computed
    here, the fill tasks warn when they run."""
    if _graph.is_lazy(x):
        return
    missing = 1 - (~np.isnan(np.asarray(x))).mean(axis=(-2, -1)).reshape(-1)
    worst = [(lab, m) for lab, m in zip(labels, missing.tolist()) if m > 0]
    if not worst:
        return
    if filled:
        warn(filled_message(worst), DataFilledWarning)
        return
    heavy = [(lab, m) for lab, m in worst if m > 0.25]
    if heavy:
        shares = ", ".join(f"{lab}: {m:.1%}" for lab, m in heavy[:6])
        warn(
            f"preprocess: more than a quarter of a band is missing (nodata, NaN or "
            f"infinite; {shares}) and left NaN: tile with min_valid=... to drop "
            "mostly-empty tiles (each tile's valid_fraction records its share)",
            DataDroppedWarning,
        )


def prepare_chunks(x, reach: int):
    """``x``, rechunked (with a warning) where its spatial chunks are smaller
    than ``reach``: every task would otherwise assemble and fill a block of
    ``(chunk + 2 reach)²`` from many neighbours (the cost grows with
    ``(reach / chunk)²``). numpy passes through."""
    if not _graph.is_lazy(x):
        return x
    check_known_chunks(x)
    smallest = min(min(c) for c in x.chunks[-2:])
    if smallest >= min(reach, *x.shape[-2:]):
        return x
    side = 2 * reach
    warn(
        f"preprocess: spatial chunks of {smallest} px are much smaller than the fill's "
        f"reach={reach}, which makes the gap fill read and fill (chunk + 2 reach)² per "
        f"chunk; rechunking y/x to {side} px. Chunk the input larger (or pass a smaller "
        "reach) to choose yourself.",
        XFlipNSlideWarning,
    )
    return x.rechunk({x.ndim - 2: side, x.ndim - 1: side})


def _fill_numpy(x: np.ndarray, *, labels: list[str] | None = None) -> np.ndarray:
    """Exact nearest fill of every spatial slice of a numpy array."""
    h, w = x.shape[-2:]
    names = _slice_names(labels, x.shape[:-2])
    fallback = np.full(x.shape[:-2], np.nan)
    out, _, _ = _fill_slices(x, (0, h, 0, w), (False,) * 4, fallback, names, threads())
    return out


def _largest_gap(core: np.ndarray) -> float:
    """Over the spatial slices of a chunk, the largest distance from a missing
    pixel to the nearest valid pixel *of the chunk* (inf where a slice has
    none): an upper bound on how far any missing pixel's nearest valid pixel
    lies, so a halo that wide makes the fill exact."""
    worst = 0.0
    for idx in np.ndindex(core.shape[:-2]):
        valid = ~np.isnan(core[idx])
        if valid.all():
            continue
        if not valid.any():
            return math.inf
        rows = np.empty(valid.shape, np.int32)
        cols = np.empty(valid.shape, np.int32)
        nearest_valid(valid, rows, cols)
        yy, xx = np.nonzero(~valid)
        d2 = (yy - rows[yy, xx]) ** 2 + (xx - cols[yy, xx]) ** 2
        worst = max(worst, float(np.sqrt(d2.max())))
    return worst


def _pick(nested: list, depth: int, ry: int, rx: int) -> np.ndarray:
    for _ in range(depth):
        nested = nested[0]
    return nested[ry][rx]


def _fill_block(nested, stats, *, edges, core, scene, depth, names, strict, reach, where):
    """Task body: fill one chunk from itself plus a halo sized to its gaps.

    The neighbours within ``reach`` are the task's inputs; the halo actually
    assembled is only as wide as the chunk's largest gap (its missing pixels'
    nearest valid pixel within the chunk, rounded up), which keeps the fill
    exact while a chunk with small gaps costs about its own size, not
    ``(chunk + 2 reach)²``. ``stats``: the ``(*slices, 3)`` mean, std and
    valid count of the chunk's slices over the whole scene.
    """
    (yedges, xedges), (gy0, gy1, gx0, gx1), (h, w) = edges, core, scene
    ry, rx = yedges.index(gy0), xedges.index(gx0)
    own = _pick(nested, depth, ry, rx)
    gap = _largest_gap(own)
    if gap == 0:
        return own.copy()
    hh = reach if math.isinf(gap) else min(reach, math.ceil(gap) + 1)
    ysl = slice(max(gy0 - hh, yedges[0]), min(gy1 + hh, yedges[-1]))
    xsl = slice(max(gx0 - hh, xedges[0]), min(gx1 + hh, xedges[-1]))
    spany, spanx = chunk_span(yedges, ysl), chunk_span(xedges, xsl)

    def cut(level, d):
        if d:
            return [cut(n, d - 1) for n in level]
        return [[level[i][j] for j in spanx] for i in spany]

    block = assemble(
        cut(nested, depth),
        local_slices(yedges, spany, ysl),
        local_slices(xedges, spanx, xsl),
        depth,
    )
    local = (gy0 - ysl.start, gy1 - ysl.start, gx0 - xsl.start, gx1 - xsl.start)
    halo = (ysl.start > 0, ysl.stop < h, xsl.start > 0, xsl.stop < w)
    stats = np.asarray(stats, np.float64)
    out, beyond, filled = _fill_slices(block, local, halo, stats[..., 0], names)
    if filled:
        _warn_filled(stats[..., 2], h * w, names)
    if beyond:
        msg = (
            f"{beyond} filled pixels of block {where} have no valid pixel provably nearest "
            f"within reach={reach}: they took the nearest one within the block and its halo "
            "(or the band mean). Use a larger reach, larger chunks, or numpy input for an exact fill."
        )
        if strict:
            raise FillReachError(msg)
        warnings.warn(msg, FillReachWarning, stacklevel=2)
        log.warning(msg)
    return out


def _warn_filled(counts: np.ndarray, pixels: int, names: dict) -> None:
    """From a filling task: the scene-wide missing share of every slice of
    its chunk that has gaps (the same text from every task of the chunk's
    slices, which Python then shows once)."""
    shares = [
        (names.get(idx, "the data"), 1 - float(counts[idx]) / pixels)
        for idx in np.ndindex(counts.shape)
        if counts[idx] < pixels
    ]
    if shares:
        message = filled_message(shares)
        log.info(message)
        warn(message, DataFilledWarning)


def _fill_dask(x, slice_stats, *, reach: int, strict: bool = False, labels=None):
    """Lazy nearest fill of every spatial slice of a dask array.

    One task per chunk, depending directly on the input chunks within
    ``reach`` of it (one graph layer; no rechunking, whatever the chunk
    sizes), and on the statistics of its slices: ``slice_stats``, shape
    ``(*x.shape[:-2], 3)`` (mean, std, valid count). The mean is used only
    where a chunk and its halo have no valid pixel at all; NaN there means
    the slice has no valid pixel anywhere, an error. The layer's name is a
    token of the input, the statistics and every option.
    """
    from dask.base import tokenize
    from dask.utils import apply

    check_known_chunks(x)
    if slice_stats is None or tuple(slice_stats.shape) != (*x.shape[:-2], 3):
        raise ValueError("the dask fill needs each slice's (mean, std, count)")
    h, w = x.shape[-2:]
    st = slice_stats.rechunk((*x.chunks[:-2], (3,)))
    name = "fns-fill-" + tokenize(x, x.chunks, st, reach, strict, labels)
    bounds = [chunk_bounds(c) for c in x.chunks]
    (ybounds, xbounds), other_shape = bounds[-2:], x.shape[:-2]
    dsk = {}
    for idx in product(*(range(len(c)) for c in x.chunks)):
        *o, iy, ix = idx
        ysl = slice(max(ybounds[iy] - reach, 0), min(ybounds[iy + 1] + reach, h))
        xsl = slice(max(xbounds[ix] - reach, 0), min(xbounds[ix + 1] + reach, w))
        spany, spanx = chunk_span(ybounds, ysl), chunk_span(xbounds, xsl)
        nested = _graph.nest_keys((x.name,), [*(range(k, k + 1) for k in o), spany, spanx])
        edges = (
            [ybounds[i] for i in spany] + [ybounds[spany[-1] + 1]],
            [xbounds[j] for j in spanx] + [xbounds[spanx[-1] + 1]],
        )
        core = (ybounds[iy], ybounds[iy + 1], xbounds[ix], xbounds[ix + 1])
        starts = [bounds[d][k] for d, k in enumerate(o)]
        shape = tuple(x.chunks[d][k] for d, k in enumerate(o))
        names = {}
        if labels:
            for local in np.ndindex(shape):
                g = tuple(s0 + i for s0, i in zip(starts, local))
                names[local] = labels[int(np.ravel_multi_index(g, other_shape))]
        dsk[(name, *idx)] = (
            apply,
            _fill_block,
            [nested, (st.name, *o, 0)],
            {
                "edges": edges,
                "core": core,
                "scene": (h, w),
                "depth": len(o),
                "names": names,
                "strict": strict,
                "reach": reach,
                "where": tuple(idx),
            },
        )
    return _graph.array(name, dsk, x.chunks, x.dtype, [x, st])
