"""Array layer of rasterising: burn shapes onto a grid, whole or block by block.

``rasterio.features.rasterize`` does the scan conversion; on dask each output
block is one task burning the shapes onto that block's own transform (the
shapes travel once, as one key of the graph).
"""

from __future__ import annotations

import numpy as np

from . import graph as _graph
from .blocks import chunk_bounds

__all__ = ["rasterize_array"]


def _burn(shapes, transform, shape, fill, all_touched, dtype) -> np.ndarray:
    from affine import Affine
    from rasterio.features import rasterize

    transform = Affine(*list(transform)[:6])  # dask graphs may hand a plain tuple
    if not shapes:
        return np.full(shape, fill, dtype=dtype)
    return rasterize(
        shapes,
        out_shape=shape,
        transform=transform,
        fill=fill,
        all_touched=all_touched,
        dtype=dtype,
    )


def rasterize_array(shapes, transform, shape, *, fill, all_touched, dtype, like=None):
    """``(H, W)`` array of ``shapes`` (``(geometry, value)`` pairs) burned on
    the grid of ``transform`` (an affine): numpy, or, where one of ``like``
    (arrays on that grid, y and x last) is a dask array, a lazy dask array
    chunked as the first such along y and x."""
    lazy = _graph.first_lazy(like)
    if lazy is None:
        return _burn(shapes, transform, shape, fill, all_touched, dtype)
    chunks = tuple(tuple(int(c) for c in axis) for axis in lazy.chunks[-2:])
    from affine import Affine
    from dask.base import tokenize

    token = tokenize(
        [(g.wkb, v) for g, v in shapes],
        tuple(transform),
        shape,
        fill,
        all_touched,
        np.dtype(dtype),
        chunks,
    )
    name, key = f"fns-rasterize-{token}", f"fns-shapes-{token}"
    ybounds, xbounds = chunk_bounds(chunks[0]), chunk_bounds(chunks[1])
    dsk: dict = {key: list(shapes)}
    for i in range(len(chunks[0])):
        for j in range(len(chunks[1])):
            block = transform @ Affine.translation(xbounds[j], ybounds[i])
            size = (chunks[0][i], chunks[1][j])
            coeffs = [float(v) for v in list(block)[:6]]
            dsk[(name, i, j)] = (_burn, key, coeffs, size, fill, all_touched, np.dtype(dtype))
    return _graph.array(name, dsk, tuple(chunks), dtype, [])
