"""Benchmark: start-up — import time against xbatcher's, the CLI's ``--help``,
and a user's first ``tile`` with a cold and a warm numba cache.

Each measurement is a fresh interpreter (best of ``--repeat``). A cold
cache is a new, empty ``NUMBA_CACHE_DIR`` for every try; a warm one is the
directory a first run filled. The floor is what any numba user pays cold:
``import xarray`` (the command needs it anyway), ``import numba`` and one
trivial kernel compiled. The kernels a cold first ``tile`` compiles are
listed with their compile seconds (numba's event API).

    python benchmarks/bench_startup.py [--repeat 5] [--demo] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time

#: The first call a user makes (timed as a whole command, interpreter included).
FIRST_TILE = (
    "import xflipnslide, numpy as np, xarray as xr; "
    "xr.DataArray(np.zeros((3,512,512),'float32'), dims=('band','y','x')).fns.tile(256)"
)

#: The same command without the tile: what xarray (and the dask it imports
#: when a DataArray is made) cost on their own.
WITHOUT_TILE = FIRST_TILE.split(".fns.tile")[0]

#: A first tile past the numpy twin's budget (``_jit.TWIN_BUDGET``, 64 MiB
#: of tiles): 3 x 2048² gives 316 MiB, which compiles ``gather_tiles``.
LARGE_TILE = FIRST_TILE.replace("512,512", "2048,2048")

#: The first calls of a session: tile, preprocess, untile.
FIRST_CALLS = """
import numpy as np, xarray as xr, warnings
import xflipnslide
warnings.simplefilter("ignore")
scene = xr.DataArray(np.zeros((3, 256, 256), "float32"), dims=("band", "y", "x"))
scene.fns.tile(64)
scene.fns.preprocess()
scene.fns.tile(64, edge="pad").fns.untile()
"""

#: Any numba user's cold cost: imports, and one trivial kernel compiled.
FLOOR = """
import numpy as np, xarray
from numba import njit
@njit(nogil=True)  # a -c script has no file to cache beside
def copy(a, out):
    for i in range(a.shape[0]):
        out[i] = a[i]
a = np.zeros(8, np.uint32)
copy(a, a.copy())
"""

#: A cold first tile again, listing what numba compiled and how long each took.
COMPILES = """
import json, time
from numba.core import event
rec = event.RecordingListener()
event.register("numba:compile", rec)
start = time.perf_counter()
exec(FIRST_TILE)
total = time.perf_counter() - start
rows, starts = [], {}
for ts, e in rec.buffer:
    key = (e.data["dispatcher"].py_func.__name__, str(e.data["args"]))
    if e.is_start:
        starts[key] = ts
    else:
        rows.append([key[0], key[1][:90], ts - starts[key]])
print(json.dumps({"total": total, "compiles": rows}))
"""


def timed(cmd: list[str], env=None) -> tuple[float, float]:
    """Wall and CPU (user + system) seconds of one fresh process: CPU time
    is the figure to read on a busy machine, where waiting for a core
    inflates wall time."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    subprocess.run(cmd, check=True, capture_output=True, env={**os.environ, **(env or {})})
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime


def best(runs) -> tuple[float, float]:
    """The least wall and the least CPU time of several runs."""
    runs = list(runs)
    return min(r[0] for r in runs), min(r[1] for r in runs)


def cold_and_warm(cmd: list[str], repeat: int, warm: int | None = None) -> tuple:
    """Best of ``repeat`` runs, each with a new, empty numba cache (cold), and
    best of ``warm`` (default ``repeat``) runs on the cache the last of them
    filled (warm; ``None`` when ``warm=0``)."""
    warm = repeat if warm is None else warm
    runs = []
    for k in range(repeat):
        with tempfile.TemporaryDirectory() as cache:
            env = {"NUMBA_CACHE_DIR": cache}
            runs.append(timed(cmd, env))
            if k == repeat - 1 and warm:
                return best(runs), best(timed(cmd, env) for _ in range(warm))
    return best(runs), None


def cold(cmd: list[str], repeat: int) -> tuple[float, float]:
    """Best of ``repeat`` runs, each with a new, empty numba cache."""
    return cold_and_warm(cmd, repeat, warm=0)[0]


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repeat", type=int, default=5)
    p.add_argument("--demo", action="store_true", help="also time `xflipnslide demo`")
    p.add_argument("--json")
    args = p.parse_args(argv)
    py, n = sys.executable, args.repeat
    rows = {}
    for name, cmd in (
        ("python -c pass", [py, "-c", "pass"]),
        ("import xarray", [py, "-c", "import xarray"]),
        ("import xbatcher", [py, "-c", "import xbatcher"]),
        ("import xflipnslide", [py, "-c", "import xflipnslide"]),
        ("xflipnslide --help", [py, "-m", "xflipnslide.cli", "--help"]),
    ):
        rows[name] = best(timed(cmd) for _ in range(n))
    rows["the first-tile command without .fns.tile"] = best(
        timed([py, "-c", WITHOUT_TILE]) for _ in range(n)
    )
    rows["numba floor (import, one trivial kernel), cold"] = cold([py, "-c", FLOOR], n)
    # cold runs fill the cache the warm runs then use (no extra filling run)
    (
        rows["first tile, cold numba cache"],
        rows["first tile, warm numba cache"],
    ) = cold_and_warm([py, "-c", FIRST_TILE], n)
    (
        rows["first tile of 3 x 2048², cold numba cache"],
        rows["first tile of 3 x 2048², warm numba cache"],
    ) = cold_and_warm([py, "-c", LARGE_TILE], n)
    (
        rows["tile + preprocess + untile, cold"],
        rows["tile + preprocess + untile, warm"],
    ) = cold_and_warm([py, "-c", FIRST_CALLS], n)
    if args.demo:
        with tempfile.TemporaryDirectory() as out:
            demo = [py, "-m", "xflipnslide.cli", "demo", "--out", os.path.join(out, "d")]
            rows["xflipnslide demo, cold"], rows["xflipnslide demo, warm"] = cold_and_warm(demo, 1)
    with tempfile.TemporaryDirectory() as cache:
        done = subprocess.run(
            [py, "-c", f"FIRST_TILE = {LARGE_TILE!r}\n{COMPILES}"],
            check=True,
            capture_output=True,
            text=True,
            env={**os.environ, "NUMBA_CACHE_DIR": cache},
        )
    compiles = json.loads(done.stdout.splitlines()[-1])
    print(f"start-up, fresh interpreters (seconds, best of {n}): wall, CPU")
    for name, (wall, cpu) in rows.items():
        print(f"  {name:<48}{wall:>7.2f}{cpu:>7.2f}")
    # CPU seconds: wall time on a busy machine mostly measures waiting for a core
    ratio = (rows["import xflipnslide"][1] - rows["python -c pass"][1]) / (
        rows["import xbatcher"][1] - rows["python -c pass"][1]
    )
    print(
        f"import xflipnslide / import xbatcher, CPU s (interpreter start excluded): {ratio:.2f} "
        "(target <= 1.3)"
    )
    for tile, what, base in (
        ("first tile", "the command without the tile", "the first-tile command without .fns.tile"),
        (
            "first tile of 3 x 2048²",
            "the numba floor",
            "numba floor (import, one trivial kernel), cold",
        ),
    ):
        first, base = rows[f"{tile}, cold numba cache"], rows[base]
        print(
            f"{tile}, cold: {first[0] - base[0]:.2f} s wall, {first[1] - base[1]:.2f} s CPU "
            f"above {what}"
        )
    print(f"what the cold first 3 x 2048² tile compiles ({compiles['total']:.2f} s in all):")
    for kernel, signature, sec in compiles["compiles"]:
        print(f"  {sec:6.2f}  {kernel} {signature}")
    if args.json:
        with open(args.json, "w") as f:
            walls = {name: wall for name, (wall, _) in rows.items()}
            cpus = {f"{name} (CPU)": cpu for name, (_, cpu) in rows.items()}
            json.dump({**walls, **cpus, "import ratio": ratio, "compiles": compiles}, f)
    return 0


if __name__ == "__main__":
    sys.exit(main())
