"""Figures (matplotlib, the ``viz`` extra, imported only when a figure is drawn).

Every function returns the :class:`matplotlib.figure.Figure` it drew on. Maps
of tiles (:func:`plot_footprints`) read only the tiles' coordinates and the
scene geometry their ``fns_*`` attrs record, never their pixels.
"""

from __future__ import annotations

import logging
from collections.abc import Hashable, Mapping, Sequence
from typing import Any, Literal

import numpy as np
import xarray as xr
from affine import Affine

from .dims import find_spatial_dims
from .errors import InvalidParameterError, require
from .georef import coords_transform, d4_affine
from .plan import TRANSFORMS, Edge, Strategy, apply_transform, invert_code, plan_tiles
from .schema import (
    DROPPED_AOI,
    DROPPED_MIN_VALID,
    GRID,
    IMAGE,
    SCENE_SHAPE,
    SCENE_TRANSFORM,
    SPLIT,
    SPLIT_DROPPED,
    TILE_DIM,
    TRANSFORM,
    VALID_FRACTION,
    TileGeometry,
    read_geometry,
    tiled_variables,
)

log = logging.getLogger(__name__)

__all__ = [
    "GRID_COLORS",
    "SUBSET_COLORS",
    "TRANSFORM_COLORS",
    "plot_footprints",
    "plot_rgb",
    "plot_samples",
    "plot_tiles",
    "rgb_stretch",
]

#: Band names tried for red, green and blue, in order: common names, then
#: Landsat 8/9 and Sentinel-2 band numbers (as files and STAC assets name them).
RGB_NAMES = (
    ("red", "r", "B4", "B04", "SR_B4", "b4"),
    ("green", "g", "B3", "B03", "SR_B3", "b3"),
    ("blue", "b", "B2", "B02", "SR_B2", "b2"),
)

#: One colour per transform code (0..7), for footprints and labels.
TRANSFORM_COLORS = (
    "#4477aa",
    "#ee6677",
    "#228833",
    "#ccbb44",
    "#66ccee",
    "#aa3377",
    "#bbbbbb",
    "#ee8866",
)
#: Colours of the subsets of a split, in the order given (then repeated).
SUBSET_COLORS = ("#4477aa", "#ccbb44", "#ee6677", "#228833", "#66ccee", "#aa3377", "#bbbbbb")
#: Colour of each window grid (the ``grid`` coordinate of tiles).
GRID_COLORS = {"outer": "#4477aa", "inner": "#ee6677", "regular": "#228833"}

#: Up to this many distinct values, integer tiles with no band dim are drawn
#: as classes (``plot_samples(categorical=None)``).
MAX_CLASSES = 32

#: What ``plot_footprints`` colours by: the code, the subset, or a per-tile
#: coordinate of the tile format.
_COLOR_BY = ("code", "subset", VALID_FRACTION, GRID)
_KINDS = ("outline", "density")


def pick_rgb(labels: Sequence[Any]) -> tuple[list[Any], str]:
    """Red, green and blue among band ``labels`` by name, else the first
    three; and a note saying which were used."""
    lowered = {str(v).lower(): v for v in labels}
    found = []
    for names in RGB_NAMES:
        hit = next((lowered[n.lower()] for n in names if n.lower() in lowered), None)
        found.append(hit)
    if all(v is not None for v in found):
        return found, f"bands {', '.join(map(str, found))} as red, green, blue"
    if len(labels) < 3:
        raise InvalidParameterError(
            f"plot_rgb needs 3 bands for red, green, blue; the data has {list(labels)}"
        )
    first = list(labels[:3])
    return first, (
        f"no bands named red/green/blue (or B4/B3/B2): showing the first three, "
        f"{', '.join(map(str, first))}, as red, green, blue; pass bands=[...] to choose"
    )


def _pyplot():
    require("matplotlib", "viz", "plotting")
    import matplotlib.pyplot as plt

    return plt


def _figure(ax, figsize=(6, 5)):
    """A new constrained-layout figure and axes (so legends and labels stay
    inside a saved figure), or ``ax``'s."""
    plt = _pyplot()
    if ax is None:
        _, ax = plt.subplots(figsize=figsize, layout="constrained")
    return ax.figure, ax


def _variable(obj, variable: Hashable | None, what: str) -> xr.DataArray:
    """The DataArray to draw: ``obj`` itself, or a Dataset's ``variable``
    (default ``"image"``, as the feeds and exports read it)."""
    if isinstance(obj, xr.Dataset):
        name = IMAGE if variable is None else variable
        if name not in obj.data_vars:
            raise InvalidParameterError(
                f"{what}: the Dataset has no variable {name!r}; it holds "
                f"{list(obj.data_vars)}: pass variable= to name the one to draw"
            )
        return obj[name]
    if isinstance(obj, xr.DataArray):
        if variable is not None:
            raise InvalidParameterError(
                f"{what}: variable={variable!r} picks a variable of a Dataset, and this is a "
                "DataArray: drop variable="
            )
        return obj
    raise InvalidParameterError(
        f"{what} draws an xarray DataArray or Dataset; got {type(obj).__name__}"
    )


def _select_bands(obj: xr.DataArray, band_dim: Hashable, bands) -> xr.DataArray:
    return (
        obj.sel({band_dim: list(bands)})
        if band_dim in obj.coords
        else obj.isel({band_dim: list(bands)})
    )


def _band_labels(obj: xr.DataArray, band_dim: Hashable) -> list[Any]:
    if band_dim in obj.coords:
        return list(obj[band_dim].values)
    return list(range(obj.sizes[band_dim]))


def _axis_labels(ax, obj, ydim, xdim) -> None:
    """Axis labels with units and CRS where known; readable tick labels."""
    crs = None
    try:
        import rioxarray  # noqa: F401

        crs = obj.rio.crs
    except Exception:  # no rioxarray, or no CRS
        crs = None
    units = ""
    if crs is not None:
        units = " (degrees" if crs.is_geographic else f" ({crs.linear_units or 'units'}"
        units += f", {crs.to_string()})"
    ax.set_xlabel(f"{xdim}{units}")
    ax.set_ylabel(f"{ydim}{units}")
    ax.ticklabel_format(style="plain", useOffset=False)
    ax.tick_params(axis="x", labelrotation=30)


def _legend(fig, ax, handles, *, own: bool, below: bool = False) -> None:
    """The legend beside (or below) the map in a figure of our own, inside
    the axes in the caller's."""
    if own:
        loc = "outside lower center" if below else "outside right upper"
        ncols = min(len(handles), 4) if below else 1
        fig.legend(handles=handles, loc=loc, ncols=ncols, fontsize="small", frameon=False)
    else:
        ax.legend(handles=handles, loc="upper right", fontsize="x-small", framealpha=0.8)


def rgb_stretch(values: np.ndarray, percentiles: tuple[float, float] = (2, 98)) -> np.ndarray:
    """Stretch ``(3, H, W)`` values to an ``(H, W, 3)`` image in [0, 1].

    Each band is scaled between its own ``percentiles`` (NaN ignored); NaN
    pixels come out transparent black (alpha 0) when an alpha channel is
    added by the caller, and 0 here.
    """
    values = np.asarray(values, dtype=np.float64)
    lo, hi = np.nanpercentile(values, percentiles, axis=(1, 2))
    span = np.where(hi > lo, hi - lo, 1.0)
    img = (values - lo[:, None, None]) / span[:, None, None]
    return np.nan_to_num(np.clip(img, 0, 1).transpose(1, 2, 0))


def _grey_stretch(values: np.ndarray, percentiles: tuple[float, float]) -> np.ndarray:
    values = np.asarray(values, dtype=np.float64)
    if not np.isfinite(values).any():
        return np.zeros(values.shape)
    lo, hi = np.nanpercentile(values, percentiles)
    return np.nan_to_num(np.clip((values - lo) / max(hi - lo, 1e-12), 0, 1))


def plot_rgb(
    obj: xr.DataArray | xr.Dataset,
    bands: Sequence[Any] | None = None,
    *,
    variable: Hashable | None = None,
    dims: Sequence[Hashable] | None = None,
    band_dim: Hashable = "band",
    percentiles: tuple[float, float] = (2, 98),
    ax=None,
    title: str | None = None,
):
    """Show a scene as an RGB composite with a per-band percentile stretch.

    Parameters
    ----------
    obj
        A ``(band, y, x)`` DataArray (other dims must be selected first), or
        a Dataset holding one (see ``variable``).
    bands
        The three ``band`` labels for red, green and blue; by default the
        bands named red/green/blue (or Landsat/Sentinel-2's B4/B3/B2,
        B04/B03/B02, SR_B4...), else the first three (logged, and said in
        the title).
    variable
        For a Dataset: the variable to draw (default ``"image"``, the name
        the feeds and exports read).
    dims
        ``(row_dim, column_dim)``, found by name by default.
    band_dim
        Name of the band dimension.
    percentiles
        Lower and upper percentile mapped to black and white, per band.
    ax
        A matplotlib Axes; a new figure is made if ``None``.
    title
        Axes title.

    Returns
    -------
    matplotlib.figure.Figure
        The figure drawn on (``fig.axes[0]`` the image); missing (NaN)
        pixels show in the axes' background.

    Examples
    --------
    >>> import xflipnslide
    >>> scene = xflipnslide.open_image(xflipnslide.sample_scene_path())
    >>> fig = scene.where(scene != 0).fns.plot_rgb()  # doctest: +SKIP
    """
    _pyplot()
    obj = _variable(obj, variable, "plot_rgb")
    ydim, xdim = find_spatial_dims(obj, dims)
    if band_dim not in obj.dims:
        raise InvalidParameterError(f"plot_rgb needs a {band_dim!r} dimension; got dims {obj.dims}")
    extra = set(obj.dims) - {band_dim, ydim, xdim}
    if extra:
        raise InvalidParameterError(
            f"plot_rgb draws one (band, y, x) scene; select or reduce {sorted(map(str, extra))} first"
        )
    labels = _band_labels(obj, band_dim)
    if bands is None:
        bands, note = pick_rgb(labels)
        log.info("plot_rgb: %s", note)
    if len(bands) != 3:
        raise InvalidParameterError(f"plot_rgb needs 3 bands for red, green, blue; got {bands!r}")
    sel = _select_bands(obj, band_dim, bands)
    values = np.asarray(sel.transpose(band_dim, ydim, xdim).values, dtype=np.float64)
    img = rgb_stretch(values, percentiles)
    alpha = (~np.isnan(values).any(axis=0)).astype(float)[..., None]
    fig, ax = _figure(ax)
    extent = _extent(obj, ydim, xdim)
    ax.imshow(np.concatenate([img, alpha], axis=-1), extent=extent, interpolation="nearest")
    ax.set_title(title or f"RGB: {', '.join(map(str, bands))}", fontsize="medium")
    _axis_labels(ax, obj, ydim, xdim)
    return fig


def _extent(obj, ydim, xdim) -> list[float] | None:
    """Image extent in the scene's coordinates (pixel edges), if it has them."""
    if ydim not in obj.coords or xdim not in obj.coords:
        return None
    y, x = obj[ydim].values.astype(float), obj[xdim].values.astype(float)
    dy = (y[-1] - y[0]) / max(len(y) - 1, 1)
    dx = (x[-1] - x[0]) / max(len(x) - 1, 1)
    return [x[0] - dx / 2, x[-1] + dx / 2, y[-1] + dy / 2, y[0] - dy / 2]


def _pixel_to_coords(obj, ydim, xdim):
    """Functions turning pixel edges (row, col) into the axes' coordinates."""
    extent = _extent(obj, ydim, xdim)
    if extent is None:
        return (lambda r: r - 0.5), (lambda c: c - 0.5)
    h, w = obj.sizes[ydim], obj.sizes[xdim]
    x0, x1, y1, y0 = extent  # left, right, bottom, top
    return (lambda r: y0 + (y1 - y0) * r / h), (lambda c: x0 + (x1 - x0) * c / w)


def plot_tiles(
    obj: xr.DataArray | xr.Dataset,
    tile_size: int = 256,
    strategy: Strategy = "flipnslide",
    *,
    variable: Hashable | None = None,
    edge: Edge = "crop",
    dims: Sequence[Hashable] | None = None,
    bands: Sequence[Any] | None = None,
    ax=None,
):
    """Draw the windows ``tile`` would cut from a scene, coloured by transform code.

    The scene as an RGB composite (see :func:`plot_rgb`), the tiled area
    (the crop, or the padded extent) as a dashed outline, and every window's
    footprint as a rectangle in the colour of its transform
    (:data:`TRANSFORM_COLORS`), inset a little per code so overlapping
    windows stay visible — the idea of the Flip-n-Slide paper's Figure 1.
    This plans the windows; to draw tiles already cut (a subset, a split,
    tiles kept by ``min_valid`` or ``aoi``) use :func:`plot_footprints`.

    Parameters
    ----------
    obj
        A ``(band, y, x)`` scene, or a Dataset holding one (see ``variable``).
    tile_size, strategy, edge, dims
        As for :func:`xflipnslide.tile`.
    variable
        For a Dataset: the variable to draw (default ``"image"``).
    bands
        RGB bands, as for :func:`plot_rgb`.
    ax
        A matplotlib Axes; a new figure is made if ``None``.

    Returns
    -------
    matplotlib.figure.Figure
    """
    _pyplot()  # the viz extra, with a clear error
    from matplotlib.patches import Patch, Rectangle

    own = ax is None
    obj = _variable(obj, variable, "plot_tiles")
    if TILE_DIM in obj.dims:
        raise InvalidParameterError(
            "plot_tiles draws the windows tile() would cut from a scene, and these are tiles: "
            "draw them with plot_footprints (tiles.fns.plot_footprints(scene=scene)), or "
            "their pixels with plot_samples"
        )
    ydim, xdim = find_spatial_dims(obj, dims)
    plan = plan_tiles((obj.sizes[ydim], obj.sizes[xdim]), tile_size, strategy, edge=edge)
    fig = plot_rgb(
        obj,
        bands,
        dims=(ydim, xdim),
        ax=ax,
        title=f"{strategy}: {len(plan)} tiles of {tile_size} px",
    )
    ax = fig.axes[0]
    to_y, to_x = _pixel_to_coords(obj, ydim, xdim)
    (oy, ox), (hc, wc) = plan.offset, plan.extent
    ax.add_patch(
        Rectangle(
            (to_x(ox), to_y(oy)),
            to_x(ox + wc) - to_x(ox),
            to_y(oy + hc) - to_y(oy),
            fill=False,
            ls="--",
            lw=1.5,
            ec="black",
            zorder=3,
        )
    )
    inset = max(tile_size // 64, 1)
    for r, c, code in zip(plan.rows.tolist(), plan.cols.tolist(), plan.codes.tolist()):
        d = inset * (code + 1)
        ax.add_patch(
            Rectangle(
                (to_x(c + d), to_y(r + d)),
                to_x(c + tile_size - d) - to_x(c + d),
                to_y(r + tile_size - d) - to_y(r + d),
                fill=False,
                lw=0.8,
                ec=TRANSFORM_COLORS[code],
                zorder=4,
            )
        )
    ax.set_xlim(min(ax.get_xlim()[0], to_x(ox)), max(ax.get_xlim()[1], to_x(ox + wc)))
    lo, hi = sorted((to_y(oy), to_y(oy + hc)))
    ylim = ax.get_ylim()
    ax.set_ylim(
        min(ylim[0], lo) if ylim[0] < ylim[1] else max(ylim[0], hi),
        max(ylim[1], hi) if ylim[0] < ylim[1] else min(ylim[1], lo),
    )
    used = sorted(set(plan.codes.tolist()))
    handles = [
        Patch(fill=False, ec=TRANSFORM_COLORS[k], label=f"{k} {TRANSFORMS[k]}") for k in used
    ] + [Patch(fill=False, ec="black", ls="--", label=f"tiled area ({edge})")]
    _legend(fig, ax, handles, own=own)
    return fig


# --- maps of tiles ---------------------------------------------------------


def _is_split(tiles) -> bool:
    """A ``{name: tiles}`` dict (a Dataset is a mapping too, of its variables)."""
    return isinstance(tiles, Mapping) and not isinstance(tiles, xr.Dataset)


def _tile_sets(tiles) -> list[tuple[str | None, xr.DataArray | xr.Dataset]]:
    """``[(name, tiles), ...]``: the subsets of a split's dict, or one set."""
    if _is_split(tiles):
        if not tiles:
            raise InvalidParameterError(
                "plot_footprints got an empty dict: pass tiles, or split()'s {name: tiles}"
            )
        return [(str(name), part) for name, part in tiles.items()]
    name = _set_attrs(tiles).get(SPLIT)
    return [(None if name is None else str(name), tiles)]


def _set_attrs(tiles) -> Mapping[Hashable, Any]:
    """A tile set's attrs; a Dataset's own over its tiled variables' (a
    DataArray written to a store keeps them on its variable)."""
    if isinstance(tiles, xr.Dataset):
        merged: dict[Hashable, Any] = {}
        for name in reversed(tiled_variables(tiles)):
            merged.update(tiles[name].attrs)
        return {**merged, **tiles.attrs}
    return tiles.attrs if isinstance(tiles, xr.DataArray) else {}


def _common_geometry(sets, geometries: list[TileGeometry]) -> TileGeometry:
    """The geometry every set shares (one scene, one tiling), or a clear error."""
    first = geometries[0]

    def key(g: TileGeometry):
        return (g.tile_size, g.scene_shape, g.transform, tuple(map(str, g.dims)))

    for (name, _), g in zip(sets[1:], geometries[1:]):
        if key(g) != key(first):
            raise InvalidParameterError(
                f"plot_footprints draws tiles of one scene, and {name!r} records another "
                f"(tile size {g.tile_size}, scene {g.scene_shape}, {SCENE_TRANSFORM} "
                f"{g.transform}) than {sets[0][0]!r} ({first.tile_size}, {first.scene_shape}, "
                f"{first.transform}): plot each tile set on its own"
            )
    return first


def _map_transform(g: TileGeometry) -> Affine:
    """Scene pixel corners ``(col, row)`` to the map's coordinates: the
    recorded scene transform, else pixels."""
    if g.transform is not None:
        return Affine(*g.transform[:6])
    return Affine.identity()


def _to_map(affine: Affine, cols, rows) -> tuple[np.ndarray, np.ndarray]:
    cols, rows = np.asarray(cols, float), np.asarray(rows, float)
    return (
        affine.a * cols + affine.b * rows + affine.c,
        affine.d * cols + affine.e * rows + affine.f,
    )


def _window_polygons(affine: Affine, rows, cols, tile_size: int) -> np.ndarray:
    """``(n, 4, 2)`` map coordinates of each window's corners."""
    dc = np.array([0, tile_size, tile_size, 0])
    dr = np.array([0, 0, tile_size, tile_size])
    x, y = _to_map(affine, np.asarray(cols)[:, None] + dc, np.asarray(rows)[:, None] + dr)
    return np.stack([x, y], axis=-1)


def _coverage(rows, cols, tile_size: int, shape: tuple[int, int] | None):
    """How many windows cover each cell between window edges: the edges
    along rows and columns (pixels) and the ``(len(ys) - 1, len(xs) - 1)``
    counts. Exact per pixel, and small however large the scene."""
    T = tile_size
    rows, cols = np.asarray(rows, np.int64), np.asarray(cols, np.int64)
    outer_r = [0, shape[0]] if shape is not None else []
    outer_c = [0, shape[1]] if shape is not None else []
    ys = np.unique(np.concatenate([rows, rows + T, outer_r]).astype(np.int64))
    xs = np.unique(np.concatenate([cols, cols + T, outer_c]).astype(np.int64))
    diff = np.zeros((ys.size, xs.size), np.int64)
    r0, r1 = np.searchsorted(ys, rows), np.searchsorted(ys, rows + T)
    c0, c1 = np.searchsorted(xs, cols), np.searchsorted(xs, cols + T)
    np.add.at(diff, (r0, c0), 1)
    np.add.at(diff, (r0, c1), -1)
    np.add.at(diff, (r1, c0), -1)
    np.add.at(diff, (r1, c1), 1)
    return ys, xs, diff.cumsum(0).cumsum(1)[:-1, :-1]


def _auto_style(n: int, linewidth, alpha) -> tuple[float, float]:
    """Thinner, fainter outlines as tiles get many, so thousands stay readable."""
    if linewidth is None:
        linewidth = float(np.clip(np.sqrt(100 / max(n, 1)), 0.35, 1.0))
    if alpha is None:
        alpha = float(np.clip(np.sqrt(400 / max(n, 1)), 0.6, 1.0))
    return float(linewidth), float(alpha)


def _draw_scene(ax, scene, variable, band_dim, bands, percentiles, g: TileGeometry, affine):
    """The scene under the tiles, at the place the tiles record for it."""
    da = _variable(scene, variable, "plot_footprints(scene=)")
    if TILE_DIM in da.dims:
        raise InvalidParameterError(
            "scene= takes the scene the tiles were cut from, and these are tiles"
        )
    dims = g.dims if all(d in da.dims for d in g.dims) else None
    ydim, xdim = find_spatial_dims(da, dims)
    shape = (int(da.sizes[ydim]), int(da.sizes[xdim]))
    if g.scene_shape is not None and shape != tuple(g.scene_shape):
        raise InvalidParameterError(
            f"scene= is {shape[0]} x {shape[1]} px but the tiles were cut from a "
            f"{g.scene_shape[0]} x {g.scene_shape[1]} scene (attr {SCENE_SHAPE}): pass the "
            "scene they come from"
        )
    own = coords_transform(da, (ydim, xdim), what="plot_footprints(scene=)")
    if own is not None and g.transform is not None:
        size = max(abs(own.a), abs(own.e), abs(own.b), abs(own.d))
        if not np.allclose(tuple(own)[:6], g.transform[:6], rtol=1e-9, atol=1e-6 * size):
            raise InvalidParameterError(
                f"scene= lies elsewhere than the scene the tiles record: its transform is "
                f"{list(tuple(own)[:6])}, the tiles' {list(g.transform[:6])} (attr "
                f"{SCENE_TRANSFORM}): pass the scene they come from"
            )
    extra = set(da.dims) - {band_dim, ydim, xdim}
    if extra:
        raise InvalidParameterError(
            f"scene= is drawn as one (band, y, x) image; select or reduce "
            f"{sorted(map(str, extra))} first"
        )
    if band_dim in da.dims and (bands is not None or da.sizes[band_dim] >= 3):
        if bands is None:
            bands, note = pick_rgb(_band_labels(da, band_dim))
            log.info("plot_footprints: %s", note)
        if len(bands) != 3:
            raise InvalidParameterError(f"bands= needs red, green, blue; got {bands!r}")
        values = np.asarray(
            _select_bands(da, band_dim, bands).transpose(band_dim, ydim, xdim).values, float
        )
        img = rgb_stretch(values, percentiles)
        valid = ~np.isnan(values).any(axis=0)
    else:
        if band_dim in da.dims:
            if da.sizes[band_dim] > 1:
                log.info(
                    "plot_footprints: scene= drawn from its first band (bands=[r, g, b] for RGB)"
                )
            da = da.isel({band_dim: 0})
        values = np.asarray(da.transpose(ydim, xdim).values, float)
        img = np.repeat(_grey_stretch(values, percentiles)[..., None], 3, axis=-1)
        valid = ~np.isnan(values)
    h, w = shape
    (left, right), (top, bottom) = _to_map(affine, [0, w], [0, h])
    rgba = np.concatenate([img, valid.astype(float)[..., None]], axis=-1)
    ax.imshow(
        rgba,
        extent=(left, right, bottom, top),
        origin="upper",
        interpolation="nearest",
        alpha=0.75,
        zorder=1,
    )


def plot_footprints(
    tiles: xr.DataArray | xr.Dataset | Mapping[str, xr.DataArray | xr.Dataset],
    *,
    scene: xr.DataArray | xr.Dataset | None = None,
    color_by: str | None = None,
    kind: Literal["outline", "density"] = "outline",
    variable: Hashable | None = None,
    bands: Sequence[Any] | None = None,
    band_dim: Hashable = "band",
    percentiles: tuple[float, float] = (2, 98),
    linewidth: float | None = None,
    alpha: float | None = None,
    ax=None,
    title: str | None = None,
):
    """Map a set of tiles (or a split's subsets) where they lie on their scene.

    Each tile's window is drawn as its footprint in the scene's coordinates,
    from the geometry the tiles record (``row``/``col`` and the scene
    transform in the ``fns_*`` attrs; pixels where the scene had no
    coordinates), over the scene as an RGB image when ``scene`` is given and
    the scene's outline (dashed) always. All footprints are one
    :class:`~matplotlib.collections.PolyCollection`, so thousands of tiles
    draw fast; the outlines get thinner and fainter as tiles get many.
    Only the tiles' coordinates and attrs are read (dask tiles stay lazy).

    Parameters
    ----------
    tiles
        Output of :func:`xflipnslide.tile` (any subset of it: tiles kept by
        ``min_valid`` or ``aoi``, a ``split`` subset, a reopened store), or
        :func:`xflipnslide.split`'s ``{name: tiles}`` (all of one scene).
    scene
        The scene the tiles were cut from, drawn underneath (RGB with the
        bands named red/green/blue, see :func:`plot_rgb`; grey for a single
        band). It must have the recorded shape and transform.
    color_by
        ``"code"`` (the transform, :data:`TRANSFORM_COLORS`; default for one
        set), ``"subset"`` (default for a dict, :data:`SUBSET_COLORS`; one
        set is named by its ``fns_split`` attr), ``"grid"`` (outer, inner,
        regular: :data:`GRID_COLORS`) or ``"valid_fraction"`` (a colour map
        from 0 to 1, with a colour bar). Subsets fill their footprints
        faintly, so ground in no subset shows; valid fractions fill them
        half opaque, the emptiest tiles on top.
    kind
        ``"outline"`` (the footprints) or ``"density"``: how many tiles cover
        each pixel (a discrete colour map, 0 left transparent), exact per
        pixel; ``color_by`` does not apply.
    variable
        For a Dataset ``scene``: the variable to draw (default ``"image"``).
    bands, band_dim, percentiles
        The scene's RGB bands and stretch, as for :func:`plot_rgb`.
    linewidth, alpha
        Outline width (points) and opacity; by default 1 point and opaque
        for a hundred tiles, thinner and fainter for more (down to 0.35
        points and 0.6).
    ax
        A matplotlib Axes; a new figure is made if ``None``.
    title
        Axes title; by default the number of tiles and their size.

    Returns
    -------
    matplotlib.figure.Figure
        ``fig.axes[0]`` holds the map: ``ax.collections[0]`` the footprints
        (one polygon per tile, in tile order, subsets in dict order; by
        descending ``valid_fraction`` for that colouring) or the density
        mesh.

    Raises
    ------
    InvalidParameterError
        For tiles without their coordinates, subsets of different scenes, a
        ``scene`` of another shape or place, or an unknown option.
    InvalidTilesError
        For tiles whose coordinates contradict their recorded geometry (see
        :func:`xflipnslide.schema.read_geometry`).

    Examples
    --------
    >>> import xflipnslide
    >>> scene = xflipnslide.open_image(xflipnslide.sample_scene_path()).load()
    >>> parts = scene.fns.tile(32).fns.split(seed=0)  # doctest: +SKIP
    >>> fig = xflipnslide.plot.plot_footprints(parts, scene=scene)  # doctest: +SKIP
    >>> fig = parts["val"].fns.plot_footprints(kind="density")  # doctest: +SKIP
    """
    plt = _pyplot()
    from matplotlib.collections import PolyCollection
    from matplotlib.colors import BoundaryNorm, Normalize, to_rgba
    from matplotlib.patches import Patch, Polygon

    if kind not in _KINDS:
        raise InvalidParameterError(f"kind must be one of {_KINDS}; got {kind!r}")
    sets = _tile_sets(tiles)
    if color_by is None:
        color_by = "subset" if _is_split(tiles) else "code"
    elif kind == "density":
        raise InvalidParameterError(
            "kind='density' colours by the number of tiles over each pixel: drop color_by="
        )
    if color_by not in _COLOR_BY:
        raise InvalidParameterError(f"color_by must be one of {_COLOR_BY}; got {color_by!r}")
    geometries = [read_geometry(part, what="plot_footprints") for _, part in sets]
    g = _common_geometry(sets, geometries)
    T = g.tile_size
    affine = _map_transform(g)
    rows = np.concatenate([q.rows for q in geometries])
    cols = np.concatenate([q.cols for q in geometries])
    n = rows.size

    own = ax is None
    fig, ax = _figure(ax, figsize=(7, 5.5))
    if scene is not None:
        _draw_scene(ax, scene, variable, band_dim, bands, percentiles, g, affine)
    xs_all, ys_all = [], []
    handles, outline = [], None
    if g.scene_shape is not None:
        h, w = g.scene_shape
        ring = np.stack(_to_map(affine, [0, w, w, 0], [0, 0, h, h]), axis=-1)
        ax.add_patch(Polygon(ring, closed=True, fill=False, ls="--", lw=1.2, ec="black", zorder=5))
        outline = Patch(fill=False, ec="black", ls="--", label=f"scene ({h} x {w} px)")
        xs_all.append(ring[:, 0])
        ys_all.append(ring[:, 1])

    colorbar = None
    if kind == "density":
        ey, ex, counts = _coverage(rows, cols, T, g.scene_shape)
        mx, my = _to_map(affine, ex[None, :], ey[:, None])
        top = max(int(counts.max()) if counts.size else 0, 1)
        cmap = plt.get_cmap("viridis", top)
        norm = BoundaryNorm(np.arange(0.5, top + 1), cmap.N)
        mesh = ax.pcolormesh(
            mx, my, np.ma.masked_equal(counts, 0), cmap=cmap, norm=norm, alpha=0.8, zorder=3
        )
        colorbar = fig.colorbar(mesh, ax=ax, shrink=0.8, label="tiles covering the pixel")
        if top <= 16:
            colorbar.set_ticks(range(1, top + 1))
        xs_all.append(mx.ravel())
        ys_all.append(my.ravel())
        default_title = f"{n} tiles of {T} px: how many cover each pixel"
    else:
        lw, a = _auto_style(n, linewidth, alpha)
        # faint faces show which ground is covered: up to eight layers deep
        # they add up to about half opaque (a third over a scene)
        fill = (0.05 if scene is not None else 0.08) if color_by == "subset" else 0.0
        order = np.arange(n)
        if color_by == "code":
            codes = np.concatenate([q.codes for q in geometries]).astype(np.int64)
            palette = np.array([to_rgba(c) for c in TRANSFORM_COLORS])
            base = palette[codes]
            for k in sorted(set(codes.tolist())):
                count = int((codes == k).sum())
                handles.append(
                    Patch(
                        fill=False, ec=TRANSFORM_COLORS[k], label=f"{k} {TRANSFORMS[k]} ({count})"
                    )
                )
        elif color_by == "subset":
            parts = []
            for i, ((name, _), q) in enumerate(zip(sets, geometries)):
                colour = SUBSET_COLORS[i % len(SUBSET_COLORS)]
                parts.append(np.tile(to_rgba(colour), (len(q), 1)))
                handles.append(
                    Patch(
                        fc=to_rgba(colour, 0.3),
                        ec=colour,
                        label=f"{name if name is not None else 'tiles'} ({len(q)})",
                    )
                )
            base = np.concatenate(parts) if parts else np.zeros((0, 4))
        elif color_by == GRID:
            grids = _tile_values(sets, GRID, "the grid each window is on").astype(str)
            base = np.array([to_rgba(GRID_COLORS.get(v, "#777777")) for v in grids]).reshape(-1, 4)
            for name in sorted(set(grids.tolist()), key=list(GRID_COLORS).index):
                count = int((grids == name).sum())
                handles.append(Patch(fill=False, ec=GRID_COLORS[name], label=f"{name} ({count})"))
        else:
            values = _tile_values(sets, VALID_FRACTION, "the share of observed pixels")
            values = values.astype(float)
            cmap, norm = plt.get_cmap("viridis"), Normalize(0.0, 1.0)
            base = cmap(norm(values)).reshape(-1, 4)
            order = np.argsort(-values, kind="stable")  # the emptiest tiles on top
            fill = 0.5
        edge = base.copy()
        edge[:, 3] = a
        face = base.copy()
        face[:, 3] = fill
        polygons = _window_polygons(affine, rows, cols, T)
        collection = PolyCollection(
            polygons[order],
            closed=True,
            facecolors=face[order],
            edgecolors=edge[order],
            linewidths=lw,
            zorder=4,
        )
        ax.add_collection(collection)
        if color_by == VALID_FRACTION:
            from matplotlib.cm import ScalarMappable

            colorbar = fig.colorbar(
                ScalarMappable(norm=norm, cmap=cmap), ax=ax, shrink=0.8, label=VALID_FRACTION
            )
        xs_all.append(polygons[..., 0].ravel())
        ys_all.append(polygons[..., 1].ravel())
        default_title = f"{n} tiles of {T} px" + (
            f", by {color_by}" if color_by != "subset" else ""
        )

    _set_limits(ax, xs_all, ys_all, affine)
    ax.set_aspect("equal")
    ydim, xdim = g.dims
    if g.transform is not None:
        _axis_labels(ax, sets[0][1], ydim, xdim)
    else:
        ax.set_xlabel(f"{xdim} (pixels)")
        ax.set_ylabel(f"{ydim} (pixels)")
        ax.tick_params(axis="x", labelrotation=30)
    ax.set_title(title or default_title + _dropped_note(_set_attrs(sets[0][1])), fontsize="medium")
    handles += [outline] if outline is not None else []
    if handles:
        _legend(fig, ax, handles, own=own, below=colorbar is not None)
    return fig


def _dropped_note(attrs: Mapping[Hashable, Any]) -> str:
    """What the tiles' attrs say was dropped on the way (min_valid, aoi, split)."""
    keys = {"min_valid": DROPPED_MIN_VALID, "aoi": DROPPED_AOI, "split": SPLIT_DROPPED}
    counts = {
        what: int(np.asarray(attrs[key]).item()) for what, key in keys.items() if key in attrs
    }
    said = [f"{what} {n}" for what, n in counts.items() if n]
    return f"\n(dropped by {', '.join(said)})" if said else ""


def _tile_values(sets, name: Hashable, meaning: str) -> np.ndarray:
    """A per-tile coordinate over all sets, or an error naming what is missing."""
    out = []
    for label, part in sets:
        if name not in part.coords:
            raise InvalidParameterError(
                f"color_by={name!r} needs the {name!r} coordinate ({meaning}) that tile() "
                f"writes, and {'the tiles' if label is None else repr(label)} have none: "
                "keep it when selecting, or pick another color_by"
            )
        out.append(np.asarray(part[name].values).ravel())
    return np.concatenate(out) if out else np.zeros(0)


def _set_limits(ax, xs, ys, affine: Affine) -> None:
    """Limits around everything drawn, rows running down the page."""
    if not xs:
        return
    x, y = np.concatenate(xs), np.concatenate(ys)
    if not x.size:
        return
    pad_x = 0.02 * max(float(x.max() - x.min()), 1.0)
    pad_y = 0.02 * max(float(y.max() - y.min()), 1.0)
    ax.set_xlim(float(x.min()) - pad_x, float(x.max()) + pad_x)
    lo, hi = float(y.min()) - pad_y, float(y.max()) + pad_y
    ax.set_ylim((hi, lo) if affine.e > 0 else (lo, hi))


# --- tiles themselves -------------------------------------------------------


def _class_style(classes: np.ndarray, attrs: Mapping[Hashable, Any]):
    """Colour map, norm and legend labels for the class values ``classes``
    (sorted); names from CF ``flag_values`` / ``flag_meanings`` where given."""
    plt = _pyplot()
    from matplotlib.colors import BoundaryNorm, ListedColormap

    k = len(classes)
    if k <= 10:
        colours = plt.get_cmap("tab10").colors[:k]
    elif k <= 20:
        colours = plt.get_cmap("tab20").colors[:k]
    else:
        colours = plt.get_cmap("turbo")(np.linspace(0, 1, k))
    values = classes.astype(np.float64)
    if k > 1:
        mids = (values[1:] + values[:-1]) / 2
        bounds = np.concatenate([[values[0] - 0.5], mids, [values[-1] + 0.5]])
    else:
        bounds = np.array([values[0] - 0.5, values[0] + 0.5])
    names = {}
    flags, meanings = attrs.get("flag_values"), attrs.get("flag_meanings")
    if flags is not None and isinstance(meanings, str):
        names = dict(zip(np.atleast_1d(flags).tolist(), meanings.split()))
    labels = [f"{v} {names[v]}" if v in names else str(v) for v in (c.item() for c in classes)]
    return ListedColormap(colours), BoundaryNorm(bounds, k), labels, colours


def plot_samples(
    tiles: xr.DataArray | xr.Dataset,
    n: int = 8,
    *,
    variable: Hashable | None = None,
    bands: Sequence[Any] | None = None,
    band_dim: Hashable = "band",
    percentiles: tuple[float, float] = (2, 98),
    ncols: int = 4,
    ground: bool = True,
    categorical: bool | None = None,
):
    """Sample tiles, one per transform code first, each beside its window as
    it lies on the ground.

    Each sample is a pair of panels: the tile as stored (titled with its
    number and transform code, framed in the code's colour) and, when
    ``ground``, the same pixels with the code undone
    (``apply_transform(tile, invert_code(code))``): the window as it lies
    in the scene, titled with its origin. A dot marks the tile's first pixel
    in both, so a rotation or reflection can be checked by eye.

    Parameters
    ----------
    tiles
        Output of :func:`xflipnslide.tile` with a ``band`` dim (RGB drawn),
        or without one (a single band: grey; integer classes: see
        ``categorical``); or a Dataset of tiles (see ``variable``).
    n
        How many tiles to draw: the first tile of each code present, then
        further tiles in order.
    variable
        For a Dataset: the variable to draw (default ``"image"``; say
        ``variable="label"`` for the label tiles).
    bands, band_dim, percentiles
        As for :func:`plot_rgb`; the stretch is shared by all tiles.
    ncols
        Samples per row of the grid (at most as many as drawn).
    ground
        Draw each tile's window as it lies on the ground beside it.
    categorical
        Draw values as classes: one colour per value (a qualitative colour
        map) and a legend of the classes present in the drawn tiles, named
        from CF ``flag_values`` / ``flag_meanings`` attrs where given. By
        default: for integer or boolean tiles without a band dim that hold
        at most 32 distinct values.

    Returns
    -------
    matplotlib.figure.Figure
        Axes in reading order, tile then ground panel per sample.

    Examples
    --------
    >>> import xflipnslide
    >>> scene = xflipnslide.open_image(xflipnslide.sample_scene_path()).load()
    >>> tiles = scene.fns.preprocess(nodata=0).fns.tile(128)  # doctest: +SKIP
    >>> fig = tiles.fns.plot_samples(n=4)  # doctest: +SKIP
    """
    plt = _pyplot()
    from matplotlib.patches import Patch

    da = _variable(tiles, variable, "plot_samples")
    if TILE_DIM not in da.dims or TRANSFORM not in da.coords:
        raise InvalidParameterError(
            f"plot_samples takes the output of tile() (a {TILE_DIM!r} dim with its coords); "
            "for a scene use plot_rgb or plot_tiles"
        )
    g = read_geometry(da, what="plot_samples")
    ydim, xdim = g.dims
    ncols = max(1, int(ncols))
    codes = g.codes
    if not codes.size:
        raise InvalidParameterError("plot_samples got 0 tiles: there is nothing to draw")
    first = [int(np.flatnonzero(codes == k)[0]) for k in sorted(set(codes.tolist()))]
    chosen = set(first)
    picks = (first + [k for k in range(len(codes)) if k not in chosen])[: max(1, n)]
    ncols = min(ncols, len(picks))
    sel = da.isel({TILE_DIM: picks})
    rgb = False
    if band_dim in sel.dims:
        labels = _band_labels(sel, band_dim)
        if bands is None:
            bands = pick_rgb(labels)[0] if len(labels) >= 3 else labels[:1]
        sel = _select_bands(sel, band_dim, bands)
        rgb = len(bands) == 3
        if not rgb:
            sel = sel.isel({band_dim: 0})
    extra = set(sel.dims) - {TILE_DIM, band_dim, ydim, xdim}
    if extra:
        raise InvalidParameterError(
            f"plot_samples draws (tile, band, y, x) tiles; select or reduce "
            f"{sorted(map(str, extra))} first"
        )
    order = (TILE_DIM, band_dim, ydim, xdim) if rgb else (TILE_DIM, ydim, xdim)
    values = np.asarray(sel.transpose(*order).values)
    classes = None
    if not rgb and (categorical or categorical is None):
        integral = values.dtype.kind in "iub"
        if categorical or integral:
            classes = np.unique(values[~np.isnan(values)] if values.dtype.kind == "f" else values)
            if categorical is None and classes.size > MAX_CLASSES:
                log.info(
                    "plot_samples: %d distinct values, drawn as grey (categorical=True for classes)",
                    classes.size,
                )
                classes = None
    if rgb:  # (tile, band, y, x): one stretch over all drawn tiles
        t, c, h, w = values.shape
        flat = values.astype(np.float64).transpose(1, 0, 2, 3).reshape(c, t * h, w)
        images = list(rgb_stretch(flat, percentiles).reshape(t, h, w, c))
        style = {}
    elif classes is not None:
        shown = values.astype(np.int64) if values.dtype.kind == "b" else values
        images = list(shown)
        cmap, norm, class_labels, colours = _class_style(classes, da.attrs)
        style = {"cmap": cmap, "norm": norm}
    else:
        images = list(_grey_stretch(values, percentiles))
        style = {"cmap": "gray", "vmin": 0, "vmax": 1}

    per = 2 if ground else 1
    nrows = -(-len(picks) // ncols)
    width = ncols * per
    legend_room = 0.5 if classes is not None else 0.0
    fig, axes = plt.subplots(
        nrows,
        width,
        figsize=(2.1 * width, 2.45 * nrows + legend_room),
        squeeze=False,
        layout="constrained",
    )
    T = g.tile_size
    for slot, (k, img) in enumerate(zip(picks, images)):
        code = int(codes[k])
        r, c = divmod(slot, ncols)
        ax = axes[r, c * per]
        colour = TRANSFORM_COLORS[code]
        ax.imshow(img, interpolation="nearest", **style)
        ax.set_title(f"tile {k}: {code} {TRANSFORMS[code]}", fontsize="small", color=colour)
        _frame(ax, colour, 3)
        _mark(ax, 0, 0, colour)
        if not ground:
            continue
        inverse = int(invert_code(code))
        on_ground = (
            apply_transform(img.transpose(2, 0, 1), inverse).transpose(1, 2, 0)
            if img.ndim == 3
            else apply_transform(img, inverse)
        )
        gx = axes[r, c * per + 1]
        gx.imshow(np.ascontiguousarray(on_ground), interpolation="nearest", **style)
        gx.set_title(
            f"ground: row {int(g.rows[k])}, col {int(g.cols[k])}", fontsize="small", color="0.3"
        )
        _frame(gx, "0.6", 1)
        col0, row0 = d4_affine(T, code) * (0.5, 0.5)  # tile pixel (0, 0) in its window
        _mark(gx, col0 - 0.5, row0 - 0.5, colour)
    for ax in axes.ravel()[len(picks) * per :]:
        ax.axis("off")
    if classes is not None:
        handles = [Patch(fc=col, ec="none", label=lab) for col, lab in zip(colours, class_labels)]
        fig.legend(
            handles=handles,
            loc="outside lower center",
            ncols=min(len(handles), 8),
            fontsize="small",
            frameon=False,
            title=f"{da.name if da.name is not None else 'classes'} (in these tiles)",
            title_fontsize="small",
        )
    return fig


def _frame(ax, colour, width) -> None:
    for spine in ax.spines.values():
        spine.set_edgecolor(colour)
        spine.set_linewidth(width)
    ax.set_xticks([])
    ax.set_yticks([])


def _mark(ax, x, y, colour) -> None:
    """A dot on a tile's first pixel (as stored, or where it lies on the ground)."""
    ax.plot(x, y, "o", ms=7, mfc=colour, mec="white", mew=1.5, zorder=5, clip_on=False)
    ax.set_xlim(-0.5, ax.get_images()[-1].get_array().shape[1] - 0.5)
    ax.set_ylim(ax.get_images()[-1].get_array().shape[0] - 0.5, -0.5)
