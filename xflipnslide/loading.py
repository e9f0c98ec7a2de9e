"""Lazy objects into memory in one pass: :func:`load`."""

from __future__ import annotations

import xarray as xr

from ._core.load import load_arrays
from .errors import InvalidParameterError
from .schema import T_Xarray

__all__ = ["load"]


def load(obj: T_Xarray) -> T_Xarray:
    """Compute lazy tiles (or any lazy object) into memory, in one pass.

    ``.compute()`` lets dask concatenate each variable's chunks into a new
    array, a second copy of the output; ``load`` allocates the results first
    and writes every chunk once, into its place: lazy tile chunks are
    gathered by the tiling kernel straight into the result (no chunk of
    their own, no copy), other chunks are copied in once as they are
    computed. All variables and lazy coordinates are one graph, so inputs
    they share are read once. Peak memory stays near input + output. On a
    ``dask.distributed`` cluster (or the processes scheduler) the chunks are
    computed elsewhere and gathered, as ``.compute()`` does.

    Examples
    --------
    >>> import xflipnslide
    >>> tiles = xflipnslide.open_image(xflipnslide.sample_scene_path()).fns.tile(128).fns.load()
    >>> type(tiles.data).__name__, tiles.sizes["tile"]  # 7 x 7 + 6 x 6 windows, in memory
    ('ndarray', 85)
    """
    if not isinstance(obj, (xr.DataArray, xr.Dataset)):
        raise InvalidParameterError(
            f"load takes an xarray DataArray or Dataset (the tiles from tile(), or any lazy "
            f"object); got {type(obj).__name__}. Pass the tiles: "
            "xflipnslide.load(scene.fns.tile(256))"
        )
    if isinstance(obj, xr.DataArray):
        variables = {**{n: c.variable for n, c in obj.coords.items()}, None: obj.variable}
    else:
        variables = dict(obj.variables)
    names = list(variables)
    arrays = load_arrays([variables[n].data for n in names])
    loaded = {n: variables[n].copy(data=a) for n, a in zip(names, arrays)}
    if isinstance(obj, xr.DataArray):
        coords = {n: v for n, v in loaded.items() if n is not None}
        return xr.DataArray(loaded[None], coords=coords, name=obj.name, attrs=obj.attrs)
    data_vars = {n: v for n, v in loaded.items() if n in obj.data_vars}
    coords = {n: v for n, v in loaded.items() if n in obj.coords}
    return xr.Dataset(data_vars, coords=coords, attrs=obj.attrs)
