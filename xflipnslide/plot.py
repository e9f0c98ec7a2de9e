"""Figures (matplotlib, the ``viz`` extra, imported only when a figure is drawn)."""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from typing import Any

import numpy as np
import xarray as xr

from .dims import find_spatial_dims
from .errors import InvalidParameterError, require
from .plan import TRANSFORMS, Edge, Strategy, plan_tiles

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
        A ``(band, y, x)`` DataArray (other dims must be selected first).
    bands
        The three ``band`` labels for red, green and blue; by default
        ``("red", "green", "blue")`` if present, else the first three.
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
    matplotlib.axes.Axes
        The axes drawn on; missing (NaN) pixels show in the axes' background.
    """
    plt = _pyplot()
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
    if bands is None:
        bands = ["red", "green", "blue"] if {"red", "green", "blue"} <= set(labels) else labels[:3]
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
    if ax is None:
        _, ax = plt.subplots(figsize=(5, 5))
    extent = _extent(obj, ydim, xdim)
    ax.imshow(np.concatenate([img, alpha], axis=-1), extent=extent, interpolation="nearest")
    ax.set_title(title or f"RGB: {', '.join(map(str, bands))}")
    ax.set_xlabel(str(xdim))
    ax.set_ylabel(str(ydim))
    return ax


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
    matplotlib.axes.Axes
    """
    _pyplot()  # the viz extra, with a clear error
    from matplotlib.patches import Patch, Rectangle

    ydim, xdim = find_spatial_dims(obj, dims)
    plan = plan_tiles((obj.sizes[ydim], obj.sizes[xdim]), tile_size, strategy, edge=edge)
    ax = plot_rgb(
        obj,
        bands,
        dims=(ydim, xdim),
        ax=ax,
        title=f"{strategy}: {len(plan)} tiles of {tile_size} px",
    )
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
    ax.legend(
        handles=[
            Patch(fill=False, ec=TRANSFORM_COLORS[k], label=f"{k} {TRANSFORMS[k]}") for k in used
        ]
        + [Patch(fill=False, ec="black", ls="--", label=f"tiled area ({edge})")],
        loc="upper left",
        bbox_to_anchor=(1.01, 1),
        fontsize="small",
        frameon=False,
    )
    ax.tick_params(axis="x", labelrotation=30)
    return ax


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
    if "tile" not in tiles.dims or "transform" not in tiles.coords:
        raise InvalidParameterError(
            "plot_samples takes the output of tile() (a 'tile' dim with its coords)"
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
            bands = (
                ["red", "green", "blue"] if {"red", "green", "blue"} <= set(labels) else labels[:3]
            )
        sel = (
            sel.sel({band_dim: list(bands)})
            if band_dim in sel.coords
            else sel.isel({band_dim: list(bands)})
        )
    values = np.asarray(sel.values, dtype=np.float64)
    rows = -(-len(picks) // ncols)
    fig, axes = plt.subplots(rows, ncols, figsize=(2.4 * ncols, 2.6 * rows), squeeze=False)
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
    fig.tight_layout()
    return fig
