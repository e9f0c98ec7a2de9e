"""Classes of labelled tiles: pixel counts, loss weights, one label per tile.

The paper's gain is for under-represented classes. These functions measure
them: :func:`class_counts` (exact pixel counts per tile and class, lazy),
:func:`class_weights` (loss weights for ``torch.nn.CrossEntropyLoss``) and
:func:`tile_labels` (a class per tile for chip classification, or the
classes present in it). ``docs/classes.md`` gives the formulas.

Everywhere, ``ignore_index`` is the value of unlabelled pixels (as for
``torch.nn.CrossEntropyLoss(ignore_index=...)``): it is counted in no
class. Any other value must be a class id ``0..K-1``; NaN, non-integers and
ids out of range are an :class:`~xflipnslide.errors.InvalidLabelsError`
(on dask, when the labels are read), never dropped.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Hashable

import numpy as np
import xarray as xr

from ._core.classes import class_counts_array, class_totals_array, tile_labels_array
from .errors import InvalidParameterError, check_positive_int
from .schema import LABEL, TILE_DIM

__all__ = ["CLASS_DIM", "METHODS", "class_counts", "class_weights", "tile_labels"]

#: The dimension that counts classes in :func:`class_counts` and
#: ``tile_labels(rule="presence")`` (the one ``predict`` writes too).
CLASS_DIM = "class"
#: The weighting methods of :func:`class_weights`.
METHODS = ("balanced", "inverse_sqrt")


def _labels(tiles: xr.DataArray | xr.Dataset, label: Hashable, what: str) -> xr.DataArray:
    """The label tiles, ``tile`` first."""
    if isinstance(tiles, xr.Dataset):
        if label not in tiles.data_vars:
            raise InvalidParameterError(
                f"{what}: no variable {label!r} in the tiles; they hold {list(tiles.data_vars)}: "
                "pass label= the name of the label variable"
            )
        tiles = tiles[label]
    elif not isinstance(tiles, xr.DataArray):
        raise InvalidParameterError(
            f"{what} takes label tiles: a Dataset of tiles with a label variable, or the label "
            f"DataArray itself; got {type(tiles).__name__}"
        )
    if TILE_DIM not in tiles.dims:
        raise InvalidParameterError(
            f"{what} takes tiles (a {TILE_DIM!r} dimension); got dims {tuple(tiles.dims)}. "
            "Call .fns.tile(...) first"
        )
    return tiles.transpose(TILE_DIM, ...)


def _options(classes, ignore_index) -> tuple[int | None, int | None]:
    if classes is not None:
        classes = check_positive_int(classes, "classes")
    if ignore_index is not None and (
        isinstance(ignore_index, bool) or not isinstance(ignore_index, numbers.Integral)
    ):
        raise InvalidParameterError(
            "ignore_index must be an integer (the value of unlabelled pixels, as for "
            f"torch.nn.CrossEntropyLoss) or None; got {ignore_index!r}"
        )
    return classes, (int(ignore_index) if ignore_index is not None else None)


def _tile_coords(labels: xr.DataArray) -> dict[Hashable, xr.Variable]:
    """The coordinates along ``tile`` alone (``row``, ``col``, ``transform``...)."""
    return {n: c.variable for n, c in labels.coords.items() if c.dims == (TILE_DIM,)}


def class_counts(
    tiles: xr.DataArray | xr.Dataset,
    *,
    label: Hashable = LABEL,
    classes: int | None = None,
    ignore_index: int | None = None,
) -> xr.DataArray:
    """Pixel count of every class in every tile.

    Parameters
    ----------
    tiles
        A Dataset of tiles with a label variable, or the label tiles
        themselves (a DataArray with a ``tile`` dim). Every dim but ``tile``
        is counted over. Labels are integer (or boolean, or integral float)
        class ids.
    label
        The label variable of a Dataset (unused for a DataArray).
    classes
        ``K``, the number of classes: the counts have one column per class
        id ``0..K-1``. By default, one more than the largest class id in the
        labels, which on dask-backed labels would need a pass over them
        before the graph could be built: there ``classes=`` is required (an
        :class:`~xflipnslide.InvalidParameterError` says so).
        :func:`class_weights`, which computes anyway, finds ``K`` in its one
        pass.
    ignore_index
        The value of unlabelled pixels, counted in no class (it may be a
        class id, e.g. 0 for "no data": its column is then all zeros).

    Returns
    -------
    DataArray
        ``(tile, class)`` int64 counts named ``"class_counts"``, with the
        tiles' coordinates along ``tile`` and ``class = 0..K-1``. Lazy for
        dask-backed labels: one task per label chunk and a sum per tile
        chunk, nothing computed while building.

    Raises
    ------
    InvalidLabelsError
        When a labelled value is NaN, not an integer, negative or not below
        ``classes`` (on dask, when the counts are computed).

    Examples
    --------
    >>> import numpy as np, xarray as xr, xflipnslide
    >>> lab = xr.DataArray(np.array([[[0, 0], [1, 255]], [[2, 2], [2, 1]]], "uint8"),
    ...                    dims=("tile", "y", "x"))
    >>> lab.fns.class_counts(ignore_index=255).values
    array([[2, 1, 0],
           [0, 1, 3]])
    """
    labels = _labels(tiles, label, "class_counts")
    classes, ignore_index = _options(classes, ignore_index)
    counts = class_counts_array(labels.data, classes, ignore_index)
    coords = {**_tile_coords(labels), CLASS_DIM: np.arange(counts.shape[1])}
    return xr.DataArray(counts, dims=(TILE_DIM, CLASS_DIM), coords=coords, name="class_counts")


def _weights(totals: np.ndarray, method: str) -> np.ndarray:
    present = totals > 0
    n = float(totals.sum())
    w = np.zeros(totals.size, np.float64)
    if method == "balanced":
        w[present] = n / (int(present.sum()) * totals[present])
    else:
        root = np.sqrt(totals[present].astype(np.float64))
        w[present] = n / (root.sum() * root)
    return w.astype(np.float32)


def class_weights(
    tiles: xr.DataArray | xr.Dataset,
    *,
    label: Hashable = LABEL,
    classes: int | None = None,
    ignore_index: int | None = None,
    method: str = "balanced",
) -> np.ndarray:
    r"""Loss weights of the classes, from their pixel counts over all tiles.

    With ``n_c`` the number of pixels of class ``c`` (``ignore_index``
    pixels left out), ``N = sum_c n_c`` and ``K'`` the number of classes
    present (``n_c > 0``):

    * ``method="balanced"``: ``w_c = N / (K' n_c)``, scikit-learn's
      ``compute_class_weight("balanced", classes=present, y=pixels)``
      (King & Zeng 2001): every present class gets the same total weight
      ``n_c w_c = N / K'``;
    * ``method="inverse_sqrt"``: ``w_c = N / (sqrt(n_c) sum_j sqrt(n_j))``,
      so ``n_c w_c`` is proportional to ``sqrt(n_c)``: the loss-weight form
      of square-root sampling, ``p_c = n_c^(1/2) / sum_j n_j^(1/2)`` (Kang et
      al. 2020, "Decoupling Representation and Classifier for Long-Tailed
      Recognition", ICLR, who trace it to Mahajan et al. 2018, "Exploring the
      Limits of Weakly Supervised Pretraining", ECCV). Milder than
      ``"balanced"`` for very rare classes.

    Both keep ``sum_c n_c w_c = N``: the mean weight per labelled pixel is 1,
    so the loss keeps its scale. A class with no pixel gets weight 0 (it
    contributes nothing to the loss either way); scikit-learn raises instead
    when ``classes`` names a class absent from ``y``.

    Parameters
    ----------
    tiles, label, classes, ignore_index
        As for :func:`class_counts`. ``classes=None`` takes one more than the
        largest class id found; on dask it is found in the same single pass
        that counts.
    method
        ``"balanced"`` or ``"inverse_sqrt"``.

    Returns
    -------
    numpy.ndarray
        ``(K,)`` float32, index = class id: pass it as
        ``torch.nn.CrossEntropyLoss(weight=torch.as_tensor(w),
        ignore_index=...)``, or ``dict(enumerate(w))`` as Keras's
        ``class_weight``. Computes dask-backed labels (one pass).

    Raises
    ------
    InvalidParameterError
        When no pixel is labelled, or for an unknown ``method``.
    InvalidLabelsError
        As for :func:`class_counts`.

    Examples
    --------
    >>> import numpy as np, xarray as xr, xflipnslide
    >>> lab = xr.DataArray(np.array([[[0, 0], [0, 1]], [[0, 0], [0, 3]]], "uint8"),
    ...                    dims=("tile", "y", "x"))
    >>> xflipnslide.class_weights(lab)  # 6 px of 0, 1 of 1, none of 2, 1 of 3
    array([0.44444445, 2.6666667 , 0.        , 2.6666667 ], dtype=float32)
    """
    if method not in METHODS:
        raise InvalidParameterError(f"method must be one of {METHODS}; got {method!r}")
    labels = _labels(tiles, label, "class_weights")
    classes, ignore_index = _options(classes, ignore_index)
    totals = class_totals_array(labels.data, classes, ignore_index)
    if not totals.sum():
        raise InvalidParameterError(
            "class_weights: no pixel is labelled (every pixel is ignore_index="
            f"{ignore_index}), so no class has a frequency: check label= and ignore_index="
        )
    return _weights(totals, method)


def tile_labels(
    tiles: xr.DataArray | xr.Dataset,
    *,
    label: Hashable = LABEL,
    rule: str = "majority",
    ignore_index: int | None = None,
    min_fraction: float | None = None,
    classes: int | None = None,
    fill: int | None = None,
) -> xr.DataArray:
    """One label per tile, for chip classification: its majority class, or
    the classes present in it.

    Parameters
    ----------
    tiles, label, ignore_index, classes
        As for :func:`class_counts` (``classes`` is required on dask-backed
        labels).
    rule
        ``"majority"``: the class with the most labelled pixels in the tile;
        a tie goes to the smallest class id. ``"presence"``: multi-hot, True
        for every class whose share of the tile's labelled pixels is at
        least ``min_fraction`` (by default: any pixel of it).
    min_fraction
        In ``(0, 1]``. With ``"majority"``, a tile whose majority class holds
        less than this share of its labelled pixels gets ``fill`` (keep only
        clear-cut chips); with ``"presence"``, the least share that counts as
        present.
    fill
        The label of a tile with no labelled pixel (all ``ignore_index``),
        or below ``min_fraction``, under ``"majority"``: by default
        ``ignore_index`` (so the same ``ignore_index`` in the loss skips
        those tiles), else -1. It may not be a class id other than
        ``ignore_index``. The result keeps the labels' integer dtype when
        that holds ``fill`` or no tile can be filled (no ``ignore_index``
        the labels can hold, no ``min_fraction``), else the smallest integer
        dtype that holds both (uint8 labels with ``fill=-1`` give int16);
        float labels give int64.

    Returns
    -------
    DataArray
        ``(tile,)`` class ids (``"majority"``) or ``(tile, class)`` bool
        (``"presence"``; ``.astype("float32")`` for a BCE loss), with the
        tiles' coordinates along ``tile``; named like the labels. Lazy for
        dask-backed labels.

    Examples
    --------
    >>> import numpy as np, xarray as xr, xflipnslide
    >>> lab = xr.DataArray(np.array([[[0, 1], [1, 0]], [[2, 2], [2, 9]], [[9, 9], [9, 9]]], "int8"),
    ...                    dims=("tile", "y", "x"), name="label")
    >>> lab.fns.tile_labels(ignore_index=9).values  # a tie, then no pixel
    array([0, 2, 9], dtype=int8)
    >>> lab.fns.tile_labels(rule="presence", ignore_index=9).values
    array([[ True,  True, False],
           [False, False,  True],
           [False, False, False]])
    """
    labels = _labels(tiles, label, "tile_labels")
    classes, ignore_index = _options(classes, ignore_index)
    if min_fraction is not None:
        try:
            min_fraction = float(min_fraction)
        except (TypeError, ValueError) as exc:
            raise InvalidParameterError(
                f"min_fraction must be a number in (0, 1]; got {min_fraction!r}"
            ) from exc
        if not (math.isfinite(min_fraction) and 0 < min_fraction <= 1):
            raise InvalidParameterError(
                f"min_fraction must be in (0, 1] (a share of the tile's labelled pixels); got "
                f"{min_fraction!r}"
            )
    if fill is None:
        fill = ignore_index if ignore_index is not None else -1
    elif isinstance(fill, bool) or not isinstance(fill, numbers.Integral):
        raise InvalidParameterError(f"fill must be an integer; got {fill!r}")
    data = tile_labels_array(labels.data, rule, classes, ignore_index, min_fraction, int(fill))
    coords = _tile_coords(labels)
    if rule == "presence":
        coords[CLASS_DIM] = np.arange(data.shape[1])
        return xr.DataArray(data, dims=(TILE_DIM, CLASS_DIM), coords=coords, name=labels.name)
    return xr.DataArray(data, dims=(TILE_DIM,), coords=coords, name=labels.name)
