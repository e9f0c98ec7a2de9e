"""Each benchmark in ci/ runs once on tiny sizes: a smoke test, not a timing."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

CI = os.path.join(os.path.dirname(__file__), os.pardir, "ci")


@pytest.mark.parametrize(
    ("script", "args", "expect"),
    [
        (
            "bench_tile.py",
            ["--size", "256", "--tile-size", "32", "--repeat", "1"],
            "tile-dask-store",
        ),
    ],
)
def test_benchmark_smoke(script, args, expect):
    done = subprocess.run(
        [sys.executable, os.path.join(CI, script), *args],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr
    assert "x memcpy" in done.stdout
    assert expect in done.stdout
