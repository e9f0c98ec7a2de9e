"""Lightning's data module over a tile split: :class:`TileDataModule`.

This module imports lightning and torch at its top. ``import xflipnslide``
imports neither: the module is imported the first time
``xflipnslide.TileDataModule`` is used, and that access checks that
lightning is installed (``pip install "xflipnslide[lightning]"``). Without
lightning it still imports, for tools that import every module (doctest
collection), but defines no data module.

The loaders are :func:`~xflipnslide.torch_loader`'s: every tile once per
epoch, a new seeded order of tiles each epoch, chunk-aware reads of lazy
tiles. On several ranks each rank reads its own share of the tiles
(:func:`rank_share`).
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Mapping, Sequence
from typing import Any

import numpy as np
import xarray as xr

from .. import schema
from .._core.blocks import chunk_bounds
from .._core.graph import tile_chunk_sizes
from ..errors import InvalidParameterError, check_positive_int, check_seed
from ..schema import IMAGE, TILE_DIM
from . import split, torch_loader

try:
    import lightning
    import torch

    from .torch import EpochLoader
except ImportError:  # importable without lightning; xflipnslide.TileDataModule names the extra
    lightning = None

__all__ = ["TileDataModule", "rank_share"]

#: Lightning's stages, which :meth:`TileDataModule.setup` takes.
STAGES = ("fit", "validate", "test", "predict")


def rank_share(chunks: Sequence[int], rank: int, world_size: int) -> np.ndarray:
    """The tiles rank ``rank`` of ``world_size`` reads, as ascending indices.

    The shares are disjoint, together they are every tile, and they differ
    by at most one tile. Whole tile chunks are dealt first: of the chunks of
    each size every rank gets the same number, strided along ``tile`` (rank
    ``r`` takes the ``r``-th, ``(r + world_size)``-th, ... of them), so each
    of these chunks is read by one rank and every share spans the whole tile
    range (the whole scene, both Flip-n-Slide grids). The fewer than
    ``world_size`` chunks of each size left over are pooled and their tiles
    strided over the ranks: only those chunks are read by several ranks. In
    memory, tiles are one chunk, so tile ``i`` goes to rank ``i % world_size``.

    Parameters
    ----------
    chunks
        Tile count of each chunk along ``tile``, in order.
    rank, world_size
        This rank (``0 <= rank < world_size``) and the number of ranks.

    Examples
    --------
    >>> rank_share((4, 4, 4, 2), 0, 2)  # chunk 0 whole, then tiles 8, 10, 12 of the pool
    array([ 0,  1,  2,  3,  8, 10, 12])
    >>> rank_share((4, 4, 4, 2), 1, 2)
    array([ 4,  5,  6,  7,  9, 11, 13])
    """
    sizes = np.asarray(chunks, dtype=np.int64)
    bounds = chunk_bounds(sizes.tolist())
    whole, pool = [], []
    for size in np.unique(sizes):
        ids = np.flatnonzero(sizes == size)
        dealt = len(ids) // world_size * world_size
        whole += ids[:dealt][rank::world_size].tolist()
        pool += ids[dealt:].tolist()

    def tiles_of(ids: list[int]) -> np.ndarray:
        ranges = [np.arange(bounds[c], bounds[c + 1]) for c in sorted(ids)]
        return np.concatenate(ranges) if ranges else np.empty(0, np.int64)

    mine = np.concatenate([tiles_of(whole), tiles_of(pool)[rank::world_size]])
    return np.sort(mine).astype(np.int64)


def rank_seed(seed: int, rank: int, world_size: int) -> int:
    """The shuffle seed of ``rank``: ``seed`` itself on one rank; on several,
    one drawn from ``(seed, rank)``, so that ranks' orders are independent."""
    if world_size == 1:
        return seed
    return int(np.random.SeedSequence([seed, rank]).generate_state(1)[0])


def _check_parts(parts, fractions, block_size) -> tuple[Any, dict | None]:
    """``(tiles to split, None)`` or ``(None, the split)``."""

    def is_tiles(x) -> bool:
        return isinstance(x, (xr.DataArray, xr.Dataset)) and TILE_DIM in x.dims

    if is_tiles(parts):
        return parts, None
    if isinstance(parts, Mapping) and parts and all(is_tiles(p) for p in parts.values()):
        given = [n for n, v in (("fractions", fractions), ("block_size", block_size)) if v]
        if given:
            raise InvalidParameterError(
                f"TileDataModule: {' and '.join(given)} split a tile set, but the tiles are "
                "split already: pass the tiles themselves to split them here, or leave "
                f"{' and '.join(given)} out"
            )
        return None, {str(k): v for k, v in parts.items()}
    raise InvalidParameterError(
        f"TileDataModule takes tiles (a {TILE_DIM!r} dimension: call .fns.tile(...) first), which it "
        'splits, or a split as tiles.fns.split returns ({"train": ..., "val": ..., '
        f'"test": ...}} of tiles); got {type(parts).__name__}'
    )


def _check_ranks(rank, world_size) -> tuple[int, int] | None:
    if rank is None and world_size is None:
        return None
    if rank is None or world_size is None:
        raise InvalidParameterError(
            "TileDataModule: pass rank= and world_size= together (or neither, to take them "
            f"from the trainer); got rank={rank!r}, world_size={world_size!r}"
        )
    world_size = check_positive_int(world_size, "world_size")
    rank = check_positive_int(rank, "rank", minimum=0)
    if rank >= world_size:
        raise InvalidParameterError(
            f"TileDataModule: rank must be below world_size ({world_size}); got rank={rank}"
        )
    return rank, world_size


if lightning is not None:

    class _FitLoader(EpochLoader):
        """:func:`~xflipnslide.torch_loader`'s loader whose epoch, while a
        trainer fits, is the trainer's current epoch: a resumed run, or a
        second ``fit``, continues the sequence of orders instead of starting
        it again. Elsewhere each pass is the next epoch, as for the plain
        loader."""

        def __init__(self, *args, epoch: Callable[[], int | None] | None = None, **kwargs):
            super().__init__(*args, **kwargs)
            self.trainer_epoch = epoch

        def _follow_the_trainer(self) -> None:
            epoch = self.trainer_epoch() if self.trainer_epoch is not None else None
            if epoch is not None:
                self._epoch = int(epoch)

        def __len__(self) -> int:
            self._follow_the_trainer()
            return super().__len__()

        def __iter__(self):
            self._follow_the_trainer()
            return super().__iter__()

    class TileDataModule(lightning.LightningDataModule):
        """A :class:`lightning.LightningDataModule` of tile batches.

        Its loaders are :func:`~xflipnslide.torch_loader`'s over the subsets
        of a split: ``train_dataloader`` shuffles tiles with ``seed``, a new
        order every epoch; ``val_dataloader``, ``test_dataloader`` and
        ``predict_dataloader`` read their tiles in order, each tile once.

        Parameters
        ----------
        parts
            A split, as :func:`~xflipnslide.split` returns (subset name to
            tiles: ``"train"``, ``"val"``, ``"test"``, and ``"predict"`` if
            the predict loader should read other tiles than ``"test"``), or
            tiles, which :meth:`setup` splits with ``seed``, ``fractions``
            and ``block_size``. In memory, lazy, or reopened from Zarr.
        batch_size
            Tiles per batch (also the ``batch_size`` attribute and hparam
            that Lightning's batch size finder reads and sets).
        image, label
            The image and label variables of Dataset tiles (no labels by
            default: batches are images only).
        balance
            Passed to :func:`~xflipnslide.torch_loader` for the train loader
            (class-balanced draws from the label counts, seeded), when it
            is not ``False``.
        num_workers
            DataLoader worker processes of every loader (see
            :func:`~xflipnslide.torch_loader`: the tile chunks are dealt to
            them, so workers pay off on lazy or Zarr tiles).
        seed
            Seed of the split (when ``parts`` is tiles) and of the shuffle,
            an int >= 0. On several ranks, rank ``r`` shuffles with a seed
            drawn from ``(seed, r)``.
        fractions, block_size
            Passed to :func:`~xflipnslide.split` when ``parts`` is tiles.
        shuffle
            Shuffle the training tiles (a new order every epoch).
        drop_last
            Leave out the last partial training batch (of each rank and
            worker). Evaluation loaders keep every tile.
        shuffle_buffer, metadata
            As for :func:`~xflipnslide.torch_loader` (``metadata`` for
            every loader: it adds the ``tile``, ``row``, ``col``,
            ``transform`` tensors each batch's tiles came from; ``tile``
            counts within the rank's share of the subset).
        rank, world_size
            This rank and the number of ranks; by default the trainer's
            (``trainer.global_rank``, ``trainer.world_size``), else one.
        loader_kwargs
            Passed to every :func:`~xflipnslide.torch_loader`, and on to
            :class:`torch.utils.data.DataLoader` (``pin_memory``,
            ``persistent_workers``, ``multiprocessing_context``,
            ``prefetch_factor``).

        Attributes
        ----------
        parts : dict or None
            The split: as given, or made by :meth:`setup` (or the first
            loader asked for).

        Notes
        -----
        **Epochs.** While a trainer fits, the train loader's epoch is
        ``trainer.current_epoch``: each epoch a new order, the same
        sequence as :func:`~xflipnslide.torch_loader` gives epoch by epoch,
        continued (not restarted) by a run resumed from a checkpoint.

        **Several ranks** (``world_size > 1``): every loader reads only its
        rank's share of its subset (:func:`rank_share`: disjoint, together
        every tile once per epoch, sizes within one tile, whole tile chunks
        dealt to one rank). Training in step needs the same number of
        batches on every rank: the train loader asks the trainer's other
        ranks for theirs and raises :class:`~xflipnslide.InvalidParameterError`
        (saying what to change) if they differ, before any step. Evaluation
        shares may differ by a batch: log their metrics per epoch (the
        default of ``validation_step``), not per step with ``sync_dist``.

        Raises
        ------
        InvalidParameterError
            For options that cannot work, a stage whose subset the split
            lacks (naming the subsets there are), and uneven training
            batches across ranks.

        Examples
        --------
        >>> import lightning, numpy as np, torch, warnings, xarray as xr, xflipnslide
        >>> rng = np.random.default_rng(0)
        >>> image = rng.random((3, 512, 512), dtype="float32")
        >>> scene = xr.Dataset({"image": (("band", "y", "x"), image),
        ...                     "label": (("y", "x"), (image[0] > 0.5).astype("uint8"))})
        >>> with warnings.catch_warnings():  # the tiles split drops, counted
        ...     warnings.simplefilter("ignore", xflipnslide.DataDroppedWarning)
        ...     parts = scene.fns.tile(64).fns.split(block_size=128, seed=0)
        >>> data = xflipnslide.TileDataModule(parts, 16, label="label", seed=0)
        >>> data.setup("fit")
        >>> images, labels = next(iter(data.train_dataloader()))
        >>> images.shape, labels.dtype
        (torch.Size([16, 3, 64, 64]), torch.int64)
        >>> class Net(lightning.LightningModule):
        ...     def __init__(self):
        ...         super().__init__()
        ...         self.conv = torch.nn.Conv2d(3, 2, 1)
        ...     def training_step(self, batch, i):
        ...         x, y = batch
        ...         return torch.nn.functional.cross_entropy(self.conv(x), y)
        ...     def configure_optimizers(self):
        ...         return torch.optim.SGD(self.parameters(), lr=0.1)
        >>> trainer = lightning.Trainer(max_epochs=2, accelerator="cpu", logger=False,
        ...                             enable_checkpointing=False, enable_progress_bar=False,
        ...                             enable_model_summary=False, limit_val_batches=0)
        >>> with warnings.catch_warnings():  # Lightning's notes on workers and lengths
        ...     warnings.simplefilter("ignore")
        ...     trainer.fit(Net(), datamodule=data)
        >>> trainer.current_epoch
        2
        """

        def __init__(
            self,
            parts: Mapping[str, xr.DataArray | xr.Dataset] | xr.DataArray | xr.Dataset,
            batch_size: int = 32,
            *,
            image: Hashable = IMAGE,
            label: Hashable | None = None,
            balance: Any = False,
            num_workers: int = 0,
            seed: int = 0,
            fractions: Mapping[str, float] | None = None,
            block_size: int | None = None,
            shuffle: bool = True,
            drop_last: bool = False,
            shuffle_buffer: int = 1024,
            metadata: bool = False,
            rank: int | None = None,
            world_size: int | None = None,
            loader_kwargs: Mapping[str, Any] | None = None,
        ):
            super().__init__()
            self._tiles, self.parts = _check_parts(parts, fractions, block_size)
            self.batch_size = check_positive_int(batch_size, "batch_size")
            self.seed = check_seed(seed, "TileDataModule")
            self.num_workers = check_positive_int(num_workers, "num_workers", minimum=0)
            self.shuffle_buffer = check_positive_int(shuffle_buffer, "shuffle_buffer")
            self._ranks_given = _check_ranks(rank, world_size)
            if loader_kwargs is not None and not isinstance(loader_kwargs, Mapping):
                raise InvalidParameterError(
                    "loader_kwargs must be a mapping of DataLoader options, e.g. "
                    f"{{'pin_memory': True}}; got {loader_kwargs!r}"
                )
            self.loader_kwargs = dict(loader_kwargs or {})
            self.image, self.label, self.balance = image, label, balance
            self.shuffle, self.drop_last, self.metadata = bool(shuffle), bool(drop_last), metadata
            self.fractions, self.block_size = fractions, block_size
            self.save_hyperparameters(ignore=["parts"])

        # --- stages ---------------------------------------------------------

        def setup(self, stage: str | None = None) -> None:
            """Split the tiles (once, when given tiles) and check that the
            split has the subsets ``stage`` reads: ``"fit"`` the
            ``"train"`` subset (and ``"val"`` when there is one),
            ``"validate"`` ``"val"``, ``"test"`` ``"test"``, ``"predict"``
            ``"predict"`` or else ``"test"``; ``None`` checks none."""
            if stage is not None and stage not in STAGES:
                raise InvalidParameterError(
                    f"TileDataModule.setup: stage must be one of {STAGES} or None; got {stage!r}"
                )
            if stage is None:
                self._split()
            elif stage == "predict":
                self._subset(self._predict_subset())
            else:
                self._subset({"fit": "train", "validate": "val", "test": "test"}[stage])

        def train_dataloader(self):
            """The train loader: this rank's share of ``"train"``, shuffled
            anew every epoch (with the seed), ``balance``, ``drop_last``."""
            rank, world = self._ranks()
            options = {
                "shuffle": self.shuffle,
                "seed": rank_seed(self.seed, rank, world),
                "drop_last": self.drop_last,
                "shuffle_buffer": self.shuffle_buffer,
            }
            if self.balance is not False:
                options["balance"] = self.balance
            loader = self._loader("train", **options)
            loader = _FitLoader(
                loader.dataset,
                batch_size=loader.batch_size,
                num_workers=loader.num_workers,
                epoch=self._fit_epoch,
                **self.loader_kwargs,
            )
            self._check_even_batches(loader)
            return loader

        def val_dataloader(self):
            """The ``"val"`` tiles of this rank, in order (no loader, ``[]``,
            when the split has no ``"val"``: fit then skips validation)."""
            return self._loader("val") if "val" in self._split() else []

        def test_dataloader(self):
            """The ``"test"`` tiles of this rank, in order."""
            return self._loader("test")

        def predict_dataloader(self):
            """The ``"predict"`` tiles (else the ``"test"`` ones) of this
            rank, in order; with labels when the subset holds the label
            variable, images only when it does not."""
            name = self._predict_subset()
            tiles = self._subset(name)
            labelled = not isinstance(tiles, xr.Dataset) or self.label in tiles.data_vars
            return self._loader(name, label=self.label if labelled else None)

        # --- helpers --------------------------------------------------------

        def _split(self) -> dict:
            if self.parts is None:
                self.parts = split(
                    self._tiles,
                    fractions=self.fractions,
                    block_size=self.block_size,
                    seed=self.seed,
                )
            return self.parts

        def _subset(self, name: str):
            parts = self._split()
            if name not in parts:
                raise InvalidParameterError(
                    f"TileDataModule: the split has no {name!r} subset, only {list(parts)}: "
                    f"give it one (split with fractions naming {name!r}, or pass a dict with "
                    f"a {name!r} entry)"
                )
            return parts[name]

        def _predict_subset(self) -> str:
            return "predict" if "predict" in self._split() else "test"

        def _ranks(self) -> tuple[int, int]:
            if self._ranks_given is not None:
                return self._ranks_given
            if self.trainer is not None:
                return int(self.trainer.global_rank), int(self.trainer.world_size)
            return 0, 1

        def _fit_epoch(self) -> int | None:
            trainer = self.trainer
            if trainer is not None and trainer.training:
                return int(trainer.current_epoch)
            return None

        def _share(self, name: str):
            tiles = self._subset(name)
            rank, world = self._ranks()
            if world == 1:
                return tiles
            x = schema.image_and_label(tiles, self.image)[0]
            idx = rank_share(tile_chunk_sizes(x.variable), rank, world)
            if not idx.size:
                raise InvalidParameterError(
                    f"TileDataModule: the {x.sizes[TILE_DIM]} {name!r} tiles cannot give each "
                    f"of the {world} ranks a tile: use fewer ranks or more tiles"
                )
            return tiles.isel({TILE_DIM: idx})

        def _loader(self, name: str, **options):
            options = {
                "image": self.image,
                "label": self.label,
                "num_workers": self.num_workers,
                "metadata": self.metadata,
                **self.loader_kwargs,
                **options,
            }
            return torch_loader(self._share(name), self.batch_size, **options)

        def _check_even_batches(self, loader) -> None:
            """Every rank of the trainer must run as many training steps."""
            trainer = self.trainer
            if trainer is None or trainer.world_size < 2:
                return
            mine = torch.tensor(len(loader), device=trainer.strategy.root_device)
            counts = [int(c) for c in trainer.strategy.all_gather(mine).reshape(-1).tolist()]
            if len(set(counts)) > 1:
                other = "drop_last=False" if self.drop_last else "drop_last=True"
                raise InvalidParameterError(
                    f"TileDataModule: the ranks' shares of the "
                    f"{self._subset('train').sizes[TILE_DIM]} training tiles make {counts} "
                    f"batches of {self.batch_size} (rank by rank), but ranks training together "
                    "need the same number, or they wait for each other forever: pass "
                    f"{other}, or another batch_size"
                )
