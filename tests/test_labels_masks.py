"""Vector labels, QA cloud masks, closest-date composites, and what tiles know
about how much of them is real (valid_fraction, min_valid, aoi)."""

from __future__ import annotations

import json
import os
import warnings

import numpy as np
import pytest
import xarray as xr
from conftest import DATA

import xflipnslide
from xflipnslide import DataDroppedWarning, InvalidParameterError
from xflipnslide.preprocess import LANDSAT_C2_QA_BITS, QA_DEFAULTS, SENTINEL2_SCL_CLASSES

gpd = pytest.importorskip("geopandas")
POLYGONS = os.path.join(DATA, "landsat8", "LC08_L1TP_224078_20200518_20200518_01_RT_polygons.gpkg")
CLASSES = {"water": 1, "crop": 2, "tree": 3, "developed": 4}


@pytest.fixture(scope="module")
def image():
    return xflipnslide.open_image(
        os.path.join(DATA, "landsat8", "LC08_L1TP_224078_20200518_labels_area_RGB.tif"),
        chunks=None,
    ).load()


@pytest.fixture(scope="module")
def polygons():
    gdf = gpd.read_file(POLYGONS)
    return gdf.assign(cls=gdf.name.map(CLASSES))


# --- rasterize ---------------------------------------------------------------


def test_rasterize_equals_rasterio_on_the_same_transform(image, polygons, backend):
    from rasterio.features import rasterize

    like = backend(image, {"y": 100, "x": 90})
    label = xflipnslide.rasterize(polygons, like, column="cls")
    assert label.dims == ("y", "x") and label.dtype == np.uint8
    assert (label.chunks is not None) == (backend.name == "dask")
    expected = rasterize(
        zip(polygons.geometry, polygons.cls),
        out_shape=image.shape[1:],
        transform=image.rio.transform(),
        dtype="uint8",
    )
    np.testing.assert_array_equal(label.values, expected)
    assert set(np.unique(expected)) == {0, 1, 2, 3, 4}
    assert label.rio.crs == image.rio.crs
    np.testing.assert_array_equal(label.x.values, image.x.values)


def test_rasterize_reprojects_and_reads_paths(image, polygons, tmp_path):
    from rasterio.features import rasterize

    path = tmp_path / "wgs84.gpkg"
    polygons.to_crs(4326).to_file(path)
    label = xflipnslide.rasterize(str(path), image, column="cls")
    back = gpd.read_file(path).to_crs(image.rio.crs)
    expected = rasterize(
        zip(back.geometry, back.cls),
        out_shape=image.shape[1:],
        transform=image.rio.transform(),
        dtype="uint8",
    )
    np.testing.assert_array_equal(label.values, expected)
    burned = xflipnslide.rasterize(polygons, image, burn=7, all_touched=True)
    assert set(np.unique(burned.values)) == {0, 7}
    assert (burned.values > 0).sum() >= (label.values > 0).sum()


def test_rasterize_refuses_what_it_would_cast(image, polygons):
    with pytest.raises(InvalidParameterError, match="labels must be numbers"):
        xflipnslide.rasterize(polygons, image, column="name")
    with pytest.raises(InvalidParameterError, match="do not fit dtype uint8"):
        xflipnslide.rasterize(polygons.assign(cls=polygons.cls * 100), image, column="cls")
    with pytest.raises(InvalidParameterError, match="not in the vector data"):
        xflipnslide.rasterize(polygons, image, column="nope")


def test_rasterize_without_geopandas_names_the_extra(monkeypatch, image):
    import sys

    monkeypatch.setitem(sys.modules, "geopandas", None)
    with pytest.raises(ImportError, match=r'pip install "xflipnslide\[vector\]"'):
        xflipnslide.rasterize("x.gpkg", image)


# --- QA masks -------------------------------------------------------------------


def test_landsat_qa_bits_match_the_stac_bitfields():
    with open(os.path.join(DATA, "stac", "landsat-c2-l2-pc.json")) as f:
        fields = json.load(f)[0]["assets"]["qa_pixel"]["classification:bitfields"]
    single = {f["offset"]: f["name"] for f in fields if f["length"] == 1}
    assert single == LANDSAT_C2_QA_BITS
    assert [LANDSAT_C2_QA_BITS[b] for b in QA_DEFAULTS["landsat-c2"]] == [
        "fill",
        "dilated_cloud",
        "cirrus",
        "cloud",
        "cloud_shadow",
        "snow",
    ]


@pytest.mark.parametrize("bit", range(16))
def test_landsat_bit_patterns(bit, backend):
    qa = xr.DataArray(np.array([[1 << bit, 0]], "uint16"), dims=("y", "x"))
    scene = backend(xr.DataArray(np.ones((2, 1, 2), "uint16"), dims=("band", "y", "x")))
    out = xflipnslide.mask_clouds(scene, qa, product="landsat-c2").values
    assert out.dtype == np.float32
    assert np.isnan(out[:, 0, 0]).all() == (bit <= 5)  # bits 0-5 are masked by default
    assert not np.isnan(out[:, 0, 1]).any()
    # cloud confidence high (bits 8-9 = 3) alone is not masked; ask for it by name
    named = xflipnslide.mask_clouds(scene, qa, product="landsat-c2", mask=["water"]).values
    assert np.isnan(named[:, 0, 0]).all() == (bit == 7)


@pytest.mark.parametrize("value", range(12))
def test_sentinel2_scl_classes(value):
    qa = xr.DataArray(np.array([[value, 4]], "uint8"), dims=("y", "x"))
    scene = xr.DataArray(np.ones((1, 1, 2), "float32"), dims=("band", "y", "x"))
    out = xflipnslide.mask_clouds(scene, qa, product="sentinel-2-l2a").values
    assert np.isnan(out[0, 0, 0]) == (value in (0, 1, 3, 8, 9, 10))
    snow = xflipnslide.mask_clouds(
        scene, qa, product="sentinel-2-l2a", mask=[*QA_DEFAULTS["sentinel-2-l2a"], "snow"]
    ).values
    assert np.isnan(snow[0, 0, 0]) == (value in (0, 1, 3, 8, 9, 10, 11))
    assert SENTINEL2_SCL_CLASSES[value]
    with pytest.raises(InvalidParameterError, match="mask= for 'sentinel-2-l2a'"):
        xflipnslide.mask_clouds(scene, qa, product="sentinel-2-l2a", mask=["clouds"])


def test_load_stac_masks_clouds_with_the_qa_asset(tmp_path):
    pytest.importorskip("odc.stac")
    import pystac
    import rioxarray
    from stac_items import landsat_crop, make_item

    ref = rioxarray.open_rasterio(landsat_crop("77", "B4"))
    qa = np.zeros(ref.shape, "uint16")
    qa[0, :10, :] = 1 << 3  # cloud
    qa[0, 10:20, :] = 1 << 6  # clear
    path = tmp_path / "qa.tif"
    ref.copy(data=qa).rio.to_raster(path)
    item = make_item("77")
    item.collection_id = "landsat-c2-l2"
    asset = pystac.Asset(href=str(path), media_type=pystac.MediaType.COG, roles=["data"])
    asset.extra_fields["proj:epsg"] = 32621
    for key in ("proj:shape", "proj:transform"):
        asset.extra_fields[key] = item.assets["red"].extra_fields[key]
    item.add_asset("qa_pixel", asset)
    scene = xflipnslide.load_stac(items=[item], bands=["red"], sign=False, mask_clouds=True)
    assert list(scene.band.values) == ["red"]
    values = scene.isel(time=0, band=0).values
    plain = xflipnslide.load_stac(items=[item], bands=["red"], sign=False)
    assert np.isnan(values[:10]).all()
    np.testing.assert_array_equal(values[10:], plain.isel(time=0, band=0).values[10:])


# --- nearest-date composite -------------------------------------------------------


def test_nearest_date_composite_equals_a_per_pixel_loop(backend):
    rng = np.random.default_rng(0)
    times = np.array(["2023-06-01", "2023-06-20", "2023-06-10", "2023-06-29"], "datetime64[ns]")
    data = rng.random((4, 2, 30, 30)).astype("float32")
    data[rng.random(data.shape) < 0.4] = np.nan
    data[:, :, 0, 0] = np.nan  # never observed
    scene = xr.DataArray(data, dims=("time", "band", "y", "x"), coords={"time": times})
    ref = np.datetime64("2023-06-15")
    out = backend(scene).fns.preprocess(
        reduce="nearest", reference="2023-06-15", fill=None, standardize=False
    )
    expected = np.full(data.shape[1:], np.nan, "float32")
    gaps = np.abs((times - ref).astype(np.int64))
    order = sorted(range(4), key=lambda t: (gaps[t], times[t]))  # ties: the earlier
    assert order[:2] == [2, 1]  # 5 days before beats 5 days after
    for idx in np.ndindex(data.shape[1:]):
        for t in order:
            if not np.isnan(data[(t, *idx)]):
                expected[idx] = data[(t, *idx)]
                break
    np.testing.assert_array_equal(out.values, expected)
    with pytest.raises(InvalidParameterError, match="needs reference"):
        scene.fns.preprocess(reduce="nearest")


# --- valid_fraction, min_valid, aoi ----------------------------------------------


def _gappy_scene():
    scene = xflipnslide.open_image(xflipnslide.sample_scene_path(), chunks=None).load()
    data = scene.values.astype("float32")
    data[:, 100:300, 50:250] = np.nan  # a large cloud
    return scene.copy(data=data)


def _oracle_fractions(observed: np.ndarray, tiles: xr.DataArray, shape) -> np.ndarray:
    from oracle import window_sources

    return np.array([observed[np.ix_(ys, xs)].mean() for ys, xs in window_sources(tiles, shape)])


@pytest.mark.parametrize("edge", ["crop", "pad"])
def test_valid_fraction_counts_observed_pixels(backend, edge):
    scene = _gappy_scene()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", xflipnslide.XFlipNSlideWarning)
        ready = backend(scene, {"y": 200, "x": 200}).fns.preprocess(nodata=0)
        tiles = ready.fns.tile(128, edge=edge)
    observed = ~np.isnan(np.where(scene.values == 0, np.nan, scene.values)).any(0)
    np.testing.assert_array_equal(ready.fns_observed.values, observed)
    assert tiles.valid_fraction.dtype == np.float32
    oracle = _oracle_fractions(observed, tiles, scene.shape[1:])
    np.testing.assert_allclose(tiles.valid_fraction.values, oracle, rtol=1e-6)
    assert (oracle < 0.5).any() and (oracle == 1).any()


def test_no_mask_known_means_fully_valid(scene):
    tiles = scene.fns.tile(128, edge="pad")
    assert (tiles.valid_fraction.values == 1).all()


def test_min_valid_keeps_exactly_what_an_oracle_keeps(backend):
    scene = _gappy_scene()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", xflipnslide.DataFilledWarning)
        ready = backend(scene, {"y": 200, "x": 200}).fns.preprocess(nodata=0)
    full = ready.fns.tile(128, edge="pad")
    with pytest.warns(DataDroppedWarning, match="min_valid"):
        kept = ready.fns.tile(128, edge="pad", min_valid=0.9)
    want = full.valid_fraction.values >= 0.9
    np.testing.assert_array_equal(kept.row.values, full.row.values[want])
    np.testing.assert_array_equal(kept.transform.values, full.transform.values[want])
    assert kept.attrs["fns_dropped_min_valid"] == int((~want).sum())
    np.testing.assert_array_equal(kept.values, full.values[want])
    assert (kept.chunks is not None) == (backend.name == "dask")
    back = kept.fns.untile()  # still puts back
    assert back.sizes == {"band": 3, "y": 560, "x": 600}
    with pytest.raises(InvalidParameterError, match="min_valid must be in"):
        ready.fns.tile(128, min_valid=2)


def test_aoi_keeps_windows_whose_footprint_intersects(scene, backend):
    shapely = pytest.importorskip("shapely")
    lazy = backend(scene)
    x0, y0 = float(scene.x[100]), float(scene.y[100])
    aoi = shapely.box(x0, y0 - 3000, x0 + 3000, y0)  # 100 x 100 px
    with pytest.warns(DataDroppedWarning, match="aoi"):
        kept = lazy.fns.tile(64, edge="pad", aoi=aoi)
    full = scene.fns.tile(64, edge="pad")
    from xflipnslide.georef import scene_transform, window_bounds

    bounds = window_bounds(scene_transform(scene, ("y", "x")), full.row, full.col, 64)
    boxes = shapely.box(*bounds.T)
    want = np.asarray(shapely.intersects(boxes, aoi))
    np.testing.assert_array_equal(kept.row.values, full.row.values[want])
    np.testing.assert_array_equal(kept.values, full.values[want])
    # the same area in lon/lat
    import pyproj

    t = pyproj.Transformer.from_crs(scene.rio.crs, 4326, always_xy=True)
    geo = shapely.transform(aoi, lambda xy: np.column_stack(t.transform(xy[:, 0], xy[:, 1])))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DataDroppedWarning)
        again = scene.fns.tile(64, edge="pad", aoi=shapely.geometry.mapping(geo), aoi_crs=4326)
    assert abs(again.sizes["tile"] - kept.sizes["tile"]) <= 4


def test_heavy_masking_and_suspicious_nodata_warn():
    rng = np.random.default_rng(0)
    data = rng.normal(0, 1, (1, 50, 50)).astype("float32")
    data[:, :, :20] = np.nan  # 40 % missing
    scene = xr.DataArray(data, dims=("band", "y", "x"))
    with pytest.warns(DataDroppedWarning, match="more than a quarter"):
        scene.fns.preprocess(fill=None, standardize=False)
    with pytest.warns(xflipnslide.DataFilledWarning, match="min_valid"):
        scene.fns.preprocess()
    ints = xr.DataArray(rng.integers(-5, 6, (1, 50, 50)).astype("int16"), dims=("band", "y", "x"))
    with pytest.warns(DataDroppedWarning, match="inside the range of the other values"):
        ints.fns.preprocess(nodata=0, fill=None, standardize=False)
    edge = ints.where(ints >= 0, 0)  # 0 is the minimum: not suspicious
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        edge.fns.preprocess(nodata=0, fill=None, standardize=False)
    assert not any("inside the range" in str(w.message) for w in seen)
