"""tile() against the slow oracle, on numpy and dask, plus its labelled output."""

from __future__ import annotations

import warnings

import dask
import dask.array as da
import numpy as np
import oracle
import pytest
import xarray as xr
from conftest import random_scene
from hypothesis import given
from hypothesis import strategies as st

import xflipnslide
from xflipnslide import InvalidParameterError, SceneTooSmallError, SpatialDimsError

STRATEGIES = ["flipnslide", "overlap", "no_overlap"]


@pytest.mark.parametrize("strategy", STRATEGIES)
@pytest.mark.parametrize("edge", ["crop", "pad"])
def test_matches_oracle(backend, strategy, edge):
    x = random_scene(np.random.default_rng(0), (2, 150, 171))
    tiles = backend(x).fns.tile(tile_size=48, strategy=strategy, edge=edge)
    assert isinstance(tiles.data, da.Array) == (backend.name == "dask")
    expected = oracle.tiles(x.values, 48, strategy, edge)
    np.testing.assert_array_equal(tiles.values, expected)
    assert tiles.dims == ("tile", "band", "y", "x")
    assert tiles.dtype == x.dtype


@st.composite
def tiling_case(draw):
    t = draw(st.sampled_from([4, 8, 12, 16, 20]))
    strategy = draw(st.sampled_from(STRATEGIES))
    edge = draw(st.sampled_from(["crop", "pad"]))
    lo = 2 * t if edge == "crop" else t + 1
    h, w = draw(st.integers(lo, lo + 3 * t)), draw(st.integers(lo, lo + 3 * t))
    nband = draw(st.integers(1, 3))
    dtype = draw(
        st.sampled_from(["float32", "float64", "uint8", "int16", "uint16", "int64", "bool"])
    )
    chunks = {
        "band": draw(st.integers(1, nband)),
        "y": draw(st.integers(1, h)),
        "x": draw(st.integers(1, w)),
    }
    tile_chunks = draw(st.integers(1, 40))
    seed = draw(st.integers(0, 2**16))
    contiguous = draw(st.booleans())
    return t, strategy, edge, (nband, h, w), dtype, chunks, tile_chunks, seed, contiguous


@pytest.mark.slow
@given(case=tiling_case())
def test_random_shapes_dtypes_and_chunkings(case):
    t, strategy, edge, shape, dtype, chunks, tile_chunks, seed, contiguous = case
    x = random_scene(np.random.default_rng(seed), shape, dtype)
    expected = oracle.tiles(x.values, t, strategy, edge)
    eager = x.fns.tile(t, strategy, edge=edge)
    chunked = x.chunk(chunks)
    if contiguous:  # chunks as a file reader gives them: windows are read in place
        chunked = chunked.copy(data=chunked.data.map_blocks(np.ascontiguousarray))
    lazy = chunked.fns.tile(t, strategy, edge=edge, tile_chunks=tile_chunks)
    assert lazy.dtype == eager.dtype == x.dtype
    assert set(lazy.chunks[0][:-1]) <= {tile_chunks}
    np.testing.assert_array_equal(eager.values, expected)
    np.testing.assert_array_equal(lazy.values, expected)


def test_result_independent_of_input_chunking():
    x = random_scene(np.random.default_rng(1), (3, 200, 230))
    results = [
        x.chunk(c).fns.tile(32).values
        for c in ({"band": 1, "y": 7, "x": 13}, {"band": 3, "y": 200, "x": 230}, {"y": 64, "x": 50})
    ]
    for r in results[1:]:
        np.testing.assert_array_equal(r, results[0])


def test_other_dims_ride_along_in_input_order(backend):
    rng = np.random.default_rng(2)
    x = xr.DataArray(rng.random((40, 2, 36, 3)).astype("f4"), dims=("y", "time", "x", "band"))
    tiles = backend(x).fns.tile(16, "overlap")
    assert tiles.dims == ("tile", "time", "band", "y", "x")
    expected = oracle.tiles(x.transpose("time", "band", "y", "x").values, 16, "overlap")
    np.testing.assert_array_equal(tiles.values, expected)


def test_coordinates_and_attrs(scene):
    scene.attrs["units"] = "DN"
    tiles = scene.fns.tile(128)
    plan = xflipnslide.plan_tiles((560, 600), 128)
    np.testing.assert_array_equal(tiles.row, plan.rows)
    np.testing.assert_array_equal(tiles.col, plan.cols)
    assert tiles.transform.dtype == np.int8
    np.testing.assert_array_equal(tiles.transform, plan.codes)
    assert set(tiles.grid.values.tolist()) == {"outer", "inner"}
    # the centre of each window in the scene's own coordinates
    for k in (0, 7, 40, len(plan) - 1):
        r, c = int(plan.rows[k]), int(plan.cols[k])
        window = scene.isel(y=slice(r, r + 128), x=slice(c, c + 128))
        assert tiles.y_center[k] == pytest.approx(float(window.y.mean()))
        assert tiles.x_center[k] == pytest.approx(float(window.x.mean()))
    assert tiles.rio.crs == scene.rio.crs
    assert tiles.attrs["units"] == "DN"
    assert tiles.attrs["fns_scene_shape"] == [560, 600]
    assert tiles.attrs["fns_strategy"] == "flipnslide"
    assert list(tiles.band.values) == ["red", "green", "blue"]


def test_real_scene_tiles_equal_oracle(scene, backend):
    tiles = backend(scene, {"band": 1, "y": 100, "x": 256}).fns.tile(64, edge="pad")
    np.testing.assert_array_equal(tiles.values, oracle.tiles(scene.values, 64, "flipnslide", "pad"))


def test_lat_lon_dims_and_explicit_dims(backend):
    x = random_scene(np.random.default_rng(3), (2, 40, 50), dims=("band", "lat", "lon"))
    tiles = backend(x).fns.tile(16)
    assert tiles.dims == ("tile", "band", "lat", "lon")
    assert "lat_center" in tiles.coords
    y = x.rename(lat="row_", lon="col_")
    tiles2 = backend(y).fns.tile(16, dims=("row_", "col_"))
    np.testing.assert_array_equal(tiles2.values, tiles.values)


def test_rioxarray_named_dims():
    x = random_scene(np.random.default_rng(3), (1, 40, 40), dims=("band", "northing", "easting"))
    x = x.rio.set_spatial_dims(x_dim="easting", y_dim="northing")
    assert x.fns.tile(16).dims == ("tile", "band", "northing", "easting")


def test_dataset_image_and_mask_stay_aligned(backend):
    rng = np.random.default_rng(4)
    img = random_scene(rng, (3, 96, 100))
    mask = xr.DataArray(rng.integers(0, 5, (96, 100)).astype("uint8"), dims=("y", "x"))
    ds = xr.Dataset({"image": img, "mask": mask, "meta": ("band", np.arange(3))})
    ds.attrs["title"] = "pair"
    tiles = backend(ds).fns.tile(32)
    assert tiles["mask"].dtype == np.uint8
    assert tiles["mask"].dims == ("tile", "y", "x")
    assert tiles["image"].dims == ("tile", "band", "y", "x")
    assert tiles["meta"].dims == ("band",)
    assert tiles.attrs["title"] == "pair"
    np.testing.assert_array_equal(tiles["mask"].values, oracle.tiles(mask.values, 32, "flipnslide"))
    np.testing.assert_array_equal(tiles["image"].values, oracle.tiles(img.values, 32, "flipnslide"))
    if backend.name == "dask":
        assert tiles["mask"].chunks[0] == tiles["image"].chunks[0]
    # mask pixels travel with their image pixels under every code
    marked = ds.copy()
    marked["mask"] = (marked["image"].isel(band=0) > 0).astype("uint8")
    out = backend(marked).fns.tile(32)
    np.testing.assert_array_equal(out["mask"].values, (out["image"].isel(band=0) > 0).values)


def test_two_dimensional_coordinates_are_tiled():
    x = random_scene(np.random.default_rng(5), (1, 40, 40))
    x = x.assign_coords(lat2d=(("y", "x"), np.arange(1600.0).reshape(40, 40)))
    tiles = x.fns.tile(16)
    assert tiles.lat2d.dims == ("tile", "y", "x")
    np.testing.assert_array_equal(
        tiles.lat2d.values, oracle.tiles(x.lat2d.values, 16, "flipnslide")
    )


def test_building_the_graph_computes_nothing(no_compute):
    x = random_scene(np.random.default_rng(6), (3, 300, 300)).chunk({"y": 64, "x": 64})
    ds = xr.Dataset({"image": x, "mask": x.isel(band=0) > 0})
    tiles = ds.fns.tile(64)
    assert isinstance(tiles["image"].data, da.Array)
    with pytest.raises(AssertionError, match="too many dask computations"):
        tiles["image"].values


def test_chunks_uniform_and_bounded():
    x = random_scene(np.random.default_rng(7), (3, 1024, 1024)).chunk({"y": 256, "x": 256})
    tiles = x.fns.tile(64, tile_chunks="1MiB")
    per = tiles.chunks[0][0]
    assert per == (1 << 20) // (3 * 64 * 64 * 4)
    assert all(c == per for c in tiles.chunks[0][:-1])
    assert tiles.chunks[1:] == ((3,), (64,), (64,))
    auto = x.fns.tile(64)
    assert auto.data.nbytes < 128 * 2**20
    assert len(auto.chunks[0]) == 1
    with dask.config.set({"array.chunk-size": "2MiB"}):
        assert x.fns.tile(64).chunks[0][0] == (2 << 20) // (3 * 64 * 64 * 4)


def test_task_memory_bounded_by_the_strips_it_reads():
    """Each task depends only on the input chunks its strips overlap."""
    x = random_scene(np.random.default_rng(8), (1, 1024, 1024)).chunk({"y": 128, "x": 128})
    tiles = x.fns.tile(64, tile_chunks=8)
    graph = dict(tiles.data.__dask_graph__())
    deps = dask.core.get_dependencies(graph, key=tiles.data.__dask_keys__()[0][0][0][0])
    # 8 tiles of one window row: a 64-row strip 64 + 7 * 32 px wide -> at most 1 x 3 chunks
    assert 1 <= len(deps) <= 2 * 3


def test_zarr_and_netcdf_round_trip(tmp_path, scene):
    tiles = scene.chunk({"y": 200, "x": 200}).fns.tile(64)
    tiles.to_dataset(name="tiles").to_zarr(tmp_path / "t.zarr", mode="w")
    back = xr.open_zarr(tmp_path / "t.zarr")["tiles"]
    xr.testing.assert_identical(
        back.drop_vars("spatial_ref"), tiles.drop_vars("spatial_ref").compute().rename("tiles")
    )
    assert back.rio.crs == scene.rio.crs
    assert back.attrs["fns_scene_shape"] == [560, 600]
    small = tiles.isel(tile=slice(0, 5)).compute()
    small.to_netcdf(tmp_path / "t.nc", engine="scipy")
    with xr.open_dataarray(tmp_path / "t.nc", engine="scipy") as nc:
        np.testing.assert_array_equal(nc.values, small.values)
        np.testing.assert_array_equal(nc.transform.values, small.transform.values)
        assert list(nc.attrs["fns_scene_shape"]) == [560, 600]


def test_xbatcher_batches(scene):
    import xbatcher

    tiles = scene.fns.tile(64)
    gen = xbatcher.BatchGenerator(
        tiles, input_dims={"band": 3, "y": 64, "x": 64}, batch_dims={"tile": 16}
    )
    batch = gen[1]
    assert dict(batch.sizes) == {"tile": 16, "band": 3, "y": 64, "x": 64}
    np.testing.assert_array_equal(batch.values, tiles.isel(tile=slice(16, 32)).values)
    np.testing.assert_array_equal(batch.transform.values, tiles.transform.values[16:32])
    mine = tiles.fns.batches(batch_size=16)
    assert len(mine) == len(gen) == len(tiles.tile) // 16
    xr.testing.assert_identical(mine[1], batch)


def test_batches_warns_of_leftover_and_rejects_scene(scene):
    tiles = scene.fns.tile(64, edge="pad")
    leftover = f"{len(tiles.tile) % 50} of {len(tiles.tile)} tiles are in no batch"
    with pytest.warns(xflipnslide.DataDroppedWarning, match=leftover):
        tiles.fns.batches(batch_size=50)
    with pytest.raises(InvalidParameterError, match=r"Call .fns.tile"):
        scene.fns.batches(8)
    with pytest.raises(InvalidParameterError, match="batch_size must be a positive"):
        tiles.fns.batches(0)
    with pytest.raises(InvalidParameterError, match="more than the"):
        tiles.fns.batches(10_000)


def test_crop_warns_with_the_share_left_out(scene):
    with pytest.warns(
        xflipnslide.DataDroppedWarning,
        match=r"centre 512 x 512 of the 560 x 600 scene.*22.0% of the pixels",
    ):
        scene.fns.tile(128)


@pytest.mark.parametrize(
    ("dims", "names", "error", "match"),
    [
        (
            None,
            ("band", "a", "b"),
            SpatialDimsError,
            r"cannot find the spatial dimensions.*dims=\(",
        ),
        (None, ("y", "x", "lat", "lon"), SpatialDimsError, "ambiguous"),
        (("row", "col"), ("band", "y", "x"), SpatialDimsError, "does not have"),
        ("yx", ("band", "y", "x"), SpatialDimsError, "must be a pair"),
    ],
)
def test_dim_errors(dims, names, error, match):
    x = xr.DataArray(np.zeros((2,) * (len(names) - 2) + (40, 40)), dims=names)
    with pytest.raises(error, match=match):
        x.fns.tile(16, dims=dims)


def test_input_errors_before_any_pixel_work(no_compute):
    x = random_scene(np.random.default_rng(9), (1, 100, 100)).chunk()
    with pytest.raises(SceneTooSmallError, match="at least 128 x 128"):
        x.fns.tile(64)
    with pytest.raises(InvalidParameterError, match="multiple of 4"):
        x.fns.tile(30)
    with pytest.raises(InvalidParameterError, match="strategy must be"):
        x.fns.tile(16, strategy="random")
    with pytest.raises(InvalidParameterError, match="tile_chunks"):
        x.fns.tile(16, tile_chunks="lots")
    with pytest.raises(InvalidParameterError, match="cannot be tiled"):
        x.astype(object).fns.tile(16)
    with pytest.raises(InvalidParameterError, match="DataArray or Dataset"):
        xflipnslide.tile(np.zeros((64, 64)), 16)
    tiles = x.fns.tile(16)
    with pytest.raises(InvalidParameterError, match="tile a scene, not tiles"):
        tiles.fns.tile(4, dims=("y", "x"))
    ds = xr.Dataset({"img": x, "profile": x.isel(x=0)})
    with pytest.raises(InvalidParameterError, match=r"'profile'.*drop it first"):
        ds.fns.tile(16)


@pytest.mark.slow
def test_graph_grows_linearly_with_chunks(no_compute):
    per_chunk = []
    for n in (1024, 2048, 4096):
        x = xr.DataArray(
            da.zeros((3, n, n), chunks=(3, 256, 256), dtype="float32"), dims=("band", "y", "x")
        )
        tiles = x.fns.preprocess(reach=64).fns.tile(64, tile_chunks="4MiB")
        per_chunk.append(len(tiles.data.__dask_graph__()) / x.data.npartitions)
    assert max(per_chunk) / min(per_chunk) < 1.2, per_chunk


@pytest.mark.slow
def test_load_computes_lazy_tiles_once_into_numpy(scene):
    from conftest import raise_if_dask_computes

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", xflipnslide.XFlipNSlideWarning)
        ready = scene.chunk({"y": 200, "x": 200}).fns.preprocess(nodata=0)
        tiles = xr.Dataset({"image": ready}).fns.tile(64, edge="pad")
    with raise_if_dask_computes(1):  # data and lazy coords in one computation
        loaded = tiles.fns.load()
    assert loaded.image.chunks is None and loaded.valid_fraction.chunks is None
    xr.testing.assert_identical(loaded, tiles.compute())
    one = tiles.image.fns.load()
    assert one.chunks is None
    np.testing.assert_array_equal(one.values, loaded.image.values)
