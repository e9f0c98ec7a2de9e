"""split(), batches and the PyTorch path, on real tiles with real labels."""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr
from conftest import DATA
from labels import CLASSES, label_mask

import xflipnslide
from xflipnslide import InvalidParameterError
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
