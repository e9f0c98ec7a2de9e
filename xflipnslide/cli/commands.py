"""The ``tile``, ``stac``, ``export`` and ``predict`` commands: each takes the
parsed arguments and returns the exit status."""

from __future__ import annotations

import os
import sys

from .._core.predict_graph import block_side
from ..errors import require
from ..export import export_chips
from ..export.atomic import OutputKind, write_file
from ..export.cog import write_cog
from ..export.layout import EXPORT, file_id
from ..export.zarr import open_tiles
from ..io import load_stac
from ..predict import label_map, predict
from ..preprocess import preprocess
from ..schema import TILE_DIM
from .output import CliError, interruptible, one_line, print_progress, progress_bar
from .scenes import OPTION, check_out, open_inputs, open_stats, prepare_and_tile, write_tiles

__all__ = ["PREDICT_TAG", "PREDICT_TAG_VALUE", "export", "predict_scene", "stac", "tile"]

#: The GeoTIFF tag ``predict`` writes into its output: ``--overwrite`` only
#: replaces GeoTIFFs that carry it.
PREDICT_TAG, PREDICT_TAG_VALUE = "FNS_WRITER", "xflipnslide predict"


def tile(args) -> int:
    check_out(args.out, args.overwrite)
    scene = open_inputs(args, args.input, args.variable, args.chunks, args.label, args.band_name)
    tiles = prepare_and_tile(scene, args, args.label)
    write_tiles(tiles, args.out, args.overwrite, args.memory)
    of = f" of {len(scene)} scenes" if isinstance(scene, dict) else ""
    print(f"wrote {tiles.sizes[TILE_DIM]} tiles{of} of {args.tile_size} px to {args.out}")
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
    write_tiles(tiles, args.out, args.overwrite, args.memory)
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


def _prediction_paths(args) -> dict[str | None, str]:
    """Where each prediction goes, checked before any work: ``--out`` for one
    scene, ``OUT/ID.tif`` for each ``--scene`` (``OUT`` a folder, made if new)."""
    if not args.scenes:
        if os.path.isdir(args.out):
            raise CliError(f"{args.out} is a folder; --out names the GeoTIFF to write")
        check_out(args.out, args.overwrite, PREDICTION)
        return {None: args.out}
    if os.path.lexists(args.out) and not os.path.isdir(args.out):
        raise CliError(
            f"{args.out} is a file; with --scene, --out names the folder of one GeoTIFF per scene"
        )
    parent = os.path.dirname(os.path.abspath(args.out))
    if not os.path.isdir(args.out) and not os.access(parent, os.W_OK | os.X_OK):
        raise CliError(f"cannot make the folder {args.out}: {parent} is missing or not writable")
    paths = {}
    for id, _ in args.scenes:
        file_id(id, "predict writes OUT/ID.tif", "")
        paths[id] = os.path.join(args.out, f"{id}.tif")
        if os.path.isdir(args.out):
            check_out(paths[id], args.overwrite, PREDICTION)
    return paths


def predict_scene(args) -> int:
    """The ``predict`` command: one scene to ``--out``, or each ``--scene`` to ``OUT/ID.tif``."""
    outs = _prediction_paths(args)
    if args.stats and args.no_preprocess:
        raise CliError("--stats standardises the scene, which --no-preprocess skips: drop one")
    torch = require("torch", "torch", "xflipnslide predict")
    if not os.path.exists(args.model):
        raise CliError(f"no such model file: {args.model}")
    stats = open_stats(args.stats) if args.stats else None
    model = _load_model(torch, args.model, args.device)
    scene = open_inputs(
        args, args.scene, variable=args.variable, chunks=args.chunks, band_names=args.band_name
    )
    scenes = scene if isinstance(scene, dict) else {None: scene}
    for id, one in scenes.items():
        if not hasattr(one, "to_dataset"):
            where = " ".join(args.scene) if id is None else f"--scene {id}"
            raise CliError(f"{where} holds several variables: pick one with --variable")
    if not args.no_preprocess:  # one set of statistics for all scenes
        scene = preprocess(scene, nodata=args.nodata, stats=stats)
    preds = predict(
        scene,
        model,
        tile_size=args.tile_size,
        # written by the package's scheduler, which orders no token chain: the
        # small blocks whatever the scene's size (4.5 % of a 40 000² scene
        # above the warm base, against 5.6 % with the blocks dask's order needs)
        chunks=block_side(args.tile_size),
        stride=args.stride,
        tta=None if args.tta == "none" else args.tta,
        blend=args.blend,
        batch_size=args.batch_size,
        device=args.device,
    )
    preds = preds if isinstance(scene, dict) else {None: preds}
    if None not in outs:
        os.makedirs(args.out, exist_ok=True)
    for id, pred in preds.items():
        _write_prediction(pred, outs[id], args)
    return 0


def _write_prediction(pred, out: str, args) -> None:
    """One map to a COG through the atomic writer (argmax labels with ``--labels``),
    streamed by :func:`~xflipnslide.export.cog.write_cog`."""
    if args.labels:  # the nodata class (declared) where the scene was not observed
        pred = label_map(pred)
    else:  # band descriptions: the class names, where predict has them
        pred.attrs.setdefault("long_name", tuple(f"class {i}" for i in range(pred.sizes["class"])))
    with (
        interruptible(),
        write_file(out, PREDICTION, overwrite=args.overwrite, option=OPTION) as tmp,
        progress_bar(),
    ):  # streamed: block by block, then GDAL's COG copy (never the whole map)
        write_cog(pred, tmp, tags={PREDICT_TAG: PREDICT_TAG_VALUE}, memory=args.memory)
    what = "labels" if args.labels else f"{pred.sizes['class']} class scores"
    print(f"wrote {what} for {pred.sizes['y']} x {pred.sizes['x']} px to {out}")
