"""Collections: many scenes, one tile set (docs/collections.md).

Expected values come from the scenes themselves (slices through the oracle's
transform table), from rioxarray's transforms with affine arithmetic and
pyproj, never from the package's own geometry helpers.
"""

from __future__ import annotations

import json
import os
import warnings

import numpy as np
import pytest
import xarray as xr
from affine import Affine
from conftest import DATA, raise_if_dask_computes
from oracle import TRANSFORM, windows

import xflipnslide
from xflipnslide import schema
from xflipnslide.collection import (
    SCENE,
    SCENES,
    check_single_scene,
    concat_tiles,
    footprints,
    is_collection,
    scene_ids,
    scene_tiles,
    tile_collection,
    untile_collection,
)

SHARED = "/work/shared/data"
needs_shared = pytest.mark.skipif(not os.path.isdir(SHARED), reason="needs /work/shared/data")


def landsat_row(row: int, folder: str = f"{DATA}/landsat8", pattern: str = "crop") -> xr.DataArray:
    """One Landsat row: the single-band B4/B3/B2 files stacked as red/green/blue."""
    name = "LC08_L1TP_2240{}_20200518_{}_B{}.{}"
    ext = "tif" if pattern == "crop" else "TIF"
    bands = [
        xflipnslide.open_image(f"{folder}/{name.format(row, pattern, b, ext)}", chunks=None).load()
        for b in (4, 3, 2)
    ]
    out = xr.concat(bands, "band").assign_coords(band=np.array(["red", "green", "blue"], object))
    return out.rio.write_crs(bands[0].rio.crs)


@pytest.fixture(scope="module")
def rows():
    return {"224077": landsat_row(77), "224078": landsat_row(78)}


def quiet(func, *args, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", xflipnslide.DataDroppedWarning)
        return func(*args, **kwargs)


def check_against_oracle(tiles, scenes, T, strategy="flipnslide"):
    """Every tile is its own scene's window under its code; windows in oracle order."""
    values = np.asarray(tiles[SCENE].values)
    image = tiles if isinstance(tiles, xr.DataArray) else tiles["image"]
    for id, scene in scenes.items():
        where = np.flatnonzero(values == id)
        x = np.asarray(scene.values)
        h, w = x.shape[-2:]
        wins = windows(h, w, T, strategy)
        assert len(where) == len(wins)
        got = np.asarray(image.values)[where]
        for k, (r, c, code, grid) in enumerate(wins):
            t = where[k]
            assert (int(tiles.row[t]), int(tiles.col[t]), int(tiles.transform[t])) == (r, c, code)
            assert tiles.grid.values[t] == grid
            np.testing.assert_array_equal(got[k], TRANSFORM[code](x[..., r : r + T, c : c + T]))


# --- tiling many scenes -----------------------------------------------------


@pytest.mark.parametrize("lazy", [False, True])
def test_each_tile_equals_its_own_scene_window(rows, lazy):
    scenes = {k: (v.chunk({"y": 70, "x": 90}) if lazy else v) for k, v in rows.items()}
    tiles = quiet(tile_collection, scenes, 64)
    assert tiles.dims == ("tile", "band", "y", "x") and tiles.dtype == np.uint16
    assert list(np.unique(tiles[SCENE].values)) == ["224077", "224078"]
    check_against_oracle(tiles, rows, 64)


def test_a_sequence_gets_positional_ids(rows):
    tiles = quiet(tile_collection, list(rows.values()), 64)
    assert scene_ids(tiles) == ["0", "1"]
    assert is_collection(tiles)


def test_a_collection_has_no_single_crs_nor_single_scene_geometry(rows):
    tiles = quiet(tile_collection, rows, 64)
    assert "spatial_ref" not in tiles.coords
    assert tiles.rio.crs is None
    assert not [k for k in tiles.attrs if k in schema.GEOMETRY_ATTRS]
    assert "grid_mapping" not in tiles.attrs
    record = json.loads(tiles.attrs[SCENES])
    assert list(record["scenes"]) == ["224077", "224078"]
    assert len(record["crs"]) == 1  # one CRS stored once for both rows
    assert tiles.attrs["AREA_OR_POINT"] == "Point"  # shared attrs stay attrs


def test_a_collection_of_one_is_the_single_scene_format(rows):
    scene = rows["224078"]
    one = quiet(tile_collection, {"r78": scene}, 64)
    plain = quiet(xflipnslide.tile, scene, 64)
    assert scene_ids(one) == ["r78"] and not is_collection(one)
    assert list(one[SCENE].values) == ["r78"] * plain.sizes["tile"]
    expected = plain.assign_attrs({SCENES: one.attrs[SCENES]})
    xr.testing.assert_identical(one.drop_vars(SCENE), expected)
    # every single-scene function takes it as it is
    np.testing.assert_array_equal(xflipnslide.untile(one).values, xflipnslide.untile(plain).values)


def test_scene_tiles_gives_back_each_scene_tile_set(rows):
    tiles = quiet(tile_collection, rows, 64)
    for id, scene in rows.items():
        back = scene_tiles(tiles, id)
        xr.testing.assert_identical(back, quiet(tile_collection, {id: scene}, 64))
        plain = quiet(xflipnslide.tile, scene, 64)
        xr.testing.assert_identical(
            back.drop_vars(SCENE).drop_attrs(deep=False), plain.drop_attrs(deep=False)
        )
        assert {k: v for k, v in back.attrs.items() if k != SCENES} == plain.attrs
        assert back.rio.crs == scene.rio.crs


def test_scene_tiles_restores_attrs_the_scenes_do_not_share(backend):
    rng = np.random.default_rng(0)
    a = xr.DataArray(rng.random((2, 70, 90), dtype="float32"), dims=("band", "y", "x"))
    b = xr.DataArray(rng.random((2, 64, 64), dtype="float32"), dims=("band", "y", "x"))
    a.attrs, b.attrs = {"sensor": "L8", "nodata": 0, "site": "x"}, {"sensor": "S2", "site": "x"}
    scenes = {"a": backend(a), "b": backend(b)}
    tiles = quiet(tile_collection, scenes, 32)
    assert tiles.attrs["site"] == "x" and "sensor" not in tiles.attrs
    for id, scene in scenes.items():
        plain = quiet(xflipnslide.tile, scene, 32)
        back = scene_tiles(tiles, id)
        assert {k: v for k, v in back.attrs.items() if k != SCENES} == plain.attrs
        np.testing.assert_array_equal(back.values, plain.values)
    assert a.attrs == {"sensor": "L8", "nodata": 0, "site": "x"}  # the input is unchanged


def test_scene_warnings_name_the_scene(rows):
    with pytest.warns(xflipnslide.DataDroppedWarning) as caught:
        tile_collection(rows, 64)
    messages = sorted(str(w.message) for w in caught)
    assert [m.split(": edge='crop'")[0] for m in messages] == ["scene '224077'", "scene '224078'"]


def test_datasets_tile_every_variable_per_scene():
    rng = np.random.default_rng(1)

    def scene(h, w, y0):
        coords = {"y": y0 - 10.0 * np.arange(h), "x": 10.0 * np.arange(w)}
        image = xr.DataArray(rng.random((3, h, w), dtype="float32"), dims=("band", "y", "x"))
        label = xr.DataArray(rng.integers(0, 4, (h, w), dtype="uint8"), dims=("y", "x"))
        return xr.Dataset({"image": image, "label": label}, coords=coords)

    scenes = {"a": scene(96, 80, 0.0), "b": scene(64, 100, 5000.0)}
    tiles = quiet(tile_collection, scenes, 32)
    assert tiles.label.dtype == np.uint8
    for name in ("image", "label"):
        assert SCENES in tiles[name].attrs
    check_against_oracle(tiles, {k: v.image for k, v in scenes.items()}, 32)
    for id, s in scenes.items():
        back = untile_collection(tiles, scene=id)
        np.testing.assert_allclose(
            back.label.values[16:-16, 16:-16], s.label.values[16:-16, 16:-16]
        )
        np.testing.assert_array_equal(back.x.values, s.x.values)


# --- untile one scene ---------------------------------------------------------


@pytest.mark.parametrize("lazy", [False, True])
def test_untile_round_trips_each_scene(rows, lazy):
    scenes = {k: (v.chunk({"y": 100}) if lazy else v) for k, v in rows.items()}
    tiles = tile_collection(scenes, 32, edge="pad")
    for id, scene in rows.items():
        back = untile_collection(tiles, scene=id)
        np.testing.assert_allclose(back.values, scene.values.astype("float32"))
        np.testing.assert_array_equal(back.y.values, scene.y.values)
        np.testing.assert_array_equal(back.x.values, scene.x.values)
        assert back.rio.crs == scene.rio.crs and SCENES not in back.attrs


def test_untile_of_the_crop_equals_the_scene_crop(rows):
    tiles = quiet(tile_collection, rows, 64)
    for id, scene in rows.items():
        h, w = scene.shape[-2:]
        oy, ox = (h - h // 64 * 64) // 2, (w - w // 64 * 64) // 2
        crop = scene.values[:, oy : oy + h // 64 * 64, ox : ox + w // 64 * 64]
        back = untile_collection(tiles, scene=id).values
        np.testing.assert_array_equal(
            back[:, oy : oy + crop.shape[1], ox : ox + crop.shape[2]], crop
        )


def test_untile_of_a_collection_needs_a_scene(rows):
    tiles = quiet(tile_collection, rows, 64)
    with pytest.raises(xflipnslide.InvalidTilesError, match=r"'224077', '224078'.*scene='224077'"):
        untile_collection(tiles)
    with pytest.raises(xflipnslide.InvalidTilesError, match="hold 2 scenes"):
        check_single_scene(tiles, "untile")
    with pytest.raises(xflipnslide.InvalidParameterError, match=r"no scene 'tokyo'.*224077"):
        scene_tiles(tiles, "tokyo")


# --- stores --------------------------------------------------------------------


@pytest.mark.parametrize("engine", ["zarr", "netcdf"])
def test_a_reopened_store_knows_every_scene(rows, tmp_path, engine):
    tiles = quiet(tile_collection, rows, 64).to_dataset(name="image")
    if engine == "zarr":
        tiles.to_zarr(tmp_path / "c.zarr")
        again = xr.open_zarr(tmp_path / "c.zarr")
    else:
        tiles.to_netcdf(tmp_path / "c.nc")
        again = xr.open_dataset(tmp_path / "c.nc")
    assert scene_ids(again) == list(rows)
    for id, scene in rows.items():
        part = scene_tiles(again, id)
        assert part.image.rio.crs == scene.rio.crs
        assert part.attrs[schema.SCENE_TRANSFORM] == list(scene.rio.transform())[:6]
        assert list(part.attrs[schema.SCENE_SHAPE]) == list(scene.shape[-2:])
        np.testing.assert_array_equal(
            untile_collection(again, scene=id).image.values,
            untile_collection(tiles, scene=id).image.values,
        )


# --- concat_tiles ----------------------------------------------------------------


def test_concat_tiles_equals_tiling_together(rows):
    a, b = (quiet(xflipnslide.tile, s, 64) for s in rows.values())
    together = quiet(tile_collection, rows, 64)
    xr.testing.assert_identical(concat_tiles([a, b], ids=list(rows)), together)
    assert scene_ids(concat_tiles([a, b])) == ["0", "1"]
    a.attrs[SCENE] = "north"
    assert scene_ids(concat_tiles([a, b])) == ["north", "1"]


def test_concat_keeps_collection_ids_and_refuses_clashes(rows):
    c = quiet(tile_collection, rows, 64)
    more = concat_tiles([c, quiet(xflipnslide.tile, rows["224077"], 64)], ids=[None, "again"])
    assert scene_ids(more) == ["224077", "224078", "again"]
    with pytest.raises(xflipnslide.InvalidTilesError, match="'224077' is in tile sets 0 and 1"):
        concat_tiles([c, c])
    renamed = concat_tiles([c, c], ids=[None, {"224077": "n2", "224078": "s2"}])
    assert scene_ids(renamed) == ["224077", "224078", "n2", "s2"]
    np.testing.assert_array_equal(
        scene_tiles(renamed, "s2").values, scene_tiles(c, "224078").values
    )
    ones = [quiet(tile_collection, {"x": s}, 64) for s in rows.values()]
    with pytest.raises(xflipnslide.InvalidTilesError, match="'x' is in tile sets 0 and 1"):
        concat_tiles(ones)


@pytest.mark.parametrize(
    ("change", "match"),
    [
        (lambda s: s.astype("float32"), r"dtype of the data: 'uint16' vs 'float32'"),
        (lambda s: s.assign_coords(band=["r", "g", "b"]), r"values of 'band'.*'red'.*'r'"),
        (lambda s: s.isel(band=[0, 1]), r"sizes of the data: \{'band': 3.* vs \{'band': 2"),
        (lambda s: s.rename("other"), r"name: None vs 'other'"),
        (lambda s: s.assign_coords(time=np.datetime64("2020-05-18")), r"coordinates"),
    ],
)
def test_scenes_that_differ_beyond_geometry_are_refused(rows, change, match):
    a, b = rows.values()
    with pytest.raises(xflipnslide.InvalidParameterError, match=match):
        tile_collection({"a": a, "b": change(b)}, 64)
    ta, tb = quiet(xflipnslide.tile, a, 64), quiet(xflipnslide.tile, change(b), 64)
    with pytest.raises(xflipnslide.InvalidTilesError, match=match):
        concat_tiles([ta, tb])


def test_tile_sets_of_other_tile_sizes_or_variables_are_refused(rows):
    a, b = rows.values()
    with pytest.raises(xflipnslide.InvalidTilesError, match=r"sizes.*'y': 64.*'y': 32"):
        concat_tiles([quiet(xflipnslide.tile, a, 64), quiet(xflipnslide.tile, b, 32)])
    da, db = a.to_dataset(name="image"), b.to_dataset(name="img")
    with pytest.raises(
        xflipnslide.InvalidParameterError, match=r"variables: \['image'\] vs \['img'\]"
    ):
        tile_collection([da, db], 64)
    with pytest.raises(xflipnslide.InvalidParameterError, match="type: 'DataArray' vs 'Dataset'"):
        tile_collection([a, db], 64)


def test_bad_collections_input_is_refused(rows):
    with pytest.raises(xflipnslide.InvalidParameterError, match="ids are strings"):
        tile_collection({1: rows["224077"]}, 64)
    with pytest.raises(xflipnslide.InvalidParameterError, match="no scene"):
        tile_collection({}, 64)
    with pytest.raises(xflipnslide.InvalidParameterError, match="list of tile sets"):
        concat_tiles(quiet(xflipnslide.tile, rows["224077"], 64))


# --- lazy and linear -------------------------------------------------------------


def small_scenes(n: int) -> dict:
    """``n`` lazy 64 x 64 scenes of different values, two chunks each."""
    return {
        f"s{i}": xr.DataArray(
            np.full((2, 64, 64), i, dtype="float32"),
            dims=("band", "y", "x"),
            coords={"band": ["a", "b"]},
        ).chunk({"y": 32})
        for i in range(n)
    }


def test_a_thousand_scenes_compute_nothing_and_the_graph_grows_linearly():
    sizes = {}
    for n in (2, 10, 100, 1000):
        scenes = small_scenes(n)
        with raise_if_dask_computes():
            tiles = tile_collection(scenes, 32)
        assert tiles.sizes["tile"] == 13 * n
        sizes[n] = len(tiles.__dask_graph__())
    one = small_scenes(1)["s0"]
    alone = len(xflipnslide.tile(one, 32).__dask_graph__())
    # per scene: the graph of its own tiles and one key of the concatenation
    assert sizes[10] - sizes[2] == 8 * (alone + 1)
    assert sizes[100] - sizes[10] == 90 * (alone + 1)
    assert sizes[1000] - sizes[100] == 900 * (alone + 1)
    assert len(one.__dask_graph__()) >= one.data.npartitions


# --- footprints ---------------------------------------------------------------


def expected_polygon(transform: Affine, r: int, c: int, T: int, project=None):
    corners = [(c, r), (c + T, r), (c + T, r + T), (c, r + T)]
    xy = [transform * p for p in corners]
    if project is not None:
        xy = [project(x, y) for x, y in xy]
    return np.array(xy)


def test_footprints_follow_each_scene_transform(rows):
    pyproj = pytest.importorskip("pyproj")
    tiles = quiet(tile_collection, rows, 64)
    gdf = footprints(tiles)
    assert list(gdf.columns) == ["scene", "tile", "row", "col", "transform", "grid", "geometry"]
    assert gdf.crs == rows["224077"].rio.crs
    assert list(gdf["tile"]) == list(range(tiles.sizes["tile"]))
    to_wgs = pyproj.Transformer.from_crs("EPSG:32621", "EPSG:4326", always_xy=True)
    wgs = footprints(tiles, "EPSG:4326", densify=1)
    assert wgs.crs == "EPSG:4326"
    for k in range(tiles.sizes["tile"]):
        scene = rows[tiles[SCENE].values[k]]
        r, c = int(tiles.row[k]), int(tiles.col[k])
        want = expected_polygon(scene.rio.transform(), r, c, 64)
        np.testing.assert_allclose(np.array(gdf.geometry[k].exterior.coords)[:4], want)
        want = expected_polygon(scene.rio.transform(), r, c, 64, to_wgs.transform)
        np.testing.assert_allclose(
            np.array(wgs.geometry[k].exterior.coords)[:4], want, rtol=0, atol=1e-9
        )
    # the two rows overlap by about 3 km on the ground
    a, b = (gdf[gdf.scene == s].union_all() for s in rows)
    assert a.intersection(b).area > 0


def test_footprints_densify_follows_curved_edges(rows):
    tiles = quiet(tile_collection, rows, 64)
    dense = footprints(tiles, "EPSG:4326", densify=4)
    corners = footprints(tiles, "EPSG:4326", densify=1)
    pts = np.array(dense.geometry[0].exterior.coords)
    assert len(pts) == 17
    np.testing.assert_allclose(pts[::4], np.array(corners.geometry[0].exterior.coords))


def test_footprints_of_one_scene_and_of_a_split(rows):
    tiles = quiet(xflipnslide.tile, rows["224078"], 32)
    gdf = footprints(tiles)
    assert "scene" not in gdf.columns and gdf.crs == rows["224078"].rio.crs
    part = quiet(xflipnslide.split, tiles, fractions={"train": 0.5, "val": 0.5}, block_size=64)
    sub = footprints(part["val"])
    assert set(sub["subset"]) == {"val"}
    np.testing.assert_allclose(
        np.array(sub.geometry.iloc[0].exterior.coords)[:4],
        expected_polygon(
            rows["224078"].rio.transform(),
            int(part["val"].row[0]),
            int(part["val"].col[0]),
            32,
        ),
    )


def test_footprints_need_crs_for_scenes_in_different_crs(rows):
    a = rows["224077"]
    other = a.rio.reproject("EPSG:3857")
    tiles = quiet(tile_collection, {"utm": a, "merc": other.astype(a.dtype)}, 64)
    with pytest.raises(xflipnslide.InvalidParameterError, match=r"different CRSs.*pass crs="):
        footprints(tiles)
    assert footprints(tiles, "EPSG:4326").crs == "EPSG:4326"
    # one scene already in crs=: its polygons are its corners, the other's densified
    gdf = footprints(tiles, a.rio.crs, densify=4)
    k = int(np.flatnonzero(tiles[SCENE].values == "utm")[0])
    want = expected_polygon(a.rio.transform(), int(tiles.row[k]), int(tiles.col[k]), 64)
    np.testing.assert_allclose(np.array(gdf.geometry[k].exterior.coords)[:-1], want)
    assert (
        len(gdf.geometry[int(np.flatnonzero(tiles[SCENE].values == "merc")[0])].exterior.coords)
        == 17
    )


# --- the package's real data (larger, not vendored) -------------------------------


@needs_shared
def test_the_full_landsat_rows_and_rmnp():
    pyproj = pytest.importorskip("pyproj")
    folder = f"{SHARED}/landsat8"
    rows = {
        str(r): landsat_row(r, folder, "20200518_01_RT").chunk({"y": 512, "x": 512})
        for r in (77, 78)
    }
    rmnp = xflipnslide.open_image(f"{SHARED}/rmnp/rmnp-rgb.tif", chunks=None).load()
    rmnp = rmnp.assign_coords(band=rows["77"].band.values).astype("uint16").chunk({"y": 200})
    scenes = {**rows, "rmnp": rmnp}
    with raise_if_dask_computes():
        tiles = quiet(tile_collection, scenes, 128)
    values = np.asarray(tiles[SCENE].values)
    rng = np.random.default_rng(0)
    for id, scene in scenes.items():
        wins = windows(*scene.shape[-2:], 128, "flipnslide")
        where = np.flatnonzero(values == id)
        for k in rng.choice(len(where), 6, replace=False):
            r, c, code, _ = wins[k]
            want = TRANSFORM[code](scene.values[:, r : r + 128, c : c + 128])
            np.testing.assert_array_equal(tiles.isel(tile=where[k]).values, want)
    with pytest.raises(xflipnslide.InvalidParameterError, match="different CRSs"):
        footprints(tiles)
    gdf = footprints(tiles, "EPSG:4326", densify=1)
    to_wgs = pyproj.Transformer.from_crs(rows["77"].rio.crs, "EPSG:4326", always_xy=True)
    k = int(np.flatnonzero(values == "78")[5])
    want = expected_polygon(
        rows["78"].rio.transform(), int(tiles.row[k]), int(tiles.col[k]), 128, to_wgs.transform
    )
    np.testing.assert_allclose(np.array(gdf.geometry[k].exterior.coords)[:4], want, atol=1e-9)
    k = int(np.flatnonzero(values == "rmnp")[0])
    want = expected_polygon(rmnp.rio.transform(), int(tiles.row[k]), int(tiles.col[k]), 128)
    np.testing.assert_allclose(np.array(gdf.geometry[k].exterior.coords)[:4], want, atol=1e-9)
    a, b = (gdf[gdf.scene == s].union_all() for s in ("77", "78"))
    assert a.intersects(b) and not a.intersects(gdf[gdf.scene == "rmnp"].union_all())


@needs_shared
def test_sentinel2_band_files_as_a_dataset_collection():
    def band(name):
        ds = xr.open_dataset(f"{SHARED}/sentinel2/{name}_band.nc", engine="scipy")
        return ds["__xarray_dataarray_variable__"].drop_vars("band").load()

    scene = xr.Dataset({b: band(b) for b in ("blue", "green", "red")})
    scenes = {
        "top": scene.isel(y=slice(0, 150)),
        "bottom": scene.isel(y=slice(60, 200), x=slice(40, None)),
    }
    tiles = quiet(tile_collection, scenes, 64)
    for name in ("blue", "red"):
        check_against_oracle(
            tiles[[name]].rename({name: "image"}), {k: v[name] for k, v in scenes.items()}, 64
        )
    for id, s in scenes.items():
        back = untile_collection(tiles, scene=id)
        h, w = s.sizes["y"] // 64 * 64, s.sizes["x"] // 64 * 64
        oy, ox = (s.sizes["y"] - h) // 2, (s.sizes["x"] - w) // 2
        crop = dict(y=slice(oy, oy + h), x=slice(ox, ox + w))
        np.testing.assert_array_equal(back.red.isel(crop).values, s.red.isel(crop).values)
        np.testing.assert_array_equal(back.x.values, s.x.values)


def test_shared_lazy_statistics_compare_without_computing_and_others_are_refused(rows):
    import dask.array as da

    mean = da.from_array(np.array([1.0, 2.0, 3.0]), chunks=3) + 1  # one lazy statistic
    scenes = {
        k: v.chunk({"y": 100}).assign_coords(fns_mean=("band", mean)) for k, v in rows.items()
    }
    with raise_if_dask_computes():
        tiles = quiet(tile_collection, scenes, 64)
    assert tiles.fns_mean.dims == ("band",)
    scenes["224078"] = rows["224078"].assign_coords(fns_mean=("band", [0.0, 0.0, 0.0]))
    scenes["224077"] = rows["224077"].assign_coords(fns_mean=("band", [1.0, 2.0, 3.0]))
    with pytest.raises(xflipnslide.InvalidParameterError, match="values of 'fns_mean'"):
        tile_collection(scenes, 64)


def test_scene_parts_parse_the_record_once_and_equal_scene_tiles(monkeypatch):
    """Linear in the scenes: one parse of the record and one sort of the ids,
    not one pass over the collection per scene."""
    from xflipnslide.collection import format
    from xflipnslide.collection.format import scene_parts

    for n in (3, 9):
        tiles = tile_collection(small_scenes(n), 32)
        calls = []
        read = format.read_record
        monkeypatch.setattr(format, "read_record", lambda obj: calls.append(1) or read(obj))
        parts = scene_parts(tiles)
        monkeypatch.undo()
        assert len(calls) == 1, (n, len(calls))
        ids = list(tiles[SCENE].values)
        for id, where, part in parts:
            assert list(where) == [k for k, s in enumerate(ids) if s == id]
            xr.testing.assert_identical(part, scene_tiles(tiles, id))
