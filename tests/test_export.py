"""Chips out: GeoTIFF (georeferenced under every D4 code), TFRecord,
WebDataset; exact round trips, interrupted exports leave nothing."""

from __future__ import annotations

import csv
import os
import warnings

import numpy as np
import pytest
import xarray as xr

import xflipnslide
from xflipnslide import InvalidParameterError
from xflipnslide.cli import main

rasterio = pytest.importorskip("rasterio")


@pytest.fixture(scope="module")
def tiles():
    scene = xflipnslide.open_image(xflipnslide.sample_scene_path(), chunks=None).load()
    label = (scene.isel(band=0, drop=True) // 1000).astype("uint8")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", xflipnslide.XFlipNSlideWarning)
        ds = xr.Dataset({"image": scene, "label": label})
        return ds.chunk({"y": 200, "x": 200}).fns.tile(64, tile_chunks=40)


def test_geotiff_chips_read_back_and_sit_in_place(tiles, tmp_path):
    out = tiles.fns.export_chips(tmp_path / "chips", format="geotiff", label="label")
    names = sorted(os.listdir(os.path.join(out, "images")))
    assert names == sorted(os.listdir(os.path.join(out, "labels")))
    assert len(names) == tiles.sizes["tile"] and names[0] == "000.tif"
    scene = xflipnslide.open_image(xflipnslide.sample_scene_path(), chunks=None).load()
    xs, ys = scene.x.values, scene.y.values
    codes_seen = set()
    for k in range(0, tiles.sizes["tile"], 7):
        tile = tiles.isel(tile=k).compute()
        with rasterio.open(os.path.join(out, "images", names[k])) as f:
            data = f.read()
            assert f.crs.to_epsg() == 32621
            assert data.dtype == np.uint16
            np.testing.assert_array_equal(data, tile.image.values)
            code = int(f.tags()["fns_transform"])
            assert code == int(tile.transform) and int(f.tags()["fns_row"]) == int(tile.row)
            # every chip pixel centre maps to the ground position of its source pixel
            rr, cc = np.meshgrid(np.arange(64), np.arange(64), indexing="ij")
            gx, gy = f.xy(rr.ravel(), cc.ravel())
            src_col = np.rint((np.asarray(gx) - xs[0]) / (xs[1] - xs[0])).astype(int)
            src_row = np.rint((np.asarray(gy) - ys[0]) / (ys[1] - ys[0])).astype(int)
            np.testing.assert_allclose(np.asarray(gx), xs[src_col], atol=1e-6)
            np.testing.assert_allclose(np.asarray(gy), ys[src_row], atol=1e-6)
            source = scene.values[:, src_row, src_col].reshape(3, 64, 64)
            np.testing.assert_array_equal(source, data)
        with rasterio.open(os.path.join(out, "labels", names[k])) as f:
            assert f.dtypes == ("uint8",)
            np.testing.assert_array_equal(f.read(1), tile.label.values)
        codes_seen.add(code)
    assert codes_seen == set(range(8))
    with open(os.path.join(out, "index.csv")) as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == tiles.sizes["tile"]
    assert rows[5]["transform"] == str(int(tiles.transform[5]))
    assert rows[5]["footprint"].startswith("POLYGON")


def test_webdataset_round_trip(tiles, tmp_path):
    wds = pytest.importorskip("webdataset")
    out = tiles.fns.export_chips(
        tmp_path / "wds", format="webdataset", label="label", shard_size=30
    )
    shards = sorted(p for p in os.listdir(out) if p.endswith(".tar"))
    assert len(shards) == -(-tiles.sizes["tile"] // 30)
    urls = [os.path.join(out, s) for s in shards]
    got = list(wds.WebDataset(urls, shardshuffle=False).decode())
    assert len(got) == tiles.sizes["tile"]
    for sample in got[::11]:
        k = sample["json"]["tile"]
        tile = tiles.isel(tile=k).compute()
        np.testing.assert_array_equal(sample["image.npy"], tile.image.values)
        assert sample["image.npy"].dtype == np.uint16
        np.testing.assert_array_equal(sample["label.npy"], tile.label.values)
        assert sample["json"]["transform"] == int(tile.transform)


def test_tfrecord_round_trip(tiles, tmp_path):
    tf = pytest.importorskip("tensorflow")
    out = tiles.fns.export_chips(tmp_path / "tfr", format="tfrecord", label="label", shard_size=50)
    data = xflipnslide.tfrecord_dataset(out)
    got = list(data)
    assert len(got) == tiles.sizes["tile"]
    for k in (0, 17, tiles.sizes["tile"] - 1):
        x, y = got[k]
        assert x.dtype == tf.uint16 and y.dtype == tf.uint8
        np.testing.assert_array_equal(x.numpy(), tiles.image[k].values)
        np.testing.assert_array_equal(y.numpy(), tiles.label[k].values)
    raw = next(iter(tf.data.TFRecordDataset(os.path.join(out, "shard-00000.tfrecord"))))
    ex = tf.train.Example.FromString(raw.numpy())
    assert list(ex.features.feature["image_shape"].int64_list.value) == [3, 64, 64]
    assert ex.features.feature["transform"].int64_list.value[0] == int(tiles.transform[0])


def test_interrupted_export_leaves_nothing_and_overwrite_is_careful(tiles, tmp_path):
    calls = []

    def stop(done, total):
        calls.append(done)
        if len(calls) == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        tiles.fns.export_chips(tmp_path / "c", format="webdataset", progress=stop)
    assert os.listdir(tmp_path) == []
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "keep.txt").write_text("x")
    with pytest.raises(InvalidParameterError, match="not an export"):
        tiles.fns.export_chips(mine, format="webdataset", overwrite=True)
    done = tiles.fns.export_chips(tmp_path / "c", format="webdataset")
    with pytest.raises(InvalidParameterError, match="exists"):
        tiles.fns.export_chips(done, format="webdataset")
    tiles.fns.export_chips(done, format="webdataset", overwrite=True)


def test_cli_export(tiles, tmp_path, capsys):
    store = tmp_path / "t.zarr"
    tiles.fns.to_zarr(store)  # a tile store the CLI opens (completion record)
    out = tmp_path / "chips"
    assert (
        main(["export", str(store), "--format", "geotiff", "--label", "label", "--out", str(out)])
        == 0
    )
    captured = capsys.readouterr()
    assert f"{tiles.sizes['tile']} / {tiles.sizes['tile']} tiles" in captured.err
    assert len(os.listdir(out / "labels")) == tiles.sizes["tile"]
