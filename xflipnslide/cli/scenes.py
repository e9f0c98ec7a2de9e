"""Scenes in, tile stores out: what the ``tile``, ``stac``, ``predict`` and
``demo`` commands share."""

from __future__ import annotations

import os

import xarray as xr

from ..export.atomic import OutputKind, check_target
from ..export.zarr import TILE_STORE, to_zarr
from ..io import open_image
from ..preprocess import preprocess
from ..schema import IMAGE
from ..tiling import tile
from .output import CliError, interruptible, one_line, progress_bar

__all__ = ["OPTION", "check_out", "open_scene", "prepare_and_tile", "write_tiles"]

#: How the command line asks to replace an output, for messages.
OPTION = "--overwrite"


def check_out(out: str, overwrite: bool, kind: OutputKind = TILE_STORE) -> None:
    """Refuse an output path before any work (see :mod:`xflipnslide.export.atomic`)."""
    check_target(out, kind, overwrite=overwrite, option=OPTION)


def open_scene(path: str, variable: str | None = None, chunks: int = 2048, label=None):
    """A GeoTIFF, Zarr store or netCDF file, lazily: a DataArray, or a
    Dataset of several variables (``variable`` picks one; ``label`` is kept
    beside the image)."""
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
        raise CliError(f"cannot read {path}: {one_line(exc)}") from exc
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
    try:
        return xr.open_dataset(path, chunks={})
    except (OSError, ValueError, UnicodeDecodeError) as first:
        try:
            return xr.open_dataset(path, chunks={}, engine="scipy")
        except Exception:
            raise first from None


def prepare_and_tile(scene, args, label=None) -> xr.Dataset:
    """Preprocess (unless ``--no-preprocess``; never the label) and tile, as
    the options say; the image is the variable ``image``."""
    if not args.no_preprocess:
        variables = None
        if isinstance(scene, xr.Dataset):
            variables = [n for n in scene.data_vars if n != label]
        scene = preprocess(scene, nodata=args.nodata, variables=variables)
    if isinstance(scene, xr.DataArray):
        scene = scene.to_dataset(name=IMAGE)
    return tile(scene, args.tile_size, args.strategy, edge=args.edge, min_valid=args.min_valid)


def write_tiles(tiles, out: str, overwrite: bool) -> None:
    """Write a tile store atomically (``xflipnslide.to_zarr``) with dask's
    progress bar: a failed or interrupted run (Ctrl-C, SIGTERM) leaves
    nothing half-written."""
    with interruptible(), progress_bar():
        to_zarr(tiles, out, overwrite=overwrite, name=IMAGE)
