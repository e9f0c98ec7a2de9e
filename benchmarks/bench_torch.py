"""Benchmark: feeding PyTorch, tiles per second per epoch.

Same run, float32 ``bands x size x size`` scene, T = tile size, batches of 32:

* floors: a numpy loop slicing windows out of the scene in memory into
  batches; ``xbatcher.BatchGenerator`` over the raw scene (50 % overlap, no
  transforms), batched as torch's default collate does;
* ``torch_loader`` over flipnslide tiles in memory, from a lazy scene (a
  Zarr scene, tiled lazily) and from tiles reloaded from a Zarr store
  written with the default chunks: unshuffled and shuffled, with 0 and 2
  worker processes;
* real data (``../shared/data``, skipped where absent or with
  ``--no-real``): a Landsat 8 scene (3 bands) as a lazy GeoTIFF scene tiled
  with T = 256, and preprocessed, tiled with T = 128 and written to Zarr as
  ``to_zarr`` writes it (682-tile chunks), reopened: in order, shuffled,
  with 0 and 2 workers, and loading the whole store;
* the target ratio: a shuffled lazy epoch vs (loading every tile into memory
  once + one in-memory epoch).

Every mode runs ``--repeat`` times, the modes interleaved round by round
(the machine may be shared); the best time is kept. Each row also gives the
CPU seconds it took, this process and its worker processes together, and
so how many cores were busy: where 0 workers keep both cores of a 2-core
machine busy already, workers can only add their own costs.

torchgeo's ``GridGeoSampler`` + ``RasterDataset`` is the peer the issue
names; it is measured when ``torchgeo`` imports (it needs torchvision, which
has no CPU wheel for the pinned torch here) and reported as skipped
otherwise.

    python benchmarks/bench_torch.py [--size 4096] [--tile-size 256] [--json out.json]
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import resource
import sys
import tempfile
import time
import warnings

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
SHARED = os.path.join(HERE, os.pardir, os.pardir, "shared", "data")


def cpu_seconds() -> float:
    """CPU time of this process and of its finished children (the workers)."""
    own, kids = (resource.getrusage(w) for w in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN))
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def timed(job) -> tuple[int, float, float]:
    """``(tiles, seconds, CPU seconds)`` of ``job()``, which returns a tile count."""
    cpu, start = cpu_seconds(), time.perf_counter()
    n = job()
    return n, time.perf_counter() - start, cpu_seconds() - cpu


def epoch(loader, step: float = 0.0) -> int:
    """Tiles of one pass over ``loader``, with ``step`` seconds of pure
    Python (holding the GIL, as Python-side training code does) per batch."""
    n = 0
    for batch in loader:
        n += (batch[0] if isinstance(batch, (tuple, list)) else batch).shape[0]
        end = time.thread_time() + step
        while time.thread_time() < end:
            sum(range(1000))
    return n


def interleaved(jobs: dict, repeat: int) -> dict:
    """The best ``timed`` of every job over ``repeat`` rounds, jobs
    interleaved in each round (after one warm-up round)."""
    best: dict = {}
    for r in range(repeat + 1):
        for name, job in jobs.items():
            got = timed(job)
            if r and (name not in best or got[1] < best[name][1]):
                best[name] = got
    return best


def landsat(tmp: str, no_real: bool) -> dict:
    """Real sources: a lazy GeoTIFF Landsat 8 scene tiled with T = 256 and
    a reopened Zarr store of its preprocessed T = 128 tiles (none when the
    data are absent)."""
    import xarray as xr

    import xflipnslide

    paths = sorted(glob.glob(os.path.join(SHARED, "landsat8", "*224078*_B[234].TIF")))[::-1]
    if no_real or len(paths) != 3:
        return {}
    scene = xflipnslide.open_image(paths)  # red, green, blue; lazy
    scene.fns.preprocess(nodata=0).fns.tile(128).to_dataset(name="image").to_zarr(
        f"{tmp}/landsat_tiles.zarr"
    )
    return {
        "Landsat GeoTIFF scene (T = 256)": scene.fns.tile(256),
        "Landsat Zarr tile store (T = 128)": xr.open_zarr(f"{tmp}/landsat_tiles.zarr").image,
    }


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--size", type=int, default=4096)
    p.add_argument("--bands", type=int, default=3)
    p.add_argument("--tile-size", type=int, default=256)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--repeat", type=int, default=3, help="rounds; the best of each mode is kept")
    p.add_argument("--no-real", action="store_true", help="leave out the Landsat 8 sources")
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
    from xflipnslide.ml.torch import shared_empty

    warnings.simplefilter("ignore", xflipnslide.XFlipNSlideWarning)
    warnings.filterwarnings("ignore", message="Consolidated metadata")
    T, B = args.tile_size, args.batch_size
    data = np.random.default_rng(0).random((args.bands, args.size, args.size), dtype=np.float32)
    scene = xr.DataArray(data, dims=("band", "y", "x"))
    scene.isel(y=slice(0, 2 * T), x=slice(0, 2 * T)).fns.tile(T)  # compile / load
    plan = xflipnslide.plan_tiles((args.size, args.size), T)

    def numpy_loop():
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
        return n

    def xbatcher_loop():
        n, pending = 0, []
        gen = xbatcher.BatchGenerator(
            scene, input_dims={"y": T, "x": T}, input_overlap={"y": T // 2, "x": T // 2}
        )
        for patch in gen:
            pending.append(torch.as_tensor(patch.values))
            if len(pending) == B:
                n += torch.stack(pending).shape[0]
                pending = []
        return n

    def loader_job(tiles, shuffle, workers, step=0.0):
        def job():
            loader = tiles.fns.torch_loader(B, shuffle=shuffle, seed=0, num_workers=workers)
            return epoch(loader, step)

        return job

    with tempfile.TemporaryDirectory() as tmp:
        scene.to_dataset(name="image").chunk({"y": 1024, "x": 1024}).to_zarr(f"{tmp}/scene.zarr")
        lazy_scene = xr.open_zarr(f"{tmp}/scene.zarr")["image"]
        lazy_tiles = lazy_scene.fns.tile(T)
        lazy_tiles.to_dataset(name="image").to_zarr(f"{tmp}/tiles.zarr")
        stored = xr.open_zarr(f"{tmp}/tiles.zarr")
        memory = stored.image.compute()  # a new object: `stored` stays lazy
        jobs = {
            "numpy loop over the scene in memory (floor)": numpy_loop,
            "xbatcher on the raw scene (50 % overlap)": xbatcher_loop,
        }
        sources = {"in memory": memory, "lazy scene": lazy_tiles, "Zarr tiles": stored}
        sources.update(landsat(tmp, args.no_real))
        for name, tiles in sources.items():
            for shuffle in (False, True):
                for workers in (0, args.workers):
                    label = f"{name}, {'shuffled' if shuffle else 'in order'}, {workers} workers"
                    jobs[label] = loader_job(tiles, shuffle, workers)
        real = "Landsat Zarr tile store (T = 128)"
        if real in sources:
            for workers in (0, args.workers):
                label = f"{real}, shuffled, {workers} workers, 20 ms GIL-bound step"
                jobs[label] = loader_job(sources[real], True, workers, 0.02)
        jobs["load all Zarr tiles into memory once"] = lambda: stored.image.compute().sizes["tile"]
        jobs["compute all lazy-scene tiles into memory once"] = lambda: lazy_tiles.compute().sizes[
            "tile"
        ]
        if real in sources:
            jobs[f"{real}: load it all into memory"] = lambda: sources[real].compute().sizes["tile"]
        batch_mb = B * args.bands * T * T * 4 / 2**20

        def transport(empty):
            def job():
                for _ in range(20):
                    np.asarray(empty((B, args.bands, T, T), np.float32))[...] = 1
                return 20 * B

            return job

        jobs["a batch written into fresh shared memory (x20)"] = transport(shared_empty)
        jobs["a batch written into fresh process memory (x20)"] = transport(np.empty)
        rows = interleaved(jobs, args.repeat)
    try:
        import torchgeo  # noqa: F401

        rows["torchgeo GridGeoSampler + RasterDataset"] = (0, float("nan"), float("nan"))
    except Exception:
        print("torchgeo: not importable here (needs torchvision): skipped")

    floor = rows["xbatcher on the raw scene (50 % overlap)"]
    base = floor[0] / floor[1]
    print(
        f"feeding torch, float32 {args.bands} x {args.size}², T = {T}, batches of {B}, one epoch, "
        f"best of {args.repeat} interleaved rounds, {os.cpu_count()} cores"
    )
    print(
        f"{'mode':<58}{'tiles':>7}{'seconds':>9}{'tiles/s':>10}{'x xbatcher':>11}"
        f"{'CPU s':>8}{'cores':>7}"
    )
    for name, (n, sec, cpu) in rows.items():
        print(
            f"{name:<58}{n:>7}{sec:>9.3f}{n / sec:>10.0f}{n / sec / base:>11.2f}"
            f"{cpu:>8.2f}{cpu / sec:>7.2f}"
        )
    mem_epoch = rows["in memory, in order, 0 workers"][1]
    once = {
        "lazy scene": rows["compute all lazy-scene tiles into memory once"][1],
        "Zarr tiles": rows["load all Zarr tiles into memory once"][1],
    }
    for name, seconds in once.items():
        ratio = rows[f"{name}, shuffled, 0 workers"][1] / (seconds + mem_epoch)
        print(f"shuffled {name} epoch / (load all + in-memory epoch): {ratio:.2f} (target <= 1.5)")
    for name in sources:
        for order in ("in order", "shuffled"):
            zero = rows[f"{name}, {order}, 0 workers"][1]
            more = rows[f"{name}, {order}, {args.workers} workers"][1]
            print(f"{name}, {order}: {args.workers} workers are {zero / more:.2f}x 0 workers")
    if real in sources:
        whole = rows[f"{real}: load it all into memory"][1]
        for order in ("in order", "shuffled"):
            ratio = rows[f"{real}, {order}, 0 workers"][1] / whole
            print(f"{real}, {order} epoch / loading it all: {ratio:.2f}")
    if real in sources:
        step = [
            rows[f"{real}, shuffled, {w} workers, 20 ms GIL-bound step"][1]
            for w in (0, args.workers)
        ]
        print(
            f"{real}, with a 20 ms GIL-bound step: {args.workers} workers are {step[0] / step[1]:.2f}x 0"
        )
    shm = rows["a batch written into fresh shared memory (x20)"][1]
    own = rows["a batch written into fresh process memory (x20)"][1]
    print(
        f"sending batches from workers: {(shm - own) / (20 * batch_mb) * 1e3:.2f} ms per MiB "
        "more than writing them in this process"
    )
    if args.json:
        with open(args.json, "w") as f:
            out = {k: {"tiles": n, "seconds": s, "cpu": c} for k, (n, s, c) in rows.items()}
            json.dump(out, f)
    return 0


if __name__ == "__main__":
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    sys.exit(main())
