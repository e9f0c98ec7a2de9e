"""Time stacks end to end: ``preprocess(reduce=None)`` keeps time, ``tile``
gives ``(tile, time, band, y, x)``, and every export and store holds it.

The scenes are the built-in Landsat sample stacked on three dates with
slight value changes; chips are read back with rasterio, webdataset and
TensorFlow and compared with the oracle (numpy slicing and the transform
table of ``tests/oracle.py``).
"""

from __future__ import annotations

import csv
import json
import os
import warnings

import numpy as np
import oracle
import pytest
import rasterio
import xarray as xr

import xflipnslide
from xflipnslide import InvalidParameterError

T = 64
DATES = ["2023-06-01", "2023-07-01", "2023-08-01"]
BANDS = ["red", "green", "blue"]
#: The bands of a (time, band) chip, time-major, written out by hand.
TIME_MAJOR = [
    "2023-06-01/red", "2023-06-01/green", "2023-06-01/blue",
    "2023-07-01/red", "2023-07-01/green", "2023-07-01/blue",
    "2023-08-01/red", "2023-08-01/green", "2023-08-01/blue",
]  # fmt: skip


def quiet(f, *args, **kwargs):
    """``f(...)`` without the crop and fill notices (not under test here)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", xflipnslide.XFlipNSlideWarning)
        return f(*args, **kwargs)


@pytest.fixture(scope="module")
def stack():
    """The sample's top-left 256 x 256 on three dates, each date 3 counts
    brighter than the one before (nodata zeros stay zero)."""
    scene = xflipnslide.open_image(xflipnslide.sample_scene_path(), chunks=None).load()
    scene = scene.isel(y=slice(0, 256), x=slice(0, 256))
    dates = [
        xr.where(scene > 0, scene + 3 * k, 0).astype("uint16").assign_attrs(scene.attrs)
        for k in range(len(DATES))
    ]
    time = xr.DataArray(np.array(DATES, "datetime64[ns]"), dims="time", name="time")
    return xr.concat(dates, dim=time).transpose("time", "band", "y", "x")


@pytest.fixture(scope="module")
def tiles(stack):
    label = (stack.isel(time=0, band=0, drop=True) // 1000).astype("uint8")
    ds = xr.Dataset({"image": stack, "label": label}).chunk({"y": 100, "x": 100})
    return ds.fns.tile(T, tile_chunks=30)


def expected_tiles(stack):
    """Oracle tiles of the stack: ``(tile, time, band, T, T)``."""
    return oracle.tiles(np.asarray(stack.values), T, "flipnslide")


def test_tile_keeps_time_as_the_oracle_does(stack, tiles):
    assert tiles.image.dims == ("tile", "time", "band", "y", "x")
    want = expected_tiles(stack)
    assert tiles.image.shape == want.shape == (85, 3, 3, T, T)
    np.testing.assert_array_equal(tiles.image.values, want)
    wins = oracle.windows(256, 256, T, "flipnslide")
    assert [(int(r), int(c)) for r, c in zip(tiles.row.values, tiles.col.values)] == [
        (r, c) for r, c, _, _ in wins
    ]


def test_geotiff_chips_of_a_time_stack_hold_time_major_bands_in_place(stack, tiles, tmp_path):
    out = tiles.fns.export_chips(tmp_path / "chips", format="geotiff", label="label")
    want = expected_tiles(stack)
    xs, ys = stack.x.values, stack.y.values
    names = sorted(os.listdir(os.path.join(out, "images")))
    assert len(names) == 85 and names[0] == "00.tif"
    codes = set()
    for k in range(0, 85, 3):
        with rasterio.open(os.path.join(out, "images", names[k])) as f:
            data = f.read()
            assert f.count == 9 and data.dtype == np.uint16
            assert list(f.descriptions) == TIME_MAJOR
            assert f.tags(1) == {"time": "2023-06-01", "band": "red"}
            assert f.tags(6) == {"time": "2023-07-01", "band": "blue"}
            # band 3 * t + b is date t, band b of the oracle's tile
            np.testing.assert_array_equal(data, want[k].reshape(9, T, T))
            for t in range(3):
                for b in range(3):
                    np.testing.assert_array_equal(data[3 * t + b], want[k, t, b])
            # each chip pixel sits on the ground where its source pixel is
            rr, cc = np.meshgrid(np.arange(T), np.arange(T), indexing="ij")
            gx, gy = f.xy(rr.ravel(), cc.ravel())
            src_col = np.rint((np.asarray(gx) - xs[0]) / (xs[1] - xs[0])).astype(int)
            src_row = np.rint((np.asarray(gy) - ys[0]) / (ys[1] - ys[0])).astype(int)
            np.testing.assert_allclose(np.asarray(gx), xs[src_col], atol=1e-6)
            source = stack.values[:, :, src_row, src_col].reshape(9, T, T)
            np.testing.assert_array_equal(data, source)
            codes.add(int(f.tags()["fns_transform"]))
        with rasterio.open(os.path.join(out, "labels", names[k])) as f:
            assert f.count == 1 and f.descriptions == (None,)
            np.testing.assert_array_equal(f.read(1), tiles.label[k].values)
    assert codes == set(range(8))
    with open(os.path.join(out, "fns_export.json")) as f:
        manifest = json.load(f)
    image = manifest["image"]
    assert image["dims"] == ["time", "band", "y", "x"]
    assert image["shape"] == [3, 3, T, T] and image["dtype"] == "uint16"
    assert image["coords"] == {"time": DATES, "band": BANDS}
    assert image["bands"] == TIME_MAJOR
    assert manifest["label"]["dims"] == ["y", "x"] and manifest["label"]["coords"] == {}
    with open(os.path.join(out, "index.csv")) as f:
        assert len(list(csv.DictReader(f))) == 85


def test_webdataset_round_trips_a_time_stack_exactly(stack, tiles, tmp_path):
    import webdataset as wds

    out = tiles.fns.export_chips(
        tmp_path / "wds", format="webdataset", label="label", shard_size=40
    )
    urls = sorted(os.path.join(out, n) for n in os.listdir(out) if n.endswith(".tar"))
    got = list(wds.WebDataset(urls, shardshuffle=False).decode())
    want = expected_tiles(stack)
    assert len(got) == 85
    for sample in got:
        k = sample["json"]["tile"]
        assert sample["image.npy"].dtype == np.uint16
        assert sample["image.npy"].shape == (3, 3, T, T)
        np.testing.assert_array_equal(sample["image.npy"], want[k])
    with open(os.path.join(out, "fns_export.json")) as f:
        assert json.load(f)["image"]["coords"]["time"] == DATES


def test_tfrecord_round_trips_a_preprocessed_time_stack_exactly(stack, tmp_path):
    tf = pytest.importorskip("tensorflow")
    ready = quiet(stack.fns.preprocess, nodata=0, reduce=None)
    assert ready.dims == ("time", "band", "y", "x") and ready.dtype == np.float32
    tiles = ready.fns.tile(T)
    out = tiles.fns.export_chips(tmp_path / "tfr", format="tfrecord", shard_size=32)
    got = [x.numpy() for x in xflipnslide.tfrecord_dataset(out)]
    want = oracle.tiles(np.asarray(ready.values), T, "flipnslide")
    assert len(got) == 85
    for k, x in enumerate(got):
        assert x.dtype == np.float32 and x.shape == (3, 3, T, T)
        np.testing.assert_array_equal(x, want[k])
    raw = next(iter(tf.data.TFRecordDataset(os.path.join(out, "shard-00000.tfrecord"))))
    ex = tf.train.Example.FromString(raw.numpy())
    assert list(ex.features.feature["image_shape"].int64_list.value) == [3, 3, T, T]
    assert ex.features.feature["image_dtype"].bytes_list.value[0] == b"float32"


def grid(a: np.ndarray, dims) -> xr.DataArray:
    """A georeferenced array: 30 m pixels, UTM 21N."""
    h, w = a.shape[-2:]
    coords = {"y": 9000.0 - 30 * np.arange(h) - 15, "x": 500000.0 + 30 * np.arange(w) + 15}
    return xr.DataArray(a, dims=dims, coords=coords)


def test_any_extra_dims_fold_in_order_labels_or_indices(tmp_path):
    # (band, level, y, x), level without a coordinate; labels on two dates
    a = (np.arange(2 * 3 * 128 * 128) % 60000).astype("uint16").reshape(2, 3, 128, 128)
    image = grid(a, ("band", "level", "y", "x")).assign_coords(band=["vv", "vh"])
    when = np.array(["2023-06-01T10:30", "2023-06-13T10:30"], "datetime64[ns]")
    lab = (np.arange(2 * 128 * 128) % 7).astype("uint8").reshape(2, 128, 128)
    label = grid(lab, ("time", "y", "x")).assign_coords(time=when)
    tiles = quiet(xr.Dataset({"image": image, "label": label}).fns.tile, T)
    out = tiles.fns.export_chips(tmp_path / "c", format="geotiff", label="label", crs="EPSG:32621")
    want_x, want_y = oracle.tiles(a, T, "flipnslide"), oracle.tiles(lab, T, "flipnslide")
    for k in (0, 5, len(want_x) - 1):
        with rasterio.open(os.path.join(out, "images", f"{k:02d}.tif")) as f:
            assert list(f.descriptions) == ["vv/0", "vv/1", "vv/2", "vh/0", "vh/1", "vh/2"]
            assert f.tags(5) == {"band": "vh", "level": "1"}
            np.testing.assert_array_equal(f.read(), want_x[k].reshape(6, T, T))
            assert f.read(5).tolist() == want_x[k][1, 1].tolist()
        with rasterio.open(os.path.join(out, "labels", f"{k:02d}.tif")) as f:
            assert list(f.descriptions) == ["2023-06-01T10:30:00", "2023-06-13T10:30:00"]
            np.testing.assert_array_equal(f.read(), want_y[k])
    with open(os.path.join(out, "fns_export.json")) as f:
        manifest = json.load(f)
    assert manifest["image"]["coords"] == {"band": ["vv", "vh"]}  # no labels invented
    assert manifest["label"]["coords"] == {"time": ["2023-06-01T10:30:00", "2023-06-13T10:30:00"]}


def test_geotiff_bands_of_plain_tiles_are_described_by_their_labels(tmp_path):
    a = np.arange(3 * 128 * 128, dtype="uint16").reshape(3, 128, 128)
    tiles = grid(a, ("band", "y", "x")).assign_coords(band=BANDS).fns.tile(T)
    out = tiles.fns.export_chips(tmp_path / "c", crs="EPSG:32621")
    with rasterio.open(os.path.join(out, "images", "00.tif")) as f:
        assert f.descriptions == ("red", "green", "blue")
        np.testing.assert_array_equal(f.read(), oracle.tiles(a, T, "flipnslide")[0])


def test_geotiff_refuses_tiles_without_the_spatial_dims_before_writing(tiles, tmp_path):
    ds = tiles.assign(cls=tiles.label.fns.tile_labels(classes=16))  # one class per tile: (tile,)
    with pytest.raises(InvalidParameterError, match="need both spatial dims"):
        ds.fns.export_chips(tmp_path / "c", format="geotiff", label="cls")
    assert os.listdir(tmp_path) == []
    out = ds.fns.export_chips(tmp_path / "w", format="webdataset", label="cls")  # no raster
    with open(os.path.join(out, "fns_export.json")) as f:
        assert json.load(f)["label"]["shape"] == []


def test_a_time_stack_tile_store_round_trips(stack, tiles, tmp_path):
    path = tiles.fns.to_zarr(tmp_path / "t.zarr")
    back = xflipnslide.open_tiles(path)
    assert back.image.dims == ("tile", "time", "band", "y", "x")
    assert back.image.dtype == np.uint16
    np.testing.assert_array_equal(back.image.values, expected_tiles(stack))
    assert back.time.dtype.kind == "M"
    assert np.datetime_as_string(back.time.values, unit="D").tolist() == DATES


def test_fns_observed_of_a_time_stack_is_observed_at_every_time(stack):
    small = stack.isel(y=slice(0, 128), x=slice(0, 128)).values.copy()
    assert (small > 0).all()  # no nodata in this corner: only the gap below
    small[1, 0, :32, :32] = 0  # missing on one date, in one band
    scene = stack.isel(y=slice(0, 128), x=slice(0, 128)).copy(data=small)
    ready = quiet(scene.fns.preprocess, nodata=0, reduce=None)
    assert ready.fns_observed.dims == ("y", "x")  # one mask for all dates and bands
    assert not ready.fns_observed.values[:32, :32].any()
    assert ready.fns_observed.values.sum() == 128 * 128 - 32 * 32
    tiles = ready.fns.tile(T)
    # window (0, 0) holds the whole 32 x 32 gap: 1 - 1024 / 4096; the inner
    # window (16, 16), tile 9, its 16 x 16 corner: 1 - 256 / 4096; (0, 32) none
    assert (tiles.row[9], tiles.col[9]) == (16, 16)
    assert tiles.valid_fraction.values[0] == 0.75
    assert tiles.valid_fraction.values[9] == 0.9375
    assert tiles.valid_fraction.values[1] == 1.0
    kept = quiet(ready.fns.tile, T, min_valid=0.8)
    assert kept.attrs["fns_dropped_min_valid"] == 1  # observed at every date, not on average


def test_feeds_give_time_stacks_as_b_time_c_t_t(stack):
    pytest.importorskip("torch")
    ready = quiet(stack.fns.preprocess, nodata=0, reduce=None)
    tiles = ready.fns.tile(T)
    x = next(iter(tiles.fns.torch_loader(8)))
    assert tuple(x.shape) == (8, 3, 3, T, T)
    want = oracle.tiles(np.asarray(ready.values), T, "flipnslide")[:8]
    np.testing.assert_array_equal(x.numpy(), want)


def test_fold_time_puts_dates_into_channels_time_major():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(5)
    data = rng.random((2, 3, 64, 64), dtype="float32")  # (time, band, y, x)
    scene = xr.DataArray(data, dims=("time", "band", "y", "x"))
    tiles = scene.fns.tile(32, strategy="no_overlap")
    stacked = next(iter(tiles.fns.torch_loader(4)))
    folded = next(iter(tiles.fns.torch_loader(4, fold_time=True)))
    assert tuple(stacked.shape) == (4, 2, 3, 32, 32)
    assert tuple(folded.shape) == (4, 6, 32, 32)
    for t in range(2):
        for c in range(3):
            torch.testing.assert_close(folded[:, 3 * t + c], stacked[:, t, c])
    np.testing.assert_array_equal(folded[0, 4].numpy(), data[1, 1, :32, :32])  # tile 0: rows 0:32


def test_a_per_date_observed_mask_counts_pixels_observed_at_every_date():
    rng = np.random.default_rng(8)
    scene = xr.DataArray(
        rng.random((2, 1, 64, 64), dtype="float32"), dims=("time", "band", "y", "x")
    )
    observed = np.ones((2, 64, 64), bool)
    observed[0, :16, :16] = False  # a gap on the first date only
    observed[1, 48:, 48:] = False  # another on the second
    scene = scene.assign_coords(fns_observed=(("time", "y", "x"), observed))
    tiles = scene.fns.tile(32, strategy="no_overlap")
    every_date = observed.all(0)
    expected = [
        every_date[r : r + 32, c : c + 32].mean()
        for r, c in zip(tiles.row.values, tiles.col.values)
    ]
    np.testing.assert_allclose(tiles.valid_fraction.values, expected)
    assert tiles.valid_fraction.values.tolist() == [0.75, 1.0, 1.0, 0.75]
    kept = scene.fns.tile(32, strategy="no_overlap", min_valid=0.8)
    assert kept.sizes["tile"] == 2
