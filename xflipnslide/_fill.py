"""Array layer of gap filling: nearest valid pixel, on numpy or as a dask graph.

Every spatial slice (one band, say) of a ``(*other, H, W)`` float array is
filled independently: a NaN pixel takes the value of the valid pixel of the
same slice at the smallest Euclidean distance.

On numpy the whole slice is one block and the result is exact. On dask each
block is filled from itself plus a halo of ``reach`` pixels read around it
(:func:`dask.array.overlap.overlap`); the kernel then knows, per pixel,
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
import os
import warnings
from concurrent.futures import ThreadPoolExecutor

import dask.array as da
import numpy as np

from .errors import AllMissingError, FillReachError, FillReachWarning
from .kernels import fill_nearest

__all__ = ["fill_dask", "fill_numpy"]

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


def fill_numpy(x: np.ndarray, *, labels: list[str] | None = None) -> np.ndarray:
    """Exact nearest fill of every spatial slice of a numpy array."""
    h, w = x.shape[-2:]
    names = _slice_names(labels, x.shape[:-2])
    fallback = np.full(x.shape[:-2], np.nan)
    threads = min(os.cpu_count() or 1, 8)
    out, _ = _fill_slices(x, (0, h, 0, w), (False,) * 4, fallback, names, threads)
    return out


def _fill_block(block, fallback, *, depth, labels, strict, reach, block_info=None):
    info = block_info[0]
    (iy, ix), (ny, nx) = info["chunk-location"][-2:], info["num-chunks"][-2:]
    dy, dx = depth
    halo = (iy > 0 and dy > 0, iy < ny - 1 and dy > 0, ix > 0 and dx > 0, ix < nx - 1 and dx > 0)
    h, w = block.shape[-2:]
    core = (
        dy if halo[0] else 0,
        h - (dy if halo[1] else 0),
        dx if halo[2] else 0,
        w - (dx if halo[3] else 0),
    )
    # Names of this block's slices, by their global position in the other dims.
    starts = [loc[0] for loc in info["array-location"][:-2]] if labels else []
    names = {}
    if labels:
        full = info["shape"][:-2]
        for idx in np.ndindex(block.shape[:-2]):
            flat = np.ravel_multi_index(tuple(s + i for s, i in zip(starts, idx)), full)
            names[idx] = labels[flat]
    out, beyond = _fill_slices(block, core, halo, np.asarray(fallback)[..., 0, 0], names)
    if beyond:
        msg = (
            f"{beyond} filled pixels of block {tuple(info['chunk-location'])} have no valid pixel "
            f"provably nearest within reach={reach}: they took the nearest one within the block "
            "and its halo (or the band mean). Use a larger reach, larger chunks, or numpy input "
            "for an exact fill."
        )
        if strict:
            raise FillReachError(msg)
        warnings.warn(msg, FillReachWarning, stacklevel=2)
        log.warning(msg)
    return out


def fill_dask(
    x: da.Array,
    fallback: da.Array,
    *,
    reach: int,
    strict: bool = False,
    labels: list[str] | None = None,
) -> da.Array:
    """Lazy nearest fill of every spatial slice of a dask array.

    ``fallback`` holds one value per slice (shape ``x.shape[:-2]``), used
    only where a block and its halo have no valid pixel at all; NaN there
    means the slice has no valid pixel anywhere, an error.
    """
    depth = tuple(0 if len(c) == 1 else min(reach, n) for c, n in zip(x.chunks[-2:], x.shape[-2:]))
    axes = {x.ndim - 2: depth[0], x.ndim - 1: depth[1]}
    new_chunks = da.overlap.ensure_minimum_chunksize
    chunks = tuple(new_chunks(axes[a], c) if axes.get(a) else c for a, c in enumerate(x.chunks))
    if chunks != x.chunks:
        log.info(
            "gap fill: rechunking %s to %s so each chunk is at least reach=%d",
            x.chunks[-2:],
            chunks[-2:],
            reach,
        )
        x = x.rechunk(chunks)
    xo = da.overlap.overlap(x, depth={a: axes.get(a, 0) for a in range(x.ndim)}, boundary="none")
    fb = fallback.reshape((*fallback.shape, 1, 1)).rechunk((*x.chunks[:-2], (1,), (1,)))
    return da.map_blocks(
        _fill_block,
        xo,
        fb,
        chunks=x.chunks,
        dtype=x.dtype,
        meta=np.empty((0,) * x.ndim, dtype=x.dtype),
        depth=depth,
        labels=labels,
        strict=strict,
        reach=reach,
    )
