"""``export_chips``: tiles out to the formats other tools read.

Every export streams the tiles chunk by chunk (one tile chunk computed or
read at a time) into a fresh hidden folder beside the target and moves it
into place only when complete (:mod:`xflipnslide.export.atomic`), so an
interrupted or failed export (Ctrl-C, a full disk) leaves the disk as it
was, and ``overwrite=True`` replaces only an earlier export (a folder with
its manifest, :mod:`.layout`). The formats: :mod:`.geotiff`,
:mod:`.tfrecord`, :mod:`.webdataset`.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Callable, Hashable
from typing import Any, Literal

import numpy as np
import xarray as xr

from .. import schema
from .._core.blocks import chunk_bounds
from .._core.graph import tile_chunk_sizes
from ..errors import InvalidParameterError, check_positive_int
from ..schema import IMAGE, LABEL, TILE_DIM
from . import atomic
from .geotiff import GeoTiffWriter
from .layout import (
    EXPORT,
    FORMATS,
    ChipLayout,
    Writer,
    chip_arrays,
    scene_parts,
    write_manifest,
)
from .tfrecord import TFRecordWriter
from .webdataset import TarWriter

__all__ = ["export_chips"]

#: The writer of each format.
WRITERS: dict[str, type[Writer]] = {w.format: w for w in (GeoTiffWriter, TFRecordWriter, TarWriter)}


def export_chips(
    tiles: xr.DataArray | xr.Dataset,
    directory: str | os.PathLike,
    *,
    format: Literal["geotiff", "tfrecord", "webdataset"] = "geotiff",
    image: Hashable = IMAGE,
    label: Hashable | None = None,
    shard_size: int = 1000,
    crs: Any = None,
    overwrite: bool = False,
    progress: Callable[[int, int], None] | None = None,
) -> str:
    """Write tiles as chips other tools read.

    Parameters
    ----------
    tiles
        Output of :func:`xflipnslide.tile` (in memory, lazy or reopened
        from Zarr): a DataArray of images, or a Dataset with ``image`` and,
        optionally, ``label`` variables. A collection of many scenes
        (``docs/collections.md``) too: every chip carries its own scene's
        CRS and exact transform, GeoTIFF chips are named ``{tile}_{scene}``
        (scene ids of letters, digits, ``.``, ``_`` and ``-``), and
        ``index.csv`` and every format's per-tile metadata name the scene.
    directory
        The folder to create. Its parent folder must exist.
    format
        ``"geotiff"``: ``images/`` and ``labels/`` folders of one GeoTIFF
        per tile (same zero-padded name in both, ArcGIS's "Classified
        Tiles" layout) and ``index.csv`` (file, tile, row, col, transform,
        grid, valid_fraction, footprint as WKT in the scene's CRS). Dims
        besides the spatial ones fold into the chip's bands in C order: a
        ``(time, band, y, x)`` tile gives ``time * band`` bands, time-major,
        described ``"2023-06-01/red"`` (see :doc:`/export`).
        ``"tfrecord"``: ``shard-00000.tfrecord``... of ``tf.train.Example``
        records (see :data:`FEATURE_DESCRIPTION`; read with
        :func:`tfrecord_dataset`). ``"webdataset"``: ``shard-00000.tar``...
        for the ``webdataset`` package (``.image.npy``, ``.label.npy`` and
        ``.json`` per sample). Both keep each tile's whole shape (a time
        stack's ``(time, band, y, x)``) and dtype.
    image, label
        Variable names in a Dataset.
    shard_size
        Tiles per TFRecord or tar shard.
    crs
        The tiles' CRS (anything :meth:`rasterio.crs.CRS.from_user_input`
        reads, e.g. ``"EPSG:32621"``) when they carry none: GeoTIFF chips
        without a CRS are refused. Tiles that carry a CRS need none; a
        different one is refused.
    overwrite
        Replace ``directory`` if it holds an earlier export (never anything
        else).
    progress
        Called as ``progress(done, total)`` after each chunk of tiles.

    Returns
    -------
    str
        The directory written. It holds ``fns_export.json`` (format, count,
        CRS and, for the image and label, dtype, shape, dims and each extra
        dim's labels, such as the dates), written last, besides the chips;
        for tiles that record scene ids, ``scenes``: per scene its number of
        tiles, CRS and shape (``crs`` is then the scenes' CRS where they
        share one, else ``null``).

    Raises
    ------
    InvalidParameterError
        Before anything is computed: an unknown format, variable or CRS,
        GeoTIFF chips without a CRS or of variables without both spatial
        dims, an empty or unwritable ``directory``,
        an existing one without ``overwrite``, or one that is not an export.

    Examples
    --------
    >>> import json, os, tempfile
    >>> import numpy as np, xarray as xr, xflipnslide
    >>> scene = xflipnslide.open_image(xflipnslide.sample_scene_path())
    >>> part = scene.isel(y=slice(0, 128), x=slice(0, 128))
    >>> label = (part.isel(band=0, drop=True) > 8000).astype("uint8")
    >>> tiles = xr.Dataset({"image": part, "label": label}).fns.tile(64)
    >>> out = tiles.fns.export_chips(os.path.join(tempfile.mkdtemp(), "chips"), label="label")
    >>> sorted(os.listdir(out))
    ['fns_export.json', 'images', 'index.csv', 'labels']
    >>> sorted(os.listdir(os.path.join(out, "images")))[:3]
    ['00.tif', '01.tif', '02.tif']

    A time stack's chips hold every date's bands, time-major:

    >>> time = xr.DataArray(np.array(["2023-06-01", "2023-07-01"], "datetime64[ns]"), dims="time")
    >>> stack = xr.concat([part, part + 1], dim=time).fns.tile(64)
    >>> out = stack.fns.export_chips(os.path.join(tempfile.mkdtemp(), "chips"))
    >>> with open(os.path.join(out, "fns_export.json")) as f:
    ...     image = json.load(f)["image"]
    >>> image["dims"]
    ['time', 'band', 'y', 'x']
    >>> image["bands"][2:4]
    ['2023-06-01/blue', '2023-07-01/red']
    """
    if format not in FORMATS:
        raise InvalidParameterError(
            f"format must be one of {', '.join(map(repr, FORMATS))}; got {format!r}"
        )
    shard_size = check_positive_int(shard_size, "shard_size")
    parts = scene_parts(tiles, "export_chips")
    g = parts[0].geometry if len(parts) == 1 else schema.read_geometry(tiles, what="export_chips")
    x, y = chip_arrays(tiles, image, label, g.dims)
    layouts = {IMAGE: ChipLayout.of(x, g.dims)}
    if y is not None:
        layouts[LABEL] = ChipLayout.of(y, g.dims)
    writer_class = WRITERS[format]
    writer_class.check(layouts, g.dims)
    crss = [_crs(p.tiles, crs, format, p.id) for p in parts]
    with atomic.write_dir(directory, EXPORT, overwrite=overwrite) as tmp:
        writer = writer_class(
            tmp, tiles, g, shard_size=shard_size, crs=crss, layouts=layouts, parts=parts
        )
        try:
            done, n = 0, len(g)
            for a, b in _tile_ranges(x):
                xs = np.asarray(x.isel({TILE_DIM: slice(a, b)}).values)
                ys = np.asarray(y.isel({TILE_DIM: slice(a, b)}).values) if y is not None else None
                for k in range(b - a):
                    writer.write(a + k, xs[k], ys[k] if ys is not None else None)
                done += b - a
                if progress is not None:
                    progress(done, n)
        except BaseException:
            writer.abort()  # never raises over the original error
            raise
        writer.close()
        meta = {
            "format": format,
            "count": len(g),
            "shard_size": shard_size,
            IMAGE: writer.manifest(IMAGE),
            LABEL: writer.manifest(LABEL) if y is not None else None,
            "crs": _wkt(crss[0]) if all(c == crss[0] for c in crss) else None,
            "tile_size": g.tile_size,
            "scene_shape": list(g.scene_shape) if g.scene_shape else None,
        }
        if parts[0].id is not None:  # tiles that record scene ids: each scene's own
            meta["scenes"] = {
                p.id: {
                    "count": len(p.where),
                    "crs": _wkt(c),
                    "scene_shape": list(p.geometry.scene_shape) if p.geometry.scene_shape else None,
                }
                for p, c in zip(parts, crss)
            }
        write_manifest(tmp, meta)
    return os.fspath(directory)


def _wkt(crs) -> str | None:
    return crs.to_wkt() if crs is not None else None


def _crs(tiles, crs, format: str, scene: str | None = None):
    """The CRS the chips of one scene carry: the tiles' own, else ``crs``;
    GeoTIFF chips need one."""
    import rioxarray  # noqa: F401  (registers .rio)

    have = tiles.rio.crs
    which = f"the tiles of scene {scene!r}" if scene is not None else "the tiles"
    if crs is None:
        if have is None and format == GeoTiffWriter.format:
            raise InvalidParameterError(
                f"{which} carry no CRS (no spatial_ref coordinate), so GeoTIFF chips would not "
                "be placed on the ground: pass crs= to export_chips (e.g. crs='EPSG:32621'; "
                "--crs in the CLI), or tile a scene that has one (scene.rio.write_crs(...))"
            )
        return have
    from rasterio.crs import CRS
    from rasterio.errors import CRSError

    try:
        given = CRS.from_user_input(crs)
    except CRSError as exc:
        raise InvalidParameterError(
            f"crs={crs!r} is not a CRS rasterio reads: give e.g. 'EPSG:32621' or a WKT string"
        ) from exc
    if have is not None and have != given:
        raise InvalidParameterError(
            f"{which} carry the CRS {have.to_string()} and crs={crs!r} says otherwise: drop "
            "crs=, or reproject the scene before tiling"
        )
    return given


def _tile_ranges(x: xr.DataArray) -> list[tuple[int, int]]:
    """``(start, stop)`` of each tile chunk of ``x`` (one for in-memory tiles)."""
    return list(itertools.pairwise(chunk_bounds(tile_chunk_sizes(x.variable))))
