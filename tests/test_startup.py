"""Start-up: what ``import xflipnslide``, ``xflipnslide --help`` and a first
``tile`` load and compile (each in a fresh interpreter)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from xflipnslide._core.kernels import _jit

#: Modules that take a noticeable share of a second to import.
HEAVY = ("xarray", "dask", "numba", "rioxarray", "rasterio", "zarr", "pandas", "torch")


def _run(code: str) -> list:
    """Run ``code`` in a fresh interpreter; the JSON its last line prints."""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout.splitlines()[-1])


def _loaded(names=HEAVY) -> str:
    return f"print(json.dumps([m for m in {names!r} if m in sys.modules]))"


def test_help_parses_before_importing_anything_heavy():
    code = (
        "import json, sys, contextlib, io\n"
        "from xflipnslide.cli import main\n"
        "with contextlib.redirect_stdout(io.StringIO()) as out:\n"
        "    try:\n"
        "        main(['--help'])\n"
        "    except SystemExit as exit_:\n"
        "        assert exit_.code == 0\n"
        "assert 'predict' in out.getvalue() and 'export' in out.getvalue()\n" + _loaded()
    )
    assert _run(code) == []


def test_a_command_s_help_imports_only_what_its_options_need():
    code = (
        "import json, sys, contextlib, io\n"
        "from xflipnslide.cli import main\n"
        "with contextlib.redirect_stdout(io.StringIO()) as out:\n"
        "    try:\n"
        "        main(['tile', '--help'])\n"
        "    except SystemExit:\n"
        "        pass\n"
        "assert 'flipnslide' in out.getvalue()\n" + _loaded()
    )
    assert _run(code) == []


@pytest.mark.parametrize("first", ["xflipnslide", "xarray"])
def test_the_accessor_is_registered_whichever_is_imported_first(first):
    second = "xarray" if first == "xflipnslide" else "xflipnslide"
    code = (
        f"import json, sys, {first}\n"
        "light = 'xarray' not in sys.modules\n"
        f"import {second}\n"
        "import numpy as np, xarray as xr\n"
        "t = xr.DataArray(np.arange(64.0).reshape(8, 8), dims=('y', 'x')).fns.tile(4)\n"
        "print(json.dumps([light, t.sizes['tile'], hasattr(xr.Dataset, 'fns')]))"
    )
    assert _run(code) == [first == "xflipnslide", 13, True]


def test_a_submodule_imported_first_registers_the_accessor():
    """xarray first imported inside a module of the package (half
    initialised at that moment) still registers a working accessor."""
    code = (
        "import json, sys\n"
        "import xflipnslide.tiling\n"
        "import numpy as np, xarray as xr\n"
        "t = xr.DataArray(np.zeros((8, 8)), dims=('y', 'x')).fns.tile(4, strategy='no_overlap')\n"
        "print(json.dumps(t.sizes['tile']))"
    )
    assert _run(code) == 4


def test_every_public_name_imports():
    """Every name of ``__all__`` imports in one fresh interpreter. Lightning is
    hidden there (``TileDataModule`` alone needs it, and importing it takes
    most of 20 s); it is checked in this process below."""
    code = (
        "import json, sys\n"
        "sys.modules['lightning'] = None  # not installed, as far as imports can tell\n"
        "import xflipnslide\n"
        "before = [m for m in ('xarray', 'dask', 'numba') if m in sys.modules]\n"
        "ns = {}\n"
        "exec('from xflipnslide import *', ns)\n"
        "missing = [n for n in xflipnslide.__all__ if n not in ns]\n"
        "same = all(ns[n] is getattr(xflipnslide, n) for n in xflipnslide.__all__)\n"
        "sub = xflipnslide.io.open_image is xflipnslide.open_image\n"
        "lightning = 'TileDataModule' in xflipnslide.__all__\n"
        "print(json.dumps([before, missing, same, sub, 'tile' in dir(xflipnslide), lightning]))"
    )
    assert _run(code) == [[], [], True, True, True, False]


def test_tile_data_module_is_public_where_lightning_is_installed():
    pytest.importorskip("lightning")
    import xflipnslide
    from xflipnslide.ml.lightning import TileDataModule

    assert "TileDataModule" in xflipnslide.__all__
    assert xflipnslide.TileDataModule is TileDataModule


def test_a_failing_accessor_import_never_breaks_import_xarray():
    """xarray imports for everyone; the package warns that .fns is missing."""
    code = (
        "import json, sys, warnings\n"
        "import xflipnslide\n"
        "sys.modules['xflipnslide.accessor'] = None  # its import fails\n"
        "with warnings.catch_warnings(record=True) as seen:\n"
        "    warnings.simplefilter('always')\n"
        "    import xarray as xr\n"
        "shown = [str(w.message) for w in seen if issubclass(w.category, xflipnslide.XFlipNSlideWarning)]\n"
        "print(json.dumps([hasattr(xr.DataArray, 'fns'), len(shown), '.fns' in ''.join(shown)]))"
    )
    assert _run(code) == [False, 1, True]


def test_reload_keeps_one_hook_and_registers_the_accessor():
    code = (
        "import importlib, json, sys\n"
        "import xflipnslide\n"
        "importlib.reload(xflipnslide)\n"
        "hooks = sum(type(f).__name__ == '_AfterImport' for f in sys.meta_path)\n"
        "import numpy as np, xarray as xr\n"
        "t = xr.DataArray(np.zeros((8, 8)), dims=('y', 'x')).fns.tile(4, strategy='no_overlap')\n"
        "after = sum(type(f).__name__ == '_AfterImport' for f in sys.meta_path)\n"
        "print(json.dumps([hooks, after, t.sizes['tile'], xflipnslide.tile.__name__]))"
    )
    assert _run(code) == [1, 0, 4, "tile"]


def test_a_small_first_tile_starts_no_numba():
    """A first ``tile`` of a few MiB runs the kernel's numpy twin: numba is
    never imported, and the tiles equal the slow reference."""
    code = (
        "import json, sys\n"
        f"sys.path.insert(0, {str(Path(__file__).parent)!r})\n"
        "import numpy as np, xarray as xr, xflipnslide\n"
        "from oracle import tiles\n"
        "x = np.arange(3 * 96 * 80, dtype='float32').reshape(3, 96, 80)\n"
        "t = xr.DataArray(x, dims=('band', 'y', 'x')).fns.tile(32)\n"
        "same = bool(np.array_equal(t.values, tiles(x, 32, 'flipnslide')))\n"
        "print(json.dumps([same, 'numba' in sys.modules]))"
    )
    assert _run(code) == [True, False]


def test_a_first_tile_compiles_only_the_kernels_and_dtype_it_uses():
    """Past the twin's budget (set to 0 here), a first tile compiles
    ``gather_tiles`` for its item size and nothing else."""
    code = (
        "import json, sys\n"
        "import numpy as np, xarray as xr, xflipnslide\n"
        "from xflipnslide._core import kernels\n"
        "from xflipnslide._core.kernels import _jit\n"
        "_jit.TWIN_BUDGET = 0\n"
        "xr.DataArray(np.zeros((2, 64, 64), 'uint16'), dims=('band', 'y', 'x')).fns.tile(32)\n"
        "sigs = [str(s[0].dtype) for s in kernels.gather_tiles.compiled.signatures]\n"
        "untouched = [k.compiled is None for k in (kernels.fill_nearest, kernels.moments)]\n"
        "print(json.dumps([sigs, untouched]))"
    )
    assert _run(code) == [["uint16"], [True, True]]


def _windows(rng, shape, T, n):
    rows = rng.integers(0, shape[1] - T + 1, n).astype(np.int64)
    cols = rng.integers(0, shape[2] - T + 1, n).astype(np.int64)
    return rows, cols, (np.arange(n) % 8).astype(np.int8)[rng.permutation(n)]


@pytest.mark.parametrize("dtype", ["uint8", "int16", "float32", "float64", "bool"])
@pytest.mark.parametrize("T", [8, 12])
def test_the_gather_twin_equals_the_kernel_and_the_reference(dtype, T, monkeypatch):
    """``gather_tiles``' numpy twin writes the kernel's bytes (NaN payloads
    included), from a strided source too, in one part or in many."""
    from oracle import TRANSFORM

    from xflipnslide._core.kernels import as_bits, gather_tiles, tiles

    rng = np.random.default_rng(T)
    src = (rng.random((3, 41, 60)) * 100).astype(dtype)
    if dtype == "float32":
        src.view("uint32")[0, :4, :4] = 0x7FC00001  # a NaN with a payload
    src = src[:, :, ::2]  # not contiguous
    rows, cols, codes = _windows(rng, src.shape, T, 37)
    want = np.stack(
        [TRANSFORM[int(k)](src[:, r : r + T, c : c + T]) for r, c, k in zip(rows, cols, codes)]
    )
    kernel, twin = np.empty_like(want), np.empty_like(want)
    gather_tiles(as_bits(src), rows, cols, codes, as_bits(kernel))
    monkeypatch.setattr(tiles, "_TWIN_PART", 3 * want[0].nbytes)  # parts of 3 tiles
    tiles._gather_numpy(as_bits(src), rows, cols, codes, as_bits(twin))
    assert want.view(np.uint8).tobytes() == kernel.view(np.uint8).tobytes()
    assert want.view(np.uint8).tobytes() == twin.view(np.uint8).tobytes()


_CALLS: list = []


def _copy_twin(a, out):
    _CALLS.append("twin")
    out[:] = a


@_jit.kernel(check=lambda a, out: _CALLS.append("check"), twin=_copy_twin)
def _copy(a, out):
    for i in range(a.shape[0]):
        out[i] = a[i]


def test_auto_runs_the_twin_within_its_budget_then_the_kernel(monkeypatch):
    """``Kernel.auto``: the twin while its output stays within the budget
    and the kernel is not compiled for the arguments' types; the kernel
    after, and from the first call that finds it compiled on."""
    monkeypatch.setattr(_jit, "TWIN_BUDGET", 64)
    a = np.arange(4, dtype=np.int64)  # 32 bytes a call
    for _ in range(3):
        out = np.zeros_like(a)
        _copy.auto(a, out)
        np.testing.assert_array_equal(out, a)
    assert _CALLS == ["check", "twin", "check", "twin", "check"]  # the third compiled
    f = np.arange(4.0)
    monkeypatch.setattr(_copy, "_twin_bytes", 0)  # budget left: float64 is not compiled
    _copy.auto(f, np.zeros_like(f))
    assert _CALLS[-1] == "twin"
    _copy.auto(a, np.zeros_like(a))  # compiled for int64: the kernel, from now on
    _copy.auto(f, np.zeros_like(f))
    assert _CALLS[-3:] == ["twin", "check", "check"]


def test_import_bounds_gdal_s_cache_before_gdal_starts():
    code = (
        "import json, os, sys\n"
        "os.environ.pop('GDAL_CACHEMAX', None)\n"
        "import xflipnslide\n"
        "print(json.dumps([os.environ.get('GDAL_CACHEMAX'), 'rasterio' in sys.modules]))"
    )
    from xflipnslide.io import GDAL_CACHEMAX_MB

    assert _run(code) == [str(GDAL_CACHEMAX_MB), False]
