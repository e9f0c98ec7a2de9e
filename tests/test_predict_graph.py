"""predict on dask: one fused task per output block, in row order, memory
bounded by what the graph's structure lets a scheduler hold (counted)."""

from __future__ import annotations

import collections

import dask
import numpy as np
import pytest
import xarray as xr
from dask.callbacks import Callback
from test_predict import Biased, slow_reference

import xflipnslide
from xflipnslide._core.predict_graph import IN_FLIGHT

T, BLOCK = 32, 64


@pytest.fixture(scope="module")
def scene():
    data = np.random.default_rng(3).random((2, 330, 300)).astype("float32")
    return xr.DataArray(data, dims=("band", "y", "x"))


def kinds(graph) -> dict[str, list]:
    """The predict layer's keys by kind (partial, spill*, done, the output)."""
    out = collections.defaultdict(list)
    for key in graph:
        name = key[0] if isinstance(key, tuple) else key
        if name.startswith("fns-predict-"):
            kind = name.split("-")[2]
            out["final" if len(kind) == 32 else kind].append(key)
    return out


def deps_of(graph, key) -> set:
    from dask.core import get_dependencies

    return set(get_dependencies(graph, key))


def test_each_block_depends_on_its_row_band_and_the_one_above(scene):
    pred = scene.chunk({"y": 50, "x": 60}).fns.predict(Biased(), tile_size=T, chunks=BLOCK)
    graph = dict(pred.__dask_graph__())
    found = kinds(graph)
    ny, nx = len(pred.chunks[1]), len(pred.chunks[2])
    # tasks per block constant: partial, merged, two spills, an ordering token, the output
    assert {k: len(v) for k, v in found.items()} == {
        k: ny * nx for k in ("partial", "merged", "spillright", "spilldown", "done", "final")
    }
    for key in found["final"]:
        i, j = key[2:]
        spills = {(d[0].split("-")[2], *d[1:]) for d in deps_of(graph, key) if "spill" in d[0]}
        merged = [d[1:] for d in deps_of(graph, key) if "merged" in d[0]]
        # its merged sums, its own spills (an ordering), the down spill of the block above
        assert merged == [(i, j)]
        assert spills == {("spillright", i, j), ("spilldown", i, j)} | (
            {("spilldown", i - 1, j)} if i else set()
        )
    for key in found["merged"]:
        i, j = key[1:]
        got = {(d[0].split("-")[2], *d[1:]) for d in deps_of(graph, key)}
        assert got == {("partial", i, j)} | ({("spillright", i, j - 1)} if j else set())
    for kind in ("spillright", "spilldown"):
        for key in found[kind]:
            assert {(d[0].split("-")[2], *d[1:]) for d in deps_of(graph, key)} == {
                ("merged", *key[1:])
            }
    for key in found["partial"]:
        i, j = key[1:]
        k = i * nx + j
        tokens = [d for d in deps_of(graph, key) if "done" in d[0]]
        assert tokens == ([] if k < IN_FLIGHT else [(tokens[0][0], k - IN_FLIGHT)])
        # input chunks (50 rows each; the odd rows of blocks read a copy) of its band only
        rows = {
            d[2]
            for d in deps_of(graph, key)
            if isinstance(d, tuple) and len(d) == 4 and not d[0].startswith("fns-predict-")
        }
        y0, y1 = BLOCK * i - T, BLOCK * (i + 1) + T
        assert all(y0 < 50 * (r + 1) and 50 * r < y1 for r in rows)  # none: no window here


def test_a_scheduler_holds_a_bounded_number_of_blocks(scene):
    """Counted while the threaded scheduler runs: partial sums in memory never
    exceed IN_FLIGHT (+ the running ones), spills never exceed about one row
    of blocks, whatever the number of rows."""
    pred = scene.chunk({"y": 40, "x": 40}).fns.predict(Biased(), tile_size=T, chunks=BLOCK)
    nx = len(pred.chunks[2])
    held = collections.Counter()

    class Count(Callback):
        def _posttask(self, key, result, dsk, state, id):
            now = collections.Counter()
            for k in state["cache"]:
                name = k[0] if isinstance(k, tuple) else k
                if name.startswith("fns-predict-"):
                    now[name.split("-")[2]] += 1
            for kind, n in now.items():
                held[kind] = max(held[kind], n)

    with Count(), dask.config.set(scheduler="threads", num_workers=2):
        values = pred.values
    assert held["partial"] <= IN_FLIGHT + 1  # + the one that just finished
    assert held["merged"] <= IN_FLIGHT + 1
    assert held["spilldown"] <= nx + IN_FLIGHT + 2 and held["spillright"] <= IN_FLIGHT + 2
    expected = scene.fns.predict(Biased(), tile_size=T).values
    np.testing.assert_allclose(values, expected, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("tta", [None, "d4"])
def test_dask_blocks_equal_the_numpy_path_and_the_slow_reference(scene, tta):
    model = Biased()
    lazy = scene.chunk({"y": 70, "x": 45}).fns.predict(
        model, tile_size=T, stride=16, tta=tta, chunks=BLOCK
    )
    eager = scene.fns.predict(model, tile_size=T, stride=16, tta=tta).values
    np.testing.assert_allclose(lazy.values, eager, rtol=1e-6, atol=1e-6)
    expected = slow_reference(scene.values, model, T, 16, tta, "hann")
    np.testing.assert_allclose(eager, expected, rtol=1e-5, atol=1e-5)


def test_identity_is_exact_across_blocks(scene):
    """Spills are float32 means and weights: a pixel every window predicts
    alike comes back exactly, whatever block its windows belong to."""
    out = scene.chunk({"y": 33, "x": 77}).fns.predict(lambda b: b, tile_size=T, chunks=BLOCK)
    np.testing.assert_array_equal(out.values, scene.values)


def test_no_window_runs_twice(scene):
    calls = []

    def counting(batch):
        calls.append(len(batch))
        return batch[:, :1]

    scene.chunk({"y": 50, "x": 50}).fns.predict(
        counting, tile_size=T, classes=1, chunks=BLOCK
    ).compute()
    plan = xflipnslide.plan.predict_plan(scene.shape[1:], T)
    assert sum(calls) == len(plan)


def test_the_command_predicts_in_small_blocks_whatever_the_scenes_size(tmp_path, monkeypatch):
    """The library's default block grows past 512 px once a scene would have
    more than ``MAX_BLOCKS`` blocks (dask's ordering of the token chain);
    the command writes with the package's scheduler, which orders no chain,
    so it keeps the small blocks (cap lowered here so the sample scene
    passes it)."""
    torch = pytest.importorskip("torch")
    from xflipnslide._core import predict_graph
    from xflipnslide.cli import main

    monkeypatch.setattr(predict_graph, "MAX_BLOCKS", 1)
    sides = []
    real = predict_graph.predict_dask

    def spy(*args, **kwargs):
        out = real(*args, **kwargs)
        sides.append(out.chunks[-1][0])
        return out

    monkeypatch.setattr(predict_graph, "predict_dask", spy)
    net = torch.jit.script(torch.nn.Conv2d(3, 2, 1))
    net.save(str(tmp_path / "m.pt"))
    src = xflipnslide.sample_scene_path()  # 560 x 600
    scene = xflipnslide.open_image(src, chunks=256)
    scene.fns.predict(torch.nn.Conv2d(3, 2, 1), tile_size=64, classes=2)  # the library's own
    argv = ["predict", src, "--model", str(tmp_path / "m.pt"), "--out", str(tmp_path / "p.tif")]
    assert main([*argv, "--tile-size", "64", "--no-preprocess"]) == 0
    # the library's grew to one block (clipped to the 600 px width); the command's stay 512 px
    assert sides == [600, 512]


def test_a_spill_reaches_only_as_far_as_the_windows_of_its_block():
    """330 x 300 px, T = 32, stride 16: 20 x 18 windows, their origins at
    -3 + 16 m (rows) and -2 + 16 m (columns); the last window of a 64-px
    block row starts 3 px before its end (61, 125, ...) and ends 29 px past
    it, of a block column 30 px: the strips a block hands on are 29 rows
    and 30 columns (``T - 1`` = 31 before), the last short block's whole;
    the right one spans the sums' height (64 + 29 rows: the corner below
    right travels on through the next block's down spill)."""
    data = np.zeros((2, 330, 300), np.float32)
    pred = xr.DataArray(data, dims=("band", "y", "x")).chunk({"y": 64, "x": 64})
    pred = pred.fns.predict(Biased(), tile_size=T, chunks=BLOCK)
    graph = dict(pred.__dask_graph__())
    found = kinds(graph)
    spans = {}
    for kind in ("spilldown", "spillright"):
        for key in found[kind]:
            ys, xs = graph[key][2:4]
            spans[(kind, *key[1:])] = (ys.stop - ys.start, xs.stop - xs.start)
    assert spans["spilldown", 0, 0] == (29, 64) and spans["spilldown", 1, 2] == (29, 64)
    assert spans["spillright", 0, 0] == (93, 30) and spans["spillright", 3, 1] == (93, 30)
    assert spans["spilldown", 4, 0][0] == 10  # into the last block, 10 rows
    np.testing.assert_allclose(
        pred.values,
        xr.DataArray(data, dims=("band", "y", "x")).fns.predict(Biased(), tile_size=T).values,
        rtol=1e-6,
        atol=1e-6,
    )
