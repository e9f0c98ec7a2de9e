"""The ``tile``, ``stac``, ``export`` and ``predict`` commands: each takes the
parsed arguments and returns the exit status."""

from __future__ import annotations

import os
import sys

from ..errors import require
from ..export import export_chips
from ..export.atomic import OutputKind, write_file
from ..export.layout import EXPORT
from ..export.zarr import open_tiles
from ..io import load_stac
from ..predict import label_map, predict
from ..preprocess import preprocess
from ..schema import TILE_DIM
from .output import CliError, interruptible, one_line, print_progress, progress_bar
from .scenes import OPTION, check_out, open_scene, open_stats, prepare_and_tile, write_tiles

__all__ = ["PREDICT_TAG", "PREDICT_TAG_VALUE", "export", "predict_scene", "stac", "tile"]

#: The GeoTIFF tag ``predict`` writes into its output: ``--overwrite`` only
#: replaces GeoTIFFs that carry it.
PREDICT_TAG, PREDICT_TAG_VALUE = "FNS_WRITER", "xflipnslide predict"


def tile(args) -> int:
    check_out(args.out, args.overwrite)
    scene = open_scene(args.input, args.variable, args.chunks, args.label, args.band_name)
    tiles = prepare_and_tile(scene, args, args.label)
    write_tiles(tiles, args.out, args.overwrite)
    print(f"wrote {tiles.sizes[TILE_DIM]} tiles of {args.tile_size} px to {args.out}")
    return 0


def stac(args) -> int:
    check_out(args.out, args.overwrite)
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
    tiles = prepare_and_tile(scene, args)
    write_tiles(tiles, args.out, args.overwrite)
    print(
        f"wrote {tiles.sizes[TILE_DIM]} tiles of {args.tile_size} px "
        f"({scene.sizes['time']} dates composited) to {args.out}"
    )
    return 0


def export(args) -> int:
    check_out(args.out, args.overwrite, EXPORT)
    if not os.path.isdir(args.tiles):
        raise CliError(f"no tile store at {args.tiles}")
    tiles = open_tiles(args.tiles)
    try:
        with interruptible():
            out = export_chips(
                tiles,
                args.out,
                format=args.format,
                image=args.image,
                label=args.label,
                shard_size=args.shard_size,
                crs=args.crs,
                overwrite=args.overwrite,
                progress=print_progress,
            )
    finally:
        print(file=sys.stderr)  # ends the progress line
    print(f"wrote {tiles.sizes[TILE_DIM]} tiles as {args.format} to {out}")
    return 0


def _is_prediction(path: str) -> bool:
    """True for a GeoTIFF ``xflipnslide predict`` wrote (its tag)."""
    import rasterio

    if not os.path.isfile(path):
        return False
    with rasterio.open(path) as f:
        return f.tags().get(PREDICT_TAG) == PREDICT_TAG_VALUE


#: Prediction GeoTIFFs: ``--overwrite`` replaces only these.
PREDICTION = OutputKind("a prediction GeoTIFF", _is_prediction)


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
    return one_line(exc)


def predict_scene(args) -> int:
    """The ``predict`` command."""
    if os.path.isdir(args.out):
        raise CliError(f"{args.out} is a folder; --out names the GeoTIFF to write")
    check_out(args.out, args.overwrite, PREDICTION)
    if args.stats and args.no_preprocess:
        raise CliError("--stats standardises the scene, which --no-preprocess skips: drop one")
    torch = require("torch", "torch", "xflipnslide predict")
    if not os.path.exists(args.model):
        raise CliError(f"no such model file: {args.model}")
    stats = open_stats(args.stats) if args.stats else None
    model = _load_model(torch, args.model, args.device)
    scene = open_scene(args.scene, args.variable, args.chunks, band_names=args.band_name)
    if not hasattr(scene, "to_dataset"):
        raise CliError(f"{' '.join(args.scene)} holds several variables: pick one with --variable")
    if not args.no_preprocess:
        scene = preprocess(scene, nodata=args.nodata, stats=stats)
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
    if args.labels:  # the nodata class (declared) where the scene was not observed
        pred = label_map(pred)
    else:  # band descriptions: the class names, where predict has them
        pred.attrs.setdefault("long_name", tuple(f"class {i}" for i in range(pred.sizes["class"])))
    with (
        interruptible(),
        write_file(args.out, PREDICTION, overwrite=args.overwrite, option=OPTION) as tmp,
    ):
        with progress_bar():
            pred = pred.compute()
        pred.rio.to_raster(tmp, driver="COG", tags={PREDICT_TAG: PREDICT_TAG_VALUE})
    what = "labels" if args.labels else f"{pred.sizes['class']} class scores"
    print(f"wrote {what} for {pred.sizes['y']} x {pred.sizes['x']} px to {args.out}")
    return 0
