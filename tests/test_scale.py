"""Out of core: tile stores are written band by band of rows, so the bytes
dask holds at once do not grow with the scene's height; results equal the
numpy path. Memory is counted (the results a scheduler holds), never timed."""

from __future__ import annotations

import sys
import time

import dask
import dask.array as da
import numpy as np
import pytest
import xarray as xr
from dask.callbacks import Callback

import xflipnslide
from xflipnslide._core.schedule import compute_in_groups


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
    """The groups run as one computation of the package's scheduler, so a
    progress bar shows one bar, not one per band of rows."""
    from xflipnslide._core import schedule as graph

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


@pytest.mark.filterwarnings("ignore::xflipnslide.errors.XFlipNSlideWarning")
def test_a_preprocessed_tile_set_is_computed_only_by_its_write(tmp_path):
    """Nothing of a lazy tile set is computed before its store is written (a
    text coordinate once loaded its lazy ``valid_fraction`` with it: a whole
    pass over the scene, held, before the write)."""
    tiles = _scene(512).chunk({"y": 128, "x": 128}).fns.preprocess(reach=64).fns.tile(64)
    seen = Starts()
    with dask.config.set(scheduler="threads"), seen:
        tiles.fns.to_zarr(tmp_path / "t.zarr")
    assert seen.starts == 1
    back = xflipnslide.open_tiles(tmp_path / "t.zarr")
    assert back["grid"].values.tolist() == tiles["grid"].values.tolist()


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


@pytest.mark.parametrize("workers", [1, 2, 3])
def test_groups_run_in_order_and_at_most_one_ahead(workers):
    """On threads too: a task starts only once every group more than one
    before its own is done (counted at the start of each task)."""
    import threading

    from xflipnslide._core import schedule

    calls: list = []
    started: list = []
    lock = threading.Lock()
    rows = 12

    def mark(block, i):
        with lock:
            started.append((i, tuple(sorted(calls))))
        time.sleep(0.002 * (i % 3))
        with lock:
            calls.append(i)
        return block

    x = da.ones((rows, 8), chunks=(1, 8))
    marked = [x.blocks[i].map_blocks(mark, i, dtype=float) for i in range(rows)]
    keys = [m.__dask_keys__()[0][0] for m in marked]
    total = da.concatenate(marked).sum()
    calls.clear()
    with dask.config.set(scheduler="threads", num_workers=workers):
        schedule.compute_in_groups(total, [[k] for k in keys])
    assert sorted(calls) == list(range(rows))  # each once
    for i, done in started:
        assert set(range(i - schedule.AHEAD)) <= set(done), (i, done)


def test_a_failing_task_raises_its_own_error_and_stops():
    from xflipnslide._core import schedule

    def boom(block, i):
        if i == 3:
            raise ZeroDivisionError("row 3")
        return block

    x = da.ones((8, 8), chunks=(1, 8))
    marked = [x.blocks[i].map_blocks(boom, i, dtype=float) for i in range(8)]
    keys = [m.__dask_keys__()[0][0] for m in marked]
    total = da.concatenate(marked).sum()
    with dask.config.set(scheduler="threads"), pytest.raises(ZeroDivisionError, match="row 3"):
        schedule.compute_in_groups(total, [[k] for k in keys])


def test_a_progress_bar_sees_every_task_of_one_write(tmp_path, capsys):
    from dask.diagnostics import ProgressBar

    scene = _scene(512)
    tiles = scene.chunk({"y": 128, "x": 128}).fns.tile(64, tile_chunks=8)
    with dask.config.set(scheduler="threads"), ProgressBar(minimum=0, dt=0.001, out=sys.stdout):
        tiles.fns.to_zarr(tmp_path / "t.zarr")
    bars = capsys.readouterr().out
    assert bars.count("\n") == 1  # one bar, drawn over itself
    assert bars.rstrip().rsplit("\r", 1)[-1].startswith("[" + "#" * 40 + "] | 100%")


def _smooth_map(height: int, width: int = 384, chunk: int = 128) -> xr.DataArray:
    y = np.arange(height, dtype=np.float32)[:, None]
    x = np.arange(width, dtype=np.float32)[None, :]
    data = np.stack([np.sin(y / 50 + b) * np.cos(x / 70) for b in range(3)]).astype(np.float32)
    return xr.DataArray(data, dims=("band", "y", "x"), name="image")


@pytest.mark.filterwarnings("ignore::xflipnslide.errors.XFlipNSlideWarning")
def test_a_predicted_map_streams_to_zarr_row_by_row(tmp_path):
    """predict's lazy map written by ``to_zarr``: equal to the numpy
    prediction, and the results held at once (counted by the scheduler) do
    not grow with the scene's height."""
    model = lambda batch: batch[:, :2] * 2.0  # noqa: E731
    peaks = []
    for height in (512, 2048):
        scene = _smooth_map(height)
        src = tmp_path / f"in{height}.zarr"
        scene.chunk({"y": 128, "x": 128}).to_dataset().to_zarr(src)
        lazy = xr.open_zarr(src)["image"]
        pred = lazy.fns.predict(model, tile_size=64, classes=2, chunks=128)
        counter = HeldBytes()
        with dask.config.set(scheduler="sync"), counter:
            xflipnslide.to_zarr(pred, tmp_path / f"p{height}.zarr")
        peaks.append(counter.peak)
        back = xr.open_zarr(tmp_path / f"p{height}.zarr")[pred.name]
        if height == 512:  # the numpy path on the same scene: the oracle of the blend
            want = scene.fns.predict(model, tile_size=64, classes=2)
            np.testing.assert_allclose(back.values, want.values, rtol=1e-6, atol=1e-6)
        # twice the input, to float32 rounding (every pixel covered)
        np.testing.assert_allclose(back.values, 2 * scene.values[:2], rtol=1e-5, atol=1e-5)
    assert peaks[1] <= 1.15 * peaks[0], peaks


def test_a_map_store_has_a_record_and_refuses_to_overwrite_anything_else(tmp_path):
    scene = _smooth_map(256)
    path = xflipnslide.to_zarr(scene.chunk({"y": 128}), tmp_path / "map.zarr")
    back = xflipnslide.open_tiles(path)  # the completion record checked
    np.testing.assert_array_equal(back["image"].values, scene.values)
    xflipnslide.to_zarr(scene * 2, path, overwrite=True)  # its own store: replaced
    np.testing.assert_array_equal(xr.open_zarr(path)["image"].values, 2 * scene.values)
    other = tmp_path / "mine"
    other.mkdir()
    with pytest.raises(xflipnslide.errors.InvalidParameterError):
        xflipnslide.to_zarr(scene, other, overwrite=True)
    assert other.is_dir()


@pytest.mark.filterwarnings("ignore::xflipnslide.errors.XFlipNSlideWarning")
def test_a_preprocessed_scene_streams_to_zarr_with_its_mask(tmp_path):
    """A preprocessed scene carries its observed mask as a coordinate: both
    are written row by row (the mask with its rows, not after the whole
    scene), so the results held do not grow with the height; values equal
    the numpy path."""
    peaks = []
    for height in (512, 2048):
        src = tmp_path / f"in{height}.zarr"
        _scene(height).chunk({"y": 128, "x": 128}).to_dataset(name="v").to_zarr(src)
        ready = xr.open_zarr(src)["v"].fns.preprocess(reach=64)
        counter = HeldBytes()
        with dask.config.set(scheduler="sync"), counter:
            xflipnslide.to_zarr(ready, tmp_path / f"pre{height}.zarr")
        peaks.append(counter.peak)
    want = _scene(2048).fns.preprocess(reach=64)
    back = xr.open_zarr(tmp_path / "pre2048.zarr")
    np.testing.assert_allclose(back["v"].values, want.values, rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(back["fns_observed"].values, want["fns_observed"].values)
    assert peaks[1] <= 1.15 * peaks[0], peaks


@pytest.mark.filterwarnings("ignore::xflipnslide.errors.DataDroppedWarning")
def test_a_lazy_subset_is_written_in_row_groups_too(tmp_path):
    """A split subset's tiles are a selection (and a rechunk) of the tile
    chunks: their keys still anchor the groups, so the subset is written
    band by band like the whole set, not left to dask's order."""
    from xflipnslide._core import schedule

    runs = []
    real = schedule._group_runs

    def spy(*args):
        out = real(*args)
        runs.append(sum(map(bool, out)))
        return out

    scene = _scene(512)
    lazy = scene.chunk({"y": 128, "x": 128}).fns.tile(64, tile_chunks=16)
    train = lazy.fns.split(seed=0, fractions={"train": 0.5, "test": 0.5})["train"]
    with pytest.MonkeyPatch.context() as m, dask.config.set(scheduler="threads"):
        m.setattr(schedule, "_group_runs", spy)
        train.fns.to_zarr(tmp_path / "train.zarr")
    assert runs and runs[0] > 2, runs


def test_a_tile_task_names_each_input_chunk_it_reads_once():
    """Windows of a chunk of tiles overlap, so its strips read many of the
    same input chunks: the task lists each once (a smaller graph), and the
    tiles are still the numpy path's."""
    scene = _scene(512)
    lazy = scene.chunk({"y": 64, "x": 64})
    tiles = lazy.fns.tile(64, tile_chunks=40)
    layer = next(v for k, v in tiles.data.dask.layers.items() if k.startswith("fns-tile"))
    listed = [list(task[1]) for task in dict(layer).values()]
    assert all(len(keys) == len(set(keys)) for keys in listed)
    assert {k[0] for keys in listed for k in keys} == {lazy.data.name}
    assert sum(map(len, listed)) >= lazy.data.npartitions  # every chunk read
    np.testing.assert_array_equal(tiles.values, scene.fns.tile(64).values)


class Ran(Callback):
    """The first word of the name of each layer whose tasks ran."""

    def __init__(self):
        super().__init__()
        self.layers: set = set()

    def _posttask(self, key, result, dsk, state, worker_id):
        self.layers.add(str(key[0] if isinstance(key, tuple) else key).split("-")[0])


@pytest.mark.filterwarnings("ignore::xflipnslide.errors.XFlipNSlideWarning")
@pytest.mark.parametrize("scheduler", ["sync", "threads"])
def test_a_writer_runs_an_input_chunks_masking_as_one_task(tmp_path, scheduler):
    """Stacked blockwise layers are fused as ``dask.compute`` fuses them: the
    masking of an input chunk (``isfinite``, ``!=``, ``&``, ``where``) is
    one task, not one per operation, in the store's graph and in the copy
    of the input the statistics read (which ran one task per operation);
    the store is still the numpy path's."""
    src = tmp_path / "in.zarr"
    _scene(256).chunk({"y": 64, "x": 64}).to_dataset(name="v").to_zarr(src)
    scene = xr.open_zarr(src)["v"]
    tiles = scene.fns.preprocess(reach=32).fns.tile(64, tile_chunks=8)
    ran = Ran()
    with dask.config.set(scheduler=scheduler), ran:
        tiles.fns.to_zarr(tmp_path / "t.zarr")
    assert "where" in ran.layers  # the fused layer keeps the last one's name
    assert not {"isfinite", "and_", "ne"} & ran.layers, ran.layers
    back = xflipnslide.open_tiles(tmp_path / "t.zarr")
    expect = _scene(256).fns.preprocess().fns.tile(64)
    np.testing.assert_allclose(back[tiles.name].values, expect.values, rtol=1e-6, atol=1e-6)


def test_a_lazy_tile_graph_holds_a_few_bytes_per_tile():
    """A tile task describes its strips in one small table, not in Python
    objects per strip: the graph of a large scene's tiles stays a small
    share of its memory (666 bytes a tile here before the tables)."""
    import tracemalloc

    scene = _scene(2048, 2048).chunk({"y": 128, "x": 128})
    scene.fns.tile(64, tile_chunks=40)  # imports and plan caches first
    tracemalloc.start()
    try:
        tiles = scene.fns.tile(64, tile_chunks=40)
        held, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert held / tiles.sizes["tile"] < 400, held / tiles.sizes["tile"]
    expect = xr.DataArray(scene.values, dims=scene.dims).fns.tile(64).values
    np.testing.assert_array_equal(tiles.isel(tile=slice(4000, 4100)).values, expect[4000:4100])


@pytest.mark.parametrize("scheduler", ["sync", "threads"])
def test_a_written_map_holds_a_few_output_blocks_not_a_row_of_them(tmp_path, scheduler):
    """Each output block is stored right after it is computed: the blocks
    held at once stay a few whatever the row's width (a whole row of 16
    waited for its stores before)."""
    scene = xr.DataArray(np.ones((2, 192, 1024), np.float32), dims=("band", "y", "x"))
    pred = scene.chunk({"y": 64, "x": 64}).fns.predict(
        lambda b: b[:, :1], tile_size=32, classes=1, chunks=64
    )
    most = []

    class Blocks(Callback):
        def _posttask(self, key, result, dsk, state, worker_id):
            held = [
                k
                for k in state["cache"]
                if str(k[0] if isinstance(k, tuple) else k).startswith("fns-keyed-")
            ]
            most.append(len(held))

    with dask.config.set(scheduler=scheduler, num_workers=2), Blocks():
        path = xflipnslide.to_zarr(pred, tmp_path / "map.zarr")
    assert len(pred.chunks[-1]) == 16 and max(most) <= 3, max(most)
    np.testing.assert_array_equal(xr.open_zarr(path)[pred.name].values, np.ones((1, 192, 1024)))
