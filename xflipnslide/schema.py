"""The tile format: the one module that writes and reads it.

A set of tiles is a DataArray or Dataset with a ``tile`` dimension and, on
it, the coordinates ``row`` and ``col`` (window origin in scene pixels),
``transform`` (int8 D4 code), ``grid`` (``"outer"``, ``"inner"``,
``"regular"``) and, where known, ``valid_fraction`` and the window centres
``{dim}_center``. The scene geometry is in ``fns_*`` attrs, written on the
Dataset *and* on every tiled variable, so either survives a round trip
through Zarr or netCDF, ``to_dataset``/``to_dataarray`` and ``ds[name]``.

Every other module uses the names and functions here; none spells them as
literals. The reading side (:func:`read_geometry`, :class:`TileGeometry`,
:func:`scene_grid`: the scene grid the tiles imply) is written in a private
module of its own and re-exported here: ``schema.NAME`` is the one way in.
``docs/tile-format.md`` documents the format as a public contract.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping
from typing import Any, TypeVar

import numpy as np
import xarray as xr

from ._schema_read import TileGeometry, check_on_grid, read_geometry, scene_coords, scene_grid
from .errors import InvalidParameterError
from .georef import axis_grid, extrapolate

__all__ = [
    "ADD_OFFSET",
    "ATTR_PREFIX",
    "COL",
    "COL_DIM",
    "COMPLETE",
    "DROPPED_AOI",
    "DROPPED_MIN_VALID",
    "EDGE",
    "EXPORT_MANIFEST",
    "GEOMETRY_ATTRS",
    "GRID",
    "IMAGE",
    "LABEL",
    "OBSERVED",
    "ROW",
    "ROW_DIM",
    "SCALE_FACTOR",
    "SCENE",
    "SCENES",
    "SCENE_SHAPE",
    "SCENE_TRANSFORM",
    "SPLIT",
    "SPLIT_BLOCK_SIZE",
    "SPLIT_BY",
    "SPLIT_CLASS_COUNTS",
    "SPLIT_DROPPED",
    "SPLIT_SCENE_TILES",
    "SPLIT_SEED",
    "STATS_COORDS",
    "STRATEGY",
    "STRIDE",
    "TILE_DIM",
    "TILE_SIZE",
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
    "scene_grid",
    "set_attrs",
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

#: Attributes ``portable_attrs`` keeps a CF scale and offset in (other than
#: identity), so that reopening a store does not apply them.
SCALE_FACTOR, ADD_OFFSET = "fns_scale_factor", "fns_add_offset"

# CF attributes that make xarray's default decoding change values or dtype
# when a store is reopened (mask to NaN, scale to float): CF name -> (our
# name, identity).
_FILL_ATTRS = ("_FillValue", "missing_value", "fill_value")
_SCALE_ATTRS = {"scale_factor": (SCALE_FACTOR, 1.0), "add_offset": (ADD_OFFSET, 0.0)}


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
    for key, (ours, identity) in _SCALE_ATTRS.items():
        if key in out:
            value = out.pop(key)
            if not _is_identity(value, identity):
                out[ours] = value
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


def set_attrs(tiles) -> Mapping[Hashable, Any]:
    """A tile set's attrs: a Dataset's own over its tiled variables' (a
    DataArray written to a store keeps them on its variable)."""
    if isinstance(tiles, xr.Dataset):
        merged: dict[Hashable, Any] = {}
        for name in reversed(tiled_variables(tiles)):
            merged.update(tiles[name].attrs)
        return {**merged, **tiles.attrs}
    return tiles.attrs if isinstance(tiles, xr.DataArray) else {}


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
            centre = extrapolate(pos, np.asarray(obj[dim].values, dtype=float))
        out[center_name(dim)] = xr.Variable(TILE_DIM, centre, attrs=obj[dim].attrs)
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
#: Attribute ``split`` adds to each subset when it knows the tiles' classes:
#: the subset's labelled pixels of each class id ``0..K-1`` (a list of ints).
SPLIT_CLASS_COUNTS = "fns_split_class_counts"
#: Attributes ``split`` adds to each subset of a collection: how the ground
#: was dealt (``"block"`` or ``"scene"``) and the subset's tiles from each
#: scene (a list of ints, in the order of the collection's scene ids).
SPLIT_BY, SPLIT_SCENE_TILES = "fns_split_by", "fns_split_scene_tiles"

#: Coordinate on ``tile`` of a collection: the id of each tile's scene.
SCENE = "scene"
#: Attr of a collection (a JSON string): every scene's geometry, CRS and own attrs.
SCENES = "fns_scenes"
