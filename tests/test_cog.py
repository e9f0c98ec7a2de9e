"""The streaming COG writer: the same file as an in-memory COG, a valid COG
layout (checked on the TIFF structure itself), and never the whole map in
memory."""

from __future__ import annotations

import struct
import threading
import weakref

import numpy as np
import pytest
import xarray as xr

pytest.importorskip("rioxarray")
import rasterio
from dask.callbacks import Callback

from xflipnslide.errors import InvalidParameterError
from xflipnslide.export.cog import write_cog

TILE_OFFSETS, IMAGE_WIDTH = 324, 256


def _map(dtype="float32", bands=3, h=700, w=900) -> xr.DataArray:
    rng = np.random.default_rng(0)
    values = rng.random((bands, h, w)) * 10
    da = xr.DataArray(
        values.astype(dtype),
        dims=("band", "y", "x"),
        coords={"y": 2e5 - 10.0 * np.arange(h), "x": 5e5 + 10.0 * np.arange(w)},
        attrs={"long_name": tuple(f"class {i}" for i in range(bands))},
    )
    return da.rio.write_crs("EPSG:32633")


def _levels(path) -> list[np.ndarray]:
    """The full-resolution raster and each overview, as read by GDAL."""
    with rasterio.open(path) as f:
        levels = [f.read()]
        count = len(f.overviews(1))
    for i in range(count):
        with rasterio.open(path, overview_level=i) as f:
            levels.append(f.read())
    return levels


def _ifds(path) -> list[dict]:
    """Each IFD of a TIFF (classic or BigTIFF): its offset, width and tile offsets."""
    with open(path, "rb") as f:
        data = f.read()
    end = "<" if data[:2] == b"II" else ">"
    big = struct.unpack(end + "H", data[2:4])[0] == 43
    size = {3: 2, 4: 4, 16: 8}  # SHORT, LONG, LONG8
    code = {2: "H", 4: "I", 8: "Q"}
    offset = struct.unpack(end + ("Q" if big else "I"), data[8:16] if big else data[4:8])[0]
    ifds = []
    while offset:
        if big:
            n = struct.unpack(end + "Q", data[offset : offset + 8])[0]
            first, width, head = offset + 8, 20, "HHQ"
        else:
            n = struct.unpack(end + "H", data[offset : offset + 2])[0]
            first, width, head = offset + 2, 12, "HHI"
        entry = {"offset": offset}
        for k in range(n):
            at = first + k * width
            tag, typ, count = struct.unpack(end + head, data[at : at + width - (8 if big else 4)])
            value_at = at + width - (8 if big else 4)
            nbytes = size.get(typ, 1) * count
            if nbytes > (8 if big else 4):
                value_at = struct.unpack(
                    end + ("Q" if big else "I"), data[value_at : value_at + (8 if big else 4)]
                )[0]
            if tag in (TILE_OFFSETS, IMAGE_WIDTH):
                fmt = end + code[size[typ]] * count
                entry[tag] = struct.unpack(fmt, data[value_at : value_at + nbytes])
        ifds.append(entry)
        at = first + n * width
        offset = struct.unpack(end + ("Q" if big else "I"), data[at : at + (8 if big else 4)])[0]
    return ifds


def _assert_cog_layout(path):
    with open(path, "rb") as f:
        head = f.read(1024)
    assert b"LAYOUT=IFDS_BEFORE_DATA" in head and b"KNOWN_INCOMPATIBLE_EDITION=NO" in head
    ifds = _ifds(path)
    assert len(ifds) >= 2  # the image and at least one overview
    widths = [i[IMAGE_WIDTH][0] for i in ifds]
    assert widths == sorted(widths, reverse=True)  # full resolution first
    first_tile = min(min(i[TILE_OFFSETS]) for i in ifds)
    assert max(i["offset"] for i in ifds) < first_tile  # every IFD before any tile
    starts = [min(i[TILE_OFFSETS]) for i in ifds]
    assert starts == sorted(starts, reverse=True)  # smallest overview's tiles first
    with rasterio.open(path) as f:
        assert f.tags(ns="IMAGE_STRUCTURE")["LAYOUT"] == "COG"
        assert f.block_shapes[0] == (256, 256)


class _Largest(Callback):
    """The largest array any task returned."""

    def __init__(self):
        super().__init__()
        self.nbytes = 0

    def _posttask(self, key, result, dsk, state, id):
        self.nbytes = max(self.nbytes, getattr(result, "nbytes", 0))


@pytest.mark.parametrize("dtype", ["float32", "uint8"])
def test_streamed_cog_equals_the_in_memory_cog(tmp_path, dtype):
    da = _map(dtype)
    resampling = "average" if dtype == "float32" else "nearest"
    da.rio.to_raster(
        tmp_path / "memory.tif",
        driver="COG",
        blocksize=256,
        compress="deflate",
        overview_resampling=resampling,
        tags={"WHO": "me"},
    )
    lazy = da.chunk({"band": 3, "y": 256, "x": 256})
    write_cog(lazy, str(tmp_path / "streamed.tif"), tags={"WHO": "me"}, blocksize=256)
    ours, theirs = _levels(tmp_path / "streamed.tif"), _levels(tmp_path / "memory.tif")
    assert len(ours) == len(theirs) == 3
    for a, b in zip(ours, theirs):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(ours[0], da.values)
    with rasterio.open(tmp_path / "streamed.tif") as f, rasterio.open(tmp_path / "memory.tif") as g:
        assert f.crs == g.crs and f.transform == g.transform
        assert f.descriptions == g.descriptions == ("class 0", "class 1", "class 2")
        assert f.tags()["WHO"] == "me" and f.nodata == g.nodata
    _assert_cog_layout(tmp_path / "streamed.tif")
    _assert_cog_layout(tmp_path / "memory.tif")  # the oracle agrees GDAL's COG is one


class _Alive:
    """Counts the map's chunks alive at once (computed, not yet freed)."""

    def __init__(self):
        self.now = self.peak = self.made = 0
        self.lock = threading.Lock()

    def block(self, x):
        out = x * 1.0
        with self.lock:
            self.now += 1
            self.made += 1
            self.peak = max(self.peak, self.now)
        weakref.finalize(out, self.freed)
        return out

    def freed(self):
        with self.lock:
            self.now -= 1


def test_the_writer_never_holds_the_whole_map(tmp_path):
    da = _map("float32", bands=2, h=1024, w=1024)
    alive = _Alive()
    lazy = da.chunk({"band": 2, "y": 256, "x": 256})
    meta = np.empty((0, 0, 0), "float32")
    lazy = lazy.copy(data=lazy.data.map_blocks(alive.block, meta=meta))
    with _Largest() as seen:
        write_cog(lazy, str(tmp_path / "map.tif"), blocksize=256)
    assert seen.nbytes <= 2 * 256 * 256 * 4  # no task returned more than a chunk
    assert alive.made == 16 and alive.peak <= 6, alive.peak  # of 16 chunks, a few at a time
    np.testing.assert_array_equal(_levels(tmp_path / "map.tif")[0], da.values)


def test_in_memory_maps_are_written_the_same_way(tmp_path):
    da = _map("float32", bands=1, h=300, w=520)
    write_cog(da, str(tmp_path / "a.tif"), blocksize=256)
    write_cog(da.chunk({"y": 100, "x": 100}), str(tmp_path / "b.tif"), blocksize=256)
    for a, b in zip(_levels(tmp_path / "a.tif"), _levels(tmp_path / "b.tif"), strict=True):
        np.testing.assert_array_equal(a, b)


def test_label_overviews_keep_labels(tmp_path):
    labels = (_map("float32", bands=1) > 5).astype("uint8") * 7
    write_cog(labels.chunk({"y": 256, "x": 256}), str(tmp_path / "labels.tif"), blocksize=256)
    for level in _levels(tmp_path / "labels.tif"):
        assert set(np.unique(level).tolist()) <= {0, 7}


def test_no_temporary_is_left_and_a_bad_blocksize_is_refused(tmp_path):
    write_cog(_map(bands=1, h=64, w=64), str(tmp_path / "m.tif"), blocksize=256)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.tif"]
    with pytest.raises(InvalidParameterError, match="multiple of 16"):
        write_cog(_map(bands=1, h=64, w=64), str(tmp_path / "n.tif"), blocksize=100)


def test_to_cog_writes_atomically_and_replaces_only_its_own(tmp_path):
    import xflipnslide

    da = _map(bands=1, h=300, w=300).chunk({"y": 128, "x": 128})
    path = tmp_path / "map.tif"
    assert xflipnslide.to_cog(da, path, blocksize=256) == str(path)
    _assert_cog_layout(path)
    with pytest.raises(InvalidParameterError, match="overwrite"):
        xflipnslide.to_cog(da, path, blocksize=256)
    xflipnslide.to_cog(da * 2, path, blocksize=256, overwrite=True)  # ours: replaced
    np.testing.assert_array_equal(_levels(path)[0], da.values * 2)
    mine = tmp_path / "mine.tif"
    mine.write_text("the user's")
    with pytest.raises(InvalidParameterError):
        xflipnslide.to_cog(da, mine, blocksize=256, overwrite=True)
    assert mine.read_text() == "the user's"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["map.tif", "mine.tif"]


def test_time_stacks_and_maps_without_a_crs_are_refused_before_writing(tmp_path):
    import xflipnslide

    one = _map(bands=2, h=64, w=64)
    stack = xr.concat([one, one], dim="time")  # (time, band, y, x)
    with pytest.raises(InvalidParameterError, match="one COG per step"):
        xflipnslide.to_cog(stack, tmp_path / "stack.tif")
    bare = one.drop_vars("spatial_ref")
    with pytest.raises(InvalidParameterError, match="write_crs"):
        xflipnslide.to_cog(bare.chunk({"y": 32}), tmp_path / "bare.tif")
    with pytest.raises(InvalidParameterError, match="write_crs"):
        write_cog(bare, str(tmp_path / "bare.tif"))
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("bands", [1, 4])
def test_maps_smaller_than_a_block_with_one_or_many_classes(tmp_path, bands):
    """A map inside one block: no overviews, every pixel and the georeference kept."""
    da = _map(bands=bands, h=20, w=37).rename(band="class")
    path = write_cog(da.chunk({"y": 8, "x": 16}), str(tmp_path / "small.tif"), blocksize=256)
    levels = _levels(path)
    assert len(levels) == 1
    np.testing.assert_array_equal(levels[0], da.values)
    with rasterio.open(path) as f:
        assert f.crs == da.rio.crs and f.transform == da.rio.transform() and f.count == bands
