"""Benchmark: inference on a whole scene — seams, speed and memory, against
Smoothly-Blend-Image-Patches and seamless_seg in the same run.

Quality (the real sample scene, standardised, its square 560² centre:
Smoothly-Blend handles square images only): a model whose outputs are
biased near tile edges (a 5 x 5 box filter with zero padding, two output
classes). RMSE against the same model applied to the whole scene at once
(away from the scene border, where the whole-scene run zero-pads), for
naive no-overlap stitching, every blend with and without D4 TTA, and the two
peers on the same model and scene. An identity model must give the scene
back: mean absolute error relative to the scene's mean absolute value.

Speed and memory (a float32 3 x SIZE² scene, each mode in a fresh process):
time and peak RSS of ``predict`` vs Smoothly-Blend (8-fold D4) and
seamless_seg; and ``predict`` streaming a Zarr scene to a Zarr output at two
sizes (peak RSS should stay flat).

The peers are imported from ``../shared/peers`` (skipped where absent),
never copied into the project.

    python benchmarks/bench_predict.py [--size 2048] [--tile-size 256] [--json out.json]
"""

from __future__ import annotations

import argparse
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
#: Windows per model call in the speed runs: the numpy box-filter model is
#: memory-bound, so small batches suit it (a GPU model would take more).
BATCH = 4
PEERS = os.path.join(HERE, os.pardir, os.pardir, "shared", "peers")


class BoxModel:
    """(B, C, T, T) -> (B, 2, T, T): a 5 x 5 box filter with zero padding
    (biased near tile edges), then two mixtures of the bands."""

    def __call__(self, batch):
        k = 2
        pad = np.pad(batch, ((0, 0), (0, 0), (k, k), (k, k)))
        box = np.zeros_like(batch)
        h, w = batch.shape[2:]
        for dy in range(2 * k + 1):
            for dx in range(2 * k + 1):
                box += pad[:, :, dy : dy + h, dx : dx + w]
        box /= (2 * k + 1) ** 2
        first = box.mean(axis=1)
        second = box[:, 0] - box[:, -1]
        return np.stack([first, second], axis=1).astype(np.float32)


def identity(batch):
    return batch


def _peer(name: str):
    path = os.path.join(PEERS, name)
    if not os.path.isdir(path):
        return None
    if path not in sys.path:
        sys.path.insert(0, path)
    try:
        return _import_peer(name)
    except ImportError as exc:  # a peer's own dependency missing
        print(f"{name}: not importable ({exc}): skipped")
        return None


def _import_peer(name: str):
    if name == "smoothly_blend":
        import scipy.signal
        import scipy.signal.windows

        scipy.signal.triang = scipy.signal.windows.triang  # removed in scipy 1.13
        import smooth_tiled_predictions as sb

        return sb
    import seamless_seg

    return seamless_seg


def smoothly_blend(scene: np.ndarray, model, T: int, classes: int) -> np.ndarray:
    sb = _peer("smoothly_blend")
    key = f"{T}_2"
    w = sb._spline_window(T, 2)
    sb.cached_2d_windows[key] = w[:, None, None] * w[:, None, None].transpose(1, 0, 2)

    def pred_func(patches):  # (B, T, T, C) -> (B, T, T, K)
        x = np.ascontiguousarray(np.asarray(patches, np.float32).transpose(0, 3, 1, 2))
        return model(x).transpose(0, 2, 3, 1)

    out = sb.predict_img_with_smooth_windowing(
        scene.transpose(1, 2, 0),
        window_size=T,
        subdivisions=2,
        nb_classes=classes,
        pred_func=pred_func,
    )
    return np.asarray(out).transpose(2, 0, 1)


def seamless(scene: np.ndarray, model, T: int, classes: int) -> np.ndarray:
    ss = _peer("seamless_seg")
    h, w = scene.shape[1:]
    plan, grid = ss.plan_regular_grid((h, w), (T, T), (T // 2, T // 2))

    def tiles():
        for step in plan:
            if step.action == "load":
                ys, xs = ss.shape_to_slices(grid[step.index])
                out = model(np.ascontiguousarray(scene[None, :, ys, xs]))[0]
                yield out.transpose(1, 2, 0)

    result = np.zeros((h, w, classes), np.float32)
    for _, geom, tile in ss.run_plan(plan, tiles()):
        ys, xs = ss.shape_to_slices(geom)
        result[ys, xs] = tile
    return result.transpose(2, 0, 1)


def quality(T: int) -> list[tuple[str, float]]:
    import xflipnslide

    warnings.simplefilter("ignore", xflipnslide.XFlipNSlideWarning)
    scene = xflipnslide.open_image(xflipnslide.sample_scene_path(), chunks=None).load()
    # Smoothly-Blend handles square images only: the square centre of the scene
    ready = scene.fns.preprocess(nodata=0).isel(x=slice(20, 580))
    x = ready.values
    model = BoxModel()
    whole = model(x[None])[0]
    m = 8
    inner = (slice(None), slice(m, -m), slice(m, -m))

    def rmse(a):
        return float(np.sqrt(np.mean((a[inner] - whole[inner]) ** 2)))

    rows = [
        (
            "naive no-overlap stitching",
            rmse(ready.fns.predict(model, tile_size=T, stride=T, blend="mean").values),
        )
    ]
    for tta in (None, "d4"):
        for blend in ("mean", "hann", "distance", "spline"):
            out = ready.fns.predict(model, tile_size=T, tta=tta, blend=blend).values
            rows.append((f"predict blend={blend} tta={tta}", rmse(out)))
    if _peer("smoothly_blend") is not None:
        rows.append(("Smoothly-Blend (spline, 8-fold D4)", rmse(smoothly_blend(x, model, T, 2))))
    if _peer("seamless_seg") is not None:
        rows.append(("seamless_seg (trust weights)", rmse(seamless(x, model, T, 2))))
    scale = float(np.mean(np.abs(x)))
    same = ready.fns.predict(identity, tile_size=T, tta="d4", blend="hann").values
    rows.append(
        ("identity MAE / mean |x|: predict tta=d4", float(np.mean(np.abs(same - x))) / scale)
    )
    if _peer("smoothly_blend") is not None:
        sb = smoothly_blend(x, identity, T, 3)
        rows.append(
            ("identity MAE / mean |x|: Smoothly-Blend", float(np.mean(np.abs(sb - x))) / scale)
        )
    return rows


def run_one(mode: str, size: int, T: int, tmp: str) -> dict:
    """One speed/memory mode in this (fresh) process."""
    import xarray as xr

    import xflipnslide

    warnings.simplefilter("ignore", xflipnslide.XFlipNSlideWarning)
    rng = np.random.default_rng(0)
    model = BoxModel()
    warm = xr.DataArray(rng.random((3, 2 * T, 2 * T), dtype=np.float32), dims=("band", "y", "x"))
    warm.fns.predict(model, tile_size=T)  # compile / load the kernels first
    warm.chunk({"y": T}).fns.predict(model, tile_size=T).compute()
    start = time.perf_counter()
    if mode.startswith("zarr"):
        import dask

        dask.config.set(scheduler="threads")
        scene = xr.open_zarr(f"{tmp}/scene-{size}.zarr")["image"]
        pred = scene.fns.predict(model, tile_size=T, batch_size=BATCH)
        pred.to_dataset(name="p").to_zarr(f"{tmp}/pred-{size}.zarr", mode="w")
    else:
        x = rng.random((3, size, size), dtype=np.float32)
        start = time.perf_counter()
        scene = xr.DataArray(x, dims=("band", "y", "x"))
        if mode == "predict tta=d4":
            scene.fns.predict(model, tile_size=T, tta="d4", batch_size=BATCH)
        elif mode == "predict":
            scene.fns.predict(model, tile_size=T, batch_size=BATCH)
        elif mode == "Smoothly-Blend (8-fold D4)":
            smoothly_blend(x, model, T, 2)
        elif mode == "seamless_seg":
            seamless(x, model, T, 2)
    seconds = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    return {"mode": mode, "size": size, "seconds": seconds, "peak": peak}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--size", type=int, default=2048)
    p.add_argument("--tile-size", type=int, default=256)
    p.add_argument("--quality-tile-size", type=int, default=64)
    p.add_argument(
        "--stream-sizes", default=None, help="Zarr streaming sizes (default: size/2,size)"
    )
    p.add_argument("--one", help=argparse.SUPPRESS)
    p.add_argument("--tmp", help=argparse.SUPPRESS)
    p.add_argument("--json")
    args = p.parse_args(argv)
    if args.one:
        print(json.dumps(run_one(args.one, args.size, args.tile_size, args.tmp)))
        return 0

    rows = quality(args.quality_tile_size)
    print(
        f"seams: RMSE vs the model on the whole scene (sample scene, T = {args.quality_tile_size})"
    )
    for name, value in rows:
        print(f"  {name:<46}{value:>10.5f}")

    import xarray as xr

    speed = []
    with tempfile.TemporaryDirectory() as tmp:
        modes = ["predict", "predict tta=d4"]
        modes += [
            m
            for m, peer in (
                ("Smoothly-Blend (8-fold D4)", "smoothly_blend"),
                ("seamless_seg", "seamless_seg"),
            )
            if _peer(peer) is not None
        ]
        streams = (
            [int(s) for s in args.stream_sizes.split(",")]
            if args.stream_sizes
            else [args.size // 2, args.size]
        )
        for size in streams:
            x = np.random.default_rng(0).random((3, size, size), dtype=np.float32)
            xr.DataArray(x, dims=("band", "y", "x")).to_dataset(name="image").chunk(
                {"y": 512, "x": 512}
            ).to_zarr(f"{tmp}/scene-{size}.zarr", mode="w")
        jobs = [(m, args.size) for m in modes] + [("zarr -> predict -> zarr", s) for s in streams]
        for mode, size in jobs:
            speed.append(
                run_fresh(
                    __file__,
                    "--one",
                    mode,
                    "--size",
                    size,
                    "--tile-size",
                    args.tile_size,
                    "--tmp",
                    tmp,
                )
            )
    base = next(r for r in speed if r["mode"] == "predict")
    print(f"\nspeed and memory, float32 3 x {args.size}², T = {args.tile_size}, box-filter model")
    print(f"{'mode':<34}{'size':>6}{'seconds':>9}{'x predict':>10}{'peak GiB':>10}")
    for r in speed:
        print(
            f"{r['mode']:<34}{r['size']:>6}{r['seconds']:>9.2f}{r['seconds'] / base['seconds']:>10.2f}{r['peak'] / 2**30:>10.2f}"
        )
    z = [r for r in speed if r["mode"].startswith("zarr")]
    print(
        f"zarr streaming: peak RSS {z[1]['size']}² / {z[0]['size']}² = {z[1]['peak'] / z[0]['peak']:.2f} (scene x4)"
    )
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"quality": rows, "speed": speed}, f)
    return 0


if __name__ == "__main__":
    sys.exit(main())
