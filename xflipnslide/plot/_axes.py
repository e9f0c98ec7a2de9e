"""What every figure shares: matplotlib on demand, the figure and axes, the
variable to draw, band selection, axis labels, legends, and where a scene's
pixels lie in the axes' coordinates (from the scene's own coordinates, or
from the geometry tiles record). No figure of its own."""

from __future__ import annotations

from collections.abc import Hashable
from typing import Any

import numpy as np
import xarray as xr
from affine import Affine

from ..errors import InvalidParameterError, require
from ..schema import IMAGE, TileGeometry


def pyplot():
    """``matplotlib.pyplot``, or an ImportError naming the ``viz`` extra."""
    require("matplotlib", "viz", "plotting")
    import matplotlib.pyplot as plt

    return plt


def figure(ax, figsize=(6, 5)):
    """A new constrained-layout figure and axes (so legends and labels stay
    inside a saved figure), or ``ax``'s."""
    plt = pyplot()
    if ax is None:
        _, ax = plt.subplots(figsize=figsize, layout="constrained")
    return ax.figure, ax


def variable(obj, name: Hashable | None, what: str) -> xr.DataArray:
    """The DataArray to draw: ``obj`` itself, or a Dataset's variable ``name``
    (default ``"image"``, as the feeds and exports read it)."""
    if isinstance(obj, xr.Dataset):
        name = IMAGE if name is None else name
        if name not in obj.data_vars:
            raise InvalidParameterError(
                f"{what}: the Dataset has no variable {name!r}; it holds "
                f"{list(obj.data_vars)}: pass variable= to name the one to draw"
            )
        return obj[name]
    if isinstance(obj, xr.DataArray):
        if name is not None:
            raise InvalidParameterError(
                f"{what}: variable={name!r} picks a variable of a Dataset, and this is a "
                "DataArray: drop variable="
            )
        return obj
    raise InvalidParameterError(
        f"{what} draws an xarray DataArray or Dataset; got {type(obj).__name__}"
    )


def select_bands(obj: xr.DataArray, band_dim: Hashable, bands) -> xr.DataArray:
    """``bands`` of ``obj``, by label where the band dim has labels, else by position."""
    return (
        obj.sel({band_dim: list(bands)})
        if band_dim in obj.coords
        else obj.isel({band_dim: list(bands)})
    )


def band_labels(obj: xr.DataArray, band_dim: Hashable) -> list[Any]:
    """The labels along the band dim, or its positions where it has none."""
    if band_dim in obj.coords:
        return list(obj[band_dim].values)
    return list(range(obj.sizes[band_dim]))


def axis_labels(ax, obj, ydim, xdim) -> None:
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


def legend(fig, ax, handles, *, own: bool, below: bool = False) -> None:
    """The legend beside (or below) the map in a figure of our own, inside
    the axes in the caller's."""
    if own:
        loc = "outside lower center" if below else "outside right upper"
        ncols = min(len(handles), 4) if below else 1
        fig.legend(handles=handles, loc=loc, ncols=ncols, fontsize="small", frameon=False)
    else:
        ax.legend(handles=handles, loc="upper right", fontsize="x-small", framealpha=0.8)


def extent(obj, ydim, xdim) -> list[float] | None:
    """Image extent in the scene's coordinates (pixel edges), if it has them."""
    if ydim not in obj.coords or xdim not in obj.coords:
        return None
    y, x = obj[ydim].values.astype(float), obj[xdim].values.astype(float)
    dy = (y[-1] - y[0]) / max(len(y) - 1, 1)
    dx = (x[-1] - x[0]) / max(len(x) - 1, 1)
    return [x[0] - dx / 2, x[-1] + dx / 2, y[-1] + dy / 2, y[0] - dy / 2]


def pixel_to_coords(obj, ydim, xdim):
    """Functions turning pixel edges (row, col) into the axes' coordinates."""
    box = extent(obj, ydim, xdim)
    if box is None:
        return (lambda r: r - 0.5), (lambda c: c - 0.5)
    h, w = obj.sizes[ydim], obj.sizes[xdim]
    x0, x1, y1, y0 = box  # left, right, bottom, top
    return (lambda r: y0 + (y1 - y0) * r / h), (lambda c: x0 + (x1 - x0) * c / w)


def map_transform(g: TileGeometry) -> Affine:
    """Scene pixel corners ``(col, row)`` to the map's coordinates: the
    recorded scene transform, else pixels."""
    if g.transform is not None:
        return Affine(*g.transform[:6])
    return Affine.identity()


def to_map(affine: Affine, cols, rows) -> tuple[np.ndarray, np.ndarray]:
    """Map coordinates ``(x, y)`` of scene pixel corners ``(cols, rows)``."""
    cols, rows = np.asarray(cols, float), np.asarray(rows, float)
    return (
        affine.a * cols + affine.b * rows + affine.c,
        affine.d * cols + affine.e * rows + affine.f,
    )


def set_limits(ax, xs, ys, affine: Affine) -> None:
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
