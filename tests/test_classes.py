"""Classes: pixel counts, loss weights, tile labels, stratified block
assignment and class-balanced sampling, each against an oracle written here
(per-tile ``np.bincount``, ``collections.Counter``, brute force, binomial
bounds, scikit-learn)."""

from __future__ import annotations

import ast
import collections
import itertools
import math
import os

import dask
import dask.array as da
import numpy as np
import pytest
import xarray as xr
from conftest import DATA, raise_if_dask_computes
from labels import label_mask

import xflipnslide
from xflipnslide import InvalidLabelsError, InvalidParameterError
from xflipnslide._core.classes import class_counts_array
from xflipnslide.classes import class_counts, class_weights, tile_labels
from xflipnslide.ml.balance import BalancedOrder, balanced_order, tile_weights_from_counts
from xflipnslide.ml.stratify import assign_blocks

IGNORE = 255


def labelled_tiles(seed=0, n_classes=5, size=64, tile=16, ignore_share=0.1):
    """Image and uint8 label tiles of a random scene (classes 0..n-1, some
    pixels ``IGNORE``), tiled with Flip-n-Slide."""
    rng = np.random.default_rng(seed)
    p = rng.dirichlet(np.ones(n_classes) * 0.7) * (1 - ignore_share)
    values = np.append(np.arange(n_classes), IGNORE).astype("uint8")
    lab = rng.choice(values, size=(size, size), p=np.append(p, ignore_share))
    scene = xr.Dataset(
        {
            "image": (("band", "y", "x"), rng.standard_normal((2, size, size)).astype("float32")),
            "label": (("y", "x"), lab),
        },
        coords={"y": np.arange(size) * -10.0, "x": np.arange(size) * 10.0},
    )
    return scene.fns.tile(tile)


def oracle_counts(labels: np.ndarray, k: int, ignore=None) -> np.ndarray:
    """Per-tile ``np.bincount`` of the flattened labels, ignored value left out."""
    out = []
    for t in labels.reshape(labels.shape[0], -1):
        t = t[t != ignore] if ignore is not None else t
        out.append(np.bincount(t.astype(np.int64), minlength=k))
    return np.array(out)


# --- class_counts ------------------------------------------------------------


def test_class_counts_match_per_tile_bincount(backend):
    tiles = labelled_tiles()
    expected = oracle_counts(tiles["label"].values, 5, IGNORE)
    got = backend(tiles).fns.class_counts(label="label", classes=5, ignore_index=IGNORE)
    assert got.dims == ("tile", "class") and got.dtype == np.int64
    assert (got.chunks is not None) == (backend.name == "dask")
    np.testing.assert_array_equal(got.values, expected)
    np.testing.assert_array_equal(got["class"].values, np.arange(5))
    for name in ("row", "col", "transform", "grid"):
        np.testing.assert_array_equal(got[name].values, tiles[name].values)
    # the label DataArray itself gives the same
    direct = backend(tiles["label"]).fns.class_counts(classes=5, ignore_index=IGNORE)
    np.testing.assert_array_equal(direct.values, expected)
    moved = backend(tiles["label"].transpose("y", "tile", "x"))  # tile need not be first
    np.testing.assert_array_equal(class_counts(moved, classes=5, ignore_index=IGNORE), expected)


def test_class_counts_infer_classes_on_numpy_and_keep_an_ignored_class_column():
    tiles = labelled_tiles(n_classes=4)
    got = class_counts(tiles, ignore_index=IGNORE)
    np.testing.assert_array_equal(got.values, oracle_counts(tiles["label"].values, 4, IGNORE))
    # ignore_index inside the classes: its column stays, all zeros
    zero = class_counts(tiles, classes=256, ignore_index=0)
    expected = oracle_counts(tiles["label"].values, 256, 0)
    np.testing.assert_array_equal(zero.values, expected)
    assert not zero.values[:, 0].any()


def test_class_counts_on_dask_are_lazy_one_pass_and_linear_in_chunks():
    tiles = labelled_tiles().chunk({"tile": 10, "y": 8, "x": 16})
    calls = []

    def seen(block):
        calls.append(block.shape)
        return block

    lab = tiles["label"]
    lab = lab.copy(data=lab.data.map_blocks(seen, meta=np.empty((0, 0, 0), lab.dtype)))
    with raise_if_dask_computes(0):
        counts = class_counts(lab, classes=5, ignore_index=IGNORE)
    assert counts.chunks[0] == lab.chunks[0] and counts.chunks[1] == (5,)
    nchunks = lab.data.npartitions
    added = len(counts.data.__dask_graph__()) - len(lab.data.__dask_graph__())
    assert added <= 3 * nchunks
    calls.clear()
    with dask.config.set(scheduler="sync"):
        values = counts.values
    assert len(calls) == nchunks  # each label chunk read once
    np.testing.assert_array_equal(values, oracle_counts(tiles["label"].values, 5, IGNORE))


def test_class_counts_on_dask_need_classes():
    tiles = labelled_tiles().chunk({"tile": 20})
    with pytest.raises(InvalidParameterError, match=r"classes=K"):
        class_counts(tiles, ignore_index=IGNORE)


@pytest.mark.parametrize(
    ("values", "kwargs", "match"),
    [
        ([0, 1, 7], {"classes": 5}, r"\[7\] are outside the classes 0\.\.4"),
        ([0, 1, -1], {}, r"\[-1\] are negative.*ignore_index"),
        ([0, 1, -1], {"classes": 3}, r"\[-1\] are outside"),
        ([0.0, 1.0, np.nan], {"classes": 3}, "NaN"),
        ([0.0, 1.5, 2.0], {"classes": 3}, "not integers"),
    ],
)
def test_values_that_are_no_class_are_an_error_not_dropped(backend, values, kwargs, match):
    lab = xr.DataArray(np.array(values * 4).reshape(3, 2, 2), dims=("tile", "y", "x"))
    if backend.name == "dask" and "classes" not in kwargs:
        kwargs = {**kwargs, "classes": 9}
        match = r"\[-1\] are outside"
    with pytest.raises(InvalidLabelsError, match=match):  # numpy at the call, dask on compute
        class_counts(backend(lab), **kwargs).values


def test_integral_float_and_bool_labels_count_as_their_ids():
    lab = np.array([[[0, 1], [1, 2]], [[2, 2], [0, 2]]])
    as_float = class_counts(xr.DataArray(lab.astype("float32"), dims=("tile", "y", "x")))
    np.testing.assert_array_equal(as_float.values, [[1, 2, 1], [1, 0, 3]])
    as_bool = class_counts(xr.DataArray(lab > 1, dims=("tile", "y", "x")), classes=2)
    np.testing.assert_array_equal(as_bool.values, [[3, 1], [1, 3]])
    # an ignore_index the dtype cannot hold ignores nothing
    unsigned = class_counts(
        xr.DataArray(lab.astype("uint8"), dims=("tile", "y", "x")), ignore_index=-1
    )
    np.testing.assert_array_equal(unsigned.values, [[1, 2, 1], [1, 0, 3]])


def test_bad_inputs_are_typed_errors():
    tiles = labelled_tiles()
    with pytest.raises(InvalidParameterError, match=r"no variable 'mask'.*label="):
        class_counts(tiles, label="mask")
    with pytest.raises(InvalidParameterError, match="tile"):
        class_counts(xr.DataArray(np.zeros((4, 4), "uint8"), dims=("y", "x")))
    with pytest.raises(InvalidParameterError, match="classes"):
        class_counts(tiles, classes=0)
    with pytest.raises(InvalidParameterError, match="ignore_index"):
        class_counts(tiles, ignore_index=2.5)
    with pytest.raises(InvalidLabelsError, match="dtype"):
        class_counts(xr.DataArray(np.array([["a"]]), dims=("tile", "x")))


# --- class_weights -------------------------------------------------------------


def test_class_weights_balanced_formula(backend):
    tiles = labelled_tiles(seed=3, n_classes=6)
    flat = tiles["label"].values.ravel()
    n_c = np.bincount(flat[flat != IGNORE], minlength=6)
    present = n_c > 0
    expected = np.where(present, n_c.sum() / (present.sum() * np.maximum(n_c, 1)), 0)
    with raise_if_dask_computes(1):  # one pass, classes found in it
        w = class_weights(backend(tiles), ignore_index=IGNORE)
    assert w.dtype == np.float32 and w.shape == (6,)
    np.testing.assert_allclose(w, expected, rtol=1e-6)
    np.testing.assert_allclose((n_c * w).sum(), n_c.sum(), rtol=1e-5)


def test_class_weights_give_absent_classes_zero():
    lab = xr.DataArray(
        np.array([[[0, 0], [0, 1]], [[0, 0], [0, 3]]], "uint8"), dims=("tile", "y", "x")
    )
    # 6 px of class 0, 1 of 1, 0 of 2, 1 of 3: N = 8, K' = 3
    np.testing.assert_allclose(class_weights(lab), [8 / 18, 8 / 3, 0, 8 / 3], rtol=1e-6)
    np.testing.assert_allclose(
        class_weights(lab, classes=6), [8 / 18, 8 / 3, 0, 8 / 3, 0, 0], rtol=1e-6
    )


def test_class_weights_match_sklearn_balanced():
    sklearn_weights = pytest.importorskip("sklearn.utils.class_weight")
    tiles = labelled_tiles(seed=5, n_classes=7)
    flat = tiles["label"].values.ravel()
    y = flat[flat != IGNORE]
    present = np.unique(y)
    expected = sklearn_weights.compute_class_weight("balanced", classes=present, y=y)
    w = class_weights(tiles, ignore_index=IGNORE, classes=9)
    np.testing.assert_allclose(w[present], expected, rtol=1e-6)
    assert not np.delete(w, present).any()


def test_class_weights_on_real_labels_with_unlabelled_zero(backend):
    image = xflipnslide.open_image(
        f"{DATA}/landsat8/LC08_L1TP_224078_20200518_labels_area_RGB.tif", chunks=None
    ).load()
    tiles = xr.Dataset({"image": image, "label": label_mask(image)}).fns.tile(16)  # no crop
    flat = tiles["label"].values.ravel()
    n_c = np.bincount(flat[flat != 0], minlength=5)
    present = n_c > 0
    expected = np.where(present, n_c.sum() / (present.sum() * np.maximum(n_c, 1)), 0)
    w = class_weights(backend(tiles), label="label", ignore_index=0)
    np.testing.assert_allclose(w, expected, rtol=1e-6)
    assert w[0] == 0


def test_class_weights_inverse_sqrt():
    lab = xr.DataArray(np.array([[[0, 1, 1, 1, 1]]]), dims=("tile", "y", "x"))
    # n = (1, 4): sqrt (1, 2), sum 3, N = 5: w = 5 / (3 sqrt(n))
    np.testing.assert_allclose(class_weights(lab, method="inverse_sqrt"), [5 / 3, 5 / 6], rtol=1e-6)
    tiles = labelled_tiles(seed=2, n_classes=6)
    flat = tiles["label"].values.ravel()
    n_c = np.bincount(flat[flat != IGNORE], minlength=6).astype(float)
    w = class_weights(tiles, ignore_index=IGNORE, method="inverse_sqrt").astype(float)
    ok = n_c > 0
    np.testing.assert_allclose(w[ok] * np.sqrt(n_c[ok]), (w[ok] * np.sqrt(n_c[ok]))[0], rtol=1e-5)
    np.testing.assert_allclose((n_c * w).sum(), n_c.sum(), rtol=1e-5)


def test_class_weights_feed_torch_cross_entropy():
    torch = pytest.importorskip("torch")
    tiles = labelled_tiles(seed=1, n_classes=4)
    w = class_weights(tiles, ignore_index=IGNORE)
    y = tiles["label"].values.astype(np.int64)
    logits = np.random.default_rng(0).standard_normal((y.shape[0], 4, *y.shape[1:]))
    loss = torch.nn.CrossEntropyLoss(weight=torch.as_tensor(w), ignore_index=IGNORE)(
        torch.as_tensor(logits, dtype=torch.float32), torch.as_tensor(y)
    )
    # oracle: the weighted mean of -log softmax over labelled pixels
    logp = logits - np.log(np.exp(logits).sum(1, keepdims=True))
    keep = y != IGNORE
    yy = np.where(keep, y, 0)
    nll = -np.take_along_axis(logp, yy[:, None], 1)[:, 0]
    wy = w.astype(float)[yy] * keep
    assert float(loss) == pytest.approx((wy * nll).sum() / wy.sum(), rel=1e-4)


def test_class_weights_errors():
    lab = xr.DataArray(np.full((2, 2, 2), IGNORE, "uint8"), dims=("tile", "y", "x"))
    with pytest.raises(InvalidParameterError, match="no pixel is labelled"):
        class_weights(lab, ignore_index=IGNORE)
    with pytest.raises(InvalidParameterError, match="method"):
        class_weights(lab, method="focal")


# --- tile_labels ---------------------------------------------------------------


def oracle_majority(labels, ignore, fill, min_fraction=None):
    out = []
    for t in labels.reshape(labels.shape[0], -1):
        c = collections.Counter(int(v) for v in t if v != ignore)
        if not c:
            out.append(fill)
            continue
        top = max(c.values())
        best = min(k for k, v in c.items() if v == top)
        ok = min_fraction is None or top / sum(c.values()) >= min_fraction
        out.append(best if ok else fill)
    return np.array(out)


def oracle_presence(labels, ignore, k, min_fraction=None):
    out = np.zeros((labels.shape[0], k), bool)
    for i, t in enumerate(labels.reshape(labels.shape[0], -1)):
        c = collections.Counter(int(v) for v in t if v != ignore)
        for cls, v in c.items():
            out[i, cls] = min_fraction is None or v / sum(c.values()) >= min_fraction
    return out


def tie_prone_labels(seed=0):
    """Tiny 2 x 2 tiles of 3 classes and an ignored value: many ties, some
    tiles with no labelled pixel."""
    rng = np.random.default_rng(seed)
    lab = rng.choice(np.array([0, 1, 2, 9], "int8"), size=(60, 2, 2), p=[0.3, 0.3, 0.2, 0.2])
    lab[:3] = 9
    return xr.DataArray(lab, dims=("tile", "y", "x"), name="label")


@pytest.mark.parametrize("min_fraction", [None, 0.5, 0.75])
def test_tile_labels_majority_ties_to_smallest_id(backend, min_fraction):
    lab = tie_prone_labels()
    expected = oracle_majority(lab.values, 9, 9, min_fraction)
    with raise_if_dask_computes(0):
        got = tile_labels(backend(lab), ignore_index=9, classes=3, min_fraction=min_fraction)
    assert got.dims == ("tile",) and got.dtype == np.int8 and got.name == "label"
    np.testing.assert_array_equal(got.values, expected)
    assert (expected == 9).sum() >= 3


def test_tile_labels_majority_on_real_tiles(backend):
    tiles = labelled_tiles(seed=4, n_classes=3, tile=8, size=32)
    expected = oracle_majority(tiles["label"].values, IGNORE, IGNORE)
    got = tile_labels(backend(tiles), ignore_index=IGNORE, classes=3)
    assert got.dtype == np.uint8
    np.testing.assert_array_equal(got.values, expected)
    np.testing.assert_array_equal(got["row"].values, tiles["row"].values)


def test_tile_labels_fill_and_dtype():
    lab = tie_prone_labels().astype("uint8")
    # an explicit negative fill uint8 cannot hold widens to int16, values exact
    got = tile_labels(lab, ignore_index=9, fill=-1)
    assert got.dtype == np.int16
    np.testing.assert_array_equal(got.values, oracle_majority(lab.values, 9, -1))
    # no ignore_index, no min_fraction: no tile can be filled, dtype kept
    assert tile_labels(lab).dtype == np.uint8
    with pytest.raises(InvalidParameterError, match="fill=1 is a class id"):
        tile_labels(lab, ignore_index=9, fill=1)
    with pytest.raises(InvalidParameterError, match="min_fraction"):
        tile_labels(lab, min_fraction=0)
    with pytest.raises(InvalidParameterError, match="rule"):
        tile_labels(lab, rule="mode")


@pytest.mark.parametrize("min_fraction", [None, 0.3])
def test_tile_labels_presence_multi_hot(backend, min_fraction):
    lab = tie_prone_labels(seed=1)
    expected = oracle_presence(lab.values, 9, 3, min_fraction)
    with raise_if_dask_computes(0):
        got = backend(lab).fns.tile_labels(
            rule="presence", ignore_index=9, classes=3, min_fraction=min_fraction
        )
    assert got.dims == ("tile", "class") and got.dtype == bool
    np.testing.assert_array_equal(got.values, expected)


# --- stratified block assignment ---------------------------------------------------

FRACTIONS = [(0.8, 0.1, 0.1), (0.6, 0.2, 0.2), (0.5, 0.5), (0.7, 0.15, 0.15), (0.25,) * 4]


def random_histograms(rng):
    """Blocks x classes pixel counts; classes from very rare (in one or two
    blocks) to everywhere."""
    n_blocks, k = int(rng.integers(4, 150)), int(rng.integers(2, 10))
    p = np.exp(rng.uniform(np.log(1 / n_blocks), 0, k))
    return np.where(rng.random((n_blocks, k)) < p, rng.integers(1, 1000, (n_blocks, k)), 0)


def subsets_holding(hist, subset, c):
    return set(subset[hist[:, c] > 0].tolist())


def test_stratify_every_class_reaches_every_subset_when_it_has_the_blocks():
    checked = 0
    for seed in range(300):
        rng = np.random.default_rng(seed)
        hist = random_histograms(rng)
        fractions = FRACTIONS[seed % len(FRACTIONS)]
        n_sub = len(fractions)
        if hist.shape[0] < n_sub:
            continue
        res = assign_blocks(hist, fractions, seed=seed)
        assert res.subset.shape == (hist.shape[0],)
        assert set(res.subset.tolist()) == set(range(n_sub))  # no subset empty
        blocks_of = (hist > 0).sum(0)
        missing = {
            c
            for c in np.flatnonzero(blocks_of)
            if len(subsets_holding(hist, res.subset, c)) < n_sub
        }
        assert set(res.uncovered) == missing
        for c in np.flatnonzero(blocks_of >= n_sub):
            assert len(subsets_holding(hist, res.subset, c)) == n_sub, (seed, c)
            checked += 1
    assert checked > 500


def test_stratify_finds_a_cover_that_exists_in_tangled_cases():
    """Small, dense instances with a planted deal covering every class: the
    greedy pass alone misses some; the result never does."""
    for seed in range(200):
        rng = np.random.default_rng(seed)
        n_sub = int(rng.integers(2, 5))
        n_blocks = int(rng.integers(n_sub, 3 * n_sub + 3))
        planted = rng.permutation(np.arange(n_blocks) % n_sub)
        k = int(rng.integers(3, 12))
        hist = np.zeros((n_blocks, k), np.int64)
        for c in range(k):
            # one block of each planted subset, plus a few more
            chosen = [rng.choice(np.flatnonzero(planted == j)) for j in range(n_sub)]
            extra = rng.choice(n_blocks, size=int(rng.integers(0, 3)))
            hist[np.unique(np.r_[chosen, extra]), c] = rng.integers(1, 500)
        fractions = np.full(n_sub, 1 / n_sub)
        res = assign_blocks(hist, fractions, seed=seed)
        assert res.uncovered == (), seed
        for c in range(k):
            assert len(subsets_holding(hist, res.subset, c)) == n_sub, (seed, c)


def test_stratify_reports_classes_no_deal_can_cover():
    # four blocks, every three of them hold a class: with three subsets two
    # blocks share one, and the class in the other two misses it
    hist = np.array([[5, 5, 5, 0], [5, 5, 0, 5], [5, 0, 5, 5], [0, 5, 5, 5]])
    res = assign_blocks(hist, (0.4, 0.3, 0.3), seed=0)
    brute = [
        set(range(4)) - {c for c in range(4) if len(set(np.array(deal)[hist[:, c] > 0])) == 3}
        for deal in itertools.product(range(3), repeat=4)
    ]
    assert min(len(m) for m in brute) >= 1  # no deal covers all
    assert res.uncovered and set(res.uncovered) == {
        c for c in range(4) if len(subsets_holding(hist, res.subset, c)) < 3
    }
    # a class in fewer blocks than subsets is reported too
    res = assign_blocks(np.array([[3, 0], [3, 1], [3, 0], [3, 0]]), (0.5, 0.25, 0.25))
    assert res.uncovered == (1,)


def test_stratify_tracks_class_shares_and_fractions():
    abundance = np.array([1.0, 0.5, 0.2, 0.08, 0.03])
    presence = np.array([1.0, 0.7, 0.4, 0.25, 0.15])
    ours, chance = [], []
    for seed in range(40):
        rng = np.random.default_rng(seed)
        hist = np.where(
            rng.random((240, 5)) < presence,
            rng.gamma(2.0, abundance * 400, (240, 5)).astype(int) + 1,
            0,
        )
        fractions = FRACTIONS[seed % 4]
        n_sub = len(fractions)
        res = assign_blocks(hist, dict(zip("abcd", fractions)), seed=seed)
        share = hist.sum(0) / hist.sum()
        sizes = np.array([hist[res.subset == j].sum() for j in range(n_sub)]) / hist.sum()
        np.testing.assert_allclose(sizes, fractions, atol=0.05)
        # the same subset sizes dealt at random, for comparison
        counts = np.bincount(res.subset, minlength=n_sub)
        rand = rng.permutation(np.repeat(np.arange(n_sub), counts))
        for j in range(n_sub):
            mine = hist[res.subset == j].sum(0)
            other = hist[rand == j].sum(0)
            assert np.abs(mine / mine.sum() - share).max() <= 0.08
            ours.append(np.abs(mine / mine.sum() - share).mean())
            chance.append(np.abs(other / other.sum() - share).mean())
    assert np.mean(ours) < 0.4 * np.mean(chance)


def test_stratify_is_deterministic_for_a_seed_and_varies_with_it():
    hist = random_histograms(np.random.default_rng(7))
    a = assign_blocks(hist, (0.6, 0.2, 0.2), seed=3)
    b = assign_blocks(hist, (0.6, 0.2, 0.2), seed=3)
    np.testing.assert_array_equal(a.subset, b.subset)
    others = [assign_blocks(hist, (0.6, 0.2, 0.2), seed=s).subset for s in range(4, 8)]
    assert any((o != a.subset).any() for o in others)


def test_stratify_sizes_and_unlabelled_blocks():
    # no labelled pixel at all: blocks dealt by size alone, every subset gets some
    res = assign_blocks(np.zeros((10, 3), int), (0.5, 0.3, 0.2), seed=1)
    np.testing.assert_array_equal(np.bincount(res.subset), [5, 3, 2])
    # sizes given: the subsets share them, not the pixel counts
    hist = np.tile([[10, 0], [0, 10]], (20, 1))
    sizes = np.r_[np.ones(20), np.full(20, 3.0)]
    res = assign_blocks(hist, (0.5, 0.5), seed=0, sizes=sizes)
    held = np.array([sizes[res.subset == j].sum() for j in range(2)])
    np.testing.assert_allclose(held / sizes.sum(), [0.5, 0.5], atol=0.1)


def test_stratify_errors():
    hist = np.ones((5, 2), int)
    with pytest.raises(InvalidParameterError, match="add up to 1"):
        assign_blocks(hist, (0.5, 0.4))
    with pytest.raises(InvalidParameterError, match="cannot be dealt"):
        assign_blocks(np.ones((2, 2), int), (0.4, 0.3, 0.3))
    with pytest.raises(InvalidParameterError, match="non-negative integer"):
        assign_blocks(-hist, (0.5, 0.5))
    with pytest.raises(InvalidParameterError, match="sizes"):
        assign_blocks(hist, (0.5, 0.5), sizes=[1, 2])


# --- class-balanced sampling -------------------------------------------------------


def test_tile_weights_from_counts_brute_force():
    rng = np.random.default_rng(0)
    counts = rng.integers(0, 50, (40, 5)) * (rng.random((40, 5)) < 0.4)
    counts[0] = 0
    totals = counts.sum(0)
    expected = []
    for row in counts:
        inv = [totals.sum() / totals[c] for c in range(5) if row[c] > 0]
        expected.append(max(inv) if inv else 0.0)
    np.testing.assert_allclose(tile_weights_from_counts(counts), expected)
    # ignore: a column treated as unlabelled
    kept = counts.copy()
    kept[:, 2] = 0
    t2 = kept.sum(0)
    expected = [
        max((t2.sum() / t2[c] for c in range(5) if row[c] > 0), default=0.0) for row in kept
    ]
    np.testing.assert_allclose(tile_weights_from_counts(counts, ignore=2), expected)
    with pytest.raises(InvalidParameterError, match="no tile has a labelled pixel"):
        tile_weights_from_counts(np.zeros((3, 2), int))


def test_balanced_draw_frequencies_within_binomial_bounds():
    rng = np.random.default_rng(1)
    weights = rng.gamma(0.5, 1.0, 60)
    weights[[3, 17, 40]] = 0
    chunks = (7, 13, 20, 9, 11)
    order = BalancedOrder(weights, chunks, batch_size=8, seed=11)
    epochs = 300
    drawn = np.zeros(60, np.int64)
    for e in range(epochs):
        for _, idx in order.batches(e):
            np.add.at(drawn, idx, 1)
    trials = epochs * 60
    p = weights / weights.sum()
    sigma = np.sqrt(trials * p * (1 - p))
    assert (np.abs(drawn - trials * p) <= 5 * sigma + 1e-9).all()
    assert not drawn[[3, 17, 40]].any()


def simulate_feed(order, epoch, worker=0, workers=1):
    """The feed's cache: load the chunks a batch names (dropping the others),
    check every tile of every batch is loaded, count the loads."""
    bounds = np.concatenate([[0], np.cumsum(order.chunks)])
    cache, loads, batches = set(), collections.Counter(), []
    for needs, idx in order.batches(epoch, worker, workers):
        if needs:
            for c in set(needs) - cache:
                loads[c] += 1
            cache = set(needs)
        owners = np.searchsorted(bounds, idx, side="right") - 1
        assert set(owners.tolist()) <= cache
        batches.append(idx)
    return loads, batches


def test_balanced_order_reads_each_chunk_once_and_only_drawn_chunks():
    rng = np.random.default_rng(2)
    chunks = tuple(int(c) for c in rng.integers(3, 12, 30))
    weights = rng.gamma(0.3, 1.0, sum(chunks))
    weights[: sum(chunks[:5])] = 0  # the first five chunks can never be drawn
    order = BalancedOrder(weights, chunks, batch_size=16, seed=0, buffer=40)
    bounds = np.concatenate([[0], np.cumsum(chunks)])
    for epoch in range(5):
        loads, batches = simulate_feed(order, epoch)
        assert max(loads.values()) == 1
        drawn = np.concatenate(batches)
        assert drawn.size == sum(chunks)  # n_draws defaults to the number of tiles
        assert all(b.size == 16 for b in batches[:-1])
        assert len(batches) == len(order) == math.ceil(drawn.size / 16)
        assert set(loads) == set((np.searchsorted(bounds, drawn, side="right") - 1).tolist())
        assert not set(loads) & set(range(5))


def test_balanced_order_is_reproducible_per_seed_and_epoch():
    weights = np.random.default_rng(3).random(50)
    a = BalancedOrder(weights, (10, 20, 20), batch_size=7, seed=5)
    b = BalancedOrder(weights, (10, 20, 20), batch_size=7, seed=5)
    run = lambda o, e: np.concatenate([idx for _, idx in o.batches(e)])  # noqa: E731
    np.testing.assert_array_equal(run(a, 0), run(b, 0))
    assert not np.array_equal(run(a, 0), run(a, 1))
    c = BalancedOrder(weights, (10, 20, 20), batch_size=7, seed=6)
    assert not np.array_equal(run(a, 0), run(c, 0))


def test_balanced_order_workers_share_one_epoch():
    weights = np.random.default_rng(4).random(90)
    chunks = (10,) * 9
    order = BalancedOrder(weights, chunks, batch_size=8, seed=1, buffer=20, drop_last=False)
    single = np.sort(np.concatenate([idx for _, idx in order.batches(2)]))
    parts, seen = [], collections.Counter()
    n_batches = 0
    for w in range(3):
        loads, batches = simulate_feed(order, 2, w, 3)
        seen.update(loads)
        parts.extend(batches)
        n_batches += len(batches)
    assert max(seen.values()) == 1  # no chunk read by two workers
    np.testing.assert_array_equal(np.sort(np.concatenate(parts)), single)
    assert order.count(3, epoch=2) == n_batches


def test_balanced_order_n_draws_drop_last_and_function():
    weights = np.array([1.0, 2.0, 0.0, 1.0, 4.0, 0.0])
    order = BalancedOrder(weights, (3, 3), batch_size=4, seed=0, n_draws=10, drop_last=True)
    batches = [idx for _, idx in order.batches(0)]
    assert [b.size for b in batches] == [4, 4] and len(order) == 2
    wins = balanced_order(weights, chunks=(3, 3), seed=0, epoch=0, n_draws=10)
    assert sum(t.size for _, t in wins) == 10
    assert not {2, 5} & set(np.concatenate([t for _, t in wins]).tolist())
    chunk_lists = [c for cs, _ in wins for c in cs]
    assert len(chunk_lists) == len(set(chunk_lists))
    with pytest.raises(InvalidParameterError, match="not all 0"):
        BalancedOrder(np.zeros(3), (3,), batch_size=2)
    with pytest.raises(InvalidParameterError, match="chunks hold"):
        BalancedOrder(np.ones(3), (2,), batch_size=2)
    with pytest.raises(InvalidParameterError, match="non-negative"):
        BalancedOrder(np.array([1.0, -1.0]), (2,), batch_size=2)


def test_balanced_weights_from_counts_draw_rare_classes_more():
    # class 0 everywhere, class 1 on the left half, class 2 in one 8 x 8 patch
    lab = np.zeros((64, 64), "uint8")
    lab[:, :32] = 1
    lab[40:48, 40:48] = 2
    scene = xr.Dataset({"label": (("y", "x"), lab)})
    tiles = scene.fns.tile(16)
    counts = class_counts(tiles, classes=3).values
    weights = tile_weights_from_counts(counts)
    order = BalancedOrder(weights, (tiles.sizes["tile"],), batch_size=16, seed=0)
    drawn = np.concatenate([idx for e in range(50) for _, idx in order.batches(e)])
    with_rare = counts[:, 2] > 0
    # oracle: the chance a draw holds class 2 is the weight share of its tiles,
    # each tile weighing N / n_c of its rarest class (n_c over the tile set)
    mine = oracle_counts(tiles["label"].values, 3)
    totals = mine.sum(0)
    w = [max(totals.sum() / totals[c] for c in range(3) if row[c]) for row in mine]
    p_rare = np.sum(np.array(w)[with_rare]) / np.sum(w)
    observed = with_rare[drawn].mean()
    sigma = math.sqrt(p_rare * (1 - p_rare) / drawn.size)
    assert abs(observed - p_rare) <= 5 * sigma
    assert observed > 3 * with_rare.mean()


# --- layers --------------------------------------------------------------------


def imported_modules(module) -> set[str]:
    with open(module.__file__) as f:
        tree = ast.parse(f.read())
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


def test_layers_do_not_leak():
    from xflipnslide import classes
    from xflipnslide._core import classes as _classes
    from xflipnslide.ml import balance as _balance
    from xflipnslide.ml import stratify as _stratify

    assert not imported_modules(_classes) & {"xarray"}
    assert not imported_modules(_stratify) & {"xarray", "dask"}
    assert not imported_modules(_balance) & {"xarray", "dask"}
    assert not imported_modules(classes) & {"dask"}
    assert os.path.basename(classes.__file__) == "classes.py"


def test_dask_matches_numpy_for_any_chunking():
    tiles = labelled_tiles(seed=8)
    lab = tiles["label"].data
    expected = oracle_counts(lab, 5, IGNORE)
    for chunks in [(1, 16, 16), (85, 3, 5), (17, 16, 1)]:
        x = da.from_array(lab, chunks=chunks)
        np.testing.assert_array_equal(class_counts_array(x, 5, IGNORE).compute(), expected)


def test_feeds_yield_tile_labels_instead_of_masks():
    """Chip classification: a (tile,) class per tile, fed in place of the mask."""
    pytest.importorskip("torch")
    rng = np.random.default_rng(3)
    image = xr.DataArray(rng.random((2, 128, 128), dtype="float32"), dims=("band", "y", "x"))
    mask = xr.DataArray(rng.integers(0, 3, (128, 128)).astype("uint8"), dims=("y", "x"))
    tiles = xr.Dataset({"image": image, "label": mask}).fns.tile(32)
    tiles["chip_class"] = tiles.fns.tile_labels(label="label")
    seen = {}
    for _, y, meta in tiles.fns.torch_loader(8, label="chip_class", metadata=True):
        assert y.shape == (len(meta["tile"]),)
        for k, c in zip(meta["tile"].tolist(), y.tolist()):
            seen[k] = c
    assert sorted(seen) == list(range(tiles.sizes["tile"]))
    for k, y in seen.items():
        counts = np.bincount(tiles["label"].values[k].ravel(), minlength=3)
        assert y == int(np.argmax(counts))  # ties go to the smallest id, as argmax does
