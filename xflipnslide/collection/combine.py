"""Building collections: tile many scenes, combine tile sets, untile one scene.

``tiling`` is imported inside the functions that tile and untile, so that
``tiling`` and the other modules can import this package at their top.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import xarray as xr

from .. import schema
from ..dims import find_spatial_dims
from ..errors import InvalidParameterError, InvalidTilesError, prefixed_warnings
from ..schema import TILE_DIM, T_Xarray
from .format import (
    SCENE,
    SCENES,
    Scene,
    check_single_scene,
    common_attrs,
    crs_name,
    load_scenes,
    read_record,
    scene_ids,
    scene_tiles,
    write_record,
)

__all__ = ["concat_tiles", "tile_collection", "untile_collection"]


def _layout(obj, skip: set, crs) -> dict[str, Any]:
    """What scenes must agree on, apart from the values of coordinates."""
    out: dict[str, Any] = {"type": type(obj).__name__}
    if isinstance(obj, xr.DataArray):
        out["name"] = obj.name
        variables = {"the data": obj}
    else:
        out["variables"] = list(obj.data_vars)
        variables = {f"variable {n!r}": obj[n] for n in obj.data_vars}
    for what, v in variables.items():
        out[f"dims of {what}"] = v.dims
        out[f"dtype of {what}"] = str(v.dtype)
        out[f"sizes of {what}"] = {d: n for d, n in v.sizes.items() if d not in skip}
    out["coordinates"] = sorted(str(n) for n in obj.coords if n not in (crs, SCENE))
    return out


def _check_agree(objs: list, ids: list[str], skip: Iterable[Hashable], error: type, what: str):
    """Refuse objects that differ in anything but geometry, naming the difference."""
    skip = set(skip)
    fix = (
        "the scenes of a collection must agree on everything but their geometry (cast with "
        ".astype, label bands alike with .assign_coords(band=[...]), preprocess them with the "
        "same statistics, or drop what only some have)"
    )
    first = objs[0]
    crs0 = crs_name(first)
    ref = _layout(first, skip, crs0)
    for obj, id in zip(objs[1:], ids[1:]):
        mine = _layout(obj, skip, crs_name(obj))
        for key, value in ref.items():
            if mine[key] != value:
                raise error(
                    f"{what}: scenes {ids[0]!r} and {id!r} differ in {key}: {value!r} vs "
                    f"{mine[key]!r}; {fix}"
                )
        names = first.coords if isinstance(first, xr.DataArray) else first.variables
        for name, var in ((n, first[n]) for n in names):
            if name in (crs0, SCENE) or skip & set(var.dims):
                continue
            if not var.variable.equals(obj[name].variable):
                shown = ""
                if name in first.indexes:  # labels (bands): small, in memory
                    shown = f": {var.values.tolist()!r} vs {obj[name].values.tolist()!r}"
                raise error(
                    f"{what}: scenes {ids[0]!r} and {id!r} differ in the values of {name!r}"
                    f"{shown}; {fix}"
                )


def _parts(sets: Sequence, ids) -> list[tuple[Any, list[Scene], bool]]:
    """Each input as ``(tiles, scenes, is_multi)`` with ids decided."""
    if isinstance(sets, (xr.DataArray, xr.Dataset, Mapping, str)) or not isinstance(sets, Sequence):
        raise InvalidParameterError(
            f"concat_tiles takes a list of tile sets; got {type(sets).__name__}"
        )
    if not sets:
        raise InvalidParameterError("concat_tiles got no tile set: pass a list of them")
    if ids is not None and (isinstance(ids, (str, Mapping)) or len(ids) != len(sets)):
        raise InvalidParameterError(
            f"ids= takes one entry per tile set ({len(sets)}): a string for a tile set of one "
            "scene, a mapping {old: new} (or None) for a collection"
        )
    out = []
    for i, tiles in enumerate(sets):
        if not isinstance(tiles, (xr.DataArray, xr.Dataset)) or TILE_DIM not in tiles.dims:
            raise InvalidParameterError(
                f"concat_tiles: item {i} is not a tile set (a DataArray or Dataset with a "
                f"{TILE_DIM!r} dimension, the output of tile()); got {type(tiles).__name__}"
            )
        want = ids[i] if ids is not None else None
        record = read_record(tiles)
        if record is not None and len(record["scenes"]) > 1:
            if want is not None and not isinstance(want, Mapping):
                raise InvalidParameterError(
                    f"ids[{i}]: tile set {i} is a collection of {len(record['scenes'])} scenes: "
                    "rename its scenes with a mapping {old: new}"
                )
            if SCENE not in tiles.coords:
                raise InvalidTilesError(
                    f"tile set {i} records several scenes but has no {SCENE!r} coordinate: keep "
                    "the coordinates concat_tiles() wrote"
                )
            scenes = load_scenes(record, tiles)
            rename = {str(k): str(v) for k, v in (want or {}).items()}
            unknown = sorted(set(rename) - {s.id for s in scenes})
            if unknown:
                raise InvalidParameterError(
                    f"ids[{i}] renames {unknown}, which tile set {i} does not hold; it holds "
                    f"{[s.id for s in scenes]}"
                )
            if rename:
                values = np.asarray(tiles[SCENE].values).astype(object)
                new = np.array([rename.get(v, v) for v in values], dtype=object)
                tiles = tiles.assign_coords({SCENE: (TILE_DIM, new)})
                for s in scenes:
                    s.id = rename.get(s.id, s.id)
            out.append((tiles, scenes, True))
            continue
        schema.read_geometry(tiles, what="concat_tiles")
        if isinstance(want, Mapping):
            want = dict(want).get(scene_ids(tiles)[0]) if record else None
        if want is None:
            own = scene_ids(tiles) or [tiles.attrs.get(SCENE)]
            want = own[0] if isinstance(own[0], str) else str(i)
        if not isinstance(want, str):
            raise InvalidParameterError(f"scene ids are strings; got {want!r} for tile set {i}")
        out.append((tiles, [Scene.of_tiles(want, tiles)], False))
    return out


def concat_tiles(
    tiles: Sequence[xr.DataArray | xr.Dataset],
    *,
    ids: Sequence[str | Mapping[str, str] | None] | None = None,
) -> xr.DataArray | xr.Dataset:
    """Combine tile sets made apart into one collection.

    Parameters
    ----------
    tiles
        Tile sets: outputs of :func:`xflipnslide.tile` (one scene each),
        :func:`tile_collection` or an earlier ``concat_tiles``, also reopened
        from Zarr or netCDF. Each scene is kept on its own grid.
    ids
        One entry per tile set: a string names the scene of a single-scene
        set; a mapping ``{old: new}`` renames scenes of a collection; ``None``
        keeps the id. Without it a single-scene set is named by the id it
        records (a collection of one), else its ``scene`` attr, else its
        position in the list (``"0"``, ``"1"``, ...).

    Returns
    -------
    DataArray or Dataset
        The tiles of every set, in order, along ``tile``, with the
        coordinate ``scene`` and the attr ``fns_scenes`` (see the module
        docs). Lazy input stays lazy: nothing is computed.

    Raises
    ------
    InvalidTilesError
        When the sets differ in anything but geometry (type, variables,
        dims, dtypes, tile size, band labels or other coordinates), naming
        the difference, or when two scenes have the same id (rename with
        ``ids=``).

    Examples
    --------
    >>> import numpy as np, xarray as xr, xflipnslide
    >>> from xflipnslide.collection import concat_tiles, scene_tiles
    >>> a = xr.DataArray(np.zeros((1, 128, 128), "float32"), dims=("band", "y", "x"))
    >>> b = xr.DataArray(np.ones((1, 192, 128), "float32"), dims=("band", "y", "x"))
    >>> tiles = concat_tiles([a.fns.tile(64), b.fns.tile(64)], ids=["a", "b"])
    >>> tiles.sizes["tile"], sorted(set(tiles.scene.values))
    (36, ['a', 'b'])
    >>> scene_tiles(tiles, "b").attrs["fns_scene_shape"]
    [192, 128]
    """
    parts = _parts(tiles, ids)
    scenes = [s for _, ss, _ in parts for s in ss]
    seen: dict[str, int] = {}
    for k, (_, ss, _) in enumerate(parts):
        for s in ss:
            if s.id in seen:
                raise InvalidTilesError(
                    f"concat_tiles: scene id {s.id!r} is in tile sets {seen[s.id]} and {k}: ids "
                    "must be unique; rename with ids=[...]"
                )
            seen[s.id] = k
    objs = [p for p, _, _ in parts]
    _check_agree(
        objs, [ss[0].id for _, ss, _ in parts], [TILE_DIM], InvalidTilesError, "concat_tiles"
    )
    if len(scenes) == 1:
        ((single, (scene,), _),) = parts
        n = single.sizes[TILE_DIM]
        out = single.assign_coords({SCENE: (TILE_DIM, np.full(n, scene.id, dtype=object))})
        return write_record(out, scenes, None)
    stripped = []
    for obj, ss, multi in parts:
        if not multi:
            obj = obj.drop_vars([n for n in (crs_name(obj), SCENE) if n in obj.coords])
            obj = obj.assign_coords(
                {SCENE: (TILE_DIM, np.full(obj.sizes[TILE_DIM], ss[0].id, object))}
            )
        stripped.append(obj)
    # Only what runs along ``tile`` is concatenated; the rest was checked equal
    # above (never compared again, never outer-joined).
    minimal = {"data_vars": "minimal"} if isinstance(stripped[0], xr.Dataset) else {}
    out = xr.concat(
        stripped,
        dim=TILE_DIM,
        **minimal,
        coords="minimal",
        compat="override",
        join="exact",
        combine_attrs="drop",
    )
    return write_record(out, scenes, common_attrs(scenes))


def _scene_items(scenes) -> list[tuple[str, Any]]:
    if isinstance(scenes, Mapping):
        bad = [k for k in scenes if not isinstance(k, str)]
        if bad:
            raise InvalidParameterError(
                f"scene ids are strings; got {bad[0]!r} ({type(bad[0]).__name__}): use "
                f"{{{str(bad[0])!r}: ...}}"
            )
        items = list(scenes.items())
    elif isinstance(scenes, Sequence) and not isinstance(scenes, (str, xr.DataArray)):
        items = [(str(i), s) for i, s in enumerate(scenes)]
    else:
        raise InvalidParameterError(
            "tile_collection takes scenes as a mapping {id: DataArray or Dataset} or a list; got "
            f"{type(scenes).__name__} (tile one scene with xflipnslide.tile)"
        )
    if not items:
        raise InvalidParameterError("tile_collection got no scene")
    for id, obj in items:
        if not isinstance(obj, (xr.DataArray, xr.Dataset)):
            raise InvalidParameterError(
                f"scene {id!r} is a {type(obj).__name__}; scenes are xarray DataArrays or Datasets"
            )
    return items


def tile_collection(
    scenes: Mapping[str, T_Xarray] | Sequence[T_Xarray],
    tile_size: int = 256,
    strategy: str = "flipnslide",
    *,
    dims: Sequence[Hashable] | None = None,
    **options: Any,
) -> T_Xarray:
    """Tile many scenes into one collection, each on its own grid.

    Parameters
    ----------
    scenes
        ``{id: scene}`` (ids are strings) or a list (ids ``"0"``, ``"1"``,
        ...): DataArrays or Datasets in any CRS, grid and shape. They must
        agree on everything but geometry: type, variables, dims, dtypes,
        band labels and other coordinates that do not run along the
        spatial dims.
    tile_size, strategy, dims, **options
        As for :func:`xflipnslide.tile`, the same for every scene
        (``edge``, ``stride``, ``min_valid``, ``aoi``, ``aoi_crs``,
        ``tile_chunks``).

    Returns
    -------
    DataArray or Dataset
        Each scene's :func:`~xflipnslide.tile` output, in order, along
        ``tile``, with the coordinate ``scene`` and the attr ``fns_scenes``
        (see :func:`concat_tiles`); never reprojected nor mosaicked, so
        ``row``/``col`` are in each scene's own pixels. One scene gives its
        tile set unchanged plus ``scene`` and ``fns_scenes``. Lazy scenes
        give lazy tiles: nothing is computed.

    Raises
    ------
    InvalidParameterError
        Before any tiling, when scenes differ in anything but geometry
        (naming the scenes and the difference), and for what ``tile``
        refuses.

    Warns
    -----
    DataDroppedWarning
        Each scene's warnings from ``tile``, prefixed with its id.

    Examples
    --------
    >>> import numpy as np, xarray as xr
    >>> from xflipnslide.collection import tile_collection, untile_collection
    >>> osaka = xr.DataArray(np.zeros((1, 128, 128), "float32"), dims=("band", "y", "x"))
    >>> tokyo = xr.DataArray(np.ones((1, 128, 192), "float32"), dims=("band", "y", "x"))
    >>> tiles = tile_collection({"osaka": osaka, "tokyo": tokyo}, 64)
    >>> tiles.sizes["tile"], "spatial_ref" in tiles.coords
    (36, False)
    >>> untile_collection(tiles, scene="tokyo").sizes
    Frozen({'band': 1, 'y': 128, 'x': 192})
    """
    from ..tiling import tile

    items = _scene_items(scenes)
    objs, ids = [o for _, o in items], [i for i, _ in items]
    spatial = {d for o in objs for d in find_spatial_dims(o, dims)}
    _check_agree(objs, ids, spatial, InvalidParameterError, "tile_collection")
    tiled = []
    for id, obj in items:
        with prefixed_warnings(f"scene {id!r}"):
            tiled.append(tile(obj, tile_size, strategy, dims=dims, **options))
    return concat_tiles(tiled, ids=ids)


def untile_collection(tiles: T_Xarray, *, scene: str | None = None, **options: Any) -> T_Xarray:
    """One scene of a collection back on its own grid and CRS:
    ``untile(scene_tiles(tiles, scene), **options)``, without the
    ``fns_scenes`` attr. ``scene`` may be left out for tiles of one scene.

    Raises
    ------
    InvalidTilesError
        Without ``scene=`` on tiles of several scenes, listing their ids.

    Examples
    --------
    >>> import numpy as np, xarray as xr
    >>> from xflipnslide import tile_collection, untile_collection
    >>> osaka = xr.DataArray(np.zeros((1, 128, 128), "float32"), dims=("band", "y", "x"))
    >>> tokyo = xr.DataArray(np.ones((1, 128, 192), "float32"), dims=("band", "y", "x"))
    >>> tiles = tile_collection({"osaka": osaka, "tokyo": tokyo}, 64)
    >>> back = untile_collection(tiles, scene="osaka")
    >>> back.sizes, float(back.max())
    (Frozen({'band': 1, 'y': 128, 'x': 128}), 0.0)
    """
    from ..tiling import untile

    if scene is None:
        check_single_scene(tiles, "untile")
        part = tiles
    else:
        part = scene_tiles(tiles, scene)
    out = untile(part, **options)
    out.attrs.pop(SCENES, None)
    for name in out.data_vars if isinstance(out, xr.Dataset) else []:
        out[name].attrs.pop(SCENES, None)
    return out
