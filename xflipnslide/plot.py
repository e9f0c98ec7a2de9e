"""Figures (matplotlib, the ``viz`` extra, imported only when a figure is drawn)."""

from __future__ import annotations

import logging
from collections.abc import Hashable, Sequence
from typing import Any

import numpy as np
import xarray as xr

from .dims import find_spatial_dims
from .errors import InvalidParameterError, require
from .plan import TRANSFORMS, Edge, Strategy, plan_tiles
from .schema import TILE_DIM, TRANSFORM

log = logging.getLogger(__name__)

#: Band names tried for red, green and blue, in order: common names, then
#: Landsat 8/9 and Sentinel-2 band numbers (as files and STAC assets name them).
RGB_NAMES = (
    ("red", "r", "B4", "B04", "SR_B4", "b4"),
    ("green", "g", "B3", "B03", "SR_B3", "b3"),
    ("blue", "b", "B2", "B02", "SR_B2", "b2"),
)


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


def _figure(ax):
    """A new constrained-layout figure and axes (so legends and labels stay
    inside a saved figure), or ``ax``'s."""
    plt = _pyplot()
    if ax is None:
        _, ax = plt.subplots(figsize=(6, 5), layout="constrained")
    return ax.figure, ax


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


__all__ = ["TRANSFORM_COLORS", "plot_rgb", "plot_samples", "plot_tiles", "rgb_stretch"]

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


def _pyplot():
    require("matplotlib", "viz", "plotting")
    import matplotlib.pyplot as plt

    return plt


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


def plot_rgb(
    obj: xr.DataArray,
    bands: Sequence[Any] | None = None,
    *,
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
        A ``(band, y, x)`` DataArray (other dims must be selected first);
        for a Dataset, plot its variable: ``ds["image"].fns.plot_rgb()``.
    bands
        The three ``band`` labels for red, green and blue; by default the
        bands named red/green/blue (or Landsat/Sentinel-2's B4/B3/B2,
        B04/B03/B02, SR_B4...), else the first three (logged, and said in
        the title).
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
    """
    _pyplot()
    if not isinstance(obj, xr.DataArray):
        raise InvalidParameterError(
            "plot_rgb draws one DataArray; for a Dataset pick the variable: "
            "ds['image'].fns.plot_rgb()"
        )
    ydim, xdim = find_spatial_dims(obj, dims)
    if band_dim not in obj.dims:
        raise InvalidParameterError(f"plot_rgb needs a {band_dim!r} dimension; got dims {obj.dims}")
    extra = set(obj.dims) - {band_dim, ydim, xdim}
    if extra:
        raise InvalidParameterError(
            f"plot_rgb draws one (band, y, x) scene; select or reduce {sorted(map(str, extra))} first"
        )
    labels = (
        list(obj[band_dim].values) if band_dim in obj.coords else list(range(obj.sizes[band_dim]))
    )
    note = None
    if bands is None:
        bands, note = pick_rgb(labels)
        log.info("plot_rgb: %s", note)
    if len(bands) != 3:
        raise InvalidParameterError(f"plot_rgb needs 3 bands for red, green, blue; got {bands!r}")
    sel = (
        obj.sel({band_dim: list(bands)})
        if band_dim in obj.coords
        else obj.isel({band_dim: list(bands)})
    )
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
    obj: xr.DataArray,
    tile_size: int = 256,
    strategy: Strategy = "flipnslide",
    *,
    edge: Edge = "crop",
    dims: Sequence[Hashable] | None = None,
    bands: Sequence[Any] | None = None,
    ax=None,
):
    """Draw the tile windows over the scene, coloured by transform code.

    The scene as an RGB composite (see :func:`plot_rgb`), the tiled area
    (the crop, or the padded extent) as a dashed outline, and every window's
    footprint as a rectangle in the colour of its transform
    (:data:`TRANSFORM_COLORS`), inset a little per code so overlapping
    windows stay visible — the idea of the Flip-n-Slide paper's Figure 1.

    Parameters
    ----------
    obj
        A ``(band, y, x)`` scene.
    tile_size, strategy, edge, dims
        As for :func:`xflipnslide.tile`.
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

    if TILE_DIM in obj.dims:
        raise InvalidParameterError(
            "plot_tiles draws the windows over a scene, and these are tiles: pass the scene "
            "they were cut from (or use plot_samples to draw tiles)"
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
    if fig.get_layout_engine() is not None:  # our figure: the legend beside the map
        fig.legend(handles=handles, loc="outside right upper", fontsize="small", frameon=False)
    else:  # the caller's axes: keep the legend inside them
        ax.legend(handles=handles, loc="upper right", fontsize="x-small", framealpha=0.8)
    return fig


def plot_samples(
    tiles: xr.DataArray,
    n: int = 8,
    *,
    bands: Sequence[Any] | None = None,
    band_dim: Hashable = "band",
    percentiles: tuple[float, float] = (2, 98),
    ncols: int = 4,
):
    """A grid of sample tiles, one per transform code first, labelled by code.

    Parameters
    ----------
    tiles
        Output of :func:`xflipnslide.tile` with a ``band`` dim (RGB drawn)
        or without one (a single band, grey).
    n
        How many tiles to draw: the first tile of each code present, then
        further tiles in order.
    bands, band_dim, percentiles
        As for :func:`plot_rgb`; the stretch is shared by all tiles.
    ncols
        Tiles per row of the grid.

    Returns
    -------
    matplotlib.figure.Figure
    """
    plt = _pyplot()
    if not isinstance(tiles, xr.DataArray):
        raise InvalidParameterError(
            "plot_samples draws one DataArray of tiles; for a Dataset pick the variable: "
            "tiles['image'].fns.plot_samples()"
        )
    if TILE_DIM not in tiles.dims or TRANSFORM not in tiles.coords:
        raise InvalidParameterError(
            "plot_samples takes the output of tile() (a 'tile' dim with its coords); "
            "for a scene use plot_rgb or plot_tiles"
        )
    codes = tiles.transform.values
    first = [int(np.flatnonzero(codes == k)[0]) for k in sorted(set(codes.tolist()))]
    picks = (first + [k for k in range(len(codes)) if k not in first])[: max(1, n)]
    sel = tiles.isel(tile=picks)
    if band_dim in sel.dims:
        labels = (
            list(sel[band_dim].values)
            if band_dim in sel.coords
            else list(range(sel.sizes[band_dim]))
        )
        if bands is None:
            bands = pick_rgb(labels)[0] if len(labels) >= 3 else labels[:1]
        sel = (
            sel.sel({band_dim: list(bands)})
            if band_dim in sel.coords
            else sel.isel({band_dim: list(bands)})
        )
    values = np.asarray(sel.values, dtype=np.float64)
    rows = -(-len(picks) // ncols)
    fig, axes = plt.subplots(
        rows, ncols, figsize=(2.4 * ncols, 2.6 * rows), squeeze=False, layout="constrained"
    )
    if values.ndim == 4:  # (tile, band, y, x): one stretch over all drawn tiles
        t, c, h, w = values.shape
        stretched = rgb_stretch(values.transpose(1, 0, 2, 3).reshape(c, t * h, w), percentiles)
        images = stretched.reshape(t, h, w, c)
    else:
        lo, hi = np.nanpercentile(values, percentiles)
        images = np.clip((values - lo) / max(hi - lo, 1e-12), 0, 1)
    for ax, k, img in zip(axes.ravel(), picks, images):
        code = int(codes[k])
        ax.imshow(img, cmap=None if img.ndim == 3 else "gray", interpolation="nearest")
        ax.set_title(
            f"tile {k}: {code} {TRANSFORMS[code]}", fontsize="small", color=TRANSFORM_COLORS[code]
        )
        for spine in ax.spines.values():
            spine.set_edgecolor(TRANSFORM_COLORS[code])
            spine.set_linewidth(3)
        ax.set_xticks([])
        ax.set_yticks([])
    for ax in axes.ravel()[len(picks) :]:
        ax.axis("off")
    return fig
