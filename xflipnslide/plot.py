"""Figures (matplotlib, the ``viz`` extra, imported only when a figure is drawn)."""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from typing import Any

import numpy as np
import xarray as xr

from .dims import find_spatial_dims
from .errors import InvalidParameterError, require

__all__ = ["plot_rgb", "rgb_stretch"]


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
