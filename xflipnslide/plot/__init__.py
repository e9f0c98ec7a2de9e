"""Figures (matplotlib, the ``viz`` extra, imported only when a figure is drawn).

Every function returns the :class:`matplotlib.figure.Figure` it drew on:

* :func:`plot_rgb` a scene as an RGB composite (:mod:`.rgb`);
* :func:`plot_tiles` the windows ``tile`` would cut from it (:mod:`.tiles`);
* :func:`plot_footprints` tiles already cut, or a split, where they lie on
  their scene, from the geometry they record (:mod:`.footprints`; the
  density view in :mod:`.density`);
* :func:`plot_samples` tiles themselves beside their windows (:mod:`.samples`).

The colours they share are in :mod:`.colors`.
"""

from __future__ import annotations

from .colors import GRID_COLORS, SUBSET_COLORS, TRANSFORM_COLORS
from .footprints import plot_footprints
from .rgb import RGB_NAMES, pick_rgb, plot_rgb, rgb_stretch
from .samples import MAX_CLASSES, plot_samples
from .tiles import plot_tiles

__all__ = [
    "GRID_COLORS",
    "MAX_CLASSES",
    "RGB_NAMES",
    "SUBSET_COLORS",
    "TRANSFORM_COLORS",
    "pick_rgb",
    "plot_footprints",
    "plot_rgb",
    "plot_samples",
    "plot_tiles",
    "rgb_stretch",
]
