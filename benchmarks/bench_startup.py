"""Benchmark: start-up — import time against xbatcher's, the CLI's ``--help``,
and the first tile/predict call with a cold and a warm numba cache.

Each measurement is a fresh interpreter (best of ``--repeat``); the cold
cache is an empty ``NUMBA_CACHE_DIR``, the warm one the same directory after
a first run.

    python benchmarks/bench_startup.py [--repeat 3] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

FIRST_CALL = """
import time, numpy as np, xarray as xr, warnings
start = time.perf_counter()
import xflipnslide
warnings.simplefilter("ignore")
scene = xr.DataArray(np.zeros((3, 256, 256), "float32"), dims=("band", "y", "x"))
scene.fns.tile(64)
scene.fns.preprocess()
scene.fns.tile(64, edge="pad").fns.untile()
print(time.perf_counter() - start)
"""


def timed(cmd: list[str], env=None) -> float:
    start = time.perf_counter()
    subprocess.run(cmd, check=True, capture_output=True, env={**os.environ, **(env or {})})
    return time.perf_counter() - start


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--json")
    args = p.parse_args(argv)
    py = sys.executable
    rows = {}
    for name, cmd in (
        ("python -c pass", [py, "-c", "pass"]),
        ("import xarray", [py, "-c", "import xarray"]),
        ("import xbatcher", [py, "-c", "import xbatcher"]),
        ("import xflipnslide", [py, "-c", "import xflipnslide"]),
        ("xflipnslide --help", [py, "-m", "xflipnslide.cli", "--help"]),
    ):
        rows[name] = min(timed(cmd) for _ in range(args.repeat))
    with tempfile.TemporaryDirectory() as cache:
        env = {"NUMBA_CACHE_DIR": cache}
        rows["first calls, cold numba cache"] = timed([py, "-c", FIRST_CALL], env)
        rows["first calls, warm numba cache"] = min(
            timed([py, "-c", FIRST_CALL], env) for _ in range(args.repeat)
        )
    print("start-up, fresh interpreters (seconds)")
    for name, sec in rows.items():
        print(f"  {name:<36}{sec:>7.2f}")
    ratio = (rows["import xflipnslide"] - rows["python -c pass"]) / (
        rows["import xbatcher"] - rows["python -c pass"]
    )
    print(
        f"import xflipnslide / import xbatcher (interpreter start excluded): {ratio:.2f} (target <= 1.3)"
    )
    if args.json:
        with open(args.json, "w") as f:
            json.dump({**rows, "import ratio": ratio}, f)
    return 0


if __name__ == "__main__":
    sys.exit(main())
