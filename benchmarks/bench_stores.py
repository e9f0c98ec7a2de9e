"""Benchmark: codecs for tile stores, on real scenes.

Real Landsat 8 bands from ``../shared/data`` (the built-in
sample scene where those are absent), preprocessed (float32) and raw
(integer), tiled (flipnslide, T = 128) and written to Zarr with each codec;
write and read throughput in MB/s of tile bytes and the stored size as a
share of the raw bytes. The same run measures ``preprocess -> tile ->
to_zarr`` against writing the same (already computed) tiles with the same
codec.

    python benchmarks/bench_stores.py [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
import warnings

HERE = os.path.dirname(os.path.abspath(__file__))
SHARED = os.path.join(HERE, os.pardir, os.pardir, "shared", "data")


def codecs():
    from zarr.codecs import BloscCodec, ZstdCodec

    return {
        "zarr default (zstd)": None,
        "zstd level 1": [ZstdCodec(level=1)],
        "blosc lz4 + shuffle": [BloscCodec(cname="lz4", clevel=5, shuffle="shuffle")],
        "blosc zstd 1 + shuffle": [BloscCodec(cname="zstd", clevel=1, shuffle="shuffle")],
        "none": [],
    }


def scenes(small: bool):
    import xarray as xr

    import xflipnslide

    l8 = os.path.join(SHARED, "landsat8")
    if os.path.isdir(l8) and not small:
        bands = [
            xflipnslide.open_image(
                os.path.join(l8, f"LC08_L1TP_224078_20200518_20200518_01_RT_{b}.TIF"), chunks=None
            )
            for b in ("B4", "B3", "B2")
        ]
        raw = xr.concat(bands, "band").assign_coords(band=["red", "green", "blue"]).load()
        yield "Landsat 8, 3 bands", raw, 0
    raw = xflipnslide.open_image(xflipnslide.sample_scene_path(), chunks=None).load()
    yield "sample scene", raw, 0


def measure(tiles, codec, path) -> dict:
    import xarray as xr

    ds = tiles.to_dataset(name="image")
    encoding = {} if codec is None else {"image": {"compressors": codec}}
    shutil.rmtree(path, ignore_errors=True)
    start = time.perf_counter()
    ds.to_zarr(path, encoding=encoding)
    write = time.perf_counter() - start
    size = sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(path) for f in fs)
    start = time.perf_counter()
    xr.open_zarr(path)["image"].load()
    read = time.perf_counter() - start
    mb = tiles.nbytes / 1e6
    return {"write MB/s": mb / write, "read MB/s": mb / read, "size": size / tiles.nbytes}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--small", action="store_true")
    p.add_argument("--json")
    args = p.parse_args(argv)
    import dask

    import xflipnslide  # noqa: F401  (registers .fns)

    warnings.simplefilter("ignore")
    dask.config.set(scheduler="threads")
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for name, raw, nodata in scenes(args.small):
            raw = raw.chunk({"y": 1024, "x": 1024})
            for kind, scene in (("raw", raw), ("preprocessed", raw.fns.preprocess(nodata=nodata))):
                tiles = scene.fns.tile(128, edge="pad").persist()
                for codec_name, codec in codecs().items():
                    row = {"scene": name, "data": f"{kind} {tiles.dtype}", "codec": codec_name}
                    row.update(measure(tiles, codec, os.path.join(tmp, "t.zarr")))
                    results.append(row)
                    print(
                        f"{name:<20}{row['data']:<22}{codec_name:<24}{row['write MB/s']:>8.0f}"
                        f"{row['read MB/s']:>8.0f}{row['size']:>8.2f}",
                        flush=True,
                    )
            # the pipeline vs writing the same bytes
            codec = codecs()["zstd level 1"]  # the tile-store default
            ready = raw.fns.preprocess(nodata=nodata).fns.tile(128, edge="pad")
            computed = ready.persist()
            base = measure(computed, codec, os.path.join(tmp, "b.zarr"))["write MB/s"]
            start = time.perf_counter()
            ready.to_dataset(name="image").to_zarr(
                os.path.join(tmp, "p.zarr"), mode="w", encoding={"image": {"compressors": codec}}
            )
            pipe = computed.nbytes / 1e6 / (time.perf_counter() - start)
            print(
                f"{name}: preprocess -> tile -> to_zarr at {pipe / base:.2f}x the speed of writing the tiles"
            )
            results.append({"scene": name, "pipeline / write": pipe / base})
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f)
    return 0


if __name__ == "__main__":
    sys.exit(main())
