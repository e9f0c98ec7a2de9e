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
