"""Tiles that cannot lie about where they come from: graph names that cannot
collide, a CRS that survives a store, regular grids only, mixed tile sets
refused, and typed errors for inputs of the wrong kind."""

from __future__ import annotations

import os
import warnings

import dask
import geopandas as gpd
import numpy as np
import pytest
import shapely
import xarray as xr
from affine import Affine
from conftest import DATA, raise_if_dask_computes, random_scene
from oracle import TRANSFORM, window_sources

import xflipnslide
from xflipnslide import InvalidParameterError, InvalidTilesError, schema
from xflipnslide.dims import find_spatial_dims
from xflipnslide.errors import IrregularGridError
from xflipnslide.georef import check_regular_grid

SHARED = "/work/shared/data"
LANDSAT = os.path.join(DATA, "landsat8")
AREA = os.path.join(LANDSAT, "LC08_L1TP_224078_20200518_labels_area_RGB.tif")
POLYGONS = os.path.join(LANDSAT, "LC08_L1TP_224078_20200518_20200518_01_RT_polygons.gpkg")
CLASSES = {"water": 1, "crop": 2, "tree": 3, "developed": 4}


@pytest.fixture(autouse=True)
def _quiet():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", xflipnslide.XFlipNSlideWarning)
        yield


@pytest.fixture(scope="module")
def polygons():
    gdf = gpd.read_file(POLYGONS)
    return gdf.assign(cls=gdf.name.map(CLASSES))


def sliced(scene: xr.DataArray, tiles: xr.DataArray) -> np.ndarray:
    """The tiles by slicing each window out of the scene and applying its
    code with numpy (the table in docs/tiling.md): the oracle, for windows inside the scene."""
    a, T = scene.values, tiles.sizes["y"]
    out = [
        TRANSFORM[int(k)](a[..., r : r + T, c : c + T])
        for r, c, k in zip(tiles.row.values, tiles.col.values, tiles.transform.values)
    ]
    return np.stack(out)


# --- 6: graph names are tokens of everything that decides the values ----------


def _pairs(scene):
    """Pairs of tile sets of one lazy scene that differ only in their windows."""
    x0, x1 = float(scene.x[0]), float(scene.x[-1])
    y0, y1 = float(scene.y[0]), float(scene.y[-1])
    mid = (x0 + x1) / 2
    left = shapely.box(x0 - 1, min(y0, y1), mid - 2000, max(y0, y1))
    right = shapely.box(mid + 2000, min(y0, y1), x1 + 1, max(y0, y1))
    bright = scene.isel(band=0).values > np.median(scene.isel(band=0).values)
    masked = scene.assign_coords(fns_observed=(("y", "x"), bright))
    kw = {"tile_chunks": 8}
    return {
        "strategy": (scene.fns.tile(64, **kw), scene.fns.tile(64, "overlap", **kw)),
        "aoi": (scene.fns.tile(64, aoi=left, **kw), scene.fns.tile(64, aoi=right, **kw)),
        "min_valid": (
            masked.fns.tile(64, min_valid=0.3, **kw),
            masked.fns.tile(64, min_valid=0.7, **kw),
        ),
        "stride": (
            scene.fns.tile(64, "overlap", stride=32, **kw),
            scene.fns.tile(64, "overlap", stride=16, **kw),
        ),
    }


@pytest.mark.parametrize("what", ["strategy", "aoi", "min_valid", "stride"])
def test_two_plans_of_one_lazy_scene_computed_together(scene, what):
    lazy = scene.chunk({"y": 200, "x": 256})
    a, b = _pairs(lazy)[what]
    assert a.chunks is not None and b.chunks is not None
    assert not np.array_equal(a.col.values, b.col.values) or a.sizes != b.sizes
    ta, tb = dask.compute(a.data, b.data)
    np.testing.assert_array_equal(ta, sliced(scene, a))
    np.testing.assert_array_equal(tb, sliced(scene, b))
    ua, ub = dask.compute(a.fns.untile().data, b.fns.untile().data)
    np.testing.assert_array_equal(ua, a.fns.untile().values)
    np.testing.assert_array_equal(ub, b.fns.untile().values)
    # each untiled pixel is a scene pixel (every tile holds the scene's values)
    for u in (ua, ub):
        seen = ~np.isnan(u)
        np.testing.assert_allclose(u[seen], scene.values[seen].astype(np.float32))


def test_untile_accumulator_dtype_is_in_the_graph_name(scene):
    from xflipnslide._core.blend import blend_weights, untile_array

    tiles = scene.astype("float32").fns.tile(64).chunk({"tile": 50})
    args = (tiles.row.values, tiles.col.values, tiles.transform.values, (560, 600))
    weight = blend_weights(64, "hann")
    low = untile_array(tiles.data, *args, weight)
    high = untile_array(tiles.data, *args, weight, acc_dtype=np.float64)
    alone = low.compute(), high.compute()
    assert not np.array_equal(alone[0], alone[1], equal_nan=True)  # they round differently
    together = dask.compute(low, high)
    for got, want in zip(together, alone):
        np.testing.assert_array_equal(got, want)


def test_rasterize_all_touched_is_in_the_graph_name(polygons):
    from rasterio.features import rasterize

    image = xflipnslide.open_image(AREA, chunks={"y": 200, "x": 112})
    inside = xflipnslide.rasterize(polygons, image, column="cls")
    touched = xflipnslide.rasterize(polygons, image, column="cls", all_touched=True)
    got = dask.compute(inside.data, touched.data)
    for out, all_touched in zip(got, (False, True)):
        expected = rasterize(
            zip(polygons.geometry, polygons.cls),
            out_shape=image.shape[1:],
            transform=image.rio.transform(),
            all_touched=all_touched,
            dtype="uint8",
        )
        np.testing.assert_array_equal(out, expected)


# --- 7: the CRS survives a store on the README's own path ----------------------


def _readme_tiles(scene, polygons, tile_size):
    labels = xflipnslide.rasterize(polygons, like=scene, column="cls")
    ds = xr.Dataset({"image": scene, "label": labels}).fns.preprocess()
    return ds.fns.tile(tile_size)


@pytest.mark.parametrize("store", ["zarr", "netcdf"])
def test_readme_path_reopens_with_its_crs(polygons, tmp_path, store):
    import rioxarray

    scene = rioxarray.open_rasterio(AREA)  # the grid_mapping in its encoding, as rioxarray writes
    tiles = _readme_tiles(scene, polygons, 64)
    if store == "zarr":
        tiles.to_zarr(tmp_path / "t.zarr")
        back = xr.open_zarr(tmp_path / "t.zarr")
    else:
        tiles.to_netcdf(tmp_path / "t.nc")
        back = xr.open_dataset(tmp_path / "t.nc")
    assert set(back.data_vars) == {"image", "label"}
    assert "spatial_ref" in back.coords
    assert back.rio.crs == scene.rio.crs
    assert back["image"].rio.crs == scene.rio.crs
    assert back["label"].rio.crs == scene.rio.crs
    assert back["label"].dtype == np.uint8
    np.testing.assert_array_equal(back["label"].values, tiles["label"].values)
    # and the labels themselves, written alone, reopen with it too
    labels = xflipnslide.rasterize(polygons, like=scene, column="cls")
    labels.to_dataset().to_zarr(tmp_path / "labels.zarr")
    assert xr.open_zarr(tmp_path / "labels.zarr").rio.crs == scene.rio.crs


@pytest.mark.skipif(not os.path.isdir(f"{SHARED}/landsat8"), reason="no shared data")
def test_readme_path_reopens_with_its_crs_on_the_full_scene(tmp_path):
    import rioxarray

    folder = f"{SHARED}/landsat8"
    gdf = gpd.read_file(f"{folder}/LC08_L1TP_224078_20200518_20200518_01_RT_polygons.gpkg")
    gdf = gdf.assign(cls=gdf.name.map(CLASSES))
    band = rioxarray.open_rasterio(
        f"{folder}/LC08_L1TP_224078_20200518_20200518_01_RT_B4.TIF", chunks={"y": 512, "x": 512}
    )
    x0, y0, x1, y1 = gdf.total_bounds
    scene = band.sel(x=slice(x0 - 3000, x1 + 3000), y=slice(y1 + 3000, y0 - 3000))
    tiles = _readme_tiles(scene, gdf, 128)
    assert tiles["image"].chunks is not None
    tiles.to_zarr(tmp_path / "t.zarr")
    back = xr.open_zarr(tmp_path / "t.zarr")
    assert back.rio.crs == band.rio.crs and back.rio.crs.to_epsg() == 32621
    assert set(back.data_vars) == {"image", "label"}


def test_a_crs_stored_as_a_data_variable_comes_back_as_a_coordinate(scene, tmp_path):
    ds = scene.to_dataset(name="image")
    ds["image"].encoding["grid_mapping"] = "spatial_ref"
    ds = ds.reset_coords("spatial_ref")  # as a store written without the fix reopens
    assert "spatial_ref" in ds.data_vars
    tiles = ds.fns.tile(128)
    assert "spatial_ref" in tiles.coords and tiles["image"].attrs["grid_mapping"] == "spatial_ref"
    tiles.to_zarr(tmp_path / "t.zarr")
    assert xr.open_zarr(tmp_path / "t.zarr").rio.crs == scene.rio.crs


# --- 9: regular grids only; tiles whose geometry disagrees are refused ---------


def _jump(obj, km=15):
    """``obj`` with a ``km`` jump in x half-way: no longer a regular grid."""
    x = obj.x.values + km * 1000.0 * (np.arange(obj.sizes["x"]) >= obj.sizes["x"] // 2)
    return obj.assign_coords(x=("x", x, obj.x.attrs))


def test_tile_and_rasterize_refuse_an_irregular_grid(scene, polygons):
    image = xflipnslide.open_image(AREA, chunks={"y": 200, "x": 112})
    bad = _jump(image)
    with raise_if_dask_computes():
        with pytest.raises(IrregularGridError, match=r"'x'.*reproject"):
            bad.fns.tile(64)
        with pytest.raises(IrregularGridError, match=r"rasterize.*'x'.*not evenly spaced"):
            xflipnslide.rasterize(polygons, like=bad, column="cls")
        with pytest.raises(IrregularGridError, match=r"x\[111\] and x\[112\]"):
            check_regular_grid(bad, ("y", "x"))
    assert issubclass(IrregularGridError, InvalidParameterError)
    with pytest.raises(IrregularGridError):
        _jump(scene).fns.tile(128)


def test_regular_grids_pass_whatever_their_dtype(scene):
    check_regular_grid(scene, ("y", "x"))
    # float32 coordinates round every value (by up to 0.03 m here); still a regular grid
    x = 740000.1 + 29.97 * np.arange(scene.sizes["x"])
    y = -2805000.3 - 29.97 * np.arange(scene.sizes["y"])
    f32 = scene.assign_coords(x=x.astype("float32"), y=y.astype("float32"))
    assert np.ptp(np.diff(f32.x.values.astype(float))) > 1e-6 * 30
    check_regular_grid(f32, ("y", "x"))
    back = f32.fns.tile(64, edge="pad").fns.untile()
    np.testing.assert_allclose(back.x.values, x, rtol=0, atol=0.1)
    np.testing.assert_array_equal(back.fns.tile(64, edge="pad").fns.untile(like=f32).x, f32.x)
    np.testing.assert_array_equal(back.values, scene.values.astype(np.float32))
    # bare pixel grids and 2-D coordinates have nothing to check
    check_regular_grid(xr.DataArray(np.zeros((4, 5)), dims=("y", "x")), ("y", "x"))


@pytest.mark.skipif(not os.path.isdir(SHARED), reason="no shared data")
def test_real_rasters_are_regular_grids():
    import rioxarray

    paths = [
        os.path.join(f"{SHARED}/landsat8", f)
        for f in sorted(os.listdir(f"{SHARED}/landsat8"))
        if f.endswith(".TIF")
    ]
    paths += [
        os.path.join(f"{SHARED}/rmnp", f)
        for f in sorted(os.listdir(f"{SHARED}/rmnp"))
        if f.endswith((".tif", ".TIF"))
    ]
    assert paths
    for path in paths:
        check_regular_grid(rioxarray.open_rasterio(path), ("y", "x"))
    for name in sorted(os.listdir(f"{SHARED}/sentinel2")):
        if name.endswith(".nc"):
            ds = xr.open_dataset(os.path.join(f"{SHARED}/sentinel2", name), engine="scipy")
            check_regular_grid(ds, find_spatial_dims(ds))


def test_tiles_record_the_scene_transform(scene):
    tiles = scene.fns.tile(128)
    np.testing.assert_allclose(
        tiles.attrs["fns_scene_transform"], list(scene.rio.transform())[:6], rtol=1e-12
    )
    back = tiles.fns.untile()
    np.testing.assert_allclose(back.x.values, scene.x.values, rtol=1e-12)
    np.testing.assert_allclose(back.y.values, scene.y.values, rtol=1e-12)


@pytest.mark.parametrize("georeferenced", [True, False])
def test_untile_refuses_a_scene_concatenated_with_its_padded_crop(scene, georeferenced):
    if not georeferenced:
        scene = scene.drop_vars(["x", "y"])
    whole = scene.fns.tile(64, edge="pad")
    crop = scene.isel(y=slice(0, 424)).fns.tile(64, edge="pad")  # rows 400-423 reflect-padded
    mixed = xr.concat([whole, crop], "tile")
    with pytest.raises(InvalidTilesError, match="mixed in"):
        mixed.fns.untile()
    with pytest.raises(InvalidTilesError, match="mixed in"):
        mixed.fns.untile(like=scene)
    # each alone is fine and exact
    np.testing.assert_array_equal(whole.fns.untile().values, scene.values.astype(np.float32))


def test_untile_refuses_half_of_a_shifted_scene(scene):
    shifted = scene.assign_coords(x=scene.x.values[0] + 31.42 * np.arange(scene.sizes["x"]))
    a, b = scene.fns.tile(64), shifted.fns.tile(64)
    half = int(np.median(a.col.values))
    left = a.isel(tile=np.flatnonzero(a.col.values < half))
    right = b.isel(tile=np.flatnonzero(b.col.values >= half))
    mixed = xr.concat([left, right], "tile")
    with pytest.raises(InvalidTilesError, match=r"x_center.*another scene or grid"):
        mixed.fns.untile()
    with pytest.raises(InvalidTilesError):
        xflipnslide.split(mixed, seed=0)


def test_untile_refuses_like_of_another_grid(scene):
    tiles = scene.fns.tile(64)
    shifted = scene.assign_coords(x=scene.x + 30.0)
    with pytest.raises(InvalidTilesError, match="like= is not the grid"):
        tiles.fns.untile(like=shifted)
    back = tiles.fns.untile(like=scene)
    np.testing.assert_array_equal(back.x.values, scene.x.values)


def test_untile_refuses_codes_the_recorded_plan_does_not_have(scene):
    tiles = scene.fns.tile(64)
    wrong = tiles.assign_coords(transform=("tile", np.roll(tiles.transform.values, 1)))
    with pytest.raises(InvalidTilesError, match="not windows of the plan"):
        wrong.fns.untile()


def test_untile_without_like_refuses_centres_off_a_regular_grid(scene):
    """Tiles that record no scene transform (older stores, hand-built tiles)
    whose centres are not on a regular grid need like=."""
    irregular = _jump(scene, km=1)
    tiles = scene.fns.tile(64)
    tiles.attrs.pop("fns_scene_transform")
    T = 64
    pos = tiles.col.values + (T - 1) / 2
    centres = np.interp(pos, np.arange(scene.sizes["x"]), irregular.x.values)
    legacy = tiles.assign_coords(x_center=("tile", centres))
    with pytest.raises(InvalidTilesError, match=r"not on a regular grid.*like="):
        legacy.fns.untile()
    back = legacy.fns.untile(like=irregular)
    np.testing.assert_array_equal(back.x.values, irregular.x.values)


def test_untile_refuses_tiles_resampled_to_another_size(scene):
    tiles = scene.fns.tile(64)
    half = tiles.isel(y=slice(None, None, 2), x=slice(None, None, 2))
    with pytest.raises(InvalidTilesError, match="cut as 64 px tiles"):
        half.fns.untile()


# --- 15: typed errors that name the fix -----------------------------------------


@pytest.mark.parametrize(
    ("values", "fill", "dtype", "suggestion"),
    [
        ([1.5, 2.0], 0, "uint8", "float32"),  # fractional: a float dtype, not a wider integer
        ([3_000_000_000, 1], 0, "int32", "uint32"),  # never the dtype already given
        ([-1, 4], 0, "uint8", "int8"),
        ([300, 4], -5, "uint8", "int16"),  # the fill counts too
        ([1e39, 1], 0, "float32", "float64"),
    ],
)
def test_rasterize_suggests_a_dtype_that_holds_the_values(
    polygons, values, fill, dtype, suggestion
):
    image = xflipnslide.open_image(AREA, chunks=None)
    gdf = polygons.iloc[: len(values)].assign(v=values)
    with pytest.raises(InvalidParameterError, match=f"pass dtype='{suggestion}'") as err:
        xflipnslide.rasterize(gdf, image, column="v", fill=fill, dtype=dtype)
    assert f"dtype='{dtype}'" not in str(err.value)
    held = np.asarray([*values, fill], dtype=float).astype(suggestion)
    np.testing.assert_array_equal(held.astype(float), np.asarray([*values, fill], dtype=float))
    out = xflipnslide.rasterize(gdf, image, column="v", fill=fill, dtype=suggestion)
    assert out.dtype == np.dtype(suggestion)


def test_rasterize_and_load_refuse_bare_arrays(polygons):
    with pytest.raises(InvalidParameterError, match="DataArray or Dataset with y/x"):
        xflipnslide.rasterize(polygons, np.zeros((10, 10)))
    with pytest.raises(InvalidParameterError, match=r"load takes an xarray.*Pass the tiles"):
        xflipnslide.load(np.zeros((10, 10)))


def test_geometry_read_from_variables_reopened_from_netcdf(scene, tmp_path):
    """netCDF gives list attrs back as arrays; the variables' geometries still agree."""
    tiles = xr.Dataset({"a": scene, "b": scene}).fns.tile(128)
    tiles.to_netcdf(tmp_path / "t.nc")
    back = xr.open_dataset(tmp_path / "t.nc")
    back.attrs = {}  # only the variables record the geometry
    assert isinstance(back["a"].attrs["fns_scene_transform"], np.ndarray)
    out = back.fns.untile()
    assert out.rio.crs == scene.rio.crs
    np.testing.assert_array_equal(out["a"].values, tiles.fns.untile()["a"].values)


@pytest.mark.parametrize("aoi", ["POLYGON ((0 0, 1 0, 1 1, 0 0))", {"type": "Polygon"}])
def test_tile_refuses_an_aoi_that_is_not_a_geometry(scene, aoi):
    with pytest.raises(xflipnslide.InvalidParameterError, match="aoi"):
        scene.fns.tile(64, aoi=aoi)


# --- the area of interest, against footprints computed here -------------------


def footprint(a, b, c, d, e, f, row, col, T):
    """A window's ground polygon from the affine ``x = a col + b row + c``,
    ``y = d col + e row + f`` of its four pixel corners."""
    corners = [(col, row), (col + T, row), (col + T, row + T), (col, row + T)]
    return shapely.Polygon([(a * j + b * i + c, d * j + e * i + f) for j, i in corners])


def expected_windows(tiles, coefficients, aoi, T):
    return np.array(
        [
            footprint(*coefficients, r, c, T).intersects(aoi)
            for r, c in zip(tiles.row.values.tolist(), tiles.col.values.tolist())
        ]
    )


def test_aoi_keeps_the_windows_whose_ground_footprint_it_meets(scene, backend):
    x, y = scene.x.values, scene.y.values
    a, e = x[1] - x[0], y[1] - y[0]  # the grid, from the pixel centres alone
    coefficients = (a, 0.0, x[0] - a / 2, 0.0, e, y[0] - e / 2)
    # a triangle (not a box: corners of windows it misses lie inside its bounds)
    x0, y0 = float(x[200]) + 7.0, float(y[150]) - 11.0
    aoi = shapely.Polygon([(x0, y0), (x0 + 4000, y0), (x0, y0 - 4000)])
    full = scene.fns.tile(64, edge="pad")
    want = expected_windows(full, coefficients, aoi, 64)
    assert 0 < want.sum() < len(want)
    with pytest.warns(xflipnslide.DataDroppedWarning, match="aoi"):
        kept = backend(scene).fns.tile(64, edge="pad", aoi=aoi)
    np.testing.assert_array_equal(kept.row.values, full.row.values[want])
    np.testing.assert_array_equal(kept.col.values, full.col.values[want])
    np.testing.assert_array_equal(kept.values, full.values[want])
    assert kept.attrs[schema.DROPPED_AOI] == int((~want).sum())


def test_aoi_reads_the_geotransform_of_a_scene_without_coordinates():
    """No x/y coordinates: the windows' footprints come from the CRS
    variable's GeoTransform, here rotated, so a footprint is no box."""
    bare = xr.DataArray(np.zeros((1, 200, 240), "float32"), dims=("band", "y", "x"))
    coefficients = (25.0, 6.0, 500_000.0, 8.0, -25.0, 4_000_000.0)  # rotated and sheared
    bare = bare.rio.write_crs("EPSG:32633").rio.write_transform(Affine(*coefficients))
    # a small triangle at pixel (60, 70): inside the bounding boxes of more
    # windows than it meets, so only true footprints give the right ones
    aoi = shapely.Polygon([(501_920, 3_998_730), (501_980, 3_998_710), (501_930, 3_998_660)])
    full = bare.fns.tile(32, "overlap")
    want = expected_windows(full, coefficients, aoi, 32)
    assert 0 < want.sum() < len(want)
    with pytest.warns(xflipnslide.DataDroppedWarning, match="aoi"):
        kept = bare.fns.tile(32, "overlap", aoi=aoi)
    np.testing.assert_array_equal(kept.row.values, full.row.values[want])
    np.testing.assert_array_equal(kept.col.values, full.col.values[want])
    # predict keeps the same footprints: pixels of no kept window are NaN
    pred = bare.fns.predict(lambda b: b[:, :1] + 1, tile_size=32, stride=16, aoi=aoi)
    inside = np.zeros(pred.shape[1:], bool)
    plan = xflipnslide.plan.predict_plan(pred.shape[1:], 32, 16)
    for r, c in zip(plan.rows.tolist(), plan.cols.tolist()):
        if footprint(*coefficients, r, c, 32).intersects(aoi):
            inside[max(r, 0) : r + 32, max(c, 0) : c + 32] = True
    assert np.isfinite(pred.values[0][inside]).all() and np.isnan(pred.values[0][~inside]).all()


# --- one rule each: min_valid, blend, windows outside the grid ------------------


def first_class(batch):
    return batch[:, :1]


@pytest.mark.parametrize("bad", ["a", 1.5, -0.1, float("nan"), True])
def test_min_valid_is_one_rule_for_tile_and_predict(scene, bad):
    observed = np.ones((scene.sizes["y"], scene.sizes["x"]), bool)
    masked = scene.astype("float32").assign_coords({schema.OBSERVED: (("y", "x"), observed)})
    with pytest.raises(InvalidParameterError, match=r"min_valid must be in \[0, 1\]") as a:
        masked.fns.tile(64, min_valid=bad)
    with pytest.raises(InvalidParameterError) as b:
        masked.fns.predict(first_class, tile_size=64, min_valid=bad)
    assert str(a.value) == str(b.value)


def test_blend_is_one_rule_for_untile_and_predict(scene):
    tiles = scene.fns.tile(128)
    with pytest.raises(InvalidParameterError, match="blend must be one of") as a:
        tiles.fns.untile(blend="max")
    with pytest.raises(InvalidParameterError) as b:
        scene.astype("float32").fns.predict(first_class, tile_size=64, blend="max")
    assert str(a.value) == str(b.value)


def test_windows_outside_the_grid_are_one_error_with_or_without_like(scene):
    tiles = scene.fns.tile(64)
    moved = tiles.assign_coords(row=("tile", tiles.row.values + 560))
    with pytest.raises(InvalidTilesError, match=r"\d+ tiles lie outside the 560 x 600 scene the"):
        moved.fns.untile()
    unrecorded = moved.copy()
    unrecorded.attrs = {}
    with pytest.raises(
        InvalidTilesError, match=r"\d+ tiles lie outside the 560 x 600 grid of like="
    ):
        unrecorded.fns.untile(like=scene)


# --- valid_fraction: one way on both backends -------------------------------------


@pytest.mark.parametrize("edge", ["crop", "pad"])
def test_valid_fraction_is_the_observed_share_of_each_window(backend, edge):
    rng = np.random.default_rng(7)
    shape = (90, 110)
    observed = rng.random(shape) > 0.35
    observed[:40, :50] = False  # a gap some windows mostly fall in
    scene = random_scene(rng, (2, *shape)).assign_coords({schema.OBSERVED: (("y", "x"), observed)})
    lazy = backend(scene, {"band": 1, "y": 25, "x": 40})
    with raise_if_dask_computes(0):
        tiles = lazy.fns.tile(32, edge=edge, tile_chunks=7)
    fraction = tiles[schema.VALID_FRACTION]
    assert fraction.dtype == np.float32
    assert (fraction.chunks is not None) == (backend.name == "dask")
    if backend.name == "dask":
        assert fraction.chunks == tiles.chunks[:1]
    counted = np.array(
        [observed[np.ix_(r, c)].mean() for r, c in window_sources(tiles, shape)], np.float32
    )
    np.testing.assert_array_equal(fraction.values, counted)
    with raise_if_dask_computes(1):  # min_valid computes the fractions, the mask only
        kept = lazy.fns.tile(32, edge=edge, min_valid=0.6)
    np.testing.assert_array_equal(kept[schema.VALID_FRACTION].values, counted[counted >= 0.6])
    np.testing.assert_array_equal(kept.row.values, tiles.row.values[counted >= 0.6])
