"""Cloud Optimized GeoTIFFs written in bounded memory, from a lazy or an
in-memory map.

GDAL's COG driver only copies a finished raster (``CreateCopy``), so writing
a COG straight from an array holds the whole array: rioxarray's
``to_raster(driver="COG")`` takes ``.values`` of the map first. Here:

1. the map is written block by block into a tiled GeoTIFF (rioxarray's
   ``to_raster(tiled=True, windowed=True, lock=True)``: for a dask-backed
   map, ``dask.array.store`` with the scheduler's lock — threads, processes
   or a ``dask.distributed`` cluster — so each chunk is computed, written
   and dropped; for an in-memory one, one tile block at a time);
2. GDAL's COG driver copies that file into the COG: it computes the
   overviews from it block by block (into a temporary file) and lays out
   the IFDs, the overviews and then the full-resolution tiles as a COG.

Memory: the chunks being computed and written, plus GDAL's block cache
(``GDAL_CACHEMAX``, bounded by ``import xflipnslide``); never the whole
map. The intermediate GeoTIFF lies beside ``path`` and is removed, whatever
happens. On a remote cluster, ``path`` must be on a file system every
worker writes to.
"""

from __future__ import annotations

import os
import tempfile

import numpy as np

from .._core.schedule import keyed, memory_size, write_by_chunk_rows
from ..errors import InvalidParameterError
from .atomic import OutputKind, write_file

__all__ = ["BLOCKSIZE", "COG", "WRITER_TAG", "to_cog", "write_cog"]

#: The COG's tile size in pixels (GDAL's default for COGs).
BLOCKSIZE = 512
#: The GeoTIFF tag :func:`to_cog` writes: ``overwrite=True`` replaces only
#: COGs that carry it.
WRITER_TAG = ("FNS_WRITER", "xflipnslide to_cog")


def _is_ours(path: str) -> bool:
    import rasterio

    if not os.path.isfile(path):
        return False
    with rasterio.open(path) as f:
        return f.tags().get(WRITER_TAG[0]) == WRITER_TAG[1]


#: COGs written by :func:`to_cog`: the only files its ``overwrite`` replaces.
COG = OutputKind("a COG written by xflipnslide.to_cog", _is_ours)


def to_cog(
    da,
    path,
    *,
    overwrite: bool = False,
    tags: dict | None = None,
    blocksize: int = BLOCKSIZE,
    compress: str = "deflate",
    resampling: str | None = None,
    memory: int | str | None = None,
) -> str:
    """Write a georeferenced map as a Cloud Optimized GeoTIFF, in bounded
    memory: a lazy map (``predict``'s output, say) is computed and written
    block by block, never as a whole; GDAL's COG driver then adds the
    overviews and the COG layout (:mod:`xflipnslide.export.cog`).

    Use it instead of ``rio.to_raster(path, driver="COG")``, which computes
    the whole map into memory first. Written through the package's atomic
    writer: nothing is left behind by a failed or interrupted write.

    Parameters
    ----------
    da : xarray.DataArray
        ``(band, y, x)`` or ``(y, x)`` with rioxarray's CRS and transform
        (``predict``'s map and ``label_map``'s labels have them), numpy- or
        dask-backed. Band descriptions and nodata are written as
        ``rio.to_raster`` writes them.
    path : str or os.PathLike
        The file to write: refused if it exists, unless ``overwrite=True``
        and it is a COG written by this function.
    overwrite : bool
        Replace an earlier output of ``to_cog`` at ``path``.
    tags : dict, optional
        More GeoTIFF tags of the dataset.
    blocksize : int
        Tile size of the COG and its overviews (a multiple of 16).
    compress : str
        GDAL's compression (``"deflate"``, ``"zstd"``, ``"lzw"``, ...).
    resampling : str, optional
        How overviews are computed (GDAL's name). Default: ``"nearest"`` for
        integer maps (labels stay labels), ``"average"`` for floats.
    memory : int or str, optional
        What computing a lazy map may hold, as :func:`xflipnslide.to_zarr`'s
        ``memory`` (bytes, ``"2GiB"``, default ``"auto"``).

    Returns
    -------
    str
        ``path``.

    Raises
    ------
    InvalidParameterError
        Before anything is written: ``path`` exists (and is not ours, or
        ``overwrite`` is not set), the map has no CRS, it has more than one
        dim besides ``y`` and ``x`` (a time stack: write one COG per time
        step), or ``blocksize`` is no multiple of 16.

    Examples
    --------
    >>> import os, tempfile, numpy as np, xarray as xr, rioxarray, rasterio
    >>> import xflipnslide
    >>> scene = xflipnslide.open_image(xflipnslide.sample_scene_path(), chunks=256)
    >>> path = os.path.join(tempfile.mkdtemp(), "scene.tif")
    >>> xflipnslide.to_cog(scene, path, blocksize=256)  # doctest: +ELLIPSIS
    '.../scene.tif'
    >>> with rasterio.open(path) as f:
    ...     f.tags(ns="IMAGE_STRUCTURE")["LAYOUT"], f.count, f.overviews(1)
    ('COG', 3, [2, 4])
    """
    _check_map(da, blocksize)  # before the target is touched
    memory_size(memory)
    with write_file(path, COG, overwrite=overwrite) as tmp:
        write_cog(
            da,
            tmp,
            tags={**(tags or {}), WRITER_TAG[0]: WRITER_TAG[1]},
            blocksize=blocksize,
            compress=compress,
            resampling=resampling,
            memory=memory,
        )
    return os.fspath(path)


def _check_map(da, blocksize: int) -> None:
    """Refuse, before anything is written, what a COG cannot hold: more than
    one dim besides the two spatial ones (a time stack of bands or classes),
    no CRS (the file would not be georeferenced), a bad ``blocksize``."""
    import rioxarray  # noqa: F401  (registers .rio)

    if blocksize <= 0 or blocksize % 16:
        raise InvalidParameterError(
            f"blocksize must be a positive multiple of 16 (a GeoTIFF tile side); got {blocksize}"
        )
    spatial = (da.rio.y_dim, da.rio.x_dim)
    other = [d for d in da.dims if d not in spatial]
    if len(other) > 1:
        raise InvalidParameterError(
            f"a COG holds one stack of bands, but this map has the dims {da.dims} "
            f"({len(other)} besides {spatial}, a time stack say): write one COG per step, "
            f"e.g. of da.isel({other[0]}=i)"
        )
    if da.rio.crs is None:
        raise InvalidParameterError(
            "this map has no CRS, so its COG would not be georeferenced: set the scene's "
            'with da.rio.write_crs("EPSG:...") first'
        )


def write_cog(
    da,
    path: str,
    *,
    tags: dict | None = None,
    blocksize: int = BLOCKSIZE,
    compress: str = "deflate",
    resampling: str | None = None,
    memory: int | str | None = None,
) -> str:
    """Write a georeferenced DataArray to ``path`` as a Cloud Optimized GeoTIFF,
    streaming (see the module's notes): a lazy map is computed chunk by
    chunk, never as a whole.

    Parameters
    ----------
    da
        ``(band, y, x)`` or ``(y, x)``, with rioxarray's CRS and transform;
        numpy- or dask-backed. Band descriptions, nodata and attrs are
        written as ``rio.to_raster`` writes them.
    path
        The file to write (replaced if it exists: callers go through
        :func:`xflipnslide.export.atomic.write_file`).
    tags
        GeoTIFF tags of the dataset.
    blocksize
        Tile size of the COG and of its overviews (a multiple of 16).
    compress
        GDAL's compression of the COG (``"deflate"``, ``"zstd"``, ``"lzw"``,
        ``"none"``, ...).
    resampling
        How overviews are computed: GDAL's name (``"nearest"``,
        ``"average"``, ``"mode"``, ...). Default: ``"nearest"`` for integer
        maps (class labels stay labels), ``"average"`` for floats.
    memory
        What computing a lazy map may hold (:func:`xflipnslide.to_zarr`).

    Returns
    -------
    str
        ``path``.

    Examples
    --------
    >>> import os, tempfile, numpy as np, rasterio, xarray as xr, rioxarray
    >>> from xflipnslide.export.cog import write_cog
    >>> da = xr.DataArray(np.arange(2 * 600 * 700, dtype="float32").reshape(2, 600, 700),
    ...                   dims=("band", "y", "x"),
    ...                   coords={"y": 1e5 - 30.0 * np.arange(600), "x": 4e5 + 30.0 * np.arange(700)})
    >>> da = da.rio.write_crs("EPSG:32621").chunk({"y": 256, "x": 256})  # lazy: streamed
    >>> path = write_cog(da, os.path.join(tempfile.mkdtemp(), "map.tif"), blocksize=256)
    >>> with rasterio.open(path) as f:
    ...     f.tags(ns="IMAGE_STRUCTURE")["LAYOUT"], f.block_shapes[0], f.overviews(1)
    ('COG', (256, 256), [2, 4])
    """
    import rasterio.shutil

    _check_map(da, blocksize)
    if resampling is None:
        resampling = "average" if np.issubdtype(da.dtype, np.floating) else "nearest"
    folder = os.path.dirname(os.path.abspath(path))
    fd, tiled = tempfile.mkstemp(prefix=".fns-cog-", suffix=".tif", dir=folder)
    os.close(fd)
    try:
        # Step 1: block by block into a tiled GeoTIFF (zstd 1: fast, small).
        da = da.copy(data=keyed(da.data))  # its chunks keep their keys in the writer's graph

        def write(compute: bool):
            return da.rio.to_raster(
                tiled,
                driver="GTiff",
                tags=tags,
                windowed=True,
                lock=True,
                tiled=True,
                blockxsize=blocksize,
                blockysize=blocksize,
                compress="zstd",
                zstd_level=1,
                bigtiff="if_safer",
                compute=compute,
            )

        write_by_chunk_rows(write, [da.data], memory)  # lazy: band by band of chunk rows
        # Step 2: GDAL's COG driver: overviews from the tiles, then the COG layout.
        rasterio.shutil.copy(
            tiled,
            path,
            driver="COG",
            blocksize=blocksize,
            compress=compress,
            overview_resampling=resampling,
            overviews="auto",
            bigtiff="if_safer",
            num_threads="all_cpus",
        )
    finally:
        if os.path.exists(tiled):
            os.remove(tiled)
    return path
