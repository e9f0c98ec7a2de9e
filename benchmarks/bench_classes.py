"""Benchmark: rare classes, per-class precision and recall of a small CNN.

The real Landsat 8 scene (path 224 row 78, 2020-05-18, bands 2/3/4) and its
four land-cover polygons (water, crop, tree, developed; everything else is
unlabelled, class 0, the loss's ``ignore_index``), cropped to the polygons'
area (rows 512:1280, columns 576:960 of the scene; the rest holds no
label), ``preprocess(nodata=0)``, tiled at T = 64. For every seed, tiling
strategy (``no_overlap``, ``overlap``, ``flipnslide``: the paper's
ablation), split (plain or ``stratify="label"``) and feed (plain shuffled or
``balance=True``, and the plain feed again for as many epochs as it takes to
see as many labelled tiles as the balanced feed did: "plain, longer"), a
small CNN (three 3x3 convolutions of 16 channels and a 1x1 head, torch, CPU,
one thread) is trained from the same initial weights for a few epochs on
``train`` and scored on the labelled pixels of every ``test`` tile. Printed (markdown): the labelled pixels of each class in each
subset, and precision / recall per class pooled over the seeds.

Tiles whose pixels are all unlabelled are left out of each batch before the
forward pass: with a mean loss over labelled pixels and no batch statistics
in the model they add nothing to the loss or its gradient, so this only
saves time; a batch with no labelled pixel takes no step.

    python benchmarks/bench_classes.py [--seeds 3] [--epochs 4] [--json out.json]
    python benchmarks/bench_classes.py --quick    # the vendored polygon area, seconds
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import warnings

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
SHARED = "/work/shared/data/landsat8/LC08_L1TP_224078_20200518_20200518_01_RT_"
VENDORED = os.path.join(HERE, os.pardir, "tests", "data", "landsat8")
AREA = os.path.join(VENDORED, "LC08_L1TP_224078_20200518_labels_area_RGB.tif")
POLYGONS = os.path.join(VENDORED, "LC08_L1TP_224078_20200518_20200518_01_RT_polygons.gpkg")
CLASSES = {"water": 1, "crop": 2, "tree": 3, "developed": 4}  # 0: unlabelled
CROP = (slice(512, 1280), slice(576, 960))  # (y, x) of the scene: the polygons' area
STRATEGIES = ("no_overlap", "overlap", "flipnslide")
SUBSETS = ("train", "val", "test")
FEEDS = ("plain", "balanced", "plain, longer")


def load_scene(quick: bool, data: str):
    """The labelled scene as a Dataset (``image``, ``label``), preprocessed."""
    import geopandas as gpd
    import xarray as xr

    import xflipnslide

    if quick:  # the polygons' area of the same scene, vendored (bands 4/3/2)
        scene = xflipnslide.open_image(AREA, chunks=None)
        where = "tests/data labels_area_RGB.tif (592 x 224 px, the polygons' area)"
    else:
        paths = [f"{data}B{b}.TIF" for b in (2, 3, 4)]
        missing = [p for p in paths if not os.path.exists(p)]
        if missing:
            raise SystemExit(f"missing {missing}: pass --data PREFIX, or --quick")
        scene = xflipnslide.open_image(paths, band_names=["blue", "green", "red"])
        scene = scene.isel(y=CROP[0], x=CROP[1])
        where = (
            f"{os.path.basename(data)}B2/B3/B4, rows {CROP[0].start}:{CROP[0].stop}, "
            f"columns {CROP[1].start}:{CROP[1].stop} (768 x 384 px, the polygons' area)"
        )
    polygons = gpd.read_file(POLYGONS, layer="land_cover")
    polygons = polygons.assign(cls=polygons["name"].map(CLASSES))
    label = xflipnslide.rasterize(polygons, like=scene, column="cls")
    ds = xr.Dataset({"image": scene, "label": label}).fns.preprocess(nodata=0)
    return ds.load(), where


def make_model(torch, classes: int, width: int):
    conv = torch.nn.Conv2d
    return torch.nn.Sequential(
        conv(3, width, 3, padding=1),
        torch.nn.ReLU(),
        conv(width, width, 3, padding=1),
        torch.nn.ReLU(),
        conv(width, width, 3, padding=1),
        torch.nn.ReLU(),
        conv(width, classes, 1),
    )


def train(torch, model, loader, epochs: int, max_batches: int | None, until: int = 0) -> int:
    """Train in place for ``epochs`` epochs, then on (up to 50 times as many)
    while fewer than ``until`` labelled tiles were seen; return the labelled
    tiles the model saw."""
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    seen, epoch = 0, 0
    while epoch < epochs or (0 < seen < until and epoch < 50 * epochs):
        epoch += 1
        for i, (x, y) in enumerate(loader):
            if max_batches is not None and i >= max_batches:
                break
            y = y.long()
            keep = (y != 0).flatten(1).any(1)  # all-unlabelled tiles: no loss, no gradient
            if not keep.any():
                continue
            x, y = x[keep].float(), y[keep]
            opt.zero_grad()
            loss = torch.nn.functional.cross_entropy(model(x), y, ignore_index=0)
            loss.backward()
            opt.step()
            seen += int(keep.sum())
    return seen


def confusion(torch, model, tiles, classes: int) -> np.ndarray:
    """``(true, predicted)`` counts over the labelled pixels of every tile,
    classes ``1..K-1`` (class 0, unlabelled, is never predicted)."""
    out = np.zeros((classes, classes), np.int64)
    if not tiles.sizes["tile"]:
        return out
    x = torch.as_tensor(tiles["image"].values, dtype=torch.float32)
    y = tiles["label"].values.astype(np.int64)
    with torch.no_grad():
        logits = torch.cat([model(x[a : a + 64]) for a in range(0, len(x), 64)])
    pred = logits[:, 1:].argmax(1).numpy() + 1
    m = y != 0
    np.add.at(out, (y[m], pred[m]), 1)
    return out


def fmt(num: int, den: int) -> str:
    return f"{num / den:.2f}" if den else "—"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="vendored area, 1 seed, 2 batches")
    p.add_argument("--data", default=SHARED, help="path prefix of the B2/B3/B4 GeoTIFFs")
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--epochs", type=int, default=4)
    p.add_argument("--tile-size", type=int, default=64)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--width", type=int, default=16)
    p.add_argument("--json")
    args = p.parse_args(argv)
    try:
        import torch
    except ImportError:
        print("torch is not installed: skipped")
        return 0
    import xflipnslide

    torch.set_num_threads(1)
    warnings.simplefilter("ignore", xflipnslide.XFlipNSlideWarning)  # edge crops, split drops
    seeds = 1 if args.quick else args.seeds
    epochs = 1 if args.quick else args.epochs
    max_batches = 2 if args.quick else None
    K = len(CLASSES) + 1
    start = time.perf_counter()
    ds, where = load_scene(args.quick, args.data)
    counts, pooled, seen = {}, {}, {}
    for strategy in STRATEGIES:
        tiles = ds.fns.tile(args.tile_size, strategy)
        for seed in range(seeds):
            for stratify in (None, "label"):
                parts = tiles.fns.split(
                    seed=seed, stratify=stratify, label="label", classes=K, ignore_index=0
                )
                split = "stratified" if stratify else "plain"
                counts[strategy, split, seed] = {
                    s: parts[s].attrs["fns_split_class_counts"][1:] for s in SUBSETS
                }
                budget = 0
                for feed in FEEDS:
                    loader = parts["train"].fns.torch_loader(
                        args.batch_size,
                        label="label",
                        shuffle=True,
                        seed=seed,
                        balance=feed == "balanced",
                        classes=K,
                        ignore_index=0,
                    )
                    torch.manual_seed(seed)  # the same initial weights for every run of a seed
                    model = make_model(torch, K, args.width)
                    until = budget if feed == FEEDS[2] else 0
                    n = train(torch, model, loader, epochs, max_batches, until)
                    budget = max(budget, n)
                    key = (strategy, split, feed)
                    seen[key] = seen.get(key, 0) + n
                    pooled[key] = pooled.get(key, 0) + confusion(torch, model, parts["test"], K)
    elapsed = time.perf_counter() - start

    names = list(CLASSES)
    print(
        f"classes benchmark: {where}; T = {args.tile_size}; CNN 3 x {args.width} ch; "
        f"{epochs} epochs, batches of {args.batch_size}; seeds 0..{seeds - 1}; "
        f"{elapsed:.0f} s"
    )
    print()
    print("Labelled pixels of each class (" + " / ".join(names) + ") in each subset")
    print()
    print("| tiling | split | seed | train | val | test |")
    print("|---|---|---|---|---|---|")
    for (strategy, split, seed), per in counts.items():
        cells = " | ".join("/".join(map(str, per[s])) for s in SUBSETS)
        print(f"| {strategy} | {split} | {seed} | {cells} |")
    print()
    print(
        "Precision / recall per class on the labelled pixels of the test tiles, pooled over "
        "the seeds (— : undefined, no test pixel of the class, or none predicted as it)"
    )
    print()
    print("| tiling | split | feed | labelled tiles seen | " + " | ".join(names) + " |")
    print("|---|---|---|---|" + "---|" * len(names))
    for (strategy, split, feed), cm in pooled.items():
        cells = []
        for c in range(1, K):
            tp = int(cm[c, c])
            cells.append(
                f"{fmt(tp, int(cm[1:, c].sum()))} / {fmt(tp, int(cm[c].sum()))} (n={cm[c].sum()})"
            )
        n = seen[strategy, split, feed]
        print(f"| {strategy} | {split} | {feed} | {n} | " + " | ".join(cells) + " |")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(
                {
                    "seconds": elapsed,
                    "counts": [[*k, v] for k, v in counts.items()],
                    "confusion": [[*k, v.tolist()] for k, v in pooled.items()],
                },
                f,
            )
    return 0


if __name__ == "__main__":
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    sys.exit(main())
