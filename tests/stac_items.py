"""STAC items for the vendored Landsat 8 crops, with real projection metadata."""

from __future__ import annotations

import datetime
import os

import pystac
import rioxarray

DATA = os.path.join(os.path.dirname(__file__), "data")

BANDS = {"blue": "B2", "green": "B3", "red": "B4"}
SCALE, OFFSET = 2.0e-5, -0.1


def landsat_crop(row: str, band: str) -> str:
    return os.path.join(DATA, "landsat8", f"LC08_L1TP_2240{row}_20200518_crop_{band}.tif")


def make_item(row: str, raster_bands: bool = True) -> pystac.Item:
    """A STAC item with projection (and raster) metadata for one vendored crop."""
    from rasterio.warp import transform_bounds

    ref = rioxarray.open_rasterio(landsat_crop(row, "B4"))
    west, south, east, north = transform_bounds(ref.rio.crs, "EPSG:4326", *ref.rio.bounds())
    item = pystac.Item(
        id=f"LC08_L1TP_2240{row}_20200518",
        geometry={
            "type": "Polygon",
            "coordinates": [
                [[west, south], [east, south], [east, north], [west, north], [west, south]]
            ],
        },
        bbox=[west, south, east, north],
        datetime=datetime.datetime(2020, 5, 18, 13, 40 + int(row) - 77),
        properties={},
        collection="landsat-test",
    )
    from pystac.extensions.projection import ProjectionExtension
    from pystac.extensions.raster import RasterBand, RasterExtension

    for name, band in BANDS.items():
        asset = pystac.Asset(
            href=landsat_crop(row, band), media_type=pystac.MediaType.COG, roles=["data"]
        )
        item.add_asset(name, asset)
        ProjectionExtension.ext(asset, add_if_missing=True).apply(
            epsg=32621, shape=list(ref.shape[1:]), transform=list(ref.rio.transform())[:6]
        )
        if raster_bands:
            RasterExtension.ext(asset, add_if_missing=True).apply(
                [RasterBand.create(nodata=0, scale=SCALE, offset=OFFSET, data_type="uint16")]
            )
    return item
