"""Batches of tiles as an :class:`xbatcher.BatchGenerator` (labelled xarray
batches). xbatcher is imported only inside :func:`batches`."""

from __future__ import annotations

from ..errors import DataDroppedWarning, InvalidParameterError, check_positive_int, warn
from ..schema import TILE_DIM, T_Xarray

__all__ = ["batches"]


def batches(tiles: T_Xarray, batch_size: int = 32, *, preload_batch: bool = True):
    """Batches of tiles for training, as an :class:`xbatcher.BatchGenerator`.

    Equivalent to ``xbatcher.BatchGenerator(tiles, input_dims={every dim but
    "tile": its full size}, batch_dims={"tile": batch_size})``: each batch
    is ``(tile: batch_size, *other, y, x)`` with the tile coordinates along.
    Use it to stay in xarray (labelled batches, xbatcher's own loaders);
    :func:`torch_loader` and :func:`tf_dataset` shuffle tiles, keep the last
    partial batch and read lazy tiles chunk by chunk.

    Parameters
    ----------
    tiles
        The output of :func:`tile` (or tiles reloaded from Zarr).
    batch_size
        Tiles per batch. xbatcher yields only full batches: the last
        ``n_tiles % batch_size`` tiles are in no batch (a
        :class:`~xflipnslide.DataDroppedWarning` says how many).
    preload_batch
        Passed to xbatcher: load each batch into memory at once.

    Examples
    --------
    >>> import numpy as np, xarray as xr, xflipnslide
    >>> scene = xr.DataArray(np.zeros((3, 1024, 1024), "float32"), dims=("band", "y", "x"))
    >>> gen = scene.fns.tile(tile_size=256).fns.batches(batch_size=17)
    >>> len(gen), gen[0].sizes
    (5, Frozen({'tile': 17, 'band': 3, 'y': 256, 'x': 256}))
    """
    import xbatcher

    if TILE_DIM not in tiles.dims:
        raise InvalidParameterError(
            f"batches takes tiles (a {TILE_DIM!r} dimension); got dims {tuple(tiles.dims)}. "
            "Call .fns.tile(...) first."
        )
    batch_size = check_positive_int(batch_size, "batch_size")
    n = tiles.sizes[TILE_DIM]
    if batch_size > n:
        raise InvalidParameterError(
            f"batch_size={batch_size} is more than the {n} tiles there are; use batch_size <= {n}"
        )
    if n % batch_size:
        warn(
            f"{n % batch_size} of {n} tiles are in no batch: xbatcher yields only full batches "
            f"of {batch_size}. Use a batch_size that divides {n}, or torch_loader/tf_dataset, "
            "which keep the last partial batch",
            DataDroppedWarning,
        )
    input_dims = {d: s for d, s in tiles.sizes.items() if d != TILE_DIM}
    return xbatcher.BatchGenerator(
        tiles,
        input_dims=input_dims,
        batch_dims={TILE_DIM: int(batch_size)},
        preload_batch=preload_batch,
    )
