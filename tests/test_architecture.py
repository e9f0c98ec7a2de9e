"""The layers hold: the array layer alone knows the backend, schema alone
spells the tile format, ``_core`` never sees xarray, no module outgrows
500 lines, and ``import xflipnslide`` stays light.

Each test scans the package's source (AST, so imports and checks inside
functions count too) and lists every violation it finds, with file and
line, not just the first.
"""

from __future__ import annotations

import ast
import json
import re
import subprocess
import sys
from pathlib import Path

import xflipnslide
from xflipnslide import schema

PACKAGE = Path(xflipnslide.__file__).parent
MODULES = sorted(p for p in PACKAGE.rglob("*.py") if "__pycache__" not in p.parts)

#: Violations in modules still being written elsewhere, as (test, path
#: prefix): listed until their module is fixed, then removed from here.
PENDING: set[tuple[str, str]] = set()  # (test, path prefix) allowed to fail: none

#: The one allowed dask import of the xarray layer: the CLI's progress bar.
#: The ml modules of the frameworks import dask where they must.
DASK_ALLOWED = {
    "cli/": ("dask.diagnostics",),
    "ml/torch.py": ("dask",),
    "ml/tensorflow.py": ("dask",),
}

#: Modules that may spell the format's names: schema and its reader.
SCHEMA_MODULES = ("schema.py", "_schema_read.py")

#: What ``import xflipnslide`` must not import: the optional frameworks, and
#: numba (the kernels compile at their first call).
HEAVY = ("torch", "tensorflow", "lightning", "pytorch_lightning", "matplotlib", "numba")

MAX_LINES = 500


def rel(path: Path) -> str:
    return path.relative_to(PACKAGE).as_posix()


def pending(test: str, path: str) -> bool:
    return any(test == t and path.startswith(prefix) for t, prefix in PENDING)


def parse(path: Path) -> ast.Module:
    return ast.parse(path.read_text(), filename=str(path))


def report(test: str, found: list[str]) -> None:
    """Fail with every violation not in :data:`PENDING`."""
    new = [f for f in found if not pending(test, f.split(":")[0])]
    assert not new, f"{len(new)} violations:\n" + "\n".join(new)


def imported_modules(tree: ast.AST):
    """``(node, module name)`` of every import, at any depth; relative
    imports resolved against nothing (``from ..x`` gives ``..x``)."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node, alias.name
        elif isinstance(node, ast.ImportFrom):
            yield node, "." * node.level + (node.module or "")


def xarray_layer() -> list[Path]:
    return [p for p in MODULES if rel(p).split("/")[0] != "_core"]


# --- (a) the xarray layer never asks for the backend ------------------------

#: Backend tests by name (``in_memory`` is ``not is_lazy``).
_BACKEND_CALLS = {"is_lazy", "is_dask_collection", "in_memory"}
_BACKEND_ATTRS = {"dask", "chunks", "__dask_graph__", "compute_chunk_sizes"}


def _is_chunks(node) -> bool:
    return isinstance(node, ast.Attribute) and node.attr in ("chunks", "chunksizes")


def backend_checks(tree: ast.AST) -> list[tuple[int, str]]:
    """Lines where a module decides by backend: ``is_lazy(...)``,
    ``is_dask_collection(...)``, ``x.chunks is None`` (any comparison of
    ``.chunks``), ``.chunks``/``.chunksizes`` as a condition or read at
    all for ``.chunksizes``, ``hasattr(x, "dask")`` and friends."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            f = node.func
            name = (
                f.id if isinstance(f, ast.Name) else f.attr if isinstance(f, ast.Attribute) else ""
            )
            if name in _BACKEND_CALLS:
                found.append((node.lineno, f"{name}(...)"))
            if (
                name == "hasattr"
                and len(node.args) == 2
                and isinstance(node.args[1], ast.Constant)
                and node.args[1].value in _BACKEND_ATTRS
            ):
                found.append((node.lineno, f"hasattr(..., {node.args[1].value!r})"))
        elif isinstance(node, ast.Compare):
            if any(_is_chunks(n) for n in (node.left, *node.comparators)):
                found.append((node.lineno, "a comparison of .chunks"))
        elif isinstance(node, (ast.If, ast.IfExp, ast.While, ast.Assert)):
            if _is_chunks(node.test):
                found.append((node.lineno, ".chunks as a condition"))
        elif isinstance(node, ast.BoolOp):
            found += [(v.lineno, ".chunks as a condition") for v in node.values if _is_chunks(v)]
        elif isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.Not):
            if _is_chunks(node.operand):
                found.append((node.lineno, "not .chunks"))
        elif isinstance(node, ast.comprehension):
            found += [(c.lineno, ".chunks as a filter") for c in node.ifs if _is_chunks(c)]
        elif isinstance(node, ast.Attribute) and node.attr == "chunksizes":
            found.append((node.lineno, ".chunksizes"))
    return sorted(set(found))


def test_the_xarray_layer_imports_no_dask():
    found = []
    for path in xarray_layer():
        allowed = next((m for p, m in DASK_ALLOWED.items() if rel(path).startswith(p)), ())
        for node, module in imported_modules(parse(path)):
            top = module.split(".")[0]
            if top == "dask" and not any(
                module == a or module.startswith(a + ".") for a in allowed
            ):
                found.append(f"{rel(path)}:{node.lineno}: imports {module}")
    report("backend", found)


def test_the_xarray_layer_never_asks_for_the_backend():
    found = [
        f"{rel(path)}:{line}: {what}"
        for path in xarray_layer()
        for line, what in backend_checks(parse(path))
    ]
    report("backend", found)


def test_the_backend_check_finds_what_it_should():
    """The scanner itself, on code that does each thing once."""
    code = """
import numpy as np
def f(x, like, is_lazy):
    a = x.chunks is None
    b = 1 if like.chunks else 2
    c = like.chunksizes
    if hasattr(x, "dask"):
        pass
    d = is_lazy(x) or in_memory(x)
    e = [v for v in x if v.chunks]
    g = x.shape[0] if x is None else 0   # not a backend check
"""
    lines = [line for line, _ in backend_checks(ast.parse(code))]
    assert lines == [4, 5, 6, 7, 9, 9, 10]


# --- (b) only schema spells the tile format ---------------------------------


def format_names() -> set[str]:
    """Every name schema defines as a public constant (strings and tuples
    of strings)."""
    names = set()
    for key, value in vars(schema).items():
        if key.startswith("_") or not key.isupper():
            continue
        values = value if isinstance(value, tuple) else (value,)
        names |= {v for v in values if isinstance(v, str)}
    return names


def exempt_nodes(tree: ast.AST) -> set[int]:
    """``id`` of the string constants that name something else: docstrings
    (module, class, function), the names in ``__all__`` (``"tile"`` the
    function) and ``what=`` arguments (the function asking, for messages)."""
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
                out.add(id(body[0].value))
        elif (
            isinstance(node, ast.Assign)
            and any(isinstance(t, ast.Name) and t.id == "__all__" for t in node.targets)
        ) or (isinstance(node, ast.keyword) and node.arg == "what"):
            out |= {id(n) for n in ast.walk(node.value)}
    return out


#: Methods and constructors whose string arguments (and dict keys) name
#: dims, coordinates or variables.
_XARRAY_CALLS = {
    "DataArray",
    "Dataset",
    "Variable",
    "assign",
    "assign_coords",
    "chunk",
    "drop_vars",
    "expand_dims",
    "get",
    "isel",
    "rename",
    "reset_coords",
    "sel",
    "set_coords",
    "squeeze",
    "swap_dims",
    "transpose",
}
#: Keywords whose values name dims, coordinates or variables.
_NAME_KEYWORDS = {"dim", "dims", "name", "coords", "data_vars", "variable", "image", "label"}


def _parents(tree: ast.AST) -> dict[int, ast.AST]:
    return {id(child): node for node in ast.walk(tree) for child in ast.iter_child_nodes(node)}


def _names_data(node: ast.AST, parents: dict[int, ast.AST]) -> bool:
    """Whether a constant stands where xarray reads a name: an index
    (``ds["tile"]``), a comparison (``"tile" in da.dims``), a default
    argument, a keyword that names (``dims=``, ``name=``...) or an argument
    or dict key of an xarray call (``.transpose("tile", ...)``). A plain
    word elsewhere (a rasterio profile key, a CLI command, a kwarg's name)
    is another thing of the same name."""
    child, parent = node, parents.get(id(node))
    while parent is not None:
        if isinstance(parent, ast.Subscript) and child is parent.slice:
            return True
        if isinstance(parent, ast.Compare):
            return True
        if isinstance(parent, ast.arguments):
            return child in parent.defaults or child in parent.kw_defaults
        if isinstance(parent, ast.keyword):
            return parent.arg in _NAME_KEYWORDS
        if isinstance(parent, ast.Call):
            f = parent.func
            name = f.attr if isinstance(f, ast.Attribute) else getattr(f, "id", "")
            return child is not f and name in _XARRAY_CALLS
        if isinstance(parent, ast.Dict) and child in parent.values:
            return False  # a value, not a key: stands for itself
        if not isinstance(parent, (ast.Tuple, ast.List, ast.Set, ast.Dict, ast.Starred)):
            return False
        child, parent = parent, parents.get(id(parent))
    return False


def spelled_names(tree: ast.AST, names: set[str], *, prose: bool = True) -> list[tuple[int, str]]:
    """String constants (see :func:`exempt_nodes`) that spell a format name:
    one that holds a name with an underscore (``fns_observed``,
    ``valid_fraction``: words of no other meaning) or an ``fns_`` attr
    prefix, anywhere (with ``prose``: also inside messages); a plain-word
    name (``tile``, ``row``, ``image``) where xarray reads it as a name
    (:func:`_names_data`)."""
    distinctive = sorted((n for n in names if "_" in n), key=len, reverse=True)
    words = [rf"(?<![A-Za-z0-9]){re.escape(n)}(?![A-Za-z0-9])" for n in distinctive]
    pattern = re.compile("|".join([*words, r"fns_[a-z]"]))
    skip, parents = exempt_nodes(tree), _parents(tree)
    found = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Constant) or not isinstance(node.value, str):
            continue
        if id(node) in skip:
            continue
        text = node.value
        whole = text in names and ("_" in text or _names_data(node, parents))
        if whole or (prose and pattern.search(text)) or pattern.fullmatch(text):
            found.append((node.lineno, repr(text)))
    return found


def test_only_schema_spells_the_tile_format():
    names = format_names()
    assert {"tile", "row", "col", "transform", "grid", "valid_fraction", "fns_observed"} <= names
    found = [
        f"{rel(path)}:{line}: {text}"
        for path in MODULES
        if rel(path) not in SCHEMA_MODULES
        # the array layer cannot import schema: its messages may name a coordinate
        for line, text in spelled_names(
            parse(path), names, prose=not rel(path).startswith("_core/")
        )
    ]
    report("names", found)


def test_the_name_scanner_finds_what_it_should():
    code = '''
def f(ds):
    """Reads ``ds["tile"]`` and fns_observed: a docstring, fine."""
    a = ds["tile"]
    b = f"needs the fns_observed mask"
    c = "tile with min_valid=... to drop"   # prose, fine
    d = k.removeprefix("fns_dropped_")
    check(ds, what="tile")   # the function asking, fine
    e = ds.transpose("tile", ...)
    g = {"transform": affine, "tile": run}   # a profile key, a command: fine
    h = xr.DataArray(x, dims=("tile", "y"), name="label")
    if "row" in ds.coords:
        pass
def g(tiles, label="label"):
    pass
__all__ = ["tile"]   # the function, fine
'''
    lines = sorted(line for line, _ in spelled_names(ast.parse(code), format_names()))
    assert lines == [4, 5, 7, 9, 11, 11, 12, 14]


def test_schema_all_lists_what_others_import():
    exported = set(schema.__all__)
    found = []
    for path in MODULES:
        if rel(path) in SCHEMA_MODULES:
            continue
        tree = parse(path)
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[-1] == "schema":
                found += [
                    f"{rel(path)}:{node.lineno}: {a.name}"
                    for a in node.names
                    if a.name not in exported
                ]
            elif (
                isinstance(node, ast.Attribute)
                and isinstance(node.value, ast.Name)
                and node.value.id == "schema"
                and node.attr not in exported
            ):
                found.append(f"{rel(path)}:{node.lineno}: schema.{node.attr}")
    assert not found, "not in schema.__all__:\n" + "\n".join(found)
    missing = [n for n in schema.__all__ if not hasattr(schema, n)]
    assert not missing, missing


# --- (c) the array layer knows no xarray ------------------------------------


def test_core_imports_no_xarray_and_nothing_above_it():
    """``_core`` imports numpy, numba, dask (inside functions) and, of the
    package, only itself, ``errors`` and ``plan`` (pure geometry)."""
    found = []
    for path in MODULES:
        if rel(path).split("/")[0] != "_core":
            continue
        depth = len(Path(rel(path)).parts) - 1  # dots that reach the package
        for node, module in imported_modules(parse(path)):
            if module.split(".")[0] in ("xarray", "rioxarray", "xbatcher"):
                found.append(f"{rel(path)}:{node.lineno}: imports {module}")
            dots = len(module) - len(module.lstrip("."))
            if dots > depth:
                target = module.lstrip(".").split(".")[0]
                if target not in ("errors", "plan"):
                    found.append(f"{rel(path)}:{node.lineno}: imports {module}")
            elif module.startswith("xflipnslide") and not module.startswith("xflipnslide._core"):
                found.append(f"{rel(path)}:{node.lineno}: imports {module}")
    assert not found, "\n".join(found)


# --- (d) no module over 500 lines ---------------------------------------------


def test_no_module_is_over_500_lines():
    found = []
    for path in MODULES:
        n = len(path.read_text().splitlines())
        if n > MAX_LINES:
            found.append(f"{rel(path)}: {n} lines")
    report("size", found)


# --- (e) import xflipnslide stays light -----------------------------------------


def test_import_xflipnslide_imports_no_framework():
    code = (
        "import json, sys, xflipnslide, xflipnslide.accessor\n"
        f"print(json.dumps([m for m in {HEAVY!r} if m in sys.modules]))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert json.loads(done.stdout.splitlines()[-1]) == []


def test_public_names_stay_functions_after_their_modules_are_imported():
    """``xflipnslide.preprocess`` / ``.predict`` are the functions, also once
    the submodules of the same names are imported (fresh interpreter)."""
    import subprocess
    import sys

    code = (
        "import importlib, types, xflipnslide as x\n"
        "names = [n for n in x.__all__ if importlib.util.find_spec('xflipnslide.' + n)]\n"
        "assert {'preprocess', 'predict'} <= set(names), names\n"
        "for n in names:\n"
        "    importlib.import_module('xflipnslide.' + n)\n"
        "    assert callable(getattr(x, n)) and not isinstance(getattr(x, n), types.ModuleType), n\n"
        "import xarray as xr, numpy as np\n"
        "xr.DataArray(np.ones((1, 64, 64), 'float32'), dims=('band', 'y', 'x')).fns.preprocess()\n"
        "assert not isinstance(x.preprocess, types.ModuleType)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
