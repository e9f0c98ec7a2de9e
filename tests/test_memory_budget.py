"""The writers' memory budget: past it, results read again by later groups
are dropped and computed again when needed; what a budget changes is how
much is held and how often a task runs, never a result. Memory is counted
(the results the scheduler holds, a dask callback), never timed."""

from __future__ import annotations

import collections

import dask
import dask.array as da
import numpy as np
import pytest
import xarray as xr
from dask.callbacks import Callback

import xflipnslide
from xflipnslide._core import ordered
from xflipnslide._core.schedule import chunk_rows, compute_in_groups, keyed, memory_budget
from xflipnslide.errors import InvalidParameterError

ROW = 16_384  # float64 values a chunk row: 128 KiB, above ordered.MIN_DROP


class Held(Callback):
    """The most bytes of results held at once, and how often each task ran."""

    def __init__(self):
        super().__init__()
        self.peak, self.runs = 0, collections.Counter()

    def _posttask(self, key, result, dsk, state, worker_id):
        self.runs[key] += 1
        self.peak = max(self.peak, sum(getattr(v, "nbytes", 0) for v in state["cache"].values()))


def _rows(n: int, calls: collections.Counter):
    """``(n, ROW)`` float64, row ``i`` all ``i``; each chunk's reads counted."""

    def read(block, block_id=None):
        calls[block_id[0]] += 1
        return block + block_id[0]

    return da.zeros((n, ROW), chunks=(1, ROW)).map_blocks(read, dtype=float)


def _run_rows(out, memory, scheduler="sync"):
    """Store ``out`` chunk row by chunk row into numpy through the package's
    scheduler; the stored values and the callback."""
    out = keyed(out)
    target = np.zeros(out.shape)
    with dask.config.set({"optimization.fuse.active": False}):
        store = da.store(out, target, lock=False, compute=False)
    held = Held()
    with dask.config.set(scheduler=scheduler), held:
        again = compute_in_groups(store, chunk_rows(out), memory=memory)
    return target, held, again


@pytest.mark.parametrize("scheduler", ["sync", "threads"])
def test_a_budget_drops_what_later_rows_read_and_computes_it_again(scheduler):
    """Row ``g`` of the output reads input rows ``g`` and ``g - 3``: without a
    budget each input row is held for three rows; with one, it is dropped
    after its first reader and read again for the second."""
    n = 12
    calls: collections.Counter = collections.Counter()
    x = _rows(n, calls)
    shifted = da.concatenate([da.zeros((3, ROW), chunks=(1, ROW)), x[:-3]])
    out = x + shifted
    rows = np.arange(n, dtype=float)
    want = (rows + np.where(rows >= 3, rows - 3, 0))[:, None] * np.ones(ROW)

    calls.clear()
    kept, held_all, again_all = _run_rows(out, memory="1TiB", scheduler=scheduler)
    assert set(calls.values()) == {1} and again_all == 0
    calls.clear()
    dropped, held_some, again_some = _run_rows(out, memory=ROW * 8 * 2, scheduler=scheduler)
    np.testing.assert_array_equal(kept, want)
    np.testing.assert_array_equal(dropped, want)
    # rows read by a later group (the first n - 3) are read twice, the rest once
    assert again_some > 0 and max(calls.values()) == 2
    assert (
        sum(c == 2 for c in calls.values()) >= n - 3 - 2
    )  # the two groups that run may keep theirs
    assert held_some.peak < held_all.peak, (held_some.peak, held_all.peak)


def test_a_result_chained_to_every_row_before_is_never_computed_again():
    """A running total (each row the sum of all before, as predict's spill
    strips are chained) costs more than :data:`ordered.MAX_RECOMPUTE` tasks
    to compute again once it is long enough: from there on it is held
    whatever the budget (its first rows, cheap enough, may run again)."""
    n = ordered.MAX_RECOMPUTE + 8
    calls: collections.Counter = collections.Counter()
    sums: collections.Counter = collections.Counter()
    x = _rows(n, calls)

    def add(a, b, g):
        sums[g] += 1
        return a + b

    total = [x[:1]]
    for g in range(1, n):
        total.append(da.map_blocks(add, total[-1], x[g : g + 1], g=g, dtype=float))
    running = da.concatenate(total)
    later = da.concatenate([da.zeros((3, ROW), chunks=(1, ROW)), running[:-3]])
    sums.clear()
    calls.clear()
    got, _, _ = _run_rows(running + later, memory=ROW * 8 * 2)
    cum = np.cumsum(np.arange(n, dtype=float))
    want = cum + np.concatenate([np.zeros(3), cum[:-3]])
    np.testing.assert_array_equal(got[:, 0], want)
    long = range(ordered.MAX_RECOMPUTE // 2, n)  # each row is a read and a sum
    assert {sums[g] for g in long} == {1}, sums
    assert max(sums.values()) > 1  # shorter ones were dropped: the test can tell


def _scene(width: int, height: int = 384) -> xr.DataArray:
    y = np.arange(height, dtype=np.float32)[:, None]
    x = np.arange(width, dtype=np.float32)[None, :]
    data = np.stack([np.round(8 * np.sin(y / 70 + b) * np.cos(x / 90 - b)) / 8 for b in range(3)])
    data[:, ::7, ::11] = np.nan
    return xr.DataArray(data.astype(np.float32), dims=("band", "y", "x"))


def _tile_write(scene, path, memory):
    tiles = scene.chunk({"y": 128, "x": 128}).fns.preprocess(reach=64).fns.tile(64, tile_chunks=8)
    held = Held()
    with dask.config.set(scheduler="sync"), held:
        tiles.fns.to_zarr(path, memory=memory)
    return held


@pytest.mark.filterwarnings("ignore::xflipnslide.errors.XFlipNSlideWarning")
def test_a_tile_store_under_a_budget_holds_no_more_for_a_wider_scene(tmp_path):
    """4x the width: under a budget the bytes held stay near it (the band of
    input chunks between rows of windows is read again instead), where
    without one they grow with the band. The stores are the same bytes, and
    equal the numpy path."""
    budget = "6MiB"
    held = {
        (width, memory): _tile_write(_scene(width), tmp_path / f"{width}-{memory}.zarr", memory)
        for width, memory in [(1024, budget), (4096, budget), (4096, "1TiB")]
    }
    peak = {k: h.peak for k, h in held.items()}
    assert peak[4096, budget] < 1.15 * peak[1024, budget], peak  # flat
    assert peak[4096, budget] < 1.15 * 6 * 2**20, peak  # near the budget
    assert peak[4096, "1TiB"] > 3 * peak[4096, budget], peak  # the band it avoids
    runs = {k: sum(h.runs.values()) for k, h in held.items()}
    assert runs[4096, budget] > 1.2 * runs[4096, "1TiB"], runs  # input chunks read again
    want = _scene(4096).fns.preprocess(reach=64).fns.tile(64)
    stores = {m: xflipnslide.open_tiles(tmp_path / f"4096-{m}.zarr") for m in (budget, "1TiB")}
    back = stores[budget]
    np.testing.assert_allclose(back["image"].values, want.values, rtol=1e-6, atol=1e-6)
    np.testing.assert_array_equal(back["valid_fraction"].values, want["valid_fraction"].values)
    for var in back.variables:
        np.testing.assert_array_equal(back[var].values, stores["1TiB"][var].values)


def test_a_memory_size_reads_bytes_strings_and_the_dask_config():
    from distributed.system import MEMORY_LIMIT

    assert memory_budget(1000) == 1000
    assert memory_budget("2MiB") == 2 * 2**20
    assert memory_budget("auto") == MEMORY_LIMIT // 4
    with dask.config.set({"xflipnslide.memory": "3MiB"}):
        assert memory_budget() == 3 * 2**20
    assert memory_budget() == MEMORY_LIMIT // 4


@pytest.mark.parametrize("memory", ["lots", 0, -5, True, [1]])
def test_a_bad_memory_size_is_refused_before_anything_is_written(tmp_path, memory):
    tiles = _scene(256, 256).chunk({"y": 128, "x": 128}).fns.tile(64)
    with pytest.raises(InvalidParameterError, match=r"memory=.*'2GiB'"):
        xflipnslide.to_zarr(tiles, tmp_path / "t.zarr", memory=memory)
    assert not list(tmp_path.iterdir())
