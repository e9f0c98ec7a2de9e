"""Benchmark: writing a lazy map as a Cloud Optimized GeoTIFF, in bounded memory.

A lazy float32 ``C x N x N`` map (smooth values computed per chunk, so
nothing is held before the write; 2048² chunks, as ``predict`` gives) is
written as a COG by

* ``streamed``: :func:`xflipnslide.export.cog.write_cog` (block by block
  into a tiled GeoTIFF, then GDAL's COG driver), what ``xflipnslide
  predict`` does;
* ``in-memory``: the baseline, rioxarray's ``to_raster(driver="COG")``,
  which computes the whole map first (run only up to ``--baseline-max``).

Each size and writer runs in a fresh process; peak RSS above the
interpreter (numpy, xarray, dask, rasterio imported) is compared with the
map's bytes.

    python benchmarks/bench_cog.py [--sizes 4096,8192,16384] [--bands 3] [--json out.json]
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

CHUNK = 2048


def _rss() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def _one(mode: str, size: int, bands: int, folder: str) -> dict:
    import dask.array as darr
    import numpy as np
    import rasterio
    import rioxarray  # noqa: F401
    import xarray as xr

    from xflipnslide.export.cog import write_cog

    def block(block_info=None):
        (b0, b1), (y0, y1), (x0, x1) = block_info[None]["array-location"]
        y = np.arange(y0, y1, dtype=np.float32)[:, None] / 500
        x = np.arange(x0, x1, dtype=np.float32)[None, :] / 700
        return np.stack([np.sin(y + k) * np.cos(x - k) for k in range(b0, b1)])

    data = darr.map_blocks(
        block,
        dtype=np.float32,
        chunks=(
            (bands,),
            *(darr.core.normalize_chunks(CHUNK, (size, size))),
        ),
        meta=np.empty((0, 0, 0), np.float32),
    )
    coords = {"y": 1e6 - 10.0 * np.arange(size), "x": 4e5 + 10.0 * np.arange(size)}
    da = xr.DataArray(data, dims=("band", "y", "x"), coords=coords).rio.write_crs("EPSG:32633")
    base = _rss()
    path = os.path.join(folder, f"{mode}-{size}.tif")
    start = time.perf_counter()
    if mode == "streamed":
        write_cog(da, path)
    else:
        da.rio.to_raster(path, driver="COG", compress="deflate", overview_resampling="average")
    seconds = time.perf_counter() - start
    with rasterio.open(path) as f:
        ok = f.tags(ns="IMAGE_STRUCTURE").get("LAYOUT") == "COG"
        overviews = len(f.overviews(1))
    file_bytes = os.path.getsize(path)
    os.remove(path)
    return {
        "mode": mode,
        "size": size,
        "map_bytes": bands * size * size * 4,
        "peak_above": _rss() - base,
        "seconds": seconds,
        "file_bytes": file_bytes,
        "cog": ok,
        "overviews": overviews,
    }


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sizes", default="4096,8192,16384")
    p.add_argument("--bands", type=int, default=3)
    p.add_argument("--baseline-max", type=int, default=8192, help="largest N for the baseline")
    p.add_argument("--json")
    p.add_argument("--one", nargs=3, metavar=("MODE", "SIZE", "FOLDER"), help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.one:
        mode, size, folder = args.one
        print(json.dumps(_one(mode, int(size), args.bands, folder)))
        return 0
    rows = []
    with tempfile.TemporaryDirectory(dir=os.getcwd()) as folder:
        for size in map(int, args.sizes.split(",")):
            modes = ["streamed"] + (["in-memory"] if size <= args.baseline_max else [])
            for mode in modes:
                script = os.path.abspath(__file__)
                rows.append(run_fresh(script, "--bands", args.bands, "--one", mode, size, folder))
    print(f"COG from a lazy {args.bands} x N x N float32 map ({CHUNK}² chunks), fresh processes")
    print(
        f"{'writer':<11}{'N':>7}{'map GiB':>9}{'peak MiB':>10}{'peak/map':>10}"
        f"{'seconds':>9}{'s/Mpx':>8}  COG layout, overviews"
    )
    for r in rows:
        share = r["peak_above"] / r["map_bytes"]
        print(
            f"{r['mode']:<11}{r['size']:>7}{r['map_bytes'] / 2**30:>9.2f}"
            f"{r['peak_above'] / 2**20:>10.0f}{share:>10.3f}{r['seconds']:>9.1f}"
            f"{r['seconds'] / (r['size'] ** 2 / 1e6):>8.3f}  {r['cog']}, {r['overviews']}"
        )
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f)
    return 0


if __name__ == "__main__":
    sys.exit(main())
