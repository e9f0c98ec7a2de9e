"""TFRecord shards of ``tf.train.Example`` records, written without TensorFlow.

The protobuf encoding of an ``Example`` and the TFRecord framing are a few
dozen lines here; the record checksums come from ``google-crc32c``
(Google's own CRC-32C, a small compiled package, the ``export`` extra).
Reading is TensorFlow's: :func:`tfrecord_dataset`.

Formats, as written:

* protobuf (``tensorflow/core/example/{example,feature}.proto``):
  ``Example{features: Features = 1}``, ``Features{feature: map<string,
  Feature> = 1}`` (each map entry a message ``{key = 1, value = 2}``),
  ``Feature{bytes_list = 1, int64_list = 3}``, ``BytesList{repeated bytes
  value = 1}``, ``Int64List{repeated int64 value = 1 [packed]}``; map
  entries sorted by key, so the bytes of an example do not depend on the
  order features were given;
* TFRecord: ``uint64 length``, ``uint32 masked_crc32c(length)``,
  ``data``, ``uint32 masked_crc32c(data)``, little-endian, where
  ``masked(crc) = ((crc >> 15) | (crc << 17)) + 0xa282ead8`` (mod 2**32).
"""

from __future__ import annotations

import os
import struct
from collections.abc import Iterable
from typing import Any

import numpy as np

from ..errors import InvalidParameterError, require
from ..schema import COL, IMAGE, LABEL, ROW, SCENE, TILE_DIM, TRANSFORM
from .layout import MARKER, META, ShardedWriter, read_manifest, shard_names

__all__ = [
    "FEATURE_DESCRIPTION",
    "TFRecordWriter",
    "bytes_feature",
    "example",
    "int64_feature",
    "masked_crc",
    "record",
    "tfrecord_dataset",
]

SUFFIX = ".tfrecord"

#: The ``tf.train.Example`` features of the TFRecord export (for
#: ``tf.io.parse_single_example``): raw little-endian bytes, their shape and
#: dtype name, and the tile's metadata. ``label*`` only when exported. The
#: shape is the whole tile's, in the dims the manifest names (a time stack's
#: ``(time, band, y, x)`` stays four-dimensional).
FEATURE_DESCRIPTION = {
    IMAGE: "bytes: the tile's raw values, C order, little-endian",
    f"{IMAGE}_shape": "int64 list: the tile's shape, e.g. (band, y, x) or (time, band, y, x)",
    f"{IMAGE}_dtype": "bytes: numpy dtype name, e.g. b'float32'",
    LABEL: "bytes: the label tile's raw values (optional)",
    f"{LABEL}_shape": "int64 list (optional)",
    f"{LABEL}_dtype": "bytes (optional)",
    TILE_DIM: "int64: index in the tile set",
    ROW: "int64: window origin row in scene pixels",
    COL: "int64: window origin column",
    TRANSFORM: "int64: D4 code 0-7",
    SCENE: "bytes: the tile's scene id (tiles that record scene ids only)",
}


# --- protobuf -------------------------------------------------------------------


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


def bytes_feature(value: bytes) -> bytes:
    """An encoded ``Feature`` holding one bytes value."""
    return _field(1, _field(1, value))  # Feature.bytes_list = BytesList{value}


def int64_feature(values: Iterable[int]) -> bytes:
    """An encoded ``Feature`` holding int64 values (packed)."""
    packed = b"".join(_varint(int(v)) for v in values)
    return _field(3, _field(1, packed))  # Feature.int64_list = Int64List{packed value}


def example(features: dict[str, bytes]) -> bytes:
    """A serialised ``tf.train.Example`` from encoded ``Feature`` messages."""
    entries = b"".join(
        _field(1, _field(1, key.encode()) + _field(2, value))
        for key, value in sorted(features.items())
    )
    return _field(1, entries)  # Example.features = Features{map entries}


# --- TFRecord framing -------------------------------------------------------------


def masked_crc(data: bytes) -> bytes:
    """TFRecord's masked CRC-32C of ``data``, as its 4 little-endian bytes."""
    import google_crc32c

    crc = google_crc32c.value(data)
    masked = (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF
    return struct.pack("<I", masked)


def record(data: bytes) -> bytes:
    """One TFRecord: length, its masked CRC-32C, data, its masked CRC-32C."""
    length = struct.pack("<Q", len(data))
    return length + masked_crc(length) + data + masked_crc(data)


def _array_features(prefix: str, a: np.ndarray) -> dict[str, bytes]:
    a = np.ascontiguousarray(a)
    little = a.astype(a.dtype.newbyteorder("<"), copy=False)
    return {
        prefix: bytes_feature(little.tobytes()),
        f"{prefix}_shape": int64_feature(a.shape),
        f"{prefix}_dtype": bytes_feature(a.dtype.name.encode()),
    }


class TFRecordWriter(ShardedWriter):
    format = "tfrecord"
    suffix = SUFFIX

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        require("google_crc32c", "export", "export_chips(format='tfrecord')")

    def open(self, path):
        return open(path, "wb")  # one shard, closed by close()

    def write(self, k, image, label):
        meta = self.tile_meta(k)
        features = _array_features(IMAGE, image)
        if label is not None:
            features.update(_array_features(LABEL, label))
        for key in META:
            features[key] = int64_feature([meta[key]])
        if SCENE in meta:
            features[SCENE] = bytes_feature(meta[SCENE].encode())
        self.target(k).write(record(example(features)))


# --- reading --------------------------------------------------------------------


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
    MissingDependencyError
        Without TensorFlow: ``pip install "xflipnslide[tensorflow]"``.

    Examples
    --------
    Writing needs no TensorFlow; reading does (the check below reads only
    where it is installed):

    >>> import importlib.util, os, tempfile, xflipnslide
    >>> scene = xflipnslide.open_image(xflipnslide.sample_scene_path())
    >>> tiles = scene.isel(y=slice(0, 128), x=slice(0, 128)).fns.tile(64)
    >>> out = tiles.fns.export_chips(os.path.join(tempfile.mkdtemp(), "tfr"), format="tfrecord")
    >>> sorted(os.listdir(out))
    ['fns_export.json', 'shard-00000.tfrecord']
    >>> def first_tile_matches(directory):
    ...     if importlib.util.find_spec("tensorflow") is None:
    ...         return True  # nothing to read with
    ...     x = next(iter(xflipnslide.tfrecord_dataset(directory)))
    ...     return x.dtype.name == "uint16" and bool((x.numpy() == tiles[0].values).all())
    >>> first_tile_matches(out)
    True
    """
    directory = os.fspath(directory)
    meta = read_manifest(directory)
    if meta is None:
        raise InvalidParameterError(
            f"{directory} is not an export of export_chips (no readable {MARKER} in it): export "
            "the tiles with export_chips(tiles, directory, format='tfrecord'), or read other "
            "TFRecord files with tf.data.TFRecordDataset(files)"
        )
    if meta["format"] != TFRecordWriter.format:
        raise InvalidParameterError(
            f"{directory} holds a {meta['format']!r} export, not TFRecord: export with "
            "format='tfrecord'"
        )
    shards = shard_names(directory, meta, SUFFIX)
    missing = [n for n in shards if not os.path.isfile(os.path.join(directory, n))]
    if missing:
        raise InvalidParameterError(
            f"{directory} is missing {len(missing)} of its {len(shards)} shards ({missing[0]}, "
            "...): copy the export again, or export the tiles again"
        )
    tf = require("tensorflow", "tensorflow", "tfrecord_dataset")
    with_label = meta[LABEL] is not None if label is None else bool(label)
    spec = {IMAGE: tf.io.FixedLenFeature([], tf.string)}
    spec.update({key: tf.io.FixedLenFeature([], tf.int64) for key in META})
    if with_label:
        spec[LABEL] = tf.io.FixedLenFeature([], tf.string)

    def decode(raw, part):
        info = meta[part]
        values = tf.io.decode_raw(raw, tf.dtypes.as_dtype(info["dtype"]), little_endian=True)
        return tf.reshape(values, info["shape"])

    def parse(serialised):
        ex = tf.io.parse_single_example(serialised, spec)
        x = decode(ex[IMAGE], IMAGE)
        return (x, decode(ex[LABEL], LABEL)) if with_label else x

    files = [os.path.join(directory, n) for n in shards]
    return tf.data.TFRecordDataset(files).map(parse)
