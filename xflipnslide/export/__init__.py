"""Tiles out to the formats other tools read: georeferenced GeoTIFF chips,
sharded TFRecord, WebDataset tar shards.

Every export streams the tiles chunk by chunk (one tile chunk computed or
read at a time) into a fresh hidden folder beside the target and moves it
into place only when complete (:mod:`xflipnslide.atomic`), so an
interrupted or failed export (Ctrl-C, a full disk) leaves the disk as it
was, and ``overwrite=True`` replaces only an earlier export.

* **GeoTIFF** chips are written with rasterio, each with the CRS (the
  tiles' own, or ``crs=``: chips without one are refused) and its exact
  geotransform: the window's transform composed with the tile's D4
  transform (:func:`xflipnslide.georef.tile_transform`), so a GIS draws a
  rotated or reflected chip in place.
* **TFRecord** framing and the ``tf.train.Example`` protobuf are written
  here (a few dozen lines: no TensorFlow needed to write), with the
  record checksums from ``google-crc32c`` (Google's own CRC-32C, a small
  compiled package). Reading is TensorFlow's: :func:`tfrecord_dataset`.
* **WebDataset** shards are plain POSIX tar files (Python's ``tarfile``) of
  ``KEY.image.npy``, ``KEY.label.npy`` and ``KEY.json`` members, which the
  ``webdataset`` package reads and decodes.
"""

from __future__ import annotations

import contextlib
import csv
import io
import itertools
import json
import os
import struct
import tarfile
from collections.abc import Callable, Hashable
from typing import Any, Literal

import numpy as np
import xarray as xr

from .. import schema
from ..errors import InvalidParameterError, check_positive_int, require
from ..georef import scene_transform, tile_transform, window_bounds
from ..schema import IMAGE, TILE_DIM
from . import atomic

__all__ = [
    "FEATURE_DESCRIPTION",
    "FORMATS",
    "MARKER",
    "export_chips",
    "is_export",
    "tfrecord_dataset",
]

FORMATS = ("geotiff", "tfrecord", "webdataset")
#: The per-tile integers every format records, named as in the tile format.
META = (TILE_DIM, schema.ROW, schema.COL, schema.TRANSFORM)
#: The manifest every export writes last; ``overwrite=True`` only replaces
#: folders that hold it.
MARKER = "fns_export.json"

#: The ``tf.train.Example`` features of the TFRecord export (for
#: ``tf.io.parse_single_example``): raw little-endian bytes, their shape and
#: dtype name, and the tile's metadata. ``label*`` only when exported.
FEATURE_DESCRIPTION = {
    "image": "bytes: the tile's raw values, C order, little-endian",
    "image_shape": "int64 list: (band, y, x)",
    "image_dtype": "bytes: numpy dtype name, e.g. b'float32'",
    "label": "bytes: the label tile's raw values (optional)",
    "label_shape": "int64 list (optional)",
    "label_dtype": "bytes (optional)",
    "tile": "int64: index in the tile set",
    "row": "int64: window origin row in scene pixels",
    "col": "int64: window origin column",
    "transform": "int64: D4 code 0-7",
}


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
        optionally, ``label`` variables.
    directory
        The folder to create. Its parent folder must exist.
    format
        ``"geotiff"``: ``images/`` and ``labels/`` folders of one GeoTIFF
        per tile (same zero-padded name in both, ArcGIS's "Classified
        Tiles" layout) and ``index.csv`` (file, tile, row, col, transform,
        grid, valid_fraction, footprint as WKT in the scene's CRS).
        ``"tfrecord"``: ``shard-00000.tfrecord``... of ``tf.train.Example``
        records (see :data:`FEATURE_DESCRIPTION`; read with
        :func:`tfrecord_dataset`). ``"webdataset"``: ``shard-00000.tar``...
        for the ``webdataset`` package (``.image.npy``, ``.label.npy`` and
        ``.json`` per sample).
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
        dtypes, shapes, CRS), written last, besides the chips.

    Raises
    ------
    InvalidParameterError
        Before anything is computed: an unknown format, variable or CRS,
        GeoTIFF chips without a CRS, an empty or unwritable ``directory``,
        an existing one without ``overwrite``, or one that is not an export.

    Examples
    --------
    >>> tiles.fns.export_chips("chips", format="geotiff", label="label")  # doctest: +SKIP
    """
    if format not in FORMATS:
        raise InvalidParameterError(
            f"format must be one of {', '.join(map(repr, FORMATS))}; got {format!r}"
        )
    shard_size = check_positive_int(shard_size, "shard_size")
    g = schema.read_geometry(tiles, what="export_chips")
    x, y = schema.image_and_label(tiles, image, label)
    crs = _crs(tiles, crs, format)
    writers = {"geotiff": _GeoTiffWriter, "tfrecord": _TFRecordWriter, "webdataset": _TarWriter}
    with atomic.write_dir(
        directory, overwrite=overwrite, is_ours=is_export, what="an export"
    ) as tmp:
        writer = writers[format](tmp, tiles, g, x, y, shard_size, crs)
        try:
            done, n = 0, len(g)
            for a, b in _chunk_ranges(x):
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
            "image": {"dtype": x.dtype.name, "shape": list(x.shape[1:])},
            "label": {"dtype": y.dtype.name, "shape": list(y.shape[1:])} if y is not None else None,
            "crs": crs.to_wkt() if crs is not None else None,
            "tile_size": g.tile_size,
            "scene_shape": list(g.scene_shape) if g.scene_shape else None,
        }
        with open(os.path.join(tmp, MARKER), "w") as f:
            json.dump(meta, f, indent=1)
    return os.fspath(directory)


def is_export(path: str | os.PathLike) -> bool:
    """True for a folder holding an export of :func:`export_chips` (its
    manifest ``fns_export.json``)."""
    return _manifest(os.fspath(path)) is not None


def _manifest(directory: str) -> dict | None:
    try:
        with open(os.path.join(directory, MARKER)) as f:
            meta = json.load(f)
    except (OSError, ValueError):
        return None
    return meta if isinstance(meta, dict) and meta.get("format") in FORMATS else None


def _crs(tiles, crs, format: str):
    """The CRS the chips carry: the tiles' own, else ``crs``; GeoTIFF chips
    need one."""
    import rioxarray  # noqa: F401  (registers .rio)

    have = tiles.rio.crs
    if crs is None:
        if have is None and format == "geotiff":
            raise InvalidParameterError(
                "the tiles carry no CRS (no spatial_ref coordinate), so GeoTIFF chips would not "
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
            f"the tiles carry the CRS {have.to_string()} and crs={crs!r} says otherwise: drop "
            "crs=, or reproject the scene before tiling"
        )
    return given


def _chunk_ranges(x: xr.DataArray) -> list[tuple[int, int]]:
    n = x.sizes[TILE_DIM]
    sizes = x.chunks[0] if x.chunks is not None else (n,)
    bounds = np.concatenate([[0], np.cumsum(sizes)]).astype(int)
    return [(int(a), int(b)) for a, b in itertools.pairwise(bounds.tolist())]


def _name(k: int, n: int) -> str:
    return f"{k:0{max(len(str(n - 1)), 1)}d}"


class _Writer:
    def __init__(self, root, tiles, g, x, y, shard_size, crs):
        self.root, self.tiles, self.g, self.shard_size = root, tiles, g, shard_size
        self.crs = crs
        self.n = len(g)
        self.meta = {
            name: np.asarray(tiles[name].values)
            for name in (schema.GRID, schema.VALID_FRACTION)
            if name in tiles.coords
        }

    def close(self) -> None:
        pass

    def abort(self) -> None:
        """Close what is open after a failure; never raises (a full disk fails
        the close too), so the original error is the one reported."""
        with contextlib.suppress(Exception):
            self.close()

    def tile_meta(self, k: int) -> dict[str, Any]:
        out = {
            TILE_DIM: int(k),
            schema.ROW: int(self.g.rows[k]),
            schema.COL: int(self.g.cols[k]),
            schema.TRANSFORM: int(self.g.codes[k]),
        }
        if schema.GRID in self.meta:
            out[schema.GRID] = str(self.meta[schema.GRID][k])
        if schema.VALID_FRACTION in self.meta:
            out[schema.VALID_FRACTION] = float(self.meta[schema.VALID_FRACTION][k])
        return out


class _GeoTiffWriter(_Writer):
    def __init__(self, *args):
        super().__init__(*args)
        import rasterio  # noqa: F401

        self.scene = _scene_affine(self.tiles, self.g)
        for sub in ("images", "labels"):
            os.makedirs(os.path.join(self.root, sub))
        # open across many write() calls; closed by close()/abort()
        self.index = open(os.path.join(self.root, "index.csv"), "w", newline="")  # noqa: SIM115
        self.csv = csv.writer(self.index)
        self.csv.writerow(["file", *META, schema.GRID, schema.VALID_FRACTION, "footprint"])

    def write(self, k, image, label):
        import rasterio

        meta = self.tile_meta(k)
        T = self.g.tile_size
        row, col, code = meta[schema.ROW], meta[schema.COL], meta[schema.TRANSFORM]
        affine = tile_transform(self.scene, row, col, T, code)
        name = _name(k, self.n) + ".tif"
        tags = {f"fns_{key}": str(v) for key, v in meta.items()}
        for sub, data in (("images", image), ("labels", label)):
            if data is None:
                continue
            arr = data if data.ndim == 3 else data[None]
            profile = {
                "driver": "GTiff",
                "width": T,
                "height": T,
                "count": arr.shape[0],
                "dtype": arr.dtype.name,
                "crs": self.crs,
                "transform": affine,
                "compress": "deflate",
            }
            with rasterio.open(os.path.join(self.root, sub, name), "w", **profile) as dst:
                dst.write(arr)
                dst.update_tags(**tags)
        x0, y0, x1, y1 = window_bounds(self.scene, [row], [col], T)[0]
        footprint = f"POLYGON (({x0} {y0}, {x1} {y0}, {x1} {y1}, {x0} {y1}, {x0} {y0}))"
        self.csv.writerow(
            [
                f"images/{name}",
                *(meta[key] for key in META),
                meta.get(schema.GRID, ""),
                meta.get(schema.VALID_FRACTION, ""),
                footprint,
            ]
        )

    def close(self):
        if not self.index.closed:
            self.index.close()


def _scene_affine(tiles, g: schema.TileGeometry):
    """The scene's affine transform, from the window centres the tiles carry
    (else rioxarray's recorded GeoTransform)."""
    from affine import Affine

    shape = g.scene_shape or (
        int(g.rows.max()) + g.tile_size,
        int(g.cols.max()) + g.tile_size,
    )
    coords = schema.scene_coords(tiles, g, shape)
    if len(coords) == 2:
        dummy = xr.Dataset(coords={d: coords[d] for d in g.dims})
        return scene_transform(dummy, g.dims)
    ref = tiles.coords.get("spatial_ref")
    text = ref.attrs.get("GeoTransform") if ref is not None else None
    if text:
        c, a, b, f, d, e = (float(v) for v in str(text).split())
        return Affine(a, b, c, d, e, f)
    raise InvalidParameterError(
        "the tiles carry no georeferencing (window centres or a GeoTransform): GeoTIFF chips "
        "need it; tile a scene with x/y coordinates, or use format='tfrecord'/'webdataset'"
    )


# --- TFRecord ------------------------------------------------------------------


def _varint(n: int) -> bytes:
    out = bytearray()
    n &= (1 << 64) - 1  # int64 two's complement, as protobuf encodes negatives
    while True:
        byte = n & 0x7F
        n >>= 7
        if n:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _field(number: int, payload: bytes) -> bytes:
    """A length-delimited protobuf field."""
    return _varint((number << 3) | 2) + _varint(len(payload)) + payload


def _bytes_feature(value: bytes) -> bytes:
    return _field(1, _field(1, value))  # Feature.bytes_list = BytesList{value}


def _int64_feature(values) -> bytes:
    packed = b"".join(_varint(int(v)) for v in values)
    return _field(3, _field(1, packed))  # Feature.int64_list = Int64List{packed value}


def example(features: dict[str, bytes]) -> bytes:
    """A serialised ``tf.train.Example`` from encoded ``Feature`` messages."""
    entries = b"".join(
        _field(1, _field(1, key.encode()) + _field(2, value))
        for key, value in sorted(features.items())
    )
    return _field(1, entries)  # Example.features = Features{map entries}


def _masked_crc(data: bytes) -> bytes:
    import google_crc32c

    crc = google_crc32c.value(data)
    masked = (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF
    return struct.pack("<I", masked)


def record(data: bytes) -> bytes:
    """One TFRecord: length, its masked CRC-32C, data, its masked CRC-32C."""
    length = struct.pack("<Q", len(data))
    return length + _masked_crc(length) + data + _masked_crc(data)


def _array_features(prefix: str, a: np.ndarray) -> dict[str, bytes]:
    a = np.ascontiguousarray(a)
    little = a.astype(a.dtype.newbyteorder("<"), copy=False)
    return {
        prefix: _bytes_feature(little.tobytes()),
        f"{prefix}_shape": _int64_feature(a.shape),
        f"{prefix}_dtype": _bytes_feature(a.dtype.name.encode()),
    }


class _Sharded(_Writer):
    suffix = ""

    def __init__(self, *args):
        super().__init__(*args)
        self.file = None
        self.shard = -1

    def target(self, k: int):
        shard = k // self.shard_size
        if shard != self.shard:
            self.close()
            self.shard = shard
            self.open(os.path.join(self.root, f"shard-{shard:05d}{self.suffix}"))
        return self.file

    def close(self):
        if self.file is not None:
            self.file.close()
            self.file = None


class _TFRecordWriter(_Sharded):
    suffix = ".tfrecord"

    def __init__(self, *args):
        super().__init__(*args)
        require("google_crc32c", "export", "export_chips(format='tfrecord')")

    def open(self, path):
        self.file = open(path, "wb")  # noqa: SIM115  (one shard, closed by close())

    def write(self, k, image, label):
        meta = self.tile_meta(k)
        features = _array_features("image", image)
        if label is not None:
            features.update(_array_features("label", label))
        for key in META:
            features[key] = _int64_feature([meta[key]])
        self.target(k).write(record(example(features)))


class _TarWriter(_Sharded):
    suffix = ".tar"

    def open(self, path):
        self.file = tarfile.open(path, "w", format=tarfile.USTAR_FORMAT)  # noqa: SIM115

    def _add(self, name: str, payload: bytes) -> None:
        info = tarfile.TarInfo(name)
        info.size = len(payload)
        info.mtime = 0
        self.file.addfile(info, io.BytesIO(payload))

    def write(self, k, image, label):
        self.target(k)  # opens the next shard when due
        key = _name(k, self.n)
        for part, data in (("image", image), ("label", label)):
            if data is None:
                continue
            buf = io.BytesIO()
            np.save(buf, np.ascontiguousarray(data), allow_pickle=False)
            self._add(f"{key}.{part}.npy", buf.getvalue())
        self._add(f"{key}.json", json.dumps(self.tile_meta(k)).encode())


def _shards(directory: str, meta: dict, suffix: str) -> list[str]:
    """The shard files an export holds (from its manifest: count and shard size)."""
    if "shard_size" not in meta:  # written before the manifest recorded it
        return sorted(n for n in os.listdir(directory) if n.endswith(suffix))
    n = -(-int(meta["count"]) // int(meta["shard_size"]))
    return [f"shard-{k:05d}{suffix}" for k in range(n)]


def tfrecord_dataset(directory: str | os.PathLike, *, label: bool | None = None) -> Any:
    """A ``tf.data.Dataset`` of ``(image, label)`` (or images) from a
    TFRecord export, decoded to the dtypes and shapes written.

    Parameters
    ----------
    directory
        A folder written by :func:`export_chips` with ``format="tfrecord"``.
    label
        Yield labels too (default: when the export has them).

    Raises
    ------
    InvalidParameterError
        ``directory`` is not a TFRecord export of :func:`export_chips` (no
        manifest, another format) or misses some of its shards.
    """
    directory = os.fspath(directory)
    meta = _manifest(directory)
    if meta is None:
        raise InvalidParameterError(
            f"{directory} is not an export of export_chips (no readable {MARKER} in it): export "
            "the tiles with export_chips(tiles, directory, format='tfrecord'), or read other "
            "TFRecord files with tf.data.TFRecordDataset(files)"
        )
    if meta["format"] != "tfrecord":
        raise InvalidParameterError(
            f"{directory} holds a {meta['format']!r} export, not TFRecord: export with "
            "format='tfrecord'"
        )
    shards = _shards(directory, meta, ".tfrecord")
    missing = [n for n in shards if not os.path.isfile(os.path.join(directory, n))]
    if missing:
        raise InvalidParameterError(
            f"{directory} is missing {len(missing)} of its {len(shards)} shards ({missing[0]}, "
            "...): copy the export again, or export the tiles again"
        )
    tf = require("tensorflow", "tensorflow", "tfrecord_dataset")
    with_label = meta["label"] is not None if label is None else bool(label)
    spec = {"image": tf.io.FixedLenFeature([], tf.string)}
    spec.update({key: tf.io.FixedLenFeature([], tf.int64) for key in META})
    if with_label:
        spec["label"] = tf.io.FixedLenFeature([], tf.string)

    def decode(raw, part):
        info = meta[part]
        values = tf.io.decode_raw(raw, tf.dtypes.as_dtype(info["dtype"]), little_endian=True)
        return tf.reshape(values, info["shape"])

    def parse(serialised):
        ex = tf.io.parse_single_example(serialised, spec)
        x = decode(ex["image"], "image")
        return (x, decode(ex["label"], "label")) if with_label else x

    files = [os.path.join(directory, n) for n in shards]
    return tf.data.TFRecordDataset(files).map(parse)
