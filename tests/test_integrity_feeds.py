"""The training feeds with worker processes: ``len(loader)`` is the number of
batches that come, every tile comes once per epoch, workers start under
every start method and persistent workers see each new epoch; seeds are
checked once, the same way everywhere."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import warnings

import numpy as np
import pytest
import xarray as xr
from hypothesis import given
from hypothesis import strategies as st

import xflipnslide
from xflipnslide import InvalidParameterError
from xflipnslide.ml.order import TileOrder


def _dataset() -> xr.Dataset:  # the same in SCRIPT below
    rng = np.random.default_rng(0)
    image = xr.DataArray(rng.random((2, 128, 128), "float32"), dims=("band", "y", "x"))
    label = xr.DataArray(rng.integers(0, 5, (128, 128)).astype("uint8"), dims=("y", "x"))
    return xr.Dataset({"image": image, "label": label})


@pytest.fixture(scope="module")
def lazy_tiles() -> xr.Dataset:
    """85 lazy tiles in 13 chunks along ``tile``: twelve of 7 tiles and one of 1."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", xflipnslide.XFlipNSlideWarning)
        tiles = _dataset().chunk({"y": 64, "x": 64}).fns.tile(32, tile_chunks=7)
    assert tiles.sizes["tile"] == 85 and tiles.chunks["tile"] == (7,) * 12 + (1,)
    return tiles


def _epoch(loader) -> tuple[list[int], int, list[str]]:
    """The tiles one pass yields, the number of batches, and torch's warnings."""
    seen, batches = [], 0
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for _, _, meta in loader:
            seen.extend(meta["tile"].tolist())
            batches += 1
    return seen, batches, [str(w.message) for w in caught if "IterableDataset" in str(w.message)]


# Two workers, each dealt 6 chunks of 7 tiles; one also gets the 1-tile chunk:
# 43 and 42 tiles. Each worker keeps its own last partial batch.
#   batch 8:  6 + 6 = 12 batches (one worker's count, ceil(85 / 8), is 11)
#   batch 11, drop_last: 3 + 3 = 6 (85 // 11 is 7)
@pytest.mark.parametrize(("batch", "drop_last", "expected"), [(8, False, 12), (11, True, 6)])
@pytest.mark.parametrize("shuffle", [False, True], ids=["in-order", "shuffled"])
def test_len_is_the_number_of_batches_workers_yield(
    lazy_tiles, batch, drop_last, expected, shuffle
):
    pytest.importorskip("torch")
    loader = lazy_tiles.fns.torch_loader(
        batch,
        label="label",
        shuffle=shuffle,
        seed=3,
        drop_last=drop_last,
        num_workers=2,
        metadata=True,
    )
    assert len(loader) == expected
    for _ in range(2):  # the same count every epoch
        seen, batches, torch_warnings = _epoch(loader)
        assert batches == len(loader) == expected
        assert not torch_warnings  # "Length of IterableDataset ... was reported to be ..."
        assert len(seen) == len(set(seen))  # no tile twice
        if not drop_last:
            assert sorted(seen) == list(range(85))  # every tile once per epoch
        assert len(seen) == (85 if not drop_last else 66)


@given(
    chunks=st.lists(st.integers(0, 30), min_size=1, max_size=14).filter(sum),
    batch=st.integers(1, 13),
    shuffle=st.booleans(),
    drop_last=st.booleans(),
    buffer=st.integers(1, 80),
    workers=st.integers(1, 5),
)
def test_order_count_is_what_the_workers_yield_every_epoch(
    chunks, batch, shuffle, drop_last, buffer, workers
):
    order = TileOrder(tuple(chunks), batch, shuffle, 5, drop_last, buffer)
    n = sum(chunks)
    for epoch in range(3):
        per_worker = [list(order.batches(epoch, w, workers)) for w in range(workers)]
        assert order.count(workers) == sum(len(b) for b in per_worker)
        tiles = [t for b in per_worker for _, idx in b for t in idx.tolist()]
        shares = [sum(len(idx) for _, idx in b) for b in per_worker]
        if drop_last:
            assert len(tiles) == len(set(tiles))
            assert all(s % batch == 0 for s in shares)
        else:
            assert sorted(tiles) == list(range(n))
            np.testing.assert_array_equal(order.shares(workers), shares)
        # each chunk is read by one worker only
        dealt = order.deal(epoch, workers)
        assert sorted(c for d in dealt for c in d.tolist()) == list(range(len(chunks)))
    # the deal is balanced: shares differ by at most the largest chunk
    assert np.ptp(order.shares(workers)) <= max(chunks)


SCRIPT = """
import json, sys, warnings
import numpy as np
import xarray as xr
import xflipnslide


def _dataset():
    rng = np.random.default_rng(0)
    image = xr.DataArray(rng.random((2, 128, 128), "float32"), dims=("band", "y", "x"))
    label = xr.DataArray(rng.integers(0, 5, (128, 128)).astype("uint8"), dims=("y", "x"))
    return xr.Dataset({"image": image, "label": label})


def check(tiles, ctx):
    loader = tiles.fns.torch_loader(
        8, label="label", shuffle=True, seed=0, num_workers=2, metadata=True,
        multiprocessing_context=ctx,
    )
    image, label = tiles.image.values, tiles.label.values
    seen, batches, same = [], 0, True
    for x, y, meta in loader:
        k = meta["tile"].numpy()
        same &= bool(np.array_equal(x.numpy(), image[k]) and np.array_equal(y.numpy(), label[k]))
        seen.extend(k.tolist())
        batches += 1
    return {"len": len(loader), "batches": batches, "n": tiles.sizes["tile"],
            "once": sorted(seen) == list(range(tiles.sizes["tile"])), "same": same}


if __name__ == "__main__":
    ctx = sys.argv[1]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", xflipnslide.XFlipNSlideWarning)
        memory = _dataset().fns.tile(32)
        lazy = _dataset().chunk({"y": 64, "x": 64}).fns.tile(32, tile_chunks=7)
    print(json.dumps({"memory": check(memory, ctx), "lazy": check(lazy, ctx)}))
"""


@pytest.mark.parametrize("method", ["spawn", "forkserver"])
def test_workers_start_under_spawn_and_forkserver(tmp_path, method):
    """Before, the dataset class was local to a function: workers that
    unpickle it (every start method but fork) could not start."""
    pytest.importorskip("torch")
    script = tmp_path / "feed_workers.py"
    script.write_text(textwrap.dedent(SCRIPT))
    try:
        done = subprocess.run(
            [sys.executable, str(script), method],
            capture_output=True,
            text=True,
            timeout=400,
            cwd=tmp_path,
        )
    except subprocess.TimeoutExpired:
        pytest.fail(f"torch_loader with {method} workers hung")
    assert done.returncode == 0, done.stderr[-3000:]
    got = json.loads(done.stdout.strip().splitlines()[-1])
    # in memory: tiles dealt one by one, 43 + 42 over two workers, 6 + 6 batches
    assert got["memory"] == {"len": 12, "batches": 12, "n": 85, "once": True, "same": True}
    # lazy: 43 + 42 tiles over two workers, 6 + 6 batches
    assert got["lazy"] == {"len": 12, "batches": 12, "n": 85, "once": True, "same": True}


def test_persistent_workers_get_a_new_epoch_each_pass(lazy_tiles):
    """Before, persistent workers kept the dataset of their first epoch and
    repeated its order every epoch."""
    pytest.importorskip("torch")
    kwargs = dict(label="label", shuffle=True, seed=1, num_workers=2, metadata=True)
    persistent = lazy_tiles.fns.torch_loader(8, persistent_workers=True, **kwargs)
    fresh = lazy_tiles.fns.torch_loader(8, **kwargs)
    epochs = [_epoch(persistent)[0] for _ in range(2)]
    assert epochs[0] != epochs[1]
    assert all(sorted(e) == list(range(85)) for e in epochs)
    assert epochs == [_epoch(fresh)[0] for _ in range(2)]  # the same epochs as fresh workers


@pytest.mark.parametrize("seed", [-1, -(2**70), 1.5, True, "0", np.int64(-3)])
@pytest.mark.parametrize("where", ["split", "torch_loader", "tf_dataset"])
def test_seeds_are_checked_once_the_same_way_everywhere(lazy_tiles, where, seed):
    """Before, a negative seed reached numpy (its own message, and for the
    feeds only when the first batch was drawn)."""
    if where == "torch_loader":
        pytest.importorskip("torch")
    if where == "tf_dataset":
        pytest.importorskip("tensorflow")
    call = {
        "split": lambda: lazy_tiles.fns.split(seed=seed),
        "torch_loader": lambda: lazy_tiles.fns.torch_loader(8, shuffle=True, seed=seed),
        "tf_dataset": lambda: lazy_tiles.fns.tf_dataset(8, shuffle=True, seed=seed),
    }[where]
    with pytest.raises(InvalidParameterError, match=r"seed must be an int >= 0 .*non-negative"):
        call()
