"""Every public function gives the same result on a process-based
dask.distributed cluster as on the threaded scheduler."""

from __future__ import annotations

import distributed
import numpy as np
import pytest
import xarray as xr

import xflipnslide

pytestmark = pytest.mark.slow  # a process-based cluster per module


@pytest.fixture(scope="module")
def client():
    cluster = distributed.LocalCluster(
        n_workers=2,
        threads_per_worker=1,
        processes=True,
        dashboard_address=None,
        memory_limit="2GiB",
    )
    with distributed.Client(cluster) as c:
        yield c
    cluster.close()


@pytest.fixture(scope="module")
def lazy_scene():
    scene = xflipnslide.open_image(
        xflipnslide.sample_scene_path(), chunks={"band": -1, "y": 200, "x": 256}
    )
    return scene


def both(obj):
    """Compute on the cluster (the active client) and with threads."""
    on_cluster = obj.compute()
    with_threads = obj.compute(scheduler="threads")
    return on_cluster, with_threads


def test_preprocess_tile_untile_identical(client, lazy_scene):
    ready = lazy_scene.fns.preprocess(nodata=0, reach=64)
    a, b = both(ready)
    xr.testing.assert_identical(a, b)
    tiles = ready.fns.tile(64, edge="pad", tile_chunks=20)
    a, b = both(tiles)
    xr.testing.assert_identical(a, b)
    back = tiles.fns.untile(blend="hann", chunks=200)
    a, b = both(back)
    xr.testing.assert_identical(a, b)
    np.testing.assert_allclose(
        a.values, ready.compute(scheduler="threads").values, rtol=1e-5, atol=1e-5
    )


def test_split_and_to_zarr_on_cluster(client, lazy_scene, tmp_path):
    tiles = lazy_scene.fns.preprocess(nodata=0).fns.tile(64)
    parts = tiles.fns.split(block_size=128, seed=0)
    a, b = both(parts["val"])
    xr.testing.assert_identical(a, b)
    parts["train"].to_dataset(name="t").to_zarr(tmp_path / "train.zarr")
    back = xr.open_zarr(tmp_path / "train.zarr")["t"]
    np.testing.assert_array_equal(back.values, parts["train"].compute(scheduler="threads").values)


def test_the_package_writers_run_in_row_order_on_cluster(client, lazy_scene, tmp_path):
    """``fns.to_zarr`` of tiles and of a predicted map hand the cluster the
    writer's order as task priorities: the stores equal the threaded ones."""
    from xflipnslide._core import schedule

    seen = []
    real = schedule._on_cluster

    def spy(get, graph, runs, finals):
        seen.append(len(runs))
        return real(get, graph, runs, finals)

    tiles = lazy_scene.fns.preprocess(nodata=0).fns.tile(64, tile_chunks=20)
    pred = lazy_scene.fns.predict(lambda b: b[:, :2] * 0.5, tile_size=64, classes=2, chunks=128)
    with pytest.MonkeyPatch.context() as m:
        m.setattr(schedule, "_on_cluster", spy)
        tiles.fns.to_zarr(tmp_path / "t.zarr")
        xflipnslide.to_zarr(pred, tmp_path / "p.zarr")
    assert len(seen) == 2 and min(seen) > 1  # both through the ordered path, in groups
    back = xflipnslide.open_tiles(tmp_path / "t.zarr")["image"]
    np.testing.assert_array_equal(back.values, tiles.compute(scheduler="threads").values)
    got = xr.open_zarr(tmp_path / "p.zarr")[pred.name]
    np.testing.assert_array_equal(got.values, pred.compute(scheduler="threads").values)


def test_torch_path_on_cluster(client, lazy_scene):
    torch = pytest.importorskip("torch")
    tiles = lazy_scene.fns.preprocess(nodata=0).fns.tile(64)
    batch = next(iter(tiles.fns.torch_loader(8)))
    assert isinstance(batch, torch.Tensor)
    np.testing.assert_array_equal(
        batch.numpy(), tiles.isel(tile=slice(0, 8)).compute(scheduler="threads").values
    )


def test_predict_on_cluster_ships_the_model_once_per_worker(client, lazy_scene):
    import tests_models

    scene = lazy_scene.astype("float32")
    model = tests_models.CountingModel()
    pred = scene.fns.predict(model, tile_size=64, tta="d4", batch_size=16)
    assert len(pred.data.__dask_graph__()) > 10
    a, b = both(pred)
    xr.testing.assert_identical(a, b)
    np.testing.assert_allclose(a.values, scene.values, rtol=1.2e-7)
    counts = client.run(lambda: __import__("tests_models").CountingModel.unpickled)
    assert all(n <= 1 for n in counts.values()), counts
    assert sum(counts.values()) >= 1


def test_load_on_cluster(client, lazy_scene):
    tiles = lazy_scene.fns.tile(64, edge="pad")
    loaded = tiles.fns.load()
    assert loaded.chunks is None
    np.testing.assert_array_equal(loaded.values, tiles.compute(scheduler="threads").values)


def test_a_collection_from_preprocess_to_split_and_untile_on_cluster(client, lazy_scene):
    # two scenes that overlap on the ground by 100 rows, each on its own grid
    scenes = {
        "north": lazy_scene.isel(y=slice(0, 300)),
        "south": lazy_scene.isel(y=slice(200, 560)),
    }
    ready = xflipnslide.preprocess(scenes, nodata=0)
    tiles = xflipnslide.tile(ready, 64, edge="pad")
    a, b = both(tiles)
    xr.testing.assert_identical(a, b)
    parts = tiles.fns.split(block_size=128, seed=0)
    a, b = both(parts["train"])
    xr.testing.assert_identical(a, b)
    for id in scenes:
        a, b = both(tiles.fns.untile(scene=id))
        xr.testing.assert_identical(a, b)
        np.testing.assert_allclose(
            a.values, ready[id].compute(scheduler="threads").values, rtol=1e-5, atol=1e-5
        )
