"""Benchmark: gap filling + standardisation, as ratios to baselines of the same run.

A float32 ``bands x size x size`` scene with cloud-like gaps (discs of many
sizes covering ``--gaps`` of the pixels) is preprocessed (nearest fill + per
band z-score). Every mode runs in its own process (its own peak RSS):

* ``original``: the original package's approach — per band, scipy's
  ``NearestNDInterpolator`` over every valid pixel, then a z-score — timed on
  a ``--original-size`` crop and scaled by the pixel count to the full size
  (its cost grows faster than linearly, so the scaled figure flatters it);
* ``scipy-edt``: per band, ``scipy.ndimage.distance_transform_edt`` with
  indices, a gather, then a z-score — the best plain-scipy route;
* ``fns-numpy``: ``preprocess`` on a numpy-backed DataArray (exact);
* ``fns-dask``: ``preprocess`` on 1024 x 1024 dask chunks, stored into memory.

Usage::

    python benchmarks/bench_preprocess.py                 # 3 x 4096 x 4096, 5 % and 30 % gaps
    python benchmarks/bench_preprocess.py --size 256 --original-size 128 --gaps 0.1   # smoke
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

MODES = ("original", "scipy-edt", "fns-numpy", "fns-dask")


def cloudy_scene(bands: int, size: int, gaps: float, seed: int = 0) -> np.ndarray:
    """Smooth-ish random float32 bands with disc-shaped gaps covering ``gaps``."""
    rng = np.random.default_rng(seed)
    x = rng.random((bands, size, size), dtype=np.float32)
    mask = np.zeros((size, size), bool)
    yy, xx = np.ogrid[:size, :size]
    while mask.mean() < gaps:
        r = int(rng.integers(2, max(3, size // 16)))
        cy, cx = rng.integers(0, size, 2)
        y0, y1, x0, x1 = (
            max(cy - r, 0),
            min(cy + r + 1, size),
            max(cx - r, 0),
            min(cx + r + 1, size),
        )
        mask[y0:y1, x0:x1] |= (yy[y0:y1] - cy) ** 2 + (xx[:, x0:x1] - cx) ** 2 <= r * r
    x[:, mask] = np.nan
    return x


def _zscore(a: np.ndarray) -> np.ndarray:
    a64 = a.astype(np.float64)
    return ((a64 - a64.mean()) / a64.std()).astype(np.float32)


def _run_one(mode: str, args) -> dict:
    size = args.original_size if mode == "original" else args.size
    x = cloudy_scene(args.bands, size, args.gaps)

    if mode == "original":
        from scipy.interpolate import NearestNDInterpolator

        def job():
            out = np.empty_like(x)
            for b in range(x.shape[0]):
                band = x[b]
                valid = ~np.isnan(band)
                interp = NearestNDInterpolator(np.argwhere(valid), band[valid])
                filled = band.copy()
                filled[~valid] = interp(np.argwhere(~valid))
                out[b] = _zscore(filled)
            return out

    elif mode == "scipy-edt":
        from scipy import ndimage

        def job():
            out = np.empty_like(x)
            for b in range(x.shape[0]):
                band = x[b]
                _, (iy, ix) = ndimage.distance_transform_edt(np.isnan(band), return_indices=True)
                out[b] = _zscore(band[iy, ix])
            return out

    else:
        import xarray as xr

        import xflipnslide  # noqa: F401

        scene = xr.DataArray(x, dims=("band", "y", "x"))
        scene.isel(y=slice(0, 64), x=slice(0, 64)).fns.preprocess()  # compile / load the kernels
        if mode == "fns-dask":
            import dask.array as da

            scene = scene.chunk({"y": 1024, "x": 1024})

            def job():
                res = scene.fns.preprocess().data
                out = np.empty(res.shape, res.dtype)
                da.store(res, out, lock=False)
                return out

        else:

            def job():
                return scene.fns.preprocess().values

    times = []
    for _ in range(args.repeat):
        start = time.perf_counter()
        out = job()
        times.append(time.perf_counter() - start)
        del out
    seconds = min(times) * (args.size / size) ** 2  # scaled for the original only
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    return {"mode": mode, "seconds": seconds, "measured_size": size, "peak_rss": peak}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--size", type=int, default=4096)
    p.add_argument("--bands", type=int, default=3)
    p.add_argument("--gaps", default="0.05,0.30", help="gap fractions, comma separated")
    p.add_argument("--original-size", type=int, default=1024)
    p.add_argument("--repeat", type=int, default=2)
    p.add_argument("--modes", default=",".join(MODES))
    p.add_argument("--one", help=argparse.SUPPRESS)
    p.add_argument("--json", help="also write the rows to this JSON file")
    args = p.parse_args(argv)
    if args.one:
        args.gaps = float(args.gaps)
        print(json.dumps(_run_one(args.one, args)))
        return 0

    scene_bytes = args.bands * args.size**2 * 4
    print(
        f"preprocess (nearest fill + z-score), float32 {args.bands} x {args.size} x {args.size} "
        f"({scene_bytes / 2**30:.2f} GiB), {os.cpu_count()} cores"
    )
    print(
        f"{'gaps':>5}  {'mode':<10}{'seconds':>9}{'x original':>12}{'x scipy-edt':>12}{'peak RSS GiB':>14}{'x scene':>9}"
    )
    results = {}
    for gaps in args.gaps.split(","):
        rows = results[gaps] = []
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
                    "--gaps",
                    gaps,
                    "--original-size",
                    args.original_size,
                    "--repeat",
                    args.repeat,
                )
            )
        by = {r["mode"]: r["seconds"] for r in rows}
        for r in rows:
            note = (
                f"  (measured at {r['measured_size']}², scaled)"
                if r["measured_size"] != args.size
                else ""
            )
            print(
                f"{float(gaps):>5.0%}  {r['mode']:<10}{r['seconds']:>9.2f}"
                f"{by.get('original', np.nan) / r['seconds']:>12.1f}"
                f"{by.get('scipy-edt', np.nan) / r['seconds']:>12.2f}"
                f"{r['peak_rss'] / 2**30:>14.2f}{r['peak_rss'] / scene_bytes:>9.2f}{note}"
            )
    print("'x original' and 'x scipy-edt': how many times faster than that baseline")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f)
    return 0


if __name__ == "__main__":
    sys.exit(main())
