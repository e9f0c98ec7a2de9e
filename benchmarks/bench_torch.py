"""Benchmark: feeding PyTorch, tiles per second per epoch.

Same run, float32 ``bands x size x size`` scene, T = tile size, batches of 32:

* floors: a numpy loop slicing windows out of the scene in memory into
  batches; ``xbatcher.BatchGenerator`` over the raw scene (50 % overlap, no
  transforms), batched as torch's default collate does;
* ``torch_loader`` over flipnslide tiles in memory, from a lazy scene (a
  Zarr scene, tiled lazily) and from tiles reloaded from a Zarr store
  written with the default chunks: unshuffled and shuffled, with 0 and 2
  worker processes;
* the target ratio: a shuffled lazy epoch vs (loading every tile into memory
  once + one in-memory epoch).

torchgeo's ``GridGeoSampler`` + ``RasterDataset`` is the peer the issue
names; it is measured when ``torchgeo`` imports (it needs torchvision, which
has no CPU wheel for the pinned torch here) and reported as skipped
otherwise.

    python benchmarks/bench_torch.py [--size 4096] [--tile-size 256] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
import warnings

import numpy as np


def epoch(loader) -> tuple[int, float]:
    start = time.perf_counter()
    n = 0
    for batch in loader:
        n += (batch[0] if isinstance(batch, (tuple, list)) else batch).shape[0]
    return n, time.perf_counter() - start


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--size", type=int, default=4096)
    p.add_argument("--bands", type=int, default=3)
    p.add_argument("--tile-size", type=int, default=256)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--json")
    args = p.parse_args(argv)
    try:
        import torch
    except ImportError:
        print("torch is not installed: skipped")
        return 0
    import xarray as xr
    import xbatcher

    import xflipnslide

    warnings.simplefilter("ignore", xflipnslide.XFlipNSlideWarning)
    warnings.filterwarnings("ignore", message="Consolidated metadata")
    T, B = args.tile_size, args.batch_size
    data = np.random.default_rng(0).random((args.bands, args.size, args.size), dtype=np.float32)
    scene = xr.DataArray(data, dims=("band", "y", "x"))
    scene.isel(y=slice(0, 2 * T), x=slice(0, 2 * T)).fns.tile(T)  # compile / load
    plan = xflipnslide.plan_tiles((args.size, args.size), T)
    rows = {}

    start = time.perf_counter()
    n = 0
    for a in range(0, len(plan), B):
        batch = np.stack(
            [
                xflipnslide.apply_transform(data[:, r : r + T, c : c + T], k)
                for r, c, k in zip(
                    plan.rows[a : a + B], plan.cols[a : a + B], plan.codes[a : a + B]
                )
            ]
        )
        n += torch.from_numpy(batch).shape[0]
    rows["numpy loop over the scene in memory (floor)"] = (n, time.perf_counter() - start)

    start = time.perf_counter()
    n, pending = 0, []
    gen = xbatcher.BatchGenerator(
        scene, input_dims={"y": T, "x": T}, input_overlap={"y": T // 2, "x": T // 2}
    )
    for patch in gen:
        pending.append(torch.as_tensor(patch.values))
        if len(pending) == B:
            n += torch.stack(pending).shape[0]
            pending = []
    rows["xbatcher on the raw scene (50 % overlap)"] = (n, time.perf_counter() - start)

    with tempfile.TemporaryDirectory() as tmp:
        scene.to_dataset(name="image").chunk({"y": 1024, "x": 1024}).to_zarr(f"{tmp}/scene.zarr")
        lazy_scene = xr.open_zarr(f"{tmp}/scene.zarr")["image"]
        lazy_tiles = lazy_scene.fns.tile(T)
        lazy_tiles.to_dataset(name="image").to_zarr(f"{tmp}/tiles.zarr")
        stored = xr.open_zarr(f"{tmp}/tiles.zarr")
        start = time.perf_counter()
        memory = stored.image.compute()  # a new object: `stored` stays lazy
        load_all = time.perf_counter() - start
        start = time.perf_counter()
        lazy_tiles.compute()
        compute_all = time.perf_counter() - start
        sources = {"in memory": memory, "lazy scene": lazy_tiles, "Zarr tiles": stored}
        for name, tiles in sources.items():
            for shuffle in (False, True):
                for workers in (0, args.workers):
                    loader = tiles.fns.torch_loader(B, shuffle=shuffle, seed=0, num_workers=workers)
                    label = f"{name}, {'shuffled' if shuffle else 'in order'}, {workers} workers"
                    rows[label] = epoch(loader)
        rows["load all Zarr tiles into memory once"] = (memory.sizes["tile"], load_all)
        rows["compute all lazy-scene tiles into memory once"] = (memory.sizes["tile"], compute_all)
    try:
        import torchgeo  # noqa: F401

        rows["torchgeo GridGeoSampler + RasterDataset"] = (0, float("nan"))
    except Exception:
        print("torchgeo: not importable here (needs torchvision): skipped")

    floor = rows["xbatcher on the raw scene (50 % overlap)"]
    base = floor[0] / floor[1]
    print(f"feeding torch, float32 {args.bands} x {args.size}², T = {T}, batches of {B}, one epoch")
    print(f"{'mode':<48}{'tiles':>7}{'seconds':>9}{'tiles/s':>10}{'x xbatcher':>11}")
    for name, (n, sec) in rows.items():
        print(f"{name:<48}{n:>7}{sec:>9.3f}{n / sec:>10.0f}{n / sec / base:>11.2f}")
    mem_epoch = rows["in memory, in order, 0 workers"][1]
    for name, once in (("lazy scene", compute_all), ("Zarr tiles", load_all)):
        ratio = rows[f"{name}, shuffled, 0 workers"][1] / (once + mem_epoch)
        print(f"shuffled {name} epoch / (load all + in-memory epoch): {ratio:.2f} (target <= 1.5)")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({k: {"tiles": n, "seconds": s} for k, (n, s) in rows.items()}, f)
    return 0


if __name__ == "__main__":
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    sys.exit(main())
