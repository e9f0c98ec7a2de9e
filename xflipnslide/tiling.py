"""Tiling, the xarray layer: find dims, call the array layer, label the tiles."""

from __future__ import annotations

import logging
from collections.abc import Hashable, Mapping, Sequence
from typing import Any, Literal

import numpy as np
import xarray as xr

from . import schema
from ._core.blend import blend_weights, untile_array
from ._core.load import load_arrays
from ._core.tiling import check_tileable, tile_array, tiles_per_chunk, valid_fractions
from .collection import check_single_scene, scene_tiles, tile_collection
from .dims import find_spatial_dims, spatial_data
from .errors import (
    DataDroppedWarning,
    InvalidParameterError,
    InvalidTilesError,
    check_positive_int,
    warn,
)
from .georef import (
    check_regular_grid,
    coords_transform,
    portable_grid_mapping,
    windows_intersecting,
)
from .plan import Edge, Strategy, TilePlan, check_min_valid, plan_tiles
from .schema import TILE_DIM, T_Xarray

__all__ = ["tile", "untile"]

log = logging.getLogger(__name__)


def tile(
    obj: T_Xarray,
    tile_size: int = 256,
    strategy: Strategy = "flipnslide",
    *,
    dims: Sequence[Hashable] | None = None,
    edge: Edge = "crop",
    stride: int | None = None,
    min_valid: float | None = None,
    aoi: Any = None,
    aoi_crs: Any = None,
    tile_chunks: int | str = "auto",
) -> T_Xarray:
    """Cut a scene into labelled Flip-n-Slide tiles.

    Parameters
    ----------
    obj
        A DataArray or Dataset with two spatial dims (any other dims, such as
        ``band`` or ``time``, ride along in every tile); or a collection, a
        mapping ``{id: scene}`` or a sequence of scenes, each tiled on its own
        grid into one tile set with a ``scene`` coordinate
        (:func:`xflipnslide.collection.tile_collection`, :doc:`/collections`).
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
        ``tile_size`` (with a :class:`~xflipnslide.DataDroppedWarning` saying
        how many rows and columns are left out); ``"pad"`` reflect-pads
        symmetrically to the next multiple, so every pixel is tiled and edge
        windows have negative or out-of-scene origins.
    stride
        ``strategy="overlap"`` only: the step between windows, a divisor of
        ``tile_size`` (default ``tile_size // 2``).
    min_valid
        Keep only windows whose share of observed pixels (``valid_fraction``)
        is at least this, in ``[0, 1]``. Decided before any pixel is tiled,
        from the ``fns_observed`` mask ``preprocess`` leaves (on dask, only
        that mask is computed). Dropped windows are counted in the
        ``fns_dropped_min_valid`` attr and a :class:`~xflipnslide.DataDroppedWarning`.
    aoi, aoi_crs
        An area of interest (a shapely geometry or a GeoJSON-like mapping,
        in ``aoi_crs``, default the scene's CRS): keep only windows whose
        footprint intersects it (count in ``fns_dropped_aoi``). Needs
        shapely and regular spatial coordinates.
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
        window's centre, and ``valid_fraction`` (float32: the share of the
        window's pixels observed in every band, from ``preprocess``'s
        ``fns_observed`` mask; 1 where no mask is known). The CRS
        (``spatial_ref``, a coordinate named in each tiled variable's
        ``grid_mapping`` attr, so a store reopens with it), other
        coordinates and the attrs are kept, except that CF encoding attrs
        (``_FillValue``, ``scale_factor``...) are renamed so a store reopens
        with the values and dtype written (see :doc:`/tile-format`);
        ``fns_*`` attrs on the result and on each tiled variable record the
        geometry (the scene's affine transform included). Dask input gives
        lazy output chunked along ``tile`` only; numpy input gives numpy.

    Raises
    ------
    InvalidParameterError, SceneTooSmallError, SpatialDimsError
        Before any pixel is read, for a bad option, a scene below the
        minimum size or spatial dims that cannot be found.
    IrregularGridError
        For 1-D spatial coordinates that are not evenly spaced (see
        :func:`xflipnslide.georef.check_regular_grid`): regrid or reproject
        first.

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
    if isinstance(obj, (Mapping, list, tuple)) and not isinstance(obj, xr.Dataset):
        return tile_collection(
            obj,
            tile_size,
            strategy,
            dims=dims,
            edge=edge,
            stride=stride,
            min_valid=min_valid,
            aoi=aoi,
            aoi_crs=aoi_crs,
            tile_chunks=tile_chunks,
        )
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
    check_regular_grid(obj, (ydim, xdim), what="tile")
    min_valid = check_min_valid(min_valid)
    tiled, kept = _split_variables(obj, ydim, xdim)
    for name, var in tiled.items():
        check_tileable(
            var.data, f"variable {name!r}" if isinstance(obj, xr.Dataset) else "the input"
        )
    plan = plan_tiles(
        (obj.sizes[ydim], obj.sizes[xdim]), tile_size, strategy, edge=edge, stride=stride
    )
    _report_geometry(plan, ydim, xdim)
    observed = _observed_mask(obj, ydim, xdim)
    plan, fractions, dropped = _filter_windows(
        obj, plan, (ydim, xdim), observed, min_valid, aoi, aoi_crs
    )
    per = _tiles_per_chunk(tiled, plan, tile_chunks)
    if fractions is None:
        fractions = _valid_fractions(observed, plan, per)

    def tile_var(var: xr.Variable) -> xr.Variable:
        return _tile_variable(var, plan, ydim, xdim, per)

    coords = _tile_coords(obj, plan, ydim, xdim, tile_var)
    coords[schema.VALID_FRACTION] = xr.Variable(TILE_DIM, fractions)
    attrs = {**schema.portable_attrs(obj.attrs), **dropped}
    if isinstance(obj, xr.DataArray):
        out = xr.DataArray(tile_var(obj.variable), coords=coords, name=obj.name, attrs=attrs)
    else:
        data_vars = {name: tile_var(var) for name, var in tiled.items()}
        data_vars.update(kept)
        out = xr.Dataset(data_vars, coords=coords, attrs=attrs)[[*obj.data_vars]]
    out = portable_grid_mapping(out, (ydim, xdim), source=obj)
    return schema.write_geometry(out, plan, (ydim, xdim), coords_transform(obj, (ydim, xdim)))


def _observed_mask(obj, ydim, xdim) -> xr.DataArray | None:
    """The ``(y, x)`` observed mask windows are measured by: a pixel counts as
    observed only where it is observed along every other dim of the mask (at
    every date of a ``(time, y, x)`` mask), the rule ``preprocess`` applies."""
    mask = obj.coords.get(schema.OBSERVED)
    if mask is None:
        return None
    if not {ydim, xdim} <= set(mask.dims):
        raise InvalidParameterError(
            f"the {schema.OBSERVED!r} mask has dims {mask.dims}, without both spatial dims "
            f"({ydim!r}, {xdim!r}): drop it (scene.drop_vars({schema.OBSERVED!r})) or give it "
            "the scene's grid"
        )
    other = [d for d in mask.dims if d not in (ydim, xdim)]
    if other:
        mask = mask.astype(bool).all(other)
    return mask.transpose(ydim, xdim)


def _valid_fractions(observed: xr.DataArray | None, plan: TilePlan, per: int = 1):
    """Share of observed pixels in each window (1 where no mask is known):
    numpy, or lazy for a lazy mask, ``per`` tiles per chunk."""
    if observed is None:
        return np.ones(len(plan), np.float32)
    return valid_fractions(observed.data, plan, tile_chunks=per)


#: What each drop count is called in the warning.
_DROPPED_BY = {schema.DROPPED_MIN_VALID: "min_valid", schema.DROPPED_AOI: "aoi"}


def _filter_windows(obj, plan, dims, observed, min_valid, aoi, aoi_crs):
    """The plan of the windows ``min_valid`` and ``aoi`` keep, the valid
    fractions of those (computed here, the mask only, when ``min_valid``
    needs them; else ``None``) and the drop counts."""
    keep = np.ones(len(plan), dtype=bool)
    dropped: dict[str, int] = {}
    fractions = None
    if min_valid is not None:
        fractions = load_arrays([_valid_fractions(observed, plan)])[0]
        low = fractions < min_valid
        dropped[schema.DROPPED_MIN_VALID] = int(low.sum())
        keep &= ~low
    if aoi is not None:
        inside = windows_intersecting(obj, plan, dims, aoi, aoi_crs)
        dropped[schema.DROPPED_AOI] = int((keep & ~inside).sum())
        keep &= inside
    if not keep.all():
        warn(
            f"tile: {int((~keep).sum())} of {len(plan)} windows dropped ("
            + ", ".join(f"{_DROPPED_BY[k]}: {v}" for k, v in dropped.items())
            + "); the kept ones keep their codes and order",
            DataDroppedWarning,
        )
    if not keep.any():
        raise InvalidParameterError(
            f"no window is left after min_valid={min_valid!r} / aoi=: lower min_valid or "
            "check the area of interest"
        )
    return plan.select(keep), (fractions[keep] if fractions is not None else None), dropped


def _report_geometry(plan: TilePlan, ydim: Hashable, xdim: Hashable) -> None:
    (h, w), (oy, ox), (hc, wc) = plan.shape, plan.offset, plan.extent
    if plan.edge == "crop" and (hc, wc) != (h, w):
        lost = 1 - hc * wc / (h * w)
        warn(
            f"edge='crop' tiles the centre {hc} x {wc} of the {h} x {w} scene ({ydim} "
            f"{oy}:{oy + hc}, {xdim} {ox}:{ox + wc}): {h - hc} rows and {w - wc} columns at "
            f"the edges ({lost:.1%} of the pixels) are in no tile. Use edge='pad' to keep them",
            DataDroppedWarning,
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
    """One tile count per chunk for every variable, sized on the largest
    tile (the array layer uses it where it builds a graph)."""
    hw = plan.shape[0] * plan.shape[1]
    tile_bytes = max(
        var.size // hw * plan.tile_size**2 * var.dtype.itemsize for var in tiled.values()
    )
    return tiles_per_chunk(tile_chunks, tile_bytes, len(plan))


def _tile_variable(var: xr.Variable, plan: TilePlan, ydim, xdim, per: int) -> xr.Variable:
    other = [d for d in var.dims if d not in (ydim, xdim)]
    var = var.transpose(*other, ydim, xdim)
    out = tile_array(var.data, plan, tile_chunks=per)
    attrs = schema.portable_attrs(var.attrs)
    return xr.Variable((TILE_DIM, *other, ydim, xdim), out, attrs=attrs)


def _tile_coords(obj, plan: TilePlan, ydim, xdim, tile_var) -> dict[Hashable, Any]:
    """Coordinates of the tiles: window labels, centres, and what the input had."""
    coords: dict[Hashable, Any] = schema.tile_coords(plan)
    coords.update(schema.window_centres(obj, plan, (ydim, xdim)))
    for name, coord in obj.coords.items():
        has = (ydim in coord.dims, xdim in coord.dims)
        if all(has):
            coords[name] = tile_var(coord.variable)
        elif not any(has):
            coords[name] = coord.variable
        elif name not in (ydim, xdim):
            log.info("dropping coordinate %r: it runs along one spatial dim only", name)
    return coords


def untile(
    tiles: T_Xarray,
    *,
    blend: Literal["mean", "hann", "distance", "spline"] = "mean",
    like: xr.DataArray | xr.Dataset | None = None,
    chunks: int | str | None = None,
    dims: Sequence[Hashable] | None = None,
    scene: str | None = None,
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
        ``class`` instead of ``band``), in any dim order.
    blend
        Per-pixel weights (formulas in :doc:`/inference`): ``"mean"``
        (equal), ``"hann"`` (``sin²`` falling toward the tile edges),
        ``"distance"`` (linear fall to the edge, seamless_seg's trust) or
        ``"spline"`` (Smoothly-Blend's second-order spline); all floored at
        1e-3 of their peak so edge pixels keep a small weight.
    like
        The scene (or anything on its grid) to align to: the output takes its
        spatial sizes and coordinates; the tiles' window centres must lie on
        its coordinates. Without it the grid is rebuilt from the tiles
        alone: the scene shape from the ``fns_scene_shape`` attr and the
        coordinates from the ``fns_scene_transform`` attr (tiles that do
        not record it: from the ``{dim}_center`` coords, which must then lie
        on a regular grid).
    chunks
        Dask output chunk side along y and x (a positive int, or a size such
        as ``"64MiB"``); default ``like``'s chunks, else blocks of a multiple
        of the tile size bounded by a quarter of dask's ``array.chunk-size``.
    dims
        ``(row_dim, column_dim)`` of the tiles; by default the dims ``tile``
        recorded, else found by name as for :func:`tile`.
    scene
        For the tiles of a collection: the id of the scene to put back, on
        its own grid and with its CRS (required there; the error lists the
        ids).

    Returns
    -------
    DataArray or Dataset
        ``(*other, y, x)`` on the scene's full grid, float (float32 for
        float32 or small integer tiles); pixels no tile covers are NaN.
        Coordinates without the ``tile`` dim (band, CRS, statistics) and the
        attrs are kept. Dask tiles give a lazy result, one task per output
        block reading only the tile chunks that overlap it.

    Raises
    ------
    InvalidTilesError
        Before any pixel work, for tiles whose geometry cannot be trusted:
        codes outside 0..7, windows outside the scene, no tile at all,
        windows or codes that are not in the recorded plan, window centres
        off the recorded scene grid (tiles of several scenes or crops
        mixed; see :func:`xflipnslide.schema.read_geometry`), window
        centres off ``like``'s grid, or, without ``like=``, centres that
        are not on a regular grid (pass ``like=``).

    Examples
    --------
    >>> import numpy as np, xarray as xr, xflipnslide
    >>> scene = xr.DataArray(np.random.rand(2, 300, 300), dims=("band", "y", "x"))
    >>> back = scene.fns.tile(64, edge="pad").fns.untile()
    >>> bool(np.allclose(back, scene))
    True
    """
    if scene is not None:
        tiles = scene_tiles(tiles, scene)
    check_single_scene(tiles, "untile")
    g = schema.read_geometry(tiles, dims=dims, what="untile")
    if not len(g):
        raise InvalidTilesError("untile got 0 tiles: there is nothing to put back")
    weight = blend_weights(g.tile_size, blend)
    if chunks is not None and not isinstance(chunks, str):
        chunks = check_positive_int(chunks, "chunks")
    ydim, xdim = g.dims
    shape, spatial_coords, like_dims = schema.scene_grid(tiles, g, like)
    for dim in g.dims:
        if dim not in spatial_coords:
            log.info("untile: no %r coordinates rebuilt (no window centres along it)", dim)
    grid = spatial_data(like, like_dims) if like is not None else []

    def back(var: xr.Variable) -> xr.Variable:
        other = [d for d in var.dims if d not in (TILE_DIM, ydim, xdim)]
        var = var.transpose(TILE_DIM, *other, ydim, xdim)
        out = untile_array(
            var.data, g.rows, g.cols, g.codes, shape, weight, chunks=chunks, like=grid
        )
        attrs = {k: v for k, v in var.attrs.items() if k not in schema.GEOMETRY_ATTRS}
        return xr.Variable((*other, ydim, xdim), out, attrs=attrs)

    coords = {n: c.variable for n, c in tiles.coords.items() if TILE_DIM not in c.dims}
    coords.update(spatial_coords)
    attrs = {k: v for k, v in tiles.attrs.items() if k not in schema.GEOMETRY_ATTRS}
    if isinstance(tiles, xr.DataArray):
        return xr.DataArray(back(tiles.variable), coords=coords, name=tiles.name, attrs=attrs)
    data_vars = {
        n: back(v.variable) if TILE_DIM in v.dims else v.variable
        for n, v in tiles.data_vars.items()
    }
    return xr.Dataset(data_vars, coords=coords, attrs=attrs)
