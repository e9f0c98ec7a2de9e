"""Reading a tile set back: its geometry, checked, and the scene grid it
implies. Part of :mod:`xflipnslide.schema` (which re-exports every public
name here): the names of the format are ``schema``'s, read from it, never
spelled here.

Only coordinates and attrs are read, never pixel data.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import xarray as xr

from . import schema
from .dims import find_spatial_dims
from .errors import InvalidParameterError, InvalidTilesError, SceneTooSmallError
from .georef import extrapolate, grid_tolerance

__all__ = ["TileGeometry", "check_on_grid", "read_geometry", "scene_coords", "scene_grid"]


@dataclass(frozen=True, eq=False)
class TileGeometry:
    """What a set of tiles says about where it came from.

    Attributes
    ----------
    dims
        ``(row_dim, column_dim)`` of the tiles.
    tile_size
        ``T``, the side of every tile.
    scene_shape
        ``(H, W)`` of the scene, or ``None`` where the tiles do not record it.
    strategy, edge
        As given to ``tile`` (``None`` where not recorded).
    rows, cols, codes
        Window origin and transform code of each tile, in tile order.
    stride
        The recorded window step (``None`` where not recorded).
    transform
        The scene's affine ``(a, b, c, d, e, f)`` (pixel corners), where recorded.
    """

    dims: tuple[Hashable, Hashable]
    tile_size: int
    scene_shape: tuple[int, int] | None
    strategy: str | None
    edge: str | None
    rows: np.ndarray
    cols: np.ndarray
    codes: np.ndarray
    stride: int | None = None
    transform: tuple[float, ...] | None = None

    def __len__(self) -> int:
        return int(self.rows.size)


def _attrs_of(tiles: xr.DataArray | xr.Dataset) -> Mapping[Hashable, Any]:
    """The geometry attrs: the object's own, else its tiled variables' (which
    must agree)."""
    if schema.SCENE_SHAPE in tiles.attrs or not isinstance(tiles, xr.Dataset):
        return tiles.attrs
    found: Mapping[Hashable, Any] | None = None
    for name in schema.tiled_variables(tiles):
        attrs = tiles[name].attrs
        if schema.SCENE_SHAPE not in attrs:
            continue
        mine = _plain(attrs)
        if found is not None and mine != _plain(found):
            raise InvalidTilesError(
                f"the tiled variables record different geometries ({dict(found)} vs {mine}): "
                "they come from different tilings; keep one tiling per Dataset"
            )
        found = attrs
    return found or {}


def _plain(attrs: Mapping[Hashable, Any]) -> dict[str, Any]:
    """The geometry attrs as plain Python values (netCDF gives lists back as arrays)."""
    return {k: np.asarray(attrs[k]).tolist() if k in attrs else None for k in schema.GEOMETRY_ATTRS}


def read_geometry(
    tiles: xr.DataArray | xr.Dataset,
    *,
    dims: Sequence[Hashable] | None = None,
    what: str = "this",
) -> TileGeometry:
    """Read and check the geometry of a set of tiles, however they were written.

    Parameters
    ----------
    tiles
        Output of ``tile`` (a subset, model outputs built on it, or tiles
        reopened from Zarr or netCDF).
    dims
        ``(row_dim, column_dim)``: by default the dims ``tile`` recorded
        (``fns_row_dim``, ``fns_col_dim``), else found by name.
    what
        The function asking, for error messages.

    Raises
    ------
    InvalidTilesError
        For anything that would make the tiles put back wrongly: transform
        codes outside 0..7, windows outside the recorded scene, a window and
        code repeated, a window or code that is not in the plan the tiles
        record (tiles of another scene, crop or tiling mixed in), window
        centres that are not where the recorded scene transform puts them
        (tiles of another grid mixed in), or tiles cut at another size.

    Only coordinates and attrs are read, never pixel data.
    """
    if not isinstance(tiles, (xr.DataArray, xr.Dataset)) or schema.TILE_DIM not in tiles.dims:
        raise InvalidParameterError(
            f"{what} takes tiles: the output of tile() (a {schema.TILE_DIM!r} dimension); got "
            f"{type(tiles).__name__} with dims {tuple(getattr(tiles, 'dims', ()))}"
        )
    missing = [c for c in (schema.ROW, schema.COL, schema.TRANSFORM) if c not in tiles.coords]
    if missing:
        raise InvalidParameterError(
            f"{what} needs the tile coordinates {missing} that tile() attaches; keep them when "
            "selecting or predicting (e.g. build predictions with tiles.copy(data=...))"
        )
    attrs = _attrs_of(tiles)
    ydim, xdim = _tile_dims(tiles, attrs, dims)
    if tiles.sizes[ydim] != tiles.sizes[xdim]:
        raise InvalidTilesError(
            f"tiles must be square; got {tiles.sizes[ydim]} x {tiles.sizes[xdim]} "
            f"along ({ydim!r}, {xdim!r})"
        )
    size = int(tiles.sizes[ydim])
    recorded = attrs.get(schema.TILE_SIZE)
    if recorded is not None and int(recorded) != size:
        raise InvalidTilesError(
            f"the tiles are {size} x {size} px but were cut as {int(recorded)} px tiles "
            f"(attr {schema.TILE_SIZE}): their pixels no longer match the windows. Give "
            "outputs at the tiles' own size (resample them first)"
        )
    shape = attrs.get(schema.SCENE_SHAPE)
    stride, transform = attrs.get(schema.STRIDE), attrs.get(schema.SCENE_TRANSFORM)
    geometry = TileGeometry(
        dims=(ydim, xdim),
        tile_size=size,
        scene_shape=(int(shape[0]), int(shape[1])) if shape is not None else None,
        strategy=attrs.get(schema.STRATEGY),
        edge=attrs.get(schema.EDGE),
        rows=_integers(tiles, schema.ROW),
        cols=_integers(tiles, schema.COL),
        codes=_integers(tiles, schema.TRANSFORM).astype(np.int8),
        stride=int(stride) if stride is not None else None,
        transform=tuple(float(v) for v in transform) if transform is not None else None,
    )
    _check_codes(geometry)
    if geometry.scene_shape is not None:
        _check_inside(geometry, geometry.scene_shape, "scene the tiles record")
    _check_repeats(tiles, geometry)
    _check_plan(geometry)
    _check_centres(tiles, geometry)
    return geometry


def _integers(tiles, name: str) -> np.ndarray:
    values = np.asarray(tiles[name].values)
    if values.ndim != 1 or not np.issubdtype(values.dtype, np.integer):
        raise InvalidTilesError(
            f"tile coordinate {name!r} must be 1-D integers along {schema.TILE_DIM!r}; got "
            f"dtype {values.dtype} with {values.ndim} dims"
        )
    return values.astype(np.int64)


def _tile_dims(tiles, attrs, dims) -> tuple[Hashable, Hashable]:
    var = (
        tiles
        if isinstance(tiles, xr.DataArray)
        else next((tiles[n] for n in schema.tiled_variables(tiles)), None)
    )
    if var is None:
        raise InvalidParameterError(
            f"the Dataset has no variable with a {schema.TILE_DIM!r} dimension"
        )
    if dims is None and attrs.get(schema.ROW_DIM) is not None:
        recorded = (attrs[schema.ROW_DIM], attrs.get(schema.COL_DIM))
        if all(d in var.dims for d in recorded):
            dims = recorded
    return find_spatial_dims(var, dims)


def _first(bad: np.ndarray) -> int | None:
    """The first tile where ``bad``, or ``None``."""
    return int(np.flatnonzero(bad)[0]) if bad.any() else None


def _at(g: TileGeometry, k: int) -> str:
    return f"row={int(g.rows[k])}, col={int(g.cols[k])}"


def _mixed_in(problem: str, other: str, each: str) -> InvalidTilesError:
    """The error for tiles of several tilings in one set."""
    return InvalidTilesError(
        f"{problem}. Tiles of another {other} were mixed in (e.g. by xr.concat): untile {each}"
    )


def _check_codes(g: TileGeometry) -> None:
    if (k := _first((g.codes < 0) | (g.codes > 7))) is not None:
        raise InvalidTilesError(
            f"transform codes run from 0 to 7; tile {k} has {int(g.codes[k])}: keep the "
            f"{schema.TRANSFORM!r} coordinate tile() wrote"
        )


def _check_inside(g: TileGeometry, shape: tuple[int, int], where: str) -> None:
    """Every window must overlap the ``shape`` grid (the recorded scene, or
    ``like=``'s): the one rule for both."""
    T, (h, w) = g.tile_size, shape
    outside = (g.rows <= -T) | (g.rows >= h) | (g.cols <= -T) | (g.cols >= w)
    if (k := _first(outside)) is not None:
        raise InvalidTilesError(
            f"{int(outside.sum())} tiles lie outside the {h} x {w} {where}: tile {k}'s window "
            f"is at {_at(g, k)}. Keep the {schema.ROW!r}/{schema.COL!r} coordinates tile() "
            "wrote, and pass like= the scene the tiles were cut from"
        )


def _check_repeats(tiles, g: TileGeometry) -> None:
    """No window twice under one code, nor one origin with two centres."""
    key = np.stack([g.rows, g.cols, g.codes.astype(np.int64)], axis=1)
    if len(np.unique(key, axis=0)) < len(key):
        raise InvalidTilesError(
            "some tiles repeat a window under the same transform code: they come from several "
            "scenes (or the same tiles were concatenated twice). Untile each scene's tiles "
            "on their own"
        )
    for dim, origins in zip(g.dims, (g.rows, g.cols)):
        name = schema.center_name(dim)
        if name not in tiles.coords or not len(origins):
            continue
        centres = np.asarray(tiles[name].values, dtype=float)
        order = np.argsort(origins, kind="stable")
        o, c = origins[order], centres[order]
        spread = np.abs(c[1:] - c[:-1])[o[1:] == o[:-1]]
        tol = 1e-6 * max(float(np.nanmax(np.abs(c))), 1.0)
        if spread.size and float(np.nanmax(spread)) > tol:
            raise InvalidTilesError(
                f"tiles with the same window origin have different {name!r} coordinates: they "
                "come from several scenes. Untile each scene's tiles on their own"
            )


def _check_plan(g: TileGeometry) -> None:
    """Every (window, code) must be one the recorded plan has."""
    if g.scene_shape is None or g.strategy is None or g.edge is None or not len(g):
        return
    from .plan import plan_tiles

    stride = g.stride if g.strategy == "overlap" else None
    try:
        plan = plan_tiles(g.scene_shape, g.tile_size, g.strategy, edge=g.edge, stride=stride)
    except (InvalidParameterError, SceneTooSmallError) as exc:
        raise InvalidTilesError(
            f"the geometry the tiles record is not one tile() makes ({exc}): keep the fns_* "
            "attrs tile() wrote"
        ) from exc
    (h, w), T = g.scene_shape, g.tile_size

    def keys(rows, cols, codes):
        # windows lie in (-T, H) x (-T, W) (checked before): one int per (row, col, code)
        return ((rows + T) * (w + 2 * T) + (cols + T)) * 8 + codes.astype(np.int64)

    stray = ~np.isin(keys(g.rows, g.cols, g.codes), keys(plan.rows, plan.cols, plan.codes))
    if (k := _first(stray)) is not None:
        plan_text = (
            f"strategy={g.strategy!r}, edge={g.edge!r}, tile_size={T} on the {h} x {w} scene"
        )
        where = f"tile {k} has {_at(g, k)}, transform={int(g.codes[k])}"
        problem = f"{int(stray.sum())} tiles are not windows of the plan the tiles record"
        raise _mixed_in(
            f"{problem} ({plan_text}); {where}", "scene, crop or tiling", "each tiling on its own"
        )


def _check_centres(tiles, g: TileGeometry) -> None:
    """Window centres must be where the recorded scene transform puts them."""
    if g.transform is None or not len(g):
        return
    a, b, c, d, e, f = g.transform[:6]
    u = g.cols + g.tile_size / 2  # window centre, in pixel corners
    v = g.rows + g.tile_size / 2
    for dim, predicted, step in zip(g.dims, (d * u + e * v + f, a * u + b * v + c), (e, a)):
        name = schema.center_name(dim)
        if name not in tiles.coords:
            continue
        centres = np.asarray(tiles[name].values, dtype=float)
        bad = ~(np.abs(centres - predicted) <= grid_tolerance(step, predicted))
        if (k := _first(bad)) is not None:
            problem = f"{int(bad.sum())} tiles have a {name!r} that is not where the scene the "
            problem += f"tiles record (attr {schema.SCENE_TRANSFORM}) puts their window"
            window = float(predicted[k])
            where = f"tile {k} ({_at(g, k)}) is at {centres[k]!r}, its window at {window!r}"
            raise _mixed_in(
                f"{problem}: {where}", "scene or grid", "each scene's tiles on their own"
            )


def scene_coords(
    tiles: xr.DataArray | xr.Dataset, g: TileGeometry, shape: tuple[int, int]
) -> dict[Hashable, xr.Variable]:
    """Regular spatial coordinates of the scene: from the recorded scene
    transform, else fitted to the window centres (which must then lie on a
    regular grid: otherwise an :class:`InvalidTilesError` asks for ``like=``)."""
    coords = {}
    if g.transform is not None and g.transform[1] == 0 and g.transform[3] == 0:
        a, _, c, _, e, f = g.transform[:6]
        for dim, size, start, step in zip(g.dims, shape, (f, c), (e, a)):
            name = schema.center_name(dim)
            attrs = tiles[name].attrs if name in tiles.coords else {}
            values = start + step * (np.arange(size) + 0.5)
            coords[dim] = xr.Variable(dim, values, attrs=attrs)
        return coords
    for dim, origins, size in zip(g.dims, (g.rows, g.cols), shape):
        name = schema.center_name(dim)
        if name not in tiles.coords or len(np.unique(origins)) < 2:
            continue
        centres = np.asarray(tiles[name].values, float)
        pos = origins + (g.tile_size - 1) / 2
        slope, intercept = np.polyfit(pos, centres, 1)
        off = np.abs(centres - (intercept + slope * pos))
        if not float(off.max()) <= grid_tolerance(slope, centres):
            raise InvalidTilesError(
                f"the window centres {name!r} are not on a regular grid (up to "
                f"{float(off.max()):g} off, in {dim!r} units), so the scene's {dim!r} "
                "coordinates cannot be rebuilt from them: pass like= the scene the tiles were "
                "cut from"
            )
        coords[dim] = xr.Variable(dim, intercept + slope * np.arange(size), attrs=tiles[name].attrs)
    return coords


def check_on_grid(
    tiles: xr.DataArray | xr.Dataset,
    g: TileGeometry,
    like: xr.DataArray | xr.Dataset,
    like_dims: tuple[Hashable, Hashable],
) -> None:
    """Refuse ``like`` when the tiles' window centres are not where ``like``'s
    1-D spatial coordinates put their windows (another scene or grid)."""
    for dim, src, origins in zip(g.dims, like_dims, (g.rows, g.cols)):
        name = schema.center_name(dim)
        if name not in tiles.coords or src not in like.coords or not len(origins):
            continue
        coord = like.coords[src]
        if coord.ndim != 1 or coord.dtype.kind not in "iuf" or coord.size < 2:
            continue
        values = np.asarray(coord.values)
        predicted = extrapolate(origins + (g.tile_size - 1) / 2, values.astype(float))
        centres = np.asarray(tiles[name].values, dtype=float)
        step = float(np.median(np.abs(np.diff(values.astype(float)))))
        tol = grid_tolerance(step, values, values.dtype) + grid_tolerance(step, centres)
        if (k := _first(~(np.abs(centres - predicted) <= tol))) is not None:
            raise InvalidTilesError(
                f"like= is not the grid the tiles were cut from: tile {k}'s {name!r} is "
                f"{centres[k]!r} but its window ({_at(g, k)}) lies at {float(predicted[k])!r} "
                f"on like='s {src!r} coordinates. Pass the scene the tiles come from (or drop "
                "like= to use the grid the tiles record)"
            )


def scene_grid(
    tiles: xr.DataArray | xr.Dataset, g: TileGeometry, like: xr.DataArray | xr.Dataset | None
) -> tuple[tuple[int, int], dict[Hashable, xr.Variable], tuple[Hashable, Hashable] | None]:
    """The scene's ``(H, W)``, its spatial coordinates and ``like``'s spatial
    dims (``None`` without it): from ``like`` (the scene, or anything on its
    grid: checked to be the grid the tiles were cut from), else from what the
    tiles record (:func:`scene_coords`)."""
    if like is None:
        if g.scene_shape is None:
            raise InvalidParameterError(
                f"the tiles do not record their scene's shape (attr {schema.SCENE_SHAPE} on the "
                "tiles or their variables): pass like=scene"
            )
        return g.scene_shape, scene_coords(tiles, g, g.scene_shape), None
    if not isinstance(like, (xr.DataArray, xr.Dataset)):
        raise InvalidParameterError(
            f"like= takes the scene the tiles were cut from (an xarray DataArray or Dataset); "
            f"got {type(like).__name__}"
        )
    ly, lx = find_spatial_dims(like, g.dims if all(d in like.dims for d in g.dims) else None)
    shape = (like.sizes[ly], like.sizes[lx])
    if g.scene_shape is not None and g.scene_shape != shape:
        raise InvalidParameterError(
            f"like= is {shape[0]} x {shape[1]} but the tiles come from a "
            f"{g.scene_shape[0]} x {g.scene_shape[1]} scene; pass the scene they were cut from"
        )
    if len(g):
        _check_inside(g, shape, "grid of like=")
        check_on_grid(tiles, g, like, (ly, lx))
    coords = {
        d: xr.Variable(d, like[src].values, attrs=like[src].attrs)
        for d, src in zip(g.dims, (ly, lx))
        if src in like.coords
    }
    return shape, coords, (ly, lx)
