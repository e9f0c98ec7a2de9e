"""Rasterise the vendored land-cover polygons onto a scene's grid (test helper).

Reads the GeoPackage with sqlite3 (its geometries are WKB behind a small
header), so no GDAL vector driver or geopandas is needed.
"""

from __future__ import annotations

import os
import sqlite3
import struct

import xarray as xr

GPKG = os.path.join(
    os.path.dirname(__file__),
    "data",
    "landsat8",
    "LC08_L1TP_224078_20200518_20200518_01_RT_polygons.gpkg",
)
CLASSES = {"water": 1, "crop": 2, "tree": 3, "developed": 4}  # 0: unlabelled


def read_polygons() -> list[tuple[str, object]]:
    from shapely import wkb

    out = []
    with sqlite3.connect(GPKG) as db:
        for blob, name in db.execute("select geometry, name from land_cover"):
            flags = blob[3]
            envelope = {0: 0, 1: 32, 2: 48, 3: 48, 4: 64}[(flags >> 1) & 0b111]
            assert (
                blob[:2] == b"GP"
                and struct.unpack("<i" if flags & 1 else ">i", blob[4:8])[0] == 32621
            )
            out.append((name, wkb.loads(bytes(blob[8 + envelope :]))))
    return out


def label_mask(scene: xr.DataArray) -> xr.DataArray:
    """``(y, x)`` uint8 class mask on ``scene``'s grid."""
    from rasterio.features import rasterize

    shapes = [(geom, CLASSES[name]) for name, geom in read_polygons()]
    mask = rasterize(
        shapes,
        out_shape=(scene.sizes["y"], scene.sizes["x"]),
        transform=scene.rio.transform(),
        dtype="uint8",
    )
    return xr.DataArray(mask, dims=("y", "x"), coords={"y": scene.y, "x": scene.x}, name="label")
