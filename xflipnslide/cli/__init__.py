"""The ``xflipnslide`` command line.

``xflipnslide demo`` tiles the built-in sample scene with every strategy and
writes the tiles to Zarr; ``xflipnslide tile INPUT... --out OUT.zarr`` tiles a
scene file (or several band files on one grid; ``--scene ID=PATH`` repeated:
several scenes into one store); ``stac``, ``export`` and ``predict`` load from
a STAC catalog, write chips and run a model (``--scene``: one GeoTIFF per
scene). Every failure ends with a one-line message on
stderr and exit status 2 (``-v`` adds the traceback).

Modules: this one parses the arguments, then imports and runs a command
(``xflipnslide --help`` imports no xarray, dask or numba);
:mod:`.commands` (``tile``, ``stac``, ``export``, ``predict``) and
:mod:`.demo` are the commands, :mod:`.scenes` what they share (open a
scene, tile it, write a store), :mod:`.output` what they print.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
import traceback
import warnings
from collections.abc import Callable, Sequence

__all__ = ["PLANETARY_COMPUTER", "STRATEGIES", "VARIABLE", "CliError", "main"]

#: Each command: its help, and the module and function that run it. A
#: command's module, and what its options need, are imported only when it
#: runs (or its ``--help`` is asked for): ``xflipnslide --help`` imports
#: neither xarray nor dask nor numba.
_RUN = {
    "demo": ("preprocess and tile the built-in sample scene (offline)", ".demo", "demo"),
    "tile": ("tile a GeoTIFF, Zarr or netCDF scene into a Zarr store", ".commands", "tile"),
    "stac": ("search a STAC catalog, load, preprocess, tile, write", ".commands", "stac"),
    "export": (
        "write a tile store as GeoTIFF chips, TFRecord or WebDataset shards",
        ".commands",
        "export",
    ),
    "predict": (
        "run a TorchScript model over a scene, write a GeoTIFF (COG)",
        ".commands",
        "predict_scene",
    ),
}


def _command(name: str) -> Callable:
    """The function that runs the command ``name`` (its module imported now)."""
    _, module, func = _RUN[name]
    return getattr(importlib.import_module(module, __name__), func)


def __getattr__(name: str):
    """The package's constants the options use, and the command table, on
    first use (they import the modules that define them)."""
    if name == "COMMANDS":  # the function that runs each command
        return {command: _command(command) for command in _RUN}
    if name == "CliError":
        from .output import CliError

        return CliError
    if name == "PLANETARY_COMPUTER":
        from ..io import PLANETARY_COMPUTER

        return PLANETARY_COMPUTER
    if name == "STRATEGIES":
        from ..plan import STRATEGIES

        return STRATEGIES
    if name == "VARIABLE":  # where the tiles go in the stores the CLI writes
        from ..schema import IMAGE

        return IMAGE
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # one line, no usage dump
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


class _Help(argparse.ArgumentDefaultsHelpFormatter):
    """Shows the default of every option that has one (not of required
    options, flags, or options whose help says what their absence means)."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        if action.required or action.nargs == 0 or action.default in (None, argparse.SUPPRESS):
            return action.help
        return super()._get_help_string(action)


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive integer; got {text!r}")
    return value


def _memory(text: str) -> str:
    """A memory size (``2GiB``, bytes or ``auto``), checked here."""
    from .._core.schedule import memory_size
    from ..errors import InvalidParameterError

    try:
        memory_size(text)
    except InvalidParameterError:
        raise argparse.ArgumentTypeError(
            f"must be a memory size such as 2GiB, or auto; got {text!r}"
        ) from None
    return text


def _add_memory(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--memory",
        type=_memory,
        default=None,
        help="what the write may hold, e.g. 2GiB: past it, input chunks that later rows read "
        "again are read again instead of held (default: auto, a quarter of this machine's "
        "memory)",
    )


def _add_nodata(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--nodata",
        type=float,
        default=None,
        help="value marking missing pixels (default: the one the file declares)",
    )


def _add_tiling_options(p: argparse.ArgumentParser, tile_size: int = 256) -> None:
    from ..plan import EDGES, STRATEGIES

    p.add_argument("--out", required=True, help="output Zarr store")
    p.add_argument("--tile-size", type=_positive, default=tile_size, help="tile size in pixels")
    p.add_argument("--strategy", choices=STRATEGIES, default=STRATEGIES[0], help="tiling strategy")
    p.add_argument(
        "--edge", choices=EDGES, default=EDGES[0], help="crop to, or pad to, whole tiles"
    )
    p.add_argument("--no-preprocess", action="store_true", help="tile the values as they are")
    _add_nodata(p)
    p.add_argument(
        "--min-valid",
        type=float,
        default=None,
        help="drop tiles with less than this share of observed (not filled) pixels "
        "(default: keep every tile)",
    )
    p.add_argument(
        "--overwrite", action="store_true", help="replace OUT if it is a tile store written here"
    )
    _add_memory(p)


def _scene_spec(text: str) -> tuple[str, list[str]]:
    """``ID=PATH[,PATH...]``: a scene id and its files."""
    id, sep, paths = text.partition("=")
    files = [f for f in paths.split(",") if f]
    if not sep or not id or not files:
        raise argparse.ArgumentTypeError(
            f"takes ID=PATH or ID=PATH,PATH,... (a scene id and its files); got {text!r}"
        )
    return id, files


def _add_scene(p: argparse.ArgumentParser, name: str, several: str) -> None:
    p.add_argument(
        name,
        nargs="*",
        metavar=name.upper(),
        help="GeoTIFF (or several, one or more bands each, on one grid, stacked in the order "
        "given), Zarr store or netCDF file: one scene (or --scene)",
    )
    p.add_argument(
        "--scene",
        dest="scenes",
        action="append",
        type=_scene_spec,
        default=None,
        metavar="ID=PATH[,PATH...]",
        help=f"a scene and its id, repeatable: {several} (its files as for "
        f"{name.upper()}; instead of {name.upper()})",
    )
    p.add_argument(
        "--band-name",
        action="append",
        default=None,
        metavar="NAME",
        help="label of each band of GeoTIFF inputs, repeatable, one per band (default: the "
        "files' band descriptions, else from the file names)",
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


def _demo_options(demo: argparse.ArgumentParser) -> None:
    demo.add_argument("--out", default="xflipnslide-demo", help="output folder")
    demo.add_argument("--tile-size", type=_positive, default=128, help="tile size in pixels")


def _tile_options(tile: argparse.ArgumentParser) -> None:
    _add_scene(
        tile,
        "input",
        "every scene is tiled on its own grid into one store, "
        "standardised with one set of statistics for all",
    )
    _add_tiling_options(tile)
    tile.add_argument(
        "--variable",
        default=None,
        help="variable to tile, for Zarr/netCDF inputs with several (default: the only one)",
    )
    tile.add_argument(
        "--label",
        default=None,
        help="an integer label variable of a Zarr/netCDF input, tiled with the image, unscaled "
        "(default: none)",
    )
    tile.add_argument("--chunks", type=_positive, default=2048, help="input chunk side in pixels")


def _stac_options(stac: argparse.ArgumentParser) -> None:
    from ..io import PLANETARY_COMPUTER

    stac.add_argument(
        "--bbox",
        type=float,
        nargs=4,
        required=True,
        metavar=("W", "S", "E", "N"),
        help="area to load, in degrees: west south east north",
    )
    stac.add_argument("--datetime", required=True, help='dates to search, e.g. "2023-01/2023-03"')
    stac.add_argument(
        "--collection",
        action="append",
        default=None,
        help="collection id, repeatable (default: landsat-c2-l2)",
    )
    stac.add_argument(
        "--band",
        action="append",
        default=None,
        help="asset name, repeatable (default: every data asset)",
    )
    stac.add_argument(
        "--max-cloud",
        type=float,
        default=None,
        help="keep items with eo:cloud_cover below this (default: no cloud filter)",
    )
    stac.add_argument(
        "--resolution",
        type=float,
        default=None,
        help="output pixel size in the output CRS units (default: the items' own)",
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


def _export_options(exp: argparse.ArgumentParser) -> None:
    from ..export import FORMATS
    from ..schema import IMAGE

    exp.add_argument("tiles", help="a tile store (Zarr) written by xflipnslide tile or .to_zarr")
    exp.add_argument("--format", choices=FORMATS, default=FORMATS[0], help="what to write")
    exp.add_argument("--out", required=True, help="output folder")
    exp.add_argument("--image", default=IMAGE, help="image variable")
    exp.add_argument("--label", default=None, help="label variable (default: images only)")
    exp.add_argument("--shard-size", type=_positive, default=1000, help="tiles per shard")
    exp.add_argument(
        "--crs",
        default=None,
        help="the tiles' CRS when the store has none, e.g. EPSG:32621 (default: the store's)",
    )
    exp.add_argument("--overwrite", action="store_true", help="replace OUT if it is an export")


def _predict_options(pred: argparse.ArgumentParser) -> None:
    _add_scene(pred, "scene", "one GeoTIFF per scene, OUT/ID.tif")
    pred.add_argument("--model", required=True, help="TorchScript model file (torch.jit.save)")
    pred.add_argument(
        "--out",
        required=True,
        help="output GeoTIFF (Cloud Optimized); with --scene, the folder of the scenes' ID.tif",
    )
    pred.add_argument("--tile-size", type=_positive, default=256, help="window size in pixels")
    pred.add_argument(
        "--stride", type=_positive, default=None, help="step (default: half the tile size)"
    )
    pred.add_argument("--tta", choices=("none", "d4"), default="none", help="test-time views")
    pred.add_argument(
        "--blend", choices=("mean", "hann", "distance", "spline"), default="hann", help="seams"
    )
    pred.add_argument(
        "--batch-size",
        type=_positive,
        default=None,
        help="windows per model call (default: 8 for a torch model on the CPU, else 32)",
    )
    pred.add_argument("--labels", action="store_true", help="write argmax classes as uint8")
    pred.add_argument("--no-preprocess", action="store_true", help="feed the values as they are")
    _add_nodata(pred)
    pred.add_argument(
        "--stats",
        default=None,
        metavar="FILE",
        help="standardise with the statistics recorded in FILE (a tile store, or a scene "
        "preprocessed and written to Zarr or netCDF), e.g. the training tiles "
        "(default: the scene's own)",
    )
    pred.add_argument(
        "--variable",
        default=None,
        help="variable, for Zarr/netCDF inputs with several (default: the only one)",
    )
    pred.add_argument("--chunks", type=_positive, default=2048, help="input chunk side in pixels")
    pred.add_argument("--device", default=None, help="torch device, e.g. cuda (default: cpu)")
    pred.add_argument(
        "--overwrite", action="store_true", help="replace OUT if it is a prediction written here"
    )
    _add_memory(pred)


#: What adds each command's options.
_OPTIONS = {
    "demo": _demo_options,
    "tile": _tile_options,
    "stac": _stac_options,
    "export": _export_options,
    "predict": _predict_options,
}


def _parser(only: str | None = None) -> argparse.ArgumentParser:
    """The command line's parser: every command, with the options of
    ``only`` (default: of every command; ``""``: of none, enough for
    ``xflipnslide --help``)."""
    p = _Parser(
        prog="xflipnslide",
        description="Flip-n-Slide tiling of satellite scenes (xarray + dask).",
        formatter_class=_Help,
    )
    _verbose(p, top=True)
    p.add_argument("--version", action="version", version=f"xflipnslide {_version()}")
    sub = p.add_subparsers(
        dest="command", required=True, parser_class=_Parser, help="the command to run"
    )
    for name, (text, _, _) in _RUN.items():
        c = sub.add_parser(name, help=text, description=text, formatter_class=_Help)
        _verbose(c)
        if only is None or only == name:
            _OPTIONS[name](c)
    return p


def _named_command(argv: Sequence[str]) -> str:
    """The command ``argv`` names: its first word that is not an option (the
    top level's options take no value); ``""`` if none."""
    return next((a for a in argv if not a.startswith("-")), "")


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``xflipnslide`` command.

    Parameters
    ----------
    argv
        The arguments after ``xflipnslide`` (default: ``sys.argv[1:]``;
        run so, as the command, the process's glibc malloc arenas are
        first capped at one: see ``xflipnslide._core.allocator``).

    Returns
    -------
    int
        The exit status: 0 on success, 2 after an error (one line on
        stderr), 130 when interrupted.

    Examples
    --------
    >>> import os, shutil, tempfile
    >>> import xflipnslide
    >>> from xflipnslide.cli import main
    >>> folder = tempfile.mkdtemp()
    >>> out = os.path.join(folder, "tiles.zarr")
    >>> argv = ["tile", xflipnslide.sample_scene_path(), "--out", out, "--tile-size", "128",
    ...         "--strategy", "no_overlap", "--edge", "pad", "--nodata", "0"]
    >>> main(argv)  # doctest: +ELLIPSIS
    wrote 25 tiles of 128 px to .../tiles.zarr
    0
    >>> xflipnslide.open_tiles(out)["image"].sizes
    Frozen({'tile': 25, 'band': 3, 'y': 128, 'x': 128})
    >>> main(argv)  # OUT exists: refused, one line on stderr, nothing done
    2
    >>> shutil.rmtree(folder)
    """
    if argv is None:  # run as the command: this process is the command's own
        from .._core.allocator import cap_arenas

        cap_arenas()  # before any thread allocates (one heap, not one per thread)
    argv = sys.argv[1:] if argv is None else list(argv)
    args = _parser(_named_command(argv)).parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
    )
    from .output import one_line, quiet_third_party

    try:
        with warnings.catch_warnings():
            quiet_third_party()
            return _command(args.command)(args)
    except KeyboardInterrupt:
        print(f"xflipnslide {args.command}: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:
        if args.verbose:
            traceback.print_exc()
        print(f"xflipnslide {args.command}: error: {one_line(exc)}", file=sys.stderr)
        return 2
