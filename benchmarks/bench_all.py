"""Run every benchmark and print one table of ratios against same-run baselines.

python benchmarks/bench_all.py            # the full sizes (a few minutes on 2 cores)
python benchmarks/bench_all.py --small    # tiny sizes: a smoke run (two scripts at once)
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import os
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor

HERE = os.path.dirname(os.path.abspath(__file__))

FULL = {
    "bench_tile.py": [],
    "bench_preprocess.py": ["--gaps", "0.05,0.30"],
    "bench_untile.py": [],
    "bench_torch.py": [],
    "bench_scale.py": [],
    "bench_startup.py": [],
    "bench_cog.py": [],
    "bench_predict.py": [],
    "bench_predict_runner.py": [],
    "bench_predict_scale.py": [],
    "bench_stores.py": [],
    "bench_export.py": [],
    "bench_collection.py": [],
}
SMALL = {
    "bench_tile.py": ["--size", "256", "--tile-size", "32", "--repeat", "1"],
    "bench_preprocess.py": [
        "--size",
        "256",
        "--original-size",
        "128",
        "--gaps",
        "0.1",
        "--repeat",
        "1",
    ],
    "bench_untile.py": ["--size", "256", "--tile-size", "32", "--repeat", "1"],
    "bench_torch.py": [
        "--size",
        "256",
        "--tile-size",
        "32",
        "--workers",
        "1",
        "--repeat",
        "1",
        "--no-real",
    ],
    "bench_scale.py": ["--sizes", "512,1024", "--tile-size", "64"],
    "bench_startup.py": ["--repeat", "1"],
    "bench_cog.py": ["--sizes", "512,1024", "--baseline-max", "1024"],
    "bench_predict.py": ["--size", "256", "--tile-size", "64", "--quality-tile-size", "32"],
    "bench_predict_runner.py": [
        *("--size", "256", "--d4-size", "256", "--tile-size", "32"),
        *("--models", "identity", "--repeat", "1"),
    ],
    "bench_predict_scale.py": ["--sizes", "512,1024", "--tile-size", "64"],
    "bench_stores.py": ["--small"],
    "bench_export.py": ["--tile-size", "128"],
    "bench_collection.py": ["--small"],
}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--small", action="store_true", help="tiny sizes, for a smoke run")
    p.add_argument(
        "--jobs", type=int, help="scripts run at once (default 1; 2 with --small, a smoke run)"
    )
    args = p.parse_args(argv)
    plan = SMALL if args.small else FULL
    jobs = args.jobs if args.jobs is not None else (2 if args.small else 1)
    results = {}
    with tempfile.TemporaryDirectory() as tmp:

        def run(item):
            script, extra = item
            out = os.path.join(tmp, script + ".json")
            cmd = [sys.executable, os.path.join(HERE, script), *extra, "--json", out]
            return script, out, subprocess.run(cmd, capture_output=True, text=True)

        # Timings need the machine to themselves: the full run goes one script
        # at a time; the smoke run (timings meaningless) two at once.
        with ThreadPoolExecutor(max_workers=jobs) as pool:
            for script, out, done in pool.map(run, plan.items()):
                print(done.stdout, end="" if done.stdout.endswith("\n") else "\n")
                if done.returncode:
                    print(done.stderr, file=sys.stderr)
                    return done.returncode
                if os.path.exists(out):
                    with open(out) as f:
                        results[script] = json.load(f)
                print()

    print("summary (ratios against baselines measured in this run)")
    print(f"{'measure':<52}{'value':>10}  target")
    lines = []
    tile = {r["mode"]: r for r in results.get("bench_tile.py", [])}
    if tile:
        mem = tile["memcpy"]["seconds"]
        io = tile["memcpy"]["in_bytes"] + tile["memcpy"]["out_bytes"]
        lines.append(
            (
                "tile (numpy) time / memcpy of the output",
                tile["tile-numpy"]["seconds"] / mem,
                "<= 1.5",
            )
        )
        lines.append(
            (
                "tile (numpy) peak RSS / (input + output)",
                tile["tile-numpy"]["peak_rss"] / io,
                "<= 1.2",
            )
        )
        lines.append(
            ("tile (dask, store) time / memcpy", tile["tile-dask-store"]["seconds"] / mem, "")
        )
        if "numpy-slicing" in tile:
            lines.append(
                (
                    "tile (numpy) time / numpy slicing",
                    tile["tile-numpy"]["seconds"] / tile["numpy-slicing"]["seconds"],
                    "",
                )
            )
        if "tile-dask-load" in tile:
            numpy_s = tile["tile-numpy"]["seconds"]
            lines.append(
                (
                    "lazy tile -> memory (fns.load) time / numpy path",
                    tile["tile-dask-load"]["seconds"] / numpy_s,
                    "<= 2",
                )
            )
            lines.append(
                (
                    "lazy tile -> memory (fns.load) peak / (in + out)",
                    tile["tile-dask-load"]["peak_rss"] / io,
                    "<= 1.3",
                )
            )
        if "zarr-tile-load" in tile:
            lines.append(
                (
                    "Zarr -> tile -> fns.load / (Zarr read + numpy tile)",
                    tile["zarr-tile-load"]["seconds"]
                    / tile["zarr-read-then-tile-numpy"]["seconds"],
                    "<= 1.3",
                )
            )
    for gaps, rows in results.get("bench_preprocess.py", {}).items():
        by = {r["mode"]: r["seconds"] for r in rows}
        lines.append(
            (
                f"preprocess numpy speed-up vs original, {float(gaps):.0%} gaps",
                by["original"] / by["fns-numpy"],
                ">= 20",
            )
        )
        lines.append(
            (
                f"preprocess dask speed-up vs original, {float(gaps):.0%} gaps",
                by["original"] / by["fns-dask"],
                ">= 20",
            )
        )
        lines.append(
            (
                f"preprocess numpy speed-up vs scipy EDT, {float(gaps):.0%} gaps",
                by["scipy-edt"] / by["fns-numpy"],
                "",
            )
        )
    untile = results.get("bench_untile.py")
    if untile:
        lines.append(
            (
                "untile (hann) time / memcpy of its input",
                untile["untile blend=hann"]["x memcpy"],
                "<= 2",
            )
        )
    torch_rows = results.get("bench_torch.py")
    if torch_rows:

        def rate(key):
            return torch_rows[key]["tiles"] / torch_rows[key]["seconds"]

        base = rate("xbatcher on the raw scene (50 % overlap)")
        lines.append(
            (
                "torch feed (in memory, shuffled) tiles/s / xbatcher",
                rate("in memory, shuffled, 0 workers") / base,
                ">= 1",
            )
        )
        mem = torch_rows["in memory, in order, 0 workers"]["seconds"]
        for name, once in (
            ("lazy scene", "compute all lazy-scene tiles into memory once"),
            ("Zarr tiles", "load all Zarr tiles into memory once"),
        ):
            lines.append(
                (
                    f"shuffled {name} epoch / (load all + memory epoch)",
                    torch_rows[f"{name}, shuffled, 0 workers"]["seconds"]
                    / (torch_rows[once]["seconds"] + mem),
                    "<= 1.5",
                )
            )
        store = "Landsat Zarr tile store (T = 128)"
        if f"{store}: load it all into memory" in torch_rows:
            whole = torch_rows[f"{store}: load it all into memory"]["seconds"]
            for order in ("in order", "shuffled"):
                lines.append(
                    (
                        f"Landsat tile store, {order} epoch / load it all",
                        torch_rows[f"{store}, {order}, 0 workers"]["seconds"] / whole,
                        "<= 1",
                    )
                )
        for name in ("lazy scene", "Zarr tiles", "Landsat GeoTIFF scene (T = 256)", store):
            zero = torch_rows.get(f"{name}, shuffled, 0 workers")
            more = [
                v
                for k, v in torch_rows.items()
                if k.startswith(f"{name}, shuffled, ") and k.endswith(" workers")
            ]
            if zero and len(more) > 1:
                lines.append(
                    (
                        f"{name.split(' (')[0]}, shuffled: 2 workers speed / 0",
                        zero["seconds"] / more[-1]["seconds"],
                        ">= 1.3",
                    )
                )
    scale = results.get("bench_scale.py")
    if scale:
        for step in ("all", "pre", "tile"):
            for a, b in itertools.pairwise([r for r in scale if r.get("step", "all") == step]):
                lines.append(
                    (
                        f"out of core ({step}), peak RSS, scene {b['size']}² / {a['size']}²",
                        b["peak"] / a["peak"],
                        "<= 1.1",
                    )
                )
        scale = [r for r in scale if r.get("step", "all") == "all"]
        lines.append(
            (
                "graph tasks per input chunk, largest / smallest",
                (scale[-1]["tasks"] / scale[-1]["chunks"])
                / (scale[0]["tasks"] / scale[0]["chunks"]),
                "~ 1",
            )
        )
    startup = results.get("bench_startup.py")
    if startup:
        lines.append(("import xflipnslide / import xbatcher", startup["import ratio"], "<= 1.3"))
        lines.append(("xflipnslide --help, seconds", startup["xflipnslide --help"], "< 1"))
        first = startup["first tile, cold numba cache"]
        lines.append(("first tile, empty numba cache, seconds", first, "<= 2"))
        cpu = startup["first tile, cold numba cache (CPU)"]
        lines.append(("the same, CPU seconds (a busy machine's wall time)", cpu, "<= 2"))
    cog = results.get("bench_cog.py")
    if cog:
        streamed = [r for r in cog if r["mode"] == "streamed"]
        a, b = streamed[0], streamed[-1]
        lines.append(
            (
                f"COG write peak RSS, {b['size']}² / {a['size']}²",
                b["peak_above"] / a["peak_above"],
                "flat",
            )
        )
        base = [r for r in cog if r["mode"] == "in-memory"]
        if base:
            mine = next(r for r in streamed if r["size"] == base[-1]["size"])
            lines.append(
                (
                    f"COG write peak RSS, streamed / in-memory, {mine['size']}²",
                    mine["peak_above"] / base[-1]["peak_above"],
                    "< 1",
                )
            )
    predict = results.get("bench_predict.py")
    if predict:
        quality = dict(predict["quality"])
        naive = quality["naive no-overlap stitching"]
        best = min(v for k, v in quality.items() if k.startswith("predict blend="))
        lines.append(("seam RMSE, best blend / naive stitching", best / naive, "< 1"))
        for peer in ("Smoothly-Blend (spline, 8-fold D4)", "seamless_seg (trust weights)"):
            if peer in quality:
                lines.append(
                    (f"seam RMSE, best blend / {peer.split(' (')[0]}", best / quality[peer], "<= 1")
                )
        speed = {r["mode"]: r for r in predict["speed"]}
        peer = speed.get("Smoothly-Blend (8-fold D4)")
        if peer:
            mine = speed["predict tta=d4"]
            lines.append(
                ("predict tta=d4 time / Smoothly-Blend", mine["seconds"] / peer["seconds"], "<= 1")
            )
            lines.append(
                ("predict tta=d4 peak RSS / Smoothly-Blend", mine["peak"] / peer["peak"], "<= 1")
            )
    runner = results.get("bench_predict_runner.py")
    if runner:
        by = {(r["model"], r["device"], r["mode"]): r for r in runner}
        model = "small CNN" if any(k[0] == "small CNN" for k in by) else runner[0]["model"]
        for device in sorted({r["device"] for r in runner}):
            for mode in ("predict", "predict tta=d4"):
                mine = by.get((model, device, mode))
                if mine:
                    lines.append(
                        (f"{mode} / {model}'s own time ({device})", mine["x_model"], "<= 1.05")
                    )
        mine, peer = by.get((model, "cpu", "predict")), by.get((model, "cpu", "toolbelt"))
        if mine and peer:
            lines.append(
                (
                    f"predict overhead ms/window, {model}: ours - toolbelt's",
                    mine["overhead_ms"] - peer["overhead_ms"],
                    "<= 0",
                )
            )
    pscale = results.get("bench_predict_scale.py")
    if pscale:
        a, b = pscale[0], pscale[-1]
        steps = max(1, round(math.log(b["size"] ** 2 / a["size"] ** 2, 4)))
        lines.append(
            (
                f"predict Zarr->Zarr peak RSS per 4x pixels, {a['size']}²..{b['size']}²",
                (b["peak"] / a["peak"]) ** (1 / steps),
                "<= 1.1",
            )
        )
        lines.append(
            (
                f"predict Zarr->Zarr peak above warm base / scene bytes, {b['size']}²",
                b["peak_above"] / b["scene_bytes"],
                "< 0.02",
            )
        )
    stores = results.get("bench_stores.py")
    if stores:
        for row in stores:
            if "pipeline / write" in row:
                lines.append(
                    (
                        f"preprocess->tile->to_zarr / write, {row['scene']}",
                        row["pipeline / write"],
                        ">= 0.5",
                    )
                )
    collection = results.get("bench_collection.py")
    if collection:
        n0, n1 = (collection["builds"][k]["scenes"] for k in (0, -1))
        lines.append((f"collection build s/scene, {n1} / {n0} scenes", collection["flat"], "~ 1"))
        lines.append(
            (f"collection graph tasks/scene, {n1} / {n0} scenes", collection["tasks_flat"], "1")
        )
        if "feed_ratio" in collection:
            lines.append(
                ("collection epoch tiles/s / one scene's", collection["feed_ratio"], ">= 0.9")
            )
    for name, value, target in lines:
        print(f"{name:<52}{value:>10.2f}  {target}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
