"""Numba kernels of the band statistics: moments of a block, and the
standardisation ``(a - mean) / scale`` in one pass."""

from __future__ import annotations

import numpy as np

from ._jit import describe, kernel, require

__all__ = ["moments", "standardize_into"]


def _check_standardize(a, mean, scale, out) -> None:
    ok = np.size(a) == np.size(out) and getattr(out, "flags", None) is not None
    ok = ok and out.flags.c_contiguous  # ravel() of anything else would write into a copy
    require(
        ok,
        "standardize_into",
        "a and a C-contiguous out must have one size",
        describe(a=a, out=out),
    )


@kernel()
def moments(a):
    """``(n, mean, m2)`` of the non-NaN values of ``a``: their count, mean and
    sum of squared deviations from the mean, in float64.

    Two passes (sum, then squared deviations), no temporaries; ``(0, 0, 0)``
    when ``a`` has no valid value. Moments of parts merge exactly
    (:mod:`xflipnslide._core.stats`), so chunked and whole inputs agree.
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
