"""xflipnslide.TileDataModule: Lightning's fit, validate, test and predict
on real tiles of the built-in sample scene; epochs; ranks' shares.

Lightning's DDP cannot run here (one process, CPU): several ranks are
tested by building the module with explicit ``rank=``/``world_size=`` for
every rank, or with a stand-in trainer that answers ``world_size``,
``global_rank`` and ``strategy.all_gather``; what DDP itself does with the
loaders (process groups, gradient sync) is not tested.
"""

from __future__ import annotations

import inspect
import itertools
import subprocess
import sys
import warnings
from types import SimpleNamespace

import numpy as np
import pytest
import xarray as xr
from hypothesis import given
from hypothesis import strategies as st

import xflipnslide

lightning = pytest.importorskip("lightning")
torch = pytest.importorskip("torch")

from xflipnslide.ml.lightning import rank_share  # noqa: E402

pytestmark = [
    # Lightning's notes about any IterableDataset with a length, and about
    # few workers: true of every loader here, not of the package.
    pytest.mark.filterwarnings("ignore:Your `IterableDataset` has `__len__`:UserWarning"),
    pytest.mark.filterwarnings("ignore:.*does not have many workers:UserWarning"),
    pytest.mark.filterwarnings("ignore::xflipnslide.DataDroppedWarning"),
    # Lightning's note on a stage with no loader (no "val" subset): intended there
    pytest.mark.filterwarnings("ignore:Total length of `list` across ranks is zero:UserWarning"),
]


@pytest.fixture(scope="module")
def tiles():
    """Tiles of the sample scene (reflectance-like floats) with a label made
    by thresholding the band mean at its median: two classes."""
    scene = xflipnslide.open_image(xflipnslide.sample_scene_path(), chunks=None).load()
    image = (scene.astype("float32") / 10000).rename("image")
    mean = image.mean("band")
    label = (mean > mean.median()).astype("uint8")
    return xr.Dataset({"image": image, "label": label}).fns.tile(64, edge="pad")


@pytest.fixture(scope="module")
def parts(tiles):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", xflipnslide.DataDroppedWarning)
        return tiles.fns.split(seed=0)


class Segmenter(lightning.LightningModule):
    """A 1x1 convolution per pixel that records which tiles each step saw
    (by ``(row, col)``, when the batches carry metadata)."""

    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 2, 1)
        self.seen: dict = {}

    def _step(self, batch, stage):
        x, y = batch[0], batch[1]
        if len(batch) == 3:
            key = (stage, self.current_epoch) if stage == "train" else stage
            meta = batch[2]
            self.seen.setdefault(key, []).extend(zip(meta["row"].tolist(), meta["col"].tolist()))
        loss = torch.nn.functional.cross_entropy(self.conv(x), y)
        self.log(f"{stage}_loss", loss, batch_size=len(x))
        return loss

    def training_step(self, batch, i):
        return self._step(batch, "train")

    def validation_step(self, batch, i):
        self._step(batch, "val")

    def test_step(self, batch, i):
        self._step(batch, "test")

    def predict_step(self, batch, i):
        return self.conv(batch[0]).argmax(1)

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


def trainer(**options):
    return lightning.Trainer(
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        **options,
    )


def keys(tiles) -> list[tuple[int, int]]:
    """``(row, col)`` of each tile: the identity the tests follow tiles by."""
    out = list(zip(tiles.row.values.tolist(), tiles.col.values.tolist()))
    assert len(set(out)) == len(out)  # unique in this tile set
    return out


def seen(loader, passes: int = 1) -> list[list[tuple[int, int]]]:
    """``(row, col)`` of the tiles of each pass over a metadata loader."""
    out = []
    for _ in range(passes):
        out.append([k for *_, m in loader for k in zip(m["row"].tolist(), m["col"].tolist())])
    return out


# --- the four stages ------------------------------------------------------------


def test_fit_validate_test_predict_run_on_the_sample_scene(parts):
    data = xflipnslide.TileDataModule(parts, 16, label="label", seed=0)
    model = Segmenter()
    run = trainer(fast_dev_run=True)
    run.fit(model, datamodule=data)
    assert run.state.finished and torch.isfinite(run.callback_metrics["train_loss"])
    assert "val_loss" in run.callback_metrics
    (validated,) = run.validate(model, datamodule=data)
    (tested,) = run.test(model, datamodule=data)
    assert np.isfinite(validated["val_loss"]) and np.isfinite(tested["test_loss"])
    (pred,) = run.predict(model, datamodule=data)  # fast_dev_run: one batch
    assert pred.shape == (16, 64, 64) and pred.dtype == torch.int64


def test_a_whole_run_reads_each_subset_in_full(parts):
    data = xflipnslide.TileDataModule(parts, 16, label="label", seed=0, metadata=True)
    model = Segmenter()
    run = trainer(max_epochs=1)
    run.fit(model, datamodule=data)
    run.test(model, datamodule=data)
    assert sorted(model.seen[("train", 0)]) == sorted(keys(parts["train"]))
    # validation runs a sanity check (2 batches) and then the whole subset, in order
    val = keys(parts["val"])
    assert model.seen["val"] == val[:32] + val
    assert model.seen["test"] == keys(parts["test"])
    preds = run.predict(model, datamodule=data)
    assert sum(len(p) for p in preds) == parts["test"].sizes["tile"]


def test_setup_splits_tiles_with_the_seed_and_fractions(tiles):
    fractions = {"train": 0.6, "val": 0.2, "test": 0.2}
    data = xflipnslide.TileDataModule(tiles, 8, fractions=fractions, block_size=256, seed=3)
    assert data.parts is None
    data.setup("fit")
    expected = tiles.fns.split(fractions=fractions, block_size=256, seed=3)
    assert list(data.parts) == ["train", "val", "test"]
    for name, part in expected.items():
        assert keys(data.parts[name]) == keys(part)
    other = xflipnslide.TileDataModule(tiles, 8, fractions=fractions, block_size=256, seed=4)
    other.setup("test")
    assert keys(other.parts["test"]) != keys(data.parts["test"])


def test_setup_checks_the_subsets_each_stage_reads(parts):
    data = xflipnslide.TileDataModule({"train": parts["train"]}, 16, label="label")
    data.setup("fit")  # no "val": fit trains without validating
    assert data.val_dataloader() == []
    for stage, name in [("validate", "val"), ("test", "test"), ("predict", "test")]:
        with pytest.raises(xflipnslide.InvalidParameterError, match=rf"no '{name}'.*\['train'\]"):
            data.setup(stage)
    with pytest.raises(xflipnslide.InvalidParameterError, match="stage must be one of"):
        data.setup("train")
    run = trainer(max_epochs=1, limit_train_batches=2)
    run.fit(Segmenter(), datamodule=data)
    assert "val_loss" not in run.callback_metrics


def test_predict_reads_a_predict_subset_with_or_without_labels(parts):
    unlabelled = parts["val"].drop_vars("label")
    data = xflipnslide.TileDataModule(
        {"train": parts["train"], "test": parts["test"], "predict": unlabelled},
        16,
        label="label",
        metadata=True,
    )
    data.setup("predict")
    batches = list(data.predict_dataloader())
    assert all(len(b) == 2 for b in batches)  # images and metadata, no labels
    assert [k for _, m in batches for k in zip(m["row"].tolist(), m["col"].tolist())] == keys(
        unlabelled
    )
    labelled = xflipnslide.TileDataModule(parts, 16, label="label", metadata=True)
    assert seen(labelled.predict_dataloader()) == [keys(parts["test"])]


# --- epochs -------------------------------------------------------------------------


def fit_orders(parts, epochs: int, seed: int = 0, **options) -> list[list]:
    data = xflipnslide.TileDataModule(parts, 16, label="label", seed=seed, metadata=True, **options)
    model = Segmenter()
    trainer(max_epochs=epochs, limit_val_batches=0).fit(model, datamodule=data)
    return [model.seen[("train", e)] for e in range(epochs)]


def test_each_epoch_of_a_fit_is_a_new_order_of_every_train_tile(parts):
    orders = fit_orders(parts, 3)
    train = sorted(keys(parts["train"]))
    for order in orders:
        assert sorted(order) == train  # every tile once per epoch
    assert len({tuple(o) for o in orders}) == 3  # a new order each epoch
    # the same sequence as the package's loader gives, epoch by epoch
    loader = parts["train"].fns.torch_loader(16, label="label", shuffle=True, seed=0, metadata=True)
    assert orders == seen(loader, 3)
    assert fit_orders(parts, 3) == orders  # reproducible from the seed
    assert fit_orders(parts, 1, seed=1)[0] != orders[0]


def test_a_resumed_fit_continues_the_sequence_of_orders(parts, tmp_path):
    whole = fit_orders(parts, 3)
    data = xflipnslide.TileDataModule(parts, 16, label="label", seed=0, metadata=True)
    first = trainer(max_epochs=2, limit_val_batches=0)
    first.fit(Segmenter(), datamodule=data)
    first.save_checkpoint(tmp_path / "two.ckpt")
    model = Segmenter()
    again = xflipnslide.TileDataModule(parts, 16, label="label", seed=0, metadata=True)
    trainer(max_epochs=3, limit_val_batches=0).fit(
        model, datamodule=again, ckpt_path=tmp_path / "two.ckpt"
    )
    assert list(model.seen) == [("train", 2)]
    assert model.seen[("train", 2)] == whole[2]  # not epoch 0's order again


def test_workers_feed_a_fit_every_tile_each_epoch(parts):
    lazy = {name: part.chunk({"tile": 20}) for name, part in parts.items()}
    orders = fit_orders(lazy, 2, num_workers=2)
    for order in orders:
        assert sorted(order) == sorted(keys(parts["train"]))
    assert orders[0] != orders[1]


# --- ranks ------------------------------------------------------------------------


@given(
    chunks=st.lists(st.integers(1, 9), min_size=1, max_size=12),
    world=st.integers(1, 5),
)
def test_rank_shares_are_disjoint_cover_every_tile_and_deal_whole_chunks(chunks, world):
    shares = [rank_share(chunks, r, world) for r in range(world)]
    everything = np.concatenate(shares)
    assert sorted(everything.tolist()) == list(range(sum(chunks)))  # all, each once
    sizes = [len(s) for s in shares]
    assert max(sizes) - min(sizes) <= 1
    bounds = np.cumsum([0, *chunks])
    owners = [
        {r for r, s in enumerate(shares) if np.isin(s, range(a, b)).any()}
        for a, b in itertools.pairwise(bounds)
    ]
    for size in set(chunks):
        shared = [c for c, o in enumerate(owners) if chunks[c] == size and len(o) > 1]
        assert len(shared) < world  # the rest are read by one rank each


def test_rank_shares_of_in_memory_tiles_interleave():
    assert rank_share((7,), 1, 3).tolist() == [1, 4]
    assert rank_share((4, 4), 1, 2).tolist() == [4, 5, 6, 7]


@pytest.mark.parametrize("world", [2, 3])
def test_each_rank_reads_its_share_of_every_subset(parts, world):
    lazy = {name: part.chunk({"tile": 40}) for name, part in parts.items()}
    modules = [
        xflipnslide.TileDataModule(lazy, 8, label="label", metadata=True, rank=r, world_size=world)
        for r in range(world)
    ]
    train = [seen(m.train_dataloader(), 2) for m in modules]
    for epoch in range(2):
        got = [k for rank in train for k in rank[epoch]]
        assert sorted(got) == sorted(keys(parts["train"]))  # disjoint, all once per epoch
    assert all(rank[0] != rank[1] for rank in train)  # each rank reshuffles
    assert train[0][0] != train[1][0]
    for name, make in [("val", "val_dataloader"), ("test", "test_dataloader")]:
        got = [seen(getattr(m, make)())[0] for m in modules]
        assert sorted(k for g in got for k in g) == sorted(keys(parts[name]))
        for g in got:  # each rank's share in order
            assert g == [k for k in keys(parts[name]) if k in set(g)]
    sizes = [len(rank[0]) for rank in train]
    assert max(sizes) - min(sizes) <= 1


def stand_in_trainer(rank, world, counts=None, epoch=0, training=False):
    """What the data module asks of a DDP trainer, with ``all_gather``
    answering the batch counts of every rank."""

    def all_gather(tensor):
        return torch.tensor(counts if counts is not None else [int(tensor)] * world)

    strategy = SimpleNamespace(root_device=torch.device("cpu"), all_gather=all_gather)
    return SimpleNamespace(
        global_rank=rank,
        world_size=world,
        current_epoch=epoch,
        training=training,
        strategy=strategy,
    )


def test_ranks_come_from_the_trainer(parts):
    explicit = xflipnslide.TileDataModule(
        parts, 8, label="label", metadata=True, rank=1, world_size=3
    )
    data = xflipnslide.TileDataModule(parts, 8, label="label", metadata=True)
    data.trainer = stand_in_trainer(1, 3)
    assert seen(data.train_dataloader()) == seen(explicit.train_dataloader())
    assert seen(data.val_dataloader()) == seen(explicit.val_dataloader())
    # while fitting, the epoch is the trainer's
    data.trainer = stand_in_trainer(1, 3, epoch=4, training=True)
    loader = explicit.train_dataloader()
    assert seen(data.train_dataloader()) == seen(loader, 5)[4:]


def test_uneven_training_batches_across_ranks_are_refused(parts):
    n = parts["train"].sizes["tile"]
    assert n % 2  # shares of n // 2 + 1 and n // 2 tiles
    batch = n // 2  # 2 batches on rank 0, 1 on rank 1
    counts = [
        len(xflipnslide.TileDataModule(parts, batch, rank=r, world_size=2).train_dataloader())
        for r in range(2)
    ]
    assert counts == [2, 1]
    data = xflipnslide.TileDataModule(parts, batch)
    data.trainer = stand_in_trainer(0, 2, counts)
    with pytest.raises(
        xflipnslide.InvalidParameterError, match=r"\[2, 1\] batches.*drop_last=True"
    ):
        data.train_dataloader()
    fixed = xflipnslide.TileDataModule(parts, batch, drop_last=True)
    fixed.trainer = stand_in_trainer(0, 2)  # all ranks 1 batch
    assert len(fixed.train_dataloader()) == 1


def test_more_ranks_than_tiles_is_a_typed_error(parts):
    few = {"train": parts["train"].isel(tile=slice(0, 2))}
    data = xflipnslide.TileDataModule(few, 8, rank=2, world_size=3)
    with pytest.raises(xflipnslide.InvalidParameterError, match="each of the 3 ranks a tile"):
        data.train_dataloader()


# --- options ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("options", "match"),
    [
        ({"batch_size": 0}, "batch_size must be a positive integer"),
        ({"seed": -1}, "seed must be an int >= 0"),
        ({"num_workers": -1}, "num_workers must be an integer >= 0"),
        ({"rank": 1}, "rank= and world_size= together"),
        ({"rank": 2, "world_size": 2}, "rank must be below world_size"),
        ({"fractions": {"train": 0.5, "val": 0.5}}, "split already"),
        ({"loader_kwargs": ["pin_memory"]}, "loader_kwargs must be a mapping"),
    ],
)
def test_bad_options_are_typed_errors_that_say_what_to_do(parts, options, match):
    with pytest.raises(xflipnslide.InvalidParameterError, match=match):
        xflipnslide.TileDataModule(parts, **options)


@pytest.mark.parametrize("parts_", [None, {}, {"train": np.zeros(3)}, xr.DataArray([1.0])])
def test_what_is_not_tiles_or_a_split_is_refused(parts_):
    with pytest.raises(xflipnslide.InvalidParameterError, match=r"call \.fns\.tile"):
        xflipnslide.TileDataModule(parts_)


def test_batch_size_and_options_are_attributes_and_hparams(parts):
    data = xflipnslide.TileDataModule(parts, 24, label="label")
    assert data.batch_size == 24 and data.hparams["batch_size"] == 24
    assert data.hparams["label"] == "label" and "parts" not in data.hparams
    data.batch_size = 12  # as Lightning's batch size finder sets it
    images, _ = next(iter(data.train_dataloader()))
    assert len(images) == 12
    pinned = xflipnslide.TileDataModule(parts, loader_kwargs={"pin_memory": True})
    for make in ("train_dataloader", "val_dataloader", "test_dataloader", "predict_dataloader"):
        assert getattr(pinned, make)().pin_memory and not getattr(data, make)().pin_memory


@pytest.mark.skipif(
    "balance" not in inspect.signature(xflipnslide.torch_loader).parameters,
    reason="torch_loader takes no balance= yet",
)
def test_balance_is_forwarded_to_the_train_loader_only(parts):
    data = xflipnslide.TileDataModule(parts, 16, label="label", balance=True, seed=0, metadata=True)
    direct = parts["train"].fns.torch_loader(
        16, label="label", balance=True, shuffle=True, seed=0, metadata=True
    )
    assert seen(data.train_dataloader(), 2) == seen(direct, 2)
    assert seen(data.val_dataloader()) == [keys(parts["val"])]


def test_a_fit_warns_nothing_of_the_package_nor_about_batch_sizes(parts):
    data = xflipnslide.TileDataModule(parts, 16, label="label", metadata=True)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        run = trainer(max_epochs=1, limit_train_batches=2, limit_val_batches=2)
        run.fit(Segmenter(), datamodule=data)
    messages = [str(w.message) for w in caught]
    assert not [w for w in caught if issubclass(w.category, xflipnslide.XFlipNSlideWarning)]
    assert not [m for m in messages if "batch_size" in m]


# --- importing ----------------------------------------------------------------------


def test_missing_lightning_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "lightning", None)
    with pytest.raises(
        xflipnslide.MissingDependencyError, match=r'pip install "xflipnslide\[lightning\]"'
    ):
        xflipnslide.TileDataModule
    with pytest.raises(AttributeError, match="no attribute 'TileDataModul'"):
        xflipnslide.TileDataModul


def test_lightning_is_imported_only_when_the_data_module_is_used():
    code = (
        "import sys, xflipnslide\n"
        "before = [m for m in ('lightning', 'torch') if m in sys.modules]\n"
        "cls = xflipnslide.TileDataModule\n"
        "import lightning\n"
        "print(before, issubclass(cls, lightning.LightningDataModule), 'TileDataModule' in xflipnslide.__all__)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split("\n")[-2] == "[] True True"
