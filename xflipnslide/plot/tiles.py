"""The windows ``tile`` would cut from a scene, over the scene: :func:`plot_tiles`."""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from typing import Any

import xarray as xr

from ..dims import find_spatial_dims
from ..errors import InvalidParameterError
from ..plan import TRANSFORMS, Edge, Strategy, plan_tiles
from ..schema import TILE_DIM
from . import _axes
from .colors import TRANSFORM_COLORS
from .rgb import plot_rgb

__all__ = ["plot_tiles"]


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

    Examples
    --------
    >>> import xflipnslide
    >>> scene = xflipnslide.open_image(xflipnslide.sample_scene_path()).load()
    >>> fig = scene.fns.plot_tiles(256)
    >>> fig.axes[0].get_title()  # 3 x 3 outer and 2 x 2 inner windows
    'flipnslide: 13 tiles of 256 px'
    >>> len(fig.axes[0].patches)  # the windows and the tiled area's outline
    14
    >>> import matplotlib.pyplot as plt; plt.close(fig)
    """
    _axes.pyplot()  # the viz extra, with a clear error
    from matplotlib.patches import Patch, Rectangle

    own = ax is None
    obj = _axes.variable(obj, variable, "plot_tiles")
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
    to_y, to_x = _axes.pixel_to_coords(obj, ydim, xdim)
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
    _axes.legend(fig, ax, handles, own=own)
    return fig
