"""Benchmark: out of core — peak memory and graph size as the scene grows.

For each size N, a float32 3 x N x N scene with 2 % scattered gaps is
written to Zarr (512 x 512 chunks), then streamed through
``open_zarr -> preprocess -> tile(256) -> to_zarr`` in a fresh process on the
threaded scheduler. Reported: peak RSS (and above the interpreter's own,
measured after imports), the scene size, and the number of tasks of the
graph per input chunk (flat = graph size linear in the chunk count).

    python benchmarks/bench_scale.py [--sizes 2048,4096,8192] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import tempfile
import time

from _runner import run_fresh


def _one(size: int, workdir: str, tile_size: int) -> dict:
    import dask.array as da
    import numpy as np
    import xarray as xr

    import xflipnslide  # noqa: F401

    src = os.path.join(workdir, f"in{size}.zarr")
    x = da.random.default_rng(0).random((3, size, size), chunks=(3, 512, 512), dtype=np.float32)
    x = da.where(x > 0.02, x, np.nan)
    xr.DataArray(x, dims=("band", "y", "x")).to_dataset(name="v").to_zarr(src, mode="w")
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    scene = xr.open_zarr(src)["v"]
    tiles = scene.fns.preprocess().fns.tile(tile_size, tile_chunks="64MiB")
    n_tasks = len(tiles.data.__dask_graph__())
    n_chunks = scene.data.npartitions
    start = time.perf_counter()
    tiles.to_dataset(name="t").to_zarr(os.path.join(workdir, f"out{size}.zarr"), mode="w")
    seconds = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    return {
        "size": size,
        "scene_bytes": 3 * size * size * 4,
        "peak": peak,
        "base": base,
        "tasks": n_tasks,
        "chunks": n_chunks,
        "seconds": seconds,
        "tiles": tiles.sizes["tile"],
    }


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sizes", default="2048,4096,8192")
    p.add_argument("--tile-size", type=int, default=256)
    p.add_argument("--one", type=int, help=argparse.SUPPRESS)
    p.add_argument("--workdir", help=argparse.SUPPRESS)
    p.add_argument("--json")
    args = p.parse_args(argv)
    if args.one:
        print(json.dumps(_one(args.one, args.workdir, args.tile_size)))
        return 0
    rows = []
    with tempfile.TemporaryDirectory() as workdir:
        for size in (int(s) for s in args.sizes.split(",")):
            rows.append(
                run_fresh(
                    __file__, "--one", size, "--workdir", workdir, "--tile-size", args.tile_size
                )
            )
    first = rows[0]
    print(
        f"out of core: Zarr -> preprocess -> tile({args.tile_size}) -> Zarr, 512² input chunks, {os.cpu_count()} cores"
    )
    print(
        f"{'N':>6}{'scene GiB':>11}{'peak RSS GiB':>14}{'above base':>12}{'x smallest':>12}{'tasks/chunk':>13}{'seconds':>9}"
    )
    for r in rows:
        above = r["peak"] - r["base"]
        print(
            f"{r['size']:>6}{r['scene_bytes'] / 2**30:>11.2f}{r['peak'] / 2**30:>14.2f}{above / 2**30:>12.2f}"
            f"{r['peak'] / first['peak']:>12.2f}{r['tasks'] / r['chunks']:>13.1f}{r['seconds']:>9.1f}"
        )
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f)
    return 0


if __name__ == "__main__":
    sys.exit(main())
