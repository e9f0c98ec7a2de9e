"""predict: every pixel, D4 test-time augmentation, blends, lazy graphs,
clusters, GeoTIFF out."""

from __future__ import annotations

import numpy as np
import pytest
import shapely
import xarray as xr
from hypothesis import given
from hypothesis import strategies as st
from oracle import TRANSFORM
from test_untile import blend_reference

import xflipnslide
from xflipnslide.plan import predict_plan

INVERSE = {0: 0, 1: 3, 2: 2, 3: 1, 4: 4, 5: 5, 6: 6, 7: 7}


def identity(batch):
    return batch


class Biased:
    """Not D4-equivariant and biased near tile edges: a 3x3 box filter with
    zero padding, plus a gradient along the tile's own rows, two classes."""

    def __call__(self, batch):
        pad = np.pad(batch, ((0, 0), (0, 0), (1, 1), (1, 1)))
        box = (
            sum(
                pad[:, :, 1 + dy : 1 + dy + batch.shape[2], 1 + dx : 1 + dx + batch.shape[3]]
                for dy in (-1, 0, 1)
                for dx in (-1, 0, 1)
            )
            / 9
        )
        ramp = np.linspace(0, 1, batch.shape[2], dtype=np.float32)[None, None, :, None]
        return np.concatenate([box[:, :1] + ramp, box[:, 1:2] * 2], axis=1).astype(np.float32)


@pytest.fixture(scope="module")
def small_scene():
    rng = np.random.default_rng(1)
    data = rng.random((2, 150, 170)).astype("float32")
    return xr.DataArray(
        data,
        dims=("band", "y", "x"),
        coords={"y": 1000 - 10 * np.arange(150.0), "x": 50 + 10 * np.arange(170.0)},
        attrs={"source": "test"},
    )


@pytest.mark.parametrize("tta", [None, "d4"])
@pytest.mark.parametrize("blend", ["mean", "hann", "distance", "spline"])
def test_identity_gives_the_scene_back_everywhere(small_scene, backend, tta, blend):
    scene = backend(small_scene, {"y": 60, "x": 70})
    out = scene.fns.predict(identity, tile_size=32, tta=tta, blend=blend, stride=8)
    assert out.dims == ("class", "y", "x") and out.dtype == np.float32
    assert (out.chunks is not None) == (backend.name == "dask")
    values = out.values
    assert np.isfinite(values).all()  # every pixel predicted
    np.testing.assert_allclose(values, small_scene.values, rtol=1.2e-7, atol=0)  # one rounding
    np.testing.assert_array_equal(out.x.values, small_scene.x.values)
    assert out.attrs == {"source": "test"}


def reference_origins(size: int, T: int, stride: int) -> list[int]:
    """predict's windows along one axis, as its docs say, by brute force:
    the fewest windows ``stride`` apart, centred on the axis, that put every
    pixel off a window's outermost ring (only inside one, when ``stride > T
    - 2`` leaves no grid that can)."""
    ring = 1 if stride <= T - 2 else 0
    n = 1
    while True:
        excess = (n - 1) * stride + T - size
        origins = [-(excess // 2) + k * stride for k in range(n)]
        if all(any(o + ring <= p <= o + T - 1 - ring for o in origins) for p in range(size)):
            return origins
        n += 1


def slow_reference(scene: np.ndarray, model, T: int, stride: int, tta, blend: str):
    """Per window: reflect-pad, every view, invert, average; then a weighted
    overlap-add with the blend weights."""
    h, w = scene.shape[1:]
    windows = [
        (r, c) for r in reference_origins(h, T, stride) for c in reference_origins(w, T, stride)
    ]
    pad = max(-min(r for r, _ in windows), max(r for r, _ in windows) + T - h)
    padw = max(-min(c for _, c in windows), max(c for _, c in windows) + T - w)
    xp = np.pad(scene, ((0, 0), (pad, pad), (padw, padw)), mode="reflect")
    weight = blend_reference(T, blend)
    acc = np.zeros((2, h + 2 * pad, w + 2 * padw))
    wsum = np.zeros((h + 2 * pad, w + 2 * padw))
    codes = range(8) if tta == "d4" else [0]
    for r, c in windows:
        window = xp[:, r + pad : r + pad + T, c + padw : c + padw + T]
        views = [TRANSFORM[INVERSE[k]](model(TRANSFORM[k](window)[None].copy())[0]) for k in codes]
        mean = np.mean(views, axis=0)
        acc[:, r + pad : r + pad + T, c + padw : c + padw + T] += weight * mean
        wsum[r + pad : r + pad + T, c + padw : c + padw + T] += weight
    return (acc / wsum)[:, pad : pad + h, padw : padw + w]


@pytest.mark.parametrize("tta", [None, "d4"])
def test_non_equivariant_model_matches_a_slow_reference(small_scene, backend, tta):
    model = Biased()
    scene = backend(small_scene, {"y": 50, "x": 90})
    out = scene.fns.predict(model, tile_size=32, stride=16, tta=tta, blend="hann").values
    expected = slow_reference(small_scene.values, model, 32, 16, tta, "hann")
    np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-5)
    if tta == "d4":  # TTA changes the answer of a model that is not D4-equivariant
        plain = small_scene.fns.predict(model, tile_size=32, stride=16, blend="hann").values
        assert np.abs(plain - out).max() > 1e-3


def test_torch_module_and_labels(small_scene):
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    net = torch.nn.Conv2d(2, 4, 3, padding=1)
    out = small_scene.fns.predict(net, tile_size=32, batch_size=5, tta="d4")
    assert out.sizes == {"class": 4, "y": 150, "x": 170}
    assert net.training is True  # run in eval mode, then left in the mode it was in
    labels = out.argmax("class")
    assert labels.dims == ("y", "x") and labels.notnull().all()
    with torch.no_grad():
        whole = net(torch.as_tensor(small_scene.values[None]))[0].numpy()
    one_view = small_scene.fns.predict(net, tile_size=32, blend="hann").values
    inner = (slice(None), slice(20, -20), slice(20, -20))
    seams = np.abs(one_view[inner] - whole[inner])
    assert seams.max() < 0.05 * np.abs(whole).max()  # zero-padding edges blended away


def test_stride_aoi_and_errors(small_scene):
    aoi = shapely.box(50, 1000 - 40 * 10, 50 + 40 * 10, 1000)  # the top-left 40 x 40 px
    out = small_scene.fns.predict(identity, tile_size=32, aoi=aoi).values
    assert np.isfinite(out[:, :40, :40]).all() and np.isnan(out[:, -1, -1]).all()
    with pytest.raises(xflipnslide.InvalidParameterError, match="tta must be"):
        small_scene.fns.predict(identity, tile_size=32, tta="d8")
    with pytest.raises(xflipnslide.InvalidParameterError, match="classes"):
        small_scene.fns.predict(lambda b: b[:, 0], tile_size=32)
    with pytest.raises(xflipnslide.SceneTooSmallError):
        small_scene.isel(y=slice(0, 10)).fns.predict(identity, tile_size=32)


def test_prediction_map_writes_a_cog_with_crs_and_transform(tmp_path):
    scene = xflipnslide.open_image(xflipnslide.sample_scene_path(), chunks=None).astype("float32")
    out = scene.fns.predict(identity, tile_size=64)
    path = tmp_path / "map.tif"
    out.argmax("class").astype("uint8").rio.to_raster(path, driver="COG")
    import rasterio

    with rasterio.open(path) as f:
        assert f.crs.to_epsg() == 32621
        assert f.transform == scene.rio.transform()
        assert f.read(1).shape == (560, 600)
        assert f.driver == "GTiff" and f.tags(ns="IMAGE_STRUCTURE").get("LAYOUT") == "COG"


def test_plan_tiles_stride_for_overlap():
    plan = xflipnslide.plan_tiles((1024, 1024), 256, "overlap", stride=64)
    assert len(plan) == 13 * 13 and plan.stride == 64
    assert len(xflipnslide.plan_tiles((1024, 1024), 256, "overlap")) == 49  # default unchanged
    with pytest.raises(xflipnslide.InvalidParameterError, match="divisor"):
        xflipnslide.plan_tiles((1024, 1024), 256, "overlap", stride=100)
    with pytest.raises(xflipnslide.InvalidParameterError, match="'overlap' only"):
        xflipnslide.plan_tiles((1024, 1024), 256, "flipnslide", stride=64)


def test_cli_predict_writes_a_georeferenced_map(tmp_path, capsys):
    torch = pytest.importorskip("torch")
    import rasterio

    from xflipnslide.cli import main

    torch.manual_seed(0)
    net = torch.jit.script(torch.nn.Conv2d(3, 4, 3, padding=1))
    model = tmp_path / "model.pt"
    net.save(str(model))
    src = xflipnslide.sample_scene_path()
    out = tmp_path / "pred.tif"
    argv = ["predict", src, "--model", str(model), "--out", str(out), "--tile-size", "64"]
    assert main([*argv, "--labels", "--tta", "d4", "--nodata", "0"]) == 0
    assert "wrote labels for 560 x 600 px" in capsys.readouterr().out
    with rasterio.open(out) as f:
        assert f.dtypes == ("uint8",) and f.crs.to_epsg() == 32621
        assert set(np.unique(f.read(1))) <= {0, 1, 2, 3, 255} and f.nodata == 255
    assert main(argv) == 2  # exists
    assert main([*argv, "--overwrite", "--blend", "spline"]) == 0
    with rasterio.open(out) as f:
        assert f.count == 4 and f.dtypes[0] == "float32"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.pt", "pred.tif"]


def test_predict_min_valid_skips_mostly_filled_windows(small_scene):
    import warnings

    data = small_scene.values.copy()
    data[:, :60, :60] = np.nan
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", xflipnslide.XFlipNSlideWarning)
        ready = small_scene.copy(data=data).fns.preprocess(standardize=False)
    out = ready.fns.predict(identity, tile_size=32, min_valid=0.9).values
    assert np.isnan(out[:, 10, 10]).all()  # inside the gap: no window kept
    assert np.isfinite(out[:, 100:, 100:]).all()
    with pytest.raises(xflipnslide.InvalidParameterError, match="fns_observed"):
        small_scene.fns.predict(identity, tile_size=32, min_valid=0.5)


@given(
    h=st.integers(1, 70),
    w=st.integers(1, 70),
    T=st.integers(1, 24),
    data=st.data(),
    tta=st.sampled_from([None, "d4"]),
)
def test_predict_plan_puts_every_pixel_inside_windows(h, w, T, data, tta):
    """Brute force over the scene: every pixel lies in a window; with
    ``stride <= T - 2``, every pixel lies inside some window, off its
    outermost ring; windows read no further than reflect padding reaches."""
    stride = data.draw(st.integers(1, T))
    try:
        plan = predict_plan((h, w), T, stride, tta)
    except xflipnslide.SceneTooSmallError:  # reflect padding cannot reach that far
        reach = [
            max(-o[0], o[-1] + T - n)
            for n, o in ((n, reference_origins(n, T, stride)) for n in (h, w))
        ]
        assert any(r >= n for r, n in zip(reach, (h, w)))
        return
    views = 8 if tta == "d4" else 1
    rows, cols = plan.rows[::views], plan.cols[::views]
    expected = [
        (r, c) for r in reference_origins(h, T, stride) for c in reference_origins(w, T, stride)
    ]
    assert list(zip(rows.tolist(), cols.tolist())) == expected
    assert plan.codes.tolist() == list(range(views)) * len(rows)
    covered = np.zeros((h, w), bool)
    inside = np.zeros((h, w), bool)
    for r, c in zip(rows.tolist(), cols.tolist()):
        assert -r < h and r + T - h < h and -c < w and c + T - w < w  # reflection reaches
        covered[max(r, 0) : max(r + T, 0), max(c, 0) : max(c + T, 0)] = True
        if T >= 3:
            inside[max(r + 1, 0) : max(r + T - 1, 0), max(c + 1, 0) : max(c + T - 1, 0)] = True
    assert covered.all()
    if stride <= T - 2:
        assert inside.all()
    assert len(set(zip(rows.tolist(), cols.tolist()))) == len(rows)  # no window twice
