"""Numba kernels: pure functions on numpy arrays, writing into ``out``.

One module per feature of the array layer: :mod:`.tiles` (gather windows
under their D4 transform, scatter them back), :mod:`.fill` (the nearest
valid pixel), :mod:`.stats` (moments, standardisation). No dask, no xarray
here.

The kernels run without bounds checks, so an array of the wrong shape would
read or write outside its buffer. Each public kernel therefore declares a
*check* that its Python entry point (:class:`._jit.Kernel`) runs before the
compiled code: shapes and lengths agree, windows lie inside the source. It
costs O(1) per call (O(n) in windows where origins are checked, never a
pass over pixels); calls between kernels inside compiled code skip it.
numba is imported, and the kernels compiled or loaded from its cache, at
the first kernel call.
"""

from __future__ import annotations

from ._jit import kernel
from .fill import fill_nearest, nearest_valid
from .stats import moments, standardize_into
from .tiles import as_bits, gather_tiles, normalize_weights, scatter_tiles

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
