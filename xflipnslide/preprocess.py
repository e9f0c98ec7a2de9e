"""Preprocessing, the xarray layer: nodata, time composite, gap filling, standardisation."""

from __future__ import annotations

import logging
import math
from collections.abc import Hashable, Mapping, Sequence
from itertools import product
from typing import Any, Literal, TypeVar

import numpy as np
import xarray as xr
from dask.base import is_dask_collection

from ._dask import independent_copy
from ._fill import fill_dask, fill_numpy
from .dims import find_spatial_dims
from .errors import InvalidParameterError
from .kernels import mean_std, standardize_into

__all__ = ["STATS_COORDS", "preprocess"]

log = logging.getLogger(__name__)

T_Xarray = TypeVar("T_Xarray", xr.DataArray, xr.Dataset)

#: Coordinates that carry the standardisation statistics with the data.
STATS_COORDS = ("fns_mean", "fns_std")

_REDUCERS = ("median", "mean", None)
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
) -> T_Xarray:
    """Make a scene ML-ready: mask nodata, composite time, fill gaps, standardise.

    Parameters
    ----------
    obj
        A DataArray (say ``(time, band, y, x)``), or a Dataset whose
        variables with both spatial dims are each preprocessed on their own
        (one variable per band, as some readers give them; their statistics
        are the coordinates ``{name}_fns_mean`` / ``{name}_fns_std``);
        other variables are kept.
    nodata
        Value marking missing pixels. By default taken from rioxarray
        (``rio.nodata``, ``rio.encoded_nodata``), then the ``_FillValue`` or
        ``nodata`` attrs; NaN is always missing. Files that mark nodata
        without declaring it (Landsat's zeros) need it here: ``nodata=0``.
    time_dim
        The time dimension, if any.
    reduce
        ``"median"`` (default) or ``"mean"`` over ``time_dim``, skipping NaN;
        ``None`` keeps the time dim. Skipped when there is no ``time_dim``.
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
        previously preprocessed scene (its ``fns_mean``/``fns_std``
        coordinates) or a mapping ``{"mean": ..., "std": ...}`` of scalars,
        arrays over the band dims or DataArrays. Use the training scene's
        statistics for validation and test scenes.
    dims
        ``(row_dim, column_dim)``, found by name by default.
    reach
        Dask only: pixels of halo read around each chunk for the gap fill.
        Gaps up to ``reach`` pixels from a valid pixel are filled exactly
        for any chunking; wider ones take the nearest valid pixel in the
        chunk and its halo (or the band mean if there is none) and warn with
        :class:`~xflipnslide.errors.FillReachWarning`. numpy input is always
        filled exactly.
    strict
        Raise :class:`~xflipnslide.errors.FillReachError` instead of warning.

    Returns
    -------
    DataArray or Dataset
        Float data with the time dim reduced, gaps filled and bands
        standardised; same spatial grid, coordinates, CRS and attrs. With
        ``standardize``, coordinates ``fns_mean`` and ``fns_std`` (float64,
        over the band dims) hold the statistics used; they survive ``tile``
        and ``to_zarr``. Dask input stays lazy: nothing is computed here.

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
        raise InvalidParameterError(f"reduce must be 'median', 'mean' or None; got {reduce!r}")
    if fill not in _FILLS:
        raise InvalidParameterError(f"fill must be 'nearest' or None; got {fill!r}")
    if isinstance(reach, bool) or not isinstance(reach, (int, np.integer)) or reach < 1:
        raise InvalidParameterError(f"reach must be a positive number of pixels; got {reach!r}")
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
    )
    if isinstance(obj, xr.Dataset):
        ydim, xdim = find_spatial_dims(obj, dims)
        out = obj.copy()
        for name, var in obj.data_vars.items():
            if ydim in var.dims and xdim in var.dims:
                var_stats = _dataset_stats(stats, name)
                done = _preprocess_array(var, (ydim, xdim), stats=var_stats, **options)
                # Each variable has its own statistics: name them after it.
                renames = {c: f"{name}_{c}" for c in STATS_COORDS if c in done.coords}
                out[name] = done.drop_vars(list(renames))
                for old, new in renames.items():
                    out.coords[new] = done.coords[old].variable
        return out
    if not isinstance(obj, xr.DataArray):
        raise InvalidParameterError(
            f"preprocess takes a DataArray or Dataset; got {type(obj).__name__}"
        )
    return _preprocess_array(obj, find_spatial_dims(obj, dims), stats=stats, **options)


def _dataset_stats(stats, name: Hashable):
    """The statistics of variable ``name`` from a preprocessed Dataset."""
    if not isinstance(stats, xr.Dataset):
        return stats
    coords = [f"{name}_{c}" for c in STATS_COORDS]
    if not all(c in stats.coords for c in coords):
        raise InvalidParameterError(
            f"stats= Dataset has no {coords[0]}/{coords[1]} coordinates for variable {name!r}: "
            "pass a Dataset returned by preprocess(..., standardize=True)"
        )
    return {"mean": stats.coords[coords[0]], "std": stats.coords[coords[1]]}


def _preprocess_array(
    da, spatial, *, nodata, time_dim, reduce, fill, standardize, stats, reach, strict
):
    if not (np.issubdtype(da.dtype, np.number) or da.dtype == bool) or np.issubdtype(
        da.dtype, np.complexfloating
    ):
        raise InvalidParameterError(f"preprocess needs real numeric data; got dtype {da.dtype}")
    mean_std = _user_stats(stats, da, spatial, time_dim) if stats is not None else None
    attrs = {
        k: v for k, v in da.attrs.items() if k not in ("_FillValue", "nodata", "missing_value")
    }
    da = _mask_nodata(da, nodata)
    if time_dim in da.dims and reduce is not None:
        da = _reduce_time(da, time_dim, reduce)
    # The statistics (and the fill's fallback) come from the observed pixels.
    # On dask they are taken from an independent copy of the graph: a cheap
    # second read of the input, instead of holding the whole scene in
    # memory until global statistics are known.
    lazy = is_dask_collection(da.data)
    observed = da.copy(data=independent_copy(da.data)) if lazy else da
    if standardize and mean_std is None:
        mean_std = _observed_stats(observed, [d for d in da.dims if d in spatial or d == time_dim])
    if fill == "nearest":
        da = _fill(da, spatial, reach, strict, observed)
    if standardize:
        da = _standardize(da, *mean_std)
    da.attrs = attrs
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
    """Nodata to NaN, in float32 (float64 stays float64)."""
    source = "nodata="
    if nodata is None:
        nodata, source = _declared_nodata(da)
    dtype = np.float64 if da.dtype == np.float64 else np.float32
    if da.dtype != dtype:
        log.info("preprocess: converting %s to %s", da.dtype, np.dtype(dtype).name)
    if nodata is None or (isinstance(nodata, float) and math.isnan(nodata)):
        return da.astype(dtype, copy=False)
    masked = da.where(da != nodata).astype(dtype, copy=False)
    if is_dask_collection(da.data):
        log.info("preprocess: masking pixels equal to %r (from %s)", nodata, source)
    else:
        log.info(
            "preprocess: masked %d pixels equal to %r (from %s)",
            int((da.values == nodata).sum()),
            nodata,
            source,
        )
    return masked


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


def _reduce_time(da: xr.DataArray, time_dim: Hashable, how: str) -> xr.DataArray:
    if da.chunks is not None and len(da.chunksizes[time_dim]) > 1:
        log.info("preprocess: rechunking %r to one chunk for the %s composite", time_dim, how)
        da = da.chunk({time_dim: -1})
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


def _fill(
    da: xr.DataArray, spatial, reach: int, strict: bool, observed: xr.DataArray
) -> xr.DataArray:
    other = [d for d in da.dims if d not in spatial]
    da = da.transpose(*other, *spatial)
    labels = _slice_labels(da, other)
    if is_dask_collection(da.data):
        fallback = observed.mean(list(spatial), skipna=True).transpose(*other).data
        data = fill_dask(da.data, fallback, reach=reach, strict=strict, labels=labels)
    else:
        data = fill_numpy(np.asarray(da.data), labels=labels)
    return da.copy(data=data)


def _observed_stats(observed: xr.DataArray, stat_dims: list) -> tuple[xr.DataArray, xr.DataArray]:
    """Per-band mean and population std of the valid pixels, in float64."""
    if is_dask_collection(observed.data):
        return (
            observed.mean(stat_dims, skipna=True, dtype=np.float64),
            observed.std(stat_dims, skipna=True, dtype=np.float64),
        )
    band_dims = [d for d in observed.dims if d not in stat_dims]
    values = observed.transpose(*band_dims, *stat_dims).values
    shape = values.shape[: len(band_dims)]
    stats = np.array([mean_std(values[idx]) for idx in np.ndindex(shape)]).reshape((*shape, 2))
    coords = {d: observed[d] for d in band_dims if d in observed.coords}
    return tuple(xr.DataArray(stats[..., k], dims=band_dims, coords=coords) for k in (0, 1))


def _standardize(da: xr.DataArray, mean: xr.DataArray, std: xr.DataArray) -> xr.DataArray:
    """``(da - mean) / std`` as float32; a zero std divides by 1."""
    mean, std = mean.astype(np.float64), std.astype(np.float64)
    scale = xr.where(std > 0, std, 1.0)
    band_dims = list(mean.dims)
    if is_dask_collection(da.data) or (set(mean.dims) | set(std.dims)) - set(da.dims):
        out = ((da - mean.astype(np.float32)) / scale.astype(np.float32)).astype(np.float32)
    else:  # numpy: one pass per band, no temporaries
        rest = [d for d in da.dims if d not in band_dims]
        out = da.transpose(*band_dims, *rest)
        m = np.broadcast_to(mean.transpose(*band_dims).values, out.shape[: len(band_dims)])
        sc = np.broadcast_to(scale.transpose(*band_dims).values, out.shape[: len(band_dims)])
        values = np.ascontiguousarray(out.values)
        result = np.empty(values.shape, np.float32)
        for idx in np.ndindex(values.shape[: len(band_dims)]):
            standardize_into(values[idx], float(m[idx]), float(sc[idx]), result[idx])
        out = out.copy(data=result).transpose(*da.dims)
    return out.assign_coords(fns_mean=mean, fns_std=std)


def _user_stats(stats, da: xr.DataArray, spatial, time_dim) -> tuple[xr.DataArray, xr.DataArray]:
    """``(mean, std)`` DataArrays over the band dims, from ``stats=``."""
    band_dims = [d for d in da.dims if d not in spatial and d != time_dim]
    if isinstance(stats, (xr.DataArray, xr.Dataset)):
        if not all(c in stats.coords for c in STATS_COORDS):
            raise InvalidParameterError(
                "stats= got an object without fns_mean/fns_std coordinates: pass a scene returned "
                "by preprocess(..., standardize=True), or {'mean': ..., 'std': ...}"
            )
        mean, std = stats.coords["fns_mean"].variable, stats.coords["fns_std"].variable
        mean, std = (
            xr.DataArray(v, coords={d: stats[d] for d in v.dims if d in stats.coords})
            for v in (mean, std)
        )
    elif isinstance(stats, Mapping):
        if set(stats) != {"mean", "std"}:
            raise InvalidParameterError(
                f"stats= mapping needs exactly the keys 'mean' and 'std'; got {sorted(stats)}"
            )
        mean, std = (_as_band_array(stats[k], band_dims, da, k) for k in ("mean", "std"))
    else:
        raise InvalidParameterError(
            f"stats= takes a preprocessed scene or {{'mean': ..., 'std': ...}}; got {type(stats).__name__}"
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
    # Same labels, possibly another order: put them in the data's order.
    labelled = {d: da[d].values for d in mean.dims if d in mean.coords and d in da.coords}
    return mean.reindex(labelled), std.reindex({d: v for d, v in labelled.items() if d in std.dims})


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
