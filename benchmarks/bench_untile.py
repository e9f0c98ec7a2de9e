"""Benchmark: untile (undo transforms + overlap-add) against a memcpy of its input.

All 2965 Flip-n-Slide tiles of a float32 3 x 5120 x 5120 scene (T = 256)
are stitched back (numpy input; blend "mean" and "hann"), and compared with
allocating and copying the same number of bytes as the tiles, in the same
run. Target: within 2x of that memcpy.

    python benchmarks/bench_untile.py [--size 5120] [--tile-size 256] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import sys
import time

import numpy as np


def best(job, repeat):
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        out = job()
        times.append(time.perf_counter() - start)
        del out
    return min(times)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--size", type=int, default=5120)
    p.add_argument("--bands", type=int, default=3)
    p.add_argument("--tile-size", type=int, default=256)
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--json")
    args = p.parse_args(argv)

    import xarray as xr

    import xflipnslide  # noqa: F401

    rng = np.random.default_rng(0)
    scene = xr.DataArray(
        rng.random((args.bands, args.size, args.size), dtype=np.float32), dims=("band", "y", "x")
    )
    tiles = scene.fns.tile(args.tile_size)
    tiles.isel(tile=slice(0, 4)).fns.untile()  # compile / load the kernel
    src = tiles.values

    def memcpy():
        out = np.empty_like(src)
        np.copyto(out, src)
        return out

    base = best(memcpy, args.repeat)
    rows = {"memcpy of the tiles": base}
    for blend in ("mean", "hann"):
        rows[f"untile blend={blend}"] = best(
            lambda b=blend: tiles.fns.untile(blend=b).values, args.repeat
        )
    print(
        f"untile, float32 {args.bands} x {args.size} x {args.size}, T = {args.tile_size}, "
        f"{tiles.sizes['tile']} tiles ({src.nbytes / 2**30:.2f} GiB)"
    )
    print(f"{'mode':<22}{'seconds':>9}{'x memcpy':>10}")
    for name, sec in rows.items():
        print(f"{name:<22}{sec:>9.3f}{sec / base:>10.2f}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({k: {"seconds": v, "x memcpy": v / base} for k, v in rows.items()}, f)
    return 0


if __name__ == "__main__":
    sys.exit(main())
