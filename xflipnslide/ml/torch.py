"""The PyTorch feed: an :class:`~torch.utils.data.IterableDataset` of
:class:`~xflipnslide.ml.feed.TileFeed` batches and a DataLoader that counts epochs.

This module imports torch at its top and is imported only by
:func:`xflipnslide.torch_loader`, which checks that torch is installed
first. Its classes live at module level so that DataLoader workers started
by ``spawn`` or ``forkserver`` (macOS, Windows, Python 3.14's default on
Linux) can unpickle the dataset.
"""

from __future__ import annotations

import atexit

import numpy as np

from .. import schema

try:
    import torch
    from torch.utils.data import DataLoader, IterableDataset, get_worker_info
except ImportError:  # still importable for tools that import every module (doctest collection)
    torch = None
    DataLoader = IterableDataset = object

__all__ = ["EpochLoader", "TileDataset", "make_loader"]

#: The metadata tensors ``metadata=True`` yields, when the tiles have them.
META = (schema.TILE_DIM, schema.ROW, schema.COL, schema.TRANSFORM)


def _dask_in_worker() -> None:
    """Run dask synchronously in a DataLoader worker.

    A worker forked from a process that has run dask inherits dask's thread
    pool without its threads (and possibly its lock held): any dask
    computation there would wait forever. Workers are the parallelism, so
    each computes its own tiles in its own thread. Done when a worker
    starts iterating, whatever ``worker_init_fn`` the user passes.
    """
    import dask

    dask.config.set(scheduler="synchronous")


class TileDataset(IterableDataset):
    """One epoch of :class:`~xflipnslide.ml.feed.TileFeed` batches, the tile
    chunks dealt over ``workers`` worker processes.

    ``len()`` is the number of batches all workers yield together in the
    epoch :class:`EpochLoader` runs next (:meth:`~xflipnslide.ml.order.TileOrder.count`;
    a balanced order's count may change from epoch to epoch with workers).
    The epoch is held in a shared-memory tensor, so persistent workers see
    each new epoch too.
    """

    def __init__(self, feed, metadata: bool, workers: int):
        self.feed, self.metadata, self.workers = feed, bool(metadata), max(int(workers), 1)
        self.upcoming = 0  # the epoch len() counts: the next one the loader runs
        self._epoch = torch.zeros((), dtype=torch.int64)
        if workers:
            self._epoch.share_memory_()

    @property
    def epoch(self) -> int:
        return int(self._epoch)

    @epoch.setter
    def epoch(self, value: int) -> None:
        self._epoch.fill_(int(value))

    def __len__(self) -> int:
        return self.feed.order.count(self.workers, self.upcoming)

    def __iter__(self):
        info = get_worker_info()
        if info is None:
            worker, workers, empty = 0, 1, None
        else:
            worker, workers, empty = info.id, info.num_workers, shared_empty
            _dask_in_worker()
        for batch in self.feed.epoch(self.epoch, worker, workers, empty=empty):
            out = [torch.as_tensor(batch[schema.IMAGE])]
            if schema.LABEL in batch:
                out.append(torch.as_tensor(batch[schema.LABEL]))
            if self.metadata:
                meta = _meta_tensors(batch, empty)
                if schema.SCENE in batch:  # text: a list of scene ids
                    meta[schema.SCENE] = batch[schema.SCENE].tolist()
                out.append(meta)
            yield out[0] if len(out) == 1 else tuple(out)


def shared_empty(shape: tuple, dtype) -> torch.Tensor:
    """An uninitialised CPU tensor in shared memory: a worker writes its batch
    here and the main process maps the same memory (no copy into shared
    memory when the batch is sent, as torch's own collate does in workers)."""
    dtype = torch.from_numpy(np.empty(0, dtype)).dtype
    numel = int(np.prod(shape))
    storage = torch.empty(0, dtype=dtype)._typed_storage()._new_shared(numel)
    return torch.empty(0, dtype=dtype).new(storage).resize_(*shape)


def _meta_tensors(batch: dict, empty) -> dict:
    """The int64 metadata tensors of ``batch``, rows of one tensor (one
    shared-memory block to send from a worker)."""
    names = [k for k in META if k in batch]
    block = (empty or np.empty)((len(names), len(batch[names[0]])), np.int64)
    table = torch.as_tensor(block)
    for row, k in zip(table, names, strict=True):
        row.copy_(torch.from_numpy(batch[k]))
    return dict(zip(names, table, strict=True))


class EpochLoader(DataLoader):
    """A DataLoader that tells its dataset which epoch each pass is."""

    _epoch = 0

    def __len__(self) -> int:
        self.dataset.upcoming = self._epoch
        return super().__len__()

    def __iter__(self):
        self.dataset.epoch = self.dataset.upcoming = self._epoch
        self._epoch += 1
        return super().__iter__()


def _release_shared_storages() -> None:
    """Drop torch's cache of weak references to the shared-memory storages
    worker batches arrive in, while torch can still free them.

    The cache only prunes itself past 128 entries, so entries of the last
    epochs stay until the interpreter exits; deleted then, after torch's
    modules are torn down, each prints a ``StorageWeakRef.__del__``
    traceback. Run at exit (registered with the first loader with workers).
    """
    from torch.multiprocessing import reductions

    reductions.shared_cache.clear()


_release_registered = False


def make_loader(feed, metadata: bool, workers: int, **loader_kwargs) -> EpochLoader:
    """The DataLoader :func:`xflipnslide.torch_loader` returns: ``feed``'s
    batches (already batched: ``batch_size=None``) over ``workers`` processes."""
    global _release_registered
    if workers and not _release_registered:
        atexit.register(_release_shared_storages)
        _release_registered = True
    dataset = TileDataset(feed, metadata, workers)
    return EpochLoader(dataset, batch_size=None, num_workers=workers, **loader_kwargs)
