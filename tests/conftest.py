from __future__ import annotations

import os
import sys
import warnings

import dask
import numpy as np
import pytest
import xarray as xr
from hypothesis import HealthCheck, settings

sys.path.insert(0, os.path.dirname(__file__))  # the oracle module

import xflipnslide

DATA = os.path.join(os.path.dirname(__file__), "data")


@pytest.fixture(params=["numpy", "dask"])
def backend(request):
    """Turn a numpy-backed object into the backend under test."""

    def convert(obj, chunks=None):
        if request.param == "numpy":
            return obj
        return obj.chunk(chunks or {d: max(1, s // 3) for d, s in obj.sizes.items()})

    convert.name = request.param
    return convert


@pytest.fixture(scope="module")
def tiles():
    """Lazy image + label tiles of the built-in sample, in several tile chunks
    (the export and output tests' input)."""
    scene = xflipnslide.open_image(xflipnslide.sample_scene_path(), chunks=None).load()
    label = (scene.isel(band=0, drop=True) // 1000).astype("uint8")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", xflipnslide.XFlipNSlideWarning)
        ds = xr.Dataset({"image": scene, "label": label})
        return ds.chunk({"y": 200, "x": 200}).fns.tile(64, tile_chunks=40)


@pytest.fixture
def scene():
    """A real scene: the built-in Landsat 8 sample, in memory."""
    return xflipnslide.open_image(xflipnslide.sample_scene_path(), chunks=None).load()


# Hypothesis: a fast default; CI selects the thorough one
# (HYPOTHESIS_PROFILE=ci, set by .ci/run).
settings.register_profile(
    "default", max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.register_profile(
    "ci", max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))


class CountingScheduler:
    """A dask scheduler that counts computations and fails past ``max_computes``
    (flox's ``raise_if_dask_computes``)."""

    def __init__(self, max_computes: int = 0):
        self.total, self.max_computes = 0, max_computes

    def __call__(self, dsk, keys, **kwargs):
        self.total += 1
        if self.total > self.max_computes:
            raise AssertionError(f"too many dask computations: {self.total} > {self.max_computes}")
        return dask.get(dsk, keys, **kwargs)


def raise_if_dask_computes(max_computes: int = 0):
    """Context manager: fail if dask computes more than ``max_computes`` times."""
    return dask.config.set(scheduler=CountingScheduler(max_computes))


@pytest.fixture
def no_compute():
    """Fail the test if dask computes anything inside the block."""
    with raise_if_dask_computes(0):
        yield


def random_scene(rng, shape, dtype="float32", dims=("band", "y", "x")):
    if np.dtype(dtype).kind == "f":
        data = rng.standard_normal(shape).astype(dtype)
    elif np.dtype(dtype).kind == "b":
        data = rng.random(shape) > 0.5
    else:
        info = np.iinfo(dtype)
        data = rng.integers(info.min, info.max, size=shape, dtype=dtype, endpoint=True)
    coords = {
        dims[-2]: 100.0 - 30.0 * np.arange(shape[-2]),
        dims[-1]: 500.0 + 30.0 * np.arange(shape[-1]),
    }
    return xr.DataArray(data, dims=dims, coords=coords)
