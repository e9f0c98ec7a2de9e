"""preprocess and mask_clouds never change data behind the user's back: a QA
layer is never joined onto the scene, labels are never z-scored, recorded
statistics are found wherever preprocess wrote them, a dask gap fill says how
much it invented, and every graph layer is named by what fixes its values."""

from __future__ import annotations

import os
import warnings

import dask
import numpy as np
import pytest
import xarray as xr
from affine import Affine
from conftest import raise_if_dask_computes

import xflipnslide
from xflipnslide import DataDroppedWarning, DataFilledWarning, InvalidParameterError
from xflipnslide.preprocess import read_stats

SHARED = "/work/shared/data/landsat8"
CLEAR, CLOUD = 21824, 22280  # real QA_PIXEL values: clear land; cloud, high confidence


@pytest.fixture
def qa_of(scene):
    """A Landsat QA_PIXEL on the sample scene's grid: clear, a cloudy block."""
    values = np.full(scene.shape[1:], CLEAR, np.uint16)
    values[100:200, 50:150] = CLOUD
    return xr.DataArray(
        values, dims=("y", "x"), coords={"y": scene.y, "x": scene.x, "spatial_ref": 0}
    )


# --- 8: the QA lies on the scene's grid, and is the product's ----------------------


@pytest.mark.parametrize(("shift", "pixels"), [(30.0, "+1"), (15.0, "+0.5"), (-45.0, "-1.5")])
def test_qa_off_the_scene_grid_is_refused_naming_the_offset(scene, qa_of, shift, pixels):
    off = qa_of.assign_coords(x=qa_of.x + shift)  # the sample's pixels are 30 m
    with pytest.raises(InvalidParameterError, match=rf"offset .* by \{pixels} pixels") as err:
        xflipnslide.mask_clouds(scene, off)
    assert "reproject_match" in str(err.value)
    with pytest.raises(InvalidParameterError, match="'y' coordinates are offset"):
        xflipnslide.mask_clouds(scene, qa_of.assign_coords(y=qa_of.y - 30.0))
    with pytest.raises(InvalidParameterError, match="559 values along 'y'"):
        xflipnslide.mask_clouds(scene, qa_of.isel(y=slice(1, None)))


def test_qa_on_the_grid_masks_exactly_its_flags(scene, qa_of, backend):
    out = xflipnslide.mask_clouds(backend(scene), backend(qa_of))
    assert out.sizes == scene.sizes
    values = out.values
    assert np.isnan(values[:, 100:200, 50:150]).all()
    np.testing.assert_array_equal(values[:, :100], scene.values[:, :100].astype(np.float32))
    # without coordinates: the same shape, and the same recorded transform if any
    plain = xr.DataArray(qa_of.values, dims=("y", "x"))
    np.testing.assert_array_equal(xflipnslide.mask_clouds(scene, plain).values, values)
    transform = scene.rio.transform()
    bare = scene.drop_vars(["x", "y"]).rio.write_transform(transform)
    moved = plain.rio.write_transform(transform * Affine.translation(1, 0))  # a column east
    with pytest.raises(InvalidParameterError, match=r"\+1 columns off"):
        xflipnslide.mask_clouds(bare, moved)
    same = plain.rio.write_transform(transform)
    np.testing.assert_array_equal(xflipnslide.mask_clouds(bare, same).values, values)


def test_qa_band_and_time_labels_never_drop_scene_bands_or_times(scene, qa_of):
    two = xr.concat([qa_of, qa_of], dim="band").assign_coords(band=["red", "green"])
    with pytest.raises(InvalidParameterError, match="2 values along 'band'"):
        xflipnslide.mask_clouds(scene, two)
    other = xr.concat([qa_of] * 3, dim="band").assign_coords(band=["red", "green", "nir"])
    with pytest.raises(InvalidParameterError, match=r"labelled .* along 'band'"):
        xflipnslide.mask_clouds(scene, other)
    same = xr.concat([qa_of] * 3, dim="band").assign_coords(band=["red", "green", "blue"])
    out = xflipnslide.mask_clouds(scene, same)
    assert list(out.band.values) == ["red", "green", "blue"]
    assert np.isnan(out.values[:, 150, 100]).all()
    one = qa_of.expand_dims(band=["qa_pixel"])  # a QA read with open_image: its band goes
    assert xflipnslide.mask_clouds(scene, one).sizes == scene.sizes
    times = np.array(["2020-05-18", "2020-06-03"], dtype="datetime64[ns]")
    stack = xr.concat([scene, scene], dim="time").assign_coords(time=times)
    qas = xr.concat([qa_of, qa_of], dim="time").assign_coords(time=times + np.timedelta64(1, "D"))
    with pytest.raises(InvalidParameterError, match="along 'time'"):
        xflipnslide.mask_clouds(stack, qas)


def test_the_other_products_qa_is_refused_or_warned(scene, qa_of, backend):
    scl = xr.DataArray(np.full(scene.shape[1:], 4, np.uint8), dims=("y", "x"))  # vegetation
    scl[:50] = 9  # cloud high probability
    # SCL read as Landsat bits: uint8 cannot be QA_PIXEL (dtype: refused at once)
    with pytest.raises(InvalidParameterError, match="product='sentinel-2-l2a'"):
        xflipnslide.mask_clouds(backend(scene), backend(scl), product="landsat-c2")
    # SCL stored as uint16 (bits would mask 100 %): warned when the values are read
    wide = backend(scl.astype(np.uint16))
    if backend.name == "dask":
        with raise_if_dask_computes(), warnings.catch_warnings():
            warnings.simplefilter("error", DataDroppedWarning)
            lazy = xflipnslide.mask_clouds(backend(scene), wide, product="landsat-c2")
        with pytest.warns(DataDroppedWarning, match="Sentinel-2 SCL"):
            lazy.compute()
    else:
        with pytest.warns(DataDroppedWarning, match="Sentinel-2 SCL"):
            xflipnslide.mask_clouds(scene, wide, product="landsat-c2")
    # Landsat QA_PIXEL read as SCL: values above 11 are refused
    landsat = backend(qa_of.drop_vars(["x", "y"]))
    with pytest.raises(InvalidParameterError, match="values from 21824 to"):
        xflipnslide.mask_clouds(backend(scene), landsat, product="sentinel-2-l2a").compute()
    # and the right product masks what it flags
    ok = xflipnslide.mask_clouds(scene, scl, product="sentinel-2-l2a").values
    assert np.isnan(ok[:, :50]).all() and not np.isnan(ok[:, 50:]).any()


def test_float_qa_must_hold_whole_numbers(scene, qa_of, backend):
    # as odc-stac loads an asset without a declared data type: float, NaN for no data
    as_float = qa_of.astype(np.float32).where(qa_of.x > qa_of.x[10])
    out = xflipnslide.mask_clouds(backend(scene), backend(as_float)).values
    assert np.isnan(out[:, :, :11]).all()  # NaN: no data, as the fill bit
    assert np.isnan(out[:, 100:200, 50:150]).all()
    assert not np.isnan(out[:, :100, 11:]).any()
    resampled = as_float + 0.25  # interpolated flags are no flags
    with pytest.raises(InvalidParameterError, match="whole numbers"):
        xflipnslide.mask_clouds(backend(scene), backend(resampled)).compute()
    with pytest.raises(InvalidParameterError, match="dtype bool"):
        xflipnslide.mask_clouds(scene, qa_of == CLOUD)


# --- 15: a string mask is one name --------------------------------------------------


def test_string_mask_is_one_name(scene, qa_of):
    one = xflipnslide.mask_clouds(scene, qa_of, mask="cloud").values
    listed = xflipnslide.mask_clouds(scene, qa_of, mask=["cloud"]).values
    np.testing.assert_array_equal(one, listed)
    assert np.isnan(one[:, 150, 100]).all() and not np.isnan(one[:, 0, 0]).any()
    np.testing.assert_array_equal(xflipnslide.mask_clouds(scene, qa_of, mask=3).values, one)
    with pytest.raises(InvalidParameterError, match="got 'clouds'") as err:
        xflipnslide.mask_clouds(scene, qa_of, mask="clouds")
    assert "'cloud_shadow'" in str(err.value) and "'dilated_cloud'" in str(err.value)


# --- 10: integer and boolean variables are labels, whatever their dims -------------


def test_label_with_a_band_dim_is_left_alone(scene, tmp_path):
    label = np.zeros(scene.shape[1:], np.uint8)
    label[:280] = 1
    label[280:, 300:] = 3
    path = tmp_path / "label.tif"
    scene.isel(band=[0]).copy(data=label[None]).rio.to_raster(path)
    opened = xflipnslide.open_image(path, chunks=None).load()  # (band: 1, y, x) uint8
    assert opened.sizes["band"] == 1 and opened.dtype == np.uint8
    bands = scene.astype(np.float32).to_dataset("band")  # red, green, blue on (y, x)
    ds = bands.assign(label=opened, cloud=(("time", "y", "x"), (label == 3)[None]))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DataFilledWarning)
        out = ds.fns.preprocess(nodata=0)
    assert out.label.dtype == np.uint8 and out.cloud.dtype == bool
    np.testing.assert_array_equal(out.label.values[0], label)
    np.testing.assert_array_equal(out.cloud.values[0], label == 3)
    assert "label_fns_mean" not in out.coords and "red_fns_mean" in out.coords
    # the package's image variable is the image, whatever its dtype
    image = xr.Dataset({"image": scene, "label": opened.isel(band=0, drop=True)})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DataFilledWarning)
        done = image.fns.preprocess(nodata=0)
    assert done.image.dtype == np.float32 and done.label.dtype == np.uint8


# --- 11: statistics are read back from tiles, scenes and Datasets -------------------


def test_stats_reused_from_dataset_tiles_scene_and_zarr(scene, tmp_path):
    train, test = scene.isel(x=slice(0, 300)), scene.isel(x=slice(300, None))
    raw = np.where(train.values == 0, np.nan, train.values.astype(np.float64))
    mean, std = np.nanmean(raw, axis=(1, 2)), np.nanstd(raw, axis=(1, 2))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", xflipnslide.XFlipNSlideWarning)
        filled = test.fns.preprocess(nodata=0, standardize=False).values
        expected = (filled - mean[:, None, None]) / std[:, None, None]
        ready = xr.Dataset({"image": train}).fns.preprocess(nodata=0)
        tiles = ready.fns.tile(128)
        tiles.to_zarr(tmp_path / "tiles.zarr")
        reopened = xr.open_zarr(tmp_path / "tiles.zarr")
        sources = {
            "dataset": ready,
            "dataset tiles": tiles,
            "tiles from zarr": reopened,
            "a tiled variable": reopened["image"],
            "scene": train.fns.preprocess(nodata=0),
        }
        for what, stats in sources.items():
            one = test.fns.preprocess(nodata=0, stats=stats)
            np.testing.assert_allclose(one.values, expected, rtol=1e-5, atol=1e-5, err_msg=what)
            other = xr.Dataset({"img": test.astype(np.float32)}).fns.preprocess(
                nodata=0, stats=stats
            )
            np.testing.assert_allclose(other.img.values, expected, rtol=1e-5, atol=1e-5)
            got = read_stats(stats)
            np.testing.assert_allclose(got["mean"].values, mean, err_msg=what)
            np.testing.assert_allclose(got["std"].values, std, err_msg=what)
    # several variables' statistics: by name, never one variable's for another
    two = xr.Dataset({"a": train.astype(np.float32), "b": train.astype(np.float32) * 2})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", xflipnslide.XFlipNSlideWarning)
        both = two.fns.preprocess(nodata=0)
    np.testing.assert_allclose(read_stats(both, "b")["mean"].values, 2 * mean)
    with pytest.raises(InvalidParameterError, match=r"\['a', 'b'\].*read_stats\(obj, 'a'\)"):
        test.fns.preprocess(nodata=0, stats=both)
    renamed = xr.Dataset({"a": test.astype(np.float32), "c": test.astype(np.float32)})
    with pytest.raises(InvalidParameterError, match="none of them 'c'"):
        renamed.fns.preprocess(nodata=0, stats=both)
    with pytest.raises(InvalidParameterError, match="fns_mean"):
        read_stats(scene)


# --- 12: a dask gap fill says how much it invented, when computed -------------------


def _shares(raw: np.ndarray, bands) -> str:
    return ", ".join(f"band={b}: {m:.1%}" for b, m in zip(bands, (raw == 0).mean(axis=(1, 2))))


@pytest.mark.parametrize("scheduler", ["threads", "synchronous"])
def test_dask_fill_warns_on_compute_with_the_filled_share(scene, scheduler):
    lazy = scene.chunk({"y": 200, "x": 256})
    with raise_if_dask_computes(), warnings.catch_warnings():
        warnings.simplefilter("error", DataFilledWarning)  # nothing is said before compute
        ready = lazy.fns.preprocess(nodata=0, reach=64)
        tiles = ready.fns.tile(64, edge="pad")
    expected = _shares(scene.values, scene.band.values)  # 3.4 % of each band: zeros
    with pytest.warns(DataFilledWarning, match=expected), dask.config.set(scheduler=scheduler):
        out = ready.compute()
    assert not np.isnan(out.values).any()
    # readable without warnings (a distributed worker's warnings stay there)
    share = float(1 - out.fns_observed.mean())
    assert share == pytest.approx(float((scene.values == 0).any(axis=0).mean()))
    with pytest.warns(DataFilledWarning, match="band=red"):
        tiles.compute(scheduler=scheduler)


@pytest.mark.skipif(not os.path.isdir(SHARED), reason="shared Landsat 8 scenes absent")
def test_dask_fill_of_a_full_landsat_scene_warns_its_share():
    path = os.path.join(SHARED, "LC08_L1TP_224078_20200518_20200518_01_RT_B2.TIF")
    lazy = xflipnslide.open_image(path, chunks={"band": -1, "y": 1024, "x": 1024})
    raw = lazy.values
    expected = _shares(raw, lazy.band.values)
    assert expected.endswith("16.5%")  # the nodata collar of this scene
    with raise_if_dask_computes():
        ready = lazy.fns.preprocess(nodata=0, standardize=False)
    with pytest.warns(DataFilledWarning, match=expected):
        ready.compute()


# --- 6: graph layers are named by everything that fixes their values ----------------


def test_preprocess_graphs_with_different_options_computed_together(scene, qa_of):
    lazy = scene.chunk({"y": 200, "x": 256})
    qa = qa_of.chunk({"y": 200, "x": 256})
    options = [
        {"nodata": 0},
        {"nodata": 0, "fill": None},
        {"nodata": 6500},
        {"nodata": 0, "reach": 32},
        {"nodata": 0, "standardize": False},
        {"nodata": 0, "stats": {"mean": 7000.0, "std": 500.0}},
        {"nodata": 0, "stats": {"mean": 6000.0, "std": 500.0}},
    ]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", xflipnslide.XFlipNSlideWarning)
        outs = [lazy.fns.preprocess(**kw) for kw in options]
        outs += [
            xflipnslide.mask_clouds(lazy, qa, mask=m).fns.preprocess(nodata=0)
            for m in (["cloud"], ["clear"])
        ]
        together = dask.compute(*outs)
        for out, joint in zip(outs, together):
            alone = out.compute()
            np.testing.assert_array_equal(joint.values, alone.values)
            np.testing.assert_array_equal(joint.fns_observed.values, alone.fns_observed.values)
    layers = [set(out.data.__dask_graph__().layers) for out in outs]
    ours = [{k for k in keys if k.startswith("fns-")} for keys in layers]
    assert all(ours), "every preprocess graph has named fill/stats/standardize layers"
    # the same call gives the same names (deterministic), another gives its own
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", xflipnslide.XFlipNSlideWarning)
        again = lazy.fns.preprocess(nodata=0)
    assert again.data.name == outs[0].data.name
    assert len({out.data.name for out in outs}) == len(outs)
