"""The ``xflipnslide`` command line.

``xflipnslide demo`` tiles the built-in sample scene with every strategy and
writes the tiles to Zarr; ``xflipnslide tile INPUT --out OUT.zarr`` tiles a
scene file; ``stac``, ``export`` and ``predict`` load from a STAC catalog,
write chips and run a model. Every failure ends with a one-line message on
stderr and exit status 2 (``-v`` adds the traceback).

Modules: this one parses the arguments and runs a command;
:mod:`.commands` (``tile``, ``stac``, ``export``, ``predict``) and
:mod:`.demo` are the commands, :mod:`.scenes` what they share (open a
scene, tile it, write a store), :mod:`.output` what they print.
"""

from __future__ import annotations

import argparse
import logging
import sys
import traceback
import warnings
from collections.abc import Sequence

from ..export import FORMATS
from ..io import PLANETARY_COMPUTER
from ..plan import EDGES, STRATEGIES
from ..schema import IMAGE
from . import commands
from .demo import demo
from .output import CliError, one_line, quiet_third_party

__all__ = ["PLANETARY_COMPUTER", "STRATEGIES", "VARIABLE", "CliError", "main"]

#: Where the tiles go in the stores the CLI writes.
VARIABLE = IMAGE

#: The function that runs each command.
COMMANDS = {
    "demo": demo,
    "tile": commands.tile,
    "stac": commands.stac,
    "predict": commands.predict_scene,
    "export": commands.export,
}


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # one line, no usage dump
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


class _Help(argparse.ArgumentDefaultsHelpFormatter):
    """Shows every option's default."""


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive integer; got {text!r}")
    return value


def _add_tiling_options(p: argparse.ArgumentParser, tile_size: int = 256) -> None:
    p.add_argument("--out", required=True, help="output Zarr store")
    p.add_argument("--tile-size", type=_positive, default=tile_size, help="tile size in pixels")
    p.add_argument("--strategy", choices=STRATEGIES, default=STRATEGIES[0], help="tiling strategy")
    p.add_argument(
        "--edge", choices=EDGES, default=EDGES[0], help="crop to, or pad to, whole tiles"
    )
    p.add_argument("--no-preprocess", action="store_true", help="tile the values as they are")
    p.add_argument(
        "--nodata", type=float, default=None, help="value marking missing pixels (None: the file's)"
    )
    p.add_argument(
        "--min-valid",
        type=float,
        default=None,
        help="drop tiles with less than this share of observed (not filled) pixels",
    )
    p.add_argument(
        "--overwrite", action="store_true", help="replace OUT if it is a tile store written here"
    )


def _verbose(p: argparse.ArgumentParser, top: bool = False) -> None:
    p.add_argument(
        "-v",
        "--verbose",
        action="store_true",
        default=False if top else argparse.SUPPRESS,
        help="log what happens; tracebacks on errors",
    )


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("xflipnslide")
    except PackageNotFoundError:  # pragma: no cover
        return "unknown"


def _parser() -> argparse.ArgumentParser:
    p = _Parser(
        prog="xflipnslide",
        description="Flip-n-Slide tiling of satellite scenes (xarray + dask).",
        formatter_class=_Help,
    )
    _verbose(p, top=True)
    p.add_argument("--version", action="version", version=f"xflipnslide {_version()}")
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser)

    def command(name: str, text: str) -> argparse.ArgumentParser:
        c = sub.add_parser(name, help=text, description=text, formatter_class=_Help)
        _verbose(c)
        return c

    demo = command("demo", "preprocess and tile the built-in sample scene (offline)")
    demo.add_argument("--out", default="xflipnslide-demo", help="output folder")
    demo.add_argument("--tile-size", type=_positive, default=128, help="tile size in pixels")

    tile = command("tile", "tile a GeoTIFF, Zarr or netCDF scene into a Zarr store")
    tile.add_argument("input", help="GeoTIFF, Zarr store or netCDF file")
    _add_tiling_options(tile)
    tile.add_argument(
        "--variable", default=None, help="variable to tile, for Zarr/netCDF inputs with several"
    )
    tile.add_argument(
        "--label", default=None, help="an integer label variable tiled with the image, unscaled"
    )
    tile.add_argument("--chunks", type=_positive, default=2048, help="input chunk side in pixels")

    stac = command("stac", "search a STAC catalog, load, preprocess, tile, write")
    stac.add_argument("--bbox", type=float, nargs=4, required=True, metavar=("W", "S", "E", "N"))
    stac.add_argument("--datetime", required=True, help='e.g. "2023-01/2023-03"')
    stac.add_argument(
        "--collection", action="append", default=None, help="repeatable (None: landsat-c2-l2)"
    )
    stac.add_argument(
        "--band", action="append", default=None, help="asset name, repeatable (None: all)"
    )
    stac.add_argument(
        "--max-cloud", type=float, default=None, help="keep items with eo:cloud_cover below this"
    )
    stac.add_argument(
        "--resolution", type=float, default=None, help="output pixel size in the output CRS units"
    )
    stac.add_argument("--catalog", default=PLANETARY_COMPUTER, help="STAC API URL")
    stac.add_argument("--no-sign", action="store_true", help="do not sign asset URLs")
    stac.add_argument(
        "--mask-clouds", action="store_true", help="mask clouds and shadows with the QA asset"
    )
    stac.add_argument(
        "--timeout", type=float, default=30.0, help="seconds to wait for the catalog to answer"
    )
    _add_tiling_options(stac)

    exp = command("export", "write a tile store as GeoTIFF chips, TFRecord or WebDataset shards")
    exp.add_argument("tiles", help="a tile store (Zarr) written by xflipnslide tile or .to_zarr")
    exp.add_argument("--format", choices=FORMATS, default=FORMATS[0])
    exp.add_argument("--out", required=True, help="output folder")
    exp.add_argument("--image", default=IMAGE, help="image variable")
    exp.add_argument("--label", default=None, help="label variable (None: images only)")
    exp.add_argument("--shard-size", type=_positive, default=1000, help="tiles per shard")
    exp.add_argument(
        "--crs", default=None, help="the tiles' CRS when the store has none, e.g. EPSG:32621"
    )
    exp.add_argument("--overwrite", action="store_true", help="replace OUT if it is an export")

    pred = command("predict", "run a TorchScript model over a scene, write a GeoTIFF (COG)")
    pred.add_argument("scene", help="GeoTIFF, Zarr store or netCDF file")
    pred.add_argument("--model", required=True, help="TorchScript model file (torch.jit.save)")
    pred.add_argument("--out", required=True, help="output GeoTIFF (Cloud Optimized)")
    pred.add_argument("--tile-size", type=_positive, default=256, help="window size in pixels")
    pred.add_argument("--stride", type=_positive, default=None, help="step (None: tile-size / 2)")
    pred.add_argument("--tta", choices=("none", "d4"), default="none", help="test-time views")
    pred.add_argument(
        "--blend", choices=("mean", "hann", "distance", "spline"), default="hann", help="seams"
    )
    pred.add_argument("--batch-size", type=_positive, default=32, help="windows per model call")
    pred.add_argument("--labels", action="store_true", help="write argmax classes as uint8")
    pred.add_argument("--no-preprocess", action="store_true", help="feed the values as they are")
    pred.add_argument("--nodata", type=float, default=None, help="value marking missing pixels")
    pred.add_argument("--variable", default=None, help="variable, for Zarr/netCDF inputs")
    pred.add_argument("--chunks", type=_positive, default=2048, help="input chunk side in pixels")
    pred.add_argument("--device", default=None, help="torch device, e.g. cuda (None: cpu)")
    pred.add_argument(
        "--overwrite", action="store_true", help="replace OUT if it is a prediction written here"
    )
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``xflipnslide`` command."""
    args = _parser().parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
    )
    try:
        with warnings.catch_warnings():
            quiet_third_party()
            return COMMANDS[args.command](args)
    except KeyboardInterrupt:
        print(f"xflipnslide {args.command}: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:
        if args.verbose:
            traceback.print_exc()
        print(f"xflipnslide {args.command}: error: {one_line(exc)}", file=sys.stderr)
        return 2
