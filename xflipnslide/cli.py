"""The ``xflipnslide`` command line.

``xflipnslide demo`` tiles the built-in sample scene with every strategy and
writes the tiles to Zarr; ``xflipnslide tile INPUT --out OUT.zarr`` tiles a
scene file. Errors end with a one-line message and exit status 2.
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import sys
import time
import warnings
from collections.abc import Sequence

from .errors import XFlipNSlideError
from .io import PLANETARY_COMPUTER
from .plan import STRATEGIES, TRANSFORMS

log = logging.getLogger("xflipnslide")


class CliError(Exception):
    """A user-facing error: printed as one line, exit status 2."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # one line, no usage dump
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _add_tiling_options(p: argparse.ArgumentParser, tile_size: int = 256) -> None:
    p.add_argument("--out", required=True, help="output Zarr store")
    p.add_argument(
        "--tile-size",
        type=int,
        default=tile_size,
        help="tile size in pixels (default: %(default)s)",
    )
    p.add_argument("--strategy", choices=STRATEGIES, default="flipnslide")
    p.add_argument("--edge", choices=("crop", "pad"), default="crop")
    p.add_argument("--no-preprocess", action="store_true", help="tile the values as they are")
    p.add_argument(
        "--nodata", type=float, help="value marking missing pixels (default: from the file)"
    )
    p.add_argument("--overwrite", action="store_true", help="replace OUT if it exists")


def _parser() -> argparse.ArgumentParser:
    p = _Parser(
        prog="xflipnslide",
        description="Flip-n-Slide tiling of satellite scenes (xarray + dask).",
    )
    p.add_argument("-v", "--verbose", action="store_true", help="log what happens")
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser)

    demo = sub.add_parser("demo", help="preprocess and tile the built-in sample scene (offline)")
    demo.add_argument(
        "--out", default="xflipnslide-demo", help="output folder (default: %(default)s)"
    )
    demo.add_argument(
        "--tile-size", type=int, default=128, help="tile size in pixels (default: %(default)s)"
    )

    tile = sub.add_parser("tile", help="tile a GeoTIFF, Zarr or netCDF scene into a Zarr store")
    tile.add_argument("input", help="GeoTIFF, Zarr store or netCDF file")
    _add_tiling_options(tile)
    tile.add_argument("--variable", help="variable to tile, for Zarr/netCDF inputs with several")
    tile.add_argument(
        "--chunks", type=int, default=2048, help="input chunk side in pixels (default: %(default)s)"
    )

    stac = sub.add_parser("stac", help="search a STAC catalog, load, preprocess, tile, write")
    stac.add_argument("--bbox", type=float, nargs=4, required=True, metavar=("W", "S", "E", "N"))
    stac.add_argument("--datetime", required=True, help='e.g. "2023-01/2023-03"')
    stac.add_argument("--collection", action="append", help="repeatable (default: landsat-c2-l2)")
    stac.add_argument("--band", action="append", help="asset name, repeatable (default: all)")
    stac.add_argument("--max-cloud", type=float, help="keep items with eo:cloud_cover below this")
    stac.add_argument("--resolution", type=float, help="output pixel size in the output CRS units")
    stac.add_argument(
        "--catalog", default=PLANETARY_COMPUTER, help="STAC API URL (default: Planetary Computer)"
    )
    stac.add_argument("--no-sign", action="store_true", help="do not sign asset URLs")
    _add_tiling_options(stac)
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
    commands = {"demo": _demo, "tile": _tile, "stac": _stac}
    try:
        return commands[args.command](args)
    except (CliError, XFlipNSlideError, OSError, ValueError, RuntimeError) as exc:
        first_line = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        print(f"xflipnslide {args.command}: error: {first_line}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"xflipnslide {args.command}: interrupted", file=sys.stderr)
        return 130


def _open_scene(path: str, variable: str | None = None, chunks: int = 2048):
    import xarray as xr

    from .io import open_image

    if not os.path.exists(path):
        raise CliError(f"no such file or folder: {path}")
    lower = path.rstrip("/").lower()
    try:
        if lower.endswith(".zarr") or os.path.isdir(path):
            ds = xr.open_zarr(path)
        elif lower.endswith((".nc", ".nc4", ".netcdf")):
            ds = _open_netcdf(path)
        else:
            return open_image(path, chunks={"band": -1, "y": chunks, "x": chunks})
    except (OSError, ValueError) as exc:
        raise CliError(f"cannot read {path}: {exc}") from exc
    names = [variable] if variable else list(ds.data_vars)
    if variable and variable not in ds:
        raise CliError(f"{path} has no variable {variable!r}; it has {list(ds.data_vars)}")
    return ds[names[0]] if len(names) == 1 else ds


def _open_netcdf(path: str):
    """Open a netCDF file lazily; files the netCDF4 library rejects (some
    attribute names) are retried with scipy's netCDF-3 reader."""
    import xarray as xr

    try:
        return xr.open_dataset(path, chunks={})
    except (OSError, ValueError, UnicodeDecodeError) as first:
        try:
            return xr.open_dataset(path, chunks={}, engine="scipy")
        except Exception:
            raise first from None


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
        with ProgressBar(minimum=1.0, out=sys.stderr):
            ds.to_zarr(tmp, mode="w", consolidated=None)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    shutil.rmtree(out, ignore_errors=True)
    os.replace(tmp, out)


def _prepare_and_tile(scene, args):
    from .preprocess import preprocess
    from .tiling import tile

    if not args.no_preprocess:
        scene = preprocess(scene, nodata=args.nodata)
    return tile(scene, args.tile_size, args.strategy, edge=args.edge)


def _tile(args) -> int:
    scene = _open_scene(args.input, args.variable, args.chunks)
    tiles = _prepare_and_tile(scene, args)
    _write(tiles, args.out, args.overwrite)
    print(f"wrote {tiles.sizes['tile']} tiles of {args.tile_size} px to {args.out}")
    return 0


def _stac(args) -> int:
    from .io import load_stac

    if os.path.exists(args.out) and not args.overwrite:
        raise CliError(f"{args.out} exists; pass --overwrite to replace it")
    scene = load_stac(
        bbox=args.bbox,
        datetime=args.datetime,
        collections=args.collection or ["landsat-c2-l2"],
        bands=args.band,
        query={"eo:cloud_cover": {"lt": args.max_cloud}} if args.max_cloud is not None else None,
        resolution=args.resolution,
        catalog=args.catalog,
        sign=not args.no_sign,
    )
    tiles = _prepare_and_tile(scene, args)
    _write(tiles, args.out, args.overwrite)
    print(
        f"wrote {tiles.sizes['tile']} tiles of {args.tile_size} px "
        f"({scene.sizes['time']} dates composited) to {args.out}"
    )
    return 0


def _figures(scene, ready, tiles, out: str, tile_size: int) -> list[str]:
    """Save the demo's figures; an empty list without matplotlib."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        log.warning('figures skipped: install matplotlib (pip install "xflipnslide[viz]")')
        return []
    from .plot import plot_rgb, plot_samples, plot_tiles

    paths = []
    masked = scene.where(scene != 0)
    figs = {
        "scene.png": plot_rgb(masked, title="sample scene (nodata transparent)").figure,
        "tiles.png": plot_tiles(masked, tile_size, "flipnslide").figure,
        "samples.png": plot_samples(tiles),
    }
    for name, fig in figs.items():
        path = os.path.join(out, name)
        fig.savefig(path, dpi=90, bbox_inches="tight")
        plt.close(fig)
        paths.append(path)
    return paths


def _demo(args) -> int:
    from .io import open_image, sample_scene_path
    from .preprocess import preprocess
    from .tiling import tile

    os.makedirs(args.out, exist_ok=True)
    scene = open_image(sample_scene_path()).load()
    print(
        f"sample scene: Landsat 8, bands {', '.join(map(str, scene.band.values))}, "
        f"{scene.sizes['y']} x {scene.sizes['x']} px, {scene.dtype}, {scene.rio.crs}; "
        f"{int((scene == 0).any('band').sum())} nodata pixels (zeros)"
    )
    start = time.perf_counter()
    ready = preprocess(scene, nodata=0)
    print(
        f"preprocessed (nodata masked, gaps filled, bands standardised) in {time.perf_counter() - start:.2f} s"
    )
    header = f"{'strategy':<12}{'tiles':>7}{'MiB':>8}{'seconds':>9}  tiles per transform code"
    print(header)
    print("-" * len(header))
    flipnslide = None
    for strategy in STRATEGIES:
        start = time.perf_counter()
        tiles = tile(ready, args.tile_size, strategy)
        _write(tiles.rename("tiles"), os.path.join(args.out, f"{strategy}.zarr"), overwrite=True)
        seconds = time.perf_counter() - start
        codes = tiles.transform.values
        per_code = "  ".join(f"{c}:{int((codes == c).sum())}" for c in sorted(set(codes.tolist())))
        print(
            f"{strategy:<12}{tiles.sizes['tile']:>7}{tiles.nbytes / 2**20:>8.1f}{seconds:>9.2f}  {per_code}"
        )
        flipnslide = tiles if strategy == "flipnslide" else flipnslide
    print("codes: " + ", ".join(f"{k} {name}" for k, name in enumerate(TRANSFORMS)))
    figures = _figures(scene, ready, flipnslide, args.out, args.tile_size)
    print(
        f"tiles: {os.path.join(os.path.abspath(args.out), '{' + ','.join(STRATEGIES) + '}.zarr')}"
    )
    if figures:
        print(f"figures: {', '.join(figures)}")
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
