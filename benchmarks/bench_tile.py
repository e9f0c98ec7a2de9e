"""Benchmark: Flip-n-Slide tiling into memory, as ratios to baselines of the same run.

Every measurement runs in its own fresh process so its peak RSS is its own.
Baselines, measured in this run on this machine:

* ``memcpy``: allocate an array of the output's size and copy the same number
  of bytes into it (``np.empty`` + ``np.copyto``), the floor for any method
  that materialises the tiles;
* ``numpy slicing``: best-case numpy, a Python loop that slices each window
  and writes it through ``np.rot90``/flips into a preallocated output.

Measured: ``tile`` on a numpy-backed DataArray (the kernels on 1 thread and
on all cores) and on a dask-backed one (threaded scheduler, ``.compute()``
and ``dask.array.store`` into a preallocated array).

Usage::

    python benchmarks/bench_tile.py                      # the reference case: 3 x 5120 x 5120 float32, T = 256
    python benchmarks/bench_tile.py --size 512 --tile-size 64 --repeat 1   # a smoke run
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import time

import numpy as np
from _runner import run_fresh

MODES = (
    "memcpy",
    "numpy-slicing",
    "tile-numpy-1thread",
    "tile-numpy",
    "tile-dask",
    "tile-dask-store",
    "tile-dask-load",
    "zarr-read-then-tile-numpy",
    "zarr-tile-load",
)


def _scene(args):
    rng = np.random.default_rng(0)
    return rng.random((args.bands, args.size, args.size), dtype=np.float32)


def _run_one(mode: str, args) -> dict:
    """Run ``mode`` ``args.repeat`` times in this process; best time and peak RSS."""
    import warnings

    import xarray as xr

    import xflipnslide
    from xflipnslide import apply_transform

    warnings.simplefilter("ignore", xflipnslide.XFlipNSlideWarning)

    x = _scene(args)
    T = args.tile_size
    plan = xflipnslide.plan_tiles(x.shape[1:], T, "flipnslide")
    out_shape = (len(plan), args.bands, T, T)
    out_bytes = int(np.prod(out_shape)) * 4

    if mode == "memcpy":
        src = np.ones(out_shape, dtype=np.float32)

        def job():
            out = np.empty(out_shape, dtype=np.float32)
            np.copyto(out, src)
            return out

    elif mode == "numpy-slicing":

        def job():
            out = np.empty(out_shape, dtype=np.float32)
            for k, (r, c, code) in enumerate(zip(plan.rows, plan.cols, plan.codes, strict=False)):
                out[k] = apply_transform(x[:, r : r + T, c : c + T], code)
            return out

    elif mode.startswith("tile-numpy"):
        if mode.endswith("1thread"):
            os.environ["XFLIPNSLIDE_THREADS"] = "1"
        scene = xr.DataArray(x, dims=("band", "y", "x"))
        xflipnslide.tile(scene[:, : 2 * T, : 2 * T], T)  # compile/load

        def job():
            return xflipnslide.tile(scene, T).data

    elif mode.startswith("zarr"):
        import tempfile

        import dask

        dask.config.set(scheduler="threads")
        tmp = tempfile.mkdtemp()
        chunks = {"y": min(1024, args.size), "x": min(1024, args.size)}
        xr.DataArray(x, dims=("band", "y", "x")).to_dataset(name="s").chunk(chunks).to_zarr(
            f"{tmp}/s.zarr"
        )
        del x
        xflipnslide.tile(
            xr.DataArray(np.zeros((1, 2 * T, 2 * T), "float32"), dims=("band", "y", "x")), T
        )

        if mode == "zarr-read-then-tile-numpy":

            def job():
                return xr.open_zarr(f"{tmp}/s.zarr")["s"].load().fns.tile(T).data

        else:  # zarr-tile-load

            def job():
                return xr.open_zarr(f"{tmp}/s.zarr")["s"].fns.tile(T).fns.load().data

    else:
        import dask
        import dask.array as da

        dask.config.set(scheduler="threads")
        # Chunks as a reader (Zarr, GeoTIFF) gives them: contiguous, in memory.
        chunks = (args.bands, min(1024, args.size), min(1024, args.size))
        data = da.random.default_rng(0).random(x.shape, dtype=np.float32, chunks=chunks).persist()
        del x
        scene = xr.DataArray(data, dims=("band", "y", "x"))
        scene.isel(y=slice(0, 2 * T), x=slice(0, 2 * T)).fns.tile(T).compute()  # compile/load

        if mode == "tile-dask":

            def job():
                return scene.fns.tile(T).values

        elif mode == "tile-dask-load":

            def job():
                return scene.fns.tile(T).fns.load().data

        else:

            def job():
                tiles = scene.fns.tile(T).data
                out = np.empty(tiles.shape, dtype=tiles.dtype)
                da.store(tiles, out, lock=False)
                return out

    times = []
    for _ in range(args.repeat):
        start = time.perf_counter()
        out = job()
        times.append(time.perf_counter() - start)
        del out
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    in_bytes = args.bands * args.size**2 * 4
    return {
        "mode": mode,
        "seconds": min(times),
        "peak_rss": peak,
        "in_bytes": in_bytes,
        "out_bytes": out_bytes,
    }


def _table(rows: list[dict]) -> str:
    by = {r["mode"]: r for r in rows}
    memcpy = by["memcpy"]["seconds"]
    slicing = by.get("numpy-slicing", {"seconds": float("nan")})["seconds"]
    io = rows[0]["in_bytes"] + rows[0]["out_bytes"]
    lines = [
        f"{'mode':<22}{'seconds':>9}{'x memcpy':>10}{'x numpy':>9}{'peak RSS GiB':>14}{'x (in+out)':>12}",
    ]
    for r in rows:
        lines.append(
            f"{r['mode']:<22}{r['seconds']:>9.3f}{r['seconds'] / memcpy:>10.2f}"
            f"{r['seconds'] / slicing:>9.2f}{r['peak_rss'] / 2**30:>14.2f}{r['peak_rss'] / io:>12.2f}"
        )
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--size", type=int, default=5120, help="scene side in pixels")
    p.add_argument("--bands", type=int, default=3)
    p.add_argument("--tile-size", type=int, default=256)
    p.add_argument("--repeat", type=int, default=3, help="runs per mode; the best is kept")
    p.add_argument("--modes", default=",".join(MODES))
    p.add_argument("--one", help=argparse.SUPPRESS)
    p.add_argument("--json", help="also write the rows to this JSON file")
    args = p.parse_args(argv)
    if args.one:
        print(json.dumps(_run_one(args.one, args)))
        return 0

    rows = []
    for mode in args.modes.split(","):
        rows.append(
            run_fresh(
                __file__,
                "--one",
                mode,
                "--size",
                args.size,
                "--bands",
                args.bands,
                "--tile-size",
                args.tile_size,
                "--repeat",
                args.repeat,
            )
        )
    n_in, n_out = rows[0]["in_bytes"], rows[0]["out_bytes"]
    print(
        f"flipnslide tiling, float32 {args.bands} x {args.size} x {args.size}, T = {args.tile_size}: "
        f"input {n_in / 2**30:.2f} GiB, output {n_out / 2**30:.2f} GiB, {os.cpu_count()} cores"
    )
    print(_table(rows))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
