"""predict's integrity: model outputs checked before any kernel, typed errors
for bad options, NaN and infinity reported, the model's train/eval mode left
as found, and dask graphs whose names cover everything their values depend
on. Anything that once crashed the interpreter runs in a subprocess, so a
regression fails its test instead of killing pytest."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap
import threading
import warnings

import dask
import distributed
import numpy as np
import pytest
import xarray as xr
from conftest import raise_if_dask_computes

import xflipnslide
from xflipnslide import InvalidParameterError
from xflipnslide.errors import NonFiniteWarning, XFlipNSlideWarning

HERE = os.path.dirname(__file__)


def run_isolated(body: str, timeout: float = 300) -> dict:
    """Run ``body`` in a fresh interpreter, where ``scene`` is a 3-band
    200 x 200 scene and ``case(name, fn)`` records the error ``fn()`` raises;
    return the records, failing if the interpreter dies."""
    code = (
        textwrap.dedent(
            """
        import json, numpy as np, xarray as xr, xflipnslide
        from xflipnslide._core import kernels
        scene = xr.DataArray(np.random.default_rng(0).random((3, 200, 200), dtype="float32"),
                             dims=("band", "y", "x"))
        records = {}
        def case(name, fn):
            try:
                fn()
                records[name] = "no error"
            except Exception as exc:
                records[name] = f"{type(exc).__name__}: {exc}"
        """
        )
        + textwrap.dedent(body)
        + "\nprint('RECORDS', json.dumps(records))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=timeout, cwd=HERE
    )
    assert done.returncode == 0, f"the interpreter died ({done.returncode}): {done.stderr[-2000:]}"
    line = [ln for ln in done.stdout.splitlines() if ln.startswith("RECORDS ")][-1]
    return json.loads(line[len("RECORDS ") :])


# --- 1. model outputs checked before any kernel ----------------------------


def test_model_outputs_are_checked_before_the_kernels():
    records = run_isolated(
        """
        identity = lambda b: b  # 3 channels out
        calls = []
        def growing(b):  # 3 channels on the first (probe) call, 6 after
            calls.append(1)
            return b if len(calls) == 1 else np.concatenate([b, b], axis=1)
        lazy = scene.chunk({"y": 100, "x": 100})
        case("classes=2", lambda: scene.fns.predict(identity, tile_size=64, classes=2))
        case("classes=2 lazy", lambda: lazy.fns.predict(identity, tile_size=64, classes=2).values)
        case("classes=0", lambda: scene.fns.predict(identity, tile_size=64, classes=0))
        case("growing", lambda: scene.fns.predict(growing, tile_size=64))
        calls.clear()
        case("growing lazy", lambda: lazy.fns.predict(growing, tile_size=64).values)
        case("complex", lambda: scene.fns.predict(lambda b: b * 1j, tile_size=64))
        case("object", lambda: scene.fns.predict(lambda b: b.astype(object), tile_size=64))
        case("bool ok", lambda: scene.fns.predict(lambda b: b > 0.5, tile_size=64))
        """
    )
    assert records["classes=2"].startswith("InvalidParameterError: the model returned 3 class")
    assert "classes=2: pass classes=3" in records["classes=2"]
    assert records["classes=2 lazy"] == records["classes=2"]  # raised in the task, at compute
    assert records["classes=0"].startswith("InvalidParameterError: classes must be a positive")
    for name in ("growing", "growing lazy"):
        assert records[name].startswith("InvalidParameterError: the model returned 6 class")
        assert "but 3 on its first call" in records[name]
    for name in ("complex", "object"):
        assert records[name].startswith("InvalidParameterError: the model returned dtype")
        assert "real numbers" in records[name]
    assert records["bool ok"] == "no error"


def test_kernels_check_shapes_at_their_entry_point():
    records = run_isolated(
        """
        T = 8
        tiles = np.zeros((4, 3, T, T))
        o = np.zeros(4, np.int64)
        codes = np.zeros(4, np.int8)
        w = np.ones((T, T))
        scatter = kernels.scatter_tiles
        case("acc channels", lambda: scatter(tiles, o, o, codes, w, np.zeros((2, 20, 20)),
                                             np.zeros((20, 20))))
        case("acc vs wsum", lambda: scatter(tiles, o, o, codes, w, np.zeros((3, 20, 20)),
                                            np.zeros((10, 20))))
        case("weight", lambda: scatter(tiles, o, o, codes, np.ones((4, 4)),
                                       np.zeros((3, 20, 20)), np.zeros((20, 20))))
        case("rows", lambda: scatter(tiles, o[:2], o, codes, w, np.zeros((3, 20, 20)),
                                     np.zeros((20, 20))))
        case("codes", lambda: scatter(tiles, o, o, codes + 9, w, np.zeros((3, 20, 20)),
                                      np.zeros((20, 20))))
        case("scatter ok", lambda: scatter(tiles, o - 3, o + 15, codes, w, np.zeros((3, 20, 20)),
                                           np.zeros((20, 20))))
        src = np.zeros((3, 20, 20), np.float32)
        out = np.zeros((4, 3, T, T), np.float32)
        gather = kernels.gather_tiles
        case("outside", lambda: gather(src, o + 13, o, codes, out))
        case("negative", lambda: gather(src, o, o - 1, codes, out))
        case("out channels", lambda: gather(src, o, o, codes, out[:, :2]))
        case("gather ok", lambda: gather(src, o + 12, o + 12, codes, out))
        case("normalize", lambda: kernels.normalize_weights(np.zeros((3, 5, 5)), np.ones((6, 5))))
        case("standardize", lambda: kernels.standardize_into(np.zeros(10), 0.0, 1.0, np.zeros(4)))
        case("nearest", lambda: kernels.nearest_valid(np.ones((5, 5), bool),
                                                      np.zeros((5, 5), np.int32),
                                                      np.zeros((4, 5), np.int32)))
        case("fill core", lambda: kernels.fill_nearest(np.zeros((5, 5)), np.ones((5, 5), bool),
                                                       np.array([0, 9, 0, 5]),
                                                       np.zeros(4, bool), 0.0, np.zeros((9, 5))))
        """
    )
    for name, what in [
        ("acc channels", "scatter_tiles: tiles (n, C, T, T) need acc"),
        ("acc vs wsum", "scatter_tiles: tiles (n, C, T, T) need acc"),
        ("weight", "scatter_tiles: tiles (n, C, T, T) need acc"),
        ("rows", "scatter_tiles: rows, cols and codes must be 1-D"),
        ("codes", "scatter_tiles: codes must be in 0..7; got 9..9"),
        ("outside", "gather_tiles: every 8 x 8 window must lie inside src (20 x 20)"),
        ("negative", "gather_tiles: every 8 x 8 window must lie inside src (20 x 20)"),
        ("out channels", "gather_tiles: out must be (n, C, T, T) with src's C"),
        ("normalize", "normalize_weights: acc must be (C, H, W) over wsum (H, W)"),
        ("standardize", "standardize_into: a and a C-contiguous out must have one size"),
        ("nearest", "nearest_valid: valid, near_row and near_col must be one (H, W) shape"),
        ("fill core", "fill_nearest: core (y0, y1, x0, x1) must lie inside data"),
    ]:
        assert records[name].startswith(f"InvalidParameterError: {what}"), (name, records[name])
    assert records["scatter ok"] == records["gather ok"] == "no error"


@pytest.fixture(scope="module")
def scene():
    rng = np.random.default_rng(3)
    return xr.DataArray(
        rng.random((2, 100, 120), dtype=np.float32),
        dims=("band", "y", "x"),
        coords={"y": 1000 - 10 * np.arange(100.0), "x": 50 + 10 * np.arange(120.0)},
    )


def first_class(batch):
    return batch[:, :1]


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"classes": -3}, "classes must be a positive integer, the number of channels"),
        ({"classes": 2.5}, "classes must be a positive integer"),
        ({"classes": True}, "classes must be a positive integer"),
        ({"tile_size": 1}, r"tile_size must be at least 2 .* \(pass stride=1"),
        ({"min_valid": "a"}, r"min_valid must be in \[0, 1\], a number.*got 'a'"),
        ({"min_valid": 1.5}, r"min_valid must be in \[0, 1\], a number"),
        ({"min_valid": float("nan")}, r"min_valid must be in \[0, 1\], a number"),
        ({"aoi": "POLYGON ((50 1000, 400 1000, 400 600, 50 600, 50 1000))"}, "shapely.from_wkt"),
        ({"aoi": {"type": "Polygon"}}, "mapping with 'type' and 'coordinates'"),
        ({"aoi": {"coordinates": [[0, 0]]}}, "mapping with 'type' and 'coordinates'"),
    ],
)
def test_bad_options_are_typed_errors_that_say_what_to_pass(scene, options, message):
    with pytest.raises(InvalidParameterError, match=message):
        scene.fns.predict(first_class, **{"tile_size": 32, **options})


def test_tile_size_one_with_stride_one_predicts_each_pixel(scene):
    out = scene.isel(y=slice(0, 6), x=slice(0, 7)).fns.predict(first_class, tile_size=1, stride=1)
    np.testing.assert_array_equal(out.values, scene.values[:1, :6, :7])


def test_aoi_mapping_with_coordinates_still_works(scene):
    box = {"type": "Polygon", "coordinates": [[(50, 1000), (400, 1000), (400, 650), (50, 1000)]]}
    out = scene.fns.predict(first_class, tile_size=32, aoi=box).values
    assert np.isfinite(out[:, 0, 0]).all() and np.isnan(out[:, -1, -1]).all()


# --- 15. the message names the extra dim -----------------------------------


@pytest.mark.parametrize(
    ("dims", "extra"),
    [
        (("time", "c", "y", "x"), "['time', 'c'] are extra"),  # no dim named as channels
        (("band", "channel", "y", "x"), "['band', 'channel'] are extra"),  # two named so
        (("t", "c", "y", "x"), "['t', 'c'] are extra"),
    ],
)
def test_extra_dims_are_named_with_what_to_do(dims, extra):
    scene = xr.DataArray(np.zeros((2, 3, 40, 40), np.float32), dims=dims)
    with pytest.raises(InvalidParameterError) as info:
        scene.fns.predict(first_class, tile_size=16)
    message = str(info.value)
    assert extra in message and "select or reduce" in message
    assert "keeping one dim: the model's input channels" in message
    if dims[0] == "time":
        assert "scene.isel(time=0) or scene.mean('time')" in message


# --- 2. NaN and infinity are reported ---------------------------------------

# scene 100 x 120, tile 32, stride 16: the fewest windows keeping every pixel
# off a window's ring, 1 + ceil((size - 30) / 16): origins -6, ..., 74 along y
# (6) and -4, ..., 92 along x (7): 42 windows.
WINDOWS = 42


def tile_counts(records) -> tuple[int, int, int]:
    """Summed ``(tiles with NaN/inf, tiles counted, values)`` of the warnings."""
    found = [
        re.search(r"for (\d+) of the (\d+) tiles.*?, (\d+) values in all", str(w.message))
        or re.search(r"^(\d+) of the (\d+) tiles.*?, (\d+) values in all", str(w.message))
        for w in records
    ]
    assert all(found), [str(w.message) for w in records]
    return tuple(sum(int(m.group(i)) for m in found) for i in (1, 2, 3))


def nan_corner(batch):
    out = batch[:, :1].copy()
    out[:, :, 0, 0] = np.nan
    return out


def test_nan_in_the_model_output_warns_with_counts(scene, backend):
    lazy = backend(scene, {"y": 50, "x": 60})
    with raise_if_dask_computes(0), warnings.catch_warnings(record=True) as built:
        warnings.simplefilter("always")
        out = lazy.fns.predict(nan_corner, tile_size=32)
    if backend.name == "dask":
        assert not [w for w in built if w.category is NonFiniteWarning]  # nothing computed yet
    with warnings.catch_warnings(record=True) as computed:
        warnings.simplefilter("always")
        values = out.values
    records = [w for w in built + computed if issubclass(w.category, NonFiniteWarning)]
    assert all("the model returned NaN or infinite values" in str(w.message) for w in records)
    assert tile_counts(records) == (WINDOWS, WINDOWS, WINDOWS)  # one NaN per tile
    if backend.name == "dask":
        assert all("of the dask block at rows" in str(w.message) for w in records)
    assert np.isnan(values).any()


def test_nan_in_the_scene_warns_with_counts(scene, backend):
    data = scene.values.copy()
    data[1, 50, 60] = np.nan  # in the windows at y 32, 48 and x 32, 48: 4 windows
    lazy = backend(scene.copy(data=data), {"y": 50, "x": 60})

    def clean(batch):  # the model ignores the NaN band: only the input is reported
        return batch[:, :1]

    with warnings.catch_warnings(record=True) as records:
        warnings.simplefilter("always")
        lazy.fns.predict(clean, tile_size=32, tta="d4").values
    records = [w for w in records if issubclass(w.category, NonFiniteWarning)]
    assert all("NaN or infinite scene values" in str(w.message) for w in records)
    assert tile_counts(records) == (4 * 8, 8 * WINDOWS, 4 * 8)  # each window's 8 views


def test_finite_scene_and_model_warn_nothing(scene, backend):
    with warnings.catch_warnings():
        warnings.simplefilter("error", XFlipNSlideWarning)
        backend(scene).fns.predict(first_class, tile_size=32).values


@pytest.mark.slow
def test_nan_warning_reaches_the_client_of_a_cluster(scene):
    def nan_corner(batch):  # local: pickled by value for the worker processes
        out = batch[:, :1].copy()
        out[:, :, 0, 0] = np.nan
        return out

    cluster = distributed.LocalCluster(
        n_workers=1, threads_per_worker=1, processes=True, dashboard_address=None
    )
    try:
        with distributed.Client(cluster), warnings.catch_warnings(record=True) as records:
            warnings.simplefilter("always")
            scene.chunk({"y": 50}).fns.predict(nan_corner, tile_size=32).compute()
            records = [w for w in records if issubclass(w.category, NonFiniteWarning)]
            assert tile_counts(records) == (WINDOWS, WINDOWS, WINDOWS)
    finally:
        cluster.close()


# --- 3. the torch module's mode is left as found ---------------------------


@pytest.fixture
def net():
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)

    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = torch.nn.Conv2d(2, 3, 3, padding=1)
            self.norm = torch.nn.BatchNorm2d(3)
            self.drop = torch.nn.Dropout(0.5)
            self.seen, self.fail = [], False
            self.lock = threading.Lock()

        def forward(self, x):
            with self.lock:
                self.seen.append([m.training for m in self.modules()])
            if self.fail:
                raise RuntimeError("model failed")
            return self.drop(self.norm(self.conv(x)))

    return Net()


@pytest.mark.parametrize("lazy", [False, True])
def test_predict_leaves_a_torch_module_in_its_mode(scene, net, lazy):
    source = scene.chunk({"y": 50, "x": 60}) if lazy else scene
    net.train()
    net.norm.eval()  # a frozen BatchNorm inside a training model stays frozen
    before = [m.training for m in net.modules()]
    out = source.fns.predict(net, tile_size=32, batch_size=4)
    assert [m.training for m in net.modules()] == before  # after the probe call
    with dask.config.set(scheduler="threads", num_workers=4):
        first = out.values
    assert [m.training for m in net.modules()] == before
    assert net.seen and not any(any(modes) for modes in net.seen)  # every call in eval mode
    np.testing.assert_array_equal(first, out.values)  # dropout off: deterministic
    net.fail = True
    with pytest.raises(RuntimeError, match="model failed"):
        source.fns.predict(net, tile_size=32, classes=3).values
    assert [m.training for m in net.modules()] == before  # also after an exception


# --- 6. graph names cover everything their values depend on ----------------


class NotEquivariant:
    """One class that changes under D4 and with the tile's position."""

    def __call__(self, batch):
        ramp = np.linspace(0, 1, batch.shape[2], dtype=np.float32)[None, None, :, None]
        return batch[:, :1] + ramp


def test_lazy_predicts_computed_together_equal_each_alone():
    # 16 bands of 64 x 64 tiles: 128 tiles per task (32 MiB), fewer than the
    # 12 x 11 windows of a 352 x 320 scene, so several tasks for every option
    rng = np.random.default_rng(5)
    data = rng.random((16, 352, 320), dtype=np.float32)
    lazy = xr.DataArray(data, dims=("band", "y", "x")).chunk({"y": 176, "x": 160})
    model = NotEquivariant()
    variants = {
        "plain": {},
        "d4": {"tta": "d4"},
        "mean": {"blend": "mean"},
        "stride": {"stride": 16},
    }
    outs = {k: lazy.fns.predict(model, tile_size=64, **v) for k, v in variants.items()}
    assert len({o.data.name for o in outs.values()}) == len(outs)
    alone = {k: o.compute() for k, o in outs.items()}
    together = dict(zip(outs, dask.compute(*outs.values())))
    for k in outs:
        np.testing.assert_array_equal(together[k].values, alone[k].values, err_msg=k)
    for k in ("d4", "mean", "stride"):  # the options change the answer
        assert np.abs(alone[k].values - alone["plain"].values).max() > 1e-3, k


def test_graph_names_follow_the_model(scene):
    lazy = scene.chunk({"y": 50})
    double = lambda b: b[:, :1] * 2  # noqa: E731
    a, b = (lazy.fns.predict(m, tile_size=32) for m in (first_class, double))
    assert a.data.name != b.data.name
    x, y = dask.compute(a, b)
    np.testing.assert_array_equal(y.values, 2 * x.values)
    again = lazy.fns.predict(first_class, tile_size=32)
    assert again.data.name == a.data.name  # deterministic for one model and options


def test_warning_class_is_a_package_warning():
    assert issubclass(NonFiniteWarning, xflipnslide.XFlipNSlideWarning)
