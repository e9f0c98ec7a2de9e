"""Lazy tiles into memory (``tiles.fns.load()`` and the feeds' chunk reads):
every chunk is written once, into its place, and the values are the numpy
path's."""

from __future__ import annotations

import collections
import warnings

import dask
import numpy as np
import pytest
import xarray as xr
from dask.callbacks import Callback

import xflipnslide
from xflipnslide._core import load as _load


class TaskNames(Callback):
    """Counts the tasks dask runs, by the name of their key."""

    def __init__(self):
        super().__init__()
        self.ran = collections.Counter()

    def _posttask(self, key, result, dsk, state, worker_id):
        self.ran[key[0] if isinstance(key, tuple) else key] += 1


@pytest.fixture(scope="module")
def scene():
    rng = np.random.default_rng(0)
    image = xr.DataArray(rng.random((2, 300, 260), "float32"), dims=("band", "y", "x"))
    label = xr.DataArray(rng.integers(0, 4, (300, 260)).astype("uint8"), dims=("y", "x"))
    return xr.Dataset({"image": image, "label": label})


def _tile(ds, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", xflipnslide.XFlipNSlideWarning)
        return ds.fns.tile(64, **kwargs)


@pytest.mark.parametrize("scheduler", ["threads", "synchronous"])
def test_load_gathers_each_tile_chunk_once_into_its_place(scene, scheduler):
    """Before, every tile chunk was computed into an array of its own and
    then copied into the result (dask's store): two writes of every byte."""
    expected = _tile(scene)  # numpy in, numpy out: the oracle
    lazy = _tile(scene.chunk({"y": 100, "x": 100}), tile_chunks=9)
    n_chunks = len(lazy.image.chunks[0])
    assert n_chunks > 2
    with dask.config.set(scheduler=scheduler), TaskNames() as names:
        loaded = lazy.fns.load()
    tile_tasks = [k for k in names.ran if str(k).startswith("fns-tile-")]
    assert not tile_tasks  # no chunk computed on its own: each gathered into the result
    writes = sum(v for k, v in names.ran.items() if str(k).startswith("fns-load-"))
    assert writes == 2 * n_chunks + 2  # image and label chunks, then the two results
    assert loaded.image.chunks is None
    xr.testing.assert_identical(loaded, expected)


def test_ranges_of_chunks_come_back_as_the_numpy_path_gives_them(scene):
    lazy = _tile(scene.chunk({"y": 100, "x": 100}), tile_chunks=9).image.data
    expected = _tile(scene).image.values
    ranges = [(0, 9), (9, 27), (5, 31), (27, 27), (lazy.shape[0] - 3, lazy.shape[0])]
    got = _load.load_ranges([(lazy, a, b) for a, b in ranges])
    for (a, b), g in zip(ranges, got, strict=True):
        np.testing.assert_array_equal(g, expected[a:b])
    got = _load.load_ranges([(expected, 0, 9), (expected, 9, 18), (expected, 30, 31)])
    assert all(np.shares_memory(g, expected) for g in got)  # in memory: views, no copy
    np.testing.assert_array_equal(np.concatenate(got[:2]), expected[:18])


def test_feed_chunks_split_tiles_in_memory_and_keep_lazy_chunks_whole(scene):
    tiles = _tile(scene)
    assert _load.feed_chunks(tiles.image.variable) == ((1,) * tiles.sizes["tile"], True)
    lazy = _tile(scene.chunk({"y": 100, "x": 100}), tile_chunks=9)
    assert _load.feed_chunks(lazy.image.variable, lazy.label.variable) == (
        lazy.image.chunks[0],
        False,
    )


def test_in_memory_feed_units_stay_few_for_many_tiles():
    many = np.zeros((3 * _load.MAX_UNITS + 5, 1), "uint8")
    units, free = _load.feed_chunks(many)
    assert free and sum(units) == len(many) and len(units) <= _load.MAX_UNITS
    assert set(units[:-1]) == {4}
