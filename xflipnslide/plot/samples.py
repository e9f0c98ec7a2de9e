"""Tiles themselves: samples of a tile set, each beside its window as it lies
on the ground, drawn as RGB, grey or classes; :func:`plot_samples`."""

from __future__ import annotations

import logging
from collections.abc import Hashable, Mapping, Sequence
from typing import Any

import numpy as np
import xarray as xr

from ..errors import InvalidParameterError
from ..georef import d4_affine
from ..plan import TRANSFORMS, apply_transform, invert_code
from ..schema import TILE_DIM, TRANSFORM, read_geometry
from . import _axes
from .colors import TRANSFORM_COLORS
from .rgb import grey_stretch, pick_rgb, rgb_stretch

log = logging.getLogger(__name__)

__all__ = ["MAX_CLASSES", "plot_samples"]

#: Up to this many distinct values, integer tiles with no band dim are drawn
#: as classes (``plot_samples(categorical=None)``).
MAX_CLASSES = 32


def _class_style(classes: np.ndarray, attrs: Mapping[Hashable, Any]):
    """Colour map, norm and legend labels for the class values ``classes``
    (sorted); names from CF ``flag_values`` / ``flag_meanings`` where given."""
    plt = _axes.pyplot()
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
    >>> tiles = scene.fns.preprocess(nodata=0).fns.tile(128)
    >>> fig = tiles.fns.plot_samples(n=4)
    >>> len(fig.axes)  # a tile and a ground panel per sample
    8
    >>> import matplotlib.pyplot as plt; plt.close(fig)
    """
    plt = _axes.pyplot()
    from matplotlib.patches import Patch

    da = _axes.variable(tiles, variable, "plot_samples")
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
        labels = _axes.band_labels(sel, band_dim)
        if bands is None:
            bands = pick_rgb(labels)[0] if len(labels) >= 3 else labels[:1]
        sel = _axes.select_bands(sel, band_dim, bands)
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
        images = list(grey_stretch(values, percentiles))
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
