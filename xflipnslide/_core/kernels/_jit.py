"""Declaring numba kernels: compiled on first use, each behind a checking
Python entry point.

:func:`kernel` turns a function into a :class:`Kernel`: the name the
package calls, which runs the kernel's argument *check* (shapes and lengths
agree, windows lie inside the source: the compiled code runs without bounds
checks) and then the compiled code. numba is imported and every declared
kernel compiled (or loaded from numba's cache) at the first call of any of
them, so ``import xflipnslide`` stays light. Compiled kernels call each
other directly, past the checks: each sees a copy of its module's globals
in which every kernel is its numba dispatcher.
"""

from __future__ import annotations

import logging
import threading
import types

import numpy as np

from ...errors import InvalidParameterError

__all__ = ["Kernel", "describe", "kernel", "require"]

log = logging.getLogger(__name__)

_PENDING: list[Kernel] = []
_LOCK = threading.Lock()


def _jit(func, options):
    """``numba.njit(nogil=True, cache=True, **options)``, uncached where numba
    finds no writable cache location (a read-only site-packages and home, as on
    many shared hubs and containers): compiling each session beats failing to
    import. ``NUMBA_CACHE_DIR`` points the cache somewhere writable."""
    from numba import njit

    try:
        return njit(nogil=True, cache=True, **options)(func)
    except RuntimeError as exc:  # "cannot cache function ...: no locator available"
        log.debug("numba cache unavailable for %s (%s): compiling uncached", func.__name__, exc)
        return njit(nogil=True, cache=False, **options)(func)


def _materialise() -> None:
    """Make the numba dispatcher of every kernel declared so far (numba
    compiles each at its first call, or loads it from its cache)."""
    with _LOCK:
        if not _PENDING:
            return
        spaces: dict[int, tuple[dict, dict]] = {}
        for k in _PENDING:
            module = k.__wrapped__.__globals__
            if id(module) not in spaces:
                copy = {n: v for n, v in module.items() if not isinstance(v, Kernel)}
                spaces[id(module)] = (module, copy)
        for k in _PENDING:
            func, namespace = k.__wrapped__, spaces[id(k.__wrapped__.__globals__)][1]
            compiled = types.FunctionType(
                func.__code__, namespace, func.__name__, func.__defaults__, func.__closure__
            )
            compiled.__qualname__, compiled.__doc__ = func.__qualname__, func.__doc__
            k.compiled = _jit(compiled, k.options)
        for module, namespace in spaces.values():
            for name, value in module.items():
                if isinstance(value, Kernel):
                    namespace[name] = value.compiled
        _PENDING.clear()


class Kernel:
    """Stands for a numba kernel: the Python entry point that runs the
    kernel's argument check, then the compiled code (compiled or loaded at
    the first call)."""

    def __init__(self, func, options, check=None):
        self.__wrapped__, self.__name__, self.__doc__ = func, func.__name__, func.__doc__
        self.options, self.check, self.compiled = options, check, None
        _PENDING.append(self)

    def __call__(self, *args):
        if self.check is not None:
            self.check(*args)
        if self.compiled is None:
            _materialise()
        return self.compiled(*args)


def kernel(check=None, **options):
    """Declare a numba kernel, compiled with ``nogil=True, cache=True`` and
    ``options`` on first use (see :func:`_jit`). ``check(*args)`` raises
    for arguments the kernel would read or write out of bounds with."""

    def decorate(func):
        return Kernel(func, options, check)

    return decorate


def require(ok: bool, kernel_name: str, what: str, got: str) -> None:
    """Raise :class:`InvalidParameterError` ``"{kernel_name}: {what}; got
    {got}"`` unless ``ok``."""
    if not ok:
        raise InvalidParameterError(f"{kernel_name}: {what}; got {got}")


def describe(**arrays) -> str:
    """``"name(shape), ..."`` of the arrays, for a check's message."""
    return ", ".join(f"{k}{tuple(np.shape(v))}" for k, v in arrays.items())
