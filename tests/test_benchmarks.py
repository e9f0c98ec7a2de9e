"""Every benchmark in benchmarks/ runs once on tiny sizes: a smoke test, not a timing."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

BENCH = os.path.join(os.path.dirname(__file__), os.pardir, "benchmarks")


def test_all_benchmarks_smoke():
    done = subprocess.run(
        [sys.executable, os.path.join(BENCH, "bench_all.py"), "--small"],
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert done.returncode == 0, done.stderr
    out = done.stdout
    for expected in (
        "tile-dask-store",
        "fns-dask",
        "untile blend=hann",
        "out of core",
        "summary",
        "tile_collection",
    ):
        assert expected in out, expected
    assert "tile (numpy) time / memcpy of the output" in out


@pytest.mark.slow
def test_classes_benchmark_quick():
    pytest.importorskip("torch")
    done = subprocess.run(
        [sys.executable, os.path.join(BENCH, "bench_classes.py"), "--quick"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    for expected in ("| tiling | split | seed | train | val | test |", "| flipnslide | stratified"):
        assert expected in done.stdout, expected
