"""Loading scenes: GeoTIFFs, STAC items through odc-stac, and a STAC API on loopback."""

from __future__ import annotations

import json
import os

import numpy as np
import odc.stac
import pystac
import pystac_client  # noqa: F401
import pytest
import rioxarray
from conftest import DATA
from stac_items import OFFSET, SCALE, landsat_crop, make_item
from stac_server import StacServer

import xflipnslide
from xflipnslide import InvalidParameterError
from xflipnslide.io import band_scaling


@pytest.fixture
def items():
    return [make_item("77"), make_item("78")]


def test_open_image_band_names_and_crs():
    scene = xflipnslide.open_image(xflipnslide.sample_scene_path())
    assert scene.dims == ("band", "y", "x")
    assert list(scene.band.values) == ["red", "green", "blue"]
    assert scene.rio.crs.to_epsg() == 32621
    assert scene.chunks is not None  # lazy
    plain = xflipnslide.open_image(landsat_crop("77", "B2"))
    assert list(plain.band.values) == ["b1"]  # always strings
    with pytest.raises(InvalidParameterError, match="no such file"):
        xflipnslide.open_image("missing.tif")


def test_load_items_mosaics_two_rows(items):
    scene = xflipnslide.load_stac(items=items, bands=["red", "green", "blue"], sign=False)
    assert scene.dims == ("time", "band", "y", "x")
    assert scene.sizes["time"] == 1  # both rows: one solar day
    assert scene.chunks is not None
    assert scene.rio.crs.to_epsg() == 32621
    assert list(scene.band.values) == ["red", "green", "blue"]
    # the mosaic spans both crops: 203 + 235 rows less 3 km (100 rows) of overlap
    assert scene.sizes["y"] == 335
    values = scene.isel(time=0).compute()
    for row in ("77", "78"):
        raw = rioxarray.open_rasterio(landsat_crop(row, "B4")).isel(band=0)
        window = values.sel(band="red").sel(y=raw.y, x=raw.x)
        expected = np.where(
            raw.values == 0, np.nan, raw.values * np.float32(SCALE) + np.float32(OFFSET)
        )
        only_here = ~np.isin(
            raw.y.values,
            rioxarray.open_rasterio(landsat_crop("78" if row == "77" else "77", "B4")).y.values,
        )
        np.testing.assert_allclose(window.values[only_here], expected[only_here], rtol=1e-6)
    assert values.dtype == np.float32
    # and it chains
    tiles = scene.fns.preprocess().fns.tile(64)
    assert tiles.sizes["band"] == 3 and not np.isnan(tiles.values).any()


def test_items_without_raster_metadata_keep_stored_values():
    scene = xflipnslide.load_stac(
        items=[make_item("78", raster_bands=False)], bands=["red"], sign=False
    )
    raw = rioxarray.open_rasterio(landsat_crop("78", "B4")).values[0]
    np.testing.assert_array_equal(scene.isel(time=0, band=0).values, raw.astype(np.float32))


def test_geographic_output_keeps_odc_dim_names(items):
    scene = xflipnslide.load_stac(
        items=items[1:], bands=["red"], sign=False, crs="EPSG:4326", resolution=0.0003
    )
    assert scene.dims == ("time", "band", "latitude", "longitude")
    assert scene.fns.preprocess().fns.tile(32).dims == ("tile", "band", "latitude", "longitude")


def test_search_on_a_local_stac_api(items):
    served = [i.to_dict() for i in items]
    server = StacServer(served)
    with server as url:
        bbox = items[0].bbox
        scene = xflipnslide.load_stac(
            bbox=bbox,
            datetime="2020-05-01/2020-05-31",
            collections=["landsat-test"],
            bands=["red"],
            catalog=url,
            sign=True,
        )
        assert scene.sizes["band"] == 1 and scene.sizes["time"] == 1
        assert float(scene.isel(time=0).count()) > 0
        assert server.requests[0][0] == "POST"
        assert server.requests[0][1]["collections"] == ["landsat-test"]
        with pytest.raises(InvalidParameterError, match=r"found no items.*widen"):
            xflipnslide.load_stac(
                bbox=bbox, datetime="2021-01", collections=["landsat-test"], catalog=url, sign=False
            )


def test_real_planetary_computer_records_band_scaling():
    """Parse real records; never fetch or sign their hrefs."""
    with open(os.path.join(DATA, "stac", "landsat-c2-l2-pc.json")) as f:
        landsat = [pystac.Item.from_dict(d) for d in json.load(f)]
    scaling = band_scaling(landsat, ["red", "nir08", "qa_pixel"])
    assert scaling["red"] == {"scale": 2.75e-05, "offset": -0.2, "nodata": 0}
    assert scaling["nir08"]["scale"] == 2.75e-05
    with open(os.path.join(DATA, "stac", "sentinel-2-l2a-pc.json")) as f:
        s2 = [pystac.Item.from_dict(d) for d in json.load(f)]
    assert band_scaling(s2, ["B04"])["B04"] == {"scale": 1.0, "offset": 0.0, "nodata": None}
    parsed = odc.stac.parse_item(landsat[0])
    assert {"red", "green", "blue", "nir08"} <= set(parsed.collection.bands) | {
        b[0] for b in parsed.collection.bands
    }


def test_disagreeing_items_and_missing_search():
    a, b = make_item("77"), make_item("78")
    b.assets["red"].extra_fields["raster:bands"][0]["scale"] = 1.0
    with pytest.raises(InvalidParameterError, match="disagree"):
        band_scaling([a, b], ["red"])
    with pytest.raises(InvalidParameterError, match="needs a search"):
        xflipnslide.load_stac()
    with pytest.raises(InvalidParameterError, match="empty list"):
        xflipnslide.load_stac(items=[], sign=False)
