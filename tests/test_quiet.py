"""Quiet, runnable everyday use: feeds that end their epochs without noise,
a demo that shows each distinct drop, and an example for every public name."""

from __future__ import annotations

import inspect
import subprocess
import sys
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


def _public() -> dict[str, object]:
    """Every public function and (non-exception) class, and the functions the
    accessor forwards to (their docstrings are the accessor's)."""
    names = {}
    for name in xflipnslide.__all__:
        obj = getattr(xflipnslide, name)
        if inspect.isclass(obj) and issubclass(obj, BaseException):
            continue
        if inspect.isfunction(obj) or inspect.isclass(obj):
            names[name] = obj
    for accessor in (xr.DataArray([0]).fns, xr.Dataset().fns):
        for name, member in inspect.getmembers(type(accessor), inspect.isfunction):
            if not name.startswith("_"):
                names[f".fns.{name}"] = member
    return names


#: Public names whose module has no runnable example yet (ml/feed.py); remove
#: a name when its docstring gains one.
PENDING: set[str] = set()


def _runnable(obj) -> bool:
    """An Examples section with at least one example, none skipped."""
    doc = inspect.getdoc(obj) or ""
    return "Examples\n--------" in doc and ">>>" in doc and "+SKIP" not in doc


def test_every_public_name_has_a_runnable_example():
    public = _public()
    assert {"load", "apply_transform", "TilePlan", ".fns.plot_rgb"} <= set(public)
    missing = sorted(
        f"{name} ({inspect.unwrap(obj).__module__})"
        for name, obj in public.items()
        if name not in PENDING and not _runnable(obj)
    )
    assert not missing, "no runnable Examples section: " + ", ".join(missing)
    done = sorted(name for name in PENDING if name in public and _runnable(public[name]))
    assert not done, f"now with runnable examples, remove from PENDING: {done}"


def test_worker_batches_leave_no_weak_references_for_exit(tmp_path):
    """torch keeps a weak reference to every shared-memory storage a worker
    batch arrives in and prunes them only past 128; deleted at interpreter
    teardown they print StorageWeakRef.__del__ tracebacks. The loader drops
    them at exit, before the teardown."""
    pytest.importorskip("torch")
    script = tmp_path / "epoch.py"
    script.write_text(
        "import atexit, numpy as np, xarray as xr, xflipnslide\n"
        "from torch.multiprocessing import reductions\n"
        # registered first, so it runs after the loader's own exit handler
        "atexit.register(lambda: print('left at exit:', len(reductions.shared_cache)))\n"
        "if __name__ == '__main__':\n"
        "    scene = xr.DataArray(np.ones((1, 256, 256), 'float32'), dims=('band', 'y', 'x'))\n"
        "    tiles = scene.chunk({'y': 64}).fns.tile(32)\n"
        "    loader = tiles.fns.torch_loader(4, num_workers=2)\n"
        "    batches = [b for b in loader]\n"
        "    print('during:', len(reductions.shared_cache))\n"
    )
    done = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr
    during = int(done.stdout.split("during:")[1].split()[0])
    assert during > 0  # the cache the handler must empty was filled
    assert "left at exit: 0" in done.stdout, done.stdout
    assert "StorageWeakRef" not in done.stderr
