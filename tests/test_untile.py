"""untile(): exact round trips, blends, model outputs, alignment, Zarr."""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr
from conftest import random_scene
from hypothesis import given
from hypothesis import strategies as st
from scipy.signal import windows

import xflipnslide
from xflipnslide import InvalidParameterError
from xflipnslide._core.blend import blend_weights


def blend_reference(T: int, blend: str) -> np.ndarray:
    """The 2-D blend weights from their published definitions (T even):
    pixel centres ``u = (i + 1/2) / T`` are the odd samples of a
    ``2T + 1``-point window, so Hann is scipy's ``hann(2T + 1)[1::2]``;
    distance (seamless_seg's trust) is the triangle ``triang(T)``; spline is
    Smoothly-Blend-Image-Patches' ``_spline_window(T, power=2)``, written
    out from its source."""
    if blend == "mean":
        w = np.ones(T)
    elif blend == "hann":
        w = windows.hann(2 * T + 1)[1::2]
    elif blend == "distance":
        w = windows.triang(T)
    else:
        intersection = T // 4
        outer = (np.abs(2 * windows.triang(T)) ** 2) / 2
        outer[intersection:-intersection] = 0
        inner = 1 - (np.abs(2 * (windows.triang(T) - 1)) ** 2) / 2
        inner[:intersection] = 0
        inner[-intersection:] = 0
        w = inner + outer
        w = w / np.average(w)
    return np.outer(w, w)


@pytest.mark.parametrize("blend", ["mean", "hann", "distance", "spline"])
@pytest.mark.parametrize("T", [4, 16, 64, 256])
def test_blend_windows_match_their_published_definitions(blend, T):
    expected = blend_reference(T, blend)
    np.testing.assert_allclose(blend_weights(T, blend, floor=0), expected, rtol=1e-12, atol=1e-15)
    floored = blend_weights(T, blend)  # untile's: at least 1e-3 of the peak
    np.testing.assert_allclose(floored, np.maximum(expected, 1e-3 * expected.max()), rtol=1e-12)
    assert (floored > 0).all()
    # symmetric under D4 (to rounding), so a transformed tile needs no transformed weights
    for w in (np.rot90(floored), floored[::-1], floored.T):
        np.testing.assert_allclose(w, floored, rtol=1e-14)


def covered(plan, shape):
    """Mask of the pixels the plan's windows cover."""
    m = np.zeros(shape, bool)
    T = plan.tile_size
    for r, c in zip(plan.rows, plan.cols):
        m[max(r, 0) : r + T, max(c, 0) : c + T] = True
    return m


@pytest.mark.slow
@given(
    t=st.sampled_from([4, 8, 12, 16]),
    strategy=st.sampled_from(["flipnslide", "overlap", "no_overlap"]),
    edge=st.sampled_from(["crop", "pad"]),
    blend=st.sampled_from(["mean", "hann"]),
    extra=st.tuples(st.integers(0, 40), st.integers(0, 40)),
    chunks=st.tuples(st.integers(1, 30), st.integers(1, 50), st.integers(1, 50)),
    lazy=st.booleans(),
    seed=st.integers(0, 1000),
)
def test_round_trip_is_exact(t, strategy, edge, blend, extra, chunks, lazy, seed):
    shape = (2, 2 * t + extra[0], 2 * t + extra[1])
    x = random_scene(np.random.default_rng(seed), shape, "float64")
    tiles = x.fns.tile(t, strategy, edge=edge)
    if lazy:
        tiles = tiles.chunk({"tile": chunks[0]})
        back = tiles.fns.untile(blend=blend, chunks=max(chunks[1], 1))
    else:
        back = tiles.fns.untile(blend=blend)
    values = back.values
    plan = xflipnslide.plan_tiles(shape[1:], t, strategy, edge=edge)
    m = covered(plan, shape[1:])
    np.testing.assert_allclose(values[:, m], x.values[:, m], rtol=1e-12)
    assert np.isnan(values[:, ~m]).all()
    np.testing.assert_allclose(back.y.values, x.y.values)
    np.testing.assert_allclose(back.x.values, x.x.values)


def test_real_scene_round_trip_numpy_and_dask(scene, backend):
    tiles = backend(scene, {"y": 150, "x": 200}).fns.tile(64, edge="pad")
    for blend in ("mean", "hann"):
        back = tiles.fns.untile(blend=blend)
        assert back.dims == ("band", "y", "x") and back.dtype == np.float32
        np.testing.assert_allclose(back.values, scene.values, rtol=1e-6)
        assert back.rio.crs == scene.rio.crs
        xr.testing.assert_allclose(back.y, scene.y)


def test_model_outputs_with_other_dims_and_like(scene):
    """Per-class outputs (not bands) stitch back, aligned to the scene."""
    tiles = scene.fns.tile(128)
    # a "model": 4 class scores per pixel computed from the tile itself
    logits = xr.concat([tiles.isel(band=0) * k for k in range(4)], dim="class").transpose(
        "tile", "class", "y", "x"
    )
    stitched = logits.fns.untile(like=scene)
    assert stitched.dims == ("class", "y", "x")
    np.testing.assert_array_equal(stitched.x.values, scene.x.values)
    ok = ~np.isnan(stitched.values[0])
    np.testing.assert_allclose(stitched.values[3][ok], 3.0 * scene.values[0][ok])
    with pytest.raises(InvalidParameterError, match="pass the scene they were cut from"):
        logits.fns.untile(like=scene.isel(y=slice(0, 100)))


def test_tiles_from_zarr_stitch_back_alone(tmp_path, scene):
    tiles = scene.chunk({"y": 200}).fns.preprocess(nodata=0).fns.tile(64)
    tiles.to_dataset(name="t").to_zarr(tmp_path / "t.zarr")
    reloaded = xr.open_zarr(tmp_path / "t.zarr")["t"]
    back = reloaded.fns.untile(blend="hann")
    expected = scene.fns.preprocess(nodata=0)
    plan = xflipnslide.plan_tiles((560, 600), 64)
    m = covered(plan, (560, 600))
    np.testing.assert_allclose(back.values[:, m], expected.values[:, m], rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(back.x.values, scene.x.values)
    assert back.rio.crs == scene.rio.crs
    np.testing.assert_allclose(back.fns_mean.values, expected.fns_mean.values)


def test_subset_leaves_uncovered_pixels_nan(scene):
    tiles = scene.fns.tile(128).isel(tile=[0])
    back = tiles.fns.untile()
    assert np.isfinite(back.values[:, 24:152, 44:172]).all()
    assert np.isnan(back.values[:, 200:, :]).all()


def test_dataset_untile_and_lazy(no_compute):
    x = random_scene(np.random.default_rng(2), (2, 100, 100)).chunk({"y": 50})
    ds = xr.Dataset({"image": x, "mask": (x.isel(band=0) > 0).astype("uint8")})
    back = ds.fns.tile(32).fns.untile()
    assert back["mask"].dtype == np.float32 and back["image"].chunks is not None


def test_untile_errors(scene):
    with pytest.raises(InvalidParameterError, match="'tile' dimension"):
        scene.fns.untile()
    tiles = scene.fns.tile(128)
    with pytest.raises(InvalidParameterError, match=r"\['transform'\]"):
        tiles.drop_vars("transform").fns.untile()
    with pytest.raises(InvalidParameterError, match="blend must be"):
        tiles.fns.untile(blend="max")
    bare = tiles.copy()
    bare.attrs = {}
    with pytest.raises(InvalidParameterError, match="pass like=scene"):
        bare.fns.untile()
    np.testing.assert_allclose(bare.fns.untile(like=scene).values, tiles.fns.untile().values)


def slow_overlap_add(tiles: np.ndarray, rows, cols, codes, shape, weight) -> np.ndarray:
    """Undo each code with numpy, add weighted; NaN where no tile."""
    from oracle import TRANSFORM

    inverse = {0: 0, 1: 3, 2: 2, 3: 1, 4: 4, 5: 5, 6: 6, 7: 7}
    T = tiles.shape[-1]
    acc = np.zeros((tiles.shape[1], *shape))
    wsum = np.zeros(shape)
    for t, r, c, k in zip(tiles, rows, cols, codes):
        back = TRANSFORM[inverse[int(k)]](t)
        for i in range(T):
            for j in range(T):
                y, x = r + i, c + j
                if 0 <= y < shape[0] and 0 <= x < shape[1]:
                    acc[:, y, x] += weight[i, j] * back[:, i, j]
                    wsum[y, x] += weight[i, j]
    with np.errstate(invalid="ignore"):
        return np.where(wsum > 0, acc / wsum, np.nan)


@pytest.mark.parametrize("blend", ["mean", "hann", "distance", "spline"])
def test_untile_of_disagreeing_tiles_matches_a_slow_overlap_add(backend, blend):
    """Random per-tile values disagree where tiles overlap, so only the right
    weights (not just any consistently normalised ones) pass."""
    scene = xr.DataArray(np.zeros((2, 70, 90), "float32"), dims=("band", "y", "x"))
    tiles = scene.fns.tile(16, edge="pad")
    rng = np.random.default_rng(0)
    values = rng.random(tiles.shape).astype("float32")
    noisy = backend(tiles.copy(data=values), {"tile": 37})
    got = noisy.fns.untile(blend=blend, chunks=32).values
    expected = slow_overlap_add(
        values,
        tiles.row.values,
        tiles.col.values,
        tiles.transform.values,
        (70, 90),
        np.maximum(blend_reference(16, blend), 1e-3 * blend_reference(16, blend).max()),
    )
    np.testing.assert_allclose(got, expected, rtol=2e-5, atol=1e-6)


def test_lazy_untile_follows_the_chunks_of_like(scene):
    tiles = scene.fns.tile(64, edge="pad").chunk({"tile": 40})
    like = scene.chunk({"y": 100, "x": 150})
    back = tiles.fns.untile(like=like)
    assert back.chunks[1:] == like.chunks[1:]
    # a Dataset like: its lazy variable decides, whatever comes first
    ds = xr.Dataset({"a": scene.isel(band=0), "b": like})
    assert tiles.fns.untile(like=ds).chunks[1:] == like.chunks[1:]
    assert tiles.fns.untile(like=ds, chunks=128).chunks[1:] == (
        (128,) * 4 + (48,),
        (128,) * 4 + (88,),
    )
    assert tiles.fns.untile().chunks[1:] != like.chunks[1:]
    np.testing.assert_array_equal(back.values, scene.values.astype(np.float32))
