"""The bound on GDAL's block cache, set by ``import xflipnslide`` (a module
that imports nothing else, so the package's import stays light)."""

from __future__ import annotations

import os

__all__ = ["GDAL_CACHEMAX_MB", "limit_gdal_cache"]

#: GDAL's block cache per process, in MB, unless ``GDAL_CACHEMAX`` is set.
#: GDAL's own default (5 % of the machine's RAM *per process*) overflows
#: dask workers with a memory limit: on a 24 GiB machine each worker would
#: cache 1.2 GB of blocks outside dask's accounting, so a 1 GiB worker is
#: paused or restarted forever.
GDAL_CACHEMAX_MB = 128


def limit_gdal_cache() -> None:
    """Bound GDAL's block cache to :data:`GDAL_CACHEMAX_MB` unless the user set
    ``GDAL_CACHEMAX``.

    Called by ``import xflipnslide`` (and again, harmlessly, when
    :mod:`xflipnslide.io` is imported), not at the first read: it sets this process's
    environment, which GDAL reads when it starts and which the workers of a
    cluster started from this process inherit, so it must be in place
    before either, whatever reads first (:func:`open_image`, odc-stac in
    :func:`~xflipnslide.load_stac`, or the user's own rioxarray calls).
    """
    os.environ.setdefault("GDAL_CACHEMAX", str(GDAL_CACHEMAX_MB))
