"""Tiles out to the formats other tools read, and tile stores.

* :func:`export_chips` (:mod:`.chips`) streams tiles chunk by chunk into
  georeferenced GeoTIFF chips (:mod:`.geotiff`), sharded TFRecord
  (:mod:`.tfrecord`, written without TensorFlow; read back with
  :func:`tfrecord_dataset`) or WebDataset tar shards (:mod:`.webdataset`);
  :mod:`.layout` is what an export folder holds (manifest, names).
* :func:`~.zarr.to_zarr` and :func:`~.zarr.open_tiles` (:mod:`.zarr`) write
  and reopen tile stores.
* Every output goes through one atomic writer (:mod:`.atomic`).
"""

from __future__ import annotations

from .chips import export_chips
from .layout import FORMATS, MARKER, is_export
from .tfrecord import FEATURE_DESCRIPTION, tfrecord_dataset

__all__ = [
    "FEATURE_DESCRIPTION",
    "FORMATS",
    "MARKER",
    "export_chips",
    "is_export",
    "tfrecord_dataset",
]
