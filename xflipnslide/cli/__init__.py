"""The ``xflipnslide`` command line.

``xflipnslide demo`` tiles the built-in sample scene with every strategy and
writes the tiles to Zarr; ``xflipnslide tile INPUT --out OUT.zarr`` tiles a
scene file. Every failure ends with a one-line message on stderr and exit
status 2 (``-v`` adds the traceback). Heavy imports wait until a command runs,
so ``--help`` answers at once.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import signal
import sys
import time
import traceback
import warnings
from collections.abc import Callable, Iterator, Sequence

from ..errors import XFlipNSlideError

log = logging.getLogger("xflipnslide")

#: Mirrors ``plan.STRATEGIES`` / ``io.PLANETARY_COMPUTER`` without importing them
#: (``tests/test_cli.py`` checks they agree).
STRATEGIES = ("flipnslide", "overlap", "no_overlap")
PLANETARY_COMPUTER = "https://planetarycomputer.microsoft.com/api/stac/v1"
#: Where the tiles go in the stores the CLI writes (mirrors ``schema.IMAGE``,
#: read before any heavy import; ``tests/test_cli.py`` checks they agree).
VARIABLE = "image"
#: The GeoTIFF tag ``predict`` writes into its output: ``--overwrite`` only
#: replaces GeoTIFFs that carry it.
PREDICT_TAG, PREDICT_TAG_VALUE = "FNS_WRITER", "xflipnslide predict"
#: The figures ``demo`` saves, and the PNG text it writes into them (it only
#: replaces PNGs that carry it).
FIGURES, FIGURE_SOFTWARE = ("scene.png", "tiles.png", "samples.png"), "xflipnslide demo"


class CliError(Exception):
    """A user-facing error: printed as one line, exit status 2."""


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
    p.add_argument("--strategy", choices=STRATEGIES, default="flipnslide", help="tiling strategy")
    p.add_argument(
        "--edge", choices=("crop", "pad"), default="crop", help="crop to, or pad to, whole tiles"
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
    exp.add_argument("--format", choices=("geotiff", "tfrecord", "webdataset"), default="geotiff")
    exp.add_argument("--out", required=True, help="output folder")
    exp.add_argument("--image", default="image", help="image variable")
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
    commands = {
        "demo": _demo,
        "tile": _tile,
        "stac": _stac,
        "predict": _predict,
        "export": _export,
    }
    try:
        with warnings.catch_warnings():
            _quiet_third_party()
            return commands[args.command](args)
    except KeyboardInterrupt:
        print(f"xflipnslide {args.command}: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:
        if args.verbose:
            traceback.print_exc()
        print(f"xflipnslide {args.command}: error: {_one_line(exc)}", file=sys.stderr)
        return 2


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    """xflipnslide's warnings as one line each on stderr, each text once."""
    text = f"xflipnslide: {category.__name__}: {message}"
    if text not in _SHOWN:
        _SHOWN.add(text)
        print(text, file=sys.stderr)


_SHOWN: set[str] = set()


def _quiet_third_party() -> None:
    """Silence warnings about libraries' own choices that a user cannot act on,
    and show the package's own as one line each."""
    warnings.showwarning = _show_warning
    # zarr-python 3 warns on every consolidated write; xarray asks for one.
    warnings.filterwarnings("ignore", message="Consolidated metadata is currently not part")
    warnings.filterwarnings("ignore", category=FutureWarning, module="xarray")
    warnings.filterwarnings("ignore", category=RuntimeWarning, message="All-NaN slice")


def _one_line(exc: BaseException) -> str:
    """The first line of the most telling message in the exception's chain
    (GDAL's "Read failed. See previous exception" points at its cause)."""
    seen = exc
    while seen is not None:
        text = _first_line(str(seen))
        cause = seen.__cause__ or seen.__context__
        if text and "see previous exception" not in text.lower():
            known = isinstance(seen, (CliError, XFlipNSlideError, OSError, ValueError))
            return text if known else f"{type(seen).__name__}: {text}"
        seen = cause
    return type(exc).__name__


def _first_line(text: str) -> str:
    """A message's first line, with what it announces when it ends with a
    colon: TorchScript puts the cause on the next line, or on the source line
    it marks ``<--- HERE``."""
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    if not lines:
        return ""
    head = lines[0]
    if not head.endswith(":") or len(lines) == 1:
        return head
    here = next((k for k, line in enumerate(lines) if "<--- HERE" in line), None)
    if here is None or here < 2:
        return f"{head} {lines[1]}"
    where = next((line for line in reversed(lines[:here]) if line.startswith("File ")), None)
    return f"{head} {lines[here - 1]}" + (f" ({where})" if where else "")


def _open_scene(path: str, variable: str | None = None, chunks: int = 2048, label=None):
    import xarray as xr

    from ..io import open_image

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
        raise CliError(f"cannot read {path}: {_one_line(exc)}") from exc
    # Scalars (a CRS's spatial_ref) are coordinates, not data.
    ds = ds.set_coords([n for n, v in ds.data_vars.items() if v.ndim == 0])
    names = [variable] if variable else list(ds.data_vars)
    for name in (variable, label):
        if name and name not in ds:
            raise CliError(f"{path} has no variable {name!r}; it has {list(ds.data_vars)}")
    if label:
        names = [n for n in names if n != label] if not variable else names
        return ds[[*names, label]]
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


def _check_out(out: str, overwrite: bool, is_ours: Callable[[str], bool], what: str) -> None:
    """Refuse an output path before any work (see ``xflipnslide.atomic``)."""
    from ..export.atomic import check_target

    check_target(out, overwrite=overwrite, is_ours=is_ours, what=what, option="--overwrite")


def _raise_interrupt(signum, frame):
    raise KeyboardInterrupt


@contextlib.contextmanager
def _interruptible() -> Iterator[None]:
    """SIGTERM interrupts like Ctrl-C, so the atomic writers remove their
    temporaries."""
    previous = signal.signal(signal.SIGTERM, _raise_interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _write(tiles, out: str, overwrite: bool) -> None:
    """Write a tile store atomically (``xflipnslide.to_zarr``): a failed or
    interrupted run (Ctrl-C, SIGTERM) leaves nothing half-written."""
    from dask.diagnostics import ProgressBar

    from ..export.zarr import to_zarr

    with _interruptible(), ProgressBar(minimum=1.0, out=sys.stderr):
        to_zarr(tiles, out, overwrite=overwrite, name=VARIABLE)


def _is_tile_store(path: str) -> bool:
    from ..export.zarr import is_tile_store

    return is_tile_store(path)


def _prepare_and_tile(scene, args, label=None):
    import xarray as xr

    from ..preprocess import preprocess
    from ..tiling import tile

    if not args.no_preprocess:
        variables = None
        if isinstance(scene, xr.Dataset):
            variables = [n for n in scene.data_vars if n != label]
        scene = preprocess(scene, nodata=args.nodata, variables=variables)
    if isinstance(scene, xr.DataArray):
        scene = scene.to_dataset(name=VARIABLE)
    return tile(scene, args.tile_size, args.strategy, edge=args.edge, min_valid=args.min_valid)


def _tile(args) -> int:
    _check_out(args.out, args.overwrite, _is_tile_store, "a tile store")
    scene = _open_scene(args.input, args.variable, args.chunks, args.label)
    tiles = _prepare_and_tile(scene, args, args.label)
    _write(tiles, args.out, args.overwrite)
    print(f"wrote {tiles.sizes['tile']} tiles of {args.tile_size} px to {args.out}")
    return 0


def _stac(args) -> int:
    from ..io import load_stac

    _check_out(args.out, args.overwrite, _is_tile_store, "a tile store")
    scene = load_stac(
        bbox=args.bbox,
        datetime=args.datetime,
        collections=args.collection or ["landsat-c2-l2"],
        bands=args.band,
        query={"eo:cloud_cover": {"lt": args.max_cloud}} if args.max_cloud is not None else None,
        resolution=args.resolution,
        catalog=args.catalog,
        sign=not args.no_sign,
        mask_clouds=args.mask_clouds,
        timeout=args.timeout,
    )
    tiles = _prepare_and_tile(scene, args)
    _write(tiles, args.out, args.overwrite)
    print(
        f"wrote {tiles.sizes['tile']} tiles of {args.tile_size} px "
        f"({scene.sizes['time']} dates composited) to {args.out}"
    )
    return 0


def _export(args) -> int:
    from ..export import export_chips, is_export
    from ..export.zarr import open_tiles

    _check_out(args.out, args.overwrite, is_export, "an export")
    if not os.path.isdir(args.tiles):
        raise CliError(f"no tile store at {args.tiles}")
    tiles = open_tiles(args.tiles)

    def progress(done: int, total: int) -> None:
        print(f"\rexported {done} / {total} tiles", end="", file=sys.stderr, flush=True)

    try:
        with _interruptible():
            out = export_chips(
                tiles,
                args.out,
                format=args.format,
                image=args.image,
                label=args.label,
                shard_size=args.shard_size,
                crs=args.crs,
                overwrite=args.overwrite,
                progress=progress,
            )
    finally:
        print(file=sys.stderr)
    print(f"wrote {tiles.sizes['tile']} tiles as {args.format} to {out}")
    return 0


def _is_prediction(path: str) -> bool:
    """True for a GeoTIFF ``xflipnslide predict`` wrote (its tag)."""
    import rasterio

    if not os.path.isfile(path):
        return False
    with rasterio.open(path) as f:
        return f.tags().get(PREDICT_TAG) == PREDICT_TAG_VALUE


def _load_model(torch, path: str, device: str | None):
    """The TorchScript model at ``path``, or a one-line error with the cause."""
    try:
        return torch.jit.load(path, map_location=device or "cpu")
    except Exception as exc:
        raise CliError(f"cannot load {path} as TorchScript: {_model_problem(path, exc)}") from exc


def _model_problem(path: str, exc: BaseException) -> str:
    import zipfile

    try:
        with zipfile.ZipFile(path) as z:
            names = z.namelist()
    except (OSError, zipfile.BadZipFile):
        names = []
    pickled = any(n.endswith("data.pkl") for n in names)
    if pickled and not any(n.endswith("constants.pkl") for n in names):
        return (
            "it is a torch.save() checkpoint (a pickled module or state_dict), not TorchScript: "
            "save the model with torch.jit.script(model).save(path)"
        )
    return _one_line(exc)


def _predict(args) -> int:
    from dask.diagnostics import ProgressBar

    from ..errors import require
    from ..export.atomic import write_file
    from ..predict import predict
    from ..preprocess import preprocess

    torch = require("torch", "torch", "xflipnslide predict")
    if os.path.isdir(args.out):
        raise CliError(f"{args.out} is a folder; --out names the GeoTIFF to write")
    what = "a prediction GeoTIFF"
    _check_out(args.out, args.overwrite, _is_prediction, what)
    if not os.path.exists(args.model):
        raise CliError(f"no such model file: {args.model}")
    model = _load_model(torch, args.model, args.device)
    scene = _open_scene(args.scene, args.variable, args.chunks)
    if not hasattr(scene, "to_dataset"):
        raise CliError(f"{args.scene} holds several variables: pick one with --variable")
    if not args.no_preprocess:
        scene = preprocess(scene, nodata=args.nodata)
    pred = predict(
        scene,
        model,
        tile_size=args.tile_size,
        stride=args.stride,
        tta=None if args.tta == "none" else args.tta,
        blend=args.blend,
        batch_size=args.batch_size,
        device=args.device,
    )
    if args.labels:
        pred = pred.argmax("class").astype("uint8")
    with (
        _interruptible(),
        write_file(
            args.out,
            overwrite=args.overwrite,
            is_ours=_is_prediction,
            what=what,
            option="--overwrite",
        ) as tmp,
    ):
        with ProgressBar(minimum=1.0, out=sys.stderr):
            pred = pred.compute()
        pred.rio.to_raster(tmp, driver="COG", tags={PREDICT_TAG: PREDICT_TAG_VALUE})
    what = "labels" if args.labels else f"{pred.sizes['class']} class scores"
    print(f"wrote {what} for {pred.sizes['y']} x {pred.sizes['x']} px to {args.out}")
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
    from ..export.atomic import write_file
    from ..plot import plot_rgb, plot_samples, plot_tiles

    paths = []
    masked = scene.where(scene != 0)
    figs = dict(
        zip(
            FIGURES,
            (
                plot_rgb(masked, title="sample scene (nodata transparent)"),
                plot_tiles(masked, tile_size, "flipnslide"),
                plot_samples(tiles),
            ),
        )
    )
    for name, fig in figs.items():
        path = os.path.join(out, name)
        with write_file(path, overwrite=True, is_ours=_is_demo_figure, what="a demo figure") as tmp:
            fig.savefig(tmp, format="png", dpi=90, metadata={"Software": FIGURE_SOFTWARE})
        plt.close(fig)
        paths.append(path)
    return paths


def _is_demo_figure(path: str) -> bool:
    """True for a PNG ``xflipnslide demo`` saved (its Software text)."""
    from PIL import Image

    with Image.open(path) as image:
        return image.format == "PNG" and image.text.get("Software") == FIGURE_SOFTWARE


def _demo(args) -> int:
    import importlib.util

    from ..io import open_image, sample_scene_path
    from ..plan import TRANSFORMS
    from ..preprocess import preprocess
    from ..tiling import tile

    os.makedirs(args.out, exist_ok=True)
    stores = {strategy: os.path.join(args.out, f"{strategy}.zarr") for strategy in STRATEGIES}
    for path in stores.values():  # replaced only when ours, checked before any work
        _check_out(path, True, _is_tile_store, "a tile store")
    if importlib.util.find_spec("matplotlib") is not None:
        for name in FIGURES:
            _check_out(os.path.join(args.out, name), True, _is_demo_figure, "a demo figure")
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
        _write(tiles.rename(VARIABLE), stores[strategy], overwrite=True)
        seconds = time.perf_counter() - start
        codes = tiles.transform.values
        per_code = "  ".join(f"{c}:{int((codes == c).sum())}" for c in sorted(set(codes.tolist())))
        print(
            f"{strategy:<12}{tiles.sizes['tile']:>7}{tiles.nbytes / 2**20:>8.1f}{seconds:>9.2f}  {per_code}"
        )
        flipnslide = tiles if strategy == "flipnslide" else flipnslide
    print("codes: " + ", ".join(f"{k} {name}" for k, name in enumerate(TRANSFORMS)))
    valid = flipnslide.valid_fraction.values
    print(
        f"flipnslide tiles more than half gap-filled: {int((valid < 0.5).sum())}; "
        f"min_valid=0.9 keeps {int((valid >= 0.9).sum())} of {valid.size}"
    )
    figures = _figures(scene, ready, flipnslide, args.out, args.tile_size)
    print(
        f"tiles: {os.path.join(os.path.abspath(args.out), '{' + ','.join(STRATEGIES) + '}.zarr')}"
    )
    if figures:
        print(f"figures: {', '.join(figures)}")
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
