"""Maps of tiles: a tile set, or a split's subsets, where they lie on their
scene, from the geometry the tiles record; :func:`plot_footprints`.

Only the tiles' coordinates and their ``fns_*`` attrs are read, never their
pixels.
"""

from __future__ import annotations

import logging
from collections.abc import Hashable, Mapping, Sequence
from typing import Any, Literal

import numpy as np
import xarray as xr
from affine import Affine

from ..collection import SCENE, footprints, is_collection, scene_ids
from ..dims import find_spatial_dims
from ..errors import InvalidParameterError
from ..georef import coords_transform
from ..plan import TRANSFORMS
from ..schema import (
    DROPPED_AOI,
    DROPPED_MIN_VALID,
    GRID,
    SCENE_SHAPE,
    SCENE_TRANSFORM,
    SPLIT,
    SPLIT_DROPPED,
    TILE_DIM,
    VALID_FRACTION,
    TileGeometry,
    read_geometry,
    set_attrs,
)
from . import _axes
from .colors import GRID_COLORS, SUBSET_COLORS, TRANSFORM_COLORS
from .density import draw_density
from .rgb import rgb_bands, rgb_values, rgba

log = logging.getLogger(__name__)

__all__ = ["plot_footprints"]

#: What ``plot_footprints`` colours by: the code, the subset, or a per-tile
#: coordinate of the tile format.
_COLOR_BY = ("code", "subset", VALID_FRACTION, GRID)
_KINDS = ("outline", "density")


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
    name = set_attrs(tiles).get(SPLIT)
    return [(None if name is None else str(name), tiles)]


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


def _auto_style(n: int, linewidth, alpha) -> tuple[float, float]:
    """Thinner, fainter outlines as tiles get many, so thousands stay readable."""
    if linewidth is None:
        linewidth = float(np.clip(np.sqrt(100 / max(n, 1)), 0.35, 1.0))
    if alpha is None:
        alpha = float(np.clip(np.sqrt(400 / max(n, 1)), 0.6, 1.0))
    return float(linewidth), float(alpha)


def _draw_scene(ax, scene, variable, band_dim, bands, percentiles, g: TileGeometry, affine):
    """The scene under the tiles, at the place the tiles record for it."""
    da = _axes.variable(scene, variable, "plot_footprints(scene=)")
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
        bands = rgb_bands(_axes.band_labels(da, band_dim), bands, "plot_footprints(scene=)")
        values = rgb_values(da, band_dim, bands, ydim, xdim)
    else:
        if band_dim in da.dims:
            if da.sizes[band_dim] > 1:
                log.info(
                    "plot_footprints: scene= drawn from its first band (bands=[r, g, b] for RGB)"
                )
            da = da.isel({band_dim: 0})
        values = np.asarray(da.transpose(ydim, xdim).values, float)
    h, w = shape
    (left, right), (top, bottom) = _axes.to_map(affine, [0, w], [0, h])
    ax.imshow(
        rgba(values, percentiles),
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
    crs: Any = None,
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
    crs
        For a collection of many scenes: the CRS to draw in (anything pyproj
        reads), needed where the scenes' CRSs differ. A collection is drawn
        from :func:`xflipnslide.collection.footprints` (each scene's own
        transform, reprojected to ``crs``), coloured by scene (``color_by``
        ``"scene"``, its default, or ``"subset"`` for a split's dict);
        ``scene=`` and ``kind="density"`` take one scene
        (:func:`~xflipnslide.collection.scene_tiles`).

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
    >>> parts = scene.fns.tile(32).fns.split(seed=0)
    >>> xflipnslide.plot.plot_footprints(parts, scene=scene).axes[0].get_title().splitlines()
    ['1836 tiles of 32 px', '(dropped by split 407)']
    >>> import matplotlib.pyplot as plt; plt.close("all")
    """
    _axes.pyplot()  # the viz extra, with a clear error
    from matplotlib.patches import Patch, Polygon

    if kind not in _KINDS:
        raise InvalidParameterError(f"kind must be one of {_KINDS}; got {kind!r}")
    sets = _tile_sets(tiles)
    if any(is_collection(part) for _, part in sets):
        return _plot_collection(
            sets, _is_split(tiles), scene, color_by, kind, crs, ax, title, (linewidth, alpha)
        )
    if crs is not None:
        raise InvalidParameterError(
            "crs= draws a collection of scenes in different CRSs; tiles of one scene are drawn "
            "in their own CRS: drop crs="
        )
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
    affine = _axes.map_transform(g)
    rows = np.concatenate([q.rows for q in geometries])
    cols = np.concatenate([q.cols for q in geometries])

    own = ax is None
    fig, ax = _axes.figure(ax, figsize=(7, 5.5))
    if scene is not None:
        _draw_scene(ax, scene, variable, band_dim, bands, percentiles, g, affine)
    xs_all, ys_all = [], []
    outline = []
    if g.scene_shape is not None:
        h, w = g.scene_shape
        ring = np.stack(_axes.to_map(affine, [0, w, w, 0], [0, 0, h, h]), axis=-1)
        ax.add_patch(Polygon(ring, closed=True, fill=False, ls="--", lw=1.2, ec="black", zorder=5))
        outline = [Patch(fill=False, ec="black", ls="--", label=f"scene ({h} x {w} px)")]
        xs_all.append(ring[:, 0])
        ys_all.append(ring[:, 1])

    if kind == "density":
        handles = []
        colorbar, (x, y), default_title = draw_density(fig, ax, rows, cols, g, affine)
    else:
        handles, colorbar, (x, y), default_title = _draw_outlines(
            fig,
            ax,
            sets,
            geometries,
            rows,
            cols,
            affine,
            color_by,
            style=_auto_style(rows.size, linewidth, alpha),
            over_scene=scene is not None,
        )
    xs_all.append(x)
    ys_all.append(y)

    _axes.set_limits(ax, xs_all, ys_all, affine)
    ax.set_aspect("equal")
    ydim, xdim = g.dims
    if g.transform is not None:
        _axes.axis_labels(ax, sets[0][1], ydim, xdim)
    else:
        ax.set_xlabel(f"{xdim} (pixels)")
        ax.set_ylabel(f"{ydim} (pixels)")
        ax.tick_params(axis="x", labelrotation=30)
    ax.set_title(title or default_title + _dropped_note(set_attrs(sets[0][1])), fontsize="medium")
    handles += outline
    if handles:
        _axes.legend(fig, ax, handles, own=own, below=colorbar is not None)
    return fig


def _plot_collection(sets, split: bool, scene, color_by, kind, crs, ax, title, style):
    """The tiles of many scenes, from their footprints in ``crs``, by scene or subset."""
    from matplotlib.collections import PolyCollection
    from matplotlib.patches import Patch

    color_by = color_by or ("subset" if split else SCENE)
    if scene is not None or kind != "outline" or color_by not in (SCENE, "subset"):
        ids = next(scene_ids(part) for _, part in sets if is_collection(part))
        raise InvalidParameterError(
            "plot_footprints draws a collection of scenes as outlines coloured by scene or "
            "subset (color_by='scene' or 'subset'); scene=, kind='density' and color_by="
            f"{color_by!r} draw one scene: pick it with xflipnslide.scene_tiles(tiles, "
            f"{ids[0]!r})"
        )
    frames = [(name, footprints(part, crs=crs)) for name, part in sets]
    target = frames[0][1].crs
    if any(f.crs != target for _, f in frames[1:]):
        raise InvalidParameterError(
            "the subsets lie in different CRSs: pass crs= the CRS to draw them in"
        )
    groups: dict[str, list] = {}
    for name, frame in frames:
        keys = frame[SCENE] if color_by == SCENE and SCENE in frame else [name] * len(frame)
        for key, polygon in zip(keys, frame.geometry):
            groups.setdefault(str(key), []).append(np.asarray(polygon.exterior.coords))
    lw, a = _auto_style(sum(map(len, groups.values())), *style)
    fig, ax_ = _axes.figure(ax, figsize=(7, 5.5))
    handles = []
    for i, (key, rings) in enumerate(groups.items()):
        colour = SUBSET_COLORS[i % len(SUBSET_COLORS)]
        ax_.add_collection(
            PolyCollection(
                rings,
                closed=True,
                facecolors="none",
                edgecolors=colour,
                linewidths=lw,
                alpha=a,
                zorder=4,
            )
        )
        handles.append(Patch(fill=False, ec=colour, label=f"{key} ({len(rings)})"))
    xy = np.concatenate([r for rings in groups.values() for r in rings])
    ax_.update_datalim(xy)
    ax_.margins(0.03)
    ax_.autoscale_view()
    ax_.set_aspect("equal")
    where = target.to_string() if target is not None else "pixels"
    ax_.set_xlabel(f"x ({where})")
    ax_.set_ylabel(f"y ({where})")
    ax_.tick_params(axis="x", labelrotation=30)
    n = sum(map(len, groups.values()))
    default = f"{n} tiles of {len(groups)} {'scenes' if color_by == SCENE else 'subsets'}"
    ax_.set_title(title or default, fontsize="medium")
    _axes.legend(fig, ax_, handles, own=ax is None)
    return fig


def _draw_outlines(
    fig, ax, sets, geometries, rows, cols, affine: Affine, color_by, *, style, over_scene: bool
):
    """Every window's footprint, one PolyCollection in the colours of
    ``color_by``; returns the legend handles, the colour bar (or None), the
    map coordinates drawn ``(x, y)`` and the default title."""
    plt = _axes.pyplot()
    from matplotlib.collections import PolyCollection
    from matplotlib.colors import Normalize, to_rgba
    from matplotlib.patches import Patch

    n, T = rows.size, geometries[0].tile_size
    lw, a = style
    handles, colorbar = [], None
    # faint faces show which ground is covered: up to eight layers deep
    # they add up to about half opaque (a third over a scene)
    fill = (0.05 if over_scene else 0.08) if color_by == "subset" else 0.0
    order = np.arange(n)
    if color_by == "code":
        codes = np.concatenate([q.codes for q in geometries]).astype(np.int64)
        palette = np.array([to_rgba(c) for c in TRANSFORM_COLORS])
        base = palette[codes]
        for k in sorted(set(codes.tolist())):
            count = int((codes == k).sum())
            handles.append(
                Patch(fill=False, ec=TRANSFORM_COLORS[k], label=f"{k} {TRANSFORMS[k]} ({count})")
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
    title = f"{n} tiles of {T} px" + (f", by {color_by}" if color_by != "subset" else "")
    return handles, colorbar, (polygons[..., 0].ravel(), polygons[..., 1].ravel()), title


def _window_polygons(affine: Affine, rows, cols, tile_size: int) -> np.ndarray:
    """``(n, 4, 2)`` map coordinates of each window's corners."""
    dc = np.array([0, tile_size, tile_size, 0])
    dr = np.array([0, 0, tile_size, tile_size])
    x, y = _axes.to_map(affine, np.asarray(cols)[:, None] + dc, np.asarray(rows)[:, None] + dr)
    return np.stack([x, y], axis=-1)


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
