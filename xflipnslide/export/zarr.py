"""Tile stores: tiles written to Zarr whole or not at all, and opened only
when whole.

:func:`to_zarr` writes through :mod:`xflipnslide.atomic` (a fresh hidden
store beside the target, moved into place when complete) with the tile-store
encoding (:func:`xflipnslide.zarr_encoding`), and writes last, into the
store's attrs, a completion record: how many chunks zarr holds for each
array. :func:`open_tiles` compares that record with zarr's own count of
initialised chunks (``Array.nchunks_initialized``, a listing of the store:
no pixel is read) and refuses a store whose writer stopped before the end
(no record) or that lost chunks since (deleted, or not copied), which
xarray would otherwise read as fill values (NaN or 0 tiles, every transform
code 0) without a word.
"""

from __future__ import annotations

import json
import os
import warnings
from collections.abc import Hashable
from typing import Any

import numpy as np
import xarray as xr

from .. import schema
from .._core.schedule import keyed, memory_size, write_by_chunk_rows
from .._core.tiling import regular_tile_chunks, write_by_rows
from ..errors import IncompleteStoreError, InvalidParameterError
from . import atomic
from .layout import scene_parts

__all__ = [
    "COMPLETE",
    "TILE_STORE",
    "ZSTD_LEVEL",
    "is_tile_store",
    "open_tiles",
    "to_zarr",
    "zarr_encoding",
]

#: The completion record in a tile store's root attrs, written last by
#: :func:`to_zarr`: ``{"chunks": {array name: number of chunks written}}``.
#: It marks a store this package wrote (the only stores ``overwrite=True``
#: replaces); :func:`open_tiles` drops it from the attrs it returns.
COMPLETE = schema.COMPLETE

#: Zstandard level of tile stores: measured on real Landsat tiles
#: (``benchmarks/bench_stores.py``), level 1 writes 3-4x faster than Zarr's
#: default zstd and reads as fast, for stores 5-15 % larger.
ZSTD_LEVEL = 1

#: ``to_zarr`` keywords that would write part of a store, elsewhere or later.
_REFUSED = ("store", "mode", "group", "append_dim", "region", "compute")
# zarr-python 3 warns on every consolidated write; xarray asks for one.
CONSOLIDATED_NOTICE = "Consolidated metadata is currently not part"


def zarr_encoding(tiles: xr.DataArray | xr.Dataset, *, name: Hashable = schema.IMAGE) -> dict:
    """The Zarr encoding for a tile store: Zstandard level 1 on every tiled
    variable (a DataArray is written as ``name``).

    Examples
    --------
    >>> import os, tempfile, xflipnslide
    >>> scene = xflipnslide.open_image(xflipnslide.sample_scene_path())
    >>> tiles = scene.isel(y=slice(0, 128), x=slice(0, 128)).fns.tile(64)
    >>> xflipnslide.zarr_encoding(tiles)
    {'image': {'compressors': (ZstdCodec(level=1, checksum=False),)}}
    >>> path = os.path.join(tempfile.mkdtemp(), "tiles.zarr")
    >>> store = tiles.to_dataset(name="image").to_zarr(
    ...     path, encoding=xflipnslide.zarr_encoding(tiles), consolidated=False
    ... )
    """
    from zarr.codecs import ZstdCodec

    if isinstance(tiles, xr.DataArray):
        names = [tiles.name if tiles.name is not None else name]
    else:
        names = [n for n, v in tiles.data_vars.items() if schema.TILE_DIM in v.dims]
    return {n: {"compressors": (ZstdCodec(level=ZSTD_LEVEL),)} for n in names}


def to_zarr(
    tiles: xr.DataArray | xr.Dataset,
    path: str | os.PathLike,
    *,
    overwrite: bool = False,
    name: Hashable = schema.IMAGE,
    memory: int | str | None = None,
    **kwargs: Any,
) -> str:
    """Write tiles (or a map) to a Zarr store atomically, with a completion
    record.

    The store is written under a fresh hidden name beside ``path`` and moved
    into place when complete, so an interrupted write (Ctrl-C, SIGTERM, a
    full disk) leaves no store and nothing else changed. Read it back with
    :func:`open_tiles`, which checks it is whole.

    Parameters
    ----------
    tiles
        Output of :func:`xflipnslide.tile` (in memory or lazy; a subset, or
        tiles reopened from a store), or a collection of many scenes
        (``docs/collections.md``): each scene's geometry is checked, and its
        geometry and CRS travel in ``fns_scenes``, so the reopened store
        (:func:`open_tiles` or plain :func:`xarray.open_zarr`) gives every
        scene back with :func:`~xflipnslide.collection.scene_tiles`. A
        DataArray is written as the variable ``name``. A map without a
        ``tile`` dim (``predict``'s output, a preprocessed scene) is
        written chunk row by chunk row, so a lazy one streams in bands of
        rows whatever its size (``docs/inference.md``); open it with
        :func:`xarray.open_zarr` (or :func:`open_tiles`, which checks the
        record first).
    path
        The store to create (a local folder, ``.zarr`` by convention).
    overwrite
        Replace ``path`` if it is a tile store written by this function
        (never anything else).
    name
        Variable name for a DataArray without a name.
    memory
        What the write may hold of lazy data (on dask's threaded or
        synchronous scheduler): bytes or a string such as ``"2GiB"``.
        Rows of windows overlap, so the input chunks a row of tiles reads
        are read again by the next rows; past ``memory``, those needed
        latest are dropped and computed again when needed (read again from
        their source), so memory stays near it whatever the scene's size,
        for some recomputation (``docs/scale.md``). Default: the
        ``xflipnslide.memory`` dask config value, else ``"auto"`` (a
        quarter of this machine's memory). A ``dask.distributed`` cluster
        manages its own memory and ignores it.
    **kwargs
        Passed to :meth:`xarray.Dataset.to_zarr` (``zarr_format``,
        ``consolidated``, ``write_empty_chunks``, ...). ``encoding`` is
        merged over :func:`xflipnslide.zarr_encoding` (Zstandard level 1).
        ``mode``, ``group``, ``append_dim``, ``region`` and ``compute`` are
        refused: a tile store is written whole.

    Returns
    -------
    str
        ``path``.

    Raises
    ------
    InvalidParameterError
        ``path`` exists (without ``overwrite``) or is not a tile store, its
        folder is missing or not writable, or a refused keyword is given;
        all before anything is computed.

    Examples
    --------
    >>> import os, tempfile, xflipnslide
    >>> scene = xflipnslide.open_image(xflipnslide.sample_scene_path())
    >>> tiles = scene.isel(y=slice(0, 128), x=slice(0, 128)).fns.tile(64)
    >>> path = tiles.fns.to_zarr(os.path.join(tempfile.mkdtemp(), "tiles.zarr"))
    >>> back = xflipnslide.open_tiles(path)
    >>> back.image.dims, back.image.dtype.name
    (('tile', 'band', 'y', 'x'), 'uint16')
    >>> bool((back.image == tiles).all()), back.band.values.tolist()
    (True, ['red', 'green', 'blue'])
    """
    memory_size(memory)  # a bad size is refused before anything is written
    refused = [k for k in _REFUSED if k in kwargs]
    if refused:
        raise InvalidParameterError(
            f"to_zarr writes a whole tile store; it takes no {', '.join(refused)}= (write a new "
            "store, or use xarray's own to_zarr for partial writes)"
        )
    if isinstance(tiles, xr.DataArray):
        tiles = tiles.to_dataset(name=tiles.name if tiles.name is not None else name)
    is_map = schema.TILE_DIM not in tiles.dims
    if not is_map:
        scene_parts(tiles, "to_zarr")  # each scene's geometry checked
    ds = _portable_text(_without_store_encoding(tiles), kwargs.get("zarr_format"))
    for var, v in list(ds.variables.items()):  # a lazy subset's uneven chunks, made ones Zarr takes
        data = regular_tile_chunks(v.data) if v.dims[:1] == (schema.TILE_DIM,) else v.data
        if data is not v.data:
            ds[var] = v.copy(data=data)
    # What is written in rows (a map's rasters, with a mask beside it; the
    # arrays along tile) keeps its chunk keys through graph optimisation.
    in_rows = {
        n: v.copy(data=keyed(v.data))
        for n, v in ds.variables.items()
        if (v.ndim >= 2 if is_map else v.dims[:1] == (schema.TILE_DIM,))
    }
    ds = ds.assign_coords({n: v for n, v in in_rows.items() if n in ds.coords})
    ds = ds.assign({n: v for n, v in in_rows.items() if n in ds.data_vars})
    stored = [v.data for v in in_rows.values()]
    ds.attrs = {k: v for k, v in ds.attrs.items() if k != COMPLETE}
    encoding = zarr_encoding(ds)
    if kwargs.get("zarr_format") == 2:  # the same Zstandard level, as a numcodecs codec
        from numcodecs import Zstd

        encoding = {var: {"compressors": (Zstd(level=ZSTD_LEVEL),)} for var in encoding}
    for var, options in (kwargs.pop("encoding", None) or {}).items():
        encoding[var] = {**encoding.get(var, {}), **options}
    consolidated = kwargs.get("consolidated")
    writing = atomic.write_dir(path, TILE_STORE, overwrite=overwrite)
    with writing as tmp, warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=CONSOLIDATED_NOTICE)

        def write(compute: bool):
            return ds.to_zarr(tmp, mode="w", encoding=encoding, compute=compute, **kwargs)

        # Band by band of rows: memory a band of the scene, not the scene.
        if is_map:
            write_by_chunk_rows(write, stored, memory)
        else:
            write_by_rows(write, stored, np.asarray(ds[schema.ROW].values), memory)
        _write_record(tmp, consolidated is not False)
    return os.fspath(path)


#: Encoding keys that belong to the store a variable was read from (its codecs,
#: chunking, on-disk dtype): a tile store chooses its own.
_STORE_ENCODING = (
    "compressors",
    "compressor",
    "filters",
    "serializer",
    "shards",
    "chunks",
    "preferred_chunks",
    "dtype",
    "chunk_key_encoding",
)


def _without_store_encoding(tiles: xr.Dataset) -> xr.Dataset:
    """A shallow copy of ``tiles`` whose variables forget the codecs of the store
    they were read from (a Zarr v2 codec on a v3 store fails to write)."""
    ds = tiles.copy(deep=False)
    for var in ds.variables.values():
        var.encoding = {k: v for k, v in var.encoding.items() if k not in _STORE_ENCODING}
    return ds


def _portable_text(ds: xr.Dataset, zarr_format: int | None) -> xr.Dataset:
    """``ds`` with its text in the form Zarr stores stably.

    Fixed-width text (numpy ``<U5``, as ``np.array(["red", ...])`` gives band
    labels) has no Zarr v3 data type: zarr stores it in a form it warns may
    change, unreadable by other Zarr libraries (``UnstableSpecificationWarning``).
    Written as Python strings, it is the variable-length ``string`` type,
    which reads back as ``str``. Zarr v2 has a fixed-width type, kept.
    Text coordinates are small, and xarray loads lazy ones to pick a dtype
    anyway, with a warning: they are loaded here (in memory, a no-op).
    """

    def text(v):
        return v.astype(object) if v.dtype.kind == "U" and zarr_format != 2 else v

    data_vars = {n: text(v) for n, v in ds.data_vars.items() if v.dtype.kind == "U"}
    # Each coordinate's own variable: a DataArray would carry (and compute)
    # the lazy coordinates along its dims too (a preprocessed tile set's
    # valid_fraction: a whole pass over the scene before the write).
    coords = {n: text(c.variable).compute() for n, c in ds.coords.items() if c.dtype.kind in "OU"}
    return ds.assign(data_vars).assign_coords(coords)


def _write_record(path: str, consolidate: bool) -> None:
    """Count each array's chunks and write the completion record (last)."""
    import zarr

    group = zarr.open_group(path, mode="r+", use_consolidated=False)
    chunks = {name: int(array.nchunks_initialized) for name, array in group.arrays()}
    group.attrs[COMPLETE] = {"chunks": dict(sorted(chunks.items()))}
    if consolidate:
        zarr.consolidate_metadata(path)


def _root_attrs(path: str) -> dict:
    """The root attrs of a local Zarr store (v3 or v2), read as plain JSON."""
    for meta in ("zarr.json", ".zattrs"):
        try:
            with open(os.path.join(path, meta)) as f:
                attrs = json.load(f)
        except (OSError, ValueError):
            continue
        attrs = attrs.get("attributes", {}) if meta == "zarr.json" else attrs
        if isinstance(attrs, dict):
            return attrs
    return {}


def is_tile_store(path: str | os.PathLike) -> bool:
    """True for a local folder holding a complete tile store written by
    :func:`to_zarr` (its completion record at the root)."""
    path = os.fspath(path)
    if not os.path.isdir(path):
        return False
    record = _root_attrs(path).get(COMPLETE)
    return isinstance(record, dict) and isinstance(record.get("chunks"), dict)


#: Tile stores, to the atomic writer: ``overwrite=True`` replaces only these.
TILE_STORE = atomic.OutputKind("a tile store", is_tile_store)


def open_tiles(path: str | os.PathLike, **open_zarr_kwargs: Any) -> xr.Dataset:
    """Open a tile store lazily, after checking it is whole.

    Parameters
    ----------
    path
        A store written by :func:`to_zarr` (``tiles.fns.to_zarr``, or the
        ``xflipnslide tile`` command).
    **open_zarr_kwargs
        Passed to :func:`xarray.open_zarr` (``chunks``, ``storage_options``,
        ...).

    Returns
    -------
    Dataset
        The tiles, dask-backed, as written (the completion record is not
        among the attrs).

    Raises
    ------
    IncompleteStoreError
        The store has no completion record (its writer stopped before the
        end, or it was written without :func:`to_zarr`), or holds fewer (or
        other) chunks than were written: deleted, or not copied. Only the
        store's listing is read for this check, no pixel.
    InvalidParameterError
        No Zarr store at ``path``.

    Examples
    --------
    >>> import os, tempfile, xflipnslide
    >>> scene = xflipnslide.open_image(xflipnslide.sample_scene_path())
    >>> tiles = scene.isel(y=slice(0, 128), x=slice(0, 128)).fns.tile(64)
    >>> folder = tempfile.mkdtemp()
    >>> path = tiles.fns.to_zarr(os.path.join(folder, "tiles.zarr"))
    >>> xflipnslide.open_tiles(path).sizes
    Frozen({'tile': 13, 'band': 3, 'y': 64, 'x': 64})

    A store written some other way (or whose writer stopped) is refused:

    >>> plain = os.path.join(folder, "plain.zarr")
    >>> store = tiles.to_dataset(name="image").to_zarr(plain, consolidated=False)
    >>> xflipnslide.open_tiles(plain)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    xflipnslide.errors.IncompleteStoreError: ...plain.zarr has no completion record: ...
    """
    path = os.fspath(path)
    if "group" in open_zarr_kwargs:
        raise InvalidParameterError("open_tiles opens a whole tile store; it takes no group=")
    check_complete(
        path,
        storage_options=open_zarr_kwargs.get("storage_options"),
        zarr_format=open_zarr_kwargs.get("zarr_format"),
    )
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=CONSOLIDATED_NOTICE)
        ds = xr.open_zarr(path, **open_zarr_kwargs)
    ds.attrs.pop(COMPLETE, None)
    return ds


def check_complete(
    path: str, *, storage_options: dict | None = None, zarr_format: int | None = None
) -> None:
    """Raise :class:`~xflipnslide.IncompleteStoreError` unless the store at
    ``path`` holds every chunk its completion record counts."""
    import zarr

    try:
        group = zarr.open_group(
            path,
            mode="r",
            use_consolidated=False,
            storage_options=storage_options,
            zarr_format=zarr_format,
        )
    except (FileNotFoundError, zarr.errors.NodeNotFoundError) as exc:
        raise InvalidParameterError(
            f"no Zarr store at {path}: give the folder written by to_zarr or xflipnslide tile"
        ) from exc
    record = group.attrs.get(COMPLETE)
    counts = record.get("chunks") if isinstance(record, dict) else None
    if not isinstance(counts, dict):
        raise IncompleteStoreError(
            f"{path} has no completion record: its writer stopped before the end, or it was "
            "not written with xflipnslide's to_zarr. Write the tiles again with "
            "tiles.fns.to_zarr(path, overwrite=True); a store you trust opens with "
            "xarray.open_zarr"
        )
    problems = []
    for name, written in counts.items():
        try:
            array = group[name]
        except KeyError:
            problems.append(f"the array {name!r} is missing")
            continue
        found = int(array.nchunks_initialized)
        if found < written:
            problems.append(f"{written - found} of the {written} chunks of {name!r} are missing")
        elif found > written:
            problems.append(f"{name!r} holds {found} chunks where {written} were written")
    if problems:
        raise IncompleteStoreError(
            f"{path} is not the store that was written: {'; '.join(problems)} (deleted, changed "
            "or not copied since). Copy the store again, or write the tiles again with "
            "tiles.fns.to_zarr(path, overwrite=True)"
        )
