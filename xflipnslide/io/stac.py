"""Scenes from STAC: search a catalog (within a deadline), apply each band's
``raster:bands`` scaling and load the pixels lazily through odc-stac."""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import xarray as xr

from ..errors import InvalidParameterError, XFlipNSlideError, require

__all__ = [
    "GROUPBY",
    "PLANETARY_COMPUTER",
    "QA_ASSETS",
    "CatalogError",
    "band_scaling",
    "load_stac",
]

#: The Planetary Computer STAC API, ``load_stac``'s default catalog.
PLANETARY_COMPUTER = "https://planetarycomputer.microsoft.com/api/stac/v1"

log = logging.getLogger(__name__)


class CatalogError(XFlipNSlideError, OSError):
    """A STAC catalog could not be reached or did not answer in time."""


#: How ``load_stac`` groups items: mosaicked per solar day, or one scene per item.
GROUPBY = ("solar_day", "item")


def band_scaling(items: Iterable[Any], bands: Sequence[str]) -> dict[str, dict[str, float | None]]:
    """``{band: {"scale", "offset", "nodata"}}`` from the items' ``raster:bands``.

    Read from the first item whose asset of that name carries
    ``raster:bands`` (STAC raster extension); ``scale`` 1, ``offset`` 0 and
    ``nodata`` None where none does. Items that disagree are an error: one
    scene cannot be rescaled two ways.

    Examples
    --------
    >>> import datetime, pystac
    >>> from xflipnslide.io import band_scaling
    >>> item = pystac.Item("scene", None, None, datetime.datetime(2023, 6, 1), {})
    >>> red = pystac.Asset("red.tif", roles=["data"])
    >>> red.extra_fields["raster:bands"] = [{"scale": 2.75e-05, "offset": -0.2, "nodata": 0}]
    >>> item.add_asset("red", red)
    >>> item.add_asset("green", pystac.Asset("green.tif", roles=["data"]))
    >>> band_scaling([item], ["red", "green"])
    {'red': {'scale': 2.75e-05, 'offset': -0.2, 'nodata': 0},
     'green': {'scale': 1.0, 'offset': 0.0, 'nodata': None}}
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
                "scale": _number(raster[0].get("scale"), 1.0, band, "scale"),
                "offset": _number(raster[0].get("offset"), 0.0, band, "offset"),
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


def _number(value, default: float, band: str, key: str) -> float:
    """A ``raster:bands`` number; ``null`` or missing means the default."""
    if value is None:
        return default
    try:
        return float(value)
    except (TypeError, ValueError) as exc:
        raise InvalidParameterError(
            f"raster:bands {key} of {band!r} is {value!r}, not a number: fix the item's metadata"
        ) from exc


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
    mask_clouds: bool = False,
    timeout: float = 30.0,
    groupby: str = "solar_day",
) -> xr.DataArray | dict[str, xr.DataArray]:
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
    mask_clouds
        Also load the product's QA asset (``qa_pixel`` for ``landsat-c2-l2``,
        ``SCL`` for ``sentinel-2-l2a``) and set the pixels it flags (fill,
        clouds, shadows, cirrus, snow: :func:`xflipnslide.mask_clouds`'s
        defaults) to NaN before returning; the QA band is not returned.
    timeout
        The most seconds the whole search may take (every request of it,
        a positive number); a catalog that does not answer in time, or
        answers too slowly, raises :class:`CatalogError` instead of hanging.
        Failed requests are not retried.
    groupby
        ``"solar_day"``: one cube, items of a solar day mosaicked into one
        time step (in ``crs``, or the items' common CRS). ``"item"``: a
        collection, ``{item id: scene}``, each item loaded on its own in
        its own native CRS and resolution (from its ``proj:`` metadata;
        ``crs=``/``resolution=`` still apply to every item when given),
        never reprojected or mosaicked: give it to
        :func:`xflipnslide.preprocess` and :func:`xflipnslide.tile` (see
        ``docs/collections.md``).

    Returns
    -------
    DataArray or dict
        ``(time, band, y, x)`` float32 with the CRS (``latitude`` /
        ``longitude`` instead of ``y`` / ``x`` in a geographic CRS, as
        odc-stac names them). Where the items carry
        ``raster:bands`` metadata, ``nodata`` pixels are NaN and ``scale`` /
        ``offset`` are applied (e.g. Landsat C2 L2 reflectance); otherwise
        values are the stored ones, as float32. With ``groupby="item"``,
        ``{item id: DataArray}`` of such scenes (one time step each), in
        the items' order.

    Raises
    ------
    InvalidParameterError
        When the search finds nothing (the message repeats the search), or
        neither a search nor ``items`` is given.
    CatalogError
        When the catalog cannot be reached or the search does not complete
        in ``timeout`` seconds.
    MissingDependencyError
        Without the ``io`` extra.

    Examples
    --------
    A search of the Planetary Computer (it needs the network)::

        scene = xflipnslide.load_stac(
            bbox=(-122.5, 37.7, -122.3, 37.9), datetime="2023-06",
            bands=["red", "green", "blue"], query={"eo:cloud_cover": {"lt": 5}})
        tiles = scene.fns.preprocess().fns.tile(256)

    Items you already have load the same way; here one made from the
    built-in sample scene, a local file:

    >>> import datetime, pystac, rioxarray, xflipnslide
    >>> from pystac.extensions.projection import ProjectionExtension
    >>> from rasterio.warp import transform_bounds
    >>> path = xflipnslide.sample_scene_path()
    >>> raw = rioxarray.open_rasterio(path)
    >>> w, s, e, n = transform_bounds(raw.rio.crs, "EPSG:4326", *raw.rio.bounds())
    >>> box = {"type": "Polygon", "coordinates": [[[w, s], [e, s], [e, n], [w, n], [w, s]]]}
    >>> item = pystac.Item("sample", box, [w, s, e, n], datetime.datetime(2020, 5, 18), {})
    >>> item.add_asset("red", pystac.Asset(path, roles=["data"]))
    >>> ProjectionExtension.ext(item, add_if_missing=True).apply(
    ...     epsg=32621, shape=[560, 600], transform=list(raw.rio.transform())[:6])
    >>> scene = xflipnslide.load_stac(items=[item], bands=["red"], sign=False)
    >>> scene.sizes, list(scene.band.values), scene.rio.crs.to_epsg()
    (Frozen({'time': 1, 'band': 1, 'y': 560, 'x': 600}), ['red'], 32621)
    >>> bool((scene.isel(time=0, band=0).values == raw.values[0]).all())
    True
    """
    odc_stac = require("odc.stac", "io", "load_stac")
    import rioxarray  # noqa: F401  (registers .rio, used below)

    timeout = _check_timeout(timeout)
    if groupby not in GROUPBY:
        raise InvalidParameterError(
            f"groupby must be one of {', '.join(map(repr, GROUPBY))}; got {groupby!r}"
        )

    if items is None:
        if bbox is None and datetime is None and not query:
            raise InvalidParameterError(
                "load_stac needs a search (bbox=, datetime= or query=) or items="
            )
        items = _search(catalog, bbox, datetime, collections, query, sign, max_items, timeout)
    else:
        items = list(items)
        if sign:
            pc = require("planetary_computer", "io", "load_stac(sign=True)")
            items = [pc.sign(item) for item in items]
    if not items:
        raise InvalidParameterError("load_stac got an empty list of items; nothing to load")
    log.info("load_stac: loading %d items", len(items))
    qa = _qa_asset(items) if mask_clouds else None
    if bands is not None and qa is not None:
        bands = [*bands, qa[0]] if qa[0] not in bands else list(bands)
    options = {
        "bands": list(bands) if bands is not None else None,
        "bbox": tuple(bbox) if bbox is not None else None,
        "resolution": resolution,
        "crs": crs,
        "chunks": dict(chunks) if chunks is not None else {"x": 2048, "y": 2048},
        "groupby": "solar_day",
    }
    if groupby == "solar_day":
        return _load(odc_stac, items, options, qa)
    ids = [str(item.id) for item in items]
    twice = sorted({i for i in ids if ids.count(i) > 1})
    if twice:
        raise InvalidParameterError(
            f"groupby='item' names each scene by its item id, and {twice[0]!r} is the id of "
            "several items: load them with groupby='solar_day', or give items with unique ids"
        )
    # one item at a time: odc-stac takes each one's own CRS and grid
    return {i: _load(odc_stac, [item], options, qa) for i, item in zip(ids, items)}


def _load(odc_stac, items: list, options: dict, qa) -> xr.DataArray:
    """``items`` through :func:`odc.stac.load` as one ``(time, band, y, x)``
    cube: scaled, QA-masked, with its CRS."""
    ds = odc_stac.load(items, **options)
    flags = None
    if qa is not None:
        if qa[0] not in ds.data_vars:
            raise InvalidParameterError(
                f"mask_clouds=True needs the {qa[0]!r} asset, which the items lack"
            )
        flags = ds[qa[0]]
        ds = ds.drop_vars(qa[0])
    names = list(ds.data_vars)
    scaling = band_scaling(items, names)
    for name in names:
        ds[name] = _apply_scaling(ds[name], **scaling[name])
    out = ds.to_dataarray("band").transpose("time", "band", *ds.odc.spatial_dims)
    if flags is not None:
        from ..preprocess import mask_clouds as _mask

        out = _mask(out, flags, product=qa[1])
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


#: The QA asset and product of each collection ``mask_clouds=True`` knows.
QA_ASSETS = {
    "landsat-c2-l2": ("qa_pixel", "landsat-c2"),
    "sentinel-2-l2a": ("SCL", "sentinel-2-l2a"),
}


def _qa_asset(items: list) -> tuple[str, str]:
    collections = {str(getattr(i, "collection_id", None)) for i in items}
    known = [QA_ASSETS[c] for c in collections if c in QA_ASSETS]
    if len(known) != 1 or len(collections) != 1:
        raise InvalidParameterError(
            f"mask_clouds=True knows the QA assets of {sorted(QA_ASSETS)}; the items are from "
            f"{sorted(collections)}: load one of those, or mask with xflipnslide.mask_clouds"
        )
    return known[0]


def _check_timeout(timeout) -> float:
    if (
        isinstance(timeout, bool)
        or not isinstance(timeout, (int, float, np.integer, np.floating))
        or not math.isfinite(timeout)
        or timeout <= 0
    ):
        raise InvalidParameterError(
            f"timeout must be a positive number of seconds (the most the whole search may take); "
            f"got {timeout!r}"
        )
    return float(timeout)


class _PastDeadline(Exception):
    """Raised before a request the search should no longer make."""


def _search(catalog, bbox, datetime, collections, query, sign, max_items, timeout) -> list:
    """The items of a STAC search, or a :class:`CatalogError` within ``timeout`` s.

    ``timeout`` bounds the whole search: the landing page, every page of
    results and the signing. pystac-client's retries are off (each would wait
    its own timeout again), each request may take only the time left, and
    the search runs in a daemon thread the caller stops waiting for at the
    deadline, so a catalog that trickles its answer (each byte within the
    socket timeout) cannot hold it either. An abandoned search makes no
    further request.
    """
    client_mod = require("pystac_client", "io", "load_stac")
    from pystac_client.stac_api_io import StacApiIO

    modifier = None
    if sign:
        modifier = require("planetary_computer", "io", "load_stac(sign=True)").sign_inplace
    deadline = time.monotonic() + timeout
    abandoned = threading.Event()
    result: dict[str, Any] = {}

    def search() -> list:
        stac_io = StacApiIO(timeout=timeout, max_retries=None)

        def before_request(request):  # pystac-client calls it before every request
            left = deadline - time.monotonic()
            if abandoned.is_set() or left <= 0:
                raise _PastDeadline(f"no time left of timeout={timeout} s")
            stac_io.timeout = left
            return None

        client = client_mod.Client.open(
            catalog,
            modifier=modifier,
            stac_io=stac_io,
            request_modifier=before_request,
            timeout=timeout,
        )
        found = client.search(
            bbox=list(bbox) if bbox is not None else None,
            datetime=datetime,
            collections=list(collections),
            query=dict(query) if query else None,
            max_items=max_items,
        )
        items = []
        for item in found.items():
            if abandoned.is_set():
                break
            items.append(item)
        return items

    def run() -> None:
        try:
            result["items"] = search()
        except BaseException as exc:  # handed to the caller's thread
            result["error"] = exc

    worker = threading.Thread(target=run, name="xflipnslide-stac-search", daemon=True)
    worker.start()
    try:
        worker.join(max(deadline - time.monotonic(), 0))
    finally:
        abandoned.set()
    exc = result.get("error")
    # A request's own timeout is the time left, so a late error is the deadline's too.
    if worker.is_alive() or (exc is not None and time.monotonic() >= deadline):
        raise CatalogError(
            f"the STAC catalog {catalog} could not be searched within timeout={timeout} s "
            "(no complete answer in time): check the URL and your network, or raise timeout="
        ) from exc
    if isinstance(exc, XFlipNSlideError):
        raise exc
    if exc is not None:  # requests' timeouts and connection errors, pystac-client's APIError
        text = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise CatalogError(
            f"the STAC catalog {catalog} could not be searched ({type(exc).__name__}: {text}); "
            f"check the URL and your network, or raise timeout= (now {timeout} s)"
        ) from exc
    items = result["items"]
    if not items:
        raise InvalidParameterError(
            f"the STAC search found no items (catalog={catalog}, collections={list(collections)}, "
            f"bbox={bbox}, datetime={datetime}, query={query}): widen the bbox or the dates, "
            "or relax the query"
        )
    log.info("load_stac: the search found %d items", len(items))
    return items
