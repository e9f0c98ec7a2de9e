"""Chips out: GeoTIFF (georeferenced under every D4 code), TFRecord,
WebDataset; exact round trips, interrupted exports leave nothing."""

from __future__ import annotations

import csv
import os
import re
import struct
import warnings

import numpy as np
import pytest
import rasterio
import xarray as xr

import xflipnslide
from xflipnslide import InvalidParameterError
from xflipnslide.cli import main


@pytest.mark.slow
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


@pytest.mark.slow
def test_webdataset_round_trip(tiles, tmp_path):
    import webdataset as wds

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


@pytest.mark.slow
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


@pytest.mark.slow
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


# --- oracles written from the specifications --------------------------------


def crc32c(data: bytes) -> int:
    """CRC-32C (Castagnoli) bit by bit, as RFC 3720 B.4 defines it: reflected
    polynomial 0x82F63B78, initial value and final XOR 0xFFFFFFFF."""
    crc = 0xFFFFFFFF
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = (crc >> 1) ^ (0x82F63B78 if crc & 1 else 0)
    return crc ^ 0xFFFFFFFF


def masked(data: bytes) -> bytes:
    """TFRecord's masked CRC (tensorflow/core/lib/hash/crc32c.h), 4 bytes LE."""
    crc = crc32c(data)
    return struct.pack("<I", (((crc >> 15) | (crc << 17)) + 0xA282EAD8) % 2**32)


def test_crc32c_known_answers():
    import google_crc32c

    from xflipnslide.export.tfrecord import masked_crc

    assert crc32c(b"123456789") == 0xE3069283  # RFC 3720's check value
    assert crc32c(bytes(32)) == 0x8A9136AA  # RFC 3720 B.4: 32 bytes of zeros
    assert google_crc32c.value(b"123456789") == 0xE3069283
    assert masked_crc(b"") == bytes.fromhex("d8ea82a2")  # crc 0: the mask's constant
    for data in (b"123456789", bytes(range(256)), b"\x94" + bytes(7)):
        assert masked_crc(data) == masked(data)


def test_tfrecord_bytes_are_the_specified_example_without_tensorflow(tmp_path):
    values = (np.arange(4 * 132).reshape(1, 4, 132) % 256).astype("uint8")
    tiles = xr.DataArray(values, dims=("band", "y", "x")).fns.tile(4, strategy="no_overlap")
    out = tiles.fns.export_chips(tmp_path / "tfr", format="tfrecord", shard_size=1)
    assert len([n for n in os.listdir(out) if n.endswith(".tfrecord")]) == 33
    with open(os.path.join(out, "shard-00032.tfrecord"), "rb") as f:
        got = f.read()
    # tf.train.Example of tile 32 (row 0, col 128, code 0): Features{feature: map
    # entries {key = 1, value = 2}} sorted by key, written out from example.proto
    # each entry: 0a LEN key | 12 LEN Feature{1a LEN Int64List{0a LEN packed} or
    # 0a LEN BytesList{0a LEN bytes}}
    entries = [
        "0a0d 0a03 636f6c 1206 1a04 0a02 8001",  # col: [128], varint 80 01
        "0a1d 0a05 696d616765 1214 0a12 0a10"  # image: the 16 bytes, C order,
        " 80818283 04050607 88898a8b 0c0d0e0f",  # (r * 132 + c) % 256
        "0a18 0a0b 696d6167655f6474797065 1209 0a07 0a05 75696e7438",  # image_dtype b"uint8"
        "0a16 0a0b 696d6167655f7368617065 1207 1a05 0a03 010404",  # image_shape [1, 4, 4]
        "0a0c 0a03 726f77 1205 1a03 0a01 00",  # row: [0]
        "0a0d 0a04 74696c65 1205 1a03 0a01 20",  # tile: [32]
        "0a12 0a09 7472616e73666f726d 1205 1a03 0a01 00",  # transform: [0]
    ]
    features = bytes.fromhex(" ".join(entries))
    assert len(features) == 145
    example = bytes.fromhex("0a9101") + features  # Example.features, length 145 = 91 01
    length = struct.pack("<Q", len(example))
    assert length == bytes.fromhex("9400000000000000")
    assert got == length + masked(length) + example + masked(example)


def test_index_footprints_are_the_windows_on_the_ground(tiles, tmp_path):
    part = tiles.isel(tile=slice(0, None, 9))
    out = part.fns.export_chips(tmp_path / "chips", format="geotiff")
    with rasterio.open(xflipnslide.sample_scene_path()) as f:
        a, _, c, _, e, f0 = f.transform[:6]  # north up: x = c + a * col, y = f0 + e * row
    with open(os.path.join(out, "index.csv")) as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0]) == [
        "file", "tile", "row", "col", "transform", "grid", "valid_fraction", "footprint"
    ]  # fmt: skip
    assert len(rows) == part.sizes["tile"]
    number = r"(-?[0-9.eE+-]+)"
    corner = rf"{number} {number}"
    for k, row in enumerate(rows):
        r, col = int(part.row[k]), int(part.col[k])
        assert (int(row["row"]), int(row["col"])) == (r, col)
        assert row["file"] == f"images/{k:02d}.tif" and int(row["tile"]) == k
        assert row["grid"] == str(part.grid.values[k])
        assert float(row["valid_fraction"]) == pytest.approx(float(part.valid_fraction[k]))
        x0, x1 = c + a * col, c + a * (col + 64)
        y0, y1 = f0 + e * (r + 64), f0 + e * r  # e < 0: the window's bottom is y0
        expected = [(x0, y0), (x1, y0), (x1, y1), (x0, y1), (x0, y0)]
        match = re.fullmatch(rf"POLYGON \(\({', '.join([corner] * 5)}\)\)", row["footprint"])
        assert match is not None, row["footprint"]
        got = np.array(match.groups(), float).reshape(5, 2)
        np.testing.assert_allclose(got, expected, rtol=0, atol=1e-6)


@pytest.mark.parametrize("lazy", [True, False])
def test_exports_read_one_tile_chunk_at_a_time(tiles, tmp_path, lazy):
    calls = []
    part = tiles.isel(tile=slice(0, 100))  # chunks of 40: 40, 40, 20
    if not lazy:  # numpy data, a lazy coordinate beside it: one chunk
        part = part.compute().assign_coords(grid=part.grid.chunk(10))
    part.fns.export_chips(
        tmp_path / "wds", format="webdataset", progress=lambda done, n: calls.append((done, n))
    )
    assert calls == ([(40, 100), (80, 100), (100, 100)] if lazy else [(100, 100)])


def test_to_zarr_of_fixed_width_text_labels_is_quiet_and_round_trips(tmp_path):
    # np.array(["red", ...]) gives numpy '<U5' labels, which zarr v3 stores in a
    # data type it warns about (UnstableSpecificationWarning) unless written as str
    a = np.arange(3 * 128 * 128, dtype="float32").reshape(3, 128, 128)
    bands = np.array(["red", "green", "blue"])
    assert bands.dtype == np.dtype("<U5")
    scene = xr.DataArray(a, dims=("band", "y", "x"), coords={"band": bands})
    tiles = scene.fns.tile(64)
    tiles = tiles.assign_coords(sensor=("band", np.array(["oli", "oli", "oli"])))
    assert tiles.band.dtype.kind == "U"
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        path = tiles.fns.to_zarr(tmp_path / "t.zarr")
        back = xflipnslide.open_tiles(path)
        got = back.band.values.tolist()
        sensor = back.sensor.values.tolist()
    assert got == ["red", "green", "blue"] and all(type(v) is str for v in got)
    assert sensor == ["oli", "oli", "oli"] and all(type(v) is str for v in sensor)
    np.testing.assert_array_equal(back.image.sel(band="green").values, tiles.sel(band="green"))
    with warnings.catch_warnings():  # zarr v2 has a fixed-width text type: kept
        warnings.simplefilter("error")
        v2 = xflipnslide.open_tiles(tiles.fns.to_zarr(tmp_path / "v2.zarr", zarr_format=2))
    assert v2.band.dtype == np.dtype("<U5") and v2.band.values.tolist() == ["red", "green", "blue"]


def test_tiles_of_a_zarr_2_scene_write_a_tile_store_with_its_own_codecs(tmp_path):
    scene = xflipnslide.open_image(xflipnslide.sample_scene_path(), chunks=None).load()
    scene = scene.assign_coords(band=["red", "green", "blue"])
    scene.to_dataset(name="image").to_zarr(tmp_path / "v2.zarr", zarr_format=2)
    out = tmp_path / "tiles.zarr"
    assert main(["tile", str(tmp_path / "v2.zarr"), "--tile-size", "64", "--out", str(out)]) == 0
    back = xflipnslide.open_tiles(out)
    assert back["band"].values.tolist() == ["red", "green", "blue"]
    assert back.sizes["tile"] > 0
