"""Benchmark: ``predict`` streams a scene larger than memory, Zarr to Zarr,
in memory that does not grow with the scene.

A float32 3 x N² scene of smooth data (so Zarr compresses it: the disk holds
little) in 512² chunks; ``predict`` with a 1x1 convolution (a torch module,
3 -> 3 classes), T = 256, to a Zarr store; each size in a fresh process
(threaded scheduler, 2 threads). Reports seconds, seconds per Mpixel and
peak RSS, as a share of the scene's bytes and per 4x pixels.

    python benchmarks/bench_predict_scale.py [--sizes 4096,8192,16384] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import sys
import tempfile
import time
import warnings

import numpy as np
from _runner import run_fresh


def smooth_block(block_info=None):
    """One chunk of a smooth scene: sines of the global pixel position."""
    (y0, y1), (x0, x1) = block_info[None]["array-location"][1:]
    y = np.arange(y0, y1, dtype=np.float32)[:, None] / 97.0
    x = np.arange(x0, x1, dtype=np.float32)[None, :] / 131.0
    base = np.sin(y) * np.cos(x)
    return np.stack([base, base * 0.5 + 0.1, np.cos(y + x)]).astype(np.float32)


def write_scene(path: str, size: int, chunk: int = 512) -> None:
    import dask.array as da
    import xarray as xr

    data = da.map_blocks(
        smooth_block,
        chunks=((3,), (chunk,) * (size // chunk), (chunk,) * (size // chunk)),
        dtype=np.float32,
    )
    xr.DataArray(data, dims=("band", "y", "x")).to_dataset(name="image").to_zarr(path, mode="w")


def run_one(size: int, T: int, src: str, dst: str) -> dict:
    import dask
    import torch
    import xarray as xr

    import xflipnslide

    warnings.simplefilter("ignore", xflipnslide.XFlipNSlideWarning)
    torch.set_num_threads(1)  # the scheduler's threads run the model side by side
    torch.manual_seed(0)
    model = torch.nn.Conv2d(3, 3, 1)
    dask.config.set(scheduler="threads", num_workers=2)
    scene = xr.open_zarr(src)["image"]
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # interpreter, torch, dask
    start = time.perf_counter()
    pred = scene.fns.predict(model, tile_size=T, classes=3)
    pred.to_dataset(name="p").to_zarr(dst, mode="w")
    seconds = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    return {
        "size": size,
        "seconds": seconds,
        "peak": peak,
        "peak_above": peak - base,
        "scene_bytes": 3 * size * size * 4,
    }


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sizes", default="4096,8192,16384")
    p.add_argument("--tile-size", type=int, default=256)
    p.add_argument("--tmp", default=None, help="where the Zarr stores go (default: a temp dir)")
    p.add_argument("--one", type=int, help=argparse.SUPPRESS)
    p.add_argument("--src", help=argparse.SUPPRESS)
    p.add_argument("--dst", help=argparse.SUPPRESS)
    p.add_argument("--json")
    args = p.parse_args(argv)
    if args.one:
        print(json.dumps(run_one(args.one, args.tile_size, args.src, args.dst)))
        return 0
    rows = []
    with tempfile.TemporaryDirectory(dir=args.tmp) as tmp:
        for size in (int(s) for s in args.sizes.split(",")):
            src, dst = os.path.join(tmp, f"scene-{size}.zarr"), os.path.join(tmp, "pred.zarr")
            write_scene(src, size)
            rows.append(
                run_fresh(
                    __file__,
                    "--one",
                    size,
                    "--tile-size",
                    args.tile_size,
                    "--src",
                    src,
                    "--dst",
                    dst,
                )
            )
            shutil.rmtree(src, ignore_errors=True)
            shutil.rmtree(dst, ignore_errors=True)
    print(f"predict, Zarr 3 x N² (smooth, 512² chunks) -> 1x1 conv -> Zarr, T = {args.tile_size}")
    print(
        f"{'N':>7}{'seconds':>9}{'s/Mpx':>8}{'peak MiB':>10}{'above base':>11}"
        f"{'peak/scene':>12}{'above/scene':>12}{'x per 4x px':>13}"
    )
    for k, r in enumerate(rows):
        growth = r["peak"] / rows[k - 1]["peak"] if k else float("nan")
        print(
            f"{r['size']:>7}{r['seconds']:>9.1f}{r['seconds'] / r['size'] ** 2 * 1e6:>8.3f}"
            f"{r['peak'] / 2**20:>10.0f}{r['peak_above'] / 2**20:>11.0f}"
            f"{r['peak'] / r['scene_bytes']:>12.1%}{r['peak_above'] / r['scene_bytes']:>12.1%}"
            f"{growth:>13.2f}"
        )
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f)
    return 0


if __name__ == "__main__":
    sys.exit(main())
