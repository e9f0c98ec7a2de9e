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
from ..collection import is_collection
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
from .ground import GroundBlocks, ground_blocks
from .partition import Partition, refine
from .stratify import assign_blocks

__all__ = ["split"]

#: What ``split(by=...)`` deals to the subsets: blocks of ground, or whole scenes.
_BY_BLOCK, _BY_SCENE = "block", "scene"
_BY = (_BY_BLOCK, _BY_SCENE)


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
    hist = _histograms(counts[whole], inside[whole], n_blocks)
    sizes = np.bincount(inside[whole], minlength=n_blocks)
    return part, assign_blocks(hist, fractions, seed, sizes=sizes).subset


def split(
    tiles: T_Xarray,
    *,
    fractions: Mapping[str, float] | None = None,
    block_size: int | None = None,
    seed: int = 0,
    by: str = "block",
    stratify: Hashable | None = None,
    label: Hashable | None = None,
    classes: int | None = None,
    ignore_index: int | None = None,
) -> dict[str, T_Xarray]:
    """Split tiles into subsets with no source pixel (no ground) in two of them.

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
        with ``stratify``; of the tiles with ``by="scene"``). Fractions of
        kept tiles land near these, not exactly: blocks hold different
        numbers of tiles.
    block_size
        Block side in pixels, at least the tile size. Larger blocks drop
        fewer tiles (only tiles on block borders can be dropped) but deal
        the scene in coarser pieces. By default: the largest multiple of the
        tile size that still leaves about ``3 / min(fractions)`` blocks (at
        least two tiles wide); for a collection, what its largest scene
        alone would get, in pixels of each region's reference scene.
    seed
        Seed of the deal (an int); the same seed gives the same split.
    by
        ``"block"``: blocks of ground dealt to the subsets (above).
        ``"scene"``: a collection's whole scenes dealt to the subsets, in
        proportion to their tiles (groups of scenes that overlap on the
        ground go together); no tile is dropped, and there must be at least
        as many groups as subsets.
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
        Subsets of a collection also carry ``fns_split_by`` (``"block"`` or
        ``"scene"``) and ``fns_split_scene_tiles``: its tiles from each
        scene, in the order of ``xflipnslide.collection.scene_ids(tiles)``
        (scenes without a tile in it are 0).

    Raises
    ------
    EmptySubsetError
        When a subset gets no tile (or ``by="scene"`` finds fewer groups of
        scenes than subsets); the message says what to change.
    InvalidParameterError
        For a collection whose scenes cannot be placed on the ground (no
        transform; a CRS on some scenes only), or ``by="scene"`` on one scene.

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

    Two scenes that overlap on the ground by 256 px, dealt whole:

    >>> def scene(x0):
    ...     coords = {"y": -30.0 * np.arange(512), "x": x0 + 30.0 * np.arange(512)}
    ...     return xr.DataArray(np.zeros((1, 512, 512), "float32"), dims=("band", "y", "x"),
    ...                         coords={"band": [1], **coords})
    >>> collection = xflipnslide.tile({"a": scene(0.0), "b": scene(7680.0), "c": scene(1e6)}, 128)
    >>> parts = collection.fns.split(by="scene", fractions={"train": 0.5, "test": 0.5})
    >>> sorted(tuple(sorted(set(p.scene.values.tolist()))) for p in parts.values())
    [('a', 'b'), ('c',)]
    """
    fractions = _check_fractions(fractions)
    seed = check_seed(seed, "split")
    if by not in _BY:
        raise InvalidParameterError(
            f"by must be 'block' (blocks of ground dealt to subsets) or 'scene' (whole scenes); "
            f"got {by!r}"
        )
    counts = None
    if is_collection(tiles):
        counts = _label_counts(tiles, stratify, label, classes, ignore_index)
        return _split_collection(tiles, fractions, block_size, seed, by, counts, stratify)
    if by == _BY_SCENE:
        raise InvalidParameterError(
            "split(by='scene') deals the whole scenes of a collection, but these tiles are of one "
            "scene: use by='block' (the default), or tile several scenes together "
            "(xflipnslide.tile({id: scene, ...}, ...))"
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
    block_size = _check_block_size(block_size, T)
    oy, ox = (max(int(v.min()), 0) if len(v) else 0 for v in (g.rows, g.cols))
    nby, nbx = -(-(h - oy) // block_size), -(-(w - ox) // block_size)
    _check_enough_blocks(nby * nbx, fractions, block_size, f"the {h} x {w} scene")
    counts = _label_counts(tiles, stratify, label, classes, ignore_index)
    # The pixels each tile reads (reflected padding included), and their blocks.
    ys, xs = read_ranges(g.rows, T, h), read_ranges(g.cols, T, w)
    if stratify is None:
        part = Partition(oy, ox, block_size, nby, nbx)
        inside = float(np.mean(part.inside(ys, xs) >= 0)) if len(g) else 1.0
        owner = _deal_blocks(fractions, nby, nbx, inside, seed).ravel()
    else:
        part, owner = _stratified_deal(g, ys, xs, counts, fractions, block_size, seed)
    subset = part.owners(owner, ys, xs)
    blocks = f"{len(part.blocks)} blocks of {block_size} px"
    blocks += " or less (cut around rare classes)" if stratify is not None else ""
    attrs = {schema.SPLIT_BLOCK_SIZE: int(block_size)}
    return _subsets(tiles, subset, fractions, blocks, seed, counts, stratify, attrs, None)


def _check_block_size(block_size, T: int) -> int:
    block_size = check_positive_int(block_size, "block_size")
    if block_size < T:
        raise InvalidParameterError(
            f"block_size={block_size} is smaller than the {T} px tiles, so every tile would "
            f"straddle blocks and be dropped: use block_size >= {T} (e.g. {4 * T})"
        )
    return block_size


def _check_enough_blocks(n_blocks: int, fractions: dict, block_size: int, what: str) -> None:
    if n_blocks < len(fractions):
        raise InvalidParameterError(
            f"block_size={block_size} cuts {what} into {n_blocks} blocks, fewer than the "
            f"{len(fractions)} subsets: use a smaller block_size"
        )


def _split_collection(tiles, fractions, block_size, seed, by, counts, stratify):
    """:func:`split` of a collection: blocks (or groups of overlapping
    scenes) of ground dealt to subsets, see :mod:`.ground`."""
    gb = ground_blocks(
        tiles,
        block_size,
        lambda shape, T: _default_block_size(shape, T, min(fractions.values())),
    )
    n = len(gb.region)
    if by == _BY_SCENE:
        group = gb.groups[gb.scene_of]
        n_groups = int(gb.groups.max()) + 1
        if n_groups < len(fractions):
            raise EmptySubsetError(
                f"split(by='scene'): the {len(gb.ids)} scenes form {n_groups} group(s) of "
                f"scenes that overlap on the ground, fewer than the {len(fractions)} subsets "
                "(overlapping scenes go to one subset together): add scenes, use fewer "
                "subsets, or by='block'"
            )
        sizes = np.bincount(group, minlength=n_groups)
        hist = _histograms(counts, group, n_groups) if stratify is not None else sizes[:, None]
        subset = assign_blocks(hist, fractions, seed, sizes=sizes).subset[group]
        where = f"{n_groups} groups of overlapping scenes"
        attrs = {schema.SPLIT_BY: _BY_SCENE}
        return _subsets(tiles, subset, fractions, where, seed, counts, stratify, attrs, gb)
    _check_block_size(gb.block_size, gb.tile_size)
    tile, block = gb.touched()
    n_blocks = int(block.max()) + 1 if len(block) else 0
    _check_enough_blocks(
        n_blocks, fractions, gb.block_size, f"the ground of the {len(gb.ids)} scenes"
    )
    touches = np.bincount(tile, minlength=n)
    home = np.full(n, -1, np.int64)
    alone = touches[tile] == 1
    home[tile[alone]] = block[alone]
    if stratify is None:
        inside = float(np.mean(home >= 0)) if n else 1.0
        owner = _deal_blocks(fractions, n_blocks, 1, inside, seed).ravel()
    else:
        whole = home >= 0
        hist = _histograms(counts[whole], home[whole], n_blocks)
        sizes = np.bincount(home[whole], minlength=n_blocks)
        owner = assign_blocks(hist, fractions, seed, sizes=sizes).subset
    lo, hi = np.full(n, len(fractions), np.int64), np.full(n, -1, np.int64)
    np.minimum.at(lo, tile, owner[block])
    np.maximum.at(hi, tile, owner[block])
    subset = np.where(lo == hi, lo, -1)
    where = f"{n_blocks} blocks of {gb.block_size} px of ground"
    attrs = {schema.SPLIT_BY: _BY_BLOCK, schema.SPLIT_BLOCK_SIZE: int(gb.block_size)}
    return _subsets(tiles, subset, fractions, where, seed, counts, stratify, attrs, gb)


def _histograms(counts: np.ndarray, owner: np.ndarray, n: int) -> np.ndarray:
    """``(n, K)`` sums of the ``(tile, K)`` ``counts`` by each tile's ``owner``."""
    hist = np.zeros((n, counts.shape[1]), np.int64)
    np.add.at(hist, owner, counts)
    return hist


def _per_scene(gb: GroundBlocks | None, mask: np.ndarray) -> list[int] | None:
    if gb is None:
        return None
    return np.bincount(gb.scene_of[mask], minlength=len(gb.ids)).tolist()


def _subsets(tiles, subset, fractions, blocks, seed, counts, stratify, attrs, gb):
    """The subsets of ``tiles`` (``subset``: each tile's index, -1 dropped),
    with their attrs, after the checks and warnings every split makes."""
    names = list(fractions)
    n = len(subset)
    dropped = int((subset < 0).sum())
    kept = {name: int((subset == i).sum()) for i, name in enumerate(names)}
    empty = [name for name, c in kept.items() if not c]
    if empty:
        raise EmptySubsetError(
            f"split: subset(s) {empty} got no tile ({kept}, {dropped} of {n} dropped "
            f"with {blocks}): use a larger scene, a smaller tile_size, a larger fraction for "
            "them, or another block_size or seed"
        )
    if dropped:
        scenes = ""
        if gb is not None:
            lost = _per_scene(gb, subset < 0)
            scenes = " (by scene: " + ", ".join(f"{i} {c}" for i, c in zip(gb.ids, lost)) + ")"
        warn(
            f"split: {dropped} of {n} tiles{scenes} straddle blocks of two subsets and are in "
            f"no subset ({', '.join(f'{k} {c}' for k, c in kept.items())}; {blocks}). A larger "
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
            **attrs,
            schema.SPLIT: name,
            schema.SPLIT_SEED: seed,
            schema.SPLIT_DROPPED: dropped,
        }
        if gb is not None:
            sub.attrs[schema.SPLIT_SCENE_TILES] = _per_scene(gb, subset == i)
        if per_class is not None:
            sub.attrs[schema.SPLIT_CLASS_COUNTS] = per_class[i]
        out[name] = sub
    return out
