"""GeoTIFF chips: ``images/`` and ``labels/`` folders of one GeoTIFF per tile
(ArcGIS's "Classified Tiles" layout) and ``index.csv``.

Each chip carries the CRS and its exact geotransform: the window's
transform composed with the tile's D4 transform
(:func:`xflipnslide.georef.tile_transform`), so a GIS draws a rotated or
reflected chip in place; in a collection, its own scene's (chips
``{tile}_{scene}.tif``, ``index.csv`` with a ``scene`` column). Written
with rasterio.

A chip's bands are the tile's extra dims folded in C order
(:meth:`.layout.ChipLayout.bands`): a ``(time, band, y, x)`` tile of a time
stack gives ``time * band`` bands, time-major (all bands of the first date,
then of the next), described ``"2023-06-01/red"`` and tagged per band with
each dim's label (``time=2023-06-01``, ``band=red``); the manifest lists
the same descriptions under ``bands``.
"""

from __future__ import annotations

import csv
import os

import xarray as xr

from .. import schema
from ..errors import InvalidParameterError
from ..georef import scene_transform, tile_transform, window_bounds
from ..schema import COL, GRID, IMAGE, LABEL, ROW, SCENE, TRANSFORM, VALID_FRACTION
from .layout import META, ChipLayout, Writer, chip_name, file_id

__all__ = ["IMAGES", "INDEX", "LABELS", "GeoTiffWriter", "footprint_wkt", "scene_affine"]

#: The folders of image and label chips (same name in both) and the index.
IMAGES, LABELS, INDEX = "images", "labels", "index.csv"
#: The columns of ``index.csv``.
COLUMNS = ("file", *META, GRID, VALID_FRACTION, "footprint")
#: The most bands a GeoTIFF holds (GDAL's limit).
MAX_BANDS = 65535


class GeoTiffWriter(Writer):
    format = "geotiff"

    @classmethod
    def check(cls, layouts: dict[str, ChipLayout], spatial) -> None:
        for part, layout in layouts.items():
            if layout.dims[-2:] != tuple(map(str, spatial)):
                raise InvalidParameterError(
                    f"GeoTIFF chips are rasters: the {part} tiles need both spatial dims "
                    f"{tuple(spatial)}, and have {layout.dims} after 'tile'. Export them with "
                    "format='tfrecord' or 'webdataset', or leave them out (label=None)"
                )
            count = len(layout.bands())
            if count > MAX_BANDS:
                raise InvalidParameterError(
                    f"the {part} tiles fold into {count} GeoTIFF bands ({' x '.join(layout.extra)}"
                    f"), more than the {MAX_BANDS} a GeoTIFF holds: export fewer dates or bands "
                    "(tiles.isel(...)), or use format='tfrecord' or 'webdataset'"
                )

    def manifest(self, part):
        return {**super().manifest(part), "bands": self.layouts[part].bands()}

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        import rasterio  # noqa: F401  (the export extra, checked before any chip)

        self.scenes = [scene_affine(p.tiles, p.geometry) for p in self.parts]
        self.names = [_name_part(p.id) for p in self.parts]
        for sub, part in ((IMAGES, IMAGE), (LABELS, LABEL)):
            if part in self.layouts:
                os.makedirs(os.path.join(self.root, sub))
        # open across many write() calls; closed by close()/abort()
        self.index = open(os.path.join(self.root, INDEX), "w", newline="")  # noqa: SIM115
        self.csv = csv.writer(self.index)
        self.columns = COLUMNS if self.parts[0].id is None else (COLUMNS[0], SCENE, *COLUMNS[1:])
        self.csv.writerow(self.columns)

    def write(self, k, image, label):
        import rasterio

        meta = self.tile_meta(k)
        T = self.g.tile_size
        row, col, code = meta[ROW], meta[COL], meta[TRANSFORM]
        part = int(self.part_of[k])
        scene, crs = self.scenes[part], self.crs[part]
        affine = tile_transform(scene, row, col, T, code)
        name = chip_name(k, self.n) + self.names[part] + ".tif"
        tags = {f"{schema.ATTR_PREFIX}{key}": str(v) for key, v in meta.items()}
        for sub, part, data in ((IMAGES, IMAGE, image), (LABELS, LABEL, label)):
            if data is None:
                continue
            layout = self.layouts[part]
            arr = data.reshape(-1, T, T)  # the extra dims folded, C order
            profile = {
                "driver": "GTiff",
                "width": T,
                "height": T,
                "count": arr.shape[0],
                "dtype": arr.dtype.name,
                "crs": crs,
                "transform": affine,
                "compress": "deflate",
            }
            with rasterio.open(os.path.join(self.root, sub, name), "w", **profile) as dst:
                dst.write(arr)
                dst.update_tags(**tags)
                for i, (text, band) in enumerate(zip(layout.bands(), layout.band_tags()), 1):
                    if band:
                        dst.set_band_description(i, text)
                        dst.update_tags(i, **band)
        bounds = window_bounds(scene, [row], [col], T)[0]
        self.csv.writerow(
            [
                f"{IMAGES}/{name}",
                *([meta[SCENE]] if SCENE in meta else []),
                *(meta[key] for key in META),
                meta.get(GRID, ""),
                meta.get(VALID_FRACTION, ""),
                footprint_wkt(*bounds),
            ]
        )

    def close(self):
        if not self.index.closed:
            self.index.close()


def _name_part(scene: str | None) -> str:
    """The ``_{scene}`` suffix of a chip's name (nothing for tiles without ids)."""
    if scene is None:
        return ""
    fix = " (concat_tiles(..., ids=...) renames scenes), or export format='tfrecord'"
    return "_" + file_id(scene, "GeoTIFF chips of a collection are named by scene", fix)


def footprint_wkt(x0: float, y0: float, x1: float, y1: float) -> str:
    """The WKT polygon of a box ``(minx, miny, maxx, maxy)``."""
    return f"POLYGON (({x0} {y0}, {x1} {y0}, {x1} {y1}, {x0} {y1}, {x0} {y0}))"


def scene_affine(tiles, g: schema.TileGeometry):
    """The scene's affine transform, from the window centres the tiles carry
    (else rioxarray's recorded GeoTransform)."""
    import rioxarray  # noqa: F401  (registers .rio)
    from affine import Affine

    shape = g.scene_shape or (
        int(g.rows.max()) + g.tile_size,
        int(g.cols.max()) + g.tile_size,
    )
    coords = schema.scene_coords(tiles, g, shape)
    if len(coords) == 2:
        dummy = xr.Dataset(coords={d: coords[d] for d in g.dims})
        return scene_transform(dummy, g.dims)
    ref = tiles.coords.get(tiles.rio.grid_mapping)
    text = ref.attrs.get("GeoTransform") if ref is not None else None
    if text:
        c, a, b, f, d, e = (float(v) for v in str(text).split())
        return Affine(a, b, c, d, e, f)
    raise InvalidParameterError(
        "the tiles carry no georeferencing (window centres or a GeoTransform): GeoTIFF chips "
        "need it; tile a scene with x/y coordinates, or use format='tfrecord'/'webdataset'"
    )
