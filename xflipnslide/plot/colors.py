"""The colours the figures share: one per transform code, per subset of a
split and per window grid."""

from __future__ import annotations

__all__ = ["GRID_COLORS", "SUBSET_COLORS", "TRANSFORM_COLORS"]

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
