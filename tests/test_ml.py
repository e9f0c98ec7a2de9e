"""split(), batches and the PyTorch path, on real tiles with real labels."""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr
from conftest import DATA
from labels import CLASSES, label_mask

import xflipnslide
from xflipnslide import InvalidParameterError
from xflipnslide.errors import MissingClassWarning
from xflipnslide.plan import apply_transform


@pytest.fixture(scope="module")
def labelled():
    """Real Landsat 8 RGB around the land-cover polygons, with the rasterised mask."""
    image = xflipnslide.open_image(
        f"{DATA}/landsat8/LC08_L1TP_224078_20200518_labels_area_RGB.tif", chunks=None
    ).load()
    return xr.Dataset({"image": image, "label": label_mask(image)})


def source_pixels(tiles, shape):
    """Per tile, the set of flat scene pixels it reads (reflection included)."""
    from oracle import window_sources

    w = shape[1]
    return [
        set((ys[:, None] * w + xs[None, :]).ravel().tolist())
        for ys, xs in window_sources(tiles, shape)
    ]


@pytest.mark.parametrize("edge", ["crop", "pad"])
@pytest.mark.parametrize("seed", [0, 1])
def test_split_never_shares_a_pixel(scene, edge, seed):
    tiles = scene.fns.tile(64, edge=edge)
    parts = tiles.fns.split(block_size=128, seed=seed)
    pixels = {
        name: set().union(*source_pixels(p, (560, 600))) if p.sizes["tile"] else set()
        for name, p in parts.items()
    }
    names = list(pixels)
    for i, a in enumerate(names):
        for b in names[i + 1 :]:
            assert not pixels[a] & pixels[b], (a, b)
    kept = sum(p.sizes["tile"] for p in parts.values())
    assert kept + parts["train"].attrs["fns_split_dropped"] == tiles.sizes["tile"]
    assert all(p.sizes["tile"] > 0 for p in parts.values())


def test_split_reproducible_and_fractions_near_requested(caplog):
    scene = xr.DataArray(np.zeros((1, 5120, 5120), "uint8"), dims=("band", "y", "x"))
    tiles = scene.fns.tile(256)
    with pytest.warns(xflipnslide.DataDroppedWarning, match="straddle blocks"):
        a = tiles.fns.split(seed=3)
    b = tiles.fns.split(seed=3)
    for name in a:
        np.testing.assert_array_equal(a[name].row.values, b[name].row.values)
    kept = {n: p.sizes["tile"] for n, p in a.items()}
    total = sum(kept.values())
    assert abs(kept["train"] / total - 0.8) < 0.06
    assert abs(kept["val"] / total - 0.1) < 0.04
    assert a["train"].attrs["fns_split_dropped"] < 0.3 * tiles.sizes["tile"]
    assert a["val"].attrs["fns_split"] == "val"
    c = tiles.fns.split(fractions={"fit": 0.5, "check": 0.5}, seed=3)
    assert set(c) == {"fit", "check"}


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"fractions": {"train": 0.9, "test": 0.2}}, "add up to 1"),
        ({"fractions": {"train": 1.2, "test": -0.2}}, "positive"),
        ({"block_size": 0}, "block_size must be"),
        ({"block_size": 100_000}, "fewer than"),
    ],
)
def test_split_errors(scene, kwargs, match):
    with pytest.raises(InvalidParameterError, match=match):
        scene.fns.tile(64).fns.split(**kwargs)


def test_image_and_labels_aligned_under_every_code(labelled, backend):
    tiles = backend(labelled, {"y": 200, "x": 100}).fns.tile(64)
    assert set(np.unique(tiles.transform.values).tolist()) == set(range(8))
    image, label = labelled.image.values, labelled.label.values
    assert set(np.unique(label).tolist()) == {0, *CLASSES.values()}
    t_img, t_lab = tiles.image.values, tiles.label.values
    assert tiles.label.dtype == np.uint8
    for k, (r, c, code) in enumerate(
        zip(tiles.row.values, tiles.col.values, tiles.transform.values)
    ):
        np.testing.assert_array_equal(
            t_img[k], apply_transform(image[:, r : r + 64, c : c + 64], code)
        )
        np.testing.assert_array_equal(
            t_lab[k], apply_transform(label[r : r + 64, c : c + 64], code)
        )
    # the pixels of each class keep their colour through every transform
    for cls in CLASSES.values():
        in_tiles = t_img.transpose(1, 0, 2, 3)[:, t_lab == cls]
        if in_tiles.size:
            in_scene = image[:, label == cls]
            assert set(map(tuple, in_tiles.T.tolist())) <= set(map(tuple, in_scene.T.tolist()))


def test_missing_torch_names_the_extra(monkeypatch, labelled):
    import builtins
    import sys

    real = builtins.__import__

    def fake(name, *args, **kwargs):
        if name == "torch" or name.startswith("torch."):
            raise ImportError("no torch")
        return real(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", fake)
    for mod in [m for m in sys.modules if m == "torch" or m.startswith("torch.")]:
        monkeypatch.delitem(sys.modules, mod)
    with pytest.raises(ImportError, match=r'pip install "xflipnslide\[torch\]"'):
        labelled.fns.tile(64).fns.torch_loader(8)


def test_torch_loader_batches_and_a_tiny_cnn_learns(labelled):
    torch = pytest.importorskip("torch")
    ready = labelled.assign(image=labelled.image.fns.preprocess())
    tiles = ready.fns.tile(32)
    loader = tiles.fns.torch_loader(16, label="label", shuffle=True)
    images, labels = next(iter(loader))
    assert images.shape == (16, 3, 32, 32) and images.dtype == torch.float32
    assert labels.shape == (16, 32, 32) and labels.dtype == torch.int64
    assert len(loader) == -(-tiles.sizes["tile"] // 16)  # the last partial batch is kept
    # the labels in a batch are the label tiles of the same tiles
    first = next(iter(tiles.fns.torch_loader(16, label="label")))
    np.testing.assert_array_equal(first[1].numpy(), tiles.label.values[:16])
    np.testing.assert_array_equal(first[0].numpy(), tiles.image.values[:16])

    torch.manual_seed(0)
    model = torch.nn.Sequential(
        torch.nn.Conv2d(3, 16, 3, padding=1), torch.nn.ReLU(), torch.nn.Conv2d(16, 5, 1)
    )
    opt = torch.optim.Adam(model.parameters(), lr=0.01)
    loss_fn = torch.nn.CrossEntropyLoss()
    losses = []
    for _epoch in range(3):
        for x, y in loader:
            opt.zero_grad()
            loss = loss_fn(model(x), y)
            loss.backward()
            opt.step()
            losses.append(loss.item())
    assert np.mean(losses[-5:]) < 0.5 * np.mean(losses[:5])

    # predictions on tiles stitch back into a class map on the scene's grid
    with torch.no_grad():
        logits = model(torch.as_tensor(tiles.image.values)).numpy()
    pred = tiles.image.isel(band=0, drop=True).expand_dims(cls=5, axis=1).copy(data=logits)
    stitched = pred.fns.untile(blend="hann", like=labelled)
    assert stitched.dims == ("cls", "y", "x")
    assert np.isfinite(stitched.values[:, 16:-16, 16:-16]).all()


def test_image_only_loader_and_errors(labelled):
    pytest.importorskip("torch")
    tiles = labelled.fns.tile(64)
    x = next(iter(tiles.image.fns.torch_loader(4)))
    assert tuple(x.shape) == (4, 3, 64, 64)
    with pytest.raises(InvalidParameterError, match="no variable 'mask'"):
        tiles.fns.torch_loader(4, label="mask")


def test_the_public_names_are_the_ml_functions():
    from xflipnslide import ml

    for name in ("split", "batches", "torch_loader", "tf_dataset"):
        assert getattr(xflipnslide, name) is getattr(ml, name)
        assert getattr(xr.Dataset({}).fns, name).__doc__ == getattr(ml, name).__doc__


# --- class-aware splits ---------------------------------------------------------


def disjoint_tiles_bound(tiles, cls) -> int:
    """Brute force: the most tiles holding ``cls`` that read pairwise disjoint
    pixels (up to 3), the most subsets any pixel-disjoint split can give it."""
    import itertools

    T = tiles.sizes["y"]
    lab = tiles["label"].values
    r, c = tiles.row.values, tiles.col.values
    holding = [k for k in range(lab.shape[0]) if (lab[k] == cls).any()]

    def apart(i, j):
        return r[i] + T <= r[j] or r[j] + T <= r[i] or c[i] + T <= c[j] or c[j] + T <= c[i]

    best = min(len(holding), 1)
    for k in (2, 3):
        if any(
            all(apart(i, j) for i, j in itertools.combinations(s, 2))
            for s in itertools.combinations(holding, k)
        ):
            best = k
    return best


def reached(parts, cls) -> list[str]:
    """Oracle: the subsets whose label tiles hold a pixel of ``cls``."""
    return [n for n, p in parts.items() if (p["label"].values == cls).any()]


def split_quietly(tiles, **kwargs):
    import warnings

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        parts = tiles.fns.split(**kwargs)
    missing = [str(w.message) for w in caught if w.category is MissingClassWarning]
    return parts, (missing[0] if missing else "")


def rare_labels(scene, seed=0) -> xr.DataArray:
    """Class 1 on a third of the scene, classes 2-4 in a few small patches."""
    rng = np.random.default_rng(seed)
    h, w = scene.sizes["y"], scene.sizes["x"]
    lab = np.zeros((h, w), "uint8")
    lab[:, : w // 3] = 1
    for cls, n in ((2, 6), (3, 3), (4, 1)):
        for y, x in zip(rng.integers(0, h - 12, n), rng.integers(0, w - 12, n)):
            lab[y : y + 12, x : x + 12] = cls
    return xr.DataArray(lab, dims=("y", "x"), coords={"y": scene.y, "x": scene.x})


@pytest.mark.parametrize("edge", ["crop", "pad"])
@pytest.mark.parametrize("seed", [0, 3])
def test_stratified_split_never_shares_a_pixel(scene, edge, seed):
    ds = xr.Dataset({"image": scene, "label": rare_labels(scene, seed)})
    tiles = ds.fns.tile(32, edge=edge)
    parts, _ = split_quietly(tiles, seed=seed, stratify="label", block_size=96)
    pixels = {n: set().union(*source_pixels(p, (560, 600))) for n, p in parts.items()}
    names = list(pixels)
    for i, a in enumerate(names):
        for b in names[i + 1 :]:
            assert not pixels[a] & pixels[b], (a, b)
    kept = sum(p.sizes["tile"] for p in parts.values())
    assert kept + parts["train"].attrs["fns_split_dropped"] == tiles.sizes["tile"]
    for name, p in parts.items():  # the recorded class counts are the subset's pixels
        expected = np.bincount(p["label"].values.ravel(), minlength=5).tolist()
        assert p.attrs["fns_split_class_counts"] == expected, name


@pytest.mark.parametrize("tile_size", [16, 32])
def test_stratified_split_brings_each_class_to_every_subset_the_pixels_allow(labelled, tile_size):
    """Real polygons: a class reaches as many subsets as it has pixel-disjoint
    tiles (brute force, up to 3); those that cannot reach all are named."""
    tiles = labelled.fns.tile(tile_size)
    bound = {c: disjoint_tiles_bound(tiles, c) for c in CLASSES.values()}
    for seed in range(6):
        parts, message = split_quietly(tiles, seed=seed, stratify="label", ignore_index=0)
        for c, b in bound.items():
            got = reached(parts, c)
            assert len(got) == min(3, b), (seed, c, got, b)
            assert ("train" in got) and (f"class {c} " in message) == (b < 3), (seed, c, message)


def test_plain_split_warns_when_a_class_misses_a_subset(labelled, no_compute_after_tiling):
    tiles = labelled.fns.tile(64)
    parts, message = split_quietly(tiles, seed=0)  # an integer label in memory: checked
    lacking = [c for c in range(5) if len(reached(parts, c)) < 3]
    assert lacking and all(f"class {c} " in message for c in lacking), message
    assert "stratify=" in message
    counts = [p.attrs["fns_split_class_counts"] for p in parts.values()]
    np.testing.assert_array_equal(
        np.sum(counts, 0),
        np.bincount(
            np.concatenate([p["label"].values.ravel() for p in parts.values()]), minlength=5
        ),
    )
    lazy = no_compute_after_tiling(labelled)
    parts, message = split_quietly(lazy, seed=0)  # lazy labels: not read unless asked
    assert not message and "fns_split_class_counts" not in parts["train"].attrs
    parts, message = split_quietly(lazy, seed=0, label="label", classes=5)  # asked: counted
    assert all(f"class {c} " in message for c in lacking)


@pytest.fixture
def no_compute_after_tiling():
    """Tile lazily, then fail if anything computes until the split is asked to count."""
    from conftest import raise_if_dask_computes

    def lazy(ds):
        return ds.chunk({"y": 200, "x": 112}).fns.tile(64)

    with raise_if_dask_computes(1):  # one computation: the counts split(label=...) asks for
        yield lazy


def test_split_class_options_errors(labelled):
    tiles = labelled.fns.tile(64)
    with pytest.raises(InvalidParameterError, match="name different variables"):
        tiles.fns.split(stratify="label", label="other")
    with pytest.raises(InvalidParameterError, match="reads the label variable of a Dataset"):
        tiles["image"].fns.split(stratify="label")
    with pytest.raises(InvalidParameterError, match="no variable 'mask'"):
        tiles.fns.split(stratify="mask")
    lazy = labelled.chunk({"y": 200}).fns.tile(64)
    with pytest.raises(InvalidParameterError, match="classes="):
        lazy.fns.split(stratify="label")


def test_stratified_subsets_track_the_class_shares():
    """Subsets' class shares deviate from the whole set's less than a plain
    split's do, on average over seeds (random classes of random sizes)."""
    rng = np.random.default_rng(5)
    lab = np.zeros((512, 512), "uint8")
    for cls in range(1, 6):
        for _ in range(rng.integers(2, 12)):
            y, x, s = *rng.integers(0, 480, 2), rng.integers(8, 60)
            lab[y : y + s, x : x + s] = cls
    tiles = xr.Dataset({"label": (("y", "x"), lab)}).fns.tile(32)
    total = np.bincount(tiles["label"].values.ravel(), minlength=6)

    def deviation(parts):
        shares = [np.asarray(p.attrs["fns_split_class_counts"], float) for p in parts.values()]
        return np.mean([np.abs(s / s.sum() - total / total.sum()).sum() for s in shares])

    plain = [deviation(split_quietly(tiles, seed=s)[0]) for s in range(6)]
    strat = [deviation(split_quietly(tiles, seed=s, stratify="label")[0]) for s in range(6)]
    assert np.mean(strat) < np.mean(plain), (strat, plain)


FULL_SCENE = "/work/shared/data/landsat8"


@pytest.fixture(scope="module")
def full_scene_labels():
    import os

    band = f"{FULL_SCENE}/LC08_L1TP_224078_20200518_20200518_01_RT_B2.TIF"
    if not os.path.exists(band):
        pytest.skip("the full Landsat 8 scene is not here (shared data)")
    scene = xflipnslide.open_image(band, chunks=None)
    return xr.Dataset({"label": label_mask(scene)})


def test_full_scene_plain_split_hides_classes_and_stratify_deals_them(full_scene_labels):
    """The four land-cover polygons of the full scene at 64 px tiles: dealt at
    random their blocks all went to train (seeds 0, 1, 2); stratified, every
    class reaches train and an evaluation subset in every seed, and as many
    subsets as its pixel-disjoint tiles allow."""
    tiles = full_scene_labels.fns.tile(64)
    for seed in (0, 1, 2):
        parts, message = split_quietly(tiles, seed=seed, label="label", ignore_index=0)
        assert all(reached(parts, c) == ["train"] for c in CLASSES.values()), seed
        assert all(f"class {c} " in message for c in CLASSES.values())
    bound = {c: disjoint_tiles_bound(tiles, c) for c in CLASSES.values()}
    assert bound == {1: 2, 2: 3, 3: 2, 4: 2}  # no split can give 1, 3, 4 three subsets
    for seed in range(10):
        parts, message = split_quietly(tiles, seed=seed, stratify="label", ignore_index=0)
        for c, b in bound.items():
            got = reached(parts, c)
            assert len(got) == b and "train" in got and set(got) & {"val", "test"}, (seed, c)
            assert (f"class {c} " in message) == (b < 3)


def test_full_scene_stratified_at_32_px_gives_every_coverable_class_every_subset(
    full_scene_labels,
):
    tiles = full_scene_labels.fns.tile(32)
    for seed in range(3):
        parts, message = split_quietly(tiles, seed=seed, stratify="label", ignore_index=0)
        for c in (1, 2, 3):  # water, crop, tree: each in val and test too
            assert reached(parts, c) == ["train", "val", "test"], (seed, c)
        assert len(reached(parts, 4)) == 2 and "class 4 " in message  # 81 px, 2 disjoint tiles
