"""preprocess() of many scenes: one set of band statistics for a collection (docs/collections.md).

The expected statistics are numpy's mean and population std over the
concatenated valid pixels of all scenes (the oracle below), never the
package's own merge.
"""

from __future__ import annotations

import os
import warnings

import numpy as np
import pytest
import xarray as xr
from conftest import raise_if_dask_computes

import xflipnslide
from xflipnslide import InvalidParameterError, read_stats
from xflipnslide.collection import scene_tiles, tile_collection

pytestmark = pytest.mark.filterwarnings(
    "ignore::xflipnslide.DataFilledWarning", "ignore::xflipnslide.XFlipNSlideWarning"
)

SHARED = "/work/shared/data/landsat8"
BANDS = ["red", "green", "blue"]


def synthetic(seed: int, shape: tuple[int, int], offset: float, nodata: float = -9999.0):
    """A float scene ``(band, y, x)`` with band-dependent level, NaN gaps and nodata pixels."""
    rng = np.random.default_rng(seed)
    h, w = shape
    data = rng.normal(offset, 1 + np.arange(3)[:, None, None], (3, h, w))
    data[rng.random((3, h, w)) < 0.1] = np.nan
    data[:, : h // 5, : w // 4] = nodata  # a nodata corner, in every band
    coords = {"band": BANDS, "y": 1000.0 - 30 * np.arange(h), "x": 30.0 * np.arange(w)}
    return xr.DataArray(data.astype("float32"), dims=("band", "y", "x"), coords=coords)


def scenes_of(backend):
    base = {
        "a": synthetic(0, (40, 52), 0.0),
        "b": synthetic(1, (33, 27), 5.0),
        "c": synthetic(2, (61, 45), -3.0),
    }
    return {k: backend(v) for k, v in base.items()}, base


def oracle(scenes: dict, nodata: float | None = -9999.0):
    """Per band: numpy mean and population std over the valid pixels of all scenes."""
    mean, std = [], []
    for b in range(3):
        values = []
        for s in scenes.values():
            v = np.asarray(s.values[b], np.float64).ravel()
            ok = np.isfinite(v) & (v != nodata if nodata is not None else True)
            values.append(v[ok])
        pooled = np.concatenate(values)
        mean.append(pooled.mean())
        std.append(pooled.std())
    return np.array(mean), np.array(std)


def quiet(*args, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", xflipnslide.DataFilledWarning)
        warnings.simplefilter("ignore", xflipnslide.DataDroppedWarning)
        warnings.simplefilter("ignore", xflipnslide.XFlipNSlideWarning)
        return xflipnslide.preprocess(*args, **kwargs)


@pytest.mark.parametrize("fill", [None, "nearest"])
def test_collection_stats_are_numpys_over_all_valid_pixels(backend, fill):
    scenes, base = scenes_of(backend)
    out = quiet(scenes, nodata=-9999.0, fill=fill)
    assert isinstance(out, dict) and list(out) == ["a", "b", "c"]
    mean, std = oracle(base)
    for k, s in out.items():
        np.testing.assert_allclose(s.fns_mean.values, mean, rtol=1e-12)
        np.testing.assert_allclose(s.fns_std.values, std, rtol=1e-12)
        assert list(s.fns_mean.band.values) == BANDS
        x = np.asarray(base[k].values, np.float64)
        ok = np.isfinite(x) & (x != -9999.0)
        want = (x - mean[:, None, None]) / std[:, None, None]
        got = s.values
        assert got.dtype == np.float32
        np.testing.assert_allclose(got[ok], want[ok], rtol=1e-5, atol=1e-5)
        if fill is None:
            assert np.isnan(got[~ok]).all()
        else:
            assert not np.isnan(got).any()
        # The scene's own observed mask, as for one scene.
        np.testing.assert_array_equal(s.fns_observed.values, ok.all(0))


def test_collection_dask_equals_numpy():
    eager, base = scenes_of(lambda v: v)
    lazy = {k: v.chunk({"band": 1, "y": 16, "x": 20}) for k, v in base.items()}
    want = quiet(eager, nodata=-9999.0)
    got = quiet(lazy, nodata=-9999.0)
    for k in base:
        np.testing.assert_allclose(got[k].fns_mean.values, want[k].fns_mean.values, rtol=1e-13)
        np.testing.assert_allclose(got[k].fns_std.values, want[k].fns_std.values, rtol=1e-13)
        np.testing.assert_allclose(got[k].values, want[k].values, rtol=1e-6, atol=1e-6)


def test_collection_of_numpy_and_dask_scenes_is_lazy_and_equal():
    eager, base = scenes_of(lambda v: v)
    mixed = dict(eager, b=base["b"].chunk({"y": 11}))
    with raise_if_dask_computes():
        got = quiet(mixed, nodata=-9999.0)
    assert all(s.chunks is not None for s in got.values())  # lazy statistics: lazy results
    want = quiet(eager, nodata=-9999.0)
    mean, std = oracle(base)
    for k in base:
        np.testing.assert_allclose(got[k].fns_mean.values, mean, rtol=1e-12)
        np.testing.assert_allclose(got[k].fns_std.values, std, rtol=1e-12)
        np.testing.assert_allclose(got[k].values, want[k].values, rtol=1e-6, atol=1e-6)


def test_collection_is_lazy_one_statistics_pass_and_tiles():
    _, base = scenes_of(lambda v: v)
    lazy = {k: v.chunk({"band": 1, "y": 16, "x": 16}) for k, v in base.items()}
    with raise_if_dask_computes():
        out = quiet(lazy, nodata=-9999.0, fill=None)
        names = {s.fns_mean.data.name for s in out.values()}
        assert len(names) == 1  # every scene holds the same lazy statistics
        tiles = tile_collection(out, 16, "overlap", edge="pad")
        stats = read_stats(tiles)
        per_scene = [read_stats(s) for s in out.values()]
        back = read_stats(scene_tiles(tiles, "b"))
    # One pass: each chunk of each scene has its moments taken once, for all scenes.
    graph = {}
    for s in out.values():
        graph.update(s.data.__dask_graph__())
    moments = [k for k in graph if isinstance(k, tuple) and str(k[0]).startswith("fns-moments")]
    chunks = sum(v.chunk({"band": 1, "y": 16, "x": 16}).data.npartitions for v in base.values())
    assert len(moments) == chunks
    mean, std = oracle(base)
    for found in [stats, back, *per_scene]:
        np.testing.assert_allclose(found["mean"].values, mean, rtol=1e-12)
        np.testing.assert_allclose(found["std"].values, std, rtol=1e-12)


def test_collection_stats_reused_at_inference():
    scenes, base = scenes_of(lambda v: v)
    train = quiet({"a": scenes["a"], "b": scenes["b"]}, nodata=-9999.0)
    mean, std = oracle({"a": base["a"], "b": base["b"]})
    tiles = tile_collection(train, 8, "overlap", edge="pad")
    for source in (train["a"], tiles):
        test = quiet({"c": scenes["c"]}, nodata=-9999.0, fill=None, stats=source)
        x = np.asarray(base["c"].values, np.float64)
        ok = np.isfinite(x) & (x != -9999.0)
        want = (x - mean[:, None, None]) / std[:, None, None]
        np.testing.assert_allclose(test["c"].values[ok], want[ok], rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(test["c"].fns_mean.values, mean, rtol=1e-12)


def test_explicit_stats_apply_to_every_scene(backend):
    scenes, base = scenes_of(backend)
    given = {"mean": [1.0, 2.0, 3.0], "std": [2.0, 4.0, 0.5]}
    out = quiet(list(scenes.values()), nodata=-9999.0, fill=None, stats=given)
    assert isinstance(out, list) and len(out) == 3
    m, s = np.array(given["mean"])[:, None, None], np.array(given["std"])[:, None, None]
    for got, raw in zip(out, base.values()):
        x = np.asarray(raw.values, np.float64)
        ok = np.isfinite(x) & (x != -9999.0)
        np.testing.assert_allclose(got.values[ok], ((x - m) / s)[ok], rtol=1e-6)
        np.testing.assert_array_equal(got.fns_mean.values, given["mean"])
        np.testing.assert_array_equal(got.fns_std.values, given["std"])


def test_collection_of_datasets_pools_each_variable():
    rng = np.random.default_rng(4)
    dims = ("y", "x")

    def ds(h, w, shift):
        return xr.Dataset(
            {
                "red": (dims, rng.normal(shift, 1, (h, w))),
                "nir": (dims, rng.normal(10 + shift, 3, (h, w))),
                "mask": (dims, rng.integers(0, 2, (h, w)).astype("uint8")),
            }
        )

    scenes = [ds(20, 30, 0.0), ds(25, 17, 2.0)]
    out = xflipnslide.preprocess(scenes)
    assert isinstance(out, list)
    for name in ("red", "nir"):
        pooled = np.concatenate([s[name].values.ravel() for s in scenes])
        for o in out:
            np.testing.assert_allclose(o[f"{name}_fns_mean"].values, pooled.mean(), rtol=1e-12)
            np.testing.assert_allclose(o[f"{name}_fns_std"].values, pooled.std(), rtol=1e-12)
            assert read_stats(o, name)["mean"].values == pytest.approx(pooled.mean(), rel=1e-12)
    np.testing.assert_array_equal(out[1]["mask"].values, scenes[1]["mask"].values)  # labels alone


def test_collection_warnings_name_the_scene():
    _, base = scenes_of(lambda v: v)
    with pytest.warns(xflipnslide.DataFilledWarning, match=r"scene 'b', band=red"):
        xflipnslide.preprocess(base, nodata=-9999.0)


def test_collection_containers():
    _, base = scenes_of(lambda v: v)
    one = quiet({"only": base["a"]}, nodata=-9999.0)
    alone = quiet(base["a"], nodata=-9999.0)
    assert list(one) == ["only"]
    xr.testing.assert_identical(one["only"], alone)  # a collection of one is the scene alone
    as_tuple = quiet((base["a"], base["b"]), nodata=-9999.0)
    assert isinstance(as_tuple, list) and len(as_tuple) == 2


@pytest.mark.parametrize(
    ("change", "match"),
    [
        (lambda s: s.assign_coords(band=["red", "green", "nir"]), r"labels of 'band'.*'nir'"),
        (lambda s: s.sel(band=["blue", "green", "red"]), r"labels of 'band'"),
        (lambda s: s.isel(band=[0, 1]), r"size of 'band' of the data: 3 vs 2"),
        (lambda s: s.rename(band="channel"), r"band dims of the data: \['band'\] vs \['channel'\]"),
    ],
)
def test_collection_refuses_other_bands(change, match):
    _, base = scenes_of(lambda v: v)
    scenes = dict(base, b=change(base["b"]))
    with pytest.raises(InvalidParameterError, match=r"scenes 'a' and 'b' differ in the " + match):
        xflipnslide.preprocess(scenes, nodata=-9999.0)


def test_collection_refuses_bad_input():
    _, base = scenes_of(lambda v: v)
    a = base["a"]
    with pytest.raises(InvalidParameterError, match="got no scene"):
        xflipnslide.preprocess({})
    with pytest.raises(InvalidParameterError, match=r"scene 'x' is a ndarray"):
        xflipnslide.preprocess({"a": a, "x": a.values})
    with pytest.raises(InvalidParameterError, match="is a DataArray and scene 1 a Dataset"):
        xflipnslide.preprocess([a, a.to_dataset(name="image")])
    with pytest.raises(InvalidParameterError, match="got str"):
        xflipnslide.preprocess("scene.tif")
    ds = xr.Dataset({"red": a.isel(band=0, drop=True), "nir": a.isel(band=1, drop=True)})
    with pytest.raises(InvalidParameterError, match=r"different variables.*\['red'\]"):
        xflipnslide.preprocess([ds, ds[["red"]]])


def landsat_row(row: int) -> xr.DataArray:
    """One Landsat row: the single-band B4/B3/B2 files, opened lazily as red/green/blue."""
    name = f"{SHARED}/LC08_L1TP_2240{row}_20200518_20200518_01_RT_B{{}}.TIF"
    return xflipnslide.open_image([name.format(b) for b in (4, 3, 2)], band_names=BANDS)


@pytest.mark.skipif(not os.path.isdir(SHARED), reason="needs /work/shared/data")
def test_landsat_rows_share_one_set_of_statistics():
    import rasterio

    scenes = {"224077": landsat_row(77), "224078": landsat_row(78)}
    with raise_if_dask_computes():
        out = quiet(scenes, nodata=0)
        tiles = tile_collection(out, 256)
    raw = {}
    for row in (77, 78):
        files = [
            f"{SHARED}/LC08_L1TP_2240{row}_20200518_20200518_01_RT_B{b}.TIF" for b in (4, 3, 2)
        ]
        planes = []
        for f in files:
            with rasterio.open(f) as src:
                planes.append(src.read(1))
        raw[row] = xr.DataArray(np.stack(planes), dims=("band", "y", "x"))
    mean, std = oracle(raw, nodata=0)
    stats = read_stats(tiles)
    np.testing.assert_allclose(stats["mean"].values, mean, rtol=1e-12)
    np.testing.assert_allclose(stats["std"].values, std, rtol=1e-12)
    # Each row standardised with them, on its observed pixels (a window, to keep it small).
    got = out["224078"].isel(y=slice(600, 700), x=slice(900, 1000)).values
    x = raw[78].values[:, 600:700, 900:1000].astype(np.float64)
    ok = x != 0
    want = (x - mean[:, None, None]) / std[:, None, None]
    np.testing.assert_allclose(got[ok], want[ok], rtol=1e-5, atol=1e-5)
    assert set(tiles.scene.values.tolist()) == set(scenes)


def test_lazy_stats_from_a_scene_chunked_otherwise():
    """Lazy statistics chunked along the bands unlike the data (one chunk of
    all bands against one chunk per band) are applied band by band."""
    _, base = scenes_of(lambda v: v)
    train = quiet(base["a"].chunk({"band": -1}), nodata=-9999.0, fill=None)
    test = quiet(base["b"].chunk({"band": 1}), nodata=-9999.0, fill=None, stats=train)
    mean, std = oracle({"a": base["a"]})
    x = np.asarray(base["b"].values, np.float64)
    ok = np.isfinite(x) & (x != -9999.0)
    want = (x - mean[:, None, None]) / std[:, None, None]
    np.testing.assert_allclose(test.values[ok], want[ok], rtol=1e-5, atol=1e-5)
