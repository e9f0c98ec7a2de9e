"""Preprocessing, the xarray layer: nodata, time composite, gap filling, standardisation.

:func:`preprocess` is the entry point; the features live in
:mod:`.qa` (cloud masks from QA layers, :func:`mask_clouds`),
:mod:`.composite` (``reduce=``), :mod:`.stats` (``standardize=``,
``stats=``, :func:`read_stats`) and :mod:`.scenes` (many scenes, one set of
statistics); the pixel work in the array layer
(``_core.fill``, ``_core.stats``, ``_core.composite``).
"""

from __future__ import annotations

import logging
import math
import numbers
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass
from itertools import product
from typing import Any, Literal

import numpy as np
import xarray as xr

from .._core.fill import fill_array, prepare_chunks, report_missing
from .._core.stats import report_nodata
from ..dims import find_spatial_dims
from ..errors import InvalidParameterError, check_positive_int
from ..schema import IMAGE, OBSERVED, STATS_COORDS, T_Xarray, stats_coords
from .composite import check_reduce, reduce_time
from .qa import LANDSAT_C2_QA_BITS, QA_DEFAULTS, SENTINEL2_SCL_CLASSES, mask_clouds
from .scenes import check_same_bands, scene_items
from .stats import band_stats, read_stats, standardize_with, stats_for, user_stats

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

_FILLS = ("nearest", None)


def preprocess(
    obj: T_Xarray | Mapping[Hashable, T_Xarray] | Sequence[T_Xarray],
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
) -> T_Xarray | dict[Hashable, T_Xarray] | list[T_Xarray]:
    """Make a scene, or many, ML-ready: mask nodata, composite time, fill
    gaps, standardise.

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
        Or many scenes, ``{id: scene}`` or a list (a collection, for
        :func:`~xflipnslide.collection.tile_collection`), all DataArrays or
        all Datasets, in any CRS, grid and shape: each is masked,
        composited and filled on its own, and all are standardised with
        one set of statistics per band, those of the observed pixels of
        all scenes together (a model takes one normalisation). The scenes
        must agree on their band dims and labels (and, for Datasets, on the
        variables to preprocess).
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
        Statistics to standardise with instead of the scene's own (for many
        scenes: instead of theirs, the same for every scene): a
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
        Dask input stays lazy: nothing is computed here. For many scenes:
        a dict with the same keys, or a list, of such results, every one
        carrying the same statistics (on dask the same lazy array, from one
        pass over all scenes' chunks), so ``stats=`` of any of them, or of
        their tiles, standardises new scenes alike.

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
        For an unknown option or unusable statistics, or scenes that differ
        in their band dims or labels (naming the scenes and the
        difference), before any pixel work.
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

    Many scenes, one set of statistics:

    >>> left, right = scene.isel(x=slice(0, 300)), scene.isel(x=slice(300, None))
    >>> both = xflipnslide.preprocess({"left": left, "right": right}, nodata=0)
    >>> bool((both["left"].fns_mean == both["right"].fns_mean).all())
    True
    """
    check_reduce(reduce, reference)
    if fill not in _FILLS:
        raise InvalidParameterError(f"fill must be 'nearest' or None; got {fill!r}")
    reach = check_positive_int(reach, "reach")
    _check_nodata(nodata)
    if stats is not None and not standardize:
        raise InvalidParameterError("stats= is only used with standardize=True")
    objs, keys, wrap = scene_items(obj)
    if variables is not None and isinstance(objs[0], xr.DataArray):
        raise InvalidParameterError("variables= is for Datasets; a DataArray is one variable")
    prepare = dict(nodata=nodata, time_dim=time_dim, reduce=reduce, fill=fill, reach=int(reach))
    spatial = [find_spatial_dims(o, dims) for o in objs]
    if isinstance(objs[0], xr.Dataset):
        names = [_variables_to_process(o, sp, variables) for o, sp in zip(objs, spatial)]
        scenes = [[o[n] for n in ns] for o, ns in zip(objs, names)]
    else:
        names, scenes = [[None] for _ in objs], [[o] for o in objs]
    check_same_bands(scenes, keys, names, spatial, time_dim)
    # Each scene's and variable's statistics from stats=, found before any pixel work.
    single = len(names[0]) == 1
    given = [[None] * len(vars_) for vars_ in scenes]
    if standardize and stats is not None:
        given = [
            [user_stats(stats_for(stats, v.name, single=single), v, sp, time_dim) for v in vars_]
            for vars_, sp in zip(scenes, spatial)
        ]
    prepared = []
    for vars_, gs, sp, key in zip(scenes, given, spatial, keys):
        prepared.append(
            [
                _prepare(v, sp, given=g, scene=key, reference=reference, **prepare)
                for v, g in zip(vars_, gs)
            ]
        )
    options = dict(fill=fill, standardize=standardize, reach=int(reach), strict=strict)
    done = []
    for j in range(len(names[0])):  # one set of statistics per variable, over all scenes
        column = [p[j] for p in prepared]
        own: list = [None] * len(column)
        pooled = None
        if standardize and column[0].given is None:
            mean, std, own = band_stats([p.da for p in column], column[0].band_dims)
            pooled = (mean, std)
        done.append(
            [
                _finish(p, own_stats, pooled or p.given, column[0].band_dims, **options)
                for p, own_stats in zip(column, own)
            ]
        )
    outs = []
    for k, obj_k in enumerate(objs):
        results = [column[k] for column in done]
        if isinstance(obj_k, xr.Dataset):
            outs.append(_assemble(obj_k, names[k], results))
        else:
            outs.append(results[0])
    return wrap(outs)


def _assemble(ds: xr.Dataset, names: list[Hashable], results: list[xr.DataArray]) -> xr.Dataset:
    """``ds`` with each preprocessed variable; each one's statistics named after it."""
    out = ds.copy()
    for name, done in zip(names, results):
        renames = {c: own for c, own in zip(stats_coords(), stats_coords(name)) if c in done.coords}
        out[name] = done.drop_vars([*renames, OBSERVED])
        for old, new in renames.items():
            out.coords[new] = done.coords[old].variable
        seen = done.coords[OBSERVED].variable
        if OBSERVED in out.coords:
            seen = out.coords[OBSERVED].variable & seen
        out.coords[OBSERVED] = seen
    return out


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


@dataclass
class _Prepared:
    """One variable of one scene, masked and composited, before fill and
    standardisation (which wait for the statistics of all scenes)."""

    da: xr.DataArray
    spatial: tuple
    other: list
    band_dims: list
    labels: list[str]
    observed: xr.DataArray
    given: tuple | None
    attrs: dict


def _prepare(da, spatial, *, nodata, time_dim, reduce, fill, reach, reference, given, scene):
    if not (np.issubdtype(da.dtype, np.number) or da.dtype == bool) or np.issubdtype(
        da.dtype, np.complexfloating
    ):
        raise InvalidParameterError(f"preprocess needs real numeric data; got dtype {da.dtype}")
    attrs = {
        k: v
        for k, v in da.attrs.items()
        if k not in ("_FillValue", "nodata", "missing_value", "fill_value")
    }
    if fill == "nearest":  # dask chunks much smaller than reach: rechunked (warned)
        last = da.transpose(..., *spatial)
        da = last.copy(data=prepare_chunks(last.data, reach)).transpose(*da.dims)
    da = _mask_nodata(da, nodata)
    if time_dim in da.dims and reduce is not None:
        da = reduce_time(da, time_dim, reduce, reference)
    other = [d for d in da.dims if d not in spatial]
    da = da.transpose(*other, *spatial)
    valid = da.notnull()
    observed = valid.all(other) if other else valid
    labels = _slice_labels(da, other, scene)
    report_missing(da.data, labels, filled=fill == "nearest")
    band_dims = [d for d in other if d != time_dim]
    return _Prepared(da, tuple(spatial), other, band_dims, labels, observed, given, attrs)


def _finish(p: _Prepared, own, stats, stats_dims, *, fill, standardize, reach, strict):
    """Fill and standardise one prepared variable with ``stats`` (mean, std);
    ``own``: its own raw statistics over ``stats_dims`` (or None)."""
    da = p.da
    if fill == "nearest":
        # Each slice's mean (the dask fill's last resort) and valid count (its
        # warning): the scene's own from the standardisation's pass when the
        # slices are the bands (no time kept); else the fill takes its own.
        same = own is not None and list(stats_dims) == p.other
        data = fill_array(
            da.data, own if same else None, reach=reach, strict=strict, labels=p.labels
        )
        da = da.copy(data=data)
    if standardize:
        da = standardize_with(da, *stats)
    da = da.assign_coords({OBSERVED: p.observed.variable})
    da.attrs = p.attrs
    return da


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
        report_nodata(da.data, nodata, source)  # counted and checked where in memory
        keep = (da != nodata) if keep is None else keep & (da != nodata)
    out = da if keep is None else da.where(keep)
    return out.astype(dtype, copy=False)


def _slice_labels(da: xr.DataArray, other: list[Hashable], scene=None) -> list[str]:
    """A readable name for each spatial slice, in C order: "band=red", or in
    a collection "scene 'a', band=red" (in warnings and errors of either backend)."""
    prefix = [] if scene is None else [f"scene {scene!r}"]
    if not other:
        return [", ".join([*prefix, "the data"])]
    values = [da[d].values.tolist() if d in da.coords else range(da.sizes[d]) for d in other]
    return [
        ", ".join([*prefix, *(f"{d}={v}" for d, v in zip(other, combo))])
        for combo in product(*values)
    ]
