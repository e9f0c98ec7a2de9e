"""The tile format: the one module that writes and reads it.

A set of tiles is a DataArray or Dataset with a ``tile`` dimension and, on
it, the coordinates ``row`` and ``col`` (window origin in scene pixels),
``transform`` (int8 D4 code), ``grid`` (``"outer"``, ``"inner"``,
``"regular"``) and, where known, ``valid_fraction`` and the window centres
``{dim}_center``. The scene geometry is in ``fns_*`` attrs, written on the
Dataset *and* on every tiled variable, so either survives a round trip
through Zarr or netCDF, ``to_dataset``/``to_dataarray`` and ``ds[name]``.

Every other module uses the names and functions here; none spells them as
literals. ``docs/tile-format.md`` documents the format as a public contract.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np
import xarray as xr

from .dims import find_spatial_dims
from .errors import InvalidParameterError, InvalidTilesError, SceneTooSmallError
from .georef import axis_grid, grid_tolerance

__all__ = [
    "ATTR_PREFIX",
    "COL",
    "COMPLETE",
    "EXPORT_MANIFEST",
    "GEOMETRY_ATTRS",
    "GRID",
    "IMAGE",
    "LABEL",
    "OBSERVED",
    "ROW",
    "STATS_COORDS",
    "TILE_DIM",
    "TRANSFORM",
    "VALID_FRACTION",
    "T_Xarray",
    "TileGeometry",
    "center_name",
    "check_on_grid",
    "geometry_attrs",
    "image_and_label",
    "portable_attrs",
    "read_geometry",
    "recorded_stats",
    "scene_coords",
    "stats_coords",
    "tile_coords",
    "tiled_variables",
    "window_centres",
    "write_geometry",
]

T_Xarray = TypeVar("T_Xarray", xr.DataArray, xr.Dataset)

#: The dimension that counts tiles.
TILE_DIM = "tile"
#: Coordinates on ``tile``.
ROW, COL, TRANSFORM, GRID = "row", "col", "transform", "grid"
VALID_FRACTION = "valid_fraction"
#: Default name of the image variable in a Dataset of tiles (the CLI writes it,
#: ``torch_loader``, ``tf_dataset`` and ``export_chips`` read it).
IMAGE = "image"
#: Default name of the label variable in a Dataset of tiles (``rasterize``
#: names its labels so; the feeds, exports and class statistics read it).
LABEL = "label"
#: Coordinates ``preprocess`` writes: the standardisation statistics.
STATS_COORDS = ("fns_mean", "fns_std")
#: Coordinate ``preprocess`` writes on the spatial dims: True where a pixel
#: was observed (not filled).
OBSERVED = "fns_observed"

TILE_SIZE, STRATEGY, EDGE, SCENE_SHAPE, ROW_DIM, COL_DIM, STRIDE, SCENE_TRANSFORM = (
    "fns_tile_size",
    "fns_strategy",
    "fns_edge",
    "fns_scene_shape",
    "fns_row_dim",
    "fns_col_dim",
    "fns_stride",
    "fns_scene_transform",
)
#: Attributes ``tile`` writes (plain ints, floats, strings and lists of them:
#: they survive Zarr, netCDF-4 and netCDF-3). ``fns_scene_transform`` (the
#: scene's affine ``[a, b, c, d, e, f]``, rasterio's order) only where the
#: scene has regular 1-D coordinates on both spatial dims.
GEOMETRY_ATTRS = (
    TILE_SIZE,
    STRATEGY,
    EDGE,
    SCENE_SHAPE,
    ROW_DIM,
    COL_DIM,
    STRIDE,
    SCENE_TRANSFORM,
)
#: Attributes ``split`` adds to each subset.
SPLIT, SPLIT_BLOCK_SIZE, SPLIT_SEED, SPLIT_DROPPED = (
    "fns_split",
    "fns_split_block_size",
    "fns_split_seed",
    "fns_split_dropped",
)
#: Attributes ``tile`` adds when windows are filtered out.
DROPPED_MIN_VALID, DROPPED_AOI = "fns_dropped_min_valid", "fns_dropped_aoi"

# CF attributes that make xarray's default decoding change values or dtype
# when a store is reopened (mask to NaN, scale to float).
_FILL_ATTRS = ("_FillValue", "missing_value", "fill_value")
_SCALE_ATTRS = {"scale_factor": 1.0, "add_offset": 0.0}


def center_name(dim: Hashable) -> str:
    """Name of the coordinate holding the window centres along ``dim``."""
    return f"{dim}_center"


def geometry_attrs(plan, dims: tuple[Hashable, Hashable], transform=None) -> dict[str, Any]:
    """The ``fns_*`` attrs describing ``plan`` (a :class:`~xflipnslide.TilePlan`)
    on a scene whose coordinates have the affine ``transform`` (or none)."""
    out = {
        TILE_SIZE: int(plan.tile_size),
        STRATEGY: str(plan.strategy),
        EDGE: str(plan.edge),
        SCENE_SHAPE: [int(n) for n in plan.shape],
        ROW_DIM: str(dims[0]),
        COL_DIM: str(dims[1]),
        STRIDE: int(plan.stride),
    }
    if transform is not None:
        out[SCENE_TRANSFORM] = [float(v) for v in list(transform)[:6]]
    return out


def tile_coords(plan) -> dict[Hashable, Any]:
    """The per-tile coordinates of ``plan``: ``row``, ``col``, ``transform``, ``grid``."""
    return {
        ROW: (TILE_DIM, np.asarray(plan.rows, np.int64)),
        COL: (TILE_DIM, np.asarray(plan.cols, np.int64)),
        TRANSFORM: (TILE_DIM, np.asarray(plan.codes, np.int8)),
        GRID: (TILE_DIM, np.asarray(plan.grids).astype(object)),
    }


def portable_attrs(attrs: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
    """``attrs`` without what would make a reopened store differ from what was written.

    ``_FillValue`` / ``missing_value`` / ``fill_value`` become ``nodata``
    (rioxarray's ``rio.nodata`` and :func:`~xflipnslide.preprocess` still find
    it, but xarray no longer masks it to NaN on reading); identity
    ``scale_factor`` / ``add_offset`` are dropped, others are kept as
    ``fns_scale_factor`` / ``fns_add_offset`` (the values stay the stored ones).
    """
    out = dict(attrs)
    for key in _FILL_ATTRS:
        if key in out:
            value = out.pop(key)
            out.setdefault("nodata", value)
    for key, identity in _SCALE_ATTRS.items():
        if key in out:
            value = out.pop(key)
            if not _is_identity(value, identity):
                out[f"fns_{key}"] = value
    return out


def _is_identity(value, identity: float) -> bool:
    try:
        return bool(np.all(np.asarray(value, dtype=float) == identity))
    except (TypeError, ValueError):
        return False


def write_geometry(
    obj: T_Xarray, plan, dims: tuple[Hashable, Hashable], transform=None
) -> T_Xarray:
    """``obj`` with the geometry attrs on itself and on every tiled variable."""
    attrs = geometry_attrs(plan, dims, transform)
    obj.attrs.update(attrs)
    if isinstance(obj, xr.Dataset):
        for name in tiled_variables(obj):
            obj[name].attrs.update(attrs)
    return obj


def tiled_variables(tiles: xr.Dataset) -> list[Hashable]:
    """Names of the data variables with a ``tile`` dim."""
    return [n for n, v in tiles.data_vars.items() if TILE_DIM in v.dims]


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
    if SCENE_SHAPE in tiles.attrs or not isinstance(tiles, xr.Dataset):
        return tiles.attrs
    found: Mapping[Hashable, Any] | None = None
    for name in tiled_variables(tiles):
        attrs = tiles[name].attrs
        if SCENE_SHAPE not in attrs:
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
    return {k: np.asarray(attrs[k]).tolist() if k in attrs else None for k in GEOMETRY_ATTRS}


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
    if not isinstance(tiles, (xr.DataArray, xr.Dataset)) or TILE_DIM not in tiles.dims:
        raise InvalidParameterError(
            f"{what} takes tiles: the output of tile() (a {TILE_DIM!r} dimension); got "
            f"{type(tiles).__name__} with dims {tuple(getattr(tiles, 'dims', ()))}"
        )
    missing = [c for c in (ROW, COL, TRANSFORM) if c not in tiles.coords]
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
    recorded = attrs.get(TILE_SIZE)
    if recorded is not None and int(recorded) != size:
        raise InvalidTilesError(
            f"the tiles are {size} x {size} px but were cut as {int(recorded)} px tiles "
            f"(attr {TILE_SIZE}): their pixels no longer match the windows. Give outputs at the "
            "tiles' own size (resample them first)"
        )
    shape = attrs.get(SCENE_SHAPE)
    stride, transform = attrs.get(STRIDE), attrs.get(SCENE_TRANSFORM)
    geometry = TileGeometry(
        dims=(ydim, xdim),
        tile_size=size,
        scene_shape=(int(shape[0]), int(shape[1])) if shape is not None else None,
        strategy=attrs.get(STRATEGY),
        edge=attrs.get(EDGE),
        rows=_integers(tiles, ROW),
        cols=_integers(tiles, COL),
        codes=_integers(tiles, TRANSFORM).astype(np.int8),
        stride=int(stride) if stride is not None else None,
        transform=tuple(float(v) for v in transform) if transform is not None else None,
    )
    _check_windows(tiles, geometry)
    _check_plan(geometry)
    _check_centres(tiles, geometry)
    return geometry


def _integers(tiles, name: str) -> np.ndarray:
    values = np.asarray(tiles[name].values)
    if values.ndim != 1 or not np.issubdtype(values.dtype, np.integer):
        raise InvalidTilesError(
            f"tile coordinate {name!r} must be 1-D integers along {TILE_DIM!r}; got dtype "
            f"{values.dtype} with {values.ndim} dims"
        )
    return values.astype(np.int64)


def _tile_dims(tiles, attrs, dims) -> tuple[Hashable, Hashable]:
    var = (
        tiles
        if isinstance(tiles, xr.DataArray)
        else next((tiles[n] for n in tiled_variables(tiles)), None)
    )
    if var is None:
        raise InvalidParameterError("the Dataset has no variable with a 'tile' dimension")
    if dims is None and attrs.get(ROW_DIM) is not None:
        recorded = (attrs[ROW_DIM], attrs.get(COL_DIM))
        if all(d in var.dims for d in recorded):
            dims = recorded
    return find_spatial_dims(var, dims)


def _check_windows(tiles, g: TileGeometry) -> None:
    bad = (g.codes < 0) | (g.codes > 7)
    if bad.any():
        raise InvalidTilesError(
            f"transform codes run from 0 to 7; tile {int(np.flatnonzero(bad)[0])} has "
            f"{int(g.codes[bad][0])}: keep the 'transform' coordinate tile() wrote"
        )
    T = g.tile_size
    if g.scene_shape is not None and len(g):
        h, w = g.scene_shape
        outside = (g.rows <= -T) | (g.rows >= h) | (g.cols <= -T) | (g.cols >= w)
        if outside.any():
            k = int(np.flatnonzero(outside)[0])
            raise InvalidTilesError(
                f"tile {k}'s window at row={int(g.rows[k])}, col={int(g.cols[k])} lies outside "
                f"the {h} x {w} scene the tiles record: keep the 'row'/'col' coordinates "
                "tile() wrote, or pass like= the scene they come from"
            )
    key = np.stack([g.rows, g.cols, g.codes.astype(np.int64)], axis=1)
    if len(np.unique(key, axis=0)) < len(key):
        raise InvalidTilesError(
            "some tiles repeat a window under the same transform code: they come from several "
            "scenes (or the same tiles were concatenated twice). Untile each scene's tiles "
            "on their own"
        )
    for dim, origins in zip(g.dims, (g.rows, g.cols)):
        name = center_name(dim)
        if name not in tiles.coords or not len(origins):
            continue
        centres = np.asarray(tiles[name].values, dtype=float)
        order = np.argsort(origins, kind="stable")
        o, c = origins[order], centres[order]
        same = o[1:] == o[:-1]
        spread = np.abs(c[1:] - c[:-1])[same]
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
    h, w = g.scene_shape
    T = g.tile_size

    def keys(rows, cols, codes):
        # windows lie in (-T, H) x (-T, W) (checked before): one int per (row, col, code)
        return ((rows + T) * (w + 2 * T) + (cols + T)) * 8 + codes.astype(np.int64)

    stray = ~np.isin(keys(g.rows, g.cols, g.codes), keys(plan.rows, plan.cols, plan.codes))
    if stray.any():
        k = int(np.flatnonzero(stray)[0])
        raise InvalidTilesError(
            f"{int(stray.sum())} tiles are not windows of the plan the tiles record "
            f"(strategy={g.strategy!r}, edge={g.edge!r}, tile_size={T} on the {h} x {w} "
            f"scene); tile {k} has row={int(g.rows[k])}, col={int(g.cols[k])}, "
            f"transform={int(g.codes[k])}. Tiles of another scene, crop or tiling were mixed "
            "in (e.g. by xr.concat): untile each tiling on its own"
        )


def _check_centres(tiles, g: TileGeometry) -> None:
    """Window centres must be where the recorded scene transform puts them."""
    if g.transform is None or not len(g):
        return
    a, b, c, d, e, f = g.transform[:6]
    u = g.cols + g.tile_size / 2  # window centre, in pixel corners
    v = g.rows + g.tile_size / 2
    for dim, predicted, step in zip(g.dims, (d * u + e * v + f, a * u + b * v + c), (e, a)):
        name = center_name(dim)
        if name not in tiles.coords:
            continue
        centres = np.asarray(tiles[name].values, dtype=float)
        off = np.abs(centres - predicted)
        tol = grid_tolerance(step, predicted)
        bad = ~(off <= tol)
        if bad.any():
            k = int(np.flatnonzero(bad)[0])
            raise InvalidTilesError(
                f"{int(bad.sum())} tiles have a {name!r} that is not where the scene the tiles "
                f"record (attr {SCENE_TRANSFORM}) puts their window: tile {k} (row="
                f"{int(g.rows[k])}, col={int(g.cols[k])}) is at {centres[k]!r}, its window "
                f"at {float(predicted[k])!r}. Tiles of another scene or grid were mixed in (e.g. "
                "by xr.concat): untile each scene's tiles on their own"
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
            name = center_name(dim)
            attrs = tiles[name].attrs if name in tiles.coords else {}
            values = start + step * (np.arange(size) + 0.5)
            coords[dim] = xr.Variable(dim, values, attrs=attrs)
        return coords
    for dim, origins, size in zip(g.dims, (g.rows, g.cols), shape):
        name = center_name(dim)
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
        name = center_name(dim)
        if name not in tiles.coords or src not in like.coords or not len(origins):
            continue
        coord = like.coords[src]
        if coord.ndim != 1 or coord.dtype.kind not in "iuf" or coord.size < 2:
            continue
        values = np.asarray(coord.values)
        predicted = _interp(origins + (g.tile_size - 1) / 2, values.astype(float))
        centres = np.asarray(tiles[name].values, dtype=float)
        step = float(np.median(np.abs(np.diff(values.astype(float)))))
        tol = grid_tolerance(step, values, values.dtype) + grid_tolerance(step, centres)
        bad = ~(np.abs(centres - predicted) <= tol)
        if bad.any():
            k = int(np.flatnonzero(bad)[0])
            raise InvalidTilesError(
                f"like= is not the grid the tiles were cut from: tile {k}'s {name!r} is "
                f"{centres[k]!r} but its window (row={int(g.rows[k])}, col={int(g.cols[k])}) "
                f"lies at {float(predicted[k])!r} on like='s {src!r} coordinates. Pass the "
                "scene the tiles come from (or drop like= to use the grid the tiles record)"
            )


def window_centres(
    obj: xr.DataArray | xr.Dataset, plan, dims: tuple[Hashable, Hashable]
) -> dict[Hashable, xr.Variable]:
    """``{dim}_center`` coordinates: each window's centre on ``obj``'s regular
    1-D numeric index coordinates (``first + step * (origin + (T - 1) / 2)``,
    so padded windows extrapolate the grid)."""
    out = {}
    for dim, origins in zip(dims, (plan.rows, plan.cols)):
        if dim not in obj.indexes or not np.issubdtype(obj[dim].dtype, np.number):
            continue
        pos = origins + (plan.tile_size - 1) / 2
        grid = axis_grid(obj, dim)
        if grid is not None:
            centre = grid[0] + grid[1] * pos
        else:  # a single pixel along dim
            centre = _interp(pos, np.asarray(obj[dim].values, dtype=float))
        out[center_name(dim)] = xr.Variable(TILE_DIM, centre, attrs=obj[dim].attrs)
    return out


def _interp(pos: np.ndarray, values: np.ndarray) -> np.ndarray:
    out = np.interp(pos, np.arange(values.size), values)
    if values.size > 1:
        lo, hi = pos < 0, pos > values.size - 1
        out[lo] = values[0] + (values[1] - values[0]) * pos[lo]
        out[hi] = values[-1] + (values[-1] - values[-2]) * (pos[hi] - (values.size - 1))
    return out


def image_and_label(
    tiles: xr.DataArray | xr.Dataset, image: Hashable = IMAGE, label: Hashable | None = None
) -> tuple[xr.DataArray, xr.DataArray | None]:
    """The image tiles and, when ``label`` is named, the label tiles, each with
    ``tile`` first: the variables every reader of tiles (feeds, exports) takes.

    A DataArray is the image itself; a Dataset gives its variables ``image``
    and ``label`` (an error names the variables it holds).
    """
    if isinstance(tiles, xr.Dataset):
        for name in (image, label):
            if name is not None and name not in tiles.data_vars:
                raise InvalidParameterError(
                    f"no variable {name!r} in the tiles; they hold {list(tiles.data_vars)}: "
                    "pass image=/label= to name them"
                )
        x, y = tiles[image], (tiles[label] if label is not None else None)
    else:
        if label is not None:
            raise InvalidParameterError(
                "label= needs a Dataset of image and label tiles, e.g. "
                "xr.Dataset({'image': image, 'label': label}).fns.tile(...)"
            )
        x, y = tiles, None
    x = x.transpose(TILE_DIM, ...)
    return x, (y.transpose(TILE_DIM, ...) if y is not None else None)


def stats_coords(variable: Hashable | None = None) -> tuple[str, str]:
    """The coordinates of the standardisation statistics (mean, std) that
    ``preprocess`` writes: ``fns_mean``/``fns_std`` (a DataArray), or
    ``{variable}_fns_mean``/``{variable}_fns_std`` (a Dataset's variable)."""
    if variable is None:
        return STATS_COORDS
    mean, std = (f"{variable}_{c}" for c in STATS_COORDS)
    return mean, std


def recorded_stats(obj: xr.DataArray | xr.Dataset) -> dict[str | None, tuple[str, str]]:
    """The statistics coordinates ``obj`` holds (mean and std both there), by
    owner: ``None`` for the unnamed ones, else the variable's name."""
    suffix = f"_{STATS_COORDS[0]}"
    named = [c for c in obj.coords if isinstance(c, str) and c.endswith(suffix)]
    owners = [None] + [c[: -len(suffix)] for c in named]
    return {o: stats_coords(o) for o in owners if all(c in obj.coords for c in stats_coords(o))}


#: The prefix of the package's names in attrs, tags and files.
ATTR_PREFIX = "fns_"
#: The completion record ``to_zarr`` writes last into a tile store's root attrs.
COMPLETE = "fns_complete"
#: The manifest ``export_chips`` writes last into an export folder.
EXPORT_MANIFEST = "fns_export.json"
