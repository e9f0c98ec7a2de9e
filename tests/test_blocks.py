"""Chunk geometry (``_core.blocks``, no dask) and the graph helpers (``_core.graph``)."""

from __future__ import annotations

import dask
import dask.array as da
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import xflipnslide
from xflipnslide._core.blocks import (
    assemble,
    chunk_bounds,
    chunk_span,
    local_slices,
    strip_source,
    strips,
)
from xflipnslide._core.graph import independent_copy, nest_keys
from xflipnslide.plan import read_range


def test_chunk_bounds_span_and_local_slices():
    bounds = chunk_bounds([3, 4, 5])
    assert bounds == [0, 3, 7, 12]
    assert list(chunk_span(bounds, slice(2, 8))) == [0, 1, 2]
    assert list(chunk_span(bounds, slice(3, 7))) == [1]
    assert local_slices(bounds, range(3), slice(2, 8)) == [slice(2, 3), slice(0, 4), slice(0, 1)]


@given(
    st.lists(st.integers(1, 9), min_size=1, max_size=5),
    st.lists(st.integers(1, 9), min_size=1, max_size=5),
    st.data(),
)
def test_assemble_cuts_and_joins_like_slicing(ys, xs, data):
    a = np.arange(2 * sum(ys) * sum(xs)).reshape(2, sum(ys), sum(xs))
    by, bx = chunk_bounds(ys), chunk_bounds(xs)
    y0 = data.draw(st.integers(0, sum(ys) - 1))
    y1 = data.draw(st.integers(y0 + 1, sum(ys)))
    x0 = data.draw(st.integers(0, sum(xs) - 1))
    x1 = data.draw(st.integers(x0 + 1, sum(xs)))
    sy, sx = chunk_span(by, slice(y0, y1)), chunk_span(bx, slice(x0, x1))
    nested = [[a[:, by[i] : by[i + 1], bx[j] : bx[j + 1]] for j in sx] for i in sy]
    got = assemble(
        nested,
        local_slices(by, sy, slice(y0, y1)),
        local_slices(bx, sx, slice(x0, x1)),
        0,
    )
    np.testing.assert_array_equal(got, a[:, y0:y1, x0:x1])


@given(st.integers(1, 40), st.integers(-30, 30), st.integers(1, 30))
def test_read_range_covers_reflect_padding(size, lo, width):
    hi = lo + width
    if -lo >= size or hi - size >= size:  # reflection reaches past the far edge
        return
    a, b = read_range(lo, hi, size)
    x = np.arange(size)
    # what was read, reflect-padded as the strips pad it, holds the window at lo
    left = max(a - lo, 0)
    padded = np.pad(x[a:b], (left, max(hi - b, 0)), mode="reflect")
    padded = padded[lo - a + left : lo - a + left + width]
    full = np.pad(x, (max(-lo, 0), max(hi - size, 0)), mode="reflect")
    start = lo + max(-lo, 0)
    np.testing.assert_array_equal(padded, full[start : start + width])


def test_strips_read_what_their_windows_need():
    plan = xflipnslide.plan_tiles((100, 90), 32, edge="pad")
    x = np.arange(100 * 90, dtype=np.float32).reshape(1, 100, 90)
    for s in strips(plan):
        src = strip_source(x[..., s.y, s.x], s.pad)
        for k, (r, c) in enumerate(zip(s.rows, s.cols)):
            window = src[:, r : r + 32, c : c + 32]
            full = np.pad(x, ((0, 0), *plan.pad), mode="reflect")
            gr, gc = (
                plan.rows[s.start + k] + plan.pad[0][0],
                plan.cols[s.start + k] + plan.pad[1][0],
            )
            np.testing.assert_array_equal(window, full[:, gr : gr + 32, gc : gc + 32])


def test_nest_keys_shape():
    assert nest_keys(("x",), [range(2), range(1, 3)]) == [
        [("x", 0, 1), ("x", 0, 2)],
        [("x", 1, 1), ("x", 1, 2)],
    ]


def test_independent_copy_renames_every_key_and_reads_twice():
    """Guards the reliance on dask's private ``_task_spec``: fails loudly if
    dask changes how graphs are renamed."""
    calls = []

    def count(block):
        calls.append(1)
        return block + 1

    x = da.ones((8, 8), chunks=4).map_blocks(count, dtype=float)
    copy = independent_copy(x)
    calls.clear()  # map_blocks may probe the function on a meta array
    assert not set(dict(copy.__dask_graph__())) & set(dict(x.__dask_graph__()))
    with dask.config.set(scheduler="synchronous"):
        total, same = dask.compute(x.sum(), copy.sum())
    assert total == same == 128
    assert len(calls) == 8  # 4 blocks, each computed once per graph
    np.testing.assert_array_equal(copy.compute(), x.compute())
    assert (copy + x).sum().compute() == 256  # still optimisable together


@pytest.mark.parametrize("name", ["torch", "tensorflow", "matplotlib", "geopandas", "odc.stac"])
def test_missing_optional_dependencies_name_their_extra(monkeypatch, name):
    import sys

    from xflipnslide.errors import require

    monkeypatch.setitem(sys.modules, name, None)
    with pytest.raises(ImportError, match=r'pip install "xflipnslide\[extra\]"'):
        require(name, "extra", "something")
