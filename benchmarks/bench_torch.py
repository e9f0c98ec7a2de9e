"""Benchmark: feeding PyTorch, tiles per second, against xbatcher on the raw scene.

Baseline, same run: ``xbatcher.BatchGenerator`` slicing the raw scene itself
with ``input_dims={"y": T, "x": T}`` and ``input_overlap`` of half a tile
(plain 50 % overlap, no transforms), each patch made a tensor and stacked
into batches as torch's default collate does. Measured:
``tile`` (flipnslide, numpy) then ``torch_loader`` batches of 32; the
tiling time is included; and ``torch_loader`` alone over tiles already
computed (as when they are read back from Zarr). Target: at least as fast
per tile.

    python benchmarks/bench_torch.py [--size 2048] [--tile-size 256] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import sys
import time

import numpy as np


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--size", type=int, default=2048)
    p.add_argument("--bands", type=int, default=3)
    p.add_argument("--tile-size", type=int, default=256)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--json")
    args = p.parse_args(argv)
    try:
        import torch
    except ImportError:
        print("torch is not installed: skipped")
        return 0
    import xarray as xr
    import xbatcher

    import xflipnslide  # noqa: F401

    T = args.tile_size
    scene = xr.DataArray(
        np.random.default_rng(0).random((args.bands, args.size, args.size), dtype=np.float32),
        dims=("band", "y", "x"),
    )
    scene.isel(y=slice(0, 2 * T), x=slice(0, 2 * T)).fns.tile(T)  # compile / load

    start = time.perf_counter()
    n_raw = 0
    gen = xbatcher.BatchGenerator(
        scene, input_dims={"y": T, "x": T}, input_overlap={"y": T // 2, "x": T // 2}
    )
    pending = []
    for patch in gen:  # batched as torch's default collate would: stacked
        pending.append(torch.as_tensor(patch.values))
        if len(pending) == args.batch_size:
            n_raw += torch.stack(pending).shape[0]
            pending = []
    raw = time.perf_counter() - start

    start = time.perf_counter()
    tiles = scene.fns.tile(T)
    n_fns = 0
    for batch in tiles.fns.torch_loader(args.batch_size):
        n_fns += batch.shape[0]
    fns = time.perf_counter() - start

    start = time.perf_counter()
    n_feed = sum(batch.shape[0] for batch in tiles.fns.torch_loader(args.batch_size))
    feed = time.perf_counter() - start

    rows = {
        "xbatcher on raw scene (50 % overlap)": (n_raw, raw),
        "torch_loader over computed tiles": (n_feed, feed),
        "tile + torch_loader (flipnslide)": (n_fns, fns),
    }
    base = n_raw / raw
    print(f"feeding torch, float32 {args.bands} x {args.size} x {args.size}, T = {T}")
    print(f"{'mode':<38}{'tiles':>7}{'seconds':>9}{'tiles/s':>10}{'x baseline':>12}")
    for name, (n, sec) in rows.items():
        print(f"{name:<38}{n:>7}{sec:>9.3f}{n / sec:>10.0f}{n / sec / base:>12.2f}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(
                {
                    k: {"tiles": n, "seconds": s, "x baseline": n / s / base}
                    for k, (n, s) in rows.items()
                },
                f,
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
