"""Everyday use: one GeoTIFF per band, quiet command-line output, predict with
training statistics, outputs checked before any work, and the help texts."""

from __future__ import annotations

import argparse
import glob
import os
import subprocess
import sys
import warnings

import numpy as np
import pytest
import rasterio
import xarray as xr
from conftest import raise_if_dask_computes
from rasterio.transform import from_origin

import xflipnslide
from xflipnslide import InvalidParameterError
from xflipnslide.cli import _parser, main

SHARED = "/work/shared/data/landsat8"
ORIGIN = from_origin(739995.0, -2808975.0, 30.0, 30.0)


def write_tif(path, data, *, transform=ORIGIN, crs="EPSG:32621", nodata=None, descriptions=None):
    """A GeoTIFF written with rasterio alone: ``data`` is (band, y, x)."""
    data = np.asarray(data)
    with rasterio.open(
        path,
        "w",
        driver="GTiff",
        width=data.shape[2],
        height=data.shape[1],
        count=data.shape[0],
        dtype=data.dtype,
        crs=crs,
        transform=transform,
        nodata=nodata,
    ) as f:
        f.write(data)
        for k, text in enumerate(descriptions or [], start=1):
            f.set_band_description(k, text)
    return str(path)


def read_band(path, band=1):
    with rasterio.open(path) as f:
        return f.read(band)


@pytest.fixture
def band_files(tmp_path):
    """Three single-band uint16 files on one grid, named as Landsat names them."""
    rng = np.random.default_rng(7)
    paths = []
    for band in ("B2", "B3", "B4"):
        data = rng.integers(100, 5000, (1, 64, 128), dtype=np.uint16)
        paths.append(write_tif(tmp_path / f"LC08_L1TP_224078_20200518_{band}.TIF", data))
    return paths


# --- open_image on a list of files ---------------------------------------------------------


def test_band_files_stack_lazily_with_labels_from_their_names(band_files):
    with raise_if_dask_computes(0):
        stack = xflipnslide.open_image(band_files)
    assert stack.dims == ("band", "y", "x") and stack.shape == (3, 64, 128)
    assert list(stack.band.values) == ["B2", "B3", "B4"]
    assert stack.chunks[0] == (3,)  # "auto": all bands in each chunk, as for one file
    assert stack.rio.crs.to_epsg() == 32621
    assert tuple(stack.rio.transform())[:6] == (30.0, 0.0, 739995.0, 0.0, -30.0, -2808975.0)
    for k, path in enumerate(band_files):
        np.testing.assert_array_equal(stack.values[k], read_band(path))
    assert stack.dtype == np.uint16


def test_band_files_chunks_are_the_stack_s(band_files):
    stack = xflipnslide.open_image(band_files, chunks={"band": -1, "y": 32, "x": 64})
    assert stack.chunks == ((3,), (32, 32), (64, 64))
    eager = xflipnslide.open_image(band_files, chunks=None)
    assert isinstance(eager.data, np.ndarray)
    np.testing.assert_array_equal(eager.values[2], read_band(band_files[2]))


def test_label_rule_common_prefix_at_a_separator(tmp_path):
    one = np.ones((1, 4, 4), np.uint8)
    plain = [write_tif(tmp_path / f"{b}.TIF", one) for b in ("B2", "B3")]  # prefix "B": no cut
    assert list(xflipnslide.open_image(plain).band.values) == ["B2", "B3"]
    assert list(xflipnslide.open_image(plain[:1]).band.values) == ["B2"]  # a list of one
    named = [write_tif(tmp_path / f"scene-{b}.tif", one) for b in ("red", "nir")]
    assert list(xflipnslide.open_image(named).band.values) == ["red", "nir"]


def test_descriptions_and_multiband_files_in_a_stack(tmp_path):
    rgb = write_tif(
        tmp_path / "s_rgb.tif",
        np.arange(48, dtype=np.uint16).reshape(3, 4, 4),
        descriptions=["red", "green", "blue"],
    )
    pair = write_tif(tmp_path / "s_swir.tif", np.zeros((2, 4, 4), np.uint16))
    nir = write_tif(tmp_path / "s_nir.tif", np.full((1, 4, 4), 9, np.uint16))
    stack = xflipnslide.open_image([rgb, pair, nir])
    assert list(stack.band.values) == ["red", "green", "blue", "swir_b1", "swir_b2", "nir"]
    np.testing.assert_array_equal(stack.values[:3], np.arange(48).reshape(3, 4, 4))
    np.testing.assert_array_equal(stack.values[5], np.full((4, 4), 9))


def test_band_names_override_and_duplicates_are_refused(tmp_path, band_files):
    stack = xflipnslide.open_image(band_files, band_names=["blue", "green", "red"])
    assert list(stack.band.values) == ["blue", "green", "red"]
    with pytest.raises(InvalidParameterError, match=r"one label per band \(3\)"):
        xflipnslide.open_image(band_files, band_names=["blue", "green"])
    with pytest.raises(InvalidParameterError, match="two bands are labelled 'red'"):
        xflipnslide.open_image(band_files, band_names=["red", "green", "red"])
    # the same file name in two folders: the same label, refused naming both files
    other = tmp_path / "other"
    other.mkdir()
    twin = write_tif(other / os.path.basename(band_files[0]), np.ones((1, 64, 128), np.uint16))
    with pytest.raises(InvalidParameterError, match="two bands are labelled") as info:
        xflipnslide.open_image([band_files[0], twin])
    assert band_files[0] in str(info.value) and twin in str(info.value)
    # a single file keeps its own rule: b1, b2, ... and band_names checked
    single = xflipnslide.open_image(band_files[0], band_names=["blue"])
    assert list(single.band.values) == ["blue"]
    assert list(xflipnslide.open_image(band_files[0]).band.values) == ["b1"]


@pytest.mark.parametrize(
    ("change", "shown"),
    [
        ({"data": np.ones((1, 64, 120), np.uint16)}, "shape 64 x 120"),
        ({"transform": from_origin(740025.0, -2808975.0, 30.0, 30.0)}, "740025.0"),
        ({"crs": "EPSG:32622"}, "EPSG:32622"),
    ],
)
def test_files_on_other_grids_are_refused_naming_them(tmp_path, band_files, change, shown):
    options = {"data": np.ones((1, 64, 128), np.uint16), **change}
    odd = write_tif(tmp_path / "odd_B5.TIF", options.pop("data"), **options)
    with pytest.raises(InvalidParameterError, match="not on the grid") as info:
        xflipnslide.open_image([*band_files, odd])
    text = str(info.value)
    assert odd in text and band_files[0] in text and shown in text


def test_files_whose_values_differ_in_meaning_are_refused(tmp_path, band_files):
    small = write_tif(tmp_path / "x_B6.TIF", np.ones((1, 64, 128), np.uint8))
    with pytest.raises(InvalidParameterError, match="one dtype") as info:
        xflipnslide.open_image([band_files[0], small])
    assert small in str(info.value)
    data = np.full((1, 64, 128), 7, np.uint16)
    data[0, 0, 0] = 0
    zero = write_tif(tmp_path / "x_B7.TIF", data, nodata=0)
    with pytest.raises(InvalidParameterError, match="nodata") as info:
        xflipnslide.open_image([band_files[0], zero])
    assert zero in str(info.value) and "masked=True" in str(info.value)
    masked = xflipnslide.open_image([band_files[0], zero], masked=True)
    assert np.isnan(masked.values[1, 0, 0]) and masked.values[1, 0, 1] == 7
    np.testing.assert_array_equal(masked.values[0], read_band(band_files[0]))
    with pytest.raises(InvalidParameterError, match="no such file"):
        xflipnslide.open_image([band_files[0], str(tmp_path / "missing.TIF")])
    with pytest.raises(InvalidParameterError, match="empty list"):
        xflipnslide.open_image([])


@pytest.mark.skipif(not os.path.isdir(SHARED), reason="needs /work/shared/data")
def test_real_landsat_band_files():
    paths = [glob.glob(f"{SHARED}/LC08_L1TP_224078_*_{b}.TIF")[0] for b in ("B2", "B3", "B4")]
    stack = xflipnslide.open_image(paths)
    assert list(stack.band.values) == ["B2", "B3", "B4"]
    assert stack.sizes == {"band": 3, "y": 1860, "x": 2041}
    values = stack.values
    for k, path in enumerate(paths):
        np.testing.assert_array_equal(values[k], read_band(path))
    elsewhere = glob.glob(f"{SHARED}/LC08_L1TP_224077_*_B4.TIF")[0]  # the next row
    with pytest.raises(InvalidParameterError, match="not on the grid") as info:
        xflipnslide.open_image([*paths[:2], elsewhere])
    assert elsewhere in str(info.value)


# --- the command line on band files --------------------------------------------------------


def test_cli_tile_takes_several_band_files(tmp_path, band_files, capsys):
    out = tmp_path / "tiles.zarr"
    argv = [*band_files, "--out", str(out), "--tile-size", "32", "--strategy", "no_overlap"]
    assert main(["tile", *argv, "--no-preprocess"]) == 0
    assert "wrote 8 tiles of 32 px" in capsys.readouterr().out
    tiles = xflipnslide.open_tiles(out)["image"]
    assert list(tiles.band.values) == ["B2", "B3", "B4"]
    expected = np.stack([read_band(p) for p in band_files])
    for k in range(8):  # row-major 32 px windows of the 64 x 128 grid
        i, j = divmod(k, 4)
        window = expected[:, i * 32 : (i + 1) * 32, j * 32 : (j + 1) * 32]
        np.testing.assert_array_equal(tiles.values[k], window)
    named = [*argv, "--overwrite", "--band-name", "blue", "--band-name", "green"]
    assert main(["tile", *named, "--band-name", "red"]) == 0
    assert list(xflipnslide.open_tiles(out).band.values) == ["blue", "green", "red"]


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--variable", "image"], "--variable names a variable of a Zarr or netCDF input"),
        (["--label", "label"], "--label names a variable of a Zarr or netCDF input"),
        (["{odd}"], "not on the grid"),
        (["{store}"], "is a Zarr store: give it on its own"),
        (["--band-name", "red"], "one label per band (3)"),
    ],
)
def test_cli_band_file_mistakes_are_one_line(tmp_path, band_files, capsys, extra, message):
    odd = write_tif(tmp_path / "odd.TIF", np.ones((1, 8, 8), np.uint16))
    store = tmp_path / "scene.zarr"
    xr.Dataset({"image": (("y", "x"), np.ones((4, 4)))}).to_zarr(store)
    extra = [a.format(odd=odd, store=store) for a in extra]
    out = tmp_path / "t.zarr"
    assert main(["tile", *band_files, *extra, "--out", str(out), "--tile-size", "32"]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1
    assert not out.exists()


def test_cli_band_name_on_a_store_is_refused(tmp_path, capsys):
    store = tmp_path / "scene.zarr"
    xr.Dataset({"image": (("y", "x"), np.ones((4, 4)))}).to_zarr(store)
    argv = ["tile", str(store), "--band-name", "red", "--out", str(tmp_path / "t.zarr")]
    assert main(argv) == 2
    assert "--band-name labels the bands of GeoTIFF inputs" in capsys.readouterr().err


# --- quiet output --------------------------------------------------------------------------


def test_cli_shows_no_third_party_warnings_for_text_band_labels(tmp_path, scene):
    src = tmp_path / "scene.zarr"
    labelled = scene.assign_coords(band=np.array(["red", "green", "blue"]))  # <U5
    assert labelled.band.dtype == np.dtype("<U5")
    with warnings.catch_warnings():  # zarr's own note on writing <U5 (the input, not ours)
        warnings.simplefilter("ignore")
        labelled.to_dataset(name="image").to_zarr(src)
    assert xr.open_zarr(src).band.dtype == np.dtype("<U5")
    out = tmp_path / "tiles.zarr"
    argv = ["tile", str(src), "--out", str(out), "--tile-size", "128", "--edge", "pad"]
    done = subprocess.run(
        [sys.executable, "-m", "xflipnslide.cli", *argv, "--nodata", "0"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    warning_lines = [line for line in lines if "Warning" in line]
    assert warning_lines, done.stderr  # the package's own (filled gaps) are shown
    assert all(line.startswith("xflipnslide: ") for line in warning_lines), done.stderr
    assert "UnstableSpecificationWarning" not in done.stderr
    assert list(xflipnslide.open_tiles(out).band.values) == ["red", "green", "blue"]


def test_cli_names_a_library_s_warning_after_the_library(capsys):
    from xflipnslide.cli import output

    class LibraryWarning(UserWarning):
        pass

    LibraryWarning.__module__ = "somelib.core"
    with warnings.catch_warnings():
        output.quiet_third_party()
        warnings.warn("a library's note", LibraryWarning, stacklevel=1)
        xflipnslide.errors.warn("the package's own", xflipnslide.DataDroppedWarning)
    err = capsys.readouterr().err.splitlines()
    assert err == [
        "somelib: LibraryWarning: a library's note",
        "xflipnslide: DataDroppedWarning: the package's own",
    ]


# --- predict --stats -----------------------------------------------------------------------


def identity_model(tmp_path) -> str:
    import torch

    net = torch.nn.Conv2d(3, 3, 1, bias=False)
    with torch.no_grad():
        net.weight.copy_(torch.eye(3).reshape(3, 3, 1, 1))
    path = str(tmp_path / "identity.pt")
    torch.jit.script(net).save(path)
    return path


def landsat_like(folder, seed: int, low: int) -> list[str]:
    rng = np.random.default_rng(seed)
    os.makedirs(folder, exist_ok=True)
    return [
        write_tif(
            os.path.join(folder, f"LC08_{seed}_{b}.TIF"),
            rng.integers(low, low + 2000, (1, 64, 64), dtype=np.uint16),
        )
        for b in ("B2", "B3", "B4")
    ]


def test_cli_predict_standardises_with_the_training_statistics(tmp_path, capsys):
    train = landsat_like(tmp_path / "train", 1, 100)
    scene = landsat_like(tmp_path / "scene", 2, 3000)
    tiles = tmp_path / "train.zarr"
    assert main(["tile", *train, "--out", str(tiles), "--tile-size", "32"]) == 0
    model, out = identity_model(tmp_path), tmp_path / "pred.tif"
    argv = ["predict", *scene, "--model", model, "--out", str(out), "--tile-size", "32"]
    assert main([*argv, "--stats", str(tiles)]) == 0
    raw = np.stack([read_band(p).astype(np.float64) for p in train])
    mean, std = raw.mean(axis=(1, 2)), raw.std(axis=(1, 2))
    expected = (np.stack([read_band(p) for p in scene]) - mean[:, None, None]) / std[:, None, None]
    with rasterio.open(out) as f:
        np.testing.assert_allclose(f.read(), expected, rtol=1e-4, atol=1e-4)
    # without --stats the scene's own: another map
    assert main([*argv, "--overwrite"]) == 0
    with rasterio.open(out) as f:
        assert abs(float(f.read().mean())) < 1e-3


def test_cli_predict_stats_mistakes(tmp_path, capsys):
    scene = landsat_like(tmp_path / "scene", 2, 3000)
    model, out = identity_model(tmp_path), tmp_path / "pred.tif"
    plain = tmp_path / "plain.zarr"
    xr.Dataset({"image": (("band", "y", "x"), np.ones((3, 4, 4)))}).to_zarr(plain)
    argv = ["predict", *scene, "--model", model, "--out", str(out), "--tile-size", "32"]
    for extra, message in [
        (["--stats", str(plain)], "without fns_mean/fns_std"),
        (["--stats", scene[0]], "--stats reads a tile store or a preprocessed scene"),
        (["--stats", str(tmp_path / "none.zarr")], "no such file or folder"),
        (["--stats", str(plain), "--no-preprocess"], "--no-preprocess skips"),
        (["--variable", "image"], "--variable names a variable of a Zarr or netCDF input"),
    ]:
        assert main([*argv, *extra]) == 2, extra
        err = capsys.readouterr().err.strip()
        assert message in err and len(err.splitlines()) == 1, (extra, err)
    assert not out.exists()


# --- the output is checked before any work -------------------------------------------------


def test_every_command_refuses_an_existing_output_before_any_work(tmp_path, monkeypatch, capsys):
    import importlib

    from xflipnslide.cli import commands

    demo = importlib.import_module("xflipnslide.cli.demo")  # the module, not the command

    calls = []

    def counting(name):
        def work(*args, **kwargs):
            calls.append(name)
            raise AssertionError(f"{name} ran before the output was checked")

        return work

    for module, name in [
        (commands, "open_inputs"),
        (commands, "open_stats"),
        (commands, "load_stac"),
        (commands, "open_tiles"),
        (commands, "export_chips"),
        (commands, "require"),
        (commands, "_load_model"),
        (commands, "prepare_and_tile"),
        (demo, "open_image"),
        (demo, "preprocess"),
    ]:
        monkeypatch.setattr(module, name, counting(name))
    taken = tmp_path / "taken.zarr"
    taken.mkdir()
    export = tmp_path / "export"
    export.mkdir()
    tif = tmp_path / "taken.tif"
    tif.write_text("the user's")
    (tmp_path / "demo").mkdir()
    (tmp_path / "demo" / "flipnslide.zarr").mkdir()  # not a tile store: never replaced
    runs = {
        "tile": ["tile", "in.tif", "--out", str(taken)],
        "stac": ["stac", "--bbox", "0", "0", "1", "1", "--datetime", "2020", "--out", str(taken)],
        "export": ["export", "in.zarr", "--out", str(export)],
        "predict": ["predict", "in.tif", "--model", "m.pt", "--out", str(tif), "--stats", "s"],
        "demo": ["demo", "--out", str(tmp_path / "demo")],
    }
    for name, argv in runs.items():
        assert main(argv) == 2, name
        err = capsys.readouterr().err
        assert "exists" in err or "not a tile store" in err, (name, err)
    assert calls == []
    assert tif.read_text() == "the user's"


# --- help ----------------------------------------------------------------------------------


def _parsers():
    top = _parser()
    sub = next(a for a in top._actions if isinstance(a, argparse._SubParsersAction))
    return {"xflipnslide": top, **sub.choices}


def test_every_option_has_help_and_no_none_default_is_shown():
    parsers = _parsers()
    assert set(parsers) == {"xflipnslide", "demo", "tile", "stac", "export", "predict"}
    for name, parser in parsers.items():
        for action in parser._actions:
            assert action.help and action.help.strip(), (name, action.dest)
        text = parser.format_help()
        assert "(default: None)" not in text and "(default: False)" not in text, name
    tile = " ".join(parsers["tile"].format_help().split())
    assert "output Zarr store --tile-size" in tile  # required: no default shown
    assert "tile size in pixels (default: 256)" in tile
    assert "(default: the one the file declares)" in tile
