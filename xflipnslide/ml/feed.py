"""The framework-free feed (:class:`TileFeed`) and the PyTorch and TensorFlow
feeds built on it (:func:`torch_loader`, :func:`tf_dataset`).

torch and tensorflow are imported only inside :func:`torch_loader` and
:func:`tf_dataset` (their code lives in :mod:`.torch` and :mod:`.tensorflow`).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Hashable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import xarray as xr

from .. import schema
from .._core.blocks import chunk_bounds
from .._core.load import feed_chunks, feed_source, load_ranges
from ..classes import class_counts
from ..errors import InvalidParameterError, check_positive_int, check_seed, require
from ..schema import IMAGE, LABEL, TILE_DIM
from .balance import BalancedOrder, tile_weights_from_counts
from .order import TileOrder

__all__ = ["TileFeed", "tf_dataset", "torch_loader"]


class TileFeed:
    """Numpy batches of images (and labels) in a sampling order, reading each
    tile chunk at most once per epoch. Framework-free and picklable: the
    PyTorch and TensorFlow feeds wrap it. Build one with :meth:`from_tiles`.

    :meth:`epoch` yields ``dict(image=float32 (B, C, T, T), label=int64 (B,
    T, T) or (B, ...), tile=int64 indices, row, col, transform)`` (the keys
    are the format's names: ``schema.IMAGE``, ``schema.LABEL``, ...).

    Parameters
    ----------
    image, label
        The image tiles and the label tiles (or ``None``), ``tile`` first.
    order
        A :class:`~.order.TileOrder` or a :class:`~.balance.BalancedOrder`
        (any object with their ``chunks``, ``count(workers, epoch)`` and
        ``batches(epoch, worker, workers)``).
    """

    def __init__(
        self,
        image: xr.DataArray,
        label: xr.DataArray | None,
        order: TileOrder,
        *,
        fold_time: bool = False,
    ):
        self.image, self.label, self.order = image, label, order
        self.fold_time = bool(fold_time)
        self._meta = {
            TILE_DIM: np.arange(image.sizes[TILE_DIM], dtype=np.int64),
            **{
                name: np.asarray(image[name].values).astype(np.int64)
                for name in (schema.ROW, schema.COL, schema.TRANSFORM)
                if name in image.coords
            },
        }
        if schema.SCENE in image.coords:  # a collection: each tile's scene id
            ids = image[schema.SCENE].values  # <U, object or numpy's StringDType (Zarr)
            self._meta[schema.SCENE] = np.array([str(i) for i in ids], dtype=object)
        self.bounds = np.asarray(chunk_bounds(order.chunks), dtype=np.int64)

    @classmethod
    def from_tiles(
        cls,
        tiles: xr.DataArray | xr.Dataset,
        batch_size: int = 32,
        *,
        what: str = "TileFeed",
        image: Hashable = IMAGE,
        label: Hashable | None = None,
        shuffle: bool = False,
        seed: int | None = None,
        drop_last: bool = False,
        shuffle_buffer: int = 1024,
        balance: bool | Any = False,
        classes: int | None = None,
        ignore_index: int | None = None,
        fold_time: bool = False,
    ) -> TileFeed:
        """The feed :func:`torch_loader` and :func:`tf_dataset` build
        (``what`` names the caller in error messages; the options are theirs).

        Examples
        --------
        >>> import numpy as np, xarray as xr, xflipnslide
        >>> scene = xr.DataArray(np.zeros((1, 256, 256), "float32"), dims=("band", "y", "x"))
        >>> feed = TileFeed.from_tiles(scene.fns.tile(64), 16, shuffle=True, seed=0)
        >>> [len(b["tile"]) for b in feed.epoch(0)]  # 85 tiles
        [16, 16, 16, 16, 16, 5]
        """
        batch_size = check_positive_int(batch_size, "batch_size")
        buffer = check_positive_int(shuffle_buffer, "shuffle_buffer")
        seed = check_seed(seed, what, default=0)
        if not isinstance(tiles, (xr.DataArray, xr.Dataset)) or TILE_DIM not in tiles.dims:
            raise InvalidParameterError(
                f"{what} takes tiles (a {TILE_DIM!r} dimension): call .fns.tile(...) first"
            )
        x, y = schema.image_and_label(tiles, image, label)
        if not x.sizes[TILE_DIM]:
            raise InvalidParameterError(f"{what} got 0 tiles: there is nothing to train on")
        chunks, in_memory = feed_chunks(x.variable, None if y is None else y.variable)
        if in_memory:  # tiles cost nothing to read: shuffle among all of them
            buffer = max(buffer, sum(chunks))
        if isinstance(balance, bool) and not balance:
            order = TileOrder(chunks, batch_size, bool(shuffle), seed, bool(drop_last), buffer)
        else:
            weights = _tile_weights(tiles, balance, label, classes, ignore_index, what)
            order = BalancedOrder(weights, chunks, batch_size, seed, bool(drop_last), buffer)
        return cls(x, y, order, fold_time=fold_time)

    def _load(self, chunks: list[int]) -> dict[int, tuple[np.ndarray, np.ndarray | None]]:
        """Read tile chunks in one computation, so the scene chunks they share
        (lazy tiles) are read once; each chunk is written once."""
        sources = [self._sources[0]] if self.label is None else self._sources
        parts = [(s, int(self.bounds[c]), int(self.bounds[c + 1])) for c in chunks for s in sources]
        arrays = load_ranges(parts)
        step = len(sources)
        return {
            c: (arrays[k * step], arrays[k * step + 1] if self.label is not None else None)
            for k, c in enumerate(chunks)
        }

    @property
    def _sources(self) -> tuple:
        return (
            feed_source(self.image.variable),
            None if self.label is None else feed_source(self.label.variable),
        )

    def epoch(
        self,
        epoch: int,
        worker: int = 0,
        workers: int = 1,
        empty: Callable[[tuple, Any], Any] | None = None,
    ) -> Iterator[dict]:
        """The batches of ``worker`` (of ``workers``) in ``epoch``.

        Reads ahead: while the batches of one window are cut, a thread reads
        the chunks of the next, so at most two windows are held. Batches are
        written into ``empty(shape, dtype)`` (``numpy.empty`` by default;
        anything ``numpy.asarray`` gives a writable view of, such as a
        shared-memory tensor).
        """
        steps = list(self.order.batches(epoch, worker, workers))
        fresh, held = [], set()  # the chunks each window reads: those the last one lacks
        for needs, _ in steps:
            if needs:
                fresh.append([c for c in needs if c not in held])
                held = set(needs)
        ahead = iter(fresh)
        cache: dict[int, tuple] = {}
        with ThreadPoolExecutor(1, thread_name_prefix="xflipnslide-read") as pool:
            pending = pool.submit(self._load, next(ahead)) if fresh else None
            for needs, idx in steps:
                if needs:
                    loaded = pending.result()
                    following = next(ahead, None)
                    pending = None if following is None else pool.submit(self._load, following)
                    cache = {c: cache[c] for c in needs if c in cache}
                    cache.update(loaded)
                yield self._batch(idx, cache, empty or np.empty)

    def _batch(self, idx: np.ndarray, cache: dict, empty: Callable) -> dict:
        owner = np.searchsorted(self.bounds, idx, side="right") - 1
        picks = list(zip(owner.tolist(), (idx - self.bounds[owner]).tolist(), strict=True))
        sample_x, sample_y = next(iter(cache.values()))
        shape = (len(idx), *sample_x.shape[1:])
        folded = shape
        if self.fold_time and len(shape) > 4:  # (B, time, C, T, T) -> (B, time * C, T, T)
            folded = (len(idx), int(np.prod(shape[1:-2])), *shape[-2:])
        image = empty(folded, np.float32)
        _gather(np.asarray(image).reshape(shape), cache, 0, picks)
        out = {IMAGE: image, **{k: v[idx] for k, v in self._meta.items()}}
        if sample_y is not None:
            shape = (len(idx), *sample_y.shape[1:])
            if sample_y.dtype == np.int64:
                out[LABEL] = empty(shape, np.int64)
                _gather(np.asarray(out[LABEL]), cache, 1, picks)
            else:
                y = np.empty(shape, sample_y.dtype)
                _gather(y, cache, 1, picks)
                out[LABEL] = _as_labels(y, empty)
        return out


def _gather(out: np.ndarray, cache: dict, which: int, picks: list) -> None:
    """``out[k]`` = tile ``i`` of chunk ``c`` (array ``which`` of its cache
    entry) for each ``(c, i)`` of ``picks``: one copy per tile, in place."""
    for k, (c, i) in enumerate(picks):
        out[k] = cache[c][which][i]


def _tile_weights(tiles, balance, label, classes, ignore_index, what: str) -> np.ndarray:
    """The sampling weight of each tile: given (``balance`` an array), or
    (``balance=True``) :func:`~.balance.tile_weights_from_counts` of the
    label tiles' class counts (computed once, on dask too)."""
    n = tiles.sizes[TILE_DIM]
    if balance is True:
        if label is None:
            raise InvalidParameterError(
                f"{what}(balance=True) draws tiles by the classes they hold: pass label= the "
                "label variable, or balance= an array of one weight per tile"
            )
        counts = class_counts(tiles, label=label, classes=classes, ignore_index=ignore_index)
        return tile_weights_from_counts(np.asarray(counts.values))
    try:
        weights = np.asarray(balance, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise InvalidParameterError(
            f"{what}: balance must be True, False or one weight per tile; got {balance!r}"
        ) from exc
    if weights.shape != (n,):
        raise InvalidParameterError(
            f"{what}: balance= weights must be one per tile, shape ({n},); got shape "
            f"{weights.shape}"
        )
    return weights


def _feed_options(given: Mapping[str, Any]) -> dict[str, Any]:
    """The arguments of :meth:`TileFeed.from_tiles` among a feed's ``locals()``."""
    return {k: given[k] for k in _FEED_OPTIONS}


def _as_labels(y: np.ndarray, empty: Callable = np.empty):
    """int64 labels from label tiles ``y``, in ``empty``'s memory (a check
    that float labels are whole numbers first)."""
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
    labels = empty(y.shape, np.int64)
    np.copyto(np.asarray(labels), y, casting="unsafe")
    return labels


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
    balance: bool | Any = False,
    classes: int | None = None,
    ignore_index: int | None = None,
    fold_time: bool = False,
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
        Unshuffled, the tiles come in their stored order, read in runs of
        whole chunks of at least ``shuffle_buffer`` tiles. Either way a
        thread reads the next window while the batches of one are cut.
    seed
        Seed of the shuffle, an int >= 0 (``None``: 0).
    drop_last
        Leave out the last partial batch (kept by default, as PyTorch does;
        with workers, each worker's last batch may be partial).
    num_workers
        DataLoader worker processes. The tile chunks are dealt to them, the
        same number of chunks of each size to each worker every epoch, so
        each chunk is read once per epoch and ``len(loader)`` is exact; each
        worker batches its own tiles (in-memory tiles are dealt one by one)
        and writes them straight into shared memory. dask runs
        synchronously inside them, so a process that has already run dask
        does not hang. With 0 workers the reads already run on dask's
        threads beside the training loop; workers add the cost of sending
        every batch between processes, so they pay off only with cores to
        spare (see the docs' training page). Any start
        method works (``multiprocessing_context="spawn"`` or
        ``"forkserver"``, the default on macOS, Windows and Python 3.14);
        with those, ``persistent_workers=True`` saves starting the workers
        (and sending them the tiles) every epoch.
    metadata
        Also yield a dict of int64 tensors ``tile``, ``row``, ``col``,
        ``transform`` for each batch (to stitch predictions later), and for
        the tiles of a collection ``scene``, the list of each tile's scene id.
    shuffle_buffer
        Least number of tiles shuffled among, or read together in order
        (more mixes better and holds more chunks in memory: the window being
        batched and the next one being read).
    balance
        Class-balanced sampling: each epoch draws as many tiles as there are,
        **with replacement**, tile ``t`` with probability ``w_t / sum_s w_s``
        (a new draw every epoch, reproducible from ``seed``; ``shuffle`` is
        implied). ``True``: ``w_t = max {N / n_c : n_tc > 0}``, the inverse
        pixel share of the rarest class in the tile (``n_tc`` its pixels of
        class ``c``, ``n_c = sum_t n_tc``, ``N = sum_c n_c``; see
        :func:`~xflipnslide.ml.balance.tile_weights_from_counts`), from the
        ``label`` tiles' class counts (computed once when the loader is made,
        on dask too); a tile with no labelled pixel is never drawn. Or a 1-D
        array of one non-negative weight per tile. Chunk-aware as
        ``shuffle`` is: a chunk is read at most once per epoch, and a chunk
        nothing was drawn from not at all.
    classes, ignore_index
        With ``balance=True``, as for :func:`~xflipnslide.class_counts`: the
        number of classes (needed on dask) and the value of unlabelled
        pixels.
    fold_time
        Tiles of a time stack come as ``(B, time, C, T, T)``; ``True`` folds
        time into the channels, ``(B, time * C, T, T)``, time-major (channel
        ``t * C + c`` is band ``c`` of date ``t``), for models that take a
        stack of dates as channels. No effect on ``(B, C, T, T)`` tiles.
    **loader_kwargs
        Passed to :class:`torch.utils.data.DataLoader` (``pin_memory``,
        ``persistent_workers``, ``prefetch_factor``...).

    Returns
    -------
    torch.utils.data.DataLoader
        Yields float32 ``(B, C, T, T)`` image tensors, or ``(images,
        labels)`` pairs with int64 labels, plus the metadata dict last when
        ``metadata=True``. ``len(loader)`` is the number of batches each
        epoch yields, with workers too (each worker's partial batch counted;
        balanced, the count of the next epoch, which with workers may change
        from epoch to epoch by up to ``num_workers - 1``).

    Raises
    ------
    MissingDependencyError
        Without torch: ``pip install "xflipnslide[torch]"``.
    InvalidParameterError
        For unknown variables, NaN or non-integer labels (when read).

    Examples
    --------
    >>> import importlib.util, numpy as np, xarray as xr, xflipnslide
    >>> image = xr.DataArray(np.zeros((3, 256, 256), "float32"), dims=("band", "y", "x"))
    >>> label = xr.DataArray(np.ones((256, 256), "uint8"), dims=("y", "x"))
    >>> tiles = xr.Dataset({"image": image, "label": label}).fns.tile(64)  # 85 tiles
    >>> def shapes():  # the same answer without torch
    ...     if importlib.util.find_spec("torch") is None:
    ...         return 3, (32, 3, 64, 64), (32, 64, 64)
    ...     loader = tiles.fns.torch_loader(32, label="label", shuffle=True, seed=0)
    ...     images, labels = next(iter(loader))
    ...     return len(loader), tuple(images.shape), tuple(labels.shape)
    >>> shapes()  # 85 tiles: two batches of 32 and one of 21 per epoch
    (3, (32, 3, 64, 64), (32, 64, 64))
    """
    require("torch", "torch", "torch_loader")
    from .torch import make_loader

    feed = TileFeed.from_tiles(**_feed_options(locals()), what="torch_loader")
    workers = check_positive_int(num_workers, "num_workers", minimum=0)
    return make_loader(feed, metadata, workers, **loader_kwargs)


def tf_dataset(
    tiles: xr.DataArray | xr.Dataset,
    batch_size: int = 32,
    *,
    image: Hashable = IMAGE,
    label: Hashable | None = None,
    channels_last: bool = True,
    shuffle: bool = False,
    seed: int | None = None,
    drop_last: bool = False,
    shuffle_buffer: int = 1024,
    balance: bool | Any = False,
    classes: int | None = None,
    ignore_index: int | None = None,
    fold_time: bool = False,
) -> Any:
    """A :class:`tf.data.Dataset` of tile batches, for Keras's ``model.fit``.

    Built on the same chunk-aware order as :func:`torch_loader`: every tile
    once per epoch, a new shuffle of tiles every epoch (reproducible from
    ``seed``), the last partial batch kept unless ``drop_last``, or
    class-balanced draws with ``balance``. Each pass over the dataset (each
    Keras epoch) is the next epoch.

    Parameters
    ----------
    tiles, batch_size, image, label
        As for :func:`torch_loader`.
    channels_last
        Images as ``(B, T, T, C)`` (Keras's default) instead of ``(B, C, T, T)``.
    shuffle, seed, drop_last, shuffle_buffer, balance, classes, ignore_index, fold_time
        As for :func:`torch_loader`.

    Returns
    -------
    tf.data.Dataset
        float32 images, or ``(images, labels)`` with int64 labels.

    Raises
    ------
    MissingDependencyError
        Without TensorFlow: ``pip install "xflipnslide[tensorflow]"``.

    Examples
    --------
    >>> import importlib.util, numpy as np, xarray as xr, xflipnslide
    >>> scene = xr.DataArray(np.zeros((3, 256, 256), "float32"), dims=("band", "y", "x"))
    >>> tiles = scene.fns.tile(64)  # 85 tiles
    >>> def first_batch():  # the same answer without TensorFlow
    ...     if importlib.util.find_spec("tensorflow") is None:
    ...         return 3, (32, 64, 64, 3)
    ...     ds = tiles.fns.tf_dataset(32, shuffle=True, seed=0)
    ...     return int(ds.cardinality()), tuple(next(iter(ds)).shape)
    >>> first_batch()  # channels last, for Keras
    (3, (32, 64, 64, 3))
    """
    require("tensorflow", "tensorflow", "tf_dataset")
    from .tensorflow import make_dataset

    feed = TileFeed.from_tiles(**_feed_options(locals()), what="tf_dataset")
    return make_dataset(feed, bool(channels_last))


#: The options every feed passes on to :meth:`TileFeed.from_tiles`.
_FEED_OPTIONS = tuple(p for p in inspect.signature(TileFeed.from_tiles).parameters if p != "what")
