"""The runner of predict: D4 views averaged before blending (the kernel
against numpy), the helper-thread pipeline, precision= (autocast)."""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr
from oracle import TRANSFORM

import xflipnslide
from xflipnslide._core.kernels.tiles import fold_views
from xflipnslide._core.predict import ModelRunner, parts, stream
from xflipnslide.plan import invert_code

torch = pytest.importorskip("torch")


def test_fold_views_averages_each_window_turned_back():
    rng = np.random.default_rng(0)
    views = rng.random((11, 2, 8, 8)).astype(np.float32)
    codes = rng.integers(0, 8, 11).astype(np.int8)
    edges = np.array([0, 8, 9, 11])
    out = np.empty((3, 2, 8, 8), np.float32)
    fold_views(views, edges, codes, out)
    for g in range(3):
        back = [
            TRANSFORM[int(invert_code(int(codes[k])))](views[k].astype(np.float64))
            for k in range(edges[g], edges[g + 1])
        ]
        np.testing.assert_array_equal(out[g], np.mean(back, axis=0).astype(np.float32))


def test_fold_views_checks_its_edges():
    tiles = np.zeros((4, 1, 4, 4), np.float32)
    with pytest.raises(xflipnslide.InvalidParameterError, match="starts"):
        fold_views(tiles, np.array([0, 2, 5]), np.zeros(4, np.int8), np.empty((2, 1, 4, 4), "f4"))


def test_parts_cover_whole_windows_once():
    starts = np.array([0, 8, 16, 24, 25, 33])
    units = parts(starts, 10)
    assert [g for u in units for g in range(*u)] == list(range(5))
    assert all(h > g for g, h in units)


def test_stream_blends_every_part_in_order_and_raises_the_models_error():
    seen = []
    runner = ModelRunner(lambda b: b * 2, batch_size=2, classes=1)
    starts = np.arange(0, 8)  # seven windows of one view each
    codes = np.zeros(7, np.int8)
    tiles = np.arange(7, dtype=np.float32).reshape(7, 1, 1, 1) * np.ones((1, 1, 2, 2), "f4")
    stream(runner, starts, codes, lambda a, b: tiles[a:b], lambda t, g, h: seen.append((g, h, t)))
    assert [(g, h) for g, h, _ in seen] == [(0, 2), (2, 4), (4, 6), (6, 7)]
    np.testing.assert_array_equal(np.concatenate([t for *_, t in seen]), tiles * 2)

    def broken(batch):
        raise RuntimeError("model failed")

    with pytest.raises(RuntimeError, match="model failed"):
        stream(
            ModelRunner(broken, 2, classes=1),
            starts,
            codes,
            lambda a, b: tiles[a:b],
            lambda *a: None,
        )


@pytest.fixture(scope="module")
def scene():
    data = np.random.default_rng(2).random((3, 90, 100)).astype("float32")
    return xr.DataArray(data, dims=("band", "y", "x"))


def test_bf16_autocast_runs_on_cpu_and_blends_float32(scene):
    torch.manual_seed(0)
    net = torch.nn.Conv2d(3, 2, 3, padding=1)
    full = scene.fns.predict(net, tile_size=32, tta="d4")
    half = scene.fns.predict(net, tile_size=32, tta="d4", precision="bf16")
    assert half.dtype == np.float32 and np.isfinite(half.values).all()
    assert 0 < np.abs(half.values - full.values).max() < 0.05  # bf16 has 8 bits of mantissa
    lazy = scene.chunk({"y": 45}).fns.predict(net, tile_size=32, precision="bf16").values
    np.testing.assert_allclose(
        lazy, scene.fns.predict(net, tile_size=32, precision="bf16").values, atol=1e-6
    )


def test_precision_is_checked(scene):
    with pytest.raises(xflipnslide.InvalidParameterError, match="precision must be"):
        scene.fns.predict(torch.nn.Identity(), tile_size=32, precision="fp8")
    with pytest.raises(xflipnslide.InvalidParameterError, match="plain callable"):
        scene.fns.predict(lambda b: b, tile_size=32, precision="bf16")


def test_a_runner_pickles_without_its_thread_buffers():
    import pickle

    runner = ModelRunner(torch.nn.Identity(), 4, classes=3, precision="bf16")
    again = pickle.loads(pickle.dumps(runner))
    out = again(np.ones((2, 3, 4, 4), np.float32))
    assert out.dtype == np.float32 and out.shape == (2, 3, 4, 4)
