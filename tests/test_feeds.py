"""The training feeds: per-tile shuffling, every tile once per epoch, chunks
read once, seeds, workers, and the TensorFlow/Keras path."""

from __future__ import annotations

import collections
import warnings

import numpy as np
import pytest
import xarray as xr
from hypothesis import given
from hypothesis import strategies as st

import xflipnslide
from xflipnslide.ml import TileFeed
from xflipnslide.ml.order import TileOrder


@given(
    chunks=st.lists(st.integers(1, 40), min_size=1, max_size=12),
    batch=st.integers(1, 17),
    shuffle=st.booleans(),
    drop_last=st.booleans(),
    buffer=st.integers(1, 100),
    workers=st.integers(1, 3),
    epoch=st.integers(0, 3),
)
def test_every_tile_once_per_epoch(chunks, batch, shuffle, drop_last, buffer, workers, epoch):
    order = TileOrder(tuple(chunks), batch, shuffle, 7, drop_last, buffer)
    seen, loads = [], []
    for w in range(workers):
        loaded: set[int] = set()
        for needs, idx in order.batches(epoch, w, workers):
            if needs:
                loaded = set(needs) | (loaded & set(needs))
                loads.extend(c for c in needs if c not in loads)
            owners = np.searchsorted(np.cumsum(chunks), idx, side="right")
            assert set(owners.tolist()) <= loaded  # a batch only needs loaded chunks
            assert len(idx) <= batch
            seen.extend(idx.tolist())
    n = sum(chunks)
    if drop_last:
        assert len(seen) == len(set(seen)) and n - len(seen) < batch * workers
    else:
        assert sorted(seen) == list(range(n))
    assert len(loads) == len(set(loads))  # each chunk loaded at most once per epoch
    if workers == 1:
        assert sum(1 for _ in order.batches(epoch)) == len(order)


def test_seeds_reproduce_epochs_and_epochs_differ():
    order = TileOrder((50, 50, 50, 50), 16, True, seed=3, buffer=60)
    a = [np.concatenate([i for _, i in order.batches(e)]) for e in range(3)]
    b = [np.concatenate([i for _, i in order.batches(e)]) for e in range(3)]
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x, y)
    assert not np.array_equal(a[0], a[1])
    other = TileOrder((50, 50, 50, 50), 16, True, seed=4, buffer=60)
    assert not np.array_equal(a[0], np.concatenate([i for _, i in other.batches(0)]))


@pytest.fixture(scope="module")
def lazy_tiles():
    rng = np.random.default_rng(0)
    scene = xr.DataArray(rng.random((2, 1024, 1024), "float32"), dims=("band", "y", "x"))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", xflipnslide.XFlipNSlideWarning)
        return scene.chunk({"y": 256, "x": 256}).fns.tile(64, tile_chunks=48)


def counting_reads(tiles: xr.DataArray):
    """``tiles`` that count, per tile chunk, how often dask computes it."""
    reads = collections.Counter()

    def count(block, block_info=None):
        if block_info is not None:  # None: dask probing the function
            reads[block_info[0]["chunk-location"][0]] += 1
        return block

    return tiles.copy(data=tiles.data.map_blocks(count, dtype=tiles.dtype)), reads


def test_batches_mix_transform_codes_and_read_each_chunk_once(lazy_tiles):
    counted, reads = counting_reads(lazy_tiles)
    feed = TileFeed.from_tiles(counted, 32, shuffle=True, seed=0, shuffle_buffer=256)
    codes = lazy_tiles.transform.values
    distinct, seen = [], []
    for batch in feed.epoch(0):
        distinct.append(len(np.unique(codes[batch["tile"]])))
        seen.extend(batch["tile"].tolist())
        np.testing.assert_array_equal(batch["image"][0], lazy_tiles.values[batch["tile"][0]])
    assert sorted(seen) == list(range(lazy_tiles.sizes["tile"]))
    # every tile chunk computed exactly once in the epoch
    assert sorted(reads) == list(range(len(lazy_tiles.chunks[0])))
    assert set(reads.values()) == {1}
    assert np.mean(distinct) >= 6, np.mean(distinct)  # most of the 8 codes per batch
    # unshuffled: the store's order, a run of neighbouring tiles
    plain = TileFeed.from_tiles(lazy_tiles, 32, shuffle_buffer=256)
    first = next(plain.epoch(0))
    np.testing.assert_array_equal(first["tile"], np.arange(32))


def test_torch_loader_shuffles_tiles_keeps_the_last_batch_and_metadata(lazy_tiles):
    torch = pytest.importorskip("torch")
    n = lazy_tiles.sizes["tile"]
    loader = lazy_tiles.fns.torch_loader(32, shuffle=True, seed=1, metadata=True)
    assert len(loader) == -(-n // 32)
    epochs = []
    for _ in range(2):
        tiles = []
        for images, meta in loader:
            assert images.dtype == torch.float32
            tiles.extend(meta["tile"].tolist())
            k = int(meta["tile"][0])
            assert int(meta["row"][0]) == int(lazy_tiles.row[k])
            assert int(meta["transform"][0]) == int(lazy_tiles.transform[k])
        assert sorted(tiles) == list(range(n))
        epochs.append(tiles)
    assert epochs[0] != epochs[1]  # a new order every epoch
    again = lazy_tiles.fns.torch_loader(32, shuffle=True, seed=1, metadata=True)
    assert [int(t) for _, m in again for t in m["tile"]] == epochs[0]
    dropped = lazy_tiles.fns.torch_loader(32, drop_last=True)
    assert len(dropped) == n // 32 and all(b.shape[0] == 32 for b in dropped)


def test_torch_workers_deliver_the_same_tiles(lazy_tiles):
    pytest.importorskip("torch")
    loader = lazy_tiles.fns.torch_loader(16, shuffle=True, seed=0, num_workers=2, metadata=True)
    got = sorted(int(t) for _, m in loader for t in m["tile"])
    assert got == list(range(lazy_tiles.sizes["tile"]))


@pytest.fixture(scope="module")
def labelled_tiles():
    gpd = pytest.importorskip("geopandas")
    from conftest import DATA

    image = xflipnslide.open_image(
        f"{DATA}/landsat8/LC08_L1TP_224078_20200518_labels_area_RGB.tif", chunks=None
    ).load()
    gdf = gpd.read_file(f"{DATA}/landsat8/LC08_L1TP_224078_20200518_20200518_01_RT_polygons.gpkg")
    classes = {"water": 1, "crop": 2, "tree": 3, "developed": 4}
    label = xflipnslide.rasterize(gdf.assign(c=gdf.name.map(classes)), image, column="c")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", xflipnslide.XFlipNSlideWarning)
        ds = xr.Dataset({"image": image, "label": label}).fns.preprocess()
        return ds.fns.tile(32, edge="pad")


def test_tf_dataset_feeds_keras(labelled_tiles):
    tf = pytest.importorskip("tensorflow")
    n = labelled_tiles.sizes["tile"]
    data = labelled_tiles.fns.tf_dataset(16, label="label", shuffle=True, seed=0)
    x, y = next(iter(data))
    assert x.shape == (16, 32, 32, 3) and x.dtype == tf.float32
    assert y.shape == (16, 32, 32) and y.dtype == tf.int64
    k = labelled_tiles.image.values
    assert any(np.allclose(x.numpy()[0], k[i].transpose(1, 2, 0)) for i in range(n))
    count = sum(int(b[0].shape[0]) for b in data)
    assert count == n  # every tile, the last partial batch kept
    first = [b[0].numpy() for b in data.take(2)]
    second = [b[0].numpy() for b in data.take(2)]
    assert not np.array_equal(first[0], second[0])  # each pass is the next epoch
    keras = tf.keras
    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [
            keras.Input((32, 32, 3)),
            keras.layers.Conv2D(8, 3, padding="same", activation="relu"),
            keras.layers.Conv2D(5, 1),
        ]
    )
    model.compile(
        optimizer=keras.optimizers.Adam(0.01),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    history = model.fit(data, epochs=3, verbose=0)
    losses = history.history["loss"]
    assert losses[-1] < losses[0]
    channels_first = labelled_tiles.fns.tf_dataset(8, channels_last=False)
    assert next(iter(channels_first)).shape == (8, 3, 32, 32)


def test_tf_missing_names_the_extra(monkeypatch, labelled_tiles):
    import sys

    monkeypatch.setitem(sys.modules, "tensorflow", None)
    with pytest.raises(ImportError, match=r'pip install "xflipnslide\[tensorflow\]"'):
        labelled_tiles.fns.tf_dataset(8)


# --- class-balanced feeds ------------------------------------------------------


@pytest.fixture(scope="module")
def rare_tiles():
    """Class 0 everywhere, class 1 on the left half, class 2 in one 8 x 8
    patch; lazy, in tile chunks of 16."""
    lab = np.zeros((96, 96), "uint8")
    lab[:, :48] = 1
    lab[60:68, 60:68] = 2
    rng = np.random.default_rng(0)
    ds = xr.Dataset(
        {
            "image": (("band", "y", "x"), rng.random((1, 96, 96), "float32")),
            "label": (("y", "x"), lab),
        }
    )
    return ds.chunk({"y": 48, "x": 48}).fns.tile(16, tile_chunks=16)


def oracle_tile_weights(labels: np.ndarray) -> np.ndarray:
    """``w_t = max {N / n_c : n_tc > 0}`` from per-tile ``np.bincount``."""
    per_tile = np.array([np.bincount(t.ravel(), minlength=3) for t in labels])
    totals = per_tile.sum(0)
    return np.array([max(totals.sum() / totals[c] for c in range(3) if row[c]) for row in per_tile])


def balanced_epoch(feed, epoch, worker=0, workers=1) -> np.ndarray:
    return np.concatenate([b["tile"] for b in feed.epoch(epoch, worker, workers)])


def test_balanced_feed_draws_within_binomial_bounds_as_many_as_tiles(rare_tiles):
    n = rare_tiles.sizes["tile"]
    feed = TileFeed.from_tiles(rare_tiles, 16, label="label", balance=True, seed=0, classes=3)
    p = oracle_tile_weights(rare_tiles["label"].values)
    p = p / p.sum()
    epochs, drawn = 120, np.zeros(n, np.int64)
    for e in range(epochs):
        tiles = balanced_epoch(feed, e)
        assert tiles.size == n  # every epoch draws as many tiles as there are
        np.add.at(drawn, tiles, 1)
    trials = epochs * n
    sigma = np.sqrt(trials * p * (1 - p))
    assert (np.abs(drawn - trials * p) <= 5 * sigma + 1e-9).all()
    rare = (rare_tiles["label"].values == 2).any((1, 2))
    assert drawn[rare].sum() / trials > 3 * rare.mean()  # the rare class comes far more often


def test_balanced_feed_is_reproducible_per_seed_and_epoch_and_chunk_aware(rare_tiles):
    def feed(seed, tiles=rare_tiles):
        return TileFeed.from_tiles(tiles, 8, label="label", balance=True, seed=seed, classes=3)

    a, b, other = feed(3), feed(3), feed(4)
    for e in range(3):
        np.testing.assert_array_equal(balanced_epoch(a, e), balanced_epoch(b, e))
    assert not np.array_equal(balanced_epoch(a, 0), balanced_epoch(a, 1))
    assert not np.array_equal(balanced_epoch(a, 0), balanced_epoch(other, 0))
    counted, reads = counting_reads(rare_tiles["image"])
    lazy = rare_tiles.assign(image=counted)
    for e in range(3):
        reads.clear()
        drawn = balanced_epoch(feed(3, lazy), e)
        chunks_drawn = set((drawn // 16).tolist())
        assert set(reads) == chunks_drawn and set(reads.values()) == {1}


def test_balance_takes_per_tile_weights(rare_tiles):
    n = rare_tiles.sizes["tile"]
    weights = np.zeros(n)
    weights[[3, 40, 41]] = [1.0, 2.0, 1.0]
    feed = TileFeed.from_tiles(rare_tiles, 16, balance=weights, seed=1)
    for e in range(4):
        tiles = balanced_epoch(feed, e)
        assert tiles.size == n and set(tiles.tolist()) <= {3, 40, 41}
    with pytest.raises(xflipnslide.InvalidParameterError, match=rf"one per tile, shape \({n},\)"):
        TileFeed.from_tiles(rare_tiles, 16, balance=weights[:-1])
    with pytest.raises(xflipnslide.InvalidParameterError, match="pass label="):
        TileFeed.from_tiles(rare_tiles, 16, balance=True)
    with pytest.raises(xflipnslide.InvalidParameterError, match="classes="):
        TileFeed.from_tiles(rare_tiles, 16, label="label", balance=True)  # lazy labels


def test_balanced_torch_loader_with_workers_counts_every_epoch(rare_tiles):
    pytest.importorskip("torch")
    n = rare_tiles.sizes["tile"]
    loader = rare_tiles.fns.torch_loader(
        8, label="label", balance=True, classes=3, seed=2, num_workers=2, metadata=True
    )
    single = TileFeed.from_tiles(rare_tiles, 8, label="label", balance=True, classes=3, seed=2)
    for e in range(3):
        expected = len(loader)  # the next epoch's count
        got = [m["tile"] for _, _, m in loader]
        assert len(got) == expected
        tiles = np.sort(np.concatenate([t.numpy() for t in got]))
        assert tiles.size == n  # as many draws as tiles, over both workers
        np.testing.assert_array_equal(tiles, np.sort(balanced_epoch(single, e)))


def test_balanced_tf_dataset_draws_as_many_as_tiles(rare_tiles):
    pytest.importorskip("tensorflow")
    n = rare_tiles.sizes["tile"]
    data = rare_tiles.fns.tf_dataset(16, label="label", balance=True, classes=3, seed=0)
    for _ in range(2):
        assert sum(int(x.shape[0]) for x, _ in data) == n


def test_in_order_windows_are_runs_of_chunks_of_at_least_the_buffer():
    order = TileOrder((7,) * 12 + (1,), 8, False, buffer=20)
    assert order.windows(0) == [[0, 1, 2], [3, 4, 5], [6, 7, 8], [9, 10, 11], [12]]
    tiles = np.concatenate([i for _, i in order.batches(0)])
    np.testing.assert_array_equal(tiles, np.arange(85))  # still the store's order


def _store_reads(monkeypatch) -> collections.Counter:
    """Counts the reads of every key of local Zarr stores."""
    from zarr.storage import LocalStore

    reads = collections.Counter()
    get = LocalStore.get

    async def counted(self, key, *args, **kwargs):
        reads[key] += 1
        return await get(self, key, *args, **kwargs)

    monkeypatch.setattr(LocalStore, "get", counted)
    return reads


@pytest.mark.parametrize("shuffle", [False, True], ids=["in-order", "shuffled"])
def test_an_epoch_from_a_zarr_store_reads_each_chunk_once(tmp_path, monkeypatch, shuffle):
    """Chunks of a reopened store, as ``to_zarr`` writes them: each is read
    once per epoch (the next window read ahead), and batches hold the
    numpy path's values."""
    rng = np.random.default_rng(0)
    image = xr.DataArray(rng.random((2, 256, 256), "float32"), dims=("band", "y", "x"))
    label = xr.DataArray(rng.integers(0, 5, (256, 256)).astype("uint8"), dims=("y", "x"))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", xflipnslide.XFlipNSlideWarning)
        expected = xr.Dataset({"image": image, "label": label}).fns.tile(32)
        lazy = xr.Dataset({"image": image, "label": label}).chunk({"y": 128, "x": 128})
        lazy.fns.tile(32, tile_chunks=16).to_zarr(tmp_path / "tiles.zarr", consolidated=False)
    stored = xr.open_zarr(tmp_path / "tiles.zarr", consolidated=False)
    n_chunks = len(stored.image.chunks[0])
    assert n_chunks == -(-expected.sizes["tile"] // 16)
    reads = _store_reads(monkeypatch)
    feed = TileFeed.from_tiles(stored, 8, label="label", shuffle=shuffle, seed=2, shuffle_buffer=40)
    seen = []
    for batch in feed.epoch(0):
        k = batch["tile"]
        np.testing.assert_array_equal(batch["image"], expected.image.values[k])
        np.testing.assert_array_equal(batch["label"], expected.label.values[k])
        seen.extend(k.tolist())
    assert sorted(seen) == list(range(expected.sizes["tile"]))
    chunk_reads = {k: v for k, v in reads.items() if k.startswith(("image/c/", "label/c/"))}
    assert len(chunk_reads) == 2 * n_chunks and set(chunk_reads.values()) == {1}


def test_in_memory_tiles_are_dealt_to_workers_one_by_one_and_shuffled_as_before():
    """Before, in-memory tiles were one chunk: one worker fed them all. The
    order with one worker is unchanged: a full shuffle from ``(seed, epoch)``."""
    scene = xr.DataArray(np.zeros((1, 256, 256), "float32"), dims=("band", "y", "x"))
    tiles = scene.fns.tile(64)  # 85 tiles
    feed = TileFeed.from_tiles(tiles, 16, shuffle=True, seed=4)
    np.testing.assert_array_equal(feed.order.shares(2), [43, 42])
    one = np.concatenate([b["tile"] for b in feed.epoch(1)])
    np.testing.assert_array_equal(one, np.random.default_rng((4, 1, 0)).permutation(85))
    two = [np.concatenate([b["tile"] for b in feed.epoch(1, w, 2)]) for w in range(2)]
    assert sorted(np.concatenate(two).tolist()) == list(range(85))
    assert all(len(np.unique(t // 43)) == 2 for t in two)  # each worker's tiles span the set


def test_worker_batches_are_written_into_shared_memory(lazy_tiles):
    pytest.importorskip("torch")
    from xflipnslide.ml.torch import shared_empty

    feed = TileFeed.from_tiles(lazy_tiles, 16, shuffle=True, seed=0)
    batch = next(feed.epoch(0, 1, 2, empty=shared_empty))
    assert batch["image"].is_shared()  # sent to the main process without a copy
    np.testing.assert_array_equal(batch["image"].numpy(), lazy_tiles.values[batch["tile"]])


def test_many_in_memory_tiles_are_still_one_full_shuffle():
    tiles = xr.DataArray(np.zeros((9000, 1, 4, 4), "float32"), dims=("tile", "band", "y", "x"))
    feed = TileFeed.from_tiles(tiles, 1000, shuffle=True, seed=1)
    assert len(feed.order.chunks) < 9000  # tiles grouped into fewer units
    got = np.concatenate([b["tile"] for b in feed.epoch(0)])
    np.testing.assert_array_equal(got, np.random.default_rng((1, 0, 0)).permutation(9000))
