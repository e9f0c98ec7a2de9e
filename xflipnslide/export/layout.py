"""What an export folder holds: its manifest, the names of its chips and
shards, the layout of each variable's chips, and the writer each format
builds on.

The manifest (``fns_export.json``: format, count, shard size, CRS and, for
the image and the label, dtype, shape, dims and the labels of every extra
dim, such as the dates of a time stack) is written last, so a folder that
holds it is a whole export; ``overwrite=True`` replaces only such folders,
and :func:`~xflipnslide.tfrecord_dataset` reads dtypes and shapes from it.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import re
from collections.abc import Hashable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import xarray as xr

from .. import schema
from ..collection.format import scene_parts as collection_parts
from ..errors import InvalidParameterError
from ..schema import COL, GRID, ROW, SCENE, TILE_DIM, TRANSFORM, VALID_FRACTION
from .atomic import OutputKind

__all__ = [
    "EXPORT",
    "FORMATS",
    "MARKER",
    "META",
    "ChipLayout",
    "ScenePart",
    "ShardedWriter",
    "Writer",
    "chip_arrays",
    "chip_name",
    "file_id",
    "is_export",
    "label_texts",
    "read_manifest",
    "scene_parts",
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


@dataclass(frozen=True)
class ChipLayout:
    """How one variable's tiles lie in its chips: ``dims`` (the dims after
    ``tile``: the extra dims in the tiles' order, then the two spatial
    dims), ``shape``, ``dtype`` and ``coords``, the text label of each entry
    of every extra dim that has a coordinate (dates as ISO dates)."""

    dims: tuple[str, ...]
    shape: tuple[int, ...]
    dtype: str
    coords: dict[str, list[str]]

    @classmethod
    def of(cls, tiles: xr.DataArray, spatial: Sequence[Hashable]) -> ChipLayout:
        """The layout of ``tiles`` as :func:`chip_arrays` orders them."""
        extra = [d for d in tiles.dims[1:] if d not in spatial]
        coords = {str(d): label_texts(tiles[d].values) for d in extra if d in tiles.coords}
        return cls(tuple(map(str, tiles.dims[1:])), tiles.shape[1:], tiles.dtype.name, coords)

    @property
    def extra(self) -> tuple[str, ...]:
        """The dims besides the spatial ones, in order."""
        return self.dims[:-2]

    def _band_labels(self) -> list[tuple[str, ...]]:
        labels = [
            self.coords.get(d, [str(i) for i in range(n)])
            for d, n in zip(self.extra, self.shape[:-2])
        ]
        return list(itertools.product(*labels))

    def bands(self) -> list[str]:
        """The band descriptions of a chip that holds the extra dims as bands,
        folded in C order (the first extra dim slowest, so a ``(time, band)``
        tile is time-major): each band's labels joined by ``/``, e.g.
        ``"2023-06-01/red"``; an extra dim without a coordinate gives its
        index. A tile without extra dims is one band, without a description."""
        return ["/".join(parts) for parts in self._band_labels()]

    def band_tags(self) -> list[dict[str, str]]:
        """Per band of the folded chip, its label along each extra dim."""
        return [dict(zip(self.extra, parts)) for parts in self._band_labels()]

    def manifest(self) -> dict[str, Any]:
        """The manifest's entry for this variable."""
        return {
            "dtype": self.dtype,
            "shape": list(self.shape),
            "dims": list(self.dims),
            "coords": self.coords,
        }


@dataclass(frozen=True)
class ScenePart:
    """One scene of a tile set: its id (``None`` for tiles of one scene without
    one), the positions of its tiles in the tile set, its own single-scene
    tile set and that set's geometry (checked)."""

    id: str | None
    where: np.ndarray
    tiles: Any
    geometry: schema.TileGeometry


def scene_parts(tiles, what: str) -> list[ScenePart]:
    """The scenes of ``tiles``, each as its own tile set with its geometry
    read (and so checked) by :func:`schema.read_geometry`: one part for tiles
    of one scene, one per scene for a collection (through
    :func:`~xflipnslide.collection.scene_tiles`). Reads coordinates, never
    pixels."""
    pairs = collection_parts(tiles)
    return [
        ScenePart(i, where, part, schema.read_geometry(part, what=what)) for i, where, part in pairs
    ]


def chip_arrays(
    tiles, image: Hashable, label: Hashable | None, spatial: Sequence[Hashable]
) -> tuple[xr.DataArray, xr.DataArray | None]:
    """The image and label tiles as chips hold them: ``tile`` first, then the
    extra dims in the tiles' order, the spatial dims last."""
    x, y = schema.image_and_label(tiles, image, label)

    def order(a: xr.DataArray) -> xr.DataArray:
        return a.transpose(schema.TILE_DIM, ..., *[d for d in spatial if d in a.dims])

    return order(x), (order(y) if y is not None else None)


def label_texts(values: np.ndarray) -> list[str]:
    """The labels of a coordinate as text: dates in ISO 8601 at the coarsest
    unit that keeps every value exact (``2023-06-01``, or with the time of
    day where one has it), bytes decoded, anything else ``str``."""
    values = np.asarray(values)
    if values.dtype.kind == "M":
        for unit in ("D", "s", "ms", "us"):
            if (values.astype(f"M8[{unit}]") == values).all():
                return np.datetime_as_string(values, unit=unit).tolist()
        return np.datetime_as_string(values).tolist()
    return [v.decode() if isinstance(v, bytes) else str(v) for v in values.tolist()]


#: Scene ids that may be part of a file name.
_SAFE_ID = re.compile(r"[A-Za-z0-9._-]+")


def file_id(scene: str, what: str, fix: str) -> str:
    """``scene`` where a file is named by it (``what``), else an error saying ``fix``."""
    if not _SAFE_ID.fullmatch(scene) or scene in (".", ".."):
        raise InvalidParameterError(
            f"the scene id {scene!r} cannot be part of a file name ({what}): use ids of "
            f"letters, digits, '.', '_' and '-'{fix}"
        )
    return scene


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
    folder); each format sets :attr:`format` and implements :meth:`write`.
    ``layouts`` holds the :class:`ChipLayout` of the image (``schema.IMAGE``)
    and, when exported, of the label (``schema.LABEL``); ``parts`` the
    scenes (:func:`scene_parts`) and ``crs`` each one's CRS, in that order."""

    format = ""

    def __init__(
        self,
        root: str,
        tiles,
        g: schema.TileGeometry,
        *,
        shard_size: int,
        crs: list,
        layouts: dict[str, ChipLayout],
        parts: list[ScenePart],
    ) -> None:
        self.root, self.tiles, self.g, self.shard_size = root, tiles, g, shard_size
        self.layouts, self.parts, self.crs = layouts, parts, crs
        self.n = len(g)
        #: The part (scene) of each tile, by position in ``parts``.
        self.part_of = np.zeros(self.n, dtype=np.intp)
        for i, p in enumerate(parts):
            self.part_of[p.where] = i
        self.meta = {
            name: np.asarray(tiles[name].values)
            for name in (GRID, VALID_FRACTION)
            if name in tiles.coords
        }

    @classmethod
    def check(cls, layouts: dict[str, ChipLayout], spatial: Sequence[Hashable]) -> None:
        """Refuse, before anything is written, variables this format cannot
        hold (every format takes any shape unless it says otherwise)."""

    def manifest(self, part: str) -> dict[str, Any]:
        """The manifest's entry for ``part`` (``schema.IMAGE`` or ``schema.LABEL``)."""
        return self.layouts[part].manifest()

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
        tiles carry them, scene id, grid and valid fraction."""
        out: dict[str, Any] = {
            TILE_DIM: int(k),
            ROW: int(self.g.rows[k]),
            COL: int(self.g.cols[k]),
            TRANSFORM: int(self.g.codes[k]),
        }
        scene = self.parts[self.part_of[k]].id
        if scene is not None:
            out[SCENE] = scene
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
