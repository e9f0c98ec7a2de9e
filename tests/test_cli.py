"""The command line, run in-process."""

from __future__ import annotations

import os

import numpy as np
import pytest
import xarray as xr

from xflipnslide.cli import main


def test_demo_writes_three_stores_and_prints_table(tmp_path, capsys):
    assert main(["demo", "--out", str(tmp_path), "--tile-size", "128"]) == 0
    out = capsys.readouterr().out
    assert "flipnslide       85" in out
    assert "overlap          49" in out
    assert "no_overlap       16" in out
    assert "identity 16, rot270 9, rot180 12, rot90 12" in out
    tiles = xr.open_zarr(tmp_path / "flipnslide.zarr")["tiles"]
    assert tiles.sizes == {"tile": 85, "band": 3, "y": 128, "x": 128}
    assert tiles.dtype == np.uint16
    assert not any(p.endswith(".partial") for p in os.listdir(tmp_path))


def test_tile_command_round_trip(tmp_path, scene, capsys):
    src = tmp_path / "scene.zarr"
    scene.to_dataset(name="image").to_zarr(src)
    out = tmp_path / "tiles.zarr"
    assert main(["tile", str(src), "--out", str(out), "--tile-size", "64", "--edge", "pad"]) == 0
    tiles = xr.open_zarr(out)["image"]
    np.testing.assert_array_equal(tiles.values, scene.fns.tile(64, edge="pad").values)
    # refuses to overwrite without --overwrite
    assert main(["tile", str(src), "--out", str(out)]) == 2
    assert "--overwrite" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["tile", "missing.tif", "--out", "o.zarr"], "no such file"),
        (["tile", "{src}", "--out", "{out}", "--tile-size", "30"], "multiple of 4"),
        (["tile", "{bad}", "--out", "{out}"], "cannot read"),
    ],
)
def test_bad_input_one_line_no_output(tmp_path, scene, capsys, argv, message):
    src = tmp_path / "s.zarr"
    scene.to_dataset(name="image").to_zarr(src)
    bad = tmp_path / "bad.nc"
    bad.write_text("not a netcdf file")
    out = tmp_path / "o.zarr"
    argv = [a.format(src=src, out=out, bad=bad) for a in argv]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert message in err
    assert len(err.splitlines()) == 1
    assert "Traceback" not in err
    assert not out.exists()
    assert not (tmp_path / "o.zarr.partial").exists()
