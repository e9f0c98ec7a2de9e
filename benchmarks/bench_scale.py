"""Benchmark: out of core — peak memory and time as the scene grows.

For each size N, a float32 3 x N x N scene (a smooth field in steps of 1/8,
so it compresses, with 2 % scattered gaps) is written to Zarr in 512 x 512
chunks, then streamed in a fresh process per step on the threaded scheduler:

* ``all``: ``open_zarr -> preprocess -> tile(256) -> fns.to_zarr``;
* ``pre``: ``open_zarr -> preprocess -> xflipnslide.to_zarr`` (the scene,
  chunk row by chunk row); ``pre-xarray``: the same through
  ``Dataset.to_zarr`` (dask's own order);
* ``tile``: ``open_zarr -> tile(256) -> fns.to_zarr``.

Reported: peak RSS (and above the interpreter's own, measured after
imports), its ratio to the size before (4x the pixels), seconds per
Mpixel of the scene, graph tasks per input chunk and the share of tasks
run again under the writers' memory budget (``--memory``, passed to
``xflipnslide.to_zarr``; default its own, ``"auto"``). ``--cluster`` runs the
steps on a 2-worker ``dask.distributed.LocalCluster`` (one thread each,
``--memory-limit`` per worker) and reports the largest worker's peak RSS.

    python benchmarks/bench_scale.py [--sizes 2048,4096,8192] [--steps all,pre,tile]
        [--memory 512MiB] [--tile-chunks 64MiB] [--cluster] [--json out.json]
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


def _peak() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def _make(size: int, src: str) -> None:
    import dask.array as da
    import numpy as np
    import xarray as xr

    c = 512
    y = da.arange(size, chunks=c, dtype=np.float32)[:, None]
    x = da.arange(size, chunks=c, dtype=np.float32)[None, :]
    bands = [da.round(8 * da.sin(y / 700 + b) * da.cos(x / 900 - b)) / 8 for b in range(3)]
    scene = da.stack(bands).rechunk((3, c, c))
    keep = da.random.default_rng(0).random(scene.shape, chunks=(3, c, c), dtype=np.float32)
    scene = da.where(keep > 0.02, scene, np.nan)
    xr.DataArray(scene, dims=("band", "y", "x")).to_dataset(name="v").to_zarr(src, mode="w")


class _Runs:
    """Counts task runs and distinct tasks (a dask callback)."""

    def __init__(self):
        from dask.callbacks import Callback

        self.runs, self.keys = 0, set()
        self.callback = Callback(posttask=self._posttask)

    def _posttask(self, key, result, dsk, state, worker_id):
        self.runs += 1
        self.keys.add(key)


def _one(size: int, step: str, workdir: str, tile_size: int, cluster, memory, tile_chunks) -> dict:
    import dask
    import xarray as xr

    import xflipnslide

    src = os.path.join(workdir, f"in{size}.zarr")
    out = os.path.join(workdir, f"out{size}{step}.zarr")
    client = None
    if cluster:
        from distributed import Client, LocalCluster

        lc = LocalCluster(
            n_workers=2, threads_per_worker=1, memory_limit=cluster, dashboard_address=None
        )
        client = Client(lc)
    base = _peak()
    scene = xr.open_zarr(src)["v"]
    with dask.config.set({"array.chunk-size": "64MiB"}):
        ready = scene.fns.preprocess() if step in ("all", "pre", "pre-xarray") else scene
        pre = step.startswith("pre")
        result = ready if pre else ready.fns.tile(tile_size, tile_chunks=tile_chunks)
    n_tasks = len(result.data.__dask_graph__())
    runs = _Runs()
    start = time.perf_counter()
    if step == "pre-xarray":
        result.to_dataset(name="v").to_zarr(out, mode="w")
    else:  # tiles or the preprocessed scene, row by row on the package's scheduler
        with runs.callback:
            xflipnslide.to_zarr(result, out, memory=memory)
    seconds = time.perf_counter() - start
    peak = _peak()
    if client is not None:
        workers = client.run(_peak)
        peak = max(workers.values())
        client.close()
    return {
        "size": size,
        "step": step,
        "cluster": cluster,
        "scene_bytes": 3 * size * size * 4,
        "peak": peak,
        "base": base,
        "tasks": n_tasks,
        "chunks": scene.data.npartitions,
        "seconds": seconds,
        "again": (runs.runs - len(runs.keys)) / max(1, len(runs.keys)),
        "memory": memory,
        "tile_chunks": tile_chunks,
    }


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sizes", default="2048,4096,8192")
    p.add_argument("--steps", default="all,pre,tile")
    p.add_argument("--tile-size", type=int, default=256)
    p.add_argument("--tile-chunks", default="64MiB", help="tile chunk size (`tile_chunks`)")
    p.add_argument("--cluster", action="store_true", help="a 2-worker LocalCluster")
    p.add_argument("--memory-limit", default="2GiB", help="per worker, with --cluster")
    p.add_argument("--memory", help="the writers' memory budget (default: theirs, 'auto')")
    p.add_argument("--workdir", help="where the scenes are written (default: a temp dir)")
    p.add_argument("--one", nargs=2, help=argparse.SUPPRESS)
    p.add_argument("--json")
    args = p.parse_args(argv)
    cluster = args.memory_limit if args.cluster else None
    if args.one:
        size, step = int(args.one[0]), args.one[1]
        if step == "make":
            _make(size, os.path.join(args.workdir, f"in{size}.zarr"))
            print(json.dumps({}))
        else:
            one = _one(
                size, step, args.workdir, args.tile_size, cluster, args.memory, args.tile_chunks
            )
            print(json.dumps(one))
        return 0
    sizes = [int(s) for s in args.sizes.split(",")]
    steps = args.steps.split(",")
    rows = []
    with tempfile.TemporaryDirectory(dir=args.workdir) as workdir:
        for size in sizes:
            run_fresh(__file__, "--one", size, "make", "--workdir", workdir)
            for step in steps:
                extra = ["--cluster", "--memory-limit", args.memory_limit] if cluster else []
                extra += ["--memory", args.memory] if args.memory else []
                rows.append(
                    run_fresh(
                        __file__, "--one", size, step, "--workdir", workdir,
                        "--tile-size", args.tile_size, "--tile-chunks", args.tile_chunks, *extra,
                    )
                )  # fmt: skip
                os.system(f"rm -rf {os.path.join(workdir, f'out{size}{step}.zarr')}")
            os.system(f"rm -rf {os.path.join(workdir, f'in{size}.zarr')}")
    where = f"2-worker LocalCluster, {args.memory_limit} each" if cluster else "threads"
    print(
        f"out of core: Zarr -> preprocess / tile({args.tile_size}) -> Zarr, 512² input "
        f"chunks, tile chunks {args.tile_chunks}, {os.cpu_count()} cores, {where}, "
        f"memory={args.memory or 'auto'}"
    )
    print(
        f"{'step':>5}{'N':>7}{'scene GiB':>11}{'peak GiB':>10}{'above base':>12}"
        f"{'x prev':>8}{'s/Mpx':>8}{'tasks/chunk':>13}{'run again':>11}"
    )
    for step in steps:
        prev = None
        for r in (r for r in rows if r["step"] == step):
            ratio = f"{r['peak'] / prev['peak']:.2f}" if prev else "-"
            print(
                f"{step:>5}{r['size']:>7}{r['scene_bytes'] / 2**30:>11.2f}{r['peak'] / 2**30:>10.2f}"
                f"{(r['peak'] - r['base']) / 2**30:>12.2f}{ratio:>8}"
                f"{r['seconds'] / (r['size'] ** 2 / 1e6):>8.3f}{r['tasks'] / r['chunks']:>13.1f}"
                f"{r['again']:>11.1%}"
            )
            prev = r
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f)
    return 0


if __name__ == "__main__":
    sys.exit(main())
