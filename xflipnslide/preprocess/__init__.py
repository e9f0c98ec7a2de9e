"""Preprocessing, the xarray layer: nodata, time composite, gap filling, standardisation."""

from __future__ import annotations

import logging
import math
import numbers
from collections.abc import Hashable, Iterable, Mapping, Sequence
from itertools import product
from typing import Any, Literal

import numpy as np
import xarray as xr

from .._core.fill import fill_array, filled_message, prepare_chunks
from .._core.stats import band_stats_array, standardize_array
from ..dims import find_spatial_dims
from ..errors import (
    DataDroppedWarning,
    DataFilledWarning,
    InvalidParameterError,
    check_positive_int,
    warn,
)
from ..georef import scene_transform
from ..schema import IMAGE, OBSERVED, STATS_COORDS, T_Xarray

__all__ = [
    "LANDSAT_C2_QA_BITS",
    "QA_DEFAULTS",
    "SENTINEL2_SCL_CLASSES",
    "STATS_COORDS",
    "mask_clouds",
    "preprocess",
    "read_stats",
]

log = logging.getLogger(__name__)

_REDUCERS = ("median", "mean", "nearest", None)

#: Landsat Collection 2 ``QA_PIXEL`` bits (SPEC §6), bit -> name.
LANDSAT_C2_QA_BITS = {
    0: "fill",
    1: "dilated_cloud",
    2: "cirrus",
    3: "cloud",
    4: "cloud_shadow",
    5: "snow",
    6: "clear",
    7: "water",
}
#: Sentinel-2 L2A scene classification (``SCL``) classes, value -> name.
SENTINEL2_SCL_CLASSES = {
    0: "no_data",
    1: "saturated_defective",
    2: "dark_area",
    3: "cloud_shadow",
    4: "vegetation",
    5: "not_vegetated",
    6: "water",
    7: "unclassified",
    8: "cloud_medium_probability",
    9: "cloud_high_probability",
    10: "thin_cirrus",
    11: "snow",
}
#: What :func:`mask_clouds` masks by default: Landsat bits 0-5, SCL classes
#: 0, 1, 3, 8, 9, 10 (add 11 to mask snow on Sentinel-2).
QA_DEFAULTS = {"landsat-c2": (0, 1, 2, 3, 4, 5), "sentinel-2-l2a": (0, 1, 3, 8, 9, 10)}
_QA_TABLES = {"landsat-c2": LANDSAT_C2_QA_BITS, "sentinel-2-l2a": SENTINEL2_SCL_CLASSES}


def mask_clouds(
    scene: T_Xarray,
    qa: xr.DataArray,
    *,
    product: Literal["landsat-c2", "sentinel-2-l2a"] = "landsat-c2",
    mask: int | str | Sequence[int | str] | None = None,
) -> T_Xarray:
    """Set the pixels a product's QA layer flags (clouds, shadows, ...) to NaN.

    Parameters
    ----------
    scene
        The image, ``(..., y, x)``; integer data become float32 (float64
        stays float64).
    qa
        The QA layer on the scene's grid: Landsat Collection 2 ``QA_PIXEL``
        (uint16 bit flags; Planetary Computer asset ``qa_pixel``) or
        Sentinel-2 L2A ``SCL`` (uint8 classes; asset ``SCL``): integers, or
        floats holding whole numbers, NaN read as no data (fill / class 0).
        It must lie on the scene's pixels exactly: the same ``y``/``x``
        coordinates (or, without coordinates, the same shape and recorded
        transform) and the same labels along any other dim it shares with
        the scene (times, bands). Nothing is aligned, cropped or
        reindexed; reproject a QA on another grid first, e.g.
        ``qa.rio.reproject_match(scene)`` (nearest resampling, right for
        flags). A length-1 ``band`` dim is dropped.
    product
        ``"landsat-c2"`` or ``"sentinel-2-l2a"``.
    mask
        What to mask: a Landsat bit number or name, or a list of them
        (:data:`LANDSAT_C2_QA_BITS`; default bits 0-5: fill, dilated cloud,
        cirrus, cloud, cloud shadow, snow), or SCL class values or names
        (:data:`SENTINEL2_SCL_CLASSES`; default 0, 1, 3, 8, 9, 10: no data,
        saturated/defective, cloud shadow, cloud medium and high
        probability, thin cirrus; add 11 for snow).

    Returns
    -------
    DataArray or Dataset
        ``scene`` with flagged pixels NaN (lazy for dask input), ready for
        :func:`preprocess`, whose ``fns_observed`` mask and the tiles'
        ``valid_fraction`` then count them as missing.

    Raises
    ------
    InvalidParameterError
        For an unknown product or mask name; a QA that is not on the
        scene's grid (the message gives the offset in pixels), or whose
        times or bands differ from the scene's; a boolean QA; a ``uint8``
        QA with ``product="landsat-c2"`` (``QA_PIXEL`` is uint16: that is
        SCL). When the values are read (numpy: now; dask: when computed,
        in each task): a float QA with values that are not whole numbers (an
        interpolated QA), an SCL with values outside 0-11.

    Warns
    -----
    DataDroppedWarning
        With ``product="landsat-c2"``, when every QA value is 0-11 and some
        are above 1, as Sentinel-2 SCL classes are: every real ``QA_PIXEL``
        pixel but fill reads 256 or more (its confidence bits), and SCL read
        as bits masks nearly everything (on dask: when computed).

    Examples
    --------
    >>> import numpy as np, xarray as xr, xflipnslide
    >>> scene = xr.DataArray(np.ones((1, 2, 2), "float32"), dims=("band", "y", "x"))
    >>> qa = xr.DataArray(np.array([[1 << 6, 1 << 3], [1 << 4, 1 << 7]], "uint16"), dims=("y", "x"))
    >>> xflipnslide.mask_clouds(scene, qa, product="landsat-c2").values[0]
    array([[ 1., nan],
           [nan,  1.]], dtype=float32)
    """
    if product not in _QA_TABLES:
        raise InvalidParameterError(
            f"product must be one of {', '.join(map(repr, _QA_TABLES))}; got {product!r}"
        )
    if not isinstance(qa, xr.DataArray):
        raise InvalidParameterError(f"qa must be a DataArray on the scene's grid; got {type(qa)}")
    if not isinstance(scene, (xr.DataArray, xr.Dataset)):
        raise InvalidParameterError(
            f"mask_clouds takes a DataArray or Dataset scene; got {type(scene).__name__}"
        )
    if "band" in qa.dims and qa.sizes["band"] == 1:
        qa = qa.isel(band=0, drop=True)
    _check_qa_dtype(qa, product)
    codes = _qa_codes(
        mask if mask is not None else QA_DEFAULTS[product], _QA_TABLES[product], product
    )
    missing = [d for d in qa.dims if d not in scene.dims]
    if missing:
        raise InvalidParameterError(
            f"qa has dims {missing} the scene lacks; select them first (e.g. qa.isel(...))"
        )
    _check_same_grid(scene, qa)
    flagged = xr.apply_ufunc(
        _flag_qa,
        qa.variable,  # no coordinates: the grid is checked, nothing is joined
        kwargs={"product": product, "codes": tuple(codes)},
        dask="parallelized",
        output_dtypes=[bool],
    )
    keep = xr.DataArray(~flagged)

    def one(var: xr.DataArray) -> xr.DataArray:
        dtype = np.float64 if var.dtype == np.float64 else np.float32
        return var.astype(dtype, copy=False).where(keep)

    if isinstance(scene, xr.Dataset):
        return scene.map(lambda v: one(v) if set(keep.dims) <= set(v.dims) else v)
    return one(scene).transpose(*scene.dims)


def _qa_codes(mask, table: dict[int, str], product: str) -> list[int]:
    """The bit numbers or class values ``mask`` names (one name or number, or
    several)."""
    names = {v: k for k, v in table.items()}
    if isinstance(mask, (str, bytes, numbers.Integral)) or not isinstance(mask, Iterable):
        mask = [mask]
    out = []
    for item in mask:
        if isinstance(item, str) and item in names:
            out.append(names[item])
        elif isinstance(item, numbers.Integral) and not isinstance(item, bool) and item in table:
            out.append(int(item))
        else:
            raise InvalidParameterError(
                f"mask= for {product!r} takes one or a list of {sorted(table)} or "
                f"{sorted(names)}; got {item!r}"
            )
    return out


def _check_qa_dtype(qa: xr.DataArray, product: str) -> None:
    """Refuse what the dtype alone shows is not this product's QA (free on dask)."""
    dtype = qa.dtype
    if not (np.issubdtype(dtype, np.integer) or np.issubdtype(dtype, np.floating)):
        raise InvalidParameterError(
            f"qa has dtype {dtype}; QA layers are integers (Landsat QA_PIXEL uint16 bit flags, "
            "Sentinel-2 SCL uint8 classes): pass the QA band itself, not a mask made from it"
        )
    if product == "landsat-c2" and np.issubdtype(dtype, np.integer) and dtype.itemsize < 2:
        raise InvalidParameterError(
            f"qa has dtype {dtype}, which cannot hold Landsat QA_PIXEL's 16 bits: a uint8 QA "
            "is most likely Sentinel-2 SCL; pass product='sentinel-2-l2a'"
        )


def _flag_qa(qa: np.ndarray, *, product: str, codes: tuple[int, ...]) -> np.ndarray:
    """Block function: True where ``qa`` flags a pixel, after checking its
    values fit ``product`` (on dask this runs in each task, when computed).

    A float QA (as odc-stac loads assets without a declared data type) must
    hold whole numbers; NaN reads as no data (Landsat's fill bit, SCL class 0).
    """
    if qa.dtype.kind == "f":
        nan = np.isnan(qa)
        whole = np.isfinite(qa) & (qa == np.round(qa))
        if not (nan | whole).all():
            bad = qa[~(nan | whole)].flat[0]
            raise InvalidParameterError(
                f"qa is {qa.dtype} and holds {bad!r}, which is no QA flag or class: QA values "
                "are whole numbers. A QA resampled with interpolation has lost its flags: "
                "reproject it with nearest resampling (qa.rio.reproject_match(scene))"
            )
        qa = np.where(nan, 1 if product == "landsat-c2" else 0, qa).astype(np.int64)
    if product == "landsat-c2":
        if qa.size and int(qa.max()) <= 11 and bool((qa > 1).any()):
            warn(
                "mask_clouds: every QA value is between 0 and 11, as Sentinel-2 SCL classes are, "
                "while every Landsat QA_PIXEL pixel but fill reads 256 or more (its confidence "
                "bits); read as bits, SCL masks nearly everything. If this is SCL, pass "
                "product='sentinel-2-l2a'",
                DataDroppedWarning,
            )
        return (qa & sum(1 << b for b in codes)) != 0
    if qa.size and (int(qa.min()) < 0 or int(qa.max()) > 11):
        raise InvalidParameterError(
            f"qa holds values from {int(qa.min())} to {int(qa.max())}, but Sentinel-2 SCL classes "
            "run from 0 to 11: values above 255 are Landsat QA_PIXEL bit flags (pass "
            "product='landsat-c2'); a no-data fill such as 255 can be mapped to class 0 first "
            "(qa.where(qa != 255, 0))"
        )
    return np.isin(qa, codes)


def _check_same_grid(scene: xr.DataArray | xr.Dataset, qa: xr.DataArray) -> None:
    """Raise unless ``qa`` lies on the pixels (and labels) of ``scene``."""
    spatial = find_spatial_dims(scene)
    for d in qa.dims:
        if qa.sizes[d] != scene.sizes[d]:
            raise InvalidParameterError(
                f"qa has {qa.sizes[d]} values along {d!r}, the scene {scene.sizes[d]}: the QA "
                "must be on the scene's grid (and times); reproject or align it first, e.g. "
                "qa.rio.reproject_match(scene)"
            )
    for d in qa.dims:
        if d in spatial or d not in qa.indexes or d not in scene.indexes:
            continue
        if not qa.indexes[d].equals(scene.indexes[d]):
            raise InvalidParameterError(
                f"qa is labelled {qa[d].values.tolist()[:6]} along {d!r}, the scene "
                f"{scene[d].values.tolist()[:6]}: give the QA the scene's {d!r} labels, in "
                f"order (select or reorder it, e.g. qa.sel({d}=scene.{d}))"
            )
    if all(d in qa.indexes and d in scene.indexes for d in spatial):
        for d in spatial:
            _check_same_axis(d, np.asarray(scene[d].values), np.asarray(qa[d].values))
        return
    mine, theirs = _recorded_transform(scene, spatial), _recorded_transform(qa, spatial)
    if mine is not None and theirs is not None and not theirs.almost_equals(mine, precision=1e-6):
        col, row = ~mine * (theirs.c, theirs.f)
        raise InvalidParameterError(
            f"qa's transform {tuple(theirs)[:6]} differs from the scene's {tuple(mine)[:6]} "
            f"(its origin lies {row:+.3g} rows, {col:+.3g} columns off): reproject or align it "
            "onto the scene's grid first, e.g. qa.rio.reproject_match(scene)"
        )


def _check_same_axis(dim: Hashable, mine: np.ndarray, theirs: np.ndarray) -> None:
    """Equal pixel-centre coordinates, within a millionth of a pixel."""
    numeric = np.issubdtype(mine.dtype, np.number) and np.issubdtype(theirs.dtype, np.number)
    if not numeric:
        if not np.array_equal(mine, theirs):
            raise InvalidParameterError(
                f"qa's {dim!r} coordinates differ from the scene's: reproject or align it onto "
                "the scene's grid first, e.g. qa.rio.reproject_match(scene)"
            )
        return
    step = float(np.abs(np.diff(mine)).min()) if mine.size > 1 else 1.0
    step = step or 1.0
    off = (theirs.astype(np.float64) - mine.astype(np.float64)) / step
    if np.abs(off).max(initial=0.0) > 1e-6:
        k = int(np.abs(off).argmax())
        raise InvalidParameterError(
            f"qa's {dim!r} coordinates are offset from the scene's by {off[0]:+.4g} pixels at "
            f"the first pixel (up to {off[k]:+.4g}; pixel size {step:g}): the QA must lie on "
            "the scene's grid exactly, as nothing is cropped or aligned. Reproject or align it "
            "first, e.g. qa.rio.reproject_match(scene)"
        )


def _recorded_transform(obj, spatial):
    """The affine transform ``obj`` records (from its coordinates, or
    rioxarray's ``GeoTransform``), or None for a plain array."""
    if all(d in obj.indexes for d in spatial):
        try:
            return scene_transform(obj, spatial)
        except InvalidParameterError:  # irregular coordinates: no one transform to compare
            return None
    try:
        import rioxarray  # noqa: F401  (registers .rio)

        if (
            obj.rio.grid_mapping in obj.coords
            and "GeoTransform" in obj.coords[obj.rio.grid_mapping].attrs
        ):
            return obj.rio.transform()
    except Exception as exc:  # rioxarray missing, or unreadable metadata
        log.debug("rioxarray gave no transform: %s", exc)
    return None


_FILLS = ("nearest", None)


def preprocess(
    obj: T_Xarray,
    *,
    nodata: float | None = None,
    time_dim: Hashable = "time",
    reduce: Literal["median", "mean"] | None = "median",
    fill: Literal["nearest"] | None = "nearest",
    standardize: bool = True,
    stats: xr.DataArray | xr.Dataset | Mapping[str, Any] | None = None,
    dims: Sequence[Hashable] | None = None,
    reach: int = 512,
    strict: bool = False,
    variables: Sequence[Hashable] | None = None,
    reference: Any = None,
) -> T_Xarray:
    """Make a scene ML-ready: mask nodata, composite time, fill gaps, standardise.

    Parameters
    ----------
    obj
        A DataArray (say ``(time, band, y, x)``), or a Dataset whose
        variables with both spatial dims are each preprocessed on their own
        (one variable per band, as some readers give them; their statistics
        are the coordinates ``{name}_fns_mean`` / ``{name}_fns_std``).
        In a Dataset, integer and boolean variables are labels (masks,
        class maps, with or without a ``band`` dim) and are left alone,
        except a variable named ``image``; name others in ``variables``.
    nodata
        Value marking missing pixels (a number). By default taken from
        rioxarray (``rio.nodata``, ``rio.encoded_nodata``), then the
        ``_FillValue`` or ``nodata`` attrs. NaN and infinite values are
        always missing. Files that mark nodata without declaring it
        (Landsat's zeros) need it here: ``nodata=0``.
    time_dim
        The time dimension, if any.
    reduce
        ``"median"`` (default) or ``"mean"`` over ``time_dim``, skipping NaN;
        ``"nearest"``: per pixel, the valid observation closest in time to
        ``reference`` (ties: the earlier); ``None`` keeps the time dim. Skipped when there is no ``time_dim``.
        With dask, ``time_dim`` is first rechunked to one chunk (logged).
    fill
        ``"nearest"``: each missing pixel takes the value of the valid pixel
        of the same band (and time, if kept) at the smallest Euclidean
        distance (any one on ties). ``None`` leaves NaN in place.
    standardize
        Subtract each band's mean and divide by its population standard
        deviation over the spatial dims (and time, if kept); the result is
        float32. A zero-variance band is only centred (divided by 1).
    stats
        Statistics to standardise with instead of the scene's own: a
        previously preprocessed scene, Dataset, or tiles of either (also
        reopened from Zarr), read by :func:`read_stats` for each variable
        (its own name's ``{name}_fns_mean``/``{name}_fns_std`` first, then
        ``fns_mean``/``fns_std``, then the only ones there are), or a
        mapping ``{"mean": ..., "std": ...}`` of scalars, arrays over the
        band dims or DataArrays. Use the training scene's statistics for
        validation and test scenes.
    dims
        ``(row_dim, column_dim)``, found by name by default.
    reach
        Dask only: pixels of halo read around each chunk for the gap fill.
        Gaps up to ``reach`` pixels from a valid pixel are filled exactly
        for any chunking; wider ones take the nearest valid pixel in the
        chunk and its halo (or the band mean if there is none) and warn with
        :class:`~xflipnslide.errors.FillReachWarning`. numpy input is always
        filled exactly.
        Dask chunks much smaller than ``reach`` make every task read many
        neighbours: such input is rechunked to at least ``2 * reach``
        pixels per side, with a warning.
    strict
        Raise :class:`~xflipnslide.errors.FillReachError` instead of warning.
    reference
        For ``reduce="nearest"``: the reference date (anything
        :func:`numpy.datetime64` reads, e.g. ``"2023-06-15"``).
    variables
        Dataset only: the variables to preprocess (default: every variable
        with both spatial dims except integer or boolean ones, unless named
        ``image``).

    Returns
    -------
    DataArray or Dataset
        Float data with the time dim reduced, gaps filled and bands
        standardised; same spatial grid, coordinates, CRS and attrs. With
        ``standardize``, coordinates ``fns_mean`` and ``fns_std`` (float64,
        over the band dims) hold the statistics used; they survive ``tile``
        and ``to_zarr``. The boolean coordinate ``fns_observed`` on the
        spatial dims is True where a pixel was observed in every band (not
        filled); ``tile`` turns it into each tile's ``valid_fraction``.
        Dask input stays lazy: nothing is computed here.

    Warns
    -----
    DataFilledWarning
        When missing pixels are filled (invented), with the share per band:
        on numpy at once; on dask when the result is computed (raised in the
        fill tasks: seen under the threaded and synchronous schedulers; on a
        ``dask.distributed`` cluster it stays in the workers' logs, so read
        ``1 - out.fns_observed.mean()``, the share of pixels filled in some
        band, or the tiles' ``valid_fraction``).

    Raises
    ------
    InvalidParameterError
        For an unknown option or unusable statistics, before any pixel work.
    AllMissingError
        When a band has no valid pixel at all (at compute time for dask).

    Examples
    --------
    >>> import xflipnslide
    >>> scene = xflipnslide.open_image(xflipnslide.sample_scene_path())
    >>> ready = scene.fns.preprocess(nodata=0)       # Landsat marks nodata with 0
    >>> ready.dtype, ready.dims, ready.fns_mean.dims
    (dtype('float32'), ('band', 'y', 'x'), ('band',))
    >>> test_ready = scene.fns.preprocess(nodata=0, stats=ready)   # the same statistics
    """
    if reduce not in _REDUCERS:
        raise InvalidParameterError(
            f"reduce must be 'median', 'mean', 'nearest' or None; got {reduce!r}"
        )
    if (reduce == "nearest") != (reference is not None):
        raise InvalidParameterError(
            "reduce='nearest' needs reference= (a date, e.g. '2023-06-15'), and reference= is "
            "only used with reduce='nearest'"
        )
    if fill not in _FILLS:
        raise InvalidParameterError(f"fill must be 'nearest' or None; got {fill!r}")
    reach = check_positive_int(reach, "reach")
    _check_nodata(nodata)
    if stats is not None and not standardize:
        raise InvalidParameterError("stats= is only used with standardize=True")
    options = dict(
        nodata=nodata,
        time_dim=time_dim,
        reduce=reduce,
        fill=fill,
        standardize=standardize,
        reach=int(reach),
        strict=strict,
        reference=reference,
    )
    if isinstance(obj, xr.Dataset):
        ydim, xdim = find_spatial_dims(obj, dims)
        out = obj.copy()
        names = _variables_to_process(obj, (ydim, xdim), variables)
        # Each variable's statistics, found before any pixel work.
        per_var = {name: _stats_for(stats, name, single=len(names) == 1) for name in names}
        for name in names:
            var = obj[name]
            done = _preprocess_array(var, (ydim, xdim), stats=per_var[name], **options)
            # Each variable has its own statistics: name them after it.
            renames = {c: f"{name}_{c}" for c in STATS_COORDS if c in done.coords}
            out[name] = done.drop_vars([*renames, OBSERVED])
            for old, new in renames.items():
                out.coords[new] = done.coords[old].variable
            seen = done.coords[OBSERVED].variable
            if OBSERVED in out.coords:
                seen = out.coords[OBSERVED].variable & seen
            out.coords[OBSERVED] = seen
        return out
    if not isinstance(obj, xr.DataArray):
        raise InvalidParameterError(
            f"preprocess takes a DataArray or Dataset; got {type(obj).__name__}"
        )
    if variables is not None:
        raise InvalidParameterError("variables= is for Datasets; a DataArray is one variable")
    stats = _stats_for(stats, obj.name, single=True)
    return _preprocess_array(obj, find_spatial_dims(obj, dims), stats=stats, **options)


def _check_nodata(nodata) -> None:
    if nodata is None:
        return
    if isinstance(nodata, (bool, np.bool_)) or not isinstance(nodata, numbers.Real):
        raise InvalidParameterError(
            f"nodata must be one number (the value marking missing pixels, e.g. nodata=0); "
            f"got {nodata!r}. To mask several values, mask them first: "
            "scene.where(~scene.isin([...]))"
        )


def _variables_to_process(ds: xr.Dataset, spatial, variables) -> list[Hashable]:
    spatial_vars = [n for n, v in ds.data_vars.items() if all(d in v.dims for d in spatial)]
    if variables is not None:
        if isinstance(variables, (str, bytes)) or not isinstance(variables, Sequence):
            variables = [variables]
        missing = [v for v in variables if v not in spatial_vars]
        if missing:
            raise InvalidParameterError(
                f"variables={list(variables)} names {missing}, which are not variables with both "
                f"spatial dims {tuple(spatial)}; those are {spatial_vars}"
            )
        return list(variables)
    chosen = [n for n in spatial_vars if not _is_label(n, ds[n])]
    left = [n for n in spatial_vars if n not in chosen]
    if left:
        log.info("preprocess: leaving %s alone (integer or boolean: labels)", left)
    if not chosen:
        raise InvalidParameterError(
            f"every variable of the Dataset looks like a label ({left}: integer or boolean), so "
            "preprocess leaves them alone: name the image variables with variables=[...]"
        )
    return chosen


def _is_label(name: Hashable, var: xr.DataArray) -> bool:
    """Integer or boolean, whatever its dims (a label mask, a class map, a
    ``(band: 1, y, x)`` mask as ``open_image`` reads it), unless it is the
    variable named ``image`` (the package's image variable)."""
    categorical = var.dtype == bool or np.issubdtype(var.dtype, np.integer)
    return categorical and name != IMAGE


def read_stats(
    obj: xr.DataArray | xr.Dataset, variable: Hashable | None = None
) -> dict[str, xr.DataArray]:
    """The standardisation statistics :func:`preprocess` recorded on ``obj``.

    Parameters
    ----------
    obj
        A preprocessed scene (its ``fns_mean`` / ``fns_std`` coordinates), a
        preprocessed Dataset (``{name}_fns_mean`` / ``{name}_fns_std`` for
        each variable), tiles of either, a variable taken out of them, or
        any of these reopened from Zarr or netCDF.
    variable
        Whose statistics to read where ``obj`` holds several variables'.
        By default: the unnamed ones (a preprocessed DataArray), else those
        of ``obj``'s own name, else the only ones there are.

    Returns
    -------
    dict
        ``{"mean": DataArray, "std": DataArray}`` over the band dims, which
        ``preprocess(stats=...)`` takes.

    Raises
    ------
    InvalidParameterError
        When ``obj`` records no statistics, or several variables' and
        ``variable`` names none of them.

    Examples
    --------
    >>> import numpy as np, xarray as xr, xflipnslide
    >>> from xflipnslide.preprocess import read_stats
    >>> data = np.stack([np.ones((8, 8)), np.full((8, 8), 3.0)])
    >>> ds = xr.Dataset({"image": (("band", "y", "x"), data)})
    >>> tiles = ds.fns.preprocess().fns.tile(4)
    >>> read_stats(tiles)["mean"].values
    array([1., 3.])
    """
    if not isinstance(obj, (xr.DataArray, xr.Dataset)):
        raise InvalidParameterError(
            f"read_stats takes a preprocessed scene, Dataset or tiles; got {type(obj).__name__}"
        )
    if variable is not None:
        return _find_stats(obj, [variable, None], single=False)
    return _find_stats(obj, [None, obj.name if isinstance(obj, xr.DataArray) else None], True)


def _stats_for(stats, name: Hashable, *, single: bool):
    """``stats=`` for the variable ``name``: an xarray object's recorded
    statistics (its own name's first, then unnamed ones, then, where
    ``single``, the only ones it holds), or ``stats`` as given."""
    if not isinstance(stats, (xr.DataArray, xr.Dataset)):
        return stats
    own = stats.name if isinstance(stats, xr.DataArray) else None
    return _find_stats(stats, [name, None, own], single=single)


def _find_stats(obj, prefer: list, single: bool) -> dict[str, xr.DataArray]:
    mean_c, std_c = STATS_COORDS
    found: dict[str | None, tuple[str, str]] = {}
    if mean_c in obj.coords and std_c in obj.coords:
        found[None] = (mean_c, std_c)
    for c in obj.coords:
        if isinstance(c, str) and c.endswith(f"_{mean_c}") and c != mean_c:
            owner = c[: -len(mean_c) - 1]
            if f"{owner}_{std_c}" in obj.coords:
                found[owner] = (c, f"{owner}_{std_c}")
    keys = [None if k is None else str(k) for k in prefer]
    key = next((k for k in keys if k in found), None)
    if key is None and None not in found:
        named = [k for k in found if k is not None]
        if single and len(named) == 1:
            key = named[0]
        elif named:
            wanted = [k for k in keys if k is not None]
            raise InvalidParameterError(
                f"stats= holds the statistics of the variables {sorted(named)}"
                + (f", none of them {wanted[0]!r}" if wanted else "")
                + f": name the one to use, stats=read_stats(obj, {sorted(named)[0]!r}) "
                "(from xflipnslide.preprocess import read_stats)"
            )
        else:
            raise InvalidParameterError(
                f"stats= got an object without {mean_c}/{std_c} coordinates (nor "
                f"{{name}}_{mean_c}/{{name}}_{std_c}): pass a scene, Dataset or tiles returned "
                "by preprocess(..., standardize=True), or {'mean': ..., 'std': ...}"
            )
    out = {}
    for stat, coord in zip(("mean", "std"), found[key]):
        v = obj.coords[coord].variable
        out[stat] = xr.DataArray(v, coords={d: obj[d] for d in v.dims if d in obj.coords})
    return out


def _preprocess_array(
    da, spatial, *, nodata, time_dim, reduce, fill, standardize, stats, reach, strict, reference
):
    if not (np.issubdtype(da.dtype, np.number) or da.dtype == bool) or np.issubdtype(
        da.dtype, np.complexfloating
    ):
        raise InvalidParameterError(f"preprocess needs real numeric data; got dtype {da.dtype}")
    user_stats = _user_stats(stats, da, spatial, time_dim) if stats is not None else None
    attrs = {
        k: v
        for k, v in da.attrs.items()
        if k not in ("_FillValue", "nodata", "missing_value", "fill_value")
    }
    if fill == "nearest" and da.chunks is not None:
        da = da.copy(data=prepare_chunks(da.transpose(..., *spatial).data, reach)).transpose(
            *da.dims
        )
    da = _mask_nodata(da, nodata)
    if time_dim in da.dims and reduce is not None:
        da = _reduce_time(da, time_dim, reduce, reference)
    other = [d for d in da.dims if d not in spatial]
    da = da.transpose(*other, *spatial)
    valid = da.notnull()
    observed = valid.all(other) if other else valid
    labels = _slice_labels(da, other)
    _report_missing(da, valid, other, labels, filled=fill == "nearest")
    band_dims = [d for d in other if d != time_dim]
    scene_stats = None
    if standardize:
        scene_stats = None if user_stats else _band_stats(da, band_dims)
        mean, std = user_stats or scene_stats[:2]
    if fill == "nearest":
        slice_stats = None
        if da.chunks is not None:  # each slice's mean (the fill's last resort) and
            # valid count (its warning), the standardisation's own pass when the
            # slices are the bands (no time kept)
            same = scene_stats is not None and band_dims == other
            slice_stats = (scene_stats if same else _band_stats(da, other))[2]
        data = fill_array(da.data, slice_stats, reach=reach, strict=strict, labels=labels)
        da = da.copy(data=data)
    if standardize:
        da = _standardize(da, mean, std)
    da = da.assign_coords({OBSERVED: observed.variable})
    da.attrs = attrs
    return da


def _report_missing(da: xr.DataArray, valid: xr.DataArray, other, labels, filled: bool) -> None:
    """Warn (numpy: now, with shares; dask: nothing is computed here, the fill
    tasks warn when they run) about pixels that are missing and will be
    filled, or, without a fill, about bands more than a quarter masked."""
    if da.chunks is not None:
        return
    spatial = [d for d in da.dims if d not in other]
    missing = 1 - valid.mean(spatial).values.reshape(-1)
    worst = [(lab, m) for lab, m in zip(labels, missing.tolist()) if m > 0]
    if not worst:
        return
    if not filled:
        heavy = [(lab, m) for lab, m in worst if m > 0.25]
        if heavy:
            shares = ", ".join(f"{lab}: {m:.1%}" for lab, m in heavy[:6])
            warn(
                f"preprocess: more than a quarter of a band is missing (nodata, NaN or "
                f"infinite; {shares}) and left NaN: tile with min_valid=... to drop "
                "mostly-empty tiles (each tile's valid_fraction records its share)",
                DataDroppedWarning,
            )
        return
    warn(filled_message(worst), DataFilledWarning)


def _declared_nodata(da: xr.DataArray) -> tuple[float | None, str]:
    try:
        import rioxarray  # noqa: F401  (registers .rio)

        for source in ("nodata", "encoded_nodata"):
            value = getattr(da.rio, source)
            if value is not None:
                return value, f"rio.{source}"
    except Exception as exc:  # rioxarray missing, or it cannot read the metadata
        log.debug("rioxarray gave no nodata: %s", exc)
    for key in ("_FillValue", "nodata"):
        if key in da.attrs:
            return da.attrs[key], f"attrs[{key!r}]"
    return None, ""


def _mask_nodata(da: xr.DataArray, nodata: float | None) -> xr.DataArray:
    """Nodata and non-finite values to NaN, in float32 (float64 stays float64)."""
    source = "nodata="
    if nodata is None:
        nodata, source = _declared_nodata(da)
    dtype = np.float64 if da.dtype == np.float64 else np.float32
    if da.dtype != dtype:
        log.info("preprocess: converting %s to %s", da.dtype, np.dtype(dtype).name)
    keep = None
    if np.issubdtype(da.dtype, np.floating):
        keep = np.isfinite(da)  # inf is missing, like NaN
    if nodata is not None and not (isinstance(nodata, float) and math.isnan(nodata)):
        if da.chunks is None:
            count = int((da.values == nodata).sum())
            log.info("preprocess: masked %d pixels equal to %r (from %s)", count, nodata, source)
            _check_nodata_range(np.asarray(da.values), nodata, source, count)
        else:
            log.info("preprocess: masking pixels equal to %r (from %s)", nodata, source)
        keep = (da != nodata) if keep is None else keep & (da != nodata)
    out = da if keep is None else da.where(keep)
    return out.astype(dtype, copy=False)


def _check_nodata_range(values: np.ndarray, nodata, source: str, count: int) -> None:
    """Warn when a nodata value hides many pixels yet lies inside the range of
    the other values: they may be real measurements (Landsat's zeros are
    not, but a declared 0 in a reflectance band with values around it may be)."""
    share = count / max(values.size, 1)
    if share < 0.05:
        return
    rest = (
        values[(values != nodata) & np.isfinite(values)]
        if values.dtype.kind == "f"
        else (values[values != nodata])
    )
    if rest.size and rest.min() < nodata < rest.max():
        warn(
            f"preprocess: nodata={nodata!r} (from {source}) masks {share:.1%} of the pixels, yet "
            f"lies inside the range of the other values ({rest.min()!r} to {rest.max()!r}): if "
            "those pixels are real measurements, pass the right nodata= (or nodata=float('nan')); "
            "otherwise tile with min_valid=... to drop mostly-filled tiles",
            DataDroppedWarning,
        )


def _quiet(func):
    """``func`` (a NaN-skipping reduction) that leaves all-NaN pixels NaN
    without numpy's "All-NaN slice" warning (warning filters are not
    thread-safe, so the all-NaN pixels are set aside instead)."""

    def reduce(a, axis):
        empty = np.isnan(a).all(axis=axis)
        if empty.any():
            a = np.where(np.expand_dims(empty, axis), 0, a)
        out = func(a, axis=axis)
        out[empty] = np.nan
        return out

    return reduce


def _nearest_order(times: np.ndarray, reference) -> np.ndarray:
    """Time indices from closest to ``reference`` to furthest (ties: earlier first)."""
    try:
        ref = np.datetime64(reference)
        t = np.asarray(times).astype("datetime64[ns]")
    except (TypeError, ValueError) as exc:
        raise InvalidParameterError(
            f"reference= must be a date like '2023-06-15' and the time coordinate dates; got "
            f"{reference!r}"
        ) from exc
    gap = np.abs((t - ref.astype("datetime64[ns]")).astype(np.int64))
    return np.lexsort((t.astype(np.int64), gap))


def _first_valid(a: np.ndarray, axis: int = -1, order=None) -> np.ndarray:
    """Along ``axis`` (in ``order``), the first non-NaN value (NaN if none)."""
    a = np.take(a, order, axis=axis)
    valid = ~np.isnan(a)
    first = np.expand_dims(valid.argmax(axis=axis), axis)
    out = np.take_along_axis(a, first, axis=axis).squeeze(axis)
    return out


def _reduce_time(da: xr.DataArray, time_dim: Hashable, how: str, reference=None) -> xr.DataArray:
    if da.chunks is not None and len(da.chunksizes[time_dim]) > 1:
        log.info("preprocess: rechunking %r to one chunk for the %s composite", time_dim, how)
        da = da.chunk({time_dim: -1})
    if how == "nearest":
        if time_dim not in da.coords:
            raise InvalidParameterError(f"reduce='nearest' needs dates on {time_dim!r}")
        order = _nearest_order(da[time_dim].values, reference)

        def func(a, axis):
            return _first_valid(a, axis, order)
    else:
        func = _quiet(np.nanmedian if how == "median" else np.nanmean)
    out = xr.apply_ufunc(
        func,
        da,
        input_core_dims=[[time_dim]],
        kwargs={"axis": -1},
        dask="parallelized",
        output_dtypes=[da.dtype],
        keep_attrs=True,
    )
    return out.transpose(*[d for d in da.dims if d != time_dim])


def _slice_labels(da: xr.DataArray, other: list[Hashable]) -> list[str]:
    """A readable name for each spatial slice, in C order: "band=red"."""
    if not other:
        return ["the data"]
    values = [da[d].values.tolist() if d in da.coords else range(da.sizes[d]) for d in other]
    return [", ".join(f"{d}={v}" for d, v in zip(other, combo)) for combo in product(*values)]


def _band_stats(da: xr.DataArray, band_dims: list) -> tuple[xr.DataArray, xr.DataArray, Any]:
    """Per-band mean and population std (float64) of the observed pixels,
    and the raw ``(*band, 3)`` array of mean, std and observed count.

    On dask they come from an independent copy of the graph: a second read
    of the input, instead of holding the whole scene in memory until global
    statistics are known.
    """
    rest = [d for d in da.dims if d not in band_dims]
    ordered = da.transpose(*band_dims, *rest)
    stats = band_stats_array(ordered.data, len(band_dims))
    coords = {d: da[d].variable for d in band_dims if d in da.coords}
    mean, std = (xr.DataArray(stats[..., k], dims=band_dims, coords=coords) for k in (0, 1))
    return mean, std, stats


def _standardize(da: xr.DataArray, mean: xr.DataArray, std: xr.DataArray) -> xr.DataArray:
    """``(da - mean) / std`` as float32; a zero std divides by 1."""
    mean, std = mean.astype(np.float64), std.astype(np.float64)
    scale = xr.where(std > 0, std, 1.0)
    band_dims = list(mean.dims)
    rest = [d for d in da.dims if d not in band_dims]
    ordered = da.transpose(*band_dims, *rest)
    pad = (1,) * len(rest)

    def shaped(stat: xr.DataArray):
        data = stat.transpose(*band_dims).data
        return data.reshape(data.shape + pad)

    data = standardize_array(ordered.data, shaped(mean), shaped(scale))
    out = ordered.copy(data=data).transpose(*da.dims)
    return out.assign_coords(fns_mean=mean, fns_std=std)


def _user_stats(stats, da: xr.DataArray, spatial, time_dim) -> tuple[xr.DataArray, xr.DataArray]:
    """``(mean, std)`` DataArrays over the band dims, from ``stats=``."""
    band_dims = [d for d in da.dims if d not in spatial and d != time_dim]
    if isinstance(stats, Mapping):
        if set(stats) != {"mean", "std"}:
            raise InvalidParameterError(
                f"stats= mapping needs exactly the keys 'mean' and 'std'; got {sorted(stats)}"
            )
        mean, std = (_as_band_array(stats[k], band_dims, da, k) for k in ("mean", "std"))
    else:
        raise InvalidParameterError(
            "stats= takes a preprocessed scene (a DataArray, Dataset or their tiles) or "
            f"{{'mean': ..., 'std': ...}}; got {type(stats).__name__}"
        )
    for name, arr in (("mean", mean), ("std", std)):
        extra = set(arr.dims) - set(band_dims)
        if extra:
            raise InvalidParameterError(
                f"stats {name} has dims {sorted(map(str, extra))} the data lacks"
            )
        for d in arr.dims:
            if arr.sizes[d] != da.sizes[d]:
                raise InvalidParameterError(
                    f"stats {name} has {arr.sizes[d]} values along {d!r}, the data {da.sizes[d]}"
                )
            if (
                d in arr.coords
                and d in da.coords
                and set(arr[d].values.tolist()) != set(da[d].values.tolist())
            ):
                raise InvalidParameterError(
                    f"stats {name} is labelled {arr[d].values.tolist()} along {d!r}, the data "
                    f"{da[d].values.tolist()}: statistics must describe the same bands"
                )
    _check_stat_values(mean, std)
    # Same labels, possibly another order: put them in the data's order.
    labelled = {d: da[d].values for d in mean.dims if d in mean.coords and d in da.coords}
    return mean.reindex(labelled), std.reindex({d: v for d, v in labelled.items() if d in std.dims})


def _check_stat_values(mean: xr.DataArray, std: xr.DataArray) -> None:
    """Finite means and finite, non-negative stds (checked where in memory)."""
    for name, arr in (("mean", mean), ("std", std)):
        if arr.chunks is not None:
            continue
        values = np.asarray(arr.values, dtype=np.float64)
        if not np.isfinite(values).all():
            raise InvalidParameterError(
                f"stats {name} must be finite; got {values.tolist()}: pass the statistics of "
                "a scene with valid pixels in every band"
            )
        if name == "std" and (values < 0).any():
            raise InvalidParameterError(
                f"stats std must be >= 0 (a standard deviation); got {values.tolist()}"
            )


def _as_band_array(value, band_dims, da, name) -> xr.DataArray:
    if isinstance(value, xr.DataArray):
        return value
    arr = np.asarray(value, dtype=np.float64)
    if arr.ndim == 0:
        return xr.DataArray(arr)
    if arr.shape != tuple(da.sizes[d] for d in band_dims):
        raise InvalidParameterError(
            f"stats {name} has shape {arr.shape}; expected one value per {tuple(band_dims)} "
            f"({tuple(da.sizes[d] for d in band_dims)})"
        )
    return xr.DataArray(arr, dims=band_dims, coords={d: da[d] for d in band_dims if d in da.coords})
