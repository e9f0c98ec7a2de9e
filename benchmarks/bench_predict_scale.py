"""Benchmark: ``predict`` streams a scene larger than memory, Zarr to Zarr
(or to a COG), in memory that does not grow with the scene.

A float32 3 x N² scene of smooth data in steps of 1/8 (so Zarr compresses
it: the disk holds little) in 512² chunks; ``predict`` with a 1x1
convolution (a torch module, 3 -> 3 classes), T = 256, written by
``--writer``: ``fns`` (``xflipnslide.to_zarr``, chunk row by chunk row on
the package's scheduler), ``xarray`` (``Dataset.to_zarr``: dask's own
order) or ``cog`` (``xflipnslide.to_cog``). Each size runs in a fresh
process (2 threads) after a warm-up prediction of a 1024² scene through the
same writer (numba's kernels, torch's and the thread pools' start-up: the
"warm base"). Reports seconds, seconds per Mpixel, peak RSS and the peak
above the warm base, as a share of the scene's bytes and per 4x pixels.

    python benchmarks/bench_predict_scale.py [--sizes 4096,8192,16384]
        [--writer fns|xarray|cog] [--chunks 512] [--batch-size N] [--json out.json]
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
    bands = np.stack([base, base * 0.5 + 0.1, np.cos(y + x)])
    return (np.round(8 * bands) / 8).astype(np.float32)


def write_scene(path: str, size: int, chunk: int = 512) -> None:
    import dask.array as da
    import xarray as xr

    sides = (chunk,) * (size // chunk) + ((size % chunk,) if size % chunk else ())
    data = da.map_blocks(smooth_block, chunks=((3,), sides, sides), dtype=np.float32)
    xr.DataArray(data, dims=("band", "y", "x")).to_dataset(name="image").to_zarr(path, mode="w")


def _write(pred, dst: str, writer: str) -> None:
    import xflipnslide

    shutil.rmtree(dst, ignore_errors=True)
    if os.path.isfile(dst):
        os.remove(dst)
    if writer == "fns":
        xflipnslide.to_zarr(pred, dst)
    elif writer == "xarray":
        pred.to_dataset(name="p").to_zarr(dst, mode="w")
    else:  # a COG needs a grid: 30 m pixels in UTM
        import rioxarray  # noqa: F401  (the .rio accessor)

        h, w = pred.sizes["y"], pred.sizes["x"]
        grid = {"y": 1e6 - 30.0 * np.arange(h), "x": 4e5 + 30.0 * np.arange(w)}
        xflipnslide.to_cog(pred.assign_coords(grid).rio.write_crs("EPSG:32633"), dst)


def run_one(
    size: int, T: int, src: str, dst: str, writer: str, chunks=None, batch_size=None
) -> dict:
    import dask
    import torch
    import xarray as xr

    import xflipnslide
    from xflipnslide._core.predict import ModelRunner

    warnings.simplefilter("ignore", xflipnslide.XFlipNSlideWarning)
    torch.set_num_threads(1)  # the scheduler's threads run the model side by side
    torch.manual_seed(0)
    model = torch.nn.Conv2d(3, 3, 1)
    dask.config.set(scheduler="threads", num_workers=2)
    warm = xr.DataArray(smooth_block({None: {"array-location": [(0, 3), (0, 1024), (0, 1024)]}}))
    warm = warm.rename(dim_0="band", dim_1="y", dim_2="x").chunk({"y": 512, "x": 512})
    _write(warm.fns.predict(model, tile_size=T, classes=3), dst, writer)
    scene = xr.open_zarr(src)["image"]
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # warm: kernels, pools
    start = time.perf_counter()
    pred = scene.fns.predict(model, tile_size=T, classes=3, chunks=chunks, batch_size=batch_size)
    _write(pred, dst, writer)
    seconds = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    return {
        "size": size,
        "writer": writer,
        "blocks": int(pred.data.npartitions),
        "block": int(pred.data.chunks[-1][0]),
        "batch_size": ModelRunner(model, batch_size).batch_size,
        "seconds": seconds,
        "peak": peak,
        "peak_above": peak - base,
        "scene_bytes": 3 * size * size * 4,
    }


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sizes", default="4096,8192,16384")
    p.add_argument("--tile-size", type=int, default=256)
    p.add_argument("--writer", choices=("fns", "xarray", "cog"), default="fns")
    p.add_argument(
        "--chunks", type=int, help="predict's output block side (default: predict's own)"
    )
    p.add_argument("--batch-size", type=int, help="predict's batch_size (default: predict's own)")
    p.add_argument("--tmp", default=None, help="where the Zarr stores go (default: a temp dir)")
    p.add_argument("--one", type=int, help=argparse.SUPPRESS)
    p.add_argument("--src", help=argparse.SUPPRESS)
    p.add_argument("--dst", help=argparse.SUPPRESS)
    p.add_argument("--json")
    args = p.parse_args(argv)
    if args.one:
        one = run_one(
            args.one, args.tile_size, args.src, args.dst, args.writer, args.chunks, args.batch_size
        )
        print(json.dumps(one))
        return 0
    rows = []
    with tempfile.TemporaryDirectory(dir=args.tmp) as tmp:
        for size in (int(s) for s in args.sizes.split(",")):
            name = "pred.tif" if args.writer == "cog" else "pred.zarr"
            src, dst = os.path.join(tmp, f"scene-{size}.zarr"), os.path.join(tmp, name)
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
                    "--writer",
                    args.writer,
                    *(["--chunks", args.chunks] if args.chunks else []),
                    *(["--batch-size", args.batch_size] if args.batch_size else []),
                )
            )
            shutil.rmtree(src, ignore_errors=True)
            shutil.rmtree(dst, ignore_errors=True)
            if os.path.isfile(dst):
                os.remove(dst)
    print(
        f"predict, Zarr 3 x N² (smooth, 512² chunks) -> 1x1 conv -> {args.writer} writer, "
        f"T = {args.tile_size}; above base: above the RSS after a warm-up prediction"
    )
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
