"""The array layer: numba kernels, chunk geometry, dask graphs and one entry
point per operation on numpy or dask arrays. No xarray."""
