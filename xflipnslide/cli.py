"""The ``xflipnslide`` command line.

``xflipnslide demo`` tiles the built-in sample scene with every strategy and
writes the tiles to Zarr; ``xflipnslide tile INPUT --out OUT.zarr`` tiles a
scene file. Errors end with a one-line message and exit status 2.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import shutil
import sys
import time
import warnings
from collections.abc import Sequence

from .errors import XFlipNSlideError
from .plan import STRATEGIES, TRANSFORMS

log = logging.getLogger("xflipnslide")


class CliError(Exception):
    """A user-facing error: printed as one line, exit status 2."""


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="xflipnslide",
        description="Flip-n-Slide tiling of satellite scenes (xarray + dask).",
    )
    p.add_argument("-v", "--verbose", action="store_true", help="log what happens")
    sub = p.add_subparsers(dest="command", required=True)

    demo = sub.add_parser("demo", help="tile the built-in sample scene (offline)")
    demo.add_argument(
        "--out", default="xflipnslide-demo", help="output folder (default: %(default)s)"
    )
    demo.add_argument(
        "--tile-size", type=int, default=128, help="tile size in pixels (default: %(default)s)"
    )

    tile = sub.add_parser("tile", help="tile a GeoTIFF, Zarr or netCDF scene into a Zarr store")
    tile.add_argument("input", help="GeoTIFF, Zarr store or netCDF file")
    tile.add_argument("--out", required=True, help="output Zarr store")
    tile.add_argument("--tile-size", type=int, default=256)
    tile.add_argument("--strategy", choices=STRATEGIES, default="flipnslide")
    tile.add_argument("--edge", choices=("crop", "pad"), default="crop")
    tile.add_argument("--variable", help="variable to tile, for Zarr/netCDF inputs with several")
    tile.add_argument("--overwrite", action="store_true", help="replace OUT if it exists")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``xflipnslide`` command."""
    args = _parser().parse_args(argv)
    # zarr-python 3 warns on every consolidated write; xarray asks for one.
    warnings.filterwarnings("ignore", message="Consolidated metadata is currently not part")
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
    )
    try:
        if args.command == "demo":
            return _demo(args)
        return _tile(args)
    except (CliError, XFlipNSlideError, OSError, ValueError) as exc:
        first_line = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        print(f"xflipnslide {args.command}: error: {first_line}", file=sys.stderr)
        return 2


def _open_scene(path: str, variable: str | None = None):
    import xarray as xr

    from .io import open_image

    if not os.path.exists(path):
        raise CliError(f"no such file or folder: {path}")
    lower = path.rstrip("/").lower()
    try:
        if lower.endswith(".zarr") or os.path.isdir(path):
            ds = xr.open_zarr(path)
        elif lower.endswith((".nc", ".nc4", ".netcdf")):
            ds = xr.open_dataset(path, chunks={})
        else:
            return open_image(path)
    except (OSError, ValueError) as exc:
        raise CliError(f"cannot read {path}: {exc}") from exc
    names = [variable] if variable else list(ds.data_vars)
    if variable and variable not in ds:
        raise CliError(f"{path} has no variable {variable!r}; it has {list(ds.data_vars)}")
    return ds[names[0]] if len(names) == 1 else ds


def _write(tiles, out: str, overwrite: bool) -> None:
    """Write to a temporary store and move it in place, so a failed run
    leaves nothing that looks complete."""
    from dask.diagnostics import ProgressBar

    if os.path.exists(out) and not overwrite:
        raise CliError(f"{out} exists; pass --overwrite to replace it")
    tmp = f"{out.rstrip('/')}.partial"
    shutil.rmtree(tmp, ignore_errors=True)
    ds = tiles.to_dataset(name=tiles.name or "tiles") if hasattr(tiles, "to_dataset") else tiles
    try:
        with ProgressBar(out=sys.stderr) if sys.stderr.isatty() else contextlib.nullcontext():
            ds.to_zarr(tmp, mode="w", consolidated=None)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    shutil.rmtree(out, ignore_errors=True)
    os.replace(tmp, out)


def _tile(args) -> int:
    from .tiling import tile

    scene = _open_scene(args.input, args.variable)
    tiles = tile(scene, args.tile_size, args.strategy, edge=args.edge)
    _write(tiles, args.out, args.overwrite)
    print(f"wrote {tiles.sizes['tile']} tiles of {args.tile_size} px to {args.out}")
    return 0


def _demo(args) -> int:
    from .io import open_image, sample_scene_path
    from .tiling import tile

    os.makedirs(args.out, exist_ok=True)
    scene = open_image(sample_scene_path())
    print(
        f"sample scene: Landsat 8, bands {', '.join(map(str, scene.band.values))}, "
        f"{scene.sizes['y']} x {scene.sizes['x']} px, {scene.dtype}, {scene.rio.crs}"
    )
    header = f"{'strategy':<12}{'tiles':>7}{'MiB':>9}{'seconds':>9}  tiles per transform"
    print(header)
    print("-" * len(header))
    for strategy in STRATEGIES:
        start = time.perf_counter()
        tiles = tile(scene, args.tile_size, strategy)
        out = os.path.join(args.out, f"{strategy}.zarr")
        _write(tiles, out, overwrite=True)
        seconds = time.perf_counter() - start
        codes = tiles.transform.values
        per_code = ", ".join(
            f"{TRANSFORMS[c]} {int((codes == c).sum())}" for c in sorted(set(codes))
        )
        print(
            f"{strategy:<12}{tiles.sizes['tile']:>7}{tiles.nbytes / 2**20:>9.1f}"
            f"{seconds:>9.2f}  {per_code}"
        )
    print(f"tiles written to {os.path.abspath(args.out)}/{{{','.join(STRATEGIES)}}}.zarr")
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
