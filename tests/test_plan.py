"""The window plan against the geometry of docs/tiling.md: counts, order,
codes and properties."""

from __future__ import annotations

import numpy as np
import oracle
import pytest
from hypothesis import given
from hypothesis import strategies as st

from xflipnslide import InvalidParameterError, SceneTooSmallError, plan_tiles
from xflipnslide.plan import TRANSFORMS, apply_transform, invert_code


@pytest.mark.parametrize(
    ("shape", "counts"),
    [
        ((5120, 5120), (400, 1521, 2965)),
        ((1024, 1024), (16, 49, 85)),
        ((1000, 1023), (9, 25, 41)),
    ],
)
def test_spec_counts(shape, counts):
    got = tuple(len(plan_tiles(shape, 256, s)) for s in ("no_overlap", "overlap", "flipnslide"))
    assert got == counts


@given(
    h=st.integers(1, 700),
    w=st.integers(1, 700),
    t=st.sampled_from([4, 8, 12, 16, 32, 64, 100, 128]),
    strategy=st.sampled_from(["flipnslide", "overlap", "no_overlap"]),
    edge=st.sampled_from(["crop", "pad"]),
)
def test_plan_matches_spec_loops(h, w, t, strategy, edge):
    try:
        plan = plan_tiles((h, w), t, strategy, edge=edge)
    except SceneTooSmallError:
        need = {"crop": {"no_overlap": t}, "pad": {"no_overlap": 1}}[edge].get(strategy)
        need = need or (2 * t if edge == "crop" else t + 1)
        assert min(h, w) < need
        return
    expected = oracle.windows(h, w, t, strategy, edge)
    got = list(
        zip(plan.rows.tolist(), plan.cols.tolist(), plan.codes.tolist(), plan.grids.tolist())
    )
    assert got == expected
    assert plan.codes.dtype == np.int8


def _coverage(plan):
    """Per code, how many tiles cover each pixel of the tiled area."""
    (oy, ox), (hc, wc), t = plan.offset, plan.extent, plan.tile_size
    cover = np.zeros((8, hc, wc), dtype=np.int32)
    for r, c, code in zip(plan.rows, plan.cols, plan.codes):
        cover[code, r - oy : r - oy + t, c - ox : c - ox + t] += 1
    return cover


@given(
    m=st.integers(2, 7),
    n=st.integers(2, 7),
    t=st.sampled_from([4, 8, 16, 32]),
    extra=st.tuples(st.integers(0, 31), st.integers(0, 31)),
)
def test_no_redundancy_and_coverage(m, n, t, extra):
    plan = plan_tiles((m * t + extra[0] % t, n * t + extra[1] % t), t, "flipnslide")
    cover = _coverage(plan)
    # no pixel twice under the same code
    assert cover.max() == 1
    # every pixel of the crop in at least one tile
    assert (cover.sum(0) >= 1).all()
    # every pixel at least 3T/4 from the crop edge: exactly 8 tiles, one per code
    d = 3 * t // 4
    core = cover[:, d : plan.extent[0] - d, d : plan.extent[1] - d]
    assert (core == 1).all()


@pytest.mark.parametrize("strategy", ["no_overlap", "overlap"])
def test_other_strategies_identity_and_cover(strategy):
    plan = plan_tiles((300, 520), 64, strategy)
    assert set(plan.codes.tolist()) == {0}
    assert set(plan.grids.tolist()) == {"regular"}
    cover = _coverage(plan).sum(0)
    assert cover.min() >= 1
    if strategy == "no_overlap":
        assert cover.max() == 1


def test_pad_origins_and_extent():
    plan = plan_tiles((1000, 1023), 256, "flipnslide", edge="pad")
    assert plan.extent == (1024, 1024)
    assert plan.offset == (-12, 0)
    assert plan.pad == ((12, 12), (0, 1))
    assert plan.rows.min() == -12


#: The transform table of docs/tiling.md written out as index maps: tile pixel (r, j) of a T x T window
#: comes from window pixel (u, v); t = T - 1. Independent of numpy's rot90.
INDEX_MAPS = {
    0: lambda r, j, t: (r, j),
    1: lambda r, j, t: (t - j, r),
    2: lambda r, j, t: (t - r, t - j),
    3: lambda r, j, t: (j, t - r),
    4: lambda r, j, t: (r, t - j),
    5: lambda r, j, t: (t - r, j),
    6: lambda r, j, t: (t - j, t - r),
    7: lambda r, j, t: (j, r),
}


def test_transform_table_matches_spec():
    a = np.arange(2 * 4 * 4).reshape(2, 4, 4)
    t = 3
    for code in range(8):
        by_index = np.empty_like(a)
        for r in range(4):
            for j in range(4):
                u, v = INDEX_MAPS[code](r, j, t)
                by_index[:, r, j] = a[:, u, v]
        assert np.array_equal(apply_transform(a, code), by_index), code
        assert np.array_equal(oracle.TRANSFORM[code](a), by_index), code
        assert np.array_equal(apply_transform(apply_transform(a, code), invert_code(code)), a)
    assert len(set(TRANSFORMS)) == 8
    # the eight codes give eight distinct images of an asymmetric square
    assert len({apply_transform(a, c).tobytes() for c in range(8)}) == 8


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"strategy": "flip"}, "strategy must be one of"),
        ({"edge": "wrap"}, "edge must be one of"),
        ({"tile_size": 0}, "positive multiple of 4"),
        ({"tile_size": -8}, "positive multiple of 4"),
        ({"tile_size": 250}, r"multiple of 4 for strategy='flipnslide'; got 250"),
        ({"tile_size": 255, "strategy": "overlap"}, "multiple of 2 for strategy='overlap'"),
        ({"tile_size": 2.5}, "positive integer"),
        ({"tile_size": True}, "positive integer"),
    ],
)
def test_bad_parameters(kwargs, match):
    args = {"tile_size": 64, "strategy": "flipnslide"} | kwargs
    with pytest.raises(InvalidParameterError, match=match):
        plan_tiles((512, 512), args.pop("tile_size"), args.pop("strategy"), **args)


@pytest.mark.parametrize(
    ("shape", "strategy", "edge", "need"),
    [
        ((511, 600), "flipnslide", "crop", "512 x 512"),
        ((600, 300), "overlap", "crop", "512 x 512"),
        ((255, 600), "no_overlap", "crop", "256 x 256"),
        ((256, 600), "flipnslide", "pad", "257 x 257"),
    ],
)
def test_scene_too_small_names_minimum(shape, strategy, edge, need):
    with pytest.raises(SceneTooSmallError, match=f"at least {need} pixels"):
        plan_tiles(shape, 256, strategy, edge=edge)
