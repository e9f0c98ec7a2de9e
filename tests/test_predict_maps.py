"""predict's maps: NaN where the scene was never observed, a declared nodata
in the COG, class names, and time stacks predicted slice by slice."""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr
from conftest import raise_if_dask_computes

import xflipnslide
from xflipnslide.predict import label_map


def identity(batch):
    return batch


@pytest.fixture(scope="module")
def raw():
    return xflipnslide.open_image(xflipnslide.sample_scene_path(), chunks=None)


@pytest.fixture(scope="module")
def ready(raw):
    return raw.fns.preprocess(nodata=0)


def unobserved(raw):
    """The oracle: pixels that are 0 (no data) in some band of the file."""
    return (raw.values == 0).any(axis=0)


def test_unobserved_pixels_are_nan_and_only_they(raw, ready):
    hole = unobserved(raw)
    assert hole.sum() == 11510  # the sample's no-data corner, all bands
    out = ready.fns.predict(identity, tile_size=64).values
    np.testing.assert_array_equal(np.isnan(out), np.broadcast_to(hole, out.shape))
    kept = ready.fns.predict(identity, tile_size=64, mask=False).values
    assert np.isfinite(kept).all()
    np.testing.assert_array_equal(out[:, ~hole], kept[:, ~hole])


def test_without_a_mask_nothing_is_masked(raw):
    out = raw.astype("float32").fns.predict(identity, tile_size=64)
    assert np.isfinite(out.values).all()


def test_masking_stays_lazy(ready):
    lazy = ready.chunk({"y": 200, "x": 200})
    with raise_if_dask_computes():
        out = lazy.fns.predict(identity, tile_size=64)
    np.testing.assert_array_equal(np.isnan(out.values)[0], unobserved_of(ready))


def unobserved_of(ready):
    return ~ready.fns_observed.values


def test_cog_declares_nodata_and_class_names(tmp_path, raw, ready):
    import rasterio

    out = ready.fns.predict(identity, tile_size=64, classes=["red", "green", "blue"])
    assert out.sizes["class"] == 3 and list(out["class"].values) == ["red", "green", "blue"]
    path = tmp_path / "scores.tif"
    out.rio.to_raster(path, driver="COG")
    with rasterio.open(path) as src:
        assert np.isnan(src.nodata)
        assert src.descriptions == ("red", "green", "blue")
        masked = src.read(1, masked=True)
    np.testing.assert_array_equal(masked.mask, unobserved(raw))


def test_class_names_count_against_the_model(ready):
    with pytest.raises(xflipnslide.InvalidParameterError, match="classes=3"):
        ready.fns.predict(identity, tile_size=64, classes=["a", "b"]).values
    for bad in ("water", [], ["a", "a"]):
        with pytest.raises(xflipnslide.InvalidParameterError, match="class names"):
            ready.fns.predict(identity, tile_size=64, classes=bad)


def test_label_map_has_a_nodata_class_where_unobserved(tmp_path, raw, ready):
    import rasterio

    labels = label_map(ready.fns.predict(identity, tile_size=64))
    assert labels.dtype == np.uint8
    path = tmp_path / "labels.tif"
    labels.rio.to_raster(path, driver="COG")
    with rasterio.open(path) as src:
        assert src.nodata == 255
        values = src.read(1)
    hole = unobserved(raw)
    np.testing.assert_array_equal(values == 255, hole)
    expect = ready.values.argmax(axis=0)  # identity model: the argmax band
    np.testing.assert_array_equal(values[~hole], expect[~hole])


def test_cli_labels_cog_writes_the_nodata_class(tmp_path, raw):
    torch = pytest.importorskip("torch")
    import rasterio

    from xflipnslide.cli import main

    net = torch.jit.script(torch.nn.Identity())
    model = tmp_path / "model.pt"
    net.save(str(model))
    out = tmp_path / "labels.tif"
    src_path = xflipnslide.sample_scene_path()
    argv = ["predict", src_path, "--model", str(model), "--out", str(out), "--tile-size", "64"]
    assert main([*argv, "--labels", "--nodata", "0"]) == 0
    with rasterio.open(out) as src:
        assert src.nodata == 255 and src.dtypes == ("uint8",)
        np.testing.assert_array_equal(src.read(1) == 255, unobserved(raw))
    scores = tmp_path / "scores.tif"
    argv[argv.index(str(out))] = str(scores)
    assert main([*argv, "--nodata", "0"]) == 0
    with rasterio.open(scores) as src:
        assert np.isnan(src.nodata) and src.descriptions == ("class 0", "class 1", "class 2")
        np.testing.assert_array_equal(src.read(1, masked=True).mask, unobserved(raw))


# --- time stacks --------------------------------------------------------------


@pytest.fixture(scope="module")
def stack(raw):
    one = raw.astype("float32")
    dates = np.array(["2023-06-01", "2023-07-01"], dtype="datetime64[ns]")
    return xr.concat([one, one[::-1].assign_coords(band=one.band)], dim="time").assign_coords(
        time=dates
    )


@pytest.mark.parametrize("lazy", [False, True])
def test_time_stack_is_predicted_date_by_date(stack, lazy):
    scene = stack.chunk({"x": 300}) if lazy else stack
    with raise_if_dask_computes():
        out = scene.fns.predict(identity, tile_size=64)
    assert out.dims == ("time", "class", "y", "x")
    np.testing.assert_array_equal(out.time.values, stack.time.values)
    np.testing.assert_array_equal(out.x.values, stack.x.values)
    values = out.values
    for t in range(2):
        alone = stack.isel(time=t).fns.predict(identity, tile_size=64).values
        np.testing.assert_array_equal(values[t], alone)
        np.testing.assert_allclose(values[t], stack.isel(time=t).values, rtol=1.2e-7, atol=0)


def test_time_stack_band_first_and_observed_per_date(stack):
    seen = xr.DataArray(np.ones((2, 560, 600), bool), dims=("time", "y", "x"))
    seen[1, :10, :20] = False
    scene = stack.transpose("band", "time", "y", "x").assign_coords(fns_observed=seen)
    out = scene.fns.predict(identity, tile_size=64)
    assert out.dims == ("time", "class", "y", "x")
    values = out.values
    assert np.isfinite(values[0]).all()
    np.testing.assert_array_equal(np.isnan(values[1, 0]), ~seen.values[1])


def test_ambiguous_channel_is_still_an_error(stack):
    with pytest.raises(xflipnslide.InvalidParameterError, match="name the channel dim 'band'"):
        stack.rename(band="c").fns.predict(identity, tile_size=64)
