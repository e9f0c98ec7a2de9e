"""The collection format: the ``scene`` coordinate and the ``fns_scenes`` record.

A collection is the single-scene tile sets of its scenes concatenated along
``tile``, with the coordinate ``scene`` (each tile's scene id, a string) and
the attr ``fns_scenes``: a JSON string with every scene's geometry (the
``fns_*`` attrs its own tile set carries), its CRS (the ``spatial_ref``
coordinate's value and attrs, WKT included; each distinct CRS stored once)
and the attrs in which it differs from the other scenes. A collection has no
single CRS, so it holds no ``spatial_ref`` coordinate (``rio.crs`` is
``None``) and no single-scene ``fns_*`` geometry attrs; :func:`scene_tiles`
gives any one scene back as a plain tile set. A collection of one scene is
that scene's tile set unchanged, plus ``scene`` and ``fns_scenes``.
``docs/collections.md`` documents it.
"""

from __future__ import annotations

import json
from collections.abc import Hashable
from typing import Any

import numpy as np
import xarray as xr

from .. import schema
from ..errors import InvalidParameterError, InvalidTilesError
from ..schema import SCENE, SCENES, TILE_DIM, T_Xarray

__all__ = [
    "CRS_NAME",
    "CRS_WKT",
    "GRID_MAPPING",
    "SCENE",
    "SCENES",
    "Scene",
    "check_single_scene",
    "common_attrs",
    "crs_name",
    "is_collection",
    "load_scenes",
    "read_record",
    "scene_geometries",
    "scene_ids",
    "scene_parts",
    "scene_tiles",
    "write_record",
]

CRS_NAME = "spatial_ref"  # rioxarray's name of the CRS coordinate
GRID_MAPPING, CRS_WKT = "grid_mapping", "crs_wkt"
_SELF = "."  # key of the object's own attrs (a DataArray's data) in fns_scenes
_FORMAT = 1
#: CRS attrs that belong to one scene (rioxarray's cached transform), kept per scene.
_SCENE_CRS_ATTRS = ("GeoTransform",)


def read_record(tiles) -> dict | None:
    """The parsed ``fns_scenes`` attr (on the object, else on a tiled variable)."""
    text = tiles.attrs.get(SCENES)
    if text is None and isinstance(tiles, xr.Dataset):
        text = next(
            (tiles[n].attrs[SCENES] for n in _tiled(tiles) if SCENES in tiles[n].attrs), None
        )
    if text is None:
        return None
    try:
        record = json.loads(str(text))
    except ValueError:
        record = None
    if not (
        isinstance(record, dict)
        and isinstance(record.get("scenes"), dict)
        and isinstance(record.get("crs"), list)
    ):
        raise InvalidTilesError(
            f"the {SCENES!r} attr is not the JSON record collections write: keep the attrs "
            "concat_tiles() / tile_collection() wrote"
        )
    return record


def scene_ids(tiles: xr.DataArray | xr.Dataset) -> list[str]:
    """The scene ids a tile set records, in order (``[]`` for tiles of one
    scene that carry no id). Reads attrs only."""
    record = read_record(tiles)
    return list(record["scenes"]) if record is not None else []


def _positions(tiles, ids: list[str]) -> list[np.ndarray]:
    """The positions along ``tile`` of each scene of ``ids``, ascending: one
    sort of the ``scene`` coordinate, not a pass over every tile per scene."""
    _check_scene_coord(tiles)
    values = np.asarray(tiles[SCENE].values).astype(object)  # also StringDType
    order = np.argsort(values, kind="stable")
    ranked = values[order]
    return [order[np.searchsorted(ranked, i) : np.searchsorted(ranked, i, "right")] for i in ids]


def scene_parts(tiles: xr.DataArray | xr.Dataset) -> list[tuple[str | None, np.ndarray, Any]]:
    """``(id, positions along tile, that scene's own tile set)`` for each scene
    of ``tiles``: one part (id ``None`` when none is recorded) for tiles of
    one scene, one per scene for a collection. Reads coordinates, never pixels."""
    record = read_record(tiles)
    ids = list(record["scenes"]) if record is not None else []
    if len(ids) > 1:
        return [
            (i, where, _scene_part(tiles, record, i, where))
            for i, where in zip(ids, _positions(tiles, ids))
        ]
    return [(ids[0] if ids else None, np.arange(tiles.sizes[TILE_DIM]), tiles)]


def scene_geometries(tiles: xr.DataArray | xr.Dataset) -> list[tuple[str, np.ndarray, Any]]:
    """:func:`scene_parts` for readers of geometry only: each scene's part is
    its ``tile`` coordinates, geometry attrs and CRS over a pixel-free
    stand-in for its data (``schema.read_geometry`` reads these alone), so
    a collection of thousands of scenes costs no per-scene ``isel``."""
    record = read_record(tiles)
    if record is None or len(record["scenes"]) < 2:
        return [(str(id), where, part) for id, where, part in scene_parts(tiles)]
    var = tiles if isinstance(tiles, xr.DataArray) else tiles[_tiled(tiles)[0]]
    ydim, xdim = var.dims[-2:]
    size = (var.sizes[ydim], var.sizes[xdim])
    along = {n: np.asarray(c.values) for n, c in tiles.coords.items() if c.dims == (TILE_DIM,)}
    scenes = load_scenes(record, tiles)
    out = []
    for s, where in zip(scenes, _positions(tiles, [s.id for s in scenes])):
        stand_in = np.broadcast_to(np.zeros((), np.uint8), (len(where), *size))
        coords = {n: xr.Variable(TILE_DIM, v[where]) for n, v in along.items()}
        if s.crs is not None:
            coords[s.crs["name"]] = xr.Variable((), s.crs["value"], attrs=s.crs["attrs"])
        data = {"tiles": ((TILE_DIM, ydim, xdim), stand_in)}
        out.append((s.id, where, xr.Dataset(data, coords=coords, attrs=dict(s.geometry))))
    return out


def is_collection(tiles: xr.DataArray | xr.Dataset) -> bool:
    """True for tiles of two scenes or more (one scene, with or without an id, is not)."""
    return len(scene_ids(tiles)) > 1


def check_single_scene(tiles: xr.DataArray | xr.Dataset, what: str, how: str | None = None) -> None:
    """Refuse a collection of several scenes where one scene is needed
    (``how``: what to do instead, if not picking one scene).

    Raises
    ------
    InvalidTilesError
        Listing the scene ids and how to pick one.
    """
    ids = scene_ids(tiles)
    if len(ids) > 1:
        shown = ", ".join(map(repr, ids[:10])) + (
            f", ... ({len(ids)} in all)" if len(ids) > 10 else ""
        )
        how = how or (
            f"pick one with scene={ids[0]!r} (or xflipnslide.scene_tiles(tiles, {ids[0]!r}))"
        )
        raise InvalidTilesError(
            f"{what} works on one scene, but these tiles hold {len(ids)} scenes ({shown}): {how}"
        )


def _tiled(obj) -> list[Hashable]:
    return schema.tiled_variables(obj) if isinstance(obj, xr.Dataset) else []


def crs_name(obj) -> Hashable | None:
    """The CRS coordinate: named by a ``grid_mapping`` attr or encoding, else ``spatial_ref``."""
    for var in [obj] if isinstance(obj, xr.DataArray) else [obj[n] for n in obj.data_vars]:
        ref = var.attrs.get(GRID_MAPPING, var.encoding.get(GRID_MAPPING))
        if ref is not None and ref in obj.coords:
            return ref
    return CRS_NAME if CRS_NAME in obj.coords else None


def _jsonable(value, where: str):
    if isinstance(value, (str, bool, int, float)) or value is None:
        return value
    try:
        return np.asarray(value).tolist()
    except Exception as exc:  # pragma: no cover - attrs zarr/netCDF cannot store either
        raise InvalidParameterError(
            f"{where} is {type(value).__name__}, which a tile store cannot hold: drop it"
        ) from exc


def _same(a, b) -> bool:
    try:
        return bool(np.array_equal(np.asarray(a), np.asarray(b)))
    except Exception:
        return False


def _variables(obj) -> dict[str, xr.Variable]:
    """Every variable of ``obj`` by key: ``"."`` for the object itself."""
    out = {_SELF: obj.variable} if isinstance(obj, xr.DataArray) else {}
    names = obj.coords if isinstance(obj, xr.DataArray) else obj.variables
    out.update({str(n): obj[n].variable for n in names})
    return out


class Scene:
    """One scene of a collection: id, geometry, CRS and full attrs per variable."""

    def __init__(self, id: str, geometry: dict, crs: dict | None, attrs: dict[str, dict]):
        self.id, self.geometry, self.crs, self.attrs = id, geometry, crs, attrs

    @classmethod
    def of_tiles(cls, id: str, tiles) -> Scene:
        """The scene of a single-scene tile set."""
        src = tiles.attrs
        if schema.SCENE_SHAPE not in src:
            src = next((tiles[n].attrs for n in _tiled(tiles)), src)
        geometry = {k: _jsonable(src[k], k) for k in schema.GEOMETRY_ATTRS if k in src}
        name = crs_name(tiles)
        crs = None
        if name is not None:
            var = tiles[name].variable
            attrs = {k: _jsonable(v, f"{name}.attrs[{k!r}]") for k, v in var.attrs.items()}
            crs = {"name": str(name), "value": _jsonable(var.values, str(name)), "attrs": attrs}
        skip = {*schema.GEOMETRY_ATTRS, SCENES, GRID_MAPPING}
        attrs = {
            key: {k: v for k, v in var.attrs.items() if k not in skip}
            for key, var in _variables(tiles).items()
            if key not in (str(name), SCENE)
        }
        return cls(id, geometry, crs, attrs)


def common_attrs(scenes: list[Scene]) -> dict[str, dict]:
    """Per variable, the attrs every scene has with the same value."""
    out = {}
    for key, first in scenes[0].attrs.items():
        others = [s.attrs.get(key, {}) for s in scenes[1:]]
        out[key] = {
            k: v for k, v in first.items() if all(k in o and _same(o[k], v) for o in others)
        }
    return out


def _dump(scenes: list[Scene], common: dict[str, dict]) -> str:
    crs_table: list[dict] = []
    entries = {}
    for s in scenes:
        k, geo = None, {}
        if s.crs is not None:
            # one entry per CRS; the scene's own GeoTransform stays with the scene
            shared = {a: v for a, v in s.crs["attrs"].items() if a not in _SCENE_CRS_ATTRS}
            geo = {a: v for a, v in s.crs["attrs"].items() if a in _SCENE_CRS_ATTRS}
            shared = {**s.crs, "attrs": shared}
            if shared not in crs_table:
                crs_table.append(shared)
            k = crs_table.index(shared)
        own = {}
        for key, attrs in s.attrs.items():
            left = {
                a: _jsonable(v, f"attr {a!r}")
                for a, v in attrs.items()
                if a not in common.get(key, {})
            }
            if left:
                own[key] = left
        entries[s.id] = {"geometry": s.geometry, "crs": k, "crs_attrs": geo, "attrs": own}
    return json.dumps({"format": _FORMAT, "scenes": entries, "crs": crs_table})


def load_scenes(record: dict, tiles, only: str | None = None) -> list[Scene]:
    """The scenes of a collection (or the one named ``only``), each with its full attrs."""
    base = {k: dict(v.attrs) for k, v in _variables(tiles).items()}
    for attrs in base.values():
        attrs.pop(SCENES, None)
    scenes = []
    for id, entry in record["scenes"].items():
        if only is not None and id != only:
            continue
        k = entry.get("crs")
        crs = None
        if k is not None:
            shared = record["crs"][k]
            crs = {**shared, "attrs": {**shared["attrs"], **entry.get("crs_attrs", {})}}
        attrs = {key: {**a, **entry["attrs"].get(key, {})} for key, a in base.items()}
        scenes.append(Scene(id, entry["geometry"], crs, attrs))
    return scenes


def write_record(obj, scenes: list[Scene], common: dict[str, dict] | None):
    """``obj`` with its attrs: ``common`` per variable (``None``: leave them) and ``fns_scenes``."""
    text = _dump(scenes, common if common is not None else scenes[0].attrs)
    obj = obj.copy(deep=False)  # new variables: never change the caller's attrs
    if common is not None:
        obj.attrs = dict(common.get(_SELF, {}))
        for name in obj.coords if isinstance(obj, xr.DataArray) else obj.variables:
            if str(name) in common:
                obj[name].attrs = dict(common[str(name)])
    obj.attrs[SCENES] = text
    for name in _tiled(obj):
        obj[name].attrs[SCENES] = text
    return obj


# --- one scene back ---------------------------------------------------------


def scene_tiles(tiles: T_Xarray, scene: str) -> T_Xarray:
    """The tiles of one scene of a collection, as that scene's own tile set.

    Its geometry attrs and CRS coordinate (``spatial_ref``) are restored
    from ``fns_scenes``, and so are the attrs it did not share with the
    other scenes, so :func:`~xflipnslide.untile`, ``export_chips``,
    ``plot_footprints`` and ``split`` work on it unchanged. The result is a
    collection of one: ``scene`` and ``fns_scenes`` stay. Lazy tiles stay
    lazy (the ``scene`` coordinate is read).

    Raises
    ------
    InvalidParameterError
        For an id the tiles do not hold (the message lists them), or tiles
        of one scene without an id.

    Examples
    --------
    >>> import numpy as np, xarray as xr
    >>> from xflipnslide import scene_tiles, tile_collection
    >>> osaka = xr.DataArray(np.zeros((1, 128, 128), "float32"), dims=("band", "y", "x"))
    >>> tokyo = xr.DataArray(np.ones((1, 128, 192), "float32"), dims=("band", "y", "x"))
    >>> tiles = tile_collection({"osaka": osaka, "tokyo": tokyo}, 64)  # 13 + 23 tiles
    >>> part = scene_tiles(tiles, "tokyo")
    >>> part.sizes["tile"], sorted(set(part.scene.values)), float(part.mean())
    (23, ['tokyo'], 1.0)
    """
    record = read_record(tiles)
    if record is None:
        raise InvalidParameterError(
            f"these tiles are of one scene and record no scene id ({SCENES!r} attr): use them as "
            "they are"
        )
    ids = list(record["scenes"])
    if scene not in ids:
        raise InvalidParameterError(f"no scene {scene!r} in the tiles; they hold {ids}")
    if len(ids) == 1:
        return tiles
    (where,) = _positions(tiles, [scene])
    return _scene_part(tiles, record, scene, where)


def _check_scene_coord(tiles) -> None:
    if SCENE not in tiles.coords:
        raise InvalidTilesError(
            f"the tiles record several scenes but have no {SCENE!r} coordinate: keep the "
            "coordinates concat_tiles() wrote"
        )


def _scene_part(tiles: T_Xarray, record: dict, scene: str, where: np.ndarray) -> T_Xarray:
    """The tiles at ``where`` (those of ``scene``) as that scene's own tile set."""
    (s,) = load_scenes(record, tiles, only=scene)
    out = tiles.isel({TILE_DIM: where})
    out = write_record(out, [s], s.attrs)
    out.attrs.update(s.geometry)
    if s.crs is not None:
        name = s.crs["name"]
        crs = xr.Variable((), np.asarray(s.crs["value"]), attrs=s.crs["attrs"])
        out = out.assign_coords({name: crs})
        if isinstance(out, xr.DataArray):
            out.attrs[GRID_MAPPING] = name
    for var in _tiled(out):
        out[var].attrs.update(s.geometry)
        if s.crs is not None:
            out[var].attrs[GRID_MAPPING] = s.crs["name"]
    return out
