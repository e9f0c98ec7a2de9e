"""Benchmark: exporting chips — tiles/s and MB/s for GeoTIFF, TFRecord and
WebDataset against writing the same tiles to Zarr (zstd level 1), same run.

The real built-in sample scene, preprocessed and tiled (flipnslide, T = 64),
in memory, with a uint8 label tiled alongside.

    python benchmarks/bench_export.py [--tile-size 64] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
import warnings


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--tile-size", type=int, default=64)
    p.add_argument("--json")
    args = p.parse_args(argv)
    import xarray as xr

    import xflipnslide

    warnings.simplefilter("ignore")
    scene = xflipnslide.open_image(xflipnslide.sample_scene_path(), chunks=None).load()
    label = (scene.isel(band=0, drop=True) // 1000).astype("uint8")
    ds = xr.Dataset({"image": scene, "label": label}).fns.preprocess(nodata=0)
    tiles = ds.fns.tile(args.tile_size, edge="pad").fns.load()
    n = tiles.sizes["tile"]
    mb = (tiles.image.nbytes + tiles.label.nbytes) / 1e6
    rows = {}
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        tiles.to_zarr(os.path.join(tmp, "t.zarr"), encoding=xflipnslide.zarr_encoding(tiles))
        rows["Zarr (zstd 1)"] = time.perf_counter() - start
        for fmt in xflipnslide.export.FORMATS:
            try:
                start = time.perf_counter()
                tiles.fns.export_chips(os.path.join(tmp, fmt), format=fmt, label="label")
                rows[fmt] = time.perf_counter() - start
            except ImportError as exc:
                print(f"{fmt}: skipped ({exc})")
    base = rows["Zarr (zstd 1)"]
    print(
        f"exporting {n} tiles of {args.tile_size} px (image float32 x 3 + label uint8), {mb:.1f} MB"
    )
    print(f"{'format':<16}{'seconds':>9}{'tiles/s':>10}{'MB/s':>8}{'x Zarr':>8}")
    for name, sec in rows.items():
        print(f"{name:<16}{sec:>9.3f}{n / sec:>10.0f}{mb / sec:>8.0f}{sec / base:>8.2f}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({k: {"seconds": v, "tiles": n, "MB": mb} for k, v in rows.items()}, f)
    return 0


if __name__ == "__main__":
    sys.exit(main())
