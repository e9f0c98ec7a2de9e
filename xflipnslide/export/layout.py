"""What an export folder holds: its manifest, the names of its chips and
shards, and the writer each format builds on.

The manifest (``fns_export.json``: format, count, shard size, dtypes,
shapes, CRS) is written last, so a folder that holds it is a whole export;
``overwrite=True`` replaces only such folders, and
:func:`~xflipnslide.tfrecord_dataset` reads dtypes and shapes from it.
"""

from __future__ import annotations

import contextlib
import json
import os
from typing import Any

import numpy as np

from .. import schema
from ..schema import COL, GRID, ROW, TILE_DIM, TRANSFORM, VALID_FRACTION
from .atomic import OutputKind

__all__ = [
    "EXPORT",
    "FORMATS",
    "MARKER",
    "META",
    "ShardedWriter",
    "Writer",
    "chip_name",
    "is_export",
    "read_manifest",
    "shard_names",
    "write_manifest",
]

FORMATS = ("geotiff", "tfrecord", "webdataset")
#: The per-tile integers every format records, named as in the tile format.
META = (TILE_DIM, ROW, COL, TRANSFORM)
#: The manifest every export writes last; ``overwrite=True`` only replaces
#: folders that hold it.
MARKER = schema.EXPORT_MANIFEST


def is_export(path: str | os.PathLike) -> bool:
    """True for a folder holding an export of :func:`export_chips` (its
    manifest ``fns_export.json``)."""
    return read_manifest(os.fspath(path)) is not None


#: Exports, to the atomic writer: ``overwrite=True`` replaces only these.
EXPORT = OutputKind("an export", is_export)


def read_manifest(directory: str) -> dict | None:
    """The manifest of the export in ``directory``, or ``None`` when it holds
    none (or one of no known format)."""
    try:
        with open(os.path.join(directory, MARKER)) as f:
            meta = json.load(f)
    except (OSError, ValueError):
        return None
    return meta if isinstance(meta, dict) and meta.get("format") in FORMATS else None


def write_manifest(directory: str, meta: dict[str, Any]) -> None:
    with open(os.path.join(directory, MARKER), "w") as f:
        json.dump(meta, f, indent=1)


def chip_name(k: int, n: int) -> str:
    """Tile ``k`` of ``n``, zero-padded so that names sort in tile order."""
    return f"{k:0{max(len(str(n - 1)), 1)}d}"


def _shard_name(k: int, suffix: str) -> str:
    return f"shard-{k:05d}{suffix}"


def shard_names(directory: str, meta: dict, suffix: str) -> list[str]:
    """The shard files an export holds (from its manifest: count and shard size)."""
    if "shard_size" not in meta:  # written before the manifest recorded it
        return sorted(n for n in os.listdir(directory) if n.endswith(suffix))
    n = -(-int(meta["count"]) // int(meta["shard_size"]))
    return [_shard_name(k, suffix) for k in range(n)]


class Writer:
    """Writes one tile after the other into ``root`` (the export's temporary
    folder); each format sets :attr:`format` and implements :meth:`write`."""

    format = ""

    def __init__(self, root: str, tiles, g: schema.TileGeometry, *, shard_size: int, crs) -> None:
        self.root, self.tiles, self.g, self.shard_size, self.crs = root, tiles, g, shard_size, crs
        self.n = len(g)
        self.meta = {
            name: np.asarray(tiles[name].values)
            for name in (GRID, VALID_FRACTION)
            if name in tiles.coords
        }

    def write(self, k: int, image: np.ndarray, label: np.ndarray | None) -> None:
        raise NotImplementedError

    def close(self) -> None:
        pass

    def abort(self) -> None:
        """Close what is open after a failure; never raises (a full disk fails
        the close too), so the original error is the one reported."""
        with contextlib.suppress(Exception):
            self.close()

    def tile_meta(self, k: int) -> dict[str, Any]:
        """Tile ``k``'s metadata: index, window origin, code and, where the
        tiles carry them, grid and valid fraction."""
        out: dict[str, Any] = {
            TILE_DIM: int(k),
            ROW: int(self.g.rows[k]),
            COL: int(self.g.cols[k]),
            TRANSFORM: int(self.g.codes[k]),
        }
        if GRID in self.meta:
            out[GRID] = str(self.meta[GRID][k])
        if VALID_FRACTION in self.meta:
            out[VALID_FRACTION] = float(self.meta[VALID_FRACTION][k])
        return out


class ShardedWriter(Writer):
    """A writer of ``shard-00000{suffix}``, ... files of ``shard_size`` tiles."""

    suffix = ""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.file = None
        self.shard = -1

    def open(self, path: str):
        raise NotImplementedError

    def target(self, k: int):
        """The open shard that tile ``k`` goes into (opening the next when due)."""
        shard = k // self.shard_size
        if shard != self.shard:
            self.close()
            self.shard = shard
            self.file = self.open(os.path.join(self.root, _shard_name(shard, self.suffix)))
        return self.file

    def close(self) -> None:
        if self.file is not None:
            self.file.close()
            self.file = None
