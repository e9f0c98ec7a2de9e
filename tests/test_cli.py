"""The command line, run in-process."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys

import numpy as np
import pytest
import xarray as xr

from xflipnslide.cli import main


def test_demo_writes_stores_figures_and_table(tmp_path, capsys):
    assert main(["demo", "--out", str(tmp_path), "--tile-size", "128"]) == 0
    out = capsys.readouterr().out
    assert "11510 nodata pixels" in out
    assert "flipnslide       85" in out
    assert "0:16  1:9  2:12  3:12  4:9  5:9  6:9  7:9" in out
    assert "overlap          49" in out and "no_overlap       16" in out
    tiles = xr.open_zarr(tmp_path / "flipnslide.zarr")["image"]
    assert tiles.sizes == {"tile": 85, "band": 3, "y": 128, "x": 128}
    assert tiles.dtype == np.float32 and "fns_mean" in tiles.coords
    figures = [tmp_path / name for name in ("scene.png", "tiles.png", "samples.png")]
    if importlib.util.find_spec("matplotlib") is None:  # figures skipped, with a warning
        assert not any(path.exists() for path in figures)
    else:
        assert all(path.stat().st_size > 10_000 for path in figures)
    assert not any(p.endswith(".partial") for p in os.listdir(tmp_path))


def test_tile_command_writes_within_the_memory_given(tmp_path, scene, monkeypatch):
    from xflipnslide.cli import scenes

    seen = []
    real = scenes.to_zarr

    def spy(*args, **kwargs):
        seen.append(kwargs.get("memory"))
        return real(*args, **kwargs)

    monkeypatch.setattr(scenes, "to_zarr", spy)
    src = tmp_path / "scene.zarr"
    scene.to_dataset(name="image").to_zarr(src)
    out = tmp_path / "tiles.zarr"
    argv = ["tile", str(src), "--out", str(out), "--tile-size", "64", "--chunks", "64"]
    assert main([*argv, "--memory", "1MiB"]) == 0
    assert seen == ["1MiB"]
    np.testing.assert_allclose(
        xr.open_zarr(out)["image"].values,
        scene.fns.preprocess().fns.tile(64).values,
        rtol=1e-5,
        atol=1e-5,
    )


def test_tile_command_round_trip(tmp_path, scene, capsys):
    src = tmp_path / "scene.zarr"
    scene.to_dataset(name="image").to_zarr(src)
    out = tmp_path / "tiles.zarr"
    argv = [
        "tile",
        str(src),
        "--out",
        str(out),
        "--tile-size",
        "64",
        "--edge",
        "pad",
        "--no-preprocess",
    ]
    assert main(argv) == 0
    tiles = xr.open_zarr(out)["image"]
    np.testing.assert_array_equal(tiles.values, scene.fns.tile(64, edge="pad").values)
    # preprocessing is the default, with the nodata given
    assert (
        main(
            [
                "tile",
                str(src),
                "--out",
                str(out),
                "--nodata",
                "0",
                "--tile-size",
                "64",
                "--overwrite",
            ]
        )
        == 0
    )
    ready = xr.open_zarr(out)["image"]
    np.testing.assert_allclose(
        ready.values, scene.fns.preprocess(nodata=0).fns.tile(64).values, rtol=1e-5, atol=1e-5
    )
    # refuses to overwrite without --overwrite
    assert main(["tile", str(src), "--out", str(out)]) == 2
    assert "--overwrite" in capsys.readouterr().err


def test_tile_command_on_geotiff(tmp_path):
    from stac_items import landsat_crop

    out = tmp_path / "t.zarr"
    assert (
        main(
            [
                "tile",
                landsat_crop("78", "B4"),
                "--out",
                str(out),
                "--tile-size",
                "64",
                "--nodata",
                "0",
            ]
        )
        == 0
    )
    assert xr.open_zarr(out)["image"].sizes["tile"] == len(
        __import__("xflipnslide").plan_tiles((235, 201), 64)
    )


def test_stac_command_on_local_api(tmp_path, capsys):
    from stac_items import make_item
    from stac_server import StacServer

    items = [make_item("77"), make_item("78")]
    with StacServer([i.to_dict() for i in items]) as url:
        bbox = [str(v) for v in items[0].bbox]
        out = tmp_path / "s.zarr"
        argv = [
            "stac",
            "--bbox",
            *bbox,
            "--datetime",
            "2020-05",
            "--collection",
            "landsat-test",
            "--band",
            "red",
            "--band",
            "green",
            "--catalog",
            url,
            "--no-sign",
            "--out",
            str(out),
            "--tile-size",
            "64",
        ]
        assert main(argv) == 0
        assert "1 dates composited" in capsys.readouterr().out
        tiles = xr.open_zarr(out)["image"]
        assert tiles.sizes["band"] == 2 and not np.isnan(tiles.values).any()
        argv[argv.index("2020-05")] = "2019-01"
        assert main([*argv, "--overwrite"]) == 2
        assert "found no items" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["tile", "missing.tif", "--out", "o.zarr"], "no such file"),
        (["tile", "{src}", "--out", "{out}", "--tile-size", "30"], "multiple of 4"),
        (["tile", "{bad}", "--out", "{out}"], "cannot read"),
        (["tile", "{src}", "--out", "{out}", "--strategy", "random"], "invalid choice"),
        (["tile", "{src}", "--out", "{out}", "--tile-size", "big"], "must be a positive integer"),
        (["tile", "{src}", "--out", "{out}", "--memory", "lots"], "must be a memory size"),
    ],
)
def test_bad_input_one_line_no_output(tmp_path, scene, capsys, argv, message):
    src = tmp_path / "s.zarr"
    scene.to_dataset(name="image").to_zarr(src)
    bad = tmp_path / "bad.nc"
    bad.write_text("not a netcdf file")
    out = tmp_path / "o.zarr"
    argv = [a.format(src=src, out=out, bad=bad) for a in argv]
    try:
        code = main(argv)
    except SystemExit as exit_:  # argparse's own errors
        code = exit_.code
    assert code == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1 and "Traceback" not in err
    assert not out.exists() and not (tmp_path / "o.zarr.partial").exists()


def test_tile_command_on_netcdf(tmp_path, scene):
    src = tmp_path / "scene.nc"
    scene.isel(band=0, drop=True).drop_vars("spatial_ref").to_dataset(name="red").to_netcdf(
        src, engine="scipy"
    )
    out = tmp_path / "t.zarr"
    assert main(["tile", str(src), "--out", str(out), "--tile-size", "64", "--nodata", "0"]) == 0
    assert xr.open_zarr(out)["image"].dims == ("tile", "y", "x")  # one name everywhere


def test_cli_constants_are_the_package_s():
    from xflipnslide import cli, io, plan, schema

    assert cli.STRATEGIES is plan.STRATEGIES
    assert cli.PLANETARY_COMPUTER is io.PLANETARY_COMPUTER
    assert cli.VARIABLE is schema.IMAGE


def test_python_m_runs_the_command():
    done = subprocess.run(
        [sys.executable, "-m", "xflipnslide.cli", "--version"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("xflipnslide ")


def test_cli_stores_use_the_tile_store_codec(tmp_path, scene):
    src = tmp_path / "scene.tif"
    scene.rio.to_raster(src)
    out = tmp_path / "t.zarr"
    assert main(["tile", str(src), "--out", str(out), "--tile-size", "64", "--edge", "pad"]) == 0
    codecs = xr.open_zarr(out)["image"].encoding["compressors"]
    assert [type(c).__name__ for c in codecs] == ["ZstdCodec"] and codecs[0].level == 1
