"""preprocess() against numpy/scipy oracles, on numpy and dask."""

from __future__ import annotations

import logging
import warnings

import numpy as np
import pytest
import xarray as xr
from hypothesis import given
from hypothesis import strategies as st
from scipy import ndimage

import xflipnslide
from xflipnslide import AllMissingError, FillReachError, FillReachWarning, InvalidParameterError


def gappy(rng, shape, frac=0.2, blobs=True):
    """Random float data with NaN gaps: scattered pixels plus cloud-like blobs."""
    data = rng.random(shape)
    mask = rng.random(shape) < frac / 2
    if blobs:
        for idx in np.ndindex(shape[:-2]):
            for _ in range(3):
                h, w = shape[-2:]
                cy, cx, r = (
                    rng.integers(0, h),
                    rng.integers(0, w),
                    rng.integers(1, max(2, min(h, w) // 4)),
                )
                yy, xx = np.ogrid[:h, :w]
                mask[idx] |= (yy - cy) ** 2 + (xx - cx) ** 2 <= r * r
    data[mask] = np.nan
    for idx in np.ndindex(shape[:-2]):  # at least one valid pixel per band
        if np.isnan(data[idx]).all():
            data[idx][0, 0] = 0.5
    return data


def assert_nearest_fill(filled, original):
    """Each gap holds the value of a valid pixel at the exact nearest distance
    (the distance from scipy's EDT; any of the tied pixels will do)."""
    assert not np.isnan(filled).any()
    for idx in np.ndindex(original.shape[:-2]):
        src, out = original[idx], filled[idx]
        valid = ~np.isnan(src)
        np.testing.assert_array_equal(out[valid], src[valid])
        dist = ndimage.distance_transform_edt(~valid)
        for i, j in zip(*np.nonzero(~valid)):
            r = int(np.ceil(dist[i, j]))
            y0, x0 = max(i - r, 0), max(j - r, 0)
            win, ok = src[y0 : i + r + 1, x0 : j + r + 1], valid[y0 : i + r + 1, x0 : j + r + 1]
            yy, xx = np.nonzero(ok)
            d = np.hypot(yy + y0 - i, xx + x0 - j)
            ties = np.abs(d - dist[i, j]) < 1e-9
            assert out[i, j] in win[yy[ties], xx[ties]], (idx, i, j)


def scene_of(data, dims=("band", "y", "x")):
    return xr.DataArray(data, dims=dims, coords={dims[0]: [f"b{i}" for i in range(data.shape[0])]})


def test_fill_is_exact_nearest(backend):
    data = gappy(np.random.default_rng(0), (2, 40, 50))
    out = backend(scene_of(data), {"y": 13, "x": 17}).fns.preprocess(standardize=False)
    assert_nearest_fill(out.values, data)


def test_fill_with_spatial_dims_first(backend):
    """Bands last, ``(y, x, band)``: the dask fill once put its ``(band, y, x)``
    data back into a ``(y, x, band)`` array (a ValueError, or, when all three
    sizes are equal, values silently in the wrong places)."""
    for shape in [(3, 12, 14), (8, 8, 8)]:
        data = gappy(np.random.default_rng(7), shape)
        scene = xr.DataArray(np.moveaxis(data, 0, -1), dims=("y", "x", "band"))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", xflipnslide.XFlipNSlideWarning)
            out = backend(scene, {"y": 3, "x": 5}).fns.preprocess(standardize=False)
            values = out.transpose("band", "y", "x").values
        assert_nearest_fill(values, data)


@given(
    h=st.integers(2, 45),
    w=st.integers(2, 45),
    cy=st.integers(1, 45),
    cx=st.integers(1, 45),
    frac=st.sampled_from([0.05, 0.3, 0.6]),
    seed=st.integers(0, 2**16),
)
def test_dask_fill_equals_exact_for_any_chunking(h, w, cy, cx, frac, seed):
    data = gappy(np.random.default_rng(seed), (1, h, w), frac)
    da_ = scene_of(data).chunk({"y": min(cy, h), "x": min(cx, w)})
    with warnings.catch_warnings():
        warnings.simplefilter("error", FillReachWarning)  # within reach: exact, no warning
        out = da_.fns.preprocess(standardize=False, reach=64).values
    assert_nearest_fill(out, data)


def test_beyond_reach_warns_fills_everything_or_raises():
    data = np.full((1, 60, 60), np.nan)
    data[0, 0, 0] = 1.0
    data[0, 59, 59] = 3.0
    lazy = scene_of(data).chunk({"y": 20, "x": 20})
    with pytest.warns(FillReachWarning, match="reach=4"):
        out = lazy.fns.preprocess(standardize=False, reach=4).values
    assert not np.isnan(out).any()
    # where a block and its halo hold no valid pixel, the band mean is used
    assert out[0, 30, 30] == pytest.approx(2.0)
    with pytest.raises(FillReachError, match="reach=4"):
        lazy.fns.preprocess(standardize=False, reach=4, strict=True).compute()
    # numpy is global and exact, whatever the gap
    exact = scene_of(data).fns.preprocess(standardize=False).values
    assert_nearest_fill(exact, data)


@pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning")
def test_all_missing_band_is_an_error_naming_it(backend):
    data = gappy(np.random.default_rng(1), (3, 20, 20))
    data[1] = np.nan
    with pytest.raises(AllMissingError, match="band=b1"):
        backend(scene_of(data)).fns.preprocess().compute()


def test_standardisation_matches_numpy(backend):
    rng = np.random.default_rng(2)
    data = (rng.random((3, 30, 40)) * [[[10.0]], [[200.0]], [[3000.0]]]).astype("float32")
    out = backend(scene_of(data)).fns.preprocess()
    assert out.dtype == np.float32
    d64 = data.astype(np.float64)
    mean, std = d64.mean(axis=(1, 2)), d64.std(axis=(1, 2))
    np.testing.assert_allclose(
        out.values, (d64 - mean[:, None, None]) / std[:, None, None], atol=1e-5
    )
    np.testing.assert_allclose(out.fns_mean.values, mean)
    np.testing.assert_allclose(out.fns_std.values, std)


def test_statistics_are_over_observed_pixels(backend):
    data = gappy(np.random.default_rng(7), (2, 30, 30))
    out = backend(scene_of(data), {"y": 10, "x": 10}).fns.preprocess()
    np.testing.assert_allclose(out.fns_mean.values, np.nanmean(data, axis=(1, 2)))
    np.testing.assert_allclose(out.fns_std.values, np.nanstd(data, axis=(1, 2)))
    filled = scene_of(data).fns.preprocess(standardize=False).values
    expected = (filled - np.nanmean(data, axis=(1, 2))[:, None, None]) / np.nanstd(
        data, axis=(1, 2)
    )[:, None, None]
    np.testing.assert_allclose(out.values, expected, rtol=1e-5, atol=1e-5)


def test_zero_variance_band_is_centred():
    data = np.ones((2, 10, 10), "float32")
    data[1] = np.arange(100).reshape(10, 10)
    out = scene_of(data).fns.preprocess()
    np.testing.assert_array_equal(out.values[0], 0.0)
    assert out.fns_std.values[0] == 0.0


def test_time_median_and_mean_with_chunked_time(backend, caplog):
    rng = np.random.default_rng(3)
    data = rng.random((5, 2, 16, 18))
    data[rng.random(data.shape) < 0.3] = np.nan
    data[:, :, 0, 0] = np.nan  # no valid time: filled afterwards
    da_ = xr.DataArray(data, dims=("time", "band", "y", "x"))
    da_ = backend(da_, {"time": 2, "y": 8, "x": 9})
    with caplog.at_level(logging.INFO, logger="xflipnslide"):
        med = da_.fns.preprocess(fill=None, standardize=False)
    assert med.dims == ("band", "y", "x")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        np.testing.assert_allclose(med.values, np.nanmedian(data, axis=0))
        mean = da_.fns.preprocess(reduce="mean", fill=None, standardize=False)
        np.testing.assert_allclose(mean.values, np.nanmean(data, axis=0))
    if backend.name == "dask":
        assert "rechunking 'time'" in caplog.text
    kept = da_.fns.preprocess(reduce=None, standardize=False)
    assert kept.dims == ("time", "band", "y", "x") and not np.isnan(kept.values).any()


def test_nodata_sources_and_dtypes(caplog):
    raw = np.array([[[0, 5, 7], [9, 0, 2], [4, 4, 1]]], dtype="uint16")
    da_ = xr.DataArray(raw, dims=("band", "y", "x"))
    with caplog.at_level(logging.INFO, logger="xflipnslide"):
        out = da_.fns.preprocess(nodata=0, fill=None, standardize=False)  # no fill: no warning
    assert out.dtype == np.float32
    assert np.isnan(out.values[0, 0, 0]) and np.isnan(out.values[0, 1, 1])
    assert "masked 2 pixels equal to 0" in caplog.text
    # from the _FillValue attr (as rioxarray leaves it when not masking)
    attr = da_.assign_attrs(_FillValue=9).fns.preprocess(fill=None, standardize=False)
    assert np.isnan(attr.values[0, 1, 0]) and "_FillValue" not in attr.attrs
    # from rioxarray's nodata
    rio = da_.rio.write_nodata(7).fns.preprocess(fill=None, standardize=False)
    assert np.isnan(rio.values[0, 0, 2])
    # float64 stays float64 when not standardised
    assert da_.astype("float64").fns.preprocess(standardize=False).dtype == np.float64


def test_real_landsat_scene_with_undeclared_zero_nodata(scene, backend):
    raw = scene.values
    assert (raw == 0).any()  # Landsat's undeclared nodata
    out = backend(scene, {"y": 200, "x": 200}).fns.preprocess(nodata=0, standardize=False)
    data = np.where(raw == 0, np.nan, raw.astype(np.float32))
    assert_nearest_fill(out.values, data)
    assert out.rio.crs == scene.rio.crs


def test_stats_from_training_scene_and_from_zarr(tmp_path, scene):
    train = scene.isel(x=slice(0, 300)).fns.preprocess(nodata=0)
    test = scene.isel(x=slice(300, None))
    with_train = test.fns.preprocess(nodata=0, stats=train)
    own = test.fns.preprocess(nodata=0)
    np.testing.assert_allclose(with_train.fns_mean.values, train.fns_mean.values)
    filled = test.fns.preprocess(nodata=0, standardize=False)
    expected = (filled - train.fns_mean) / train.fns_std
    np.testing.assert_allclose(with_train.values, expected.values, rtol=1e-5, atol=1e-5)
    assert not np.allclose(with_train.values, own.values)
    # the statistics survive Zarr (and tiling), and are accepted from there
    train.fns.tile(128).to_dataset(name="t").to_zarr(tmp_path / "train.zarr")
    reloaded = xr.open_zarr(tmp_path / "train.zarr")["t"]
    again = test.fns.preprocess(nodata=0, stats=reloaded)
    np.testing.assert_allclose(again.values, with_train.values)
    reordered = test.fns.preprocess(nodata=0, stats=train.isel(band=[2, 0, 1]))
    np.testing.assert_allclose(reordered.values, with_train.values)
    with pytest.raises(InvalidParameterError, match="same bands"):
        test.fns.preprocess(nodata=0, stats=train.assign_coords(band=["a", "b", "c"]))
    mapping = test.fns.preprocess(
        nodata=0, stats={"mean": train.fns_mean.values, "std": train.fns_std.values}
    )
    np.testing.assert_allclose(mapping.values, with_train.values)


def test_dataset_of_band_variables():
    rng = np.random.default_rng(4)
    ds = xr.Dataset(
        {
            "red": (("y", "x"), gappy(rng, (1, 20, 20))[0]),
            "blue": (("y", "x"), rng.random((20, 20))),
        }
    )
    ds["label"] = ("k", [1, 2])
    out = ds.fns.preprocess()
    assert out.red.dtype == np.float32 and not out.red.isnull().any()
    assert float(out.blue.mean()) == pytest.approx(0.0, abs=1e-6)
    xr.testing.assert_identical(out.label, ds.label.assign_coords(out.label.coords))
    assert {"red_fns_mean", "blue_fns_std"} <= set(out.coords)
    again = ds.fns.preprocess(stats=out)
    np.testing.assert_allclose(again.red.values, out.red.values)


def test_lazy_nothing_computed(no_compute):
    rng = np.random.default_rng(5)
    da_ = xr.DataArray(gappy(rng, (4, 2, 64, 64)), dims=("time", "band", "y", "x")).chunk(
        {"time": 1, "y": 32, "x": 32}
    )
    out = da_.fns.preprocess(nodata=-1).fns.tile(16)
    assert out.chunks is not None


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"reduce": "max"}, "reduce must be"),
        ({"fill": "linear"}, "fill must be"),
        ({"reach": 0}, "reach must be"),
        ({"stats": {"mean": 0}}, "keys 'mean' and 'std'"),
        ({"stats": {"mean": [0, 1, 2], "std": [1, 1, 1]}}, r"shape \(3,\)"),
        ({"stats": "train"}, "preprocessed scene"),
        ({"stats": {"mean": 0, "std": 1}, "standardize": False}, "only used with standardize"),
    ],
)
def test_bad_options(kwargs, match):
    da_ = scene_of(np.ones((2, 10, 10)))
    with pytest.raises(InvalidParameterError, match=match):
        da_.fns.preprocess(**kwargs)


def test_stats_without_coords_is_an_error():
    da_ = scene_of(np.ones((2, 10, 10)))
    with pytest.raises(InvalidParameterError, match="fns_mean"):
        da_.fns.preprocess(stats=da_)
    with pytest.raises(xflipnslide.SpatialDimsError):
        xr.DataArray(np.ones((3, 3)), dims=("a", "b")).fns.preprocess()
