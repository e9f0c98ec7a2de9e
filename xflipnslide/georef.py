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

from .errors import InvalidParameterError, IrregularGridError

__all__ = [
    "axis_grid",
    "check_regular_grid",
    "coords_transform",
    "d4_affine",
    "extrapolate",
    "grid_tolerance",
    "portable_grid_mapping",
    "scene_transform",
    "tile_transform",
    "window_bounds",
    "window_footprints",
    "window_transform",
    "windows_intersecting",
]

#: rioxarray's name of the CRS coordinate.
_DEFAULT_GRID_MAPPING = "spatial_ref"


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


def grid_tolerance(step: float, values: np.ndarray, dtype=np.float64) -> float:
    """How far a coordinate may lie from its regular grid: a millionth of the
    pixel ``step``, plus the rounding of ``values`` stored as ``dtype``."""
    dtype = np.dtype(dtype)
    eps = np.finfo(dtype).eps if dtype.kind == "f" else np.finfo(np.float64).eps
    top = float(np.max(np.abs(values))) if np.size(values) else 0.0
    return 1e-6 * abs(float(step)) + 4 * float(eps) * top


def extrapolate(pos: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Coordinates at fractional pixel positions ``pos`` of a 1-D coordinate
    ``values``: interpolated inside, extended linearly from the first (last)
    step beyond either end."""
    out = np.interp(pos, np.arange(values.size), values)
    if values.size > 1:
        lo, hi = pos < 0, pos > values.size - 1
        out[lo] = values[0] + (values[1] - values[0]) * pos[lo]
        out[hi] = values[-1] + (values[-1] - values[-2]) * (pos[hi] - (values.size - 1))
    return out


def axis_grid(
    obj: xr.DataArray | xr.Dataset, dim: Hashable, *, what: str = "the scene"
) -> tuple[float, float] | None:
    """``(first, step)`` of ``obj``'s coordinate along ``dim`` (pixel centres),
    checked to be evenly spaced; ``None`` where there is nothing to check (no
    1-D numeric coordinate along ``dim``, or fewer than two pixels).

    Only the coordinate values are read, never pixel data.

    Raises
    ------
    IrregularGridError
        If any pixel lies further than :func:`grid_tolerance` from the line
        through the first and the last, or the step is zero or not finite.
    """
    if dim not in obj.coords:
        return None
    coord = obj.coords[dim]
    if coord.ndim != 1 or coord.dims[0] != dim or coord.dtype.kind not in "iuf":
        return None
    values = np.asarray(coord.values)
    if values.size < 2:
        return None
    v = values.astype(np.float64)
    step = (v[-1] - v[0]) / (v.size - 1)
    fix = (
        "tiles and label rasters need evenly spaced pixels: regrid or reproject onto a regular "
        "grid first (e.g. scene.rio.reproject(scene.rio.crs, resolution=...), or "
        f"scene.interp({dim}=np.linspace(first, last, n)))"
    )
    if not np.isfinite(v).all() or step == 0 or not np.isfinite(step):
        raise IrregularGridError(
            f"{what}: the {dim!r} coordinates are not a regular grid (they hold NaN, infinity "
            f"or a zero step): {fix}"
        )
    tol = grid_tolerance(step, v, values.dtype)
    off = np.abs(v - (v[0] + step * np.arange(v.size)))
    if float(off.max()) > tol:
        diffs = np.diff(v)
        usual = float(np.median(diffs))
        jumps = np.flatnonzero(np.abs(diffs - usual) > tol)
        i = int(jumps[0]) if jumps.size else int(np.argmax(off))
        where = (
            f"they step by {usual:g} but by {float(diffs[i]):g} between {dim}[{i}] and "
            f"{dim}[{i + 1}]"
            if jumps.size
            else f"{dim}[{i}] is {float(off[i]):g} off the line from the first to the last"
        )
        raise IrregularGridError(
            f"{what}: the {dim!r} coordinates are not evenly spaced ({where}): {fix}"
        )
    return float(v[0]), float(step)


def check_regular_grid(
    obj: xr.DataArray | xr.Dataset, dims: tuple[Hashable, Hashable], *, what: str = "the scene"
) -> None:
    """Refuse a scene whose 1-D spatial coordinates are not evenly spaced.

    A regular grid has one pixel size and one affine transform, which
    tiling, rasterising labels and georeferenced chips all rely on. Each
    coordinate may lie at most a millionth of a pixel (plus the rounding of
    its dtype) from the line through its first and last values. Spatial
    dims without a 1-D numeric coordinate (bare pixel grids, 2-D
    ``lat``/``lon``) have nothing to check. Reads only the coordinates.

    Parameters
    ----------
    obj
        The scene (DataArray or Dataset).
    dims
        ``(row_dim, column_dim)``.
    what
        The function asking, for the message.

    Raises
    ------
    IrregularGridError
        Naming the dim, where the spacing breaks, and how to regrid.

    Examples
    --------
    >>> import numpy as np, xarray as xr
    >>> x = np.r_[np.arange(5) * 30.0, 15000 + np.arange(5) * 30.0]
    >>> scene = xr.DataArray(np.zeros((4, 10)), coords={"y": np.arange(4.0), "x": x})
    >>> check_regular_grid(scene, ("y", "x"))  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    xflipnslide.errors.IrregularGridError: the scene: the 'x' coordinates are not evenly spaced ...
    """
    for dim in dims:
        axis_grid(obj, dim, what=what)


def coords_transform(
    obj: xr.DataArray | xr.Dataset, dims: tuple[Hashable, Hashable], *, what: str = "the scene"
) -> Affine | None:
    """The affine transform (pixel corners) of ``obj``'s regular 1-D spatial
    coordinates, or ``None`` unless both dims have them."""
    grids = [axis_grid(obj, d, what=what) for d in dims]
    if any(g is None for g in grids):
        return None
    (y0, sy), (x0, sx) = grids
    return Affine(sx, 0, x0 - sx / 2, 0, sy, y0 - sy / 2)


def scene_transform(
    obj: xr.DataArray | xr.Dataset, dims: tuple[Hashable, Hashable], *, what: str = "the scene"
) -> Affine:
    """The scene's affine transform, from its regular 1-D spatial coordinates
    (pixel centres), else from rioxarray; irregular coordinates are an
    :class:`~xflipnslide.errors.IrregularGridError`."""
    ydim, xdim = dims
    transform = coords_transform(obj, dims, what=what)
    if transform is not None:
        return transform
    try:
        import rioxarray  # noqa: F401

        return obj.rio.transform(recalc=True)
    except Exception as exc:
        raise InvalidParameterError(
            f"the scene has no regular 1-D coordinates along {ydim!r} and {xdim!r} (nor a "
            "transform rioxarray knows), so windows cannot be georeferenced: open it with "
            "xflipnslide.open_image or give it x/y coordinates"
        ) from exc


def portable_grid_mapping(
    obj: xr.DataArray | xr.Dataset,
    dims: tuple[Hashable, Hashable],
    source: xr.DataArray | xr.Dataset | None = None,
):
    """``obj`` with its CRS variable (rioxarray's ``spatial_ref``) as a
    coordinate, named in the ``grid_mapping`` *attr* of every data variable
    with both spatial ``dims``.

    xarray writes a variable whose ``grid_mapping`` is in its *encoding* as
    a data variable, not in the ``coordinates`` it lists, so a store written
    that way reopens (default ``open_zarr``/``open_dataset``) with the CRS
    as a data variable and ``rio.crs`` ``None``. As an attr, the reference
    is written as CF's ``grid_mapping`` and the CRS as a coordinate, so the
    store reopens with its CRS with or without ``decode_coords="all"``.

    ``source`` (default ``obj``, else the object of the same type ``obj``
    was made from) is where each variable's reference is read (its
    encoding, else its attrs); where it names no variable of ``obj``,
    ``spatial_ref`` is used if ``obj`` has it. Returns ``obj`` (a Dataset
    with the CRS variable made a coordinate); the variables' attrs and
    encoding are changed in place.
    """
    source = obj if source is None else source
    single = isinstance(obj, xr.DataArray)
    present = set(obj.coords) if single else set(obj.variables)
    refs = {}
    for name in [None] if single else list(obj.data_vars):
        var = obj if name is None else obj[name]
        if not all(d in var.dims for d in dims):
            continue
        src = source if single else source.get(name, var)
        ref = src.encoding.get("grid_mapping", src.attrs.get("grid_mapping"))
        if ref is None or ref not in present:
            ref = _DEFAULT_GRID_MAPPING if _DEFAULT_GRID_MAPPING in present else None
        refs[name] = ref
    if isinstance(obj, xr.Dataset):
        promote = [r for r in set(refs.values()) if r is not None and r in obj.data_vars]
        if promote:
            obj = obj.set_coords(promote)
    for name, ref in refs.items():
        if ref is None:
            continue
        var = obj.variable if name is None else obj[name].variable
        var.encoding.pop("grid_mapping", None)
        var.attrs["grid_mapping"] = ref
    return obj


def window_transform(scene: Affine, row: int, col: int) -> Affine:
    """The transform of the window whose top-left pixel is ``(row, col)``."""
    return scene @ Affine.translation(col, row)


def tile_transform(scene: Affine, row: int, col: int, tile_size: int, code: int) -> Affine:
    """The exact transform of a tile: its window's, composed with its D4 code."""
    return window_transform(scene, row, col) @ d4_affine(tile_size, code)


def window_footprints(scene: Affine, rows, cols, tile_size: int) -> np.ndarray:
    """``(n, 4, 2)`` ground ``(x, y)`` of each window's corners, in ring
    order: the footprint, a parallelogram (a rectangle on a north-up grid)."""
    rows, cols = np.asarray(rows, float), np.asarray(cols, float)
    T = tile_size
    corners = [(cols + dc, rows + dr) for dr, dc in ((0, 0), (0, T), (T, T), (T, 0))]
    return np.stack(
        [
            np.stack([scene.a * c + scene.b * r + scene.c, scene.d * c + scene.e * r + scene.f], -1)
            for c, r in corners
        ],
        axis=1,
    )


def window_bounds(scene: Affine, rows, cols, tile_size: int) -> np.ndarray:
    """``(n, 4)`` ground bounds ``(minx, miny, maxx, maxy)`` of each window."""
    corners = window_footprints(scene, rows, cols, tile_size)
    lo, hi = corners.min(axis=1), corners.max(axis=1)
    return np.concatenate([lo, hi], axis=1)


def windows_intersecting(obj, plan, dims, aoi, aoi_crs=None) -> np.ndarray:
    """Which windows of ``plan`` have a footprint (:func:`window_footprints`)
    that intersects ``aoi`` (a shapely geometry or a GeoJSON-like mapping,
    in ``aoi_crs``, default ``obj``'s CRS): a boolean array in plan order."""
    from .errors import require

    shapely = require("shapely", "vector", "aoi=")
    geom = aoi_geometry(aoi)
    if aoi_crs is not None:
        geom = _reproject(geom, aoi_crs, obj)
    corners = window_footprints(scene_transform(obj, dims), plan.rows, plan.cols, plan.tile_size)
    footprints = shapely.polygons(corners)
    return np.asarray(shapely.intersects(footprints, geom), dtype=bool)


def aoi_geometry(aoi):
    """``aoi`` as a shapely geometry, or an error that says what to pass."""
    if hasattr(aoi, "geom_type"):
        return aoi
    from .errors import require

    shapely = require("shapely", "vector", "aoi=")
    how = (
        "pass a shapely geometry (e.g. shapely.box(xmin, ymin, xmax, ymax)) or a GeoJSON-like "
        "mapping with 'type' and 'coordinates'"
    )
    if isinstance(aoi, (str, bytes)):
        raise InvalidParameterError(
            f"aoi must be a geometry, not text; got {aoi[:60]!r}: {how}; for WKT use "
            "aoi=shapely.from_wkt(text), for GeoJSON text aoi=json.loads(text)"
        )
    try:
        geometry = shapely.geometry.shape(aoi)
    except Exception as exc:  # KeyError, AttributeError, TypeError, GEOSException, ...
        raise InvalidParameterError(
            f"aoi is not a geometry shapely can read ({type(exc).__name__}: {exc}); got "
            f"{str(aoi)[:80]}: {how}"
        ) from exc
    if geometry.is_empty:
        raise InvalidParameterError(f"aoi is an empty geometry: {how}")
    return geometry


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
