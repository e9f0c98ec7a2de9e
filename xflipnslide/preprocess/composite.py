"""The time composite of :func:`~xflipnslide.preprocess`: ``reduce=`` over the
time dim (median, mean, or the observation nearest ``reference=``)."""

from __future__ import annotations

from collections.abc import Hashable
from typing import Any

import numpy as np
import xarray as xr

from .._core.composite import composite_array
from ..errors import InvalidParameterError

__all__ = ["check_reduce", "reduce_time"]

_REDUCERS = ("median", "mean", "nearest", None)


def check_reduce(reduce: Any, reference: Any) -> None:
    """Raise for an unknown ``reduce=``, or ``reference=`` given without
    ``reduce="nearest"`` (or missing with it)."""
    if reduce not in _REDUCERS:
        raise InvalidParameterError(
            f"reduce must be 'median', 'mean', 'nearest' or None; got {reduce!r}"
        )
    if (reduce == "nearest") != (reference is not None):
        raise InvalidParameterError(
            "reduce='nearest' needs reference= (a date, e.g. '2023-06-15'), and reference= is "
            "only used with reduce='nearest'"
        )


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


def reduce_time(da: xr.DataArray, time_dim: Hashable, how: str, reference=None) -> xr.DataArray:
    """``da`` reduced over ``time_dim`` by ``how`` (NaN skipped; lazy for dask
    input), its other dims in their order, its attrs kept."""
    order = None
    if how == "nearest":
        if time_dim not in da.coords:
            raise InvalidParameterError(f"reduce='nearest' needs dates on {time_dim!r}")
        order = _nearest_order(da[time_dim].values, reference)
    out = xr.apply_ufunc(
        composite_array,  # numpy or dask: it dispatches
        da,
        input_core_dims=[[time_dim]],
        kwargs={"how": how, "order": order, "label": time_dim},
        dask="allowed",
        keep_attrs=True,
    )
    return out.transpose(*[d for d in da.dims if d != time_dim])
