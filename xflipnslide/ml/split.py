"""Leak-free splits: tiles dealt to subsets by spatial blocks, so no source
pixel is in two subsets."""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np

from .. import schema
from ..errors import (
    DataDroppedWarning,
    EmptySubsetError,
    InvalidParameterError,
    check_positive_int,
    check_seed,
    warn,
)
from ..plan import read_ranges
from ..schema import TILE_DIM, T_Xarray

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


def split(
    tiles: T_Xarray,
    *,
    fractions: Mapping[str, float] | None = None,
    block_size: int | None = None,
    seed: int = 0,
) -> dict[str, T_Xarray]:
    """Split tiles into subsets with no source pixel in two of them.

    The scene is cut into square blocks of ``block_size`` pixels; blocks are
    shuffled (seeded) and dealt to the subsets in proportion to
    ``fractions``. A tile whose source pixels all lie in blocks of one
    subset goes to that subset; a tile that spans blocks of different
    subsets is dropped. Overlapping tiles therefore never leak pixels from
    training into evaluation.

    Parameters
    ----------
    tiles
        Output of :func:`xflipnslide.tile` (it needs ``row``/``col`` and the
        ``fns_scene_shape`` attr, on the tiles or their variables).
    fractions
        Subset name to fraction of the *blocks*; default
        ``{"train": 0.8, "val": 0.1, "test": 0.1}``. Fractions of kept tiles
        land near these, not exactly: blocks hold different numbers of tiles.
    block_size
        Block side in pixels, at least the tile size. Larger blocks drop
        fewer tiles (only tiles on block borders can be dropped) but deal
        the scene in coarser pieces. By default: the largest multiple of the
        tile size that still leaves about ``3 / min(fractions)`` blocks (at
        least two tiles wide).
    seed
        Seed of the block shuffle (an int); the same seed gives the same split.

    Returns
    -------
    dict
        Subset name to tiles (``isel`` of the input, lazy if it was). Each
        carries attrs ``fns_split`` (its name), ``fns_split_block_size``,
        ``fns_split_seed`` and ``fns_split_dropped`` (tiles dropped in the
        whole split).

    Raises
    ------
    EmptySubsetError
        When a subset gets no tile; the message says what to change.

    Warns
    -----
    DataDroppedWarning
        With the number of tiles dropped because they straddle subsets.

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
    # Which blocks each tile's source pixels touch (reflected padding included).
    ys, xs = read_ranges(g.rows, T, h), read_ranges(g.cols, T, w)
    by0, by1 = (ys[:, 0] - oy) // block_size, (ys[:, 1] - 1 - oy) // block_size + 1
    bx0, bx1 = (xs[:, 0] - ox) // block_size, (xs[:, 1] - 1 - ox) // block_size + 1
    inside = float(np.mean((by1 - by0 == 1) & (bx1 - bx0 == 1))) if len(g) else 1.0
    owner = _deal_blocks(fractions, nby, nbx, inside, seed)
    names = list(fractions)
    subset = np.full(len(g), -1, dtype=np.int64)
    for k in range(len(g)):
        seen = np.unique(owner[by0[k] : by1[k], bx0[k] : bx1[k]])
        if seen.size == 1:
            subset[k] = seen[0]
    dropped = int((subset < 0).sum())
    counts = {n: int((subset == i).sum()) for i, n in enumerate(names)}
    empty = [n for n, c in counts.items() if not c]
    if empty:
        raise EmptySubsetError(
            f"split: subset(s) {empty} got no tile ({counts}, {dropped} of {len(g)} dropped "
            f"with {n_blocks} blocks of {block_size} px): use a larger scene, a smaller "
            "tile_size, a larger fraction for them, or another block_size or seed"
        )
    if dropped:
        warn(
            f"split: {dropped} of {len(g)} tiles straddle blocks of two subsets and are in no "
            f"subset ({', '.join(f'{n} {c}' for n, c in counts.items())}; {n_blocks} blocks of "
            f"{block_size} px). A larger block_size drops fewer",
            DataDroppedWarning,
        )
    out = {}
    for i, name in enumerate(names):
        part = tiles.isel({TILE_DIM: np.flatnonzero(subset == i)})
        part.attrs = {
            **tiles.attrs,
            schema.SPLIT: name,
            schema.SPLIT_BLOCK_SIZE: int(block_size),
            schema.SPLIT_SEED: seed,
            schema.SPLIT_DROPPED: dropped,
        }
        out[name] = part
    return out
