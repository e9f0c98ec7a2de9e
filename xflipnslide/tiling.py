"""Tiling, the xarray layer: find dims, call the array layer, label the tiles."""

from __future__ import annotations

import logging
from collections.abc import Hashable, Sequence
from typing import Any, Literal, TypeVar

import numpy as np
import xarray as xr
from dask.base import is_dask_collection

from ._array import blend_weights, check_dtype, tile_numpy, untile_numpy
from ._dask import tile_dask, tiles_per_chunk, untile_dask
from .dims import find_spatial_dims
from .errors import InvalidParameterError
from .plan import Edge, Strategy, TilePlan, plan_tiles

__all__ = ["TILE_ATTRS", "TILE_DIM", "tile", "untile"]

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
            centre = _interp(origins + (plan.tile_size - 1) / 2, values)
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


def _interp(pos: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Coordinate at fractional pixel ``pos``: linear between pixels, and
    extrapolated from the end spacing beyond them (padded windows)."""
    out = np.interp(pos, np.arange(values.size), values)
    if values.size > 1:
        lo, hi = pos < 0, pos > values.size - 1
        out[lo] = values[0] + (values[1] - values[0]) * pos[lo]
        out[hi] = values[-1] + (values[-1] - values[-2]) * (pos[hi] - (values.size - 1))
    return out


def _geometry_attrs(plan: TilePlan) -> dict[str, Any]:
    return {
        "fns_tile_size": plan.tile_size,
        "fns_strategy": plan.strategy,
        "fns_edge": plan.edge,
        "fns_scene_shape": [int(n) for n in plan.shape],
    }


def untile(
    tiles: T_Xarray,
    *,
    blend: Literal["mean", "hann"] = "mean",
    like: xr.DataArray | xr.Dataset | None = None,
    chunks: int | str | None = None,
) -> T_Xarray:
    """Put tiles back on the scene's grid: undo each transform, overlap-add.

    Every tile (an input tile, or a model's output for it) is turned back
    by the inverse of its transform code and added onto the scene with
    per-pixel weights; each pixel is the weighted mean of the tiles covering
    it. Flip-n-Slide tiles thus give an 8-view D4 test-time augmentation
    for free: untile the predictions of the eight transformed views.

    Parameters
    ----------
    tiles
        ``(tile, *other, y, x)`` with the ``row``, ``col`` and ``transform``
        coordinates ``tile`` gives (tiles reopened from Zarr, a subset from
        :func:`split`, or model outputs with other non-spatial dims, say
        ``class`` instead of ``band``).
    blend
        ``"mean"``: equal weights. ``"hann"``: a separable Hann-type window
        falling toward the tile edges (floored at 1e-3 so edge pixels keep a
        small weight), which smooths seams between predictions.
    like
        The scene (or anything on its grid) to align to: the output takes its
        spatial sizes and coordinates. Without it the grid is rebuilt from
        the tiles alone: the scene shape from the ``fns_scene_shape`` attr
        and regular spatial coordinates from the ``{dim}_center`` coords.
    chunks
        Dask output chunk side along y and x (default: ``like``'s chunks,
        else dask's ``"auto"``).

    Returns
    -------
    DataArray or Dataset
        ``(*other, y, x)`` on the scene's full grid, float (float32 for
        float32 or small integer tiles); pixels no tile covers are NaN.
        Coordinates without the ``tile`` dim (band, CRS, statistics) and the
        attrs are kept. Dask tiles give a lazy result, one task per output
        block reading only the tile chunks that overlap it.

    Examples
    --------
    >>> import numpy as np, xarray as xr, xflipnslide
    >>> scene = xr.DataArray(np.random.rand(2, 300, 300), dims=("band", "y", "x"))
    >>> back = scene.fns.tile(64).fns.untile()
    >>> bool(np.allclose(back[:, 22:278, 22:278], scene[:, 22:278, 22:278]))
    True
    """
    if not isinstance(tiles, (xr.DataArray, xr.Dataset)) or TILE_DIM not in tiles.dims:
        raise InvalidParameterError("untile takes tiles: the output of tile() (a 'tile' dimension)")
    missing = [c for c in ("row", "col", "transform") if c not in tiles.coords]
    if missing:
        raise InvalidParameterError(
            f"untile needs the tile coordinates {missing} that tile() attaches; keep them when "
            "selecting or predicting (e.g. build predictions with tiles.copy(data=...))"
        )
    weight = blend_weights(_tile_side(tiles), blend)
    rows = np.asarray(tiles["row"].values, dtype=np.int64)
    cols = np.asarray(tiles["col"].values, dtype=np.int64)
    codes = np.asarray(tiles["transform"].values, dtype=np.int8)
    ydim, xdim = _tile_spatial_dims(tiles)
    shape, spatial_coords = _scene_grid(tiles, like, ydim, xdim, rows, cols)

    def back(var: xr.Variable) -> xr.Variable:
        other = [d for d in var.dims if d not in (TILE_DIM, ydim, xdim)]
        var = var.transpose(TILE_DIM, *other, ydim, xdim)
        dtype = np.result_type(var.dtype, np.float32)
        if is_dask_collection(var.data):
            out = untile_dask(
                var.data,
                rows,
                cols,
                codes,
                shape,
                weight,
                dtype,
                _out_chunks(like, ydim, xdim, shape, chunks, dtype),
            )
        else:
            out = untile_numpy(np.asarray(var.data), rows, cols, codes, shape, weight, dtype)
        return xr.Variable((*other, ydim, xdim), out, attrs=var.attrs)

    coords = {n: c.variable for n, c in tiles.coords.items() if TILE_DIM not in c.dims}
    coords.update(spatial_coords)
    attrs = {k: v for k, v in tiles.attrs.items() if k not in TILE_ATTRS}
    if isinstance(tiles, xr.DataArray):
        return xr.DataArray(back(tiles.variable), coords=coords, name=tiles.name, attrs=attrs)
    data_vars = {
        n: back(v.variable) if TILE_DIM in v.dims else v.variable
        for n, v in tiles.data_vars.items()
    }
    return xr.Dataset(data_vars, coords=coords, attrs=attrs)


def _tile_spatial_dims(tiles) -> tuple[Hashable, Hashable]:
    var = (
        tiles
        if isinstance(tiles, xr.DataArray)
        else next(v for v in tiles.data_vars.values() if TILE_DIM in v.dims)
    )
    return var.dims[-2], var.dims[-1]


def _tile_side(tiles) -> int:
    ydim, xdim = _tile_spatial_dims(tiles)
    if tiles.sizes[ydim] != tiles.sizes[xdim]:
        raise InvalidParameterError(
            f"tiles must be square; got {tiles.sizes[ydim]} x {tiles.sizes[xdim]} along ({ydim!r}, {xdim!r})"
        )
    return int(tiles.sizes[ydim])


def _scene_grid(tiles, like, ydim, xdim, rows, cols):
    """Scene shape and spatial coordinates, from ``like`` or from the tiles."""
    T = _tile_side(tiles)
    if like is not None:
        ly, lx = find_spatial_dims(
            like, (ydim, xdim) if ydim in like.dims and xdim in like.dims else None
        )
        shape = (like.sizes[ly], like.sizes[lx])
        recorded = tiles.attrs.get("fns_scene_shape")
        if recorded is not None and tuple(int(n) for n in recorded) != shape:
            raise InvalidParameterError(
                f"like= is {shape[0]} x {shape[1]} but the tiles come from a "
                f"{recorded[0]} x {recorded[1]} scene; pass the scene they were cut from"
            )
        coords = {
            d: xr.Variable(d, like[src].values, attrs=like[src].attrs)
            for d, src in ((ydim, ly), (xdim, lx))
            if src in like.coords
        }
        return shape, coords
    recorded = tiles.attrs.get("fns_scene_shape")
    if recorded is None:
        raise InvalidParameterError(
            "the tiles do not record their scene's shape (attr fns_scene_shape): pass like=scene"
        )
    shape = (int(recorded[0]), int(recorded[1]))
    coords = {}
    for dim, origins, size in ((ydim, rows, shape[0]), (xdim, cols, shape[1])):
        centre = f"{dim}_center"
        if centre not in tiles.coords or len(np.unique(origins)) < 2:
            log.info(
                "untile: no %r coordinates rebuilt (no %s, or a single window position)",
                dim,
                centre,
            )
            continue
        slope, intercept = np.polyfit(
            origins + (T - 1) / 2, np.asarray(tiles[centre].values, float), 1
        )
        coords[dim] = xr.Variable(
            dim, intercept + slope * np.arange(size), attrs=tiles[centre].attrs
        )
    return shape, coords


def _out_chunks(like, ydim, xdim, shape, chunks, dtype):
    from dask.array.core import normalize_chunks

    if chunks is None and like is not None and like.chunks is not None:
        sizes = like.chunksizes
        ly, lx = find_spatial_dims(like, (ydim, xdim) if ydim in like.dims else None)
        return sizes[ly], sizes[lx]
    spec = "auto" if chunks is None else chunks
    return normalize_chunks((spec, spec), shape=shape, dtype=dtype)
