"""Standardisation statistics of :func:`~xflipnslide.preprocess`: the
scene's own per band, or those ``stats=`` gives (a mapping, or an earlier
result's, found by :func:`read_stats`), and the standardisation with them."""

from __future__ import annotations

from collections.abc import Hashable, Mapping

import numpy as np
import xarray as xr

from .._core.stats import check_stat_values, pooled_stats_array, standardize_array
from ..errors import InvalidParameterError
from ..schema import recorded_stats, stats_coords

__all__ = ["band_stats", "read_stats", "standardize_with", "stats_for", "user_stats"]


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


def stats_for(stats, name: Hashable, *, single: bool):
    """``stats=`` for the variable ``name``: an xarray object's recorded
    statistics (its own name's first, then unnamed ones, then, where
    ``single``, the only ones it holds), or ``stats`` as given."""
    if not isinstance(stats, (xr.DataArray, xr.Dataset)):
        return stats
    own = stats.name if isinstance(stats, xr.DataArray) else None
    return _find_stats(stats, [name, None, own], single=single)


def _find_stats(obj, prefer: list, single: bool) -> dict[str, xr.DataArray]:
    found = recorded_stats(obj)
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
            (mean_c, std_c), (own_mean, own_std) = stats_coords(), stats_coords("{name}")
            raise InvalidParameterError(
                f"stats= got an object without {mean_c}/{std_c} coordinates (nor "
                f"{own_mean}/{own_std}): pass a scene, Dataset or tiles returned "
                "by preprocess(..., standardize=True), or {'mean': ..., 'std': ...}"
            )
    out = {}
    for stat, coord in zip(("mean", "std"), found[key]):
        v = obj.coords[coord].variable
        out[stat] = xr.DataArray(v, coords={d: obj[d] for d in v.dims if d in obj.coords})
    return out


def band_stats(das: list[xr.DataArray], band_dims: list) -> tuple[xr.DataArray, xr.DataArray, list]:
    """Per-band mean and population std (float64) of the observed pixels of
    all of ``das`` together (one scene, or the scenes of a collection, which
    agree on their band dims and labels), and each one's own raw
    ``(*band, 3)`` array of mean, std and observed count.

    The pooled statistics merge every chunk's moments of every scene
    exactly. On dask they come from an independent copy of each graph: a
    second read of the input, instead of holding the whole scene in memory
    until global statistics are known.
    """
    data = []
    for da in das:
        rest = [d for d in da.dims if d not in band_dims]
        data.append(da.transpose(*band_dims, *rest).data)
    pooled, own = pooled_stats_array(data, len(band_dims))
    first = das[0]
    coords = {d: first[d].variable for d in band_dims if d in first.coords}
    mean, std = (xr.DataArray(pooled[..., k], dims=band_dims, coords=coords) for k in (0, 1))
    return mean, std, own


def standardize_with(da: xr.DataArray, mean: xr.DataArray, std: xr.DataArray) -> xr.DataArray:
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
    return out.assign_coords(dict(zip(stats_coords(), (mean, std))))


def user_stats(stats, da: xr.DataArray, spatial, time_dim) -> tuple[xr.DataArray, xr.DataArray]:
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
    for name, arr in (("mean", mean), ("std", std)):
        check_stat_values(name, arr.data)  # where in memory
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
