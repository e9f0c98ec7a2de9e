"""Collections through the outputs: tile stores, chips, footprint plots, the CLI, STAC.

Expected values come from the scenes themselves (rioxarray's transforms with
affine arithmetic, rasterio reading the files back), never from the
package's own geometry helpers.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import xarray as xr
from conftest import DATA

import xflipnslide
from xflipnslide import schema
from xflipnslide.collection import SCENE, scene_ids, scene_tiles, tile_collection


def landsat_row(row: int) -> xr.DataArray:
    """One vendored Landsat row: the B4/B3/B2 files stacked as red/green/blue."""
    files = [f"{DATA}/landsat8/LC08_L1TP_2240{row}_20200518_crop_B{b}.tif" for b in (4, 3, 2)]
    bands = [xflipnslide.open_image(f, chunks=None).load() for f in files]
    out = xr.concat(bands, "band").assign_coords(band=np.array(["red", "green", "blue"], object))
    return out.rio.write_crs(bands[0].rio.crs)


@pytest.fixture(scope="module")
def scenes():
    """Two scenes in different CRSs: row 77 in EPSG:32621 and row 78 in EPSG:4326."""
    utm = landsat_row(77)
    geo = landsat_row(78).rio.reproject("EPSG:4326")
    return {"utm": utm, "geo": geo.astype(utm.dtype)}


def quiet(func, *args, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", xflipnslide.DataDroppedWarning)
        return func(*args, **kwargs)


@pytest.fixture(scope="module")
def tiles(scenes):
    return quiet(tile_collection, scenes, 64)


# --- tile stores -----------------------------------------------------------------


def test_a_collection_round_trips_through_a_tile_store(scenes, tiles, tmp_path):
    path = xflipnslide.to_zarr(tiles, tmp_path / "c.zarr")
    for again in (xflipnslide.open_tiles(path), xr.open_zarr(path)):
        assert scene_ids(again) == ["utm", "geo"]
        assert again[SCENE].values.tolist() == tiles[SCENE].values.tolist()
        for id, scene in scenes.items():
            want, got = scene_tiles(tiles, id), scene_tiles(again, id)
            assert got.image.rio.crs == scene.rio.crs
            np.testing.assert_allclose(
                got.attrs[schema.SCENE_TRANSFORM], list(scene.rio.transform())[:6], rtol=1e-12
            )
            assert got.attrs[schema.SCENE_TRANSFORM] == want.attrs[schema.SCENE_TRANSFORM]
            np.testing.assert_array_equal(got.image.values, want.values)
            np.testing.assert_array_equal(got.row.values, want.row.values)
            np.testing.assert_array_equal(got.col.values, want.col.values)
    # through the accessor too
    assert xflipnslide.open_tiles(tiles.fns.to_zarr(tmp_path / "d.zarr")).sizes == dict(
        tile=tiles.sizes["tile"], band=3, y=64, x=64
    )


def test_to_zarr_checks_every_scene_of_a_collection(scenes, tiles, tmp_path):
    # a tile of "geo" moved below its own scene: only that scene's shape tells
    k = int(np.flatnonzero(tiles[SCENE].values == "geo")[0])
    rows = tiles.row.values.copy()
    rows[k] = scenes["geo"].sizes["y"]
    bad = tiles.assign_coords(row=("tile", rows))
    with pytest.raises(xflipnslide.InvalidTilesError):
        xflipnslide.to_zarr(bad, tmp_path / "bad.zarr")
    assert not (tmp_path / "bad.zarr").exists()


# --- chips -----------------------------------------------------------------------


def test_geotiff_chips_of_a_collection_carry_their_own_scene_geometry(scenes, tiles, tmp_path):
    import csv
    import json

    import rasterio
    from affine import Affine

    out = xflipnslide.export_chips(tiles, tmp_path / "chips")
    with open(f"{out}/index.csv") as f:
        index = list(csv.DictReader(f))
    n = tiles.sizes["tile"]
    assert len(index) == n
    width = len(str(n - 1))
    seen = set()
    for k, entry in enumerate(index):
        scene_id = str(tiles[SCENE].values[k])
        assert entry["scene"] == scene_id
        assert entry["file"] == f"images/{k:0{width}d}_{scene_id}.tif"
        scene = scenes[scene_id]
        r, c, code = int(tiles.row[k]), int(tiles.col[k]), int(tiles.transform[k])
        window = scene.rio.transform() * Affine.translation(c, r)  # the window's origin
        corners = [window * (u, v) for u, v in ((0, 0), (64, 0), (64, 64), (0, 64))]
        xs, ys = zip(*corners)
        with rasterio.open(f"{out}/{entry['file']}") as src:
            assert src.crs == scene.rio.crs
            left, bottom, right, top = src.bounds  # as the transform orders them
            np.testing.assert_allclose(
                (min(left, right), min(bottom, top), max(left, right), max(bottom, top)),
                (min(xs), min(ys), max(xs), max(ys)),
                rtol=1e-12,
            )
            # a D4 tile's chip covers the same four corners, in its own order
            got = sorted(src.transform * (u, v) for u, v in ((0, 0), (64, 0), (64, 64), (0, 64)))
            np.testing.assert_allclose(got, sorted(corners), rtol=1e-12)
            if code == 0:  # an identity tile: the chip's transform is its window's
                np.testing.assert_allclose(tuple(src.transform)[:6], tuple(window)[:6], rtol=1e-12)
            # the chip's pixels are the tile's
            np.testing.assert_array_equal(src.read(), tiles.isel(tile=k).values)
        seen.add((scene_id, code == 0))
    assert {s for s, _ in seen} == {"utm", "geo"}
    with open(f"{out}/fns_export.json") as f:
        meta = json.load(f)
    assert meta["crs"] is None
    for id, scene in scenes.items():
        entry = meta["scenes"][id]
        assert entry["count"] == int((tiles[SCENE].values == id).sum())
        assert rasterio.crs.CRS.from_wkt(entry["crs"]) == scene.rio.crs
        assert entry["scene_shape"] == list(scene.shape[-2:])


def test_a_scene_id_that_is_no_file_name_is_refused_before_writing(scenes, tmp_path):
    tiles = quiet(tile_collection, {"a/b": scenes["utm"], "c": scenes["geo"]}, 64)
    with pytest.raises(xflipnslide.InvalidParameterError, match="file name"):
        xflipnslide.export_chips(tiles, tmp_path / "chips")
    assert not (tmp_path / "chips").exists()
    # other formats name no file by scene, and record it per tile
    out = xflipnslide.export_chips(tiles, tmp_path / "wds", format="webdataset")
    assert (tmp_path / "wds" / "shard-00000.tar").exists() and out


# --- footprint plots -------------------------------------------------------------


def test_plot_footprints_draws_every_scene_of_a_collection(scenes, tiles, tmp_path):
    pytest.importorskip("matplotlib")
    from affine import Affine

    from xflipnslide.plot import plot_footprints

    with pytest.raises(xflipnslide.InvalidParameterError, match="pass crs="):
        plot_footprints(tiles)  # EPSG:32621 and EPSG:4326
    fig = plot_footprints(tiles, crs="EPSG:4326")
    fig.savefig(tmp_path / "collection.png", dpi=60)
    assert (tmp_path / "collection.png").stat().st_size > 0
    ax = fig.axes[0]
    ids = tiles[SCENE].values
    assert [len(c.get_paths()) for c in ax.collections] == [
        int((ids == "utm").sum()),
        int((ids == "geo").sum()),
    ]
    labels = [t.get_text() for t in fig.legends[0].get_texts()]
    assert labels == [f"utm ({(ids == 'utm').sum()})", f"geo ({(ids == 'geo').sum()})"]
    # the EPSG:4326 scene is drawn in its own CRS: its window's corners
    k = int(np.flatnonzero(ids == "geo")[0])
    window = scenes["geo"].rio.transform() * Affine.translation(
        int(tiles.col[k]), int(tiles.row[k])
    )
    want = sorted(window * uv for uv in ((0, 0), (64, 0), (64, 64), (0, 64)))
    drawn = ax.collections[1].get_paths()[0].vertices[:4]
    np.testing.assert_allclose(sorted(map(tuple, drawn)), want, rtol=1e-12)
    # one scene's options point at scene_tiles
    for kwargs in ({"kind": "density"}, {"scene": scenes["utm"]}, {"color_by": "code"}):
        with pytest.raises(xflipnslide.InvalidParameterError, match="scene_tiles"):
            plot_footprints(tiles, crs="EPSG:4326", **kwargs)
    import matplotlib.pyplot as plt

    plt.close("all")


# --- the command line --------------------------------------------------------------


def band_files(folder, seed: int, crs: str, transform) -> list[str]:
    """Three single-band 64 x 64 GeoTIFFs (B2, B3, B4) of random positive values."""
    import os

    import rasterio

    rng = np.random.default_rng(seed)
    os.makedirs(folder, exist_ok=True)
    paths = []
    for b in ("B2", "B3", "B4"):
        path = os.path.join(folder, f"S{seed}_{b}.tif")
        profile = dict(driver="GTiff", width=64, height=64, count=1, dtype="uint16")
        with rasterio.open(path, "w", crs=crs, transform=transform, **profile) as dst:
            dst.write(rng.integers(100 + 1000 * seed, 2100 + 1000 * seed, (1, 64, 64), "uint16"))
        paths.append(path)
    return paths


@pytest.fixture
def cli_scenes(tmp_path):
    from affine import Affine

    return {
        "utm": band_files(
            tmp_path / "utm", 1, "EPSG:32621", Affine(30, 0, 740000, 0, -30, -2800000)
        ),
        "geo": band_files(
            tmp_path / "geo", 2, "EPSG:4326", Affine(1e-4, 0, -54.6, 0, -1e-4, -25.4)
        ),
    }


def read_stack(paths):
    import rasterio

    out = []
    for p in paths:
        with rasterio.open(p) as f:
            out.append(f.read(1).astype(np.float64))
    return np.stack(out)


def pooled(cli_scenes):
    """Each scene standardised with the mean and std of both scenes' pixels (numpy)."""
    raw = {id: read_stack(paths) for id, paths in cli_scenes.items()}
    both = np.concatenate([r.reshape(3, -1) for r in raw.values()], axis=1)
    mean, std = both.mean(axis=1)[:, None, None], both.std(axis=1)[:, None, None]
    return {id: (r - mean) / std for id, r in raw.items()}


def scene_args(cli_scenes):
    return [a for id, paths in cli_scenes.items() for a in ("--scene", f"{id}={','.join(paths)}")]


def test_cli_tile_takes_several_scenes_into_one_store(cli_scenes, tmp_path, capsys):
    import rasterio

    from xflipnslide.cli import main

    out = tmp_path / "c.zarr"
    argv = ["tile", *scene_args(cli_scenes), "--out", str(out), "--tile-size", "32"]
    assert main([*argv, "--nodata", "0"]) == 0
    assert "of 2 scenes" in capsys.readouterr().out
    store = xflipnslide.open_tiles(out)
    assert scene_ids(store) == ["utm", "geo"]
    want = pooled(cli_scenes)
    for id, paths in cli_scenes.items():
        part = scene_tiles(store, id)
        with rasterio.open(paths[0]) as f:
            assert part.image.rio.crs == f.crs
            np.testing.assert_allclose(part.attrs[schema.SCENE_TRANSFORM], tuple(f.transform)[:6])
        identity = np.flatnonzero(part.transform.values == 0)
        assert identity.size
        for k in identity:
            r, c = int(part.row[k]), int(part.col[k])
            np.testing.assert_allclose(
                part.image.isel(tile=k).values, want[id][:, r : r + 32, c : c + 32], rtol=1e-5
            )


def test_cli_scene_options_and_positional_inputs_exclude_each_other(cli_scenes, tmp_path, capsys):
    from xflipnslide.cli import main

    out = tmp_path / "c.zarr"
    for argv, message in [
        (["tile", cli_scenes["utm"][0], *scene_args(cli_scenes)], "not both"),
        (["tile"], "--scene ID=PATH for each scene"),
        (["tile", "--scene", "a", "--scene", "b=x.tif"], "takes ID=PATH"),
        (
            [
                "tile",
                "--scene",
                f"a={cli_scenes['utm'][0]}",
                "--scene",
                f"a={cli_scenes['geo'][0]}",
            ],
            "given twice",
        ),
    ]:
        try:
            status = main([*argv, "--out", str(out)])
        except SystemExit as exc:  # argparse's own errors
            status = exc.code
        assert status == 2, argv
        err = capsys.readouterr().err.strip()
        assert message in err and len(err.splitlines()) == 1, (argv, err)
    assert not out.exists()


def test_cli_predict_writes_one_geotiff_per_scene(cli_scenes, tmp_path, capsys):
    torch = pytest.importorskip("torch")
    import rasterio

    from xflipnslide.cli import main

    net = torch.nn.Conv2d(3, 3, 1, bias=False)
    with torch.no_grad():
        net.weight.copy_(torch.eye(3).reshape(3, 3, 1, 1))
    model = str(tmp_path / "identity.pt")
    torch.jit.script(net).save(model)
    out = tmp_path / "maps"
    argv = ["predict", *scene_args(cli_scenes), "--model", model, "--out", str(out)]
    assert main([*argv, "--tile-size", "32"]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["geo.tif", "utm.tif"]
    want = pooled(cli_scenes)  # one set of statistics for both scenes
    for id, paths in cli_scenes.items():
        with rasterio.open(paths[0]) as src, rasterio.open(out / f"{id}.tif") as got:
            assert got.crs == src.crs
            np.testing.assert_allclose(tuple(got.transform), tuple(src.transform), rtol=1e-9)
            np.testing.assert_allclose(got.read(), want[id], rtol=1e-4, atol=1e-4)
    # the outputs are checked before any work: a second run without --overwrite is refused
    assert main([*argv, "--tile-size", "32"]) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert main([*argv, "--tile-size", "32", "--overwrite"]) == 0
    # --out a file is refused with --scene
    assert main([*argv[:-1], str(out / "utm.tif"), "--overwrite"]) == 2


# --- STAC: one scene per item ------------------------------------------------------


def geographic_item(folder) -> object:
    """The row-78 crop reprojected to EPSG:4326 (files written here), as a STAC item."""
    import os

    import pystac
    import rioxarray
    from pystac.extensions.projection import ProjectionExtension
    from stac_items import BANDS, landsat_crop, make_item

    item = make_item("78", raster_bands=False)
    item.id = "geographic"
    os.makedirs(folder, exist_ok=True)
    for name, band in BANDS.items():
        raw = rioxarray.open_rasterio(landsat_crop("78", band))
        geo = raw.rio.reproject("EPSG:4326", nodata=0)
        path = os.path.join(folder, f"{band}.tif")
        geo.rio.to_raster(path)
        asset = pystac.Asset(href=path, media_type=pystac.MediaType.COG, roles=["data"])
        item.add_asset(name, asset)
        ProjectionExtension.ext(asset, add_if_missing=True).apply(
            epsg=4326, shape=list(geo.shape[1:]), transform=list(geo.rio.transform())[:6]
        )
    return item, geo


def test_load_stac_groupby_item_gives_each_item_in_its_own_crs(tmp_path):
    pytest.importorskip("odc.stac")
    import rioxarray
    from conftest import raise_if_dask_computes
    from stac_items import landsat_crop, make_item

    utm = make_item("77", raster_bands=False)
    geo_item, geo = geographic_item(tmp_path / "geo")
    bands = ["red", "green", "blue"]
    with raise_if_dask_computes():
        scenes = xflipnslide.load_stac(
            items=[utm, geo_item], bands=bands, sign=False, groupby="item"
        )
    assert list(scenes) == [utm.id, "geographic"]
    raw = rioxarray.open_rasterio(landsat_crop("77", "B4"))
    one = scenes[utm.id]
    assert one.rio.crs == raw.rio.crs and one.sizes["y"] == raw.sizes["y"]
    np.testing.assert_allclose(tuple(one.rio.transform())[:6], tuple(raw.rio.transform())[:6])
    two = scenes["geographic"]
    assert two.rio.crs.to_epsg() == 4326
    assert two.shape[-2:] == geo.shape[-2:]
    np.testing.assert_allclose(
        tuple(two.rio.transform())[:6], tuple(geo.rio.transform())[:6], rtol=1e-9
    )
    assert all(s.chunks is not None for s in scenes.values())  # lazy
    np.testing.assert_array_equal(
        one.isel(time=0).sel(band="red").values, raw.isel(band=0).values.astype("float32")
    )
    # the default is still one mosaicked cube, and an unknown grouping is refused
    assert isinstance(xflipnslide.load_stac(items=[utm], bands=bands, sign=False), xr.DataArray)
    with pytest.raises(xflipnslide.InvalidParameterError, match="groupby"):
        xflipnslide.load_stac(items=[utm], sign=False, groupby="day")
    with pytest.raises(xflipnslide.InvalidParameterError, match="several items"):
        xflipnslide.load_stac(items=[utm, utm], sign=False, groupby="item")
