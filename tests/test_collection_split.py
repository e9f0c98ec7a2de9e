"""split of a collection: subsets ground-disjoint where scenes overlap, in one
CRS or several, and whole scenes with by="scene" (docs/collections.md).

The oracle places every tile on the ground from its own scene's rioxarray
transform (affine arithmetic, pyproj for other CRSs) and shapely, never with
the package's geometry helpers.
"""

from __future__ import annotations

import os
import warnings

import numpy as np
import pytest
import xarray as xr
from conftest import raise_if_dask_computes
from test_collection import SHARED, landsat_row, needs_shared

import xflipnslide
from xflipnslide import EmptySubsetError, InvalidParameterError
from xflipnslide.collection import scene_ids

shapely = pytest.importorskip("shapely")
pyproj = pytest.importorskip("pyproj")


def quiet_split(tiles, **options):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", xflipnslide.DataDroppedWarning)
        return xflipnslide.split(tiles, **options)


def source_range(start: int, T: int, n: int) -> tuple[int, int]:
    """The source pixels a window ``[start, start + T)`` reads from a side of
    ``n`` pixels, reflect-padded as numpy's ``np.pad(mode="reflect")``."""
    i = np.arange(start, start + T)
    i = np.where(i < 0, -i, i)
    i = np.where(i >= n, 2 * (n - 1) - i, i)
    return int(i.min()), int(i.max()) + 1


def ground(scene: xr.DataArray, r: int, c: int, T: int, to=None, k: int = 32):
    """The polygon of the pixels window ``(r, c)`` of side ``T`` reads from
    ``scene``, in its CRS or through the pyproj transformer ``to``
    (densified, ``k`` points per edge)."""
    (r0, r1), (c0, c1) = source_range(r, T, scene.sizes["y"]), source_range(c, T, scene.sizes["x"])
    t = np.arange(k) / k
    u = c0 + (c1 - c0) * np.concatenate([t, np.ones(k), 1 - t, np.zeros(k)])
    v = r0 + (r1 - r0) * np.concatenate([np.zeros(k), t, np.ones(k), 1 - t])
    a = scene.rio.transform()
    x, y = a.a * u + a.b * v + a.c, a.d * u + a.e * v + a.f
    if to is not None:
        x, y = to.transform(x, y)
    return shapely.Polygon(np.stack([x, y], 1))


def subset_polygons(parts, scenes, T, crs):
    """Subset name -> polygons of its tiles, each from its own scene, in ``crs``."""
    move = {
        k: pyproj.Transformer.from_crs(v.rio.crs, crs, always_xy=True) if v.rio.crs != crs else None
        for k, v in scenes.items()
    }
    out = {}
    for name, part in parts.items():
        polys = []
        for s, r, c in zip(part["scene"].values, part.row.values, part.col.values):
            polys.append(ground(scenes[str(s)], int(r), int(c), T, move[str(s)]))
        out[name] = polys
    return out


def assert_ground_disjoint(polys: dict, tolerance: float = 0.0):
    """No tile of one subset shares ground (a positive area) with a tile of another."""
    names = list(polys)
    for i, a in enumerate(names):
        tree = shapely.STRtree(polys[a])
        for b in names[i + 1 :]:
            for p in polys[b]:
                for q in tree.query(p):
                    area = p.intersection(polys[a][q]).area
                    assert area <= tolerance, (a, b, area)


def assert_counts_reported(parts, tiles):
    ids = scene_ids(tiles)
    total = sum(p.sizes["tile"] for p in parts.values())
    first = next(iter(parts.values()))
    assert total + first.attrs["fns_split_dropped"] == tiles.sizes["tile"]
    for part in parts.values():
        values = list(part["scene"].values)
        assert part.attrs["fns_split_scene_tiles"] == [values.count(i) for i in ids]


@pytest.fixture(scope="module")
def rows():
    return {"224077": landsat_row(77), "224078": landsat_row(78)}


def test_overlapping_rows_split_without_sharing_ground(rows):
    top = rows["224077"].rio.bounds()[1]
    assert top < rows["224078"].rio.bounds()[3]  # the two crops overlap by about 3 km
    tiles = xflipnslide.tile(rows, 32, edge="pad")
    parts = quiet_split(tiles, seed=0, block_size=64)
    crs = rows["224077"].rio.crs
    polys = subset_polygons(parts, rows, 32, crs)
    assert_ground_disjoint(polys)
    assert_counts_reported(parts, tiles)
    for part in parts.values():
        assert part.attrs["fns_split_by"] == "block" and all(part.attrs["fns_split_scene_tiles"])
    # splitting each scene alone, as before collections, shares ground between subsets
    alone = {}
    for id in rows:
        one = quiet_split(xflipnslide.scene_tiles(tiles, id), seed=0, block_size=64)
        for name, part in one.items():
            alone.setdefault(name, []).extend(subset_polygons({name: part}, rows, 32, crs)[name])
    with pytest.raises(AssertionError):
        assert_ground_disjoint(alone)


def test_scenes_in_another_crs_are_compared_on_the_ground(rows):
    other = rows["224078"].rio.reproject("EPSG:4326")
    scenes = {"utm": rows["224077"], "wgs": other.astype(rows["224077"].dtype)}
    tiles = xflipnslide.tile(scenes, 32)
    parts = quiet_split(tiles, seed=3, block_size=64, fractions={"train": 0.6, "test": 0.4})
    polys = subset_polygons(parts, scenes, 32, rows["224077"].rio.crs)
    assert_ground_disjoint(polys)
    assert_counts_reported(parts, tiles)
    per_scene = np.array([p.attrs["fns_split_scene_tiles"] for p in parts.values()])
    assert (per_scene > 0).all()  # both scenes reach both subsets


def test_the_same_seed_gives_the_same_split_and_others_differ(rows):
    tiles = xflipnslide.tile(rows, 32)
    a, b, c = (quiet_split(tiles, seed=s, block_size=64) for s in (1, 1, 2))
    assert all((a[k].tile.values == b[k].tile.values).all() for k in a)
    assert any(a[k].sizes["tile"] != c[k].sizes["tile"] for k in a) or any(
        (a[k].row.values != c[k].row.values).any() for k in a
    )


def far_scene(rng, x0: float, y0: float, size: int = 96) -> xr.DataArray:
    coords = {"y": y0 - 30.0 * np.arange(size), "x": x0 + 30.0 * np.arange(size)}
    data = rng.random((1, size, size)).astype("float32")
    out = xr.DataArray(data, dims=("band", "y", "x"), coords={"band": [1], **coords})
    return out.rio.write_crs("EPSG:32621")


def test_by_scene_keeps_overlapping_scenes_together_and_drops_nothing():
    rng = np.random.default_rng(0)
    scenes = {
        "a": far_scene(rng, 500_000.0, 7_000_000.0),
        "b": far_scene(rng, 501_500.0, 7_000_000.0),  # overlaps a by 46 columns
        "c": far_scene(rng, 600_000.0, 7_000_000.0),
        "d": far_scene(rng, 700_000.0, 7_000_000.0),
        "e": far_scene(rng, 800_000.0, 7_000_000.0),
    }
    tiles = xflipnslide.tile(scenes, 32)
    with warnings.catch_warnings():
        warnings.simplefilter("error", xflipnslide.DataDroppedWarning)
        parts = xflipnslide.split(tiles, by="scene", seed=0)
    home = {}
    for name, part in parts.items():
        assert part.attrs["fns_split_by"] == "scene" and part.attrs["fns_split_dropped"] == 0
        for s in set(part["scene"].values):
            home.setdefault(str(s), set()).add(name)
    assert all(len(v) == 1 for v in home.values()) and set(home) == set(scenes)
    assert home["a"] == home["b"]
    assert_counts_reported(parts, tiles)
    assert_ground_disjoint(subset_polygons(parts, scenes, 32, scenes["a"].rio.crs))
    with pytest.raises(EmptySubsetError, match=r"4 group.*5 subsets"):
        xflipnslide.split(tiles, by="scene", fractions=dict.fromkeys("vwxyz", 0.2))


def test_by_scene_needs_a_collection_and_by_is_checked(rows):
    one = xflipnslide.tile(rows["224077"], 32)
    with pytest.raises(InvalidParameterError, match=r"by=.scene.*one scene"):
        xflipnslide.split(one, by="scene")
    with pytest.raises(InvalidParameterError, match="by must be 'block'"):
        xflipnslide.split(one, by="tile")


def test_scenes_without_a_transform_or_mixing_crs_and_none_are_refused(rows):
    row = rows["224077"]
    bare = xr.DataArray(row.values, dims=row.dims, coords={"band": row.band.values})
    tiles = xflipnslide.tile({"bare": bare, "again": bare + 1}, 32)
    with pytest.raises(InvalidParameterError, match="'bare' records no transform"):
        xflipnslide.split(tiles)
    no_crs = rows["224078"].drop_vars("spatial_ref")
    no_crs.attrs.pop("grid_mapping", None)
    tiles = xflipnslide.tile({"crs": rows["224077"], "none": no_crs}, 32)
    with pytest.raises(InvalidParameterError, match=r"\['none'\] have no CRS"):
        xflipnslide.split(tiles)


def labelled(rng, x0: float, rare: bool) -> xr.Dataset:
    image = far_scene(rng, x0, 7_000_000.0, 192)
    label = np.zeros((192, 192), "uint8")
    label[:, 96:] = 1
    if rare:
        label[20:60, 20:60] = 2
        label[130:170, 130:170] = 2
        label[20:60, 130:170] = 2
    lab = xr.DataArray(label, dims=("y", "x"), coords={"y": image.y, "x": image.x})
    return xr.Dataset({"image": image, "label": lab})


def test_a_stratified_collection_split_reaches_every_class_and_stays_disjoint():
    rng = np.random.default_rng(1)
    scenes = {"a": labelled(rng, 500_000.0, True), "b": labelled(rng, 502_000.0, False)}
    tiles = xflipnslide.tile(scenes, 32)
    parts = quiet_split(tiles, seed=0, stratify="label", block_size=64, classes=3)
    for part in parts.values():
        present = np.unique(part["label"].values)
        assert set(present.tolist()) == {0, 1, 2}
        want = np.bincount(part["label"].values.ravel(), minlength=3).tolist()
        assert part.attrs["fns_split_class_counts"] == want
    images = {k: v["image"] for k, v in scenes.items()}
    assert_ground_disjoint(subset_polygons(parts, images, 32, images["a"].rio.crs))


def test_a_lazy_collection_splits_without_computing(rows):
    lazy = {k: v.chunk({"y": 64}) for k, v in rows.items()}
    with raise_if_dask_computes():
        tiles = xflipnslide.tile(lazy, 32)
        parts = quiet_split(tiles, seed=0, block_size=64)
    assert all(part.chunks is not None for part in parts.values())


@needs_shared
def test_the_full_landsat_rows_and_rmnp_split_ground_disjoint():
    folder = f"{SHARED}/landsat8"
    scenes = {
        str(r): landsat_row(r, folder, "20200518_01_RT").chunk({"y": 1024, "x": 1024})
        for r in (77, 78)
    }
    rmnp = xflipnslide.open_image(f"{SHARED}/rmnp/rmnp-rgb.tif")
    scenes["rmnp"] = rmnp.assign_coords(band=scenes["77"].band.values).astype("uint16")
    assert os.path.isdir(SHARED)
    with raise_if_dask_computes():
        tiles = xflipnslide.tile(scenes, 128)
        parts = quiet_split(tiles, seed=0)
    wgs = "EPSG:4326"
    polys = subset_polygons(parts, scenes, 128, pyproj.CRS(wgs))
    # in degrees: the oracle's densified edges differ from the split's by far less
    assert_ground_disjoint(polys, tolerance=1e-12)
    assert_counts_reported(parts, tiles)
    per_scene = np.array([p.attrs["fns_split_scene_tiles"] for p in parts.values()])
    assert (per_scene[:, :2] > 0).all()  # both Landsat rows reach every subset


def test_a_split_subset_keeps_its_report_through_a_store(rows, tmp_path):
    pytest.importorskip("geopandas")
    tiles = xflipnslide.tile(rows, 32)
    part = quiet_split(tiles, seed=0, block_size=64)["val"]
    xflipnslide.to_zarr(part, tmp_path / "val.zarr")
    back = xflipnslide.open_tiles(tmp_path / "val.zarr")
    values = list(part["scene"].values)
    assert back["image"].attrs["fns_split_scene_tiles"] == [values.count(i) for i in rows]
    frame = xflipnslide.footprints(back)
    assert set(frame["subset"]) == {"val"} and list(frame["scene"]) == values


def _boxes_scene(i: int, crs: str = "EPSG:32633") -> xr.DataArray:
    """A 96 x 128 px scene of a mosaic five scenes wide, overlapping its neighbours."""
    import rioxarray  # noqa: F401  (registers .rio)

    h, w = 96, 128
    x0, y0 = 4e5 + (i % 5) * 100 * 30.0, 5e6 - (i // 5) * 80 * 30.0
    scene = xr.DataArray(
        np.zeros((1, h, w), "uint8"),
        dims=("band", "y", "x"),
        coords={"y": y0 - 30.0 * np.arange(h), "x": x0 + 30.0 * np.arange(w)},
        name="v",
    )
    return scene.rio.write_crs(crs)


def test_collection_split_reads_the_record_a_fixed_number_of_times(monkeypatch):
    """No per-scene pass over the whole collection (its record parsed once per
    scene made split quadratic in the scenes: 54 s for 1 000 scenes)."""
    from xflipnslide.collection import format
    from xflipnslide.ml import ground

    counts = []
    for n in (4, 12):
        tiles = xflipnslide.tile({f"s{i}": _boxes_scene(i) for i in range(n)}, 32)
        calls = []
        read = format.read_record

        def counting(obj, read=read, calls=calls):
            calls.append(1)
            return read(obj)

        monkeypatch.setattr(format, "read_record", counting)
        monkeypatch.setattr(ground, "read_record", counting, raising=False)
        parts = quiet_split(tiles, fractions={"a": 0.5, "b": 0.5}, block_size=64)
        monkeypatch.undo()
        assert sum(p.sizes["tile"] for p in parts.values()) <= tiles.sizes["tile"]
        counts.append(len(calls))
    assert counts[0] == counts[1], counts


def test_the_sweep_finds_the_pairs_a_pairwise_loop_finds():
    from xflipnslide.ml.ground import _meet, _pairs

    rng = np.random.default_rng(3)
    for pad in (0.0, 1e-9, 0.5):
        lo = rng.integers(0, 40, (300, 2)).astype(float)
        boxes = np.concatenate([lo, lo + rng.integers(0, 6, (300, 2))], axis=1)[:, [0, 1, 2, 3]]
        boxes[::17] = np.nan  # scenes without tiles meet none
        key = rng.integers(0, 3, 300)
        want = [
            (i, j)
            for i in range(300)
            for j in range(i + 1, 300)
            if key[i] == key[j]
            and not np.isnan(boxes[[i, j]]).any()
            and _meet(boxes[i], boxes[j], pad)
        ]
        assert _pairs(boxes, pad, key) == want
