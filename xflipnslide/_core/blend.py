"""Array layer of blending: the weights and the one overlap-add of
``untile`` and ``predict``, on numpy or dask.

:class:`OverlapAdd` is the accumulator: tiles turned back by the inverse of
their D4 code and added with per-pixel weights onto a scene block. numpy
runs it on the whole scene (``predict`` adds one batch of model outputs at
a time); :func:`untile_array` on dask runs it once per output block, in a
task that reads only the tile chunks overlapping that block.
"""

from __future__ import annotations

import itertools
import math

import numpy as np

from ..errors import InvalidParameterError
from . import graph as _graph
from .blocks import chunk_bounds
from .graph import check_known_chunks, map_threads, threads
from .kernels import normalize_weights, scatter_tiles

__all__ = ["BLENDS", "OverlapAdd", "blend_weights", "output_chunks", "untile_array"]

#: Weights ``untile`` and ``predict`` blend overlapping tiles with.
BLENDS = ("mean", "hann", "distance", "spline")


def blend_weights(tile_size: int, blend: str, floor: float = 1e-3) -> np.ndarray:
    """Per-pixel weights of a ``(T, T)`` tile for overlap-adding, float64.

    With ``u = (i + 0.5) / T`` the pixel centre in ``(0, 1)`` and ``w`` applied
    on each axis (the 2-D weight is ``w(u_y) * w(u_x)``):

    * ``"mean"``: ``w = 1``.
    * ``"hann"``: ``w = sin(pi u)^2``.
    * ``"distance"``: ``w = 1 - |2u - 1|``, falling linearly from the centre
      to the tile edge (seamless_seg's trust weights).
    * ``"spline"``: the second-order spline window of Smoothly-Blend-Image-
      Patches: ``w = 1 - 2 (1 - d)^2`` for ``d = 1 - |2u - 1| >= 1/2`` (the
      middle half) and ``w = 2 d^2`` outside it, then divided by its mean.

    ``untile`` floors every 2-D weight at ``floor`` (1e-3) of its maximum, so
    a pixel that only one tile covers near its edge still comes back;
    ``predict``, whose windows cover every pixel away from their edges, uses
    the weights as they are (``floor=0``; all are positive). Every weight is
    symmetric under D4, so a transformed tile needs no transformed weights.
    An unknown ``blend`` is an :class:`~xflipnslide.errors.InvalidParameterError`.
    """
    if blend not in BLENDS:
        raise InvalidParameterError(
            f"blend must be one of {', '.join(map(repr, BLENDS))}; got {blend!r}"
        )
    u = (np.arange(tile_size) + 0.5) / tile_size
    d = 1 - np.abs(2 * u - 1)
    if blend == "mean":
        w = np.ones(tile_size)
    elif blend == "hann":
        w = np.sin(np.pi * u) ** 2
    elif blend == "distance":
        w = d
    else:
        w = np.where(d >= 0.5, 1 - 2 * (1 - d) ** 2, 2 * d**2)
        w = w / w.mean()
    out = np.outer(w, w)
    return np.maximum(out, floor * out.max())


#: Values added at once above which :meth:`OverlapAdd.add` splits the work
#: into row bands over threads (below, starting the threads costs more).
_BUSY = 1 << 21


class OverlapAdd:
    """The overlap-add of ``untile`` and ``predict``: weighted sums of tiles
    turned back into their windows' frame, on a ``(C, H, W)`` scene block.

    :meth:`add` scatters tiles (any number of calls: ``predict`` adds one
    batch of model outputs at a time); :meth:`result` divides by the summed
    weights, NaN where no tile. ``dtype`` is the accumulator's (float64 sums
    many overlapping views to within one rounding of a float32 result;
    float32 tiles are added to it without a conversion pass).
    Threaded by horizontal bands of the block: each thread adds the tiles
    overlapping its band into its own rows (the kernel clips windows to the
    band), so no two threads write a pixel.
    """

    def __init__(self, channels: int, shape: tuple[int, int], weight: np.ndarray, dtype) -> None:
        self.acc = np.zeros((channels, *shape), dtype=dtype)
        self.wsum = np.zeros(shape)
        self.weight = weight

    def _bands(self, busy: bool) -> list[tuple[int, int]]:
        """Row ranges of the threads: one per thread on a block of at least
        four tile heights with enough work, else the whole block."""
        h, T = self.wsum.shape[0], self.weight.shape[0]
        workers = threads() if busy and h >= 4 * T else 1
        return list(itertools.pairwise(np.linspace(0, h, workers + 1).astype(int).tolist()))

    def add(self, tiles: np.ndarray, rows, cols, codes) -> None:
        """Add ``(n, C, T, T)`` tiles whose windows start at ``rows``/``cols``
        (relative to the block; outside it is skipped) under ``codes``."""
        # float32 tiles are added to a float64 sum as they are (no conversion pass)
        same = tiles.dtype == np.float32 and self.acc.dtype.kind == "f"
        tiles = np.ascontiguousarray(tiles, dtype=None if same else self.acc.dtype)
        T = self.weight.shape[0]

        def band(edges: tuple[int, int]) -> None:
            y0, y1 = edges
            near = np.flatnonzero((rows < y1) & (rows + T > y0))
            # contiguous runs of tiles (plan order keeps window rows together): views, no copies
            for run in np.split(near, np.flatnonzero(np.diff(near) != 1) + 1):
                if len(run):
                    sl = slice(int(run[0]), int(run[-1]) + 1)
                    acc, wsum = self.acc[:, y0:y1], self.wsum[y0:y1]
                    scatter_tiles(
                        tiles[sl], rows[sl] - y0, cols[sl], codes[sl], self.weight, acc, wsum
                    )

        bands = self._bands(tiles.size > _BUSY)
        if len(bands) > 1:  # only the bands the tiles reach (a batch of one window row: one)
            bands = [(a, b) for a, b in bands if np.any((rows < b) & (rows + T > a))]
        if len(bands) <= 1:  # the whole block at once: contiguous, no clipping to a band
            bands = [(0, self.wsum.shape[0])]
        map_threads(band, bands, len(bands))

    def result(self, dtype) -> np.ndarray:
        """The weighted means as ``dtype``, NaN where no tile was added."""
        bands = self._bands(True)

        def band(edges: tuple[int, int]) -> None:
            normalize_weights(self.acc[:, edges[0] : edges[1]], self.wsum[edges[0] : edges[1]])

        map_threads(band, bands, len(bands))
        return self.acc.astype(dtype, copy=False)


def untile_array(
    tiles,
    rows: np.ndarray,
    cols: np.ndarray,
    codes: np.ndarray,
    shape: tuple[int, int],
    weight: np.ndarray,
    *,
    chunks=None,
    like=None,
    acc_dtype=None,
):
    """Undo each tile's transform and overlap-add ``(n, *other, T, T)`` into
    ``(*other, H, W)`` (float, float32 for float32 or small integer tiles);
    NaN where no tile. Dask in, dask out: ``chunks`` is the output chunking
    along y and x (a pair of chunk tuples or a side), by default that of the
    first dask array of ``like`` (arrays on the scene's grid, y and x last),
    else blocks bounding each task's memory. ``acc_dtype`` (float64)
    sums many overlapping views to within one rounding of the result."""
    dtype = np.result_type(tiles.dtype, np.float32)
    if _graph.is_lazy(tiles):
        check_known_chunks(tiles, "the tiles")
        grid = _graph.first_lazy(like)
        if chunks is None and grid is not None:
            chunks = tuple(grid.chunks[-2:])
        return _untile_dask(tiles, rows, cols, codes, shape, weight, dtype, chunks, acc_dtype)
    return _untile_numpy(np.asarray(tiles), rows, cols, codes, shape, weight, dtype, acc_dtype)


def _untile_numpy(tiles, rows, cols, codes, shape, weight, dtype, acc_dtype=None) -> np.ndarray:
    """Overlap-add into ``dtype`` with :class:`OverlapAdd`, summing in
    ``acc_dtype`` (default ``dtype``)."""
    other = tiles.shape[1:-2]
    flat = tiles.reshape((tiles.shape[0], -1, *tiles.shape[-2:]))
    acc = OverlapAdd(flat.shape[1], shape, weight, acc_dtype or dtype)
    acc.add(flat, rows, cols, codes)
    return acc.result(dtype).reshape((*other, *shape))


def _untile_block(
    parts: list, picks: list, rows, cols, codes, block_shape, weight, dtype, other, acc_dtype
):
    """Task body: scatter the tiles overlapping one output block into it."""
    if not parts:
        return np.full((*other, *block_shape), np.nan, dtype=dtype)
    tiles = np.concatenate([p[idx] for p, idx in zip(parts, picks)])
    return _untile_numpy(tiles, rows, cols, codes, block_shape, weight, dtype, acc_dtype)


def output_chunks(chunks, shape: tuple[int, int], tile_size: int, other_items: int, dtype):
    """Output chunks along (y, x) for ``untile``/``predict`` on dask.

    ``None``: square blocks, a multiple of the tile size, of about a quarter
    of dask's ``array.chunk-size`` (all other dims included), so a task holds
    its block, its weights and the tiles overlapping it in bounded memory.
    """
    import dask
    from dask.array.core import normalize_chunks
    from dask.utils import parse_bytes

    if chunks is None:
        target = parse_bytes(dask.config.get("array.chunk-size")) / 4
        side = math.sqrt(target / max(other_items * np.dtype(dtype).itemsize, 1))
        side = max(tile_size, int(side // tile_size) * tile_size)
        chunks = (side, side)
    elif not isinstance(chunks, tuple) or len(chunks) != 2:
        chunks = (chunks, chunks)
    return normalize_chunks(chunks, shape=shape, dtype=dtype)


def _untile_dask(tiles, rows, cols, codes, shape, weight, dtype, chunks, acc_dtype=None):
    if any(len(c) > 1 for c in tiles.chunks[1:]):
        tiles = tiles.rechunk({i: -1 for i in range(1, tiles.ndim)})
    T, other = tiles.shape[-1], tuple(tiles.shape[1:-2])
    chunks = output_chunks(chunks, shape, T, math.prod(other), dtype)
    from dask.base import tokenize

    name = "fns-untile-" + tokenize(
        tiles, rows, cols, codes, shape, weight, dtype, chunks, np.dtype(acc_dtype or dtype)
    )
    tbounds = chunk_bounds(tiles.chunks[0])
    owner = np.searchsorted(tbounds, np.arange(len(rows)), side="right") - 1
    ybounds, xbounds = (chunk_bounds(c) for c in chunks)
    zeros = (0,) * len(other)
    inner = (0,) * (tiles.ndim - 1)
    dsk = {}
    for iy in range(len(chunks[0])):
        y0, y1 = ybounds[iy], ybounds[iy + 1]
        near_y = (rows < y1) & (rows + T > y0)
        for ix in range(len(chunks[1])):
            x0, x1 = xbounds[ix], xbounds[ix + 1]
            ks = np.flatnonzero(near_y & (cols < x1) & (cols + T > x0))
            parts, picks = [], []
            for chunk in np.unique(owner[ks]).tolist():
                mine = ks[owner[ks] == chunk]
                parts.append((tiles.name, chunk, *inner))
                picks.append(mine - tbounds[chunk])
            dsk[(name, *zeros, iy, ix)] = (
                _untile_block,
                parts,
                picks,
                rows[ks] - y0,
                cols[ks] - x0,
                codes[ks],
                (y1 - y0, x1 - x0),
                weight,
                dtype,
                other,
                acc_dtype,
            )
    out_chunks = (*((d,) for d in other), *chunks)
    return _graph.array(name, dsk, out_chunks, dtype, [tiles])
