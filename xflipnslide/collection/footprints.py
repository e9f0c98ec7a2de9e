"""Tile footprints: a polygon per tile, from each scene's own transform."""

from __future__ import annotations

from typing import Any

import numpy as np
import xarray as xr

from .. import schema
from ..errors import InvalidParameterError, require
from ..schema import COL, GRID, ROW, TILE_DIM, TRANSFORM
from .format import CRS_NAME, CRS_WKT, SCENE, crs_name, scene_ids, scene_parts

__all__ = ["SUBSET", "footprints", "scene_crs"]

#: Column of the split subset (the ``fns_split`` attr ``split`` writes).
SUBSET = "subset"


def scene_crs(part, pyproj, cache: dict | None = None):
    """The pyproj CRS of one scene's tile set (from its CRS coordinate's WKT),
    or ``None``; ``cache`` maps WKT to CRS across calls."""
    name = crs_name(part)
    attrs = part[name].attrs if name is not None else {}
    wkt = attrs.get(CRS_WKT, attrs.get(CRS_NAME))
    if not wkt:
        return None
    cache = {} if cache is None else cache
    if wkt not in cache:
        cache[wkt] = pyproj.CRS.from_wkt(wkt)
    return cache[wkt]


def _target_crs(crs, found: dict, pyproj):
    if crs is not None:
        try:
            return pyproj.CRS.from_user_input(crs)
        except pyproj.exceptions.CRSError as exc:
            raise InvalidParameterError(f"crs={crs!r} is not a CRS pyproj reads ({exc})") from exc
    known = [c for c in found.values() if c is not None]
    if not known:
        return None
    if len(known) < len(found) or any(c != known[0] for c in known):
        shown = {k: (c.to_string() if c is not None else None) for k, c in found.items()}
        raise InvalidParameterError(
            f"the scenes are in different CRSs ({shown}): pass crs= the CRS the footprints "
            "should be drawn in (e.g. crs='EPSG:4326')"
        )
    return known[0]


def _ring(rows, cols, T: int, k: int) -> tuple[np.ndarray, np.ndarray]:
    """``(n, 4k)`` pixel-corner ``(col, row)`` of each window's outline, ``k``
    points per edge, clockwise from the top-left corner."""
    t = T * np.arange(k) / k
    du = np.concatenate([t, np.full(k, T), T - t, np.zeros(k)])
    dv = np.concatenate([np.zeros(k), t, np.full(k, T), T - t])
    return cols[:, None] + du, rows[:, None] + dv


def footprints(tiles: xr.DataArray | xr.Dataset, crs: Any = None, *, densify: int = 16):
    """Where every tile lies on the ground: a GeoDataFrame, one polygon per tile.

    Parameters
    ----------
    tiles
        A tile set of one scene or a collection (also reopened from Zarr).
    crs
        The CRS of the polygons (anything pyproj reads). By default the
        tiles' CRS; needed for a collection whose scenes differ in CRS.
    densify
        Points per window edge when polygons are reprojected, so that edges
        curved in ``crs`` are followed; polygons in a scene's own CRS are
        its window's four corners.

    Returns
    -------
    geopandas.GeoDataFrame
        Rows in tile order; columns ``scene`` (where the tiles record ids),
        ``tile`` (position in ``tiles``), ``row``, ``col``, ``transform``,
        ``grid`` (where recorded), ``subset`` (tiles from ``split``) and the
        polygons, from each scene's own affine transform (pixel corners),
        reprojected with pyproj. A scene without a recorded transform gives
        pixel outlines (x = column, y = row) with no CRS. Only coordinates
        and attrs are read.

    Raises
    ------
    InvalidParameterError
        For scenes in different CRSs without ``crs=``, or ``crs=`` on
        scenes without a CRS or transform.

    Examples
    --------
    >>> import xflipnslide
    >>> scene = xflipnslide.open_image(xflipnslide.sample_scene_path())
    >>> frame = xflipnslide.footprints(scene.fns.tile(256))  # 3 x 3 + 2 x 2 windows
    >>> len(frame), frame.crs.to_epsg(), list(frame.columns)
    (13, 32621, ['tile', 'row', 'col', 'transform', 'grid', 'geometry'])
    >>> west, south, east, north = frame.geometry.iloc[0].bounds
    >>> east - west, north - south  # 256 pixels of 30 m
    (7680.0, 7680.0)
    """
    gpd = require("geopandas", "vector", "footprints")
    pyproj = require("pyproj", "vector", "footprints")
    shapely = require("shapely", "vector", "footprints")
    densify = int(densify) if isinstance(densify, (int, np.integer)) else 0
    if densify < 1:
        raise InvalidParameterError("densify must be a positive integer (points per edge)")
    ids = scene_ids(tiles)
    parts = scene_parts(tiles)
    found = {i: scene_crs(p, pyproj) for i, _, p in parts}
    geoms = {i: schema.read_geometry(p, what="footprints") for i, _, p in parts}
    bare = [i for i, g in geoms.items() if g.transform is None]
    if bare and (len(parts) > 1 or crs is not None):
        raise InvalidParameterError(
            f"footprints: scenes {bare} record no transform (no regular x/y coordinates when "
            "tiled), so they have no place on the ground: tile scenes with coordinates"
        )
    target = _target_crs(crs, found, pyproj)
    columns: dict[str, list] = {k: [] for k in (TILE_DIM, ROW, COL, TRANSFORM)}
    rings = []
    for i, where, part in parts:
        g = geoms[i]
        a, b, c, d, e, f = g.transform[:6] if g.transform is not None else (1, 0, 0, 0, 1, 0)
        src = found[i]
        move = target is not None and src != target
        if move and src is None:
            raise InvalidParameterError(f"footprints: scene {i!r} has no CRS to reproject from")
        k = densify if move else 1
        u, v = _ring(g.rows.astype(float), g.cols.astype(float), g.tile_size, k)
        xs, ys = a * u + b * v + c, d * u + e * v + f
        if move:
            xs, ys = pyproj.Transformer.from_crs(src, target, always_xy=True).transform(xs, ys)
        rings.append(shapely.polygons(np.stack([np.asarray(xs), np.asarray(ys)], axis=-1)))
        for name, values in ((TILE_DIM, where), (ROW, g.rows), (COL, g.cols), (TRANSFORM, g.codes)):
            columns[name].append(values)
        if GRID in part.coords:
            columns.setdefault(GRID, []).append(np.asarray(part[GRID].values, object))
        if ids:
            columns.setdefault(SCENE, []).append(np.full(len(where), i, dtype=object))
    data = {k: np.concatenate(v) for k, v in columns.items()}
    order = np.argsort(data[TILE_DIM], kind="stable")
    frame = {k: data[k][order] for k in (SCENE, TILE_DIM, ROW, COL, TRANSFORM, GRID) if k in data}
    subset = schema.set_attrs(tiles).get(schema.SPLIT)
    if subset is not None:
        frame[SUBSET] = np.full(len(order), subset, dtype=object)
    polygons = np.concatenate(rings)[order]
    return gpd.GeoDataFrame(frame, geometry=polygons, crs=target)
