"""Benchmark: the runner's own cost. ``predict`` against the model alone and
against pytorch-toolbelt's tiler, seamless_seg and geoai in the same run.

A float32 3 x SIZE² scene (numpy), T = 256, stride 128, three torch models
(2 intra-op threads): ``identity``, a ``1x1 conv`` (3 -> 3) and a ``small
CNN`` (3x3 conv 3 -> 8, ReLU, 3x3 conv 8 -> 8, ReLU, 1x1 conv 8 -> 2).
Each mode runs in a fresh process, the modes of one model interleaved:

* ``predict``, ``predict tta=d4``: ``scene.fns.predict`` on numpy;
* ``toolbelt``: pytorch-toolbelt's ``ImageSlicer`` + ``TileMerger`` (its
  README's loop, pyramid weights);
* ``seamless_seg``: its ``plan_regular_grid`` + ``run_plan`` (one tile per
  model call, by design);
* ``geoai``, ``geoai tta``: ``geoai.inference.predict_geotiff`` (reads a
  GeoTIFF by windows, writes one: its own I/O is in its time).

Every mode's process also times the model alone (random windows, the
same batches, nothing else) on as many windows as that mode ran,
interleaved with it, ``--repeat`` rounds: the machine is shared, so only
ratios within one process hold. Reports seconds, windows run, ms per
window (view), the overhead per window over the model alone, and mode /
model alone, both best over best (``x model``, the goal for predict is
<= 1.05) and the median of each round's own ratio (``x med``: steadier
when the load changes between rounds). The D4 modes run on a
``--d4-size`` scene (1024²: 8 x 64 views) to keep the run short. With
CUDA (``torch.cuda.is_available()``) the same ratio is measured on the
GPU too (``--device cuda``: pinned copies, a helper thread tiling ahead).

``--baseline-src DIR`` also runs the predict modes from another source
tree (say ``git archive <commit> | tar -x -C DIR``), each in its own
fresh process right after the same mode from this tree, so a change is
measured before and after in one run (rows ``predict (baseline)``).

The peers are optional: pytorch-toolbelt and geoai from the package index
(their tiling files are loaded without their package's heavier imports,
torchvision and the like), seamless_seg from ``../shared/peers``; a peer
that cannot be imported is skipped with a line saying so.

    python benchmarks/bench_predict_runner.py [--size 2048] [--batch 16] [--baseline-src DIR]
        [--peers toolbelt,seamless_seg,geoai] [--json out.json]
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import resource
import sys
import tempfile
import time
import warnings

import numpy as np
from _runner import run_fresh

HERE = os.path.dirname(os.path.abspath(__file__))
PEERS = os.path.join(HERE, os.pardir, os.pardir, "shared", "peers")
BATCH = 16
MODELS = ("identity", "1x1 conv", "small CNN")
PEERS_RUN = {
    "toolbelt": ["toolbelt"],
    "seamless_seg": ["seamless_seg"],
    "geoai": ["geoai", "geoai tta=d4"],
}


def make_model(name: str):
    import torch

    torch.manual_seed(0)
    if name == "identity":
        return torch.nn.Identity(), 3
    if name == "1x1 conv":
        return torch.nn.Conv2d(3, 3, 1), 3
    net = torch.nn.Sequential(
        torch.nn.Conv2d(3, 8, 3, padding=1),
        torch.nn.ReLU(),
        torch.nn.Conv2d(8, 8, 3, padding=1),
        torch.nn.ReLU(),
        torch.nn.Conv2d(8, 2, 1),
    )
    return net.eval(), 2


def _load_file(package: str, relative: str, name: str):
    """One module file of an installed package, without its ``__init__``."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        return None
    path = os.path.join(next(iter(spec.submodule_search_locations)), relative)
    module_spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(module_spec)
    try:
        module_spec.loader.exec_module(module)
    except ImportError as exc:
        print(f"{package}: not importable ({exc}): skipped")
        return None
    return module


def peer(name: str):
    if name == "toolbelt":
        return _load_file("pytorch_toolbelt", "inference/tiles.py", "toolbelt_tiles")
    if name == "geoai":
        import types

        # predict_geotiff imports geoai.utils.get_device (whose package pulls in
        # leafmap and more) even when given a device: stand in for that one name.
        utils = types.ModuleType("geoai.utils")
        utils.get_device = lambda: "cpu"
        sys.modules.setdefault("geoai.utils", utils)
        return _load_file("geoai", "inference.py", "geoai_inference")
    path = os.path.join(PEERS, "seamless_seg")
    if not os.path.isdir(path):
        return None
    sys.path.insert(0, path)
    import seamless_seg

    return seamless_seg


def run_toolbelt(tb, scene, model, T, classes):
    import torch

    image = np.ascontiguousarray(scene.transpose(1, 2, 0))
    slicer = tb.ImageSlicer(image.shape, tile_size=T, tile_step=T // 2, weight="pyramid")
    tiles = slicer.split(image)
    merger = tb.TileMerger(slicer.target_shape, classes, slicer.weight)
    with torch.no_grad():
        for a in range(0, len(tiles), BATCH):
            batch = torch.from_numpy(np.stack(tiles[a : a + BATCH])).permute(0, 3, 1, 2)
            merger.integrate_batch(model(batch.contiguous()), slicer.crops[a : a + BATCH])
    merged = np.moveaxis(merger.merge().numpy(), 0, -1)
    slicer.crop_to_orignal_size(merged)
    return len(tiles)


def run_seamless(ss, scene, model, T, classes):
    import torch

    h, w = scene.shape[1:]
    plan, grid = ss.plan_regular_grid((h, w), (T, T), (T // 2, T // 2))
    count = [0]

    def tiles():
        for step in plan:
            if step.action == "load":
                ys, xs = ss.shape_to_slices(grid[step.index])
                with torch.no_grad():
                    out = model(torch.from_numpy(np.ascontiguousarray(scene[None, :, ys, xs])))
                count[0] += 1
                yield out[0].numpy().transpose(1, 2, 0)

    result = np.zeros((h, w, classes), np.float32)
    for _, geom, tile in ss.run_plan(plan, tiles()):
        ys, xs = ss.shape_to_slices(geom)
        result[ys, xs] = tile
    return count[0]


def run_geoai(gi, scene, model, T, classes, tmp, tta):
    import rasterio

    path = os.path.join(tmp, "scene.tif")
    if not os.path.exists(path):
        profile = dict(driver="GTiff", height=scene.shape[1], width=scene.shape[2], count=3)
        profile.update(dtype="float32", tiled=True, blockxsize=256, blockysize=256)
        with rasterio.open(path, "w", **profile) as dst:
            dst.write(scene)
    start = time.perf_counter()
    gi.predict_geotiff(
        model,
        path,
        os.path.join(tmp, "out.tif"),
        tile_size=T,
        overlap=T // 2,
        batch_size=BATCH,
        num_classes=classes,
        blend_mode="cosine",
        tta=tta,
        preprocess_fn=lambda t: t.astype(np.float32),
        device="cpu",
        verbose=False,
    )
    return time.perf_counter() - start


def model_alone(model, windows: int, T: int, device: str) -> float:
    """Seconds the model takes on ``windows`` random windows, in batches."""
    import torch

    batch = torch.from_numpy(np.random.default_rng(1).random((BATCH, 3, T, T), dtype=np.float32))
    start = time.perf_counter()
    with torch.no_grad():
        for a in range(0, windows, BATCH):
            model(batch[: min(BATCH, windows - a)].to(device)).to("cpu")
    return time.perf_counter() - start


def run_mode(mode, model, classes, scene, T, tmp, device) -> tuple[float, int]:
    """``(seconds, windows run)`` of one mode."""
    import xarray as xr

    from xflipnslide.plan import predict_plan

    size = scene.shape[-1]
    views = 8 if mode.endswith("d4") else 1
    start = time.perf_counter()
    if mode.startswith("predict"):
        xr.DataArray(scene, dims=("band", "y", "x")).fns.predict(
            model,
            tile_size=T,
            tta="d4" if views == 8 else None,
            batch_size=BATCH,
            device=None if device == "cpu" else device,
            classes=classes,
        )
        windows = len(predict_plan((size, size), T)) * views
    elif mode == "toolbelt":
        windows = run_toolbelt(peer("toolbelt"), scene, model, T, classes)
    elif mode == "seamless_seg":
        windows = run_seamless(peer("seamless_seg"), scene, model, T, classes)
    else:  # geoai
        start = time.perf_counter() - run_geoai(
            peer("geoai"), scene, model, T, classes, tmp, views == 8
        )
        n = len(range(0, size - T // 2, T // 2))  # geoai's grid, edge windows pulled back
        windows = n * n * views
    return time.perf_counter() - start, windows


def run_one(mode, model_name, size, T, tmp, device, repeat, src=None) -> dict:
    """One mode in this fresh process, interleaved with the model alone on
    the same number of windows, ``repeat`` rounds; ``src``: the source tree
    xflipnslide must come from."""
    import torch
    import xarray as xr

    import xflipnslide  # the .fns accessor

    if src and not os.path.realpath(xflipnslide.__file__).startswith(os.path.realpath(src)):
        raise RuntimeError(f"xflipnslide came from {xflipnslide.__file__}, not {src}")

    warnings.simplefilter("ignore")
    torch.set_num_threads(2)
    model, classes = make_model(model_name)
    model = model.to(device)
    scene = np.random.default_rng(0).random((3, size, size), dtype=np.float32)
    warm = xr.DataArray(scene[:, : 2 * T, : 2 * T], dims=("band", "y", "x"))
    warm.fns.predict(model, tile_size=T, tta="d4", batch_size=BATCH)  # kernels compiled
    times, alones = [], []
    for _ in range(repeat):
        seconds, windows = run_mode(mode, model, classes, scene, T, tmp, device)
        times.append(seconds)
        alones.append(model_alone(model, windows, T, device))
    best, alone = min(times), min(alones)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    return {
        "mode": mode + (" (baseline)" if src else ""),
        "model": model_name,
        "device": device,
        "size": size,
        "seconds": best,
        "model_seconds": alone,
        "windows": windows,
        "ms_per_window": 1e3 * best / windows,
        "overhead_ms": 1e3 * (best - alone) / windows,
        "x_model": best / alone,
        "x_median": float(np.median(np.array(times) / np.array(alones))),
        "peak": peak,
    }


def baseline(src: str, one: tuple) -> dict:
    """:func:`run_fresh` of ``one`` with xflipnslide imported from ``src``."""
    before = os.environ.get("PYTHONPATH")
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [os.path.abspath(src), before]))
    try:
        return run_fresh(__file__, *one, "--src", os.path.abspath(src))
    finally:
        if before is None:
            del os.environ["PYTHONPATH"]
        else:
            os.environ["PYTHONPATH"] = before


def main(argv=None) -> int:
    global BATCH
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--size", type=int, default=2048)
    p.add_argument("--tile-size", type=int, default=256)
    p.add_argument("--models", default=",".join(MODELS))
    p.add_argument("--d4-size", type=int, default=1024, help="scene side of the D4 modes")
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--batch", type=int, default=BATCH, help="windows per model call, every mode")
    p.add_argument("--baseline-src", help="also run the predict modes from this source tree")
    p.add_argument("--peers", default=",".join(PEERS_RUN), help="peers to run (comma list)")
    p.add_argument("--one", help=argparse.SUPPRESS)
    p.add_argument("--model", help=argparse.SUPPRESS)
    p.add_argument("--device", default="cpu", help=argparse.SUPPRESS)
    p.add_argument("--tmp", help=argparse.SUPPRESS)
    p.add_argument("--src", help=argparse.SUPPRESS)
    p.add_argument("--json")
    args = p.parse_args(argv)
    BATCH = args.batch
    if args.one:
        result = run_one(
            *(args.one, args.model, args.size, args.tile_size, args.tmp, args.device),
            *(args.repeat, args.src),
        )
        print(json.dumps(result))
        return 0
    import torch

    modes = ["predict", "predict tta=d4"]
    for name in filter(None, args.peers.split(",")):
        runs = PEERS_RUN[name]
        if peer(name) is None:
            where = "../shared/peers" if name == "seamless_seg" else "the package index"
            print(f"{name}: not importable (it installs from {where}): skipped")
        else:
            modes += runs
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for model in args.models.split(","):
            for device in devices:
                for mode in modes:
                    if device != "cpu" and not mode.startswith("predict"):
                        continue
                    size = args.d4_size if mode.endswith("d4") else args.size
                    one = (
                        *("--one", mode, "--model", model, "--size", size),
                        *("--tile-size", args.tile_size, "--tmp", tmp, "--device", device),
                        *("--repeat", args.repeat, "--batch", args.batch),
                    )
                    rows.append(run_fresh(__file__, *one))
                    if args.baseline_src and mode.startswith("predict"):
                        rows.append(baseline(args.baseline_src, one))
    print(
        f"runner cost, float32 3 x {args.size}² (D4: {args.d4_size}²), T = {args.tile_size}, "
        f"stride {args.tile_size // 2}, batch {BATCH}; each mode in a fresh process, "
        f"{args.repeat} rounds, interleaved with the model alone on the same windows"
    )
    print(
        f"{'model':<11}{'device':<7}{'mode':<27}{'windows':>8}{'seconds':>9}{'model s':>9}"
        f"{'ms/window':>10}{'overhead ms':>12}{'x model':>9}{'x med':>8}"
    )
    for r in rows:
        print(
            f"{r['model']:<11}{r['device']:<7}{r['mode']:<27}{r['windows']:>8}"
            f"{r['seconds']:>9.2f}{r['model_seconds']:>9.2f}{r['ms_per_window']:>10.3f}"
            f"{r['overhead_ms']:>12.3f}{r['x_model']:>9.2f}{r['x_median']:>8.2f}"
        )
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f)
    return 0


if __name__ == "__main__":
    sys.exit(main())
