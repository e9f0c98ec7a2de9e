"""Leak-free splits: tiles dealt to subsets by spatial blocks, so no source
pixel is in two subsets; stratified by class on request (blocks cut around
rare classes by :mod:`.partition`, dealt by :mod:`.stratify`)."""

from __future__ import annotations

import math
from collections.abc import Hashable, Mapping

import numpy as np
import xarray as xr

from .. import schema
from .._core.classes import counts_if_free
from ..classes import class_counts
from ..collection import check_single_scene
from ..errors import (
    DataDroppedWarning,
    EmptySubsetError,
    InvalidParameterError,
    MissingClassWarning,
    check_positive_int,
    check_seed,
    warn,
)
from ..plan import read_ranges
from ..schema import LABEL, TILE_DIM, T_Xarray
from .partition import Partition, refine
from .stratify import assign_blocks

__all__ = ["split"]


def _check_fractions(fractions: Mapping[str, float] | None) -> dict[str, float]:
    if fractions is None:
        return {"train": 0.8, "val": 0.1, "test": 0.1}
    if not isinstance(fractions, Mapping) or not fractions:
        raise InvalidParameterError(
            "fractions must map subset names to fractions, e.g. {'train': 0.8, 'val': 0.2}; "
            f"got {fractions!r}"
        )
    try:
        out = {str(k): float(v) for k, v in fractions.items()}
    except (TypeError, ValueError) as exc:
        raise InvalidParameterError(f"fractions must be numbers; got {fractions!r}") from exc
    if (
        any(not math.isfinite(v) or v <= 0 for v in out.values())
        or abs(sum(out.values()) - 1) > 1e-6
    ):
        raise InvalidParameterError(
            f"fractions must be positive and add up to 1; got {out} (sum {sum(out.values()):g})"
        )
    return out


def _default_block_size(shape: tuple[int, int], tile_size: int, smallest: float) -> int:
    """Blocks as large as possible (fewer tiles dropped on block edges) while
    the scene still has about ``3 / smallest`` blocks, so even the smallest
    subset gets several; a multiple of the tile size, at least two tiles."""
    want = math.ceil(3 / smallest)
    side = math.sqrt(shape[0] * shape[1] / want)
    return tile_size * max(2, int(side // tile_size))


def _deal_blocks(
    fractions: dict[str, float], nby: int, nbx: int, inside: float, seed: int
) -> np.ndarray:
    """Subset index of each block: shuffled (seeded), in numbers chosen so the
    *kept tiles* land near ``fractions``.

    A block keeps its ``inside`` share of tiles (those wholly within it) plus
    the border tiles shared with same-subset neighbours, about
    ``(1 - inside) * f`` for a subset of fraction ``f``. Small subsets lose
    more, so they get proportionally more blocks: ``f / (inside + (1 - inside) f)``.
    """
    n = nby * nbx
    f = np.array(list(fractions.values()))
    weight = f / (inside + (1 - inside) * f)
    want = weight / weight.sum() * n
    counts = np.maximum(np.floor(want).astype(int), 1)
    while counts.sum() < n:
        counts[np.argmax(want - counts)] += 1
    while counts.sum() > n:
        over = np.where(counts > 1, counts - want, -np.inf)
        counts[np.argmax(over)] -= 1
    owner = np.empty(n, dtype=np.int64)
    owner[np.random.default_rng(seed).permutation(n)] = np.repeat(np.arange(f.size), counts)
    return owner.reshape(nby, nbx)


def _label_counts(tiles, stratify, label, classes, ignore_index) -> np.ndarray | None:
    """``(tile, class)`` pixel counts of the labels a split looks at, or ``None``.

    Those of ``stratify`` or ``label`` (computed on dask: the user asked);
    else those of an integer ``label`` variable the tiles hold in memory
    (free to count); else none."""
    if stratify is not None and label is not None and stratify != label:
        raise InvalidParameterError(
            f"split: stratify={stratify!r} and label={label!r} name different variables; "
            "stratify= names the label variable: pass one of them"
        )
    name = stratify if stratify is not None else label
    if name is None:
        var = tiles.data_vars.get(LABEL) if isinstance(tiles, xr.Dataset) else None
        if var is None or var.dtype.kind not in "iub":
            return None
        return counts_if_free(var.transpose(TILE_DIM, ...).data, classes, ignore_index)
    elif not isinstance(tiles, xr.Dataset):
        raise InvalidParameterError(
            f"split(stratify=/label={name!r}) reads the label variable of a Dataset of tiles, "
            "e.g. xr.Dataset({'image': image, 'label': label}).fns.tile(...)"
        )
    counts = class_counts(tiles, label=name, classes=classes, ignore_index=ignore_index)
    return np.asarray(counts.values)


def _warn_missing_classes(counts, subset, names, stratified: bool) -> list[list[int]]:
    """Each subset's pixels of every class; warn naming each class of the
    tiles that some subset lacks."""
    per = [counts[subset == i].sum(0) for i in range(len(names))]
    total = counts.sum(0)
    missing = []
    for c in np.flatnonzero(total).tolist():
        lack = [repr(n) for n, p in zip(names, per) if not p[c]]
        if lack:
            missing.append(f"class {c} ({int(total[c])} px) is in no {' or '.join(lack)} tile")
    if missing:
        fix = (
            "their labelled pixels lie in too few places for pixel-disjoint subsets to share "
            "them (each subset needs a tile of the class wholly in its own blocks): a smaller "
            "tile_size, more labelled areas of them, or fewer subsets"
            if stratified
            else "stratify='label' deals blocks by class (and cuts blocks around rare ones)"
        )
        warn(f"split: {'; '.join(missing)}: {fix}", MissingClassWarning)
    return [[int(v) for v in p] for p in per]


def _stratified_deal(g, ys, xs, counts, fractions, block_size, seed):
    """The blocks of a stratified split (the grid, recut around rare classes by
    :func:`~.partition.refine`) and the subset of each: the blocks' class histograms (the counts of the
    tiles wholly inside each) dealt by :func:`~.stratify.assign_blocks`, each
    block sized by those tiles."""
    oy, ox = (max(int(v.min()), 0) if len(v) else 0 for v in (g.rows, g.cols))
    (h, w), size = g.scene_shape, block_size
    part = Partition(oy, ox, size, -(-(h - oy) // size), -(-(w - ox) // size))
    refine(part, ys, xs, counts > 0, len(fractions))
    inside = part.inside(ys, xs)
    whole = inside >= 0
    n_blocks = len(part.blocks)
    hist = np.zeros((n_blocks, counts.shape[1]), np.int64)
    np.add.at(hist, inside[whole], counts[whole])
    sizes = np.bincount(inside[whole], minlength=n_blocks)
    return part, assign_blocks(hist, fractions, seed, sizes=sizes).subset


def split(
    tiles: T_Xarray,
    *,
    fractions: Mapping[str, float] | None = None,
    block_size: int | None = None,
    seed: int = 0,
    stratify: Hashable | None = None,
    label: Hashable | None = None,
    classes: int | None = None,
    ignore_index: int | None = None,
) -> dict[str, T_Xarray]:
    """Split tiles into subsets with no source pixel in two of them.

    The scene is cut into square blocks of ``block_size`` pixels; blocks are
    dealt to the subsets in proportion to ``fractions``: shuffled (seeded),
    or by class with ``stratify``. A tile whose source pixels all lie in
    blocks of one subset goes to that subset; a tile that spans blocks of
    different subsets is dropped. Overlapping tiles therefore never leak
    pixels from training into evaluation.

    Parameters
    ----------
    tiles
        Output of :func:`xflipnslide.tile` (it needs ``row``/``col`` and the
        ``fns_scene_shape`` attr, on the tiles or their variables).
    fractions
        Subset name to fraction; default ``{"train": 0.8, "val": 0.1,
        "test": 0.1}``: of the *blocks* (of the tiles wholly inside blocks
        with ``stratify``). Fractions of kept tiles land near these, not
        exactly: blocks hold different numbers of tiles.
    block_size
        Block side in pixels, at least the tile size. Larger blocks drop
        fewer tiles (only tiles on block borders can be dropped) but deal
        the scene in coarser pieces. By default: the largest multiple of the
        tile size that still leaves about ``3 / min(fractions)`` blocks (at
        least two tiles wide).
    seed
        Seed of the deal (an int); the same seed gives the same split.
    stratify
        The label variable of a Dataset of tiles (e.g. ``"label"``): deal
        the blocks so that every class of the tiles reaches every subset
        where it can, and the subsets' class shares track the whole set's
        (iterative stratification over the blocks' class histograms, see
        ``docs/classes.md``). Blocks in which a rare class would reach too
        few subsets are first cut in two or four through its tiles. On dask
        the labels are counted (computed) once, and ``classes=`` is needed.
    label
        Without ``stratify``: the label variable whose classes each subset
        is checked for (a warning names any class a subset lacks; on dask
        this computes the counts, and needs ``classes=``). By default an
        integer ``"label"`` variable is checked when it is in memory (lazy
        labels are not read unless asked).
    classes, ignore_index
        As for :func:`~xflipnslide.class_counts`: the number of classes and
        the value of unlabelled pixels (counted in no class).

    Returns
    -------
    dict
        Subset name to tiles (``isel`` of the input, lazy if it was). Each
        carries attrs ``fns_split`` (its name), ``fns_split_block_size``,
        ``fns_split_seed`` and ``fns_split_dropped`` (tiles dropped in the
        whole split), and where the classes were counted
        ``fns_split_class_counts`` (its labelled pixels of each class id).

    Raises
    ------
    EmptySubsetError
        When a subset gets no tile; the message says what to change.

    Warns
    -----
    DataDroppedWarning
        With the number of tiles dropped because they straddle subsets.
    MissingClassWarning
        Naming each class of the tiles that a subset lacks, and the subsets.

    Examples
    --------
    >>> import numpy as np, xarray as xr, xflipnslide, warnings
    >>> scene = xr.DataArray(np.zeros((1, 2048, 2048), "float32"), dims=("band", "y", "x"))
    >>> tiles = scene.fns.tile(128)
    >>> with warnings.catch_warnings():
    ...     warnings.simplefilter("ignore", xflipnslide.DataDroppedWarning)
    ...     parts = tiles.fns.split(seed=1)
    >>> kept = {name: part.sizes["tile"] for name, part in parts.items()}
    >>> sum(kept.values()) + parts["train"].attrs["fns_split_dropped"] == tiles.sizes["tile"]
    True
    """
    fractions = _check_fractions(fractions)
    seed = check_seed(seed, "split")
    check_single_scene(
        tiles,
        "split",
        "splitting each scene apart leaks wherever scenes overlap on the ground; split "
        "scenes that do not overlap one by one (xflipnslide.scene_tiles) and combine the "
        "subsets with xflipnslide.concat_tiles",
    )
    g = schema.read_geometry(tiles, what="split")
    if g.scene_shape is None:
        raise InvalidParameterError(
            f"split needs the scene shape the tiles record (attr {schema.SCENE_SHAPE}, which "
            "tile() writes on the tiles and on each tiled variable); tile the scene again"
        )
    (h, w), T = g.scene_shape, g.tile_size
    if block_size is None:
        block_size = _default_block_size((h, w), T, min(fractions.values()))
    block_size = check_positive_int(block_size, "block_size")
    if block_size < T:
        raise InvalidParameterError(
            f"block_size={block_size} is smaller than the {T} px tiles, so every tile would "
            f"straddle blocks and be dropped: use block_size >= {T} (e.g. {4 * T})"
        )
    oy, ox = (max(int(v.min()), 0) if len(v) else 0 for v in (g.rows, g.cols))
    nby, nbx = -(-(h - oy) // block_size), -(-(w - ox) // block_size)
    n_blocks = nby * nbx
    if n_blocks < len(fractions):
        raise InvalidParameterError(
            f"block_size={block_size} cuts the {h} x {w} scene into {n_blocks} blocks, fewer than "
            f"the {len(fractions)} subsets: use a smaller block_size"
        )
    counts = _label_counts(tiles, stratify, label, classes, ignore_index)
    # The pixels each tile reads (reflected padding included), and their blocks.
    ys, xs = read_ranges(g.rows, T, h), read_ranges(g.cols, T, w)
    if stratify is None:
        part = Partition(oy, ox, block_size, nby, nbx)
        inside = float(np.mean(part.inside(ys, xs) >= 0)) if len(g) else 1.0
        owner = _deal_blocks(fractions, nby, nbx, inside, seed).ravel()
    else:
        part, owner = _stratified_deal(g, ys, xs, counts, fractions, block_size, seed)
    names = list(fractions)
    subset = part.owners(owner, ys, xs)
    dropped = int((subset < 0).sum())
    blocks = f"{len(part.blocks)} blocks of {block_size} px"
    blocks += " or less (cut around rare classes)" if stratify is not None else ""
    kept = {n: int((subset == i).sum()) for i, n in enumerate(names)}
    empty = [n for n, c in kept.items() if not c]
    if empty:
        raise EmptySubsetError(
            f"split: subset(s) {empty} got no tile ({kept}, {dropped} of {len(g)} dropped "
            f"with {blocks}): use a larger scene, a smaller tile_size, a larger fraction for "
            "them, or another block_size or seed"
        )
    if dropped:
        warn(
            f"split: {dropped} of {len(g)} tiles straddle blocks of two subsets and are in no "
            f"subset ({', '.join(f'{n} {c}' for n, c in kept.items())}; {blocks}). A larger "
            "block_size drops fewer",
            DataDroppedWarning,
        )
    per_class = (
        _warn_missing_classes(counts, subset, names, stratify is not None)
        if counts is not None
        else None
    )
    out = {}
    for i, name in enumerate(names):
        sub = tiles.isel({TILE_DIM: np.flatnonzero(subset == i)})
        sub.attrs = {
            **tiles.attrs,
            schema.SPLIT: name,
            schema.SPLIT_BLOCK_SIZE: int(block_size),
            schema.SPLIT_SEED: seed,
            schema.SPLIT_DROPPED: dropped,
        }
        if per_class is not None:
            sub.attrs[schema.SPLIT_CLASS_COUNTS] = per_class[i]
        out[name] = sub
    return out
