"""Finding the spatial (row, column) dimensions of an xarray object by name."""

from __future__ import annotations

from collections.abc import Hashable, Sequence

import xarray as xr

from .errors import SpatialDimsError

__all__ = ["SPATIAL_NAMES", "find_spatial_dims", "spatial_data"]

#: Recognised (row, column) dimension name pairs, in order of preference.
SPATIAL_NAMES: tuple[tuple[str, str], ...] = (
    ("y", "x"),
    ("lat", "lon"),
    ("latitude", "longitude"),
)


def find_spatial_dims(
    obj: xr.DataArray | xr.Dataset, dims: Sequence[Hashable] | None = None
) -> tuple[Hashable, Hashable]:
    """Return the ``(row, column)`` dimension names of ``obj``.

    Parameters
    ----------
    obj
        A DataArray or Dataset.
    dims
        ``(row_dim, column_dim)`` given explicitly; checked against ``obj``.
        When ``None``, the pairs in :data:`SPATIAL_NAMES` are looked for,
        then the dims rioxarray knows (``obj.rio.y_dim`` / ``obj.rio.x_dim``).

    Raises
    ------
    SpatialDimsError
        If none or more than one pair is found, or ``dims`` names a missing
        dimension. The message says how to name them.
    """
    present = list(obj.dims)
    if dims is not None:
        if isinstance(dims, (str, bytes)) or len(dims) != 2:
            raise SpatialDimsError(
                f"dims must be a pair (row_dim, column_dim), e.g. dims=('y', 'x'); got {dims!r}"
            )
        missing = [d for d in dims if d not in obj.dims]
        if missing:
            raise SpatialDimsError(
                f"dims={tuple(dims)!r} names {missing!r}, which the data does not have; "
                f"its dims are {present!r}"
            )
        if dims[0] == dims[1]:
            raise SpatialDimsError(f"dims must name two different dimensions; got {tuple(dims)!r}")
        return dims[0], dims[1]

    found = [pair for pair in SPATIAL_NAMES if pair[0] in obj.dims and pair[1] in obj.dims]
    if not found:
        found = _rioxarray_dims(obj)
    if len(found) == 1:
        return found[0]
    how = "pass dims=(row_dim, column_dim), e.g. dims=('y', 'x')"
    if not found:
        raise SpatialDimsError(
            f"cannot find the spatial dimensions among {present!r}: name them "
            f"{' / '.join(f'{y}, {x}' for y, x in SPATIAL_NAMES)}, or {how}"
        )
    raise SpatialDimsError(f"the spatial dimensions are ambiguous: {found!r} all fit; {how}")


def spatial_data(obj: xr.DataArray | xr.Dataset, dims: tuple[Hashable, Hashable]) -> list:
    """The data (numpy or dask, untouched) of ``obj``, or of each of a
    Dataset's variables with both spatial ``dims``, with those dims last:
    what the array layer follows the chunking of where it builds a graph on
    the same grid."""
    arrays = [obj] if isinstance(obj, xr.DataArray) else list(obj.data_vars.values())
    return [v.variable.transpose(..., *dims).data for v in arrays if all(d in v.dims for d in dims)]


def _rioxarray_dims(obj: xr.DataArray | xr.Dataset) -> list[tuple[Hashable, Hashable]]:
    """The spatial dims rioxarray was told about (``rio.set_spatial_dims``)."""
    try:
        import rioxarray  # noqa: F401  (registers .rio)

        pair = (obj.rio.y_dim, obj.rio.x_dim)
    except Exception:  # rioxarray missing, or it finds no dims either
        return []
    return [pair] if pair[0] in obj.dims and pair[1] in obj.dims else []
