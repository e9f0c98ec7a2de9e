"""Machine learning helpers: leak-free splits, xbatcher batches, PyTorch loaders.

torch is imported only inside :func:`torch_loader`.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Hashable, Mapping
from typing import Any, TypeVar

import numpy as np
import xarray as xr

from ._array import _read_range
from .errors import InvalidParameterError, require
from .tiling import TILE_DIM, _tile_side

__all__ = ["batches", "split", "torch_loader"]

log = logging.getLogger(__name__)

T_Xarray = TypeVar("T_Xarray", xr.DataArray, xr.Dataset)


def batches(tiles: T_Xarray, batch_size: int = 32, *, preload_batch: bool = True):
    """Batches of tiles for training, as an :class:`xbatcher.BatchGenerator`.

    Equivalent to ``xbatcher.BatchGenerator(tiles, input_dims={every dim but
    "tile": its full size}, batch_dims={"tile": batch_size})``: each batch
    is ``(tile: batch_size, *other, y, x)`` with the tile coordinates along.

    Parameters
    ----------
    tiles
        The output of :func:`tile` (or tiles reloaded from Zarr).
    batch_size
        Tiles per batch. xbatcher yields only full batches: the last
        ``n_tiles % batch_size`` tiles are in no batch (logged at WARNING).
    preload_batch
        Passed to xbatcher: load each batch into memory at once.

    Examples
    --------
    >>> import numpy as np, xarray as xr, xflipnslide
    >>> scene = xr.DataArray(np.zeros((3, 1024, 1024), "float32"), dims=("band", "y", "x"))
    >>> gen = scene.fns.tile(tile_size=256).fns.batches(batch_size=16)
    >>> len(gen), gen[0].sizes
    (5, Frozen({'tile': 16, 'band': 3, 'y': 256, 'x': 256}))
    """
    import xbatcher

    if TILE_DIM not in tiles.dims:
        raise InvalidParameterError(
            f"batches takes tiles (a {TILE_DIM!r} dimension); got dims {tuple(tiles.dims)}. "
            "Call .fns.tile(...) first."
        )
    if (
        isinstance(batch_size, bool)
        or not isinstance(batch_size, (int, np.integer))
        or batch_size <= 0
    ):
        raise InvalidParameterError(f"batch_size must be a positive integer; got {batch_size!r}")
    n = tiles.sizes[TILE_DIM]
    if batch_size > n:
        raise InvalidParameterError(
            f"batch_size={batch_size} is more than the {n} tiles there are; use batch_size <= {n}"
        )
    if n % batch_size:
        log.warning(
            "%d of %d tiles are in no batch: xbatcher yields only full batches of %d",
            n % batch_size,
            n,
            batch_size,
        )
    input_dims = {d: s for d, s in tiles.sizes.items() if d != TILE_DIM}
    return xbatcher.BatchGenerator(
        tiles,
        input_dims=input_dims,
        batch_dims={TILE_DIM: int(batch_size)},
        preload_batch=preload_batch,
    )


def _check_fractions(fractions: Mapping[str, float]) -> dict[str, float]:
    if not isinstance(fractions, Mapping) or not fractions:
        raise InvalidParameterError(
            f"fractions must map subset names to fractions; got {fractions!r}"
        )
    out = {str(k): float(v) for k, v in fractions.items()}
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
        ``fns_scene_shape`` attr).
    fractions
        Subset name to fraction of the *blocks*; default
        ``{"train": 0.8, "val": 0.1, "test": 0.1}``. Fractions of kept tiles
        land near these, not exactly: blocks hold different numbers of tiles.
    block_size
        Block side in pixels. Larger blocks drop fewer tiles (only tiles on
        block borders can be dropped) but deal the scene in coarser pieces.
        By default: the largest multiple of the tile size that still leaves
        about ``3 / min(fractions)`` blocks (at least two tiles wide).
    seed
        Seed of the block shuffle; the same seed gives the same split.

    Returns
    -------
    dict
        Subset name to tiles (``isel`` of the input, lazy if it was). Each
        carries attrs ``fns_split`` (its name), ``fns_split_block_size``,
        ``fns_split_seed`` and ``fns_split_dropped`` (tiles dropped in the
        whole split, also logged).

    Examples
    --------
    >>> import numpy as np, xarray as xr, xflipnslide
    >>> scene = xr.DataArray(np.zeros((1, 2048, 2048), "float32"), dims=("band", "y", "x"))
    >>> tiles = scene.fns.tile(128)
    >>> parts = tiles.fns.split(seed=1)
    >>> kept = {name: part.sizes["tile"] for name, part in parts.items()}
    >>> sum(kept.values()) + parts["train"].attrs["fns_split_dropped"] == tiles.sizes["tile"]
    True
    """
    fractions = _check_fractions(fractions or {"train": 0.8, "val": 0.1, "test": 0.1})
    if TILE_DIM not in tiles.dims or not {"row", "col"} <= set(tiles.coords):
        raise InvalidParameterError(
            "split takes the output of tile() (a 'tile' dim with row/col coords)"
        )
    shape = tiles.attrs.get("fns_scene_shape")
    if shape is None:
        raise InvalidParameterError(
            "split needs the tiles' fns_scene_shape attr, which tile() writes"
        )
    h, w = (int(n) for n in shape)
    T = _tile_side(tiles)
    if block_size is None:
        block_size = _default_block_size((h, w), T, min(fractions.values()))
    if (
        isinstance(block_size, bool)
        or not isinstance(block_size, (int, np.integer))
        or block_size <= 0
    ):
        raise InvalidParameterError(
            f"block_size must be a positive number of pixels; got {block_size!r}"
        )
    rows = np.asarray(tiles["row"].values, np.int64)
    cols = np.asarray(tiles["col"].values, np.int64)
    oy, ox = max(int(rows.min()), 0), max(int(cols.min()), 0)
    nby, nbx = -(-(h - oy) // block_size), -(-(w - ox) // block_size)
    n_blocks = nby * nbx
    if n_blocks < len(fractions):
        raise InvalidParameterError(
            f"block_size={block_size} cuts the {h} x {w} scene into {n_blocks} blocks, fewer than "
            f"the {len(fractions)} subsets: use a smaller block_size"
        )
    # Which blocks each tile's source pixels touch (reflected padding included).
    spans = []
    for r, c in zip(rows.tolist(), cols.tolist()):
        (a, b), (d, e) = _read_range(r, r + T, h), _read_range(c, c + T, w)
        spans.append(
            (
                slice((a - oy) // block_size, (b - 1 - oy) // block_size + 1),
                slice((d - ox) // block_size, (e - 1 - ox) // block_size + 1),
            )
        )
    inside = np.mean([sy.stop - sy.start == 1 and sx.stop - sx.start == 1 for sy, sx in spans])
    owner = _deal_blocks(fractions, nby, nbx, inside, seed)
    names = list(fractions)
    subset = np.full(rows.size, -1, dtype=np.int64)
    for k, (sy, sx) in enumerate(spans):
        seen = np.unique(owner[sy, sx])
        if seen.size == 1:
            subset[k] = seen[0]
    dropped = int((subset < 0).sum())
    log.info(
        "split: %d blocks of %d px; %s; %d of %d tiles dropped (span blocks of two subsets)",
        n_blocks,
        block_size,
        ", ".join(f"{n} {int((subset == i).sum())}" for i, n in enumerate(names)),
        dropped,
        rows.size,
    )
    out = {}
    for i, name in enumerate(names):
        if not (subset == i).any():
            log.warning(
                "split: subset %r got no tile (its blocks hold none whole); use a smaller "
                "block_size or another seed",
                name,
            )
        part = tiles.isel({TILE_DIM: np.flatnonzero(subset == i)})
        part.attrs = {
            **tiles.attrs,
            "fns_split": name,
            "fns_split_block_size": int(block_size),
            "fns_split_seed": int(seed),
            "fns_split_dropped": dropped,
        }
        out[name] = part
    return out


def _float_tensor(batch: xr.DataArray):
    import torch

    return torch.as_tensor(np.asarray(batch.values, dtype=np.float32))


def _long_tensor(batch: xr.DataArray):
    import torch

    return torch.as_tensor(np.asarray(batch.values, dtype=np.int64))


def torch_loader(
    tiles: xr.DataArray | xr.Dataset,
    batch_size: int = 32,
    *,
    image: Hashable = "image",
    label: Hashable | None = None,
    shuffle: bool = False,
    num_workers: int = 0,
) -> Any:
    """A :class:`torch.utils.data.DataLoader` of tile batches, through xbatcher.

    Builds ``xbatcher.BatchGenerator`` s over the tiles (see :func:`batches`)
    and ``xbatcher.loaders.torch.MapDataset`` over them; each item is
    already a batch, so the loader has ``batch_size=None``.

    Parameters
    ----------
    tiles
        Tiles as a DataArray (images only), or a Dataset holding the image
        variable and, optionally, a label variable tiled with it.
    batch_size
        Tiles per batch (a trailing partial batch is left out by xbatcher,
        and logged).
    image, label
        Dataset variable names of the images (default ``"image"``) and the
        labels (none by default).
    shuffle
        Shuffle the order of the batches each epoch (the tiles within a batch
        stay together).
    num_workers
        DataLoader worker processes.

    Returns
    -------
    torch.utils.data.DataLoader
        Yields float32 ``(B, C, T, T)`` image tensors, or
        ``(images, labels)`` pairs with int64 ``(B, T, T)`` labels.

    Raises
    ------
    MissingDependencyError
        Without torch: ``pip install "xflipnslide[torch]"``.
    """
    torch = require("torch", "torch", "torch_loader")
    require("xbatcher.loaders.torch", "torch", "torch_loader")
    from xbatcher.loaders.torch import MapDataset

    if isinstance(tiles, xr.Dataset):
        for name in (image, label):
            if name is not None and name not in tiles.data_vars:
                raise InvalidParameterError(
                    f"no variable {name!r} in the tiles; they hold {list(tiles.data_vars)}"
                )
        x = tiles[image]
        y = tiles[label] if label is not None else None
    else:
        if label is not None:
            raise InvalidParameterError("label= needs a Dataset of image and label tiles")
        x, y = tiles, None
    dataset = MapDataset(
        batches(x, batch_size),
        batches(y, batch_size) if y is not None else None,
        transform=_float_tensor,
        target_transform=_long_tensor,
    )
    return torch.utils.data.DataLoader(
        dataset, batch_size=None, shuffle=shuffle, num_workers=num_workers
    )
