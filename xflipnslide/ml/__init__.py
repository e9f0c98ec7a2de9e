"""Machine learning helpers: leak-free splits, xbatcher batches, and the
PyTorch and TensorFlow feeds.

torch and tensorflow are imported only inside :func:`torch_loader` and
:func:`tf_dataset`.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Hashable, Iterator, Mapping
from typing import Any

import numpy as np
import xarray as xr

from .. import schema
from .._core.tiling import load_arrays
from ..errors import (
    DataDroppedWarning,
    EmptySubsetError,
    InvalidParameterError,
    check_positive_int,
    require,
    warn,
)
from ..plan import read_ranges
from ..schema import IMAGE, TILE_DIM, T_Xarray
from .order import TileOrder, chunk_sizes

__all__ = ["batches", "split", "tf_dataset", "torch_loader"]

log = logging.getLogger(__name__)


def batches(tiles: T_Xarray, batch_size: int = 32, *, preload_batch: bool = True):
    """Batches of tiles for training, as an :class:`xbatcher.BatchGenerator`.

    Equivalent to ``xbatcher.BatchGenerator(tiles, input_dims={every dim but
    "tile": its full size}, batch_dims={"tile": batch_size})``: each batch
    is ``(tile: batch_size, *other, y, x)`` with the tile coordinates along.
    Use it to stay in xarray (labelled batches, xbatcher's own loaders);
    :func:`torch_loader` and :func:`tf_dataset` shuffle tiles, keep the last
    partial batch and read lazy tiles chunk by chunk.

    Parameters
    ----------
    tiles
        The output of :func:`tile` (or tiles reloaded from Zarr).
    batch_size
        Tiles per batch. xbatcher yields only full batches: the last
        ``n_tiles % batch_size`` tiles are in no batch (a
        :class:`~xflipnslide.DataDroppedWarning` says how many).
    preload_batch
        Passed to xbatcher: load each batch into memory at once.

    Examples
    --------
    >>> import numpy as np, xarray as xr, xflipnslide
    >>> scene = xr.DataArray(np.zeros((3, 1024, 1024), "float32"), dims=("band", "y", "x"))
    >>> gen = scene.fns.tile(tile_size=256).fns.batches(batch_size=17)
    >>> len(gen), gen[0].sizes
    (5, Frozen({'tile': 17, 'band': 3, 'y': 256, 'x': 256}))
    """
    import xbatcher

    if TILE_DIM not in tiles.dims:
        raise InvalidParameterError(
            f"batches takes tiles (a {TILE_DIM!r} dimension); got dims {tuple(tiles.dims)}. "
            "Call .fns.tile(...) first."
        )
    batch_size = check_positive_int(batch_size, "batch_size")
    n = tiles.sizes[TILE_DIM]
    if batch_size > n:
        raise InvalidParameterError(
            f"batch_size={batch_size} is more than the {n} tiles there are; use batch_size <= {n}"
        )
    if n % batch_size:
        warn(
            f"{n % batch_size} of {n} tiles are in no batch: xbatcher yields only full batches "
            f"of {batch_size}. Use a batch_size that divides {n}, or torch_loader/tf_dataset, "
            "which keep the last partial batch",
            DataDroppedWarning,
        )
    input_dims = {d: s for d, s in tiles.sizes.items() if d != TILE_DIM}
    return xbatcher.BatchGenerator(
        tiles,
        input_dims=input_dims,
        batch_dims={TILE_DIM: int(batch_size)},
        preload_batch=preload_batch,
    )


# --- seeds ----------------------------------------------------------------


def check_seed(seed, what: str) -> int:
    """The one check of every seed taken (``split``'s, the feeds' shuffle):
    ``seed`` as an int, or an :class:`InvalidParameterError` naming ``what``."""
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise InvalidParameterError(
            f"{what}: seed must be an int >= 0 (seeds are non-negative integers, and the same "
            f"seed gives the same result); got {seed!r}"
        )
    return int(seed)


# --- split ----------------------------------------------------------------


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
            "split needs the scene shape the tiles record (attr fns_scene_shape, which tile() "
            "writes on the tiles and on each tiled variable); tile the scene again"
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


# --- feeds ----------------------------------------------------------------


class TileFeed:
    """Numpy batches of images (and labels) in a :class:`TileOrder`, reading
    each tile chunk at most once per epoch. Framework-free and picklable: the
    PyTorch and TensorFlow feeds wrap it.

    Yields ``dict(image=float32 (B, C, T, T), label=int64 (B, T, T) or
    (B, ...), tile=int64 indices, row, col, transform)``.
    """

    def __init__(self, image: xr.DataArray, label: xr.DataArray | None, order: TileOrder):
        self.image, self.label, self.order = image, label, order
        self._meta = {
            "tile": np.arange(image.sizes[TILE_DIM], dtype=np.int64),
            **{
                name: np.asarray(image[name].values).astype(np.int64)
                for name in (schema.ROW, schema.COL, schema.TRANSFORM)
                if name in image.coords
            },
        }
        self.bounds = np.concatenate([[0], np.cumsum(order.chunks)]).astype(np.int64)

    def _load(self, chunks: list[int]) -> dict[int, tuple[np.ndarray, np.ndarray | None]]:
        """Read tile chunks in one computation, so the scene chunks they share
        (lazy tiles) are read once."""
        parts = []
        for c in chunks:
            sl = {TILE_DIM: slice(int(self.bounds[c]), int(self.bounds[c + 1]))}
            parts.append(self.image.isel(sl).data)
            if self.label is not None:
                parts.append(self.label.isel(sl).data)
        arrays = load_arrays(parts)
        step = 1 if self.label is None else 2
        return {
            c: (arrays[k * step], arrays[k * step + 1] if self.label is not None else None)
            for k, c in enumerate(chunks)
        }

    def epoch(self, epoch: int, worker: int = 0, workers: int = 1) -> Iterator[dict]:
        cache: dict[int, tuple] = {}
        for needs, idx in self.order.batches(epoch, worker, workers):
            if needs:
                for c in [c for c in cache if c not in needs]:
                    del cache[c]
                cache.update(self._load([c for c in needs if c not in cache]))
            yield self._batch(idx, cache)

    def _batch(self, idx: np.ndarray, cache: dict) -> dict:
        owner = np.searchsorted(self.bounds, idx, side="right") - 1
        sample_x = next(iter(cache.values()))[0]
        x = np.empty((len(idx), *sample_x.shape[1:]), np.float32)
        y = None
        if self.label is not None:
            sample_y = next(iter(cache.values()))[1]
            y = np.empty((len(idx), *sample_y.shape[1:]), sample_y.dtype)
        for c in np.unique(owner).tolist():
            pick = owner == c
            local = idx[pick] - self.bounds[c]
            x[pick] = cache[c][0][local]
            if y is not None:
                y[pick] = cache[c][1][local]
        out = {"image": x, **{k: v[idx] for k, v in self._meta.items()}}
        if y is not None:
            out["label"] = _as_labels(y)
        return out


def _as_labels(y: np.ndarray) -> np.ndarray:
    if np.issubdtype(y.dtype, np.floating):
        if np.isnan(y).any():
            raise InvalidParameterError(
                "the label tiles contain NaN, which no integer class can hold: fill or mask "
                "them first (e.g. label.fillna(255) with ignore_index=255 in the loss)"
            )
        if (y != np.round(y)).any():
            raise InvalidParameterError(
                "the label tiles hold non-integer values: labels must be class numbers"
            )
    return y.astype(np.int64, copy=False)


def _feed(tiles, batch_size, image, label, shuffle, seed, drop_last, buffer, what) -> TileFeed:
    batch_size = check_positive_int(batch_size, "batch_size")
    buffer = check_positive_int(buffer, "shuffle_buffer")
    seed = None if seed is None else check_seed(seed, what)
    if not isinstance(tiles, (xr.DataArray, xr.Dataset)) or TILE_DIM not in tiles.dims:
        raise InvalidParameterError(
            f"{what} takes tiles (a {TILE_DIM!r} dimension): call .fns.tile(...) first"
        )
    x, y = schema.image_and_label(tiles, image, label)
    n = x.sizes[TILE_DIM]
    if not n:
        raise InvalidParameterError(f"{what} got 0 tiles: there is nothing to train on")
    sizes = x.chunks[0] if x.chunks is not None else None
    if y is not None and y.chunks is not None and sizes is None:
        sizes = y.chunks[0]
    order = TileOrder(
        chunk_sizes(sizes, n), batch_size, bool(shuffle), seed, bool(drop_last), buffer
    )
    return TileFeed(x, y, order)


def torch_loader(
    tiles: xr.DataArray | xr.Dataset,
    batch_size: int = 32,
    *,
    image: Hashable = IMAGE,
    label: Hashable | None = None,
    shuffle: bool = False,
    seed: int | None = None,
    drop_last: bool = False,
    num_workers: int = 0,
    metadata: bool = False,
    shuffle_buffer: int = 1024,
    **loader_kwargs: Any,
) -> Any:
    """A :class:`torch.utils.data.DataLoader` of tile batches.

    Parameters
    ----------
    tiles
        Tiles as a DataArray (images only), or a Dataset holding the image
        variable and, optionally, a label variable tiled with it; in memory,
        lazy, or reopened from Zarr.
    batch_size
        Tiles per batch.
    image, label
        Dataset variable names of the images (default ``"image"``) and the
        labels (none by default).
    shuffle
        A new order of *tiles* every epoch, reproducible from ``seed``
        (the same seed gives the same sequence of epochs). On lazy tiles the
        order is chunk-aware: windows of whole tile chunks (at least
        ``shuffle_buffer`` tiles, stratified across the tile range) are
        visited in random order and their tiles shuffled, so each chunk is
        computed or read once per epoch. In-memory tiles are fully shuffled.
    seed
        Seed of the shuffle, an int >= 0 (``None``: 0).
    drop_last
        Leave out the last partial batch (kept by default, as PyTorch does;
        with workers, each worker's last batch may be partial).
    num_workers
        DataLoader worker processes. The tile chunks are dealt to them, the
        same number of chunks of each size to each worker every epoch, so
        each chunk is read once per epoch and ``len(loader)`` is exact; each
        worker batches its own tiles. dask runs synchronously inside them,
        so a process that has already run dask does not hang. Any start
        method works (``multiprocessing_context="spawn"`` or
        ``"forkserver"``, the default on macOS, Windows and Python 3.14);
        with those, ``persistent_workers=True`` saves starting the workers
        (and sending them the tiles) every epoch.
    metadata
        Also yield a dict of int64 tensors ``tile``, ``row``, ``col``,
        ``transform`` for each batch (to stitch predictions later).
    shuffle_buffer
        Least number of tiles shuffled among (more mixes better and holds
        more chunks in memory).
    **loader_kwargs
        Passed to :class:`torch.utils.data.DataLoader` (``pin_memory``,
        ``persistent_workers``, ``prefetch_factor``...).

    Returns
    -------
    torch.utils.data.DataLoader
        Yields float32 ``(B, C, T, T)`` image tensors, or ``(images,
        labels)`` pairs with int64 labels, plus the metadata dict last when
        ``metadata=True``. ``len(loader)`` is the number of batches each
        epoch yields, with workers too (each worker's partial batch counted).

    Raises
    ------
    MissingDependencyError
        Without torch: ``pip install "xflipnslide[torch]"``.
    InvalidParameterError
        For unknown variables, NaN or non-integer labels (when read).

    Examples
    --------
    >>> loader = tiles.fns.torch_loader(32, label="label", shuffle=True, seed=0)  # doctest: +SKIP
    >>> for images, labels in loader:  # doctest: +SKIP
    ...     loss = loss_fn(model(images), labels)
    """
    require("torch", "torch", "torch_loader")
    from .torch import EpochLoader, TileDataset

    feed = _feed(
        tiles, batch_size, image, label, shuffle, seed, drop_last, shuffle_buffer, "torch_loader"
    )
    workers = check_positive_int(num_workers, "num_workers", minimum=0)
    dataset = TileDataset(feed, metadata, workers)
    return EpochLoader(dataset, batch_size=None, num_workers=workers, **loader_kwargs)


def tf_dataset(
    tiles: xr.DataArray | xr.Dataset,
    batch_size: int = 32,
    *,
    image: Hashable = IMAGE,
    label: Hashable | None = None,
    shuffle: bool = False,
    seed: int | None = None,
    drop_last: bool = False,
    channels_last: bool = True,
    shuffle_buffer: int = 1024,
) -> Any:
    """A :class:`tf.data.Dataset` of tile batches, for Keras's ``model.fit``.

    Built on the same chunk-aware order as :func:`torch_loader`: every tile
    once per epoch, a new shuffle of tiles every epoch (reproducible from
    ``seed``), the last partial batch kept unless ``drop_last``. Each pass
    over the dataset (each Keras epoch) is the next epoch.

    Parameters
    ----------
    tiles, batch_size, image, label, shuffle, seed, drop_last, shuffle_buffer
        As for :func:`torch_loader`.
    channels_last
        Images as ``(B, T, T, C)`` (Keras's default) instead of ``(B, C, T, T)``.

    Returns
    -------
    tf.data.Dataset
        float32 images, or ``(images, labels)`` with int64 labels.

    Raises
    ------
    MissingDependencyError
        Without TensorFlow: ``pip install "xflipnslide[tensorflow]"``.
    """
    tf = require("tensorflow", "tensorflow", "tf_dataset")
    feed = _feed(
        tiles, batch_size, image, label, shuffle, seed, drop_last, shuffle_buffer, "tf_dataset"
    )
    rest_x = tuple(feed.image.shape[1:])
    if channels_last:
        rest_x = (*rest_x[1:], rest_x[0]) if len(rest_x) == 3 else rest_x
    spec_x = tf.TensorSpec((None, *rest_x), tf.float32)
    epochs = iter(range(1 << 62))

    def generate():
        for batch in feed.epoch(next(epochs)):
            x = batch["image"]
            if channels_last and x.ndim == 4:
                x = np.ascontiguousarray(x.transpose(0, 2, 3, 1))
            if "label" in batch:
                yield x, batch["label"]
            else:
                yield x

    if feed.label is not None:
        spec_y = tf.TensorSpec((None, *feed.label.shape[1:]), tf.int64)
        signature = (spec_x, spec_y)
    else:
        signature = spec_x
    return tf.data.Dataset.from_generator(generate, output_signature=signature)
