"""Bad inputs and faults, each kept fixed: crashes, hangs, silent changes of
data, invisible warnings and raw errors that once leaked."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import warnings

import dask.array as da
import numpy as np
import pytest
import xarray as xr
from conftest import DATA

import xflipnslide
from xflipnslide import (
    DataDroppedWarning,
    DataFilledWarning,
    EmptySubsetError,
    InvalidParameterError,
    InvalidTilesError,
    XFlipNSlideWarning,
)
from xflipnslide.cli import main

HERE = os.path.dirname(__file__)
ROOT = os.path.dirname(HERE)


def run_python(code: str, timeout: float = 120, env=None) -> subprocess.CompletedProcess:
    """Run ``code`` in a fresh interpreter (with the tests on sys.path)."""
    return subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=HERE,
        env={**os.environ, **(env or {})},
    )


# --- 0. crashes and data loss ----------------------------------------------


def test_load_stac_in_a_fresh_process_without_rioxarray_imported(tmp_path):
    from stac_items import make_item

    path = tmp_path / "items.json"
    path.write_text(json.dumps([make_item("77").to_dict()]))
    code = f"""
import json, sys, pystac
import xflipnslide
items = [pystac.Item.from_dict(d) for d in json.load(open({str(path)!r}))]
scene = xflipnslide.load_stac(items=items, bands=["red"], sign=False)
print(scene.rio.crs.to_epsg())
"""
    done = run_python(code)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "32621"


def test_overwrite_refuses_anything_but_a_tile_store(tmp_path, scene, capsys):
    src = tmp_path / "scene.tif"
    scene.rio.to_raster(src)
    notes = tmp_path / "notes"
    notes.mkdir()
    (notes / "keep.txt").write_text("mine")
    argv = ["tile", str(src), "--tile-size", "64", "--no-preprocess", "--overwrite", "--out"]
    assert main([*argv, str(notes)]) == 2
    assert "not a tile store" in capsys.readouterr().err
    assert (notes / "keep.txt").read_text() == "mine"
    text = tmp_path / "notes.txt"
    text.write_text("mine")
    assert main([*argv, str(text)]) == 2
    assert text.read_text() == "mine" and not (tmp_path / "notes.txt.partial").exists()
    store = tmp_path / "t.zarr"
    assert main([*argv, str(store)]) == 0
    assert main([*argv, str(store)]) == 0  # our own store is replaced
    assert sorted(os.listdir(tmp_path)) == ["notes", "notes.txt", "scene.tif", "t.zarr"]


@pytest.mark.parametrize("how", ["sigterm", "ctrl-c"])
def test_interrupted_cli_leaves_no_partial(tmp_path, scene, monkeypatch, capsys, how):
    src = tmp_path / "scene.tif"
    scene.rio.to_raster(src)

    def interrupted(self, *args, **kwargs):
        os.makedirs(args[0], exist_ok=True)
        (__import__("pathlib").Path(args[0]) / "half").write_text("x")
        if how == "sigterm":
            os.kill(os.getpid(), signal.SIGTERM)
        raise KeyboardInterrupt

    monkeypatch.setattr(xr.Dataset, "to_zarr", interrupted)
    out = tmp_path / "t.zarr"
    assert main(["tile", str(src), "--out", str(out), "--tile-size", "64"]) == 130
    assert os.listdir(tmp_path) == ["scene.tif"]
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # handler restored


def test_import_and_tile_where_numba_cannot_cache():
    code = """
import numba.core.caching as caching
caching.CacheImpl._locator_classes = []   # no writable cache location anywhere
import numpy as np, xarray as xr, xflipnslide
t = xr.DataArray(np.arange(64 * 64.0).reshape(1, 64, 64), dims=("band", "y", "x")).fns.tile(32)
print(t.sizes["tile"])
"""
    done = run_python(code)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "13"


class _SilentServer:
    """Accepts connections on loopback and never answers."""

    def __enter__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.conns = []
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()
        return f"http://127.0.0.1:{self.sock.getsockname()[1]}"

    def _accept(self):
        try:
            while True:
                self.conns.append(self.sock.accept()[0])
        except OSError:
            pass

    def __exit__(self, *exc):
        for c in self.conns:
            c.close()
        self.sock.close()


def test_silent_catalog_times_out_with_a_clear_error(capsys):
    from xflipnslide.io import CatalogError

    with _SilentServer() as url:
        with pytest.raises(CatalogError, match="could not be searched"):
            xflipnslide.load_stac(bbox=(0, 0, 1, 1), catalog=url, sign=False, timeout=0.5)
        argv = ["stac", "--bbox", "0", "0", "1", "1", "--datetime", "2020", "--catalog", url]
        assert main([*argv, "--no-sign", "--timeout", "0.5", "--out", "x.zarr"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err


def test_unreachable_catalog_is_one_line(capsys):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again: nothing listens
    argv = ["stac", "--bbox", "0", "0", "1", "1", "--datetime", "2020", "--no-sign"]
    assert main([*argv, "--catalog", f"http://127.0.0.1:{port}", "--out", "x.zarr"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "could not be searched" in err


def test_small_chunks_are_rechunked_with_a_warning(scene):
    band = scene.isel(band=[0]).astype("float32")
    band = band.where(band != 0)
    lazy = band.chunk({"y": 32, "x": 32})
    with pytest.warns(XFlipNSlideWarning, match="much smaller than the fill's reach"):
        out = lazy.fns.preprocess(reach=128, standardize=False)
    assert max(out.chunksizes["y"]) == 256  # 2 * reach
    np.testing.assert_array_equal(out.values, band.fns.preprocess(standardize=False).values)


# --- 1. silent wrong results ------------------------------------------------


def test_dataset_preprocess_leaves_integer_labels_alone(scene, backend):
    label = xr.DataArray(
        (np.arange(560 * 600) % 5).reshape(560, 600).astype("uint8"),
        dims=("y", "x"),
        coords={"y": scene.y, "x": scene.x},
    )
    ds = backend(xr.Dataset({"image": scene.astype("float32"), "label": label}))
    with pytest.warns(DataFilledWarning) if backend.name == "numpy" else warnings.catch_warnings():
        out = ds.fns.preprocess(nodata=0)
    assert out.label.dtype == np.uint8
    np.testing.assert_array_equal(out.label.values, label.values)
    assert out.image.dtype == np.float32 and "image_fns_mean" in out.coords
    named = ds.fns.preprocess(nodata=0, variables=["image"])
    np.testing.assert_array_equal(named.label.values, label.values)
    with pytest.raises(InvalidParameterError, match="variables="):
        ds.fns.preprocess(variables=["nope"])


def test_non_finite_values_are_missing(backend):
    data = np.arange(2 * 40 * 40, dtype="float32").reshape(2, 40, 40)
    data[0, 3, 4] = np.inf
    data[1, 5, 6] = -np.inf
    scene = backend(xr.DataArray(data, dims=("band", "y", "x")))
    out = scene.fns.preprocess()
    assert np.isfinite(out.fns_mean.values).all() and np.isfinite(out.values).all()
    assert not bool(out.fns_observed.values[3, 4]) and bool(out.fns_observed.values[0, 0])


def test_untile_finds_spatial_dims_by_name(scene):
    tiles = scene.astype("float32").fns.tile(64, edge="pad")
    back = tiles.transpose("tile", "x", "band", "y").fns.untile()
    assert back.dims == ("band", "y", "x")
    np.testing.assert_array_equal(back.values, scene.values)


def test_untile_validates_codes_and_origins_before_any_pixel(scene):
    tiles = scene.fns.tile(64, edge="pad")
    bad = tiles.assign_coords(transform=tiles.transform.where(tiles.tile != 3, 9))
    with pytest.raises(InvalidTilesError, match="codes run from 0 to 7"):
        bad.fns.untile()
    far = tiles.assign_coords(row=tiles.row.where(tiles.tile != 5, 10_000))
    with pytest.raises(InvalidTilesError, match="outside"):
        far.fns.untile()
    with pytest.raises(InvalidTilesError, match="outside"):
        far.fns.untile(like=scene)


def test_bad_statistics_nodata_and_labels_raise(scene):
    with pytest.raises(InvalidParameterError, match="std must be >= 0"):
        scene.fns.preprocess(stats={"mean": 0.5, "std": -2})
    with pytest.raises(InvalidParameterError, match="must be finite"):
        scene.fns.preprocess(stats={"mean": 0.5, "std": float("nan")})
    with pytest.raises(InvalidParameterError, match="nodata must be one number"):
        scene.fns.preprocess(nodata="0")
    with pytest.raises(InvalidParameterError, match="nodata must be one number"):
        scene.fns.preprocess(nodata=[0, 1])
    pytest.importorskip("torch")
    label = xr.full_like(scene.isel(band=0, drop=True), np.nan, dtype="float32")
    tiles = xr.Dataset({"image": scene, "label": label}).fns.tile(64, edge="pad")
    with pytest.raises(InvalidParameterError, match="contain NaN"):
        next(iter(tiles.fns.torch_loader(4, label="label")))


# --- 1. (item) tile stores reopen exactly -----------------------------------


def test_tile_store_reopens_with_the_written_values_and_dtype(tmp_path, scene):
    import rioxarray

    src = tmp_path / "declared.tif"
    scene.rio.write_nodata(0, encoded=False).rio.to_raster(src)
    raw = rioxarray.open_rasterio(src)  # _FillValue in attrs, as most users open
    assert raw.attrs.get("_FillValue") == 0
    for opened in (raw, xflipnslide.open_image(src)):
        tiles = opened.fns.tile(64, edge="pad")
        tiles.to_dataset(name="image").to_zarr(tmp_path / "t.zarr", mode="w")
        back = xr.open_zarr(tmp_path / "t.zarr")["image"]
        assert back.dtype == np.uint16
        np.testing.assert_array_equal(back.values, tiles.values)
        assert back.rio.nodata == 0  # still discoverable
        tiles.to_dataset(name="image").to_netcdf(tmp_path / "t.nc")
        with xr.open_dataset(tmp_path / "t.nc") as nc:
            assert nc["image"].dtype == np.uint16
    stored = xflipnslide.open_image(src)
    stored.to_dataset(name="s").to_zarr(tmp_path / "s.zarr", mode="w")
    assert xr.open_zarr(tmp_path / "s.zarr")["s"].dtype == np.uint16


# --- 2. geometry readable from what was written -----------------------------


def stores_written_both_ways(tmp_path, scene) -> list:
    """The same tiles written by the CLI and as the README once showed."""
    src = tmp_path / "scene.tif"
    scene.rio.to_raster(src)
    out = tmp_path / "cli.zarr"
    assert main(["tile", str(src), "--out", str(out), "--tile-size", "64", "--edge", "pad"]) == 0
    readme = tmp_path / "readme.zarr"
    scene.fns.tile(64, edge="pad").to_dataset(name="image").to_zarr(readme)
    return [xr.open_zarr(path) for path in (out, readme)]


def test_tiles_however_written_untile_and_split(tmp_path, scene):
    for ds in stores_written_both_ways(tmp_path, scene):
        assert ds.fns.untile().image.sizes == {"band": 3, "y": 560, "x": 600}
        with pytest.warns(DataDroppedWarning):
            parts = ds.fns.split(seed=0, block_size=128)
        assert set(parts) == {"train", "val", "test"}


def test_tiles_however_written_feed_torch(tmp_path, scene):
    pytest.importorskip("torch")
    for ds in stores_written_both_ways(tmp_path, scene):
        assert next(iter(ds.fns.torch_loader(4))).shape == (4, 3, 64, 64)


def test_mixed_scenes_are_refused(scene):
    a = scene.fns.tile(64, edge="pad")
    shifted = scene.assign_coords(x=scene.x + 1e5)
    b = shifted.fns.tile(64, edge="pad")
    with pytest.raises(InvalidTilesError, match="several scenes"):
        xr.concat([a, b], "tile").fns.untile()
    plain = scene.drop_vars(["x", "y"])
    twice = xr.concat([plain.fns.tile(64, edge="pad")] * 2, "tile")
    with pytest.raises(InvalidTilesError, match="repeat a window"):
        twice.fns.untile()


# --- 4. warnings a user sees ------------------------------------------------


def test_data_loss_warns_and_empty_subsets_raise(scene):
    with pytest.warns(DataDroppedWarning, match="edge='crop'"):
        tiles = scene.fns.tile(64)
    with pytest.warns(DataFilledWarning, match="filled from their nearest"):
        scene.fns.preprocess(nodata=0)
    with pytest.raises(EmptySubsetError, match="got no tile"):
        tiles.fns.split(fractions={"train": 0.98, "test": 0.02}, seed=0, block_size=512)
    with pytest.raises(InvalidParameterError, match="block_size=1 is smaller"):
        tiles.fns.split(block_size=1)
    with pytest.raises(InvalidParameterError, match="fractions must map"):
        tiles.fns.split(fractions={})
    with pytest.raises(InvalidParameterError, match="seed must be an int"):
        tiles.fns.split(seed=None)
    with warnings.catch_warnings():
        warnings.simplefilter("error", XFlipNSlideWarning)  # users can filter them
        with pytest.raises(DataDroppedWarning):
            scene.fns.tile(64)


# --- 5. workers never hang --------------------------------------------------


def test_torch_workers_after_dask_computed(tmp_path):
    pytest.importorskip("torch")
    code = f"""
import numpy as np, xarray as xr, xflipnslide, torch
scene = xr.DataArray(np.random.default_rng(0).random((2, 256, 256), "float32"),
                     dims=("band", "y", "x")).chunk({{"y": 128, "x": 128}})
scene.fns.tile(64).to_dataset(name="image").to_zarr({str(tmp_path / "t.zarr")!r})
tiles = xr.open_zarr({str(tmp_path / "t.zarr")!r})
loader = tiles.fns.torch_loader(8, num_workers=2, seed=0)
n = sum(b.shape[0] for b in loader)
print(n, tiles.sizes["tile"])
"""
    done = run_python(code, timeout=240)
    assert done.returncode == 0, done.stderr
    n, total = done.stdout.split()
    assert n == total


# --- 6. the CLI as documented -----------------------------------------------


def test_cli_version_verbose_anywhere_and_defaults_in_help(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["--version"])
    assert exit_.value.code == 0
    assert capsys.readouterr().out.startswith("xflipnslide ")
    with pytest.raises(SystemExit):
        main(["tile", "--help"])
    help_text = capsys.readouterr().out.split("options:")[1]
    for option in ("--tile-size", "--strategy", "--edge", "--chunks", "--nodata"):
        assert "(default:" in help_text[help_text.index(option) :][:300], option
    assert main(["tile", "missing.tif", "--out", "o.zarr", "-v"]) == 2
    for bad in (["--chunks", "0"], ["--chunks", "-5"]):
        with pytest.raises(SystemExit) as exit_:
            main(["tile", "in.tif", "--out", "o.zarr", *bad])
        assert exit_.value.code == 2
    assert "positive integer" in capsys.readouterr().err


@pytest.mark.slow
def test_cli_writes_without_third_party_warnings(tmp_path, scene):
    src = tmp_path / "scene.tif"
    scene.rio.to_raster(src)
    code = f"""
from xflipnslide.cli import main
raise SystemExit(main(["tile", {str(src)!r}, "--out", {str(tmp_path / "t.zarr")!r},
                       "--tile-size", "64", "--edge", "pad", "--nodata", "0"]))
"""
    done = run_python(code)
    assert done.returncode == 0, done.stderr
    assert "ZarrUserWarning" not in done.stderr and "Consolidated" not in done.stderr


def test_corrupt_geotiff_names_the_cause(tmp_path, capsys):
    bad = tmp_path / "bad.tif"
    good = os.path.join(DATA, "landsat8", "LC08_L1TP_224077_20200518_crop_B2.tif")
    blob = __import__("pathlib").Path(good).read_bytes()
    bad.write_bytes(blob[: len(blob) // 2])
    assert main(["tile", str(bad), "--out", str(tmp_path / "o.zarr"), "--tile-size", "64"]) == 2
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if ": error: " in line]
    assert len(errors) == 1 and err.rstrip().splitlines()[-1] == errors[0]
    assert "See previous exception" not in err and "Traceback" not in err


# --- 9. typed errors ---------------------------------------------------------


def test_typed_errors_where_raw_ones_leaked(scene):
    tiles = scene.fns.tile(64, edge="pad")
    with pytest.raises(InvalidTilesError, match="0 tiles"):
        tiles.isel(tile=[]).fns.untile()
    with pytest.raises(InvalidTilesError, match="0 tiles"):
        tiles.chunk().isel(tile=[]).fns.untile()
    with pytest.raises(InvalidParameterError, match="chunks must be a positive"):
        tiles.chunk().fns.untile(chunks=0)
    lazy = da.from_array(np.zeros((1, 256, 256), "float32"), chunks=64)
    unknown = lazy[:, lazy[0, :, 0] >= 0]  # boolean indexing: unknown chunk sizes
    with pytest.raises(InvalidParameterError, match="unknown chunk sizes"):
        xr.DataArray(unknown, dims=("band", "y", "x")).fns.tile(64)


def test_raster_bands_with_null_scale():
    from stac_items import make_item

    item = make_item("77")
    for asset in item.assets.values():
        asset.extra_fields["raster:bands"][0]["scale"] = None
        asset.extra_fields["raster:bands"][0]["offset"] = None
    from xflipnslide.io import band_scaling

    assert band_scaling([item], ["red"])["red"]["scale"] == 1.0


# --- 10. workers with a memory limit ----------------------------------------


def test_gdal_cache_is_bounded_here_and_on_workers():
    from xflipnslide.io import GDAL_CACHEMAX_MB

    assert os.environ["GDAL_CACHEMAX"] == str(GDAL_CACHEMAX_MB) == "128"
    import distributed

    with (
        distributed.LocalCluster(
            n_workers=1,
            threads_per_worker=1,
            processes=True,
            memory_limit="1GiB",
            dashboard_address=":0",
        ) as cluster,
        distributed.Client(cluster) as client,
    ):
        seen = client.run(lambda: os.environ.get("GDAL_CACHEMAX"))
    assert set(seen.values()) == {os.environ["GDAL_CACHEMAX"]}


def test_gdal_cache_set_by_the_user_is_kept():
    code = "import os, xflipnslide; print(os.environ['GDAL_CACHEMAX'])"
    done = run_python(code, env={"GDAL_CACHEMAX": "64"})
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "64"
