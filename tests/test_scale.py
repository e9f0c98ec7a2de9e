"""Out of core: tile stores are written band by band of rows, so the bytes
dask holds at once do not grow with the scene's height; results equal the
numpy path. Memory is counted (the results a scheduler holds), never timed."""

from __future__ import annotations

import dask
import dask.array as da
import numpy as np
import pytest
import xarray as xr
from dask.callbacks import Callback

import xflipnslide
from xflipnslide._core.graph import compute_in_groups


class HeldBytes(Callback):
    """The largest total of bytes of task results the scheduler holds at once."""

    def __init__(self):
        super().__init__()
        self.peak = 0

    def _posttask(self, key, result, dsk, state, worker_id):
        held = sum(getattr(v, "nbytes", 0) for v in state["cache"].values())
        self.peak = max(self.peak, held)


def _scene(height: int, width: int = 512, chunk: int = 128) -> xr.DataArray:
    y = np.arange(height, dtype=np.float32)[:, None]
    x = np.arange(width, dtype=np.float32)[None, :]
    data = np.stack([np.round(8 * np.sin(y / 70 + b) * np.cos(x / 90 - b)) / 8 for b in range(3)])
    data[:, ::7, ::11] = np.nan  # gaps for the fill
    return xr.DataArray(data.astype(np.float32), dims=("band", "y", "x"))


def _write(tiles, path) -> int:
    counter = HeldBytes()
    with dask.config.set(scheduler="sync"), counter:
        tiles.fns.to_zarr(path)
    return counter.peak


def test_compute_in_groups_runs_each_task_once_in_group_order():
    calls = []

    def mark(block, i):
        calls.append(i)
        return block

    x = da.ones((4, 8), chunks=(1, 8))
    marked = [x.blocks[i].map_blocks(mark, i, dtype=float) for i in range(4)]
    total = da.concatenate(marked).sum()
    shared = x.sum()  # read by every group: computed once, carried
    out = total + shared
    keys = [m.__dask_keys__()[0][0] for m in marked]
    calls.clear()  # map_blocks may probe the function
    with dask.config.set(scheduler="sync"):
        compute_in_groups(out, [[keys[2]], [keys[0]], [keys[3], keys[1]]])
    assert calls[:2] == [2, 0] and sorted(calls[2:]) == [1, 3]
    assert len(calls) == 4


@pytest.mark.filterwarnings("ignore::xflipnslide.errors.XFlipNSlideWarning")
def test_tile_store_from_preprocess_equals_numpy(tmp_path):
    scene = _scene(768)
    lazy = scene.chunk({"y": 128, "x": 128})
    want = scene.fns.preprocess().fns.tile(64)
    tiles = lazy.fns.preprocess().fns.tile(64, tile_chunks=16)
    with dask.config.set(scheduler="threads"):
        tiles.fns.to_zarr(tmp_path / "t.zarr")
    back = xflipnslide.open_tiles(tmp_path / "t.zarr")
    np.testing.assert_allclose(back["image"].values, want.values, rtol=1e-6, atol=1e-6)
    np.testing.assert_array_equal(back["valid_fraction"].values, want["valid_fraction"].values)
    np.testing.assert_array_equal(back["transform"].values, want["transform"].values)


@pytest.mark.filterwarnings("ignore::xflipnslide.errors.XFlipNSlideWarning")
@pytest.mark.parametrize("preprocess", [False, True])
def test_held_bytes_do_not_grow_with_the_scene_height(tmp_path, preprocess):
    """4x the rows, the same width: the bytes held at once stay those of a
    band of rows, the bound the writer guarantees by its order (dask's own
    order for the whole graph gives none: on a 8192² scene it held most of
    the scene's chunks at once, ``benchmarks/bench_scale.py``)."""
    peaks = []
    for height in (512, 2048):
        src = tmp_path / f"in{height}.zarr"
        _scene(height).chunk({"y": 128, "x": 128}).to_dataset(name="v").to_zarr(src)
        scene = xr.open_zarr(src)["v"]  # read chunk by chunk, as a scene larger than memory
        ready = scene.fns.preprocess(reach=64) if preprocess else scene
        tiles = ready.fns.tile(64, tile_chunks=8)
        peaks.append(_write(tiles, tmp_path / f"{height}.zarr"))
    scene_bytes = 3 * 2048 * 512 * 4
    assert peaks[1] <= 1.15 * peaks[0], peaks
    assert peaks[1] < scene_bytes / 2, (peaks, scene_bytes)


def test_an_empty_lazy_tile_set_writes_an_empty_store(tmp_path):
    tiles = _scene(256).chunk({"y": 128, "x": 128}).fns.tile(64, tile_chunks=8)
    tiles.isel(tile=slice(0, 0)).fns.to_zarr(tmp_path / "none.zarr")
    back = xflipnslide.open_tiles(tmp_path / "none.zarr")
    assert back.sizes["tile"] == 0 and back["image"].shape[1:] == tiles.shape[1:]


class Starts(Callback):
    """How many computations the scheduler started (a progress bar draws one each)."""

    def __init__(self):
        super().__init__()
        self.starts = 0

    def _start(self, dsk):
        self.starts += 1


@pytest.mark.parametrize("scheduler", ["sync", "threads"])
def test_a_store_written_in_groups_is_one_computation(tmp_path, scheduler):
    """The groups run in one call of the scheduler (chained by gates), so a
    progress bar shows one bar, not one per band of rows."""
    from xflipnslide._core import graph

    scene = _scene(512)
    tiles = scene.chunk({"y": 128, "x": 128}).fns.tile(64, tile_chunks=8)
    runs = []
    real = graph._group_runs

    def spy(*args):
        out = real(*args)
        runs.append(len(out[0]))
        return out

    seen = Starts()
    with pytest.MonkeyPatch.context() as m, dask.config.set(scheduler=scheduler), seen:
        m.setattr(graph, "_group_runs", spy)
        tiles.fns.to_zarr(tmp_path / "t.zarr")
    assert runs and runs[0] > 2  # written in groups
    assert seen.starts == 1
    back = xflipnslide.open_tiles(tmp_path / "t.zarr")
    np.testing.assert_array_equal(back["image"].values, scene.fns.tile(64).values)


@pytest.mark.filterwarnings("ignore::xflipnslide.errors.DataDroppedWarning")
def test_a_lazy_split_subset_writes_a_tile_store(tmp_path):
    """A subset picks tiles here and there, so its chunks along tile are
    uneven (Zarr refuses those): the store is written in chunks Zarr takes,
    equal to the numpy subset."""
    scene = _scene(512)
    lazy = scene.chunk({"y": 128, "x": 128}).fns.tile(64, tile_chunks=16)
    train = lazy.fns.split(seed=0, fractions={"train": 0.5, "test": 0.5})["train"]
    sizes = train.chunks[0]
    assert len(set(sizes[:-1])) > 1 or sizes[-1] > sizes[0]  # uneven, as Zarr counts
    train.fns.to_zarr(tmp_path / "train.zarr")
    back = xflipnslide.open_tiles(tmp_path / "train.zarr")
    want = scene.fns.tile(64).fns.split(seed=0, fractions={"train": 0.5, "test": 0.5})["train"]
    np.testing.assert_array_equal(back["image"].values, want.values)
    np.testing.assert_array_equal(back["row"].values, want["row"].values)
