"""Array layer of standardisation: per-band statistics and ``(x - mean) / scale``;
the checks of the values a scene or its statistics hold, where they are in memory.

One statistics path for both backends, built on the numba kernel
:func:`.kernels.moments` (count, mean, sum of squared deviations over the
non-NaN values of a block): numpy runs it once per band; dask runs it once
per chunk and merges the chunks' moments exactly (Chan et al.'s pairwise
update), so both give the same float64 mean and population std. The
statistics of several arrays together (a collection of scenes) merge all
their blocks' moments the same way (:func:`pooled_stats_array`).
"""

from __future__ import annotations

import logging
import math
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from ..errors import DataDroppedWarning, InvalidParameterError, warn
from . import graph as _graph
from .graph import threads
from .kernels import moments, standardize_into

__all__ = [
    "band_stats_array",
    "check_stat_values",
    "pooled_stats_array",
    "report_nodata",
    "standardize_array",
]

log = logging.getLogger(__name__)


def _merge(parts: np.ndarray) -> np.ndarray:
    """Merge ``(..., k, 3)`` moments ``(n, mean, m2)`` over axis -2 into
    ``(..., 3)`` ``(mean, std, n)``; mean and std NaN where there is no
    value at all."""
    n, mean, m2 = parts[..., 0], parts[..., 1], parts[..., 2]
    total = n.sum(-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        grand = np.where(n > 0, n * mean, 0).sum(-1) / total
        dev = np.where(n > 0, m2 + n * (mean - grand[..., None]) ** 2, 0).sum(-1)
        std = np.sqrt(dev / total)
    grand = np.where(total > 0, grand, np.nan)
    return np.stack([grand, np.where(total > 0, std, np.nan), total], axis=-1)


def _block_moments(block: np.ndarray, nband: int) -> np.ndarray:
    """``(*band, 1, ..., 1, 3)`` moments of each band slice of one block."""
    bands = block.shape[:nband]
    out = np.empty((*bands, 3))
    for idx in np.ndindex(bands):
        out[idx] = moments(np.ascontiguousarray(block[idx]))
    return out.reshape((*bands, *(1,) * (block.ndim - nband), 3))


def band_stats_array(x, nband: int):
    """Mean, population std and count (float64) of the non-NaN values of
    each ``x[idx]`` for ``idx`` over the first ``nband`` axes: a
    ``(*band, 3)`` array, lazy for dask input (mean and std NaN for a band
    without any value). The count tells the gap fill how much of each band
    it invents."""
    return pooled_stats_array([x], nband)[1][0]


def pooled_stats_array(xs, nband: int):
    """The statistics of :func:`band_stats_array` over the values of all of
    ``xs`` together (arrays that agree on their first ``nband`` axes, any
    shape after), and each array's own: ``(pooled, [own, ...])``.

    One pass over every block: the pooled statistics merge the blocks'
    moments of all arrays exactly, as one array's are merged, so they equal
    those of the arrays' values concatenated. Lazy where any input is dask
    (an in-memory array's own statistics stay in memory); one array's
    pooled statistics are its own.
    """
    if not xs:
        raise InvalidParameterError("statistics need at least one array")
    lazy = any(_graph.is_lazy(x) for x in xs)
    # Per array: its moments (n, mean, m2) per block, (*band, k, 3), and its own statistics.
    parts, own = [], []
    for x in xs:
        if _graph.is_lazy(x):
            token = _token(x.name, x.chunks, nband)  # its name fixes its values
            part = _dask_moments(x, nband, token)
            own.append(_dask_merge(part, f"fns-stats-{token}"))
        else:
            part = _numpy_moments(np.asarray(x), nband)
            own.append(_merge(part))
        parts.append(part)
    if len(xs) == 1:
        return own[0], own
    if not lazy:
        return _merge(np.concatenate(parts, axis=nband)), own
    import dask.array as da

    columns = [da.asarray(p).rechunk((*(-1,) * nband, -1, 3)) for p in parts]
    joined = da.concatenate(columns, axis=nband)
    name = "fns-stats-pooled-" + _token([c.name for c in columns])
    return _dask_merge(joined, name), own


def _token(*args) -> str:
    from dask.base import tokenize

    return tokenize(*args)


def _numpy_moments(x: np.ndarray, nband: int) -> np.ndarray:
    """``(*band, 1, 3)`` moments ``(n, mean, m2)`` of each band slice of ``x``."""
    bands = x.shape[:nband]
    idxs = list(np.ndindex(bands))
    with ThreadPoolExecutor(max(1, min(threads(), len(idxs)))) as pool:
        got = list(pool.map(lambda i: moments(np.ascontiguousarray(x[i])), idxs))
    return np.array(got).reshape((*bands, 1, 3))


def _dask_moments(x, nband: int, token: str):
    """``(*band, k, 3)`` moments of the ``k`` chunks of each band slice, read
    from an independent copy of ``x``'s graph (a second read, not the scene
    held in memory until the statistics are known)."""
    import dask.array as da

    x = _graph.independent_copy(x)
    parts = da.map_blocks(
        _block_moments,
        x,
        nband,
        dtype=np.float64,
        chunks=(*x.chunks[:nband], *(((1,) * len(c)) for c in x.chunks[nband:]), (3,)),
        new_axis=x.ndim,
        name=f"fns-moments-{token}",
    )
    return parts.reshape((*x.shape[:nband], -1, 3)) if x.ndim - nband != 1 else parts


def _dask_merge(parts, name: str):
    """:func:`_merge` of lazy ``(*band, k, 3)`` moments, one task per band chunk."""
    import dask.array as da

    flat = parts.rechunk({parts.ndim - 2: -1})
    nband = parts.ndim - 2
    return da.map_blocks(
        _merge,
        flat,
        dtype=np.float64,
        drop_axis=nband,
        chunks=(*flat.chunks[:nband], (3,)),
        name=name,
    )


def _standardize_block(
    block: np.ndarray, mean: np.ndarray, scale: np.ndarray, workers: int = 1
) -> np.ndarray:
    """``(block - mean) / scale`` as float32, one kernel call per band slice,
    over ``workers`` threads (the kernel releases the GIL)."""
    nband = _leading(mean) if mean.ndim else 0
    out = np.empty(block.shape, np.float32)
    idxs = list(np.ndindex(block.shape[:nband]))

    def one(idx):
        standardize_into(block[idx], float(mean[idx].flat[0]), float(scale[idx].flat[0]), out[idx])

    if workers > 1 and len(idxs) > 1:
        with ThreadPoolExecutor(min(workers, len(idxs))) as pool:
            list(pool.map(one, idxs))
    else:
        for idx in idxs:
            one(idx)
    return out


def _leading(stat: np.ndarray) -> int:
    """How many leading axes of a broadcast statistic carry values."""
    k = stat.ndim
    while k and stat.shape[k - 1] == 1:
        k -= 1
    return k


def standardize_array(x, mean, scale):
    """``(x - mean) / scale`` as float32, one pass per band slice (float64
    arithmetic in the kernel). ``mean`` and ``scale`` have the shape of
    ``x``'s first axes, padded with length-1 axes to ``x.ndim``; they may be
    lazy. Dask in (the data or a statistic: a collection's pooled
    statistics), dask out: nothing is computed here."""
    if any(_graph.is_lazy(a) for a in (x, mean, scale)):
        import dask.array as da

        if not _graph.is_lazy(x):
            x = da.from_array(np.asarray(x), chunks=-1)

        def expand(stat):
            # Chunked along the bands as x is: map_blocks pairs blocks by index
            # and does not align a statistic chunked otherwise (a collection's
            # pooled statistics, those of a scene chunked differently).
            lazy = _graph.is_lazy(stat)
            stat = stat if lazy else np.asarray(stat, np.float64)
            nband = _leading(stat)
            chunks = (*x.chunks[:nband], *((1,),) * (x.ndim - nband))
            return stat.rechunk(chunks) if lazy else da.from_array(stat, chunks=chunks)

        from dask.base import tokenize

        mean, scale = expand(mean), expand(scale)
        return da.map_blocks(
            _standardize_block,
            x,
            mean,
            scale,
            dtype=np.float32,
            name="fns-standardize-" + tokenize(x.name, x.chunks, mean, scale),
        )
    x = np.asarray(x)
    mean, scale = np.asarray(mean, np.float64), np.asarray(scale, np.float64)
    big = math.prod(x.shape) > 1 << 17  # threads only pay off on large slices
    return _standardize_block(x, mean, scale, threads() if big else 1)


def check_stat_values(name: str, x) -> None:
    """Raise unless the statistic ``x`` (``"mean"`` or ``"std"``) is finite
    and, for a std, non-negative. Checked where ``x`` is in memory; a lazy
    statistic is taken as given (checking it would compute it)."""
    if _graph.is_lazy(x):
        return
    values = np.asarray(x, dtype=np.float64)
    if not np.isfinite(values).all():
        raise InvalidParameterError(
            f"stats {name} must be finite; got {values.tolist()}: pass the statistics of "
            "a scene with valid pixels in every band"
        )
    if name == "std" and (values < 0).any():
        raise InvalidParameterError(
            f"stats std must be >= 0 (a standard deviation); got {values.tolist()}"
        )


def report_nodata(x, nodata, source: str) -> None:
    """Log how many pixels of ``x`` equal ``nodata`` (read from ``source``),
    and warn when they are many yet ``nodata`` lies inside the range of the
    other values: they may be real measurements (Landsat's zeros are not,
    but a declared 0 in a reflectance band with values around it may be).
    numpy only: on dask the masking is only logged (counting would compute)."""
    if _graph.is_lazy(x):
        log.info("preprocess: masking pixels equal to %r (from %s)", nodata, source)
        return
    values = np.asarray(x)
    count = int((values == nodata).sum())
    log.info("preprocess: masked %d pixels equal to %r (from %s)", count, nodata, source)
    share = count / max(values.size, 1)
    if share < 0.05:
        return
    rest = values[values != nodata]
    if values.dtype.kind == "f":
        rest = rest[np.isfinite(rest)]
    if rest.size and rest.min() < nodata < rest.max():
        warn(
            f"preprocess: nodata={nodata!r} (from {source}) masks {share:.1%} of the pixels, yet "
            f"lies inside the range of the other values ({rest.min()!r} to {rest.max()!r}): if "
            "those pixels are real measurements, pass the right nodata= (or nodata=float('nan')); "
            "otherwise tile with min_valid=... to drop mostly-filled tiles",
            DataDroppedWarning,
        )
