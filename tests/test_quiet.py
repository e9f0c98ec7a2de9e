"""Quiet, runnable everyday use: feeds that end their epochs without noise,
a demo that shows each distinct drop, and an example for every public name."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import xarray as xr

import xflipnslide
from xflipnslide.cli import main
from xflipnslide.plan import STRATEGIES


def _tiles(size: int = 64, tile: int = 16) -> xr.DataArray:
    rng = np.random.default_rng(0)
    image = xr.DataArray(rng.random((3, size, size), dtype="float32"), dims=("band", "y", "x"))
    return xflipnslide.tile(image, tile, "overlap")


@pytest.mark.parametrize("drop_last", [False, True])
def test_tf_dataset_cardinality_is_batches_per_epoch(drop_last):
    pytest.importorskip("tensorflow")
    tiles = _tiles()  # 64 px, tiles of 16 at stride 8: 7 x 7 = 49 tiles
    assert tiles.sizes["tile"] == 49
    data = xflipnslide.tf_dataset(tiles, 5, drop_last=drop_last)
    expected = 9 if drop_last else 10  # 49 tiles in batches of 5
    assert data.cardinality().numpy() == expected
    assert sum(1 for _ in data) == expected


def test_keras_fit_does_not_run_out_of_data(capfd, caplog):
    tf = pytest.importorskip("tensorflow")
    data = xflipnslide.tf_dataset(_tiles(), 5).map(lambda x: (x, x))
    model = tf.keras.Sequential([tf.keras.Input((16, 16, 3)), tf.keras.layers.Conv2D(3, 1)])
    model.compile(optimizer="sgd", loss="mse")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        history = model.fit(data, epochs=2, verbose=0)
    assert len(history.history["loss"]) == 2
    out, err = capfd.readouterr()
    said = [str(w.message) for w in caught] + [out, err, caplog.text]
    assert not [s for s in said if "ran out of data" in s]


def test_demo_shows_each_strategys_drop(tmp_path, capsys):
    assert main(["demo", "--out", str(tmp_path), "--tile-size", "128"]) == 0
    err = capsys.readouterr().err
    dropped = [line for line in err.splitlines() if "DataDroppedWarning" in line]
    assert len(dropped) == len(STRATEGIES) == 3
    for strategy in STRATEGIES:
        assert sum(f"strategy={strategy!r}" in line for line in dropped) == 1
