"""Each numba kernel against a reference, from one table of comparisons."""

from __future__ import annotations

import numpy as np
import pytest
from oracle import TRANSFORM

from xflipnslide._core import kernels
from xflipnslide.plan import INVERSE_CODES


def gather_reference(src, rows, cols, codes, T):
    return np.stack(
        [TRANSFORM[int(k)](src[:, r : r + T, c : c + T]) for r, c, k in zip(rows, cols, codes)]
    )


def run_gather(src, rows, cols, codes, T):
    out = np.empty((len(rows), src.shape[0], T, T), src.dtype)
    kernels.gather_tiles(kernels.as_bits(src), rows, cols, codes, kernels.as_bits(out))
    return out


def nearest_reference(valid):
    from scipy import ndimage

    _, (ri, ci) = ndimage.distance_transform_edt(~valid, return_indices=True)
    return ri, ci


def run_nearest(valid):
    r = np.empty(valid.shape, np.int32)
    c = np.empty(valid.shape, np.int32)
    kernels.nearest_valid(valid, r, c)
    return r, c


def moments_reference(a):
    v = a[~np.isnan(a)]
    return np.array([v.size, v.mean(), ((v - v.mean()) ** 2).sum()])


#: kernel name -> (kernel run, reference); the benchmarks measure the same pairs.
COMPARISONS = {
    "gather_tiles": (run_gather, gather_reference),
    "nearest_valid": (run_nearest, nearest_reference),
    "moments": (kernels.moments, moments_reference),
}


@pytest.mark.parametrize("dtype", ["uint8", "int16", "float32", "float64", "bool"])
def test_gather_tiles(dtype):
    rng = np.random.default_rng(0)
    src = (rng.random((2, 40, 50)) * 100).astype(dtype)
    rows, cols = rng.integers(0, 40 - 16, 30), rng.integers(0, 50 - 16, 30)
    codes = np.tile(np.arange(8, dtype=np.int8), 4)[:30]
    run, ref = COMPARISONS["gather_tiles"]
    np.testing.assert_array_equal(run(src, rows, cols, codes, 16), ref(src, rows, cols, codes, 16))


def test_gather_keeps_nan_payloads_bit_for_bit():
    src = np.full((1, 16, 16), np.nan, np.float32)
    bits = src.view(np.uint32)
    bits[:] = 0x7FC00000 | np.arange(16 * 16, dtype=np.uint32).reshape(1, 16, 16)  # payloads
    out = run_gather(src, np.array([0] * 8), np.array([0] * 8), np.arange(8, dtype=np.int8), 16)
    for k in range(8):
        expected = TRANSFORM[k](bits)[0]
        np.testing.assert_array_equal(out[k, 0].view(np.uint32), expected)


@pytest.mark.parametrize("seed", range(4))
def test_nearest_valid_distances_match_scipy(seed):
    rng = np.random.default_rng(seed)
    valid = rng.random((37, 53)) > 0.9
    run, ref = COMPARISONS["nearest_valid"]
    (r, c), (rr, rc) = run(valid), ref(valid)
    yy, xx = np.indices(valid.shape)
    got = (yy - r) ** 2 + (xx - c) ** 2
    want = (yy - rr) ** 2 + (xx - rc) ** 2
    np.testing.assert_array_equal(got, want)  # ties may pick another pixel: same distance
    assert valid[r, c].all()


def test_moments_match_numpy():
    rng = np.random.default_rng(1)
    a = rng.standard_normal((50, 60)).astype(np.float32)
    a[rng.random(a.shape) < 0.3] = np.nan
    run, ref = COMPARISONS["moments"]
    np.testing.assert_allclose(run(a), ref(a.astype(np.float64)), rtol=1e-12)
    assert kernels.moments(np.full((3, 3), np.nan)).tolist() == [0.0, 0.0, 0.0]
    n, mean, m2 = run(a)
    np.testing.assert_allclose([mean, np.sqrt(m2 / n)], [np.nanmean(a), np.nanstd(a)], rtol=1e-6)


def test_scatter_is_the_inverse_of_gather():
    rng = np.random.default_rng(2)
    tiles = rng.random((8, 1, 8, 8))
    acc, wsum = np.zeros((1, 8, 8)), np.zeros((8, 8))
    zeros = np.zeros(8, np.int64)
    kernels.scatter_tiles(
        tiles, zeros, zeros, np.arange(8, dtype=np.int8), np.ones((8, 8)), acc, wsum
    )
    expected = np.mean([TRANSFORM[int(INVERSE_CODES[k])](tiles[k]) for k in range(8)], axis=0)
    np.testing.assert_allclose(acc / wsum, expected)
