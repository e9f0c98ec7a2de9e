"""Every output is written whole or not at all, replaces only the package's
own earlier outputs, and tile stores are opened only when whole.

Faults are injected where the disk or the process would fail: a full disk
(``OSError(ENOSPC)`` from the writer and again from the close), a killed
writer (SIGKILL in a child process), two writers racing for one folder,
deleted chunks."""

from __future__ import annotations

import errno
import glob
import json
import os
import signal
import subprocess
import sys
import tarfile
import threading
import warnings
import zipfile

import numpy as np
import pytest
import rasterio
import xarray as xr
from conftest import CountingScheduler

import xflipnslide
from xflipnslide import IncompleteStoreError, InvalidParameterError, InvalidTilesError
from xflipnslide.cli import main

HERE = os.path.dirname(__file__)


def tree(path) -> dict[str, bytes]:
    """Every file under ``path`` (relative name -> content)."""
    out = {}
    for root, _, files in os.walk(path):
        for name in files:
            full = os.path.join(root, name)
            with open(full, "rb") as f:
                out[os.path.relpath(full, path)] = f.read()
    return out


def tar_members(directory) -> list[str]:
    names = []
    for shard in sorted(glob.glob(os.path.join(directory, "shard-*.tar"))):
        with tarfile.open(shard) as t:
            names += t.getnames()
    return names


# --- 4. one atomic writer: never someone else's data ---------------------


def test_export_leaves_a_user_folder_named_like_a_temporary_alone(tiles, tmp_path):
    mine = tmp_path / "chips.partial"
    mine.mkdir()
    (mine / "notes.txt").write_text("mine")
    out = tiles.fns.export_chips(tmp_path / "chips", format="webdataset")
    assert (mine / "notes.txt").read_text() == "mine"
    assert sorted(os.listdir(tmp_path)) == ["chips", "chips.partial"]
    assert len(tar_members(out)) == 2 * tiles.sizes["tile"]
    store = tmp_path / "t.zarr"
    tiles.fns.to_zarr(store)
    cli = ["export", str(store), "--format", "webdataset", "--out", str(tmp_path / "chips")]
    assert main([*cli, "--overwrite"]) == 0
    assert (mine / "notes.txt").read_text() == "mine"


def small_scene_file(tmp_path) -> str:
    scene = xflipnslide.open_image(xflipnslide.sample_scene_path(), chunks=None).load()
    src = str(tmp_path / "scene.tif")
    scene.isel(y=slice(0, 96), x=slice(0, 96)).rio.to_raster(src)
    return src


def scripted_model(tmp_path) -> str:
    torch = pytest.importorskip("torch")
    path = str(tmp_path / "model.pt")
    torch.jit.script(torch.nn.Conv2d(3, 2, 1)).save(path)
    return path


def test_cli_predict_leaves_user_files_alone(tmp_path, capsys):
    src, model = small_scene_file(tmp_path), scripted_model(tmp_path)
    out = tmp_path / "p.tif"
    decoy = tmp_path / "p.tif.partial.tif"
    decoy.write_text("mine")
    argv = ["predict", src, "--model", model, "--out", str(out), "--tile-size", "32"]
    assert main([*argv, "--no-preprocess"]) == 0
    assert decoy.read_text() == "mine"
    with rasterio.open(out) as f:
        assert f.tags()["FNS_WRITER"] == "xflipnslide predict" and f.count == 2
    # --overwrite replaces our own GeoTIFF, never a user's
    assert main([*argv, "--no-preprocess", "--overwrite", "--labels"]) == 0
    theirs = tmp_path / "theirs.tif"
    xr.DataArray(
        np.ones((1, 4, 4), "uint8"),
        dims=("band", "y", "x"),
        coords={"y": [3.5, 2.5, 1.5, 0.5], "x": [0.5, 1.5, 2.5, 3.5]},
    ).rio.to_raster(theirs)
    before = theirs.read_bytes()
    argv[argv.index(str(out))] = str(theirs)
    assert main([*argv, "--no-preprocess", "--overwrite"]) == 2
    err = capsys.readouterr().err
    assert "not a prediction GeoTIFF written by xflipnslide" in err
    assert theirs.read_bytes() == before
    assert sorted(os.listdir(tmp_path)) == [
        "model.pt",
        "p.tif",
        "p.tif.partial.tif",
        "scene.tif",
        "theirs.tif",
    ]


def test_two_threads_exporting_into_one_folder_both_succeed_with_one_whole_export(tiles, tmp_path):
    out = tmp_path / "wds"
    barrier = threading.Barrier(2, timeout=120)
    done, failed = [], []

    def export():
        try:
            done.append(
                xflipnslide.export_chips(
                    tiles,
                    out,
                    format="webdataset",
                    shard_size=100,
                    overwrite=True,
                    progress=lambda *_: barrier.wait(),  # both write, and finish, together
                )
            )
        except BaseException as exc:
            failed.append(exc)
            barrier.abort()

    threads = [threading.Thread(target=export) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(300)
    assert failed == [] and len(done) == 2
    assert os.listdir(tmp_path) == ["wds"]  # no temporaries left
    n = tiles.sizes["tile"]
    with open(out / "fns_export.json") as f:
        assert json.load(f)["count"] == n
    names = tar_members(out)
    assert len(names) == 2 * n and len(set(names)) == 2 * n


def test_full_disk_mid_export_leaves_the_disk_as_it_was(tiles, tmp_path, monkeypatch):
    out = tiles.isel(tile=slice(0, 50)).fns.export_chips(tmp_path / "wds", format="webdataset")
    before = tree(tmp_path)
    calls = []
    addfile = tarfile.TarFile.addfile

    def full_disk(self, *args, **kwargs):
        calls.append(1)
        if len(calls) > 300:
            raise OSError(errno.ENOSPC, "No space left on device (writing)")
        return addfile(self, *args, **kwargs)

    def close_full(self):
        raise OSError(errno.ENOSPC, "No space left on device (closing)")

    monkeypatch.setattr(tarfile.TarFile, "addfile", full_disk)
    monkeypatch.setattr(tarfile.TarFile, "close", close_full)
    with pytest.raises(OSError, match=r"\(writing\)") as err:
        tiles.fns.export_chips(out, format="webdataset", overwrite=True)
    assert err.value.errno == errno.ENOSPC
    assert tree(tmp_path) == before  # the earlier export untouched, no temporary left
    assert os.listdir(tmp_path) == ["wds"]


def test_full_disk_mid_store_write_leaves_the_disk_as_it_was(tiles, tmp_path, monkeypatch):
    import zarr.storage

    store = tmp_path / "t.zarr"
    tiles.isel(tile=slice(0, 40)).fns.to_zarr(store)
    before = tree(tmp_path)
    real_set, calls = zarr.storage.LocalStore.set, []

    async def full_disk(self, key, value, *args, **kwargs):
        if "/c/" in key:
            calls.append(key)
            if len(calls) > 3:
                raise OSError(errno.ENOSPC, "No space left on device")
        return await real_set(self, key, value, *args, **kwargs)

    monkeypatch.setattr(zarr.storage.LocalStore, "set", full_disk)
    with pytest.raises(OSError) as err:
        tiles.fns.to_zarr(store, overwrite=True)
    assert err.value.errno == errno.ENOSPC
    assert tree(tmp_path) == before
    monkeypatch.undo()
    assert xflipnslide.open_tiles(store).sizes["tile"] == 40


def test_full_disk_mid_predict_leaves_the_disk_as_it_was(tmp_path, monkeypatch, capsys):
    import rioxarray.raster_array

    src, model = small_scene_file(tmp_path), scripted_model(tmp_path)
    out = tmp_path / "p.tif"
    argv = ["predict", src, "--model", model, "--out", str(out), "--tile-size", "32"]
    assert main([*argv, "--no-preprocess"]) == 0
    before = tree(tmp_path)

    def full_disk(self, path, **kwargs):
        with open(path, "wb") as f:
            f.write(b"II*\0half a GeoTIFF")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(rioxarray.raster_array.RasterArray, "to_raster", full_disk)
    assert main([*argv, "--no-preprocess", "--overwrite"]) == 2
    assert "No space left on device" in capsys.readouterr().err
    assert tree(tmp_path) == before


def test_empty_missing_or_unwritable_targets_are_refused_before_any_work(
    tiles, tmp_path, monkeypatch
):
    import dask

    calls = []

    def progress(done, total):
        calls.append(done)

    cases = {
        "": "non-empty path",
        str(tmp_path / "missing" / "chips"): "does not exist; create it first",
    }
    for target, message in cases.items():
        with pytest.raises(InvalidParameterError, match=message):
            tiles.fns.export_chips(target, format="webdataset", progress=progress)
        with (
            dask.config.set(scheduler=CountingScheduler(0)),  # nothing computed
            pytest.raises(InvalidParameterError, match=message),
        ):
            tiles.fns.to_zarr(target)
    assert calls == [] and os.listdir(tmp_path) == []
    locked = tmp_path / "locked"
    locked.mkdir()
    with monkeypatch.context() as m:  # root may write anywhere: deny as a user's mode would
        m.setattr(os, "access", lambda path, mode, **kw: os.fspath(path) != str(locked))
        with pytest.raises(InvalidParameterError, match="not writable"):
            tiles.fns.export_chips(locked / "chips", format="webdataset", progress=progress)
    assert calls == [] and os.listdir(locked) == []


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_read_only_folder_is_refused_before_any_work(tiles, tmp_path):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        with pytest.raises(InvalidParameterError, match="not writable"):
            tiles.fns.export_chips(locked / "chips", format="webdataset")
    finally:
        locked.chmod(0o700)


def test_overwrite_replaces_only_the_same_kind_of_output(tiles, tmp_path):
    store = tiles.isel(tile=slice(0, 40)).fns.to_zarr(tmp_path / "t.zarr")
    export = tiles.isel(tile=slice(0, 40)).fns.export_chips(tmp_path / "c", format="webdataset")
    plain = tmp_path / "plain.zarr"
    tiles.isel(tile=slice(0, 40)).to_zarr(plain)
    before = tree(tmp_path)
    with pytest.raises(InvalidParameterError, match="not an export written by xflipnslide"):
        tiles.fns.export_chips(store, format="webdataset", overwrite=True)
    for target in (export, plain):
        with pytest.raises(InvalidParameterError, match="not a tile store written by"):
            tiles.fns.to_zarr(target, overwrite=True)
    assert tree(tmp_path) == before


def test_symlinked_target_is_replaced_only_when_it_points_at_our_output(tiles, tmp_path):
    real = tiles.isel(tile=slice(0, 40)).fns.export_chips(tmp_path / "real", format="webdataset")
    link = tmp_path / "link"
    link.symlink_to(real)
    tiles.isel(tile=slice(0, 10)).fns.export_chips(link, format="webdataset", overwrite=True)
    assert link.is_symlink() and os.path.realpath(link) == str(real)
    with open(os.path.join(real, "fns_export.json")) as f:
        assert json.load(f)["count"] == 10
    user = tmp_path / "user"
    user.mkdir()
    (user / "keep.txt").write_text("mine")
    (tmp_path / "link2").symlink_to(user)
    with pytest.raises(InvalidParameterError, match="not an export"):
        tiles.fns.export_chips(tmp_path / "link2", format="webdataset", overwrite=True)
    assert os.listdir(user) == ["keep.txt"]
    assert sorted(os.listdir(tmp_path)) == ["link", "link2", "real", "user"]


# --- 5. tile stores: written whole, opened only when whole ----------------


def test_to_zarr_round_trips_with_the_store_codec_and_no_warnings(tiles, tmp_path):
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        path = tiles.fns.to_zarr(tmp_path / "t.zarr")
        back = xflipnslide.open_tiles(path)
    assert [str(w.message) for w in seen] == []
    assert path == str(tmp_path / "t.zarr") and os.listdir(tmp_path) == ["t.zarr"]
    assert back.image.chunks is not None  # lazy
    assert back.image.dtype == np.uint16 and back.label.dtype == np.uint8
    np.testing.assert_array_equal(back.image.values, tiles.image.values)
    np.testing.assert_array_equal(back.transform.values, tiles.transform.values)
    codecs = back.image.encoding["compressors"]
    assert [type(c).__name__ for c in codecs] == ["ZstdCodec"] and codecs[0].level == 1
    assert "fns_complete" not in back.attrs and back.attrs["fns_tile_size"] == 64
    # the record counts what zarr stored: 479 tiles in chunks of 40 -> 12
    assert tiles.sizes["tile"] == 479 and tiles.image.chunks[0][0] == 40
    with open(tmp_path / "t.zarr" / "zarr.json") as f:
        record = json.load(f)["attributes"]["fns_complete"]
    assert record["chunks"]["image"] == 12 and record["chunks"]["transform"] == 1  # numpy: 1
    assert xflipnslide.to_zarr is xflipnslide.export.zarr.to_zarr
    with pytest.raises(InvalidParameterError, match="mode="):
        tiles.fns.to_zarr(tmp_path / "u.zarr", mode="a")


def test_to_zarr_writes_zarr_2_stores_with_the_same_codec(tiles, tmp_path):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        path = tiles.isel(tile=slice(0, 80)).fns.to_zarr(tmp_path / "v2.zarr", zarr_format=2)
        back = xflipnslide.open_tiles(path)
    assert os.path.isfile(os.path.join(path, ".zmetadata"))
    (codec,) = back.image.encoding["compressors"]
    assert codec.codec_id == "zstd" and codec.level == 1
    np.testing.assert_array_equal(back.label.values, tiles.label[:80].values)
    os.remove(os.path.join(path, "label", "1.0.0"))
    with pytest.raises(IncompleteStoreError, match="1 of the 2 chunks of 'label'"):
        xflipnslide.open_tiles(path)


@pytest.mark.parametrize(
    ("array", "chunk", "lost"),
    [
        ("image", "c/1/0/0/0", "1 of the 12"),
        ("transform", "c/0", "1 of the 1"),
        ("label", "c/11/0/0", "1 of the 12"),
    ],
)
def test_open_tiles_refuses_a_store_with_a_lost_chunk(tiles, tmp_path, array, chunk, lost):
    path = tiles.fns.to_zarr(tmp_path / "t.zarr")
    os.remove(os.path.join(path, array, *chunk.split("/")))
    silent = xr.open_zarr(path)  # what xarray alone reads: fill values, without a word
    if array == "transform":
        assert (silent.transform.values == 0).all() and (tiles.transform.values != 0).any()
    if array == "image":
        assert (silent.image[40:80].values == 0).all()
    with pytest.raises(IncompleteStoreError, match=rf"{lost} chunks of '{array}' are missing"):
        xflipnslide.open_tiles(path)
    assert issubclass(IncompleteStoreError, InvalidTilesError)


def test_open_tiles_refuses_a_store_whose_writer_was_killed(tmp_path):
    target = tmp_path / "t.zarr"
    code = f"""
import os, signal
import zarr.storage
import xflipnslide
scene = xflipnslide.open_image(xflipnslide.sample_scene_path(), chunks={{"y": 200, "x": 200}})
tiles = scene.fns.tile(64, edge="pad").chunk({{"tile": 40}})
real_set, chunks = zarr.storage.LocalStore.set, []
async def set_then_die(self, key, value, *args, **kwargs):
    if "/c/" in key:
        chunks.append(key)
        if len(chunks) == 5:
            os.kill(os.getpid(), signal.SIGKILL)
    return await real_set(self, key, value, *args, **kwargs)
zarr.storage.LocalStore.set = set_then_die
tiles.fns.to_zarr({str(target)!r})
"""
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=300, cwd=HERE
    )
    assert done.returncode == -signal.SIGKILL, done.stderr
    assert not target.exists()  # nothing at the target
    (left,) = os.listdir(tmp_path)  # SIGKILL cannot clean up: a hidden temporary remains
    assert left.startswith(".t.zarr.")
    with pytest.raises(IncompleteStoreError, match="no completion record"):
        xflipnslide.open_tiles(tmp_path / left)
    # stores written without to_zarr carry no record either
    xflipnslide.open_image(xflipnslide.sample_scene_path()).fns.tile(64, edge="pad").to_dataset(
        name="image"
    ).to_zarr(tmp_path / "plain.zarr")
    with pytest.raises(IncompleteStoreError, match=r"tiles\.fns\.to_zarr"):
        xflipnslide.open_tiles(tmp_path / "plain.zarr")
    with pytest.raises(InvalidParameterError, match="no Zarr store"):
        xflipnslide.open_tiles(tmp_path / "nothing.zarr")


def test_cli_writes_and_reads_tile_stores_through_to_zarr_and_open_tiles(tmp_path, capsys):
    src = small_scene_file(tmp_path)
    store = tmp_path / "t.zarr"
    assert main(["tile", src, "--out", str(store), "--tile-size", "32", "--nodata", "0"]) == 0
    assert xflipnslide.open_tiles(store).sizes["tile"] > 0
    capsys.readouterr()  # the tile command's output (a progress bar on a slow machine)
    (chunk,) = glob.glob(os.path.join(store, "image", "c", "0", "*", "*", "*"))
    os.remove(chunk)
    out = tmp_path / "chips"
    assert main(["export", str(store), "--out", str(out)]) == 2
    errors = [line for line in capsys.readouterr().err.splitlines() if ": error: " in line]
    assert len(errors) == 1 and "chunks of 'image' are missing" in errors[0]
    assert not out.exists()


# --- 7. GeoTIFF chips carry a CRS -----------------------------------------


def test_geotiff_chips_without_a_crs_are_refused_unless_crs_is_given(tiles, tmp_path, capsys):
    bare = tiles.isel(tile=slice(0, None, 60)).drop_vars("spatial_ref")  # 8 across the scene
    assert bare.rio.crs is None
    with pytest.raises(InvalidParameterError, match=r"carry no CRS.*crs="):
        bare.fns.export_chips(tmp_path / "chips")
    assert os.listdir(tmp_path) == []
    out = bare.fns.export_chips(tmp_path / "chips", crs="EPSG:32621")
    with rasterio.open(os.path.join(out, "images", "0.tif")) as f:
        assert f.crs.to_epsg() == 32621
    with pytest.raises(InvalidParameterError, match="says otherwise"):
        tiles.fns.export_chips(tmp_path / "other", crs="EPSG:4326")
    store = bare.fns.to_zarr(tmp_path / "bare.zarr")
    argv = ["export", store, "--out", str(tmp_path / "cli")]
    assert main(argv) == 2
    assert "--crs" in capsys.readouterr().err
    assert main([*argv, "--crs", "EPSG:32621"]) == 0
    with rasterio.open(tmp_path / "cli" / "images" / "0.tif") as f:
        assert f.crs.to_epsg() == 32621


# --- 15. typed errors that name the fix -----------------------------------


def test_tfrecord_dataset_on_a_plain_folder_is_a_typed_error(tmp_path, tiles):
    plain = tmp_path / "records"
    plain.mkdir()
    (plain / "a.tfrecord").write_bytes(b"")
    with pytest.raises(InvalidParameterError, match="format='tfrecord'"):
        xflipnslide.tfrecord_dataset(plain)
    wds = tiles.isel(tile=slice(0, 4)).fns.export_chips(tmp_path / "wds", format="webdataset")
    with pytest.raises(InvalidParameterError, match="'webdataset' export"):
        xflipnslide.tfrecord_dataset(wds)


def test_cli_torchscript_errors_show_their_cause(tmp_path, capsys):
    torch = pytest.importorskip("torch")
    src, good = small_scene_file(tmp_path), str(tmp_path / "model.pt")
    # scripted in a fresh interpreter: in this one an earlier script of a
    # Conv2d would save under another (mangled) name
    code = f"import torch; torch.jit.script(torch.nn.Conv2d(3, 2, 1)).save({good!r})"
    subprocess.run([sys.executable, "-c", code], check=True, timeout=300)
    # a TorchScript archive whose code names a class it does not define
    broken = tmp_path / "broken.pt"
    with zipfile.ZipFile(good) as zin, zipfile.ZipFile(broken, "w") as zout:
        for name in zin.namelist():
            data = zin.read(name)
            # a type name no earlier TorchScript load in this process has cached
            data = data.replace(b"Conv2d", b"Cnv9zd")
            zout.writestr(name, b"" if name.endswith("conv.py") else data)
    eager = tmp_path / "eager.pt"
    torch.save(torch.nn.Conv2d(3, 2, 1), eager)
    expected = {
        broken: "RuntimeError: Unknown type name '__torch__.torch.nn.modules.conv.Cnv9zd': "
        "__torch__.torch.nn.modules.conv.Cnv9zd",
        eager: "it is a torch.save() checkpoint (a pickled module or state_dict), not "
        "TorchScript: save the model with torch.jit.script(model).save(path)",
    }
    for model, cause in expected.items():
        # A fresh interpreter: TorchScript caches the types it has compiled in
        # a process, so an earlier load of a Conv2d would mask the broken one.
        argv = ["predict", src, "--model", str(model), "--out", str(tmp_path / "p.tif")]
        done = subprocess.run(
            [sys.executable, "-m", "xflipnslide.cli", *argv],
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert done.returncode == 2, done.stderr
        err = done.stderr  # (torch may add a deprecation line)
        errors = [line for line in err.splitlines() if ": error: " in line]
        assert errors == [
            f"xflipnslide predict: error: cannot load {model} as TorchScript: {cause}"
        ]
    assert not (tmp_path / "p.tif").exists()
