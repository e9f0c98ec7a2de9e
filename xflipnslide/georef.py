"""Georeferencing of windows and tiles: affine transforms and footprints.

A scene's affine transform maps pixel corner coordinates ``(col, row)`` to
ground coordinates (rasterio's convention). A window's transform is the
scene's shifted to the window origin; a *tile's* transform is the window's
composed with the tile's D4 transform, so that every tile pixel maps to the
ground position of the source pixel it came from (a rotated or reflected
geotransform). Built on the ``affine`` package (rasterio's).
"""

from __future__ import annotations

from collections.abc import Hashable

import numpy as np
import xarray as xr
from affine import Affine

from .errors import InvalidParameterError

__all__ = [
    "d4_affine",
    "scene_transform",
    "tile_transform",
    "window_bounds",
    "window_transform",
    "windows_intersecting",
]


def d4_affine(tile_size: int, code: int) -> Affine:
    """The map from a tile's pixel corners ``(col, row)`` to its window's, for
    transform ``code``."""
    return _d4(tile_size)[int(code)]


def _d4(tile_size: int) -> tuple[Affine, ...]:
    """For each code, the map from tile pixel corners ``(j, r)`` to window pixel
    corners ``(v, u)`` (column, row) — the kernels' index maps with ``T - 1``
    read as ``T`` for corners."""
    T = float(tile_size)
    return (
        Affine(1, 0, 0, 0, 1, 0),  # identity: v = j, u = r
        Affine(0, 1, 0, -1, 0, T),  # rot270:  v = r, u = T - j
        Affine(-1, 0, T, 0, -1, T),  # rot180: v = T - j, u = T - r
        Affine(0, -1, T, 1, 0, 0),  # rot90:   v = T - r, u = j
        Affine(-1, 0, T, 0, 1, 0),  # flip_x:  v = T - j, u = r
        Affine(1, 0, 0, 0, -1, T),  # flip_y:  v = j, u = T - r
        Affine(0, -1, T, -1, 0, T),  # antitranspose: v = T - r, u = T - j
        Affine(0, 1, 0, 1, 0, 0),  # transpose: v = r, u = j
    )


def scene_transform(obj: xr.DataArray | xr.Dataset, dims: tuple[Hashable, Hashable]) -> Affine:
    """The scene's affine transform, from its regular 1-D spatial coordinates
    (pixel centres), else from rioxarray."""
    ydim, xdim = dims
    if ydim in obj.coords and xdim in obj.coords and obj.sizes[ydim] > 1 and obj.sizes[xdim] > 1:
        y = np.asarray(obj[ydim].values, float)
        x = np.asarray(obj[xdim].values, float)
        dy, dx = np.diff(y), np.diff(x)
        if np.allclose(dy, dy[0], rtol=1e-6, atol=0) and np.allclose(dx, dx[0], rtol=1e-6, atol=0):
            sy, sx = (y[-1] - y[0]) / (y.size - 1), (x[-1] - x[0]) / (x.size - 1)
            return Affine(sx, 0, x[0] - sx / 2, 0, sy, y[0] - sy / 2)
    try:
        import rioxarray  # noqa: F401

        return obj.rio.transform(recalc=True)
    except Exception as exc:
        raise InvalidParameterError(
            f"the scene has no regular 1-D coordinates along {ydim!r} and {xdim!r} (nor a "
            "transform rioxarray knows), so windows cannot be georeferenced: open it with "
            "xflipnslide.open_image or give it x/y coordinates"
        ) from exc


def window_transform(scene: Affine, row: int, col: int) -> Affine:
    """The transform of the window whose top-left pixel is ``(row, col)``."""
    return scene @ Affine.translation(col, row)


def tile_transform(scene: Affine, row: int, col: int, tile_size: int, code: int) -> Affine:
    """The exact transform of a tile: its window's, composed with its D4 code."""
    return window_transform(scene, row, col) @ d4_affine(tile_size, code)


def window_bounds(scene: Affine, rows, cols, tile_size: int) -> np.ndarray:
    """``(n, 4)`` ground bounds ``(minx, miny, maxx, maxy)`` of each window."""
    rows, cols = np.asarray(rows, float), np.asarray(cols, float)
    corners = []
    for dr, dc in ((0, 0), (0, tile_size), (tile_size, 0), (tile_size, tile_size)):
        c, r = cols + dc, rows + dr
        corners.append((scene.a * c + scene.b * r + scene.c, scene.d * c + scene.e * r + scene.f))
    xs = np.stack([c[0] for c in corners])
    ys = np.stack([c[1] for c in corners])
    return np.stack([xs.min(0), ys.min(0), xs.max(0), ys.max(0)], axis=1)


def windows_intersecting(obj, plan, dims, aoi, aoi_crs=None) -> np.ndarray:
    """Which windows of ``plan`` have a footprint that intersects ``aoi``
    (a shapely geometry or a GeoJSON-like mapping, in ``aoi_crs``, default
    ``obj``'s CRS): a boolean array in plan order."""
    from .errors import require

    shapely = require("shapely", "vector", "aoi=")
    geom = aoi if hasattr(aoi, "geom_type") else shapely.geometry.shape(aoi)
    if aoi_crs is not None:
        geom = _reproject(geom, aoi_crs, obj)
    bounds = window_bounds(scene_transform(obj, dims), plan.rows, plan.cols, plan.tile_size)
    boxes = shapely.box(bounds[:, 0], bounds[:, 1], bounds[:, 2], bounds[:, 3])
    return np.asarray(shapely.intersects(boxes, geom), dtype=bool)


def _reproject(geom, crs, obj):
    import pyproj
    import rioxarray  # noqa: F401  (registers .rio)
    import shapely

    target = obj.rio.crs
    if target is None:
        raise InvalidParameterError(
            "aoi_crs= needs the scene's CRS (rioxarray's spatial_ref): write it with "
            "scene.rio.write_crs(...), or give the aoi in the scene's coordinates"
        )
    t = pyproj.Transformer.from_crs(pyproj.CRS.from_user_input(crs), target, always_xy=True)
    return shapely.transform(geom, lambda xy: np.column_stack(t.transform(xy[:, 0], xy[:, 1])))
