"""Tiling, the xarray layer: find dims, call the array layer, label the tiles."""

from __future__ import annotations

import logging
from collections.abc import Hashable, Sequence
from typing import Any, TypeVar

import numpy as np
import xarray as xr
from dask.base import is_dask_collection

from ._array import check_dtype, tile_numpy
from ._dask import tile_dask, tiles_per_chunk
from .dims import find_spatial_dims
from .errors import InvalidParameterError
from .plan import Edge, Strategy, TilePlan, plan_tiles

__all__ = ["TILE_ATTRS", "TILE_DIM", "batches", "tile"]

log = logging.getLogger(__name__)

T_Xarray = TypeVar("T_Xarray", xr.DataArray, xr.Dataset)

#: Name of the dimension that counts tiles.
TILE_DIM = "tile"
#: Attributes ``tile`` writes so tiles can be put back without the scene
#: (``fns_`` prefixed; plain ints, strings and int lists survive Zarr and netCDF).
TILE_ATTRS = ("fns_tile_size", "fns_strategy", "fns_edge", "fns_scene_shape")


def tile(
    obj: T_Xarray,
    tile_size: int = 256,
    strategy: Strategy = "flipnslide",
    *,
    dims: Sequence[Hashable] | None = None,
    edge: Edge = "crop",
    tile_chunks: int | str = "auto",
) -> T_Xarray:
    """Cut a scene into labelled Flip-n-Slide tiles.

    Parameters
    ----------
    obj
        A DataArray or Dataset with two spatial dims (any other dims, such as
        ``band`` or ``time``, ride along in every tile).
    tile_size
        Side ``T`` of the square tiles in pixels; a multiple of 4 for
        ``"flipnslide"`` and of 2 for ``"overlap"``.
    strategy
        ``"flipnslide"``: a 50 % overlapping outer grid plus an inner grid
        offset by a quarter tile, every overlapping tile under a different
        rotation or reflection (dihedral group D4), so no pixel is seen
        twice the same way. ``"overlap"``: the 50 % grid, untransformed.
        ``"no_overlap"``: plain adjacent tiles.
    dims
        ``(row_dim, column_dim)``. By default found by name: ``y``/``x``,
        ``lat``/``lon``, ``latitude``/``longitude``, or rioxarray's.
    edge
        ``"crop"`` (default) centre-crops to the largest multiple of
        ``tile_size`` (logged at INFO level); ``"pad"`` reflect-pads
        symmetrically to the next multiple, so every pixel is tiled and edge
        windows have negative or out-of-scene origins.
    tile_chunks
        For dask input: tiles per output chunk (an int), a target chunk size
        (``"64MiB"``), or ``"auto"`` (dask's ``array.chunk-size``, 128 MiB by
        default). Every variable of a Dataset gets the same chunks.

    Returns
    -------
    DataArray or Dataset
        Dims ``("tile", *other dims in input order, row_dim, column_dim)``;
        coordinates on ``tile``: ``row`` and ``col`` (window origin in input
        pixels), ``transform`` (int8 D4 code, see
        :data:`xflipnslide.TRANSFORMS`), ``grid`` (``"outer"``, ``"inner"`` or
        ``"regular"``) and, where the input has 1-D numeric spatial
        coordinates, ``{row_dim}_center`` / ``{column_dim}_center``, the
        window's centre. The CRS (``spatial_ref``), other coordinates and the
        attrs are kept; ``fns_*`` attrs record the geometry. Dask input gives
        lazy output chunked along ``tile`` only; numpy input gives numpy.

    Raises
    ------
    InvalidParameterError, SceneTooSmallError, SpatialDimsError
        Before any pixel is read, for a bad option, a scene below the
        minimum size or spatial dims that cannot be found.

    Notes
    -----
    1-D coordinates along one spatial dim have no meaning inside a rotated
    tile: index coordinates become the window centres, others are dropped
    (logged). Coordinates on both spatial dims (say 2-D ``lat``/``lon``) are
    tiled like the data.

    Examples
    --------
    >>> import numpy as np, xarray as xr, xflipnslide
    >>> scene = xr.DataArray(np.zeros((3, 1024, 1024), "float32"), dims=("band", "y", "x"))
    >>> tiles = scene.fns.tile(tile_size=256)
    >>> tiles.sizes
    Frozen({'tile': 85, 'band': 3, 'y': 256, 'x': 256})
    >>> tiles.transform.values[:4]
    array([0, 3, 0, 3], dtype=int8)
    """
    if not isinstance(obj, (xr.DataArray, xr.Dataset)):
        raise InvalidParameterError(
            f"tile takes an xarray DataArray or Dataset; got {type(obj).__name__}. "
            "Wrap a numpy array with xr.DataArray(a, dims=('band', 'y', 'x'))."
        )
    ydim, xdim = find_spatial_dims(obj, dims)
    if TILE_DIM in obj.dims:
        raise InvalidParameterError(
            f"the input already has a {TILE_DIM!r} dimension: tile a scene, not tiles "
            f"(rename it with .rename({TILE_DIM}=...) if it means something else)"
        )
    plan = plan_tiles((obj.sizes[ydim], obj.sizes[xdim]), tile_size, strategy, edge=edge)
    _log_geometry(plan, ydim, xdim)

    tiled, kept = _split_variables(obj, ydim, xdim)
    for name, var in tiled.items():
        check_dtype(var.dtype, f"variable {name!r}" if isinstance(obj, xr.Dataset) else "the input")
    per = _tiles_per_chunk(tiled, plan, tile_chunks)

    def tile_var(var: xr.Variable) -> xr.Variable:
        return _tile_variable(var, plan, ydim, xdim, per)

    coords = _tile_coords(obj, plan, ydim, xdim, tile_var)
    attrs = {**obj.attrs, **_geometry_attrs(plan)}
    if isinstance(obj, xr.DataArray):
        return xr.DataArray(tile_var(obj.variable), coords=coords, name=obj.name, attrs=attrs)
    data_vars = {name: tile_var(var) for name, var in tiled.items()}
    data_vars.update(kept)
    out = xr.Dataset(data_vars, coords=coords, attrs=attrs)
    return out[[*obj.data_vars]]  # keep the input's variable order


def _log_geometry(plan: TilePlan, ydim: Hashable, xdim: Hashable) -> None:
    (h, w), (oy, ox), (hc, wc) = plan.shape, plan.offset, plan.extent
    if plan.edge == "crop" and (hc, wc) != (h, w):
        log.info(
            "edge='crop': tiling the centre %d x %d of the %d x %d scene (%s %d:%d, %s %d:%d); "
            "%d rows and %d columns at the edges are left out (use edge='pad' to keep them)",
            hc,
            wc,
            h,
            w,
            ydim,
            oy,
            oy + hc,
            xdim,
            ox,
            ox + wc,
            h - hc,
            w - wc,
        )
    elif plan.edge == "pad" and (hc, wc) != (h, w):
        log.info(
            "edge='pad': reflect-padding the %d x %d scene to %d x %d (pad %s)",
            h,
            w,
            hc,
            wc,
            plan.pad,
        )
    log.debug(
        "%s tiling: %d tiles of %d px, %s", plan.strategy, len(plan), plan.tile_size, plan.counts()
    )


def _split_variables(
    obj, ydim, xdim
) -> tuple[dict[Hashable, xr.Variable], dict[Hashable, xr.Variable]]:
    """Variables to tile (both spatial dims) and to keep (neither)."""
    if isinstance(obj, xr.DataArray):
        return {obj.name: obj.variable}, {}
    tiled, kept = {}, {}
    for name, var in obj.data_vars.items():
        has = (ydim in var.dims, xdim in var.dims)
        if all(has):
            tiled[name] = var.variable
        elif not any(has):
            kept[name] = var.variable
        else:
            raise InvalidParameterError(
                f"data variable {name!r} has dims {var.dims}, only one of the spatial dims "
                f"({ydim!r}, {xdim!r}), so it cannot be tiled: drop it first "
                f"(ds.drop_vars({name!r})) or broadcast it to both"
            )
    if not tiled:
        raise InvalidParameterError(
            f"no data variable has both spatial dims ({ydim!r}, {xdim!r}); nothing to tile"
        )
    return tiled, kept


def _tiles_per_chunk(tiled: dict, plan: TilePlan, tile_chunks: int | str) -> int:
    """One tile count per chunk for every variable, sized on the largest tile."""
    hw = plan.shape[0] * plan.shape[1]
    tile_bytes = max(
        var.size // hw * plan.tile_size**2 * var.dtype.itemsize for var in tiled.values()
    )
    return tiles_per_chunk(tile_chunks, tile_bytes, len(plan))


def _tile_variable(var: xr.Variable, plan: TilePlan, ydim, xdim, per: int) -> xr.Variable:
    other = [d for d in var.dims if d not in (ydim, xdim)]
    var = var.transpose(*other, ydim, xdim)
    data = var.data
    if is_dask_collection(data):
        out = tile_dask(data, plan, tile_chunks=per)
    else:
        out = tile_numpy(np.asarray(data), plan)
    encoding = {k: v for k, v in var.encoding.items() if k == "grid_mapping"}
    return xr.Variable((TILE_DIM, *other, ydim, xdim), out, attrs=var.attrs, encoding=encoding)


def _tile_coords(obj, plan: TilePlan, ydim, xdim, tile_var) -> dict[Hashable, Any]:
    """Coordinates of the tiles: window labels, centres, and what the input had."""
    coords: dict[Hashable, Any] = {
        "row": (TILE_DIM, plan.rows),
        "col": (TILE_DIM, plan.cols),
        "transform": (TILE_DIM, plan.codes),
        "grid": (TILE_DIM, plan.grids.astype(object)),
    }
    for dim, origins in ((ydim, plan.rows), (xdim, plan.cols)):
        if dim in obj.indexes and np.issubdtype(obj[dim].dtype, np.number):
            values = np.asarray(obj[dim].values, dtype=float)
            centre = np.interp(origins + (plan.tile_size - 1) / 2, np.arange(values.size), values)
            coords[f"{dim}_center"] = xr.Variable(TILE_DIM, centre, attrs=obj[dim].attrs)
    for name, coord in obj.coords.items():
        has = (ydim in coord.dims, xdim in coord.dims)
        if all(has):
            coords[name] = tile_var(coord.variable)
        elif not any(has):
            coords[name] = coord.variable
        elif name not in (ydim, xdim):
            log.info("dropping coordinate %r: it runs along one spatial dim only", name)
    return coords


def _geometry_attrs(plan: TilePlan) -> dict[str, Any]:
    return {
        "fns_tile_size": plan.tile_size,
        "fns_strategy": plan.strategy,
        "fns_edge": plan.edge,
        "fns_scene_shape": [int(n) for n in plan.shape],
    }


def batches(tiles: T_Xarray, batch_size: int = 32, *, preload_batch: bool = True):
    """Batches of tiles for training, as an :class:`xbatcher.BatchGenerator`.

    Equivalent to ``xbatcher.BatchGenerator(tiles, input_dims={every dim but
    "tile": its full size}, batch_dims={"tile": batch_size})``: each batch
    is ``(tile: batch_size, *other, y, x)`` with the tile coordinates along.

    Parameters
    ----------
    tiles
        The output of :func:`tile` (or tiles reloaded from Zarr).
    batch_size
        Tiles per batch. xbatcher yields only full batches: the last
        ``n_tiles % batch_size`` tiles are in no batch (logged at WARNING).
    preload_batch
        Passed to xbatcher: load each batch into memory at once.

    Examples
    --------
    >>> import numpy as np, xarray as xr, xflipnslide
    >>> scene = xr.DataArray(np.zeros((3, 1024, 1024), "float32"), dims=("band", "y", "x"))
    >>> gen = scene.fns.tile(tile_size=256).fns.batches(batch_size=16)
    >>> len(gen), gen[0].sizes
    (5, Frozen({'tile': 16, 'band': 3, 'y': 256, 'x': 256}))
    """
    import xbatcher

    if TILE_DIM not in tiles.dims:
        raise InvalidParameterError(
            f"batches takes tiles (a {TILE_DIM!r} dimension); got dims {tuple(tiles.dims)}. "
            "Call .fns.tile(...) first."
        )
    if (
        isinstance(batch_size, bool)
        or not isinstance(batch_size, (int, np.integer))
        or batch_size <= 0
    ):
        raise InvalidParameterError(f"batch_size must be a positive integer; got {batch_size!r}")
    n = tiles.sizes[TILE_DIM]
    if batch_size > n:
        raise InvalidParameterError(
            f"batch_size={batch_size} is more than the {n} tiles there are; use batch_size <= {n}"
        )
    if n % batch_size:
        log.warning(
            "%d of %d tiles are in no batch: xbatcher yields only full batches of %d",
            n % batch_size,
            n,
            batch_size,
        )
    input_dims = {d: s for d, s in tiles.sizes.items() if d != TILE_DIM}
    return xbatcher.BatchGenerator(
        tiles,
        input_dims=input_dims,
        batch_dims={TILE_DIM: int(batch_size)},
        preload_batch=preload_batch,
    )
