"""glibc's malloc arenas, capped for the ``xflipnslide`` command's process.

glibc gives each thread that allocates a heap of its own (an *arena*, up
to eight per core) and keeps what is freed in it for that arena's next
allocations. A long streaming write, whose threads (the scheduler's, the
store's I/O threads) take turns making and freeing chunk-sized arrays, so
holds a heap of freed arrays per thread. With one arena the threads share
one heap: measured on the tile store of a 16384² scene under a 384 MiB
budget (``benchmarks/bench_scale.py``, two threads), a peak of 0.95 GiB
against 1.07–1.14 GiB, in the same seconds.

The cap only binds threads that have no arena yet and holds for the rest
of the process (glibc has no undo), so it is the process owner's choice:
the command (:func:`xflipnslide.cli.main` run as ``xflipnslide``) applies
it first thing, as ``MALLOC_ARENA_MAX=1`` would at start-up; the library
never does (``docs/scale.md`` tells a Python user how). A
``MALLOC_ARENA_MAX`` already in the environment wins, and a C library
other than glibc is left alone.
"""

from __future__ import annotations

import ctypes
import os

__all__ = ["cap_arenas"]

#: ``mallopt``'s parameter for the arena cap (glibc's ``malloc.h``).
_M_ARENA_MAX = -8


def cap_arenas(cap: int = 1) -> int | None:
    """Cap glibc's malloc arenas at ``cap`` for threads not yet allocating
    (module docstring); returns the cap applied, or None where none was
    (``MALLOC_ARENA_MAX`` set, or not glibc)."""
    if "MALLOC_ARENA_MAX" in os.environ:
        return None
    libc = _glibc()
    if libc is None or libc.mallopt(_M_ARENA_MAX, cap) != 1:
        return None
    return cap


def _glibc():
    """The process's C library if it is glibc (it has ``gnu_get_libc_version``),
    else None."""
    try:
        libc = ctypes.CDLL(None)
        libc.gnu_get_libc_version  # noqa: B018  (glibc only)
    except (OSError, AttributeError, TypeError):  # no C library by that name, or not glibc
        return None
    libc.mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    libc.mallopt.restype = ctypes.c_int
    return libc
