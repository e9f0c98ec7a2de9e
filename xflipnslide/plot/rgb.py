"""A scene as an image: red, green and blue picked by band name, a
per-band percentile stretch, missing pixels transparent; :func:`plot_rgb`."""

from __future__ import annotations

import logging
from collections.abc import Hashable, Sequence
from typing import Any

import numpy as np
import xarray as xr

from ..dims import find_spatial_dims
from ..errors import InvalidParameterError
from . import _axes

log = logging.getLogger(__name__)

__all__ = ["RGB_NAMES", "pick_rgb", "plot_rgb", "rgb_stretch"]

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


def rgb_bands(labels: Sequence[Any], bands: Sequence[Any] | None, what: str) -> list[Any]:
    """The three bands drawn as red, green, blue: ``bands``, else picked from
    ``labels`` by name (the choice logged), or an error."""
    if bands is None:
        bands, note = pick_rgb(labels)
        log.info("%s: %s", what, note)
    if len(bands) != 3:
        raise InvalidParameterError(f"{what} needs 3 bands for red, green, blue; got {bands!r}")
    return list(bands)


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


def grey_stretch(values: np.ndarray, percentiles: tuple[float, float]) -> np.ndarray:
    """Values of any shape scaled to [0, 1] between their ``percentiles``
    (NaN ignored, and 0)."""
    values = np.asarray(values, dtype=np.float64)
    if not np.isfinite(values).any():
        return np.zeros(values.shape)
    lo, hi = np.nanpercentile(values, percentiles)
    return np.nan_to_num(np.clip((values - lo) / max(hi - lo, 1e-12), 0, 1))


def rgba(values: np.ndarray, percentiles: tuple[float, float]) -> np.ndarray:
    """An ``(H, W, 4)`` image of ``(3, H, W)`` (RGB) or ``(H, W)`` (grey)
    values, stretched, pixels with a NaN transparent."""
    values = np.asarray(values, dtype=np.float64)
    if values.ndim == 2:
        img = np.repeat(grey_stretch(values, percentiles)[..., None], 3, axis=-1)
        valid = ~np.isnan(values)
    else:
        img = rgb_stretch(values, percentiles)
        valid = ~np.isnan(values).any(axis=0)
    return np.concatenate([img, valid.astype(float)[..., None]], axis=-1)


def rgb_values(da: xr.DataArray, band_dim: Hashable, bands, ydim, xdim) -> np.ndarray:
    """The ``(3, H, W)`` float values of ``bands`` (read: pixels are drawn)."""
    sel = _axes.select_bands(da, band_dim, bands).transpose(band_dim, ydim, xdim)
    return np.asarray(sel.values, dtype=np.float64)


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
    >>> fig = scene.where(scene != 0).fns.plot_rgb()
    >>> fig.axes[0].get_title(), fig.axes[0].images[0].get_array().shape  # RGBA pixels
    ('RGB: red, green, blue', (560, 600, 4))
    >>> import matplotlib.pyplot as plt; plt.close(fig)
    """
    _axes.pyplot()
    obj = _axes.variable(obj, variable, "plot_rgb")
    ydim, xdim = find_spatial_dims(obj, dims)
    if band_dim not in obj.dims:
        raise InvalidParameterError(f"plot_rgb needs a {band_dim!r} dimension; got dims {obj.dims}")
    extra = set(obj.dims) - {band_dim, ydim, xdim}
    if extra:
        raise InvalidParameterError(
            f"plot_rgb draws one (band, y, x) scene; select or reduce {sorted(map(str, extra))} first"
        )
    bands = rgb_bands(_axes.band_labels(obj, band_dim), bands, "plot_rgb")
    image = rgba(rgb_values(obj, band_dim, bands, ydim, xdim), percentiles)
    fig, ax = _axes.figure(ax)
    ax.imshow(image, extent=_axes.extent(obj, ydim, xdim), interpolation="nearest")
    ax.set_title(title or f"RGB: {', '.join(map(str, bands))}", fontsize="medium")
    _axes.axis_labels(ax, obj, ydim, xdim)
    return fig
