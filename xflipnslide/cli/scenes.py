"""Scenes in, tile stores out: what the ``tile``, ``stac``, ``predict`` and
``demo`` commands share."""

from __future__ import annotations

import os
from collections.abc import Sequence

import xarray as xr

from ..dims import find_spatial_dims
from ..export.atomic import OutputKind, check_target
from ..export.zarr import TILE_STORE, to_zarr
from ..io import open_image
from ..plan import check_min_valid, plan_tiles
from ..preprocess import preprocess, read_stats
from ..schema import IMAGE
from ..tiling import tile
from .output import CliError, interruptible, one_line, progress_bar

__all__ = [
    "OPTION",
    "check_out",
    "open_inputs",
    "open_scene",
    "open_stats",
    "open_store",
    "prepare_and_tile",
    "write_tiles",
]

#: How the command line asks to replace an output, for messages.
OPTION = "--overwrite"


def check_out(out: str, overwrite: bool, kind: OutputKind = TILE_STORE) -> None:
    """Refuse an output path before any work (see :mod:`xflipnslide.export.atomic`)."""
    check_target(out, kind, overwrite=overwrite, option=OPTION)


def open_scene(
    paths: str | Sequence[str],
    variable: str | None = None,
    chunks: int = 2048,
    label: str | None = None,
    band_names: Sequence[str] | None = None,
):
    """A GeoTIFF (or several band files on one grid, stacked), Zarr store or
    netCDF file, lazily: a DataArray, or a Dataset of several variables
    (``variable`` picks one; ``label`` is kept beside the image)."""
    paths = [paths] if isinstance(paths, str) else list(paths)
    for path in paths:
        if not os.path.exists(path):
            raise CliError(f"no such file or folder: {path}")
    stores = [p for p in paths if _store_kind(p)]
    if stores and len(paths) > 1:
        raise CliError(
            f"several inputs are GeoTIFF band files stacked on one grid; {stores[0]} is a "
            f"{_store_kind(stores[0])}: give it on its own"
        )
    if not stores:
        given = next((o for o, v in (("--variable", variable), ("--label", label)) if v), None)
        if given:
            raise CliError(
                f"{given} names a variable of a Zarr or netCDF input; {paths[0]} is a raster "
                "file, whose bands are the image (tile a label raster on its own)"
            )
        image = paths[0] if len(paths) == 1 else paths
        return open_image(
            image, band_names=band_names, chunks={"band": -1, "y": chunks, "x": chunks}
        )
    if band_names:
        raise CliError(
            f"--band-name labels the bands of GeoTIFF inputs; {paths[0]} is a "
            f"{_store_kind(paths[0])}, whose band coordinate is its own"
        )
    ds = open_store(paths[0])
    # Scalars (a CRS's spatial_ref) are coordinates, not data.
    ds = ds.set_coords([n for n, v in ds.data_vars.items() if v.ndim == 0])
    path = paths[0]
    names = [variable] if variable else list(ds.data_vars)
    for name in (variable, label):
        if name and name not in ds:
            raise CliError(f"{path} has no variable {name!r}; it has {list(ds.data_vars)}")
    if label:
        names = [n for n in names if n != label] if not variable else names
        return ds[[*names, label]]
    return ds[names[0]] if len(names) == 1 else ds


def _store_kind(path: str) -> str | None:
    """``"Zarr store"``, ``"netCDF file"``, or None for a raster file."""
    lower = path.rstrip("/").lower()
    if lower.endswith(".zarr") or os.path.isdir(path):
        return "Zarr store"
    if lower.endswith((".nc", ".nc4", ".netcdf")):
        return "netCDF file"
    return None


def open_store(path: str) -> xr.Dataset:
    """A Zarr store or netCDF file, lazily, or a one-line error."""
    try:
        if _store_kind(path) == "Zarr store":
            return xr.open_zarr(path)
        return _open_netcdf(path)
    except (OSError, ValueError) as exc:
        raise CliError(f"cannot read {path}: {one_line(exc)}") from exc


def open_stats(path: str) -> dict:
    """The standardisation statistics recorded in a tile store or a
    preprocessed scene written to Zarr or netCDF (``read_stats``), loaded."""
    if not os.path.exists(path):
        raise CliError(f"no such file or folder: {path}")
    if not _store_kind(path):
        raise CliError(
            f"--stats reads a tile store or a preprocessed scene written to Zarr or netCDF; "
            f"{path} is neither"
        )
    return {k: v.load() for k, v in read_stats(open_store(path)).items()}


def _open_netcdf(path: str):
    """Open a netCDF file lazily; files the netCDF4 library rejects (some
    attribute names) are retried with scipy's netCDF-3 reader."""
    try:
        return xr.open_dataset(path, chunks={})
    except (OSError, ValueError, UnicodeDecodeError) as first:
        try:
            return xr.open_dataset(path, chunks={}, engine="scipy")
        except Exception:
            raise first from None


def open_inputs(args, paths: Sequence[str], *options, **keywords):
    """The scene of the positional files, or ``{id: scene}`` of the ``--scene
    ID=PATH[,PATH...]`` options (each opened as :func:`open_scene` opens files)."""
    if args.scenes and paths:
        raise CliError(
            f"{' '.join(paths)}: give one scene's files, or --scene ID=PATH for each of several "
            "scenes, not both"
        )
    if not args.scenes:
        if not paths:
            raise CliError("give the scene's files, or --scene ID=PATH for each scene")
        return open_scene(paths, *options, **keywords)
    ids = [id for id, _ in args.scenes]
    twice = sorted({id for id in ids if ids.count(id) > 1})
    if twice:
        raise CliError(f"--scene {twice[0]} is given twice: give every scene its own id")
    return {id: open_scene(files, *options, **keywords) for id, files in args.scenes}


def prepare_and_tile(scene, args, label=None) -> xr.Dataset:
    """Preprocess (unless ``--no-preprocess``; never the label) and tile, as
    the options say; the image is the variable ``image``. The tiling options
    are checked against each scene's size first, before any work. A mapping
    ``{id: scene}`` is preprocessed with one set of statistics for all and
    tiled into one collection."""
    many = isinstance(scene, dict)
    scenes = scene if many else {None: scene}
    for one in scenes.values():
        rows, cols = find_spatial_dims(one)
        shape = (one.sizes[rows], one.sizes[cols])
        plan_tiles(shape, args.tile_size, args.strategy, edge=args.edge)
    check_min_valid(args.min_valid)
    if not args.no_preprocess:
        first = next(iter(scenes.values()))
        variables = None
        if isinstance(first, xr.Dataset):
            variables = [n for n in first.data_vars if n != label]
        scene = preprocess(scene, nodata=args.nodata, variables=variables)
        scenes = scene if many else {None: scene}
    scenes = {
        id: one.to_dataset(name=IMAGE) if isinstance(one, xr.DataArray) else one
        for id, one in scenes.items()
    }
    return tile(
        scenes if many else scenes[None],
        args.tile_size,
        args.strategy,
        edge=args.edge,
        min_valid=args.min_valid,
    )


def write_tiles(tiles, out: str, overwrite: bool, memory: str | None = None) -> None:
    """Write a tile store atomically (``xflipnslide.to_zarr``, within
    ``memory``) with dask's progress bar: a failed or interrupted run
    (Ctrl-C, SIGTERM) leaves nothing half-written."""
    with interruptible(), progress_bar():
        to_zarr(tiles, out, overwrite=overwrite, name=IMAGE, memory=memory)
