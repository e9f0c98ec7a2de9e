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
``fallback`` (its mean) if there is none; they are counted, and the task
warns with :class:`FillReachWarning` or, with ``strict=True``, raises
:class:`FillReachError`.
"""

from __future__ import annotations

import logging
import math
import warnings
from concurrent.futures import ThreadPoolExecutor
from itertools import product

import numpy as np

from . import _graph
from ._blocks import assemble, chunk_bounds, chunk_span, local_slices
from ._tiling import check_known_chunks, threads
from .errors import AllMissingError, FillReachError, FillReachWarning, XFlipNSlideWarning, warn
from .kernels import fill_nearest

__all__ = ["fill_array", "prepare_chunks"]

log = logging.getLogger(__name__)


def _fill_slices(
    block: np.ndarray,
    core: tuple[int, int, int, int],
    halo: tuple[bool, bool, bool, bool],
    fallback: np.ndarray,
    names: dict,
    threads: int = 1,
) -> tuple[np.ndarray, int]:
    """Fill the core of each spatial slice of ``block`` (``(*other, H, W)``)."""
    y0, y1, x0, x1 = core
    out = np.empty((*block.shape[:-2], y1 - y0, x1 - x0), dtype=block.dtype)
    core_a, halo_a = np.asarray(core, np.int64), np.asarray(halo, np.bool_)

    def one(idx) -> int:
        plane = np.ascontiguousarray(block[idx])
        valid = ~np.isnan(plane)
        fb = float(fallback[idx]) if fallback.ndim else float(fallback)
        if valid.all():
            out[idx] = plane[y0:y1, x0:x1]
            return 0
        n = fill_nearest(plane, valid, core_a, halo_a, fb, out[idx])
        if n and math.isnan(fb):
            raise AllMissingError(
                f"{names.get(idx, 'the data')} has no valid pixel at all, so its "
                "gaps cannot be filled: drop it, or check the nodata value"
            )
        return n

    slices = list(np.ndindex(block.shape[:-2]))
    if threads > 1 and len(slices) > 1:  # the kernel releases the GIL
        with ThreadPoolExecutor(min(threads, len(slices))) as pool:
            beyond = sum(pool.map(one, slices))
    else:
        beyond = sum(map(one, slices))
    return out, beyond


def _slice_names(labels: list[str] | None, shape: tuple[int, ...]) -> dict:
    if not labels:
        return {}
    return dict(zip(np.ndindex(shape), labels))


def fill_array(
    x, fallback=None, *, reach: int = 512, strict: bool = False, labels: list[str] | None = None
):
    """Nearest fill of every spatial slice of ``x``: exact on numpy; on dask
    one task per chunk reading a halo of ``reach`` pixels (``fallback``: one
    value per slice, a dask array, for pixels with nothing valid in reach)."""
    if _graph.is_lazy(x):
        return _fill_dask(x, fallback, reach=reach, strict=strict, labels=labels)
    return _fill_numpy(np.asarray(x), labels=labels)


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
    out, _ = _fill_slices(x, (0, h, 0, w), (False,) * 4, fallback, names, threads())
    return out


def _fill_block(nested, fallback, *, ys, xs, depth, core, halo, names, strict, reach, where):
    """Task body: assemble one chunk plus its halo and fill the chunk."""
    block = assemble(nested, ys, xs, depth)
    out, beyond = _fill_slices(block, core, halo, np.asarray(fallback), names)
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


def _fill_dask(x, fallback, *, reach: int, strict: bool = False, labels=None):
    """Lazy nearest fill of every spatial slice of a dask array.

    One task per chunk, depending directly on the input chunks within
    ``reach`` of it (one graph layer; no rechunking, whatever the chunk
    sizes). ``fallback`` holds one value per slice (shape ``x.shape[:-2]``),
    used only where a chunk and its halo have no valid pixel at all; NaN
    there means the slice has no valid pixel anywhere, an error.
    """
    from dask.base import tokenize
    from dask.utils import apply

    check_known_chunks(x)
    h, w = x.shape[-2:]
    fb = fallback.rechunk(x.chunks[:-2]) if fallback.ndim else fallback
    name = "fns-fill-" + tokenize(x, fb, reach, strict, labels)
    bounds = [chunk_bounds(c) for c in x.chunks]
    (ybounds, xbounds), other_shape = bounds[-2:], x.shape[:-2]
    dsk = {}
    for idx in product(*(range(len(c)) for c in x.chunks)):
        *o, iy, ix = idx
        ysl = slice(max(ybounds[iy] - reach, 0), min(ybounds[iy + 1] + reach, h))
        xsl = slice(max(xbounds[ix] - reach, 0), min(xbounds[ix + 1] + reach, w))
        spany, spanx = chunk_span(ybounds, ysl), chunk_span(xbounds, xsl)
        ys, xs = local_slices(ybounds, spany, ysl), local_slices(xbounds, spanx, xsl)
        nested = _graph.nest_keys((x.name,), [*(range(k, k + 1) for k in o), spany, spanx])
        core = (
            ybounds[iy] - ysl.start,
            ybounds[iy + 1] - ysl.start,
            xbounds[ix] - xsl.start,
            xbounds[ix + 1] - xsl.start,
        )
        halo = (ysl.start > 0, ysl.stop < h, xsl.start > 0, xsl.stop < w)
        starts = [bounds[d][k] for d, k in enumerate(o)]
        shape = tuple(x.chunks[d][k] for d, k in enumerate(o))
        names = {}
        if labels:
            for local in np.ndindex(shape):
                g = tuple(st + i for st, i in zip(starts, local))
                names[local] = labels[int(np.ravel_multi_index(g, other_shape))]
        dsk[(name, *idx)] = (
            apply,
            _fill_block,
            [nested, (fb.name, *o) if fb.ndim else fb],
            {
                "ys": ys,
                "xs": xs,
                "depth": len(o),
                "core": core,
                "halo": halo,
                "names": names,
                "strict": strict,
                "reach": reach,
                "where": tuple(idx),
            },
        )
    return _graph.array(name, dsk, x.chunks, x.dtype, [x, fb] if fb.ndim else [x])
