"""The runner of predict: D4 views averaged before blending (the kernel
against numpy), the pipeline (a helper thread only where the model leaves
cores free), windows read from an in-memory scene, the input NaN counts,
precision= (autocast)."""

from __future__ import annotations

import itertools

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


def _padded_window(x, plan, k):
    """Oracle: entry ``k`` of ``plan`` sliced from the whole scene reflect-padded
    by numpy, then transformed by the docs' table."""
    (top, _), (left, _) = plan.pad
    padded = np.pad(x, ((0, 0), *plan.pad), mode="reflect")
    r, c, T = plan.rows[k] + top, plan.cols[k] + left, plan.tile_size
    return TRANSFORM[int(plan.codes[k])](padded[:, r : r + T, c : c + T])


@pytest.mark.parametrize("tta", [None, "d4"])
@pytest.mark.parametrize("layout", ["c", "strided"])
def test_scene_gather_reads_every_window_as_numpy_pads_it(tta, layout):
    from xflipnslide._core.predict import _scene_gather
    from xflipnslide.plan import predict_plan

    x = np.random.default_rng(3).integers(0, 1000, (2, 150, 170)).astype(np.uint16)
    x = x if layout == "c" else x[:, :, ::-1]
    plan = predict_plan(x.shape[1:], 32, tta=tta)
    gather = _scene_gather(x, plan)
    cuts = [0, 1, 5, 12, 13, 40, 41, len(plan) - 3, len(plan)]  # across inside and edge runs
    got = np.concatenate([gather(a, b) for a, b in itertools.pairwise(cuts)])
    assert got.dtype == x.dtype and got.shape == (len(plan), 2, 32, 32)
    for k in range(len(plan)):
        np.testing.assert_array_equal(got[k], _padded_window(x, plan, k))


def test_overlaps_host_only_where_the_model_leaves_cores_free(monkeypatch):
    from xflipnslide._core import predict as core

    threads = torch.get_num_threads()
    monkeypatch.setattr(core, "_cores", lambda: threads)
    net = torch.nn.Conv2d(3, 2, 1)
    assert not ModelRunner(net).overlaps_host()  # torch's threads use every core
    assert not ModelRunner(net, device="cpu").overlaps_host()
    assert ModelRunner(net, device="cuda").overlaps_host()  # overlaps the device's work
    assert ModelRunner(lambda b: b, classes=3).overlaps_host()  # threading unknown
    monkeypatch.setattr(core, "_cores", lambda: threads + 1)
    assert ModelRunner(net).overlaps_host()  # a core left free


@pytest.mark.parametrize("overlap", [False, True])
def test_stream_threads_follow_the_rule_and_give_the_same_blend(scene, monkeypatch, overlap):
    import threading

    seen = set()
    torch.manual_seed(0)
    net = torch.nn.Conv2d(3, 2, 3, padding=1)
    net.register_forward_hook(lambda *a: seen.add(("model", threading.current_thread().name)))
    reference = scene.fns.predict(lambda b: net(torch.from_numpy(b)).detach().numpy(), tile_size=32)
    monkeypatch.setattr(ModelRunner, "overlaps_host", lambda self: overlap)
    from xflipnslide._core import predict as core

    add = core.OverlapAdd.add

    def spy(self, *args):
        seen.add(("blend", threading.current_thread().name))
        return add(self, *args)

    monkeypatch.setattr(core.OverlapAdd, "add", spy)
    out = scene.fns.predict(net, tile_size=32, batch_size=4)
    main = threading.current_thread().name
    blend_on = {name for what, name in seen if what == "blend"}
    assert {name for what, name in seen if what == "model"} == {main}
    assert blend_on == ({n for n in blend_on if n.startswith("fns-predict")} if overlap else {main})
    assert blend_on
    np.testing.assert_array_equal(out.values, reference.values)


@pytest.mark.filterwarnings("ignore:overflow encountered:RuntimeWarning")
def test_input_counts_are_exact_whether_or_not_the_scene_is_checked_first():
    import re

    from xflipnslide._core.nonfinite import finite_scene
    from xflipnslide.plan import predict_plan

    rng = np.random.default_rng(4)
    f32 = rng.random((3, 90, 100)).astype(np.float32)
    assert finite_scene(f32) and finite_scene(f32.astype(np.int16))
    big = f32.astype(np.float64)
    big[1, 40, 50] = 1e39  # finite in float64, infinite as the model's float32
    assert not finite_scene(big) and not finite_scene(f32[:, ::2])
    gap = f32.copy()
    gap[0, 3, 4] = np.nan
    assert not finite_scene(gap)
    for x in (big, gap, gap[:, ::-1]):
        plan = predict_plan(x.shape[1:], 32, tta="d4")
        tiles = np.stack([_padded_window(x, plan, k) for k in range(len(plan))]).astype("f4")
        bad = ~np.isfinite(tiles)
        expected = f"{bad.any(axis=(1, 2, 3)).sum()} of the {len(plan)} tiles given to the model"
        with pytest.warns(xflipnslide.NonFiniteWarning) as record:
            xr.DataArray(x, dims=("band", "y", "x")).fns.predict(
                lambda b: b, tile_size=32, tta="d4"
            )
        (message,) = [str(w.message) for w in record if "scene values" in str(w.message)]
        assert message.startswith(expected)
        assert re.search(rf"\b{bad.sum()} values in all", message)


def test_a_torch_module_on_the_cpu_runs_in_batches_of_eight_by_default():
    """torch's CPU kernels take no less time per window in larger batches
    and hold every window's activations: 8 windows a call there, 32 on an
    accelerator or for any other callable, as given when given."""
    seen: dict[str, list] = {"torch": [], "plain": []}

    class Net(torch.nn.Module):
        def forward(self, x):
            seen["torch"].append(len(x))
            return x[:, :1] * 2

    def plain(batch):
        seen["plain"].append(len(batch))
        return batch[:, :1] * 2

    scene = xr.DataArray(np.ones((2, 160, 160), np.float32), dims=("band", "y", "x"))
    a = scene.fns.predict(Net(), tile_size=32)  # 10 x 10 windows: 1 + ceil((160 - 30) / 16)
    b = scene.fns.predict(plain, tile_size=32)
    assert max(seen["torch"]) == 8 and sum(seen["torch"][1:]) == 100  # after the probe
    assert max(seen["plain"]) == 32 and sum(seen["plain"][1:]) == 100
    np.testing.assert_array_equal(a.values, b.values)
    seen["torch"].clear()
    scene.fns.predict(Net(), tile_size=32, batch_size=20, classes=1)
    assert max(seen["torch"]) == 20
    assert ModelRunner(Net(), device="cuda").batch_size == 32  # placed at the first call
    assert ModelRunner(Net(), device="cpu").batch_size == 8
    assert ModelRunner(plain, batch_size=3).batch_size == 3
