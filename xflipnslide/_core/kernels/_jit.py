"""Declaring numba kernels: compiled on first use, each behind a checking
Python entry point.

:func:`kernel` turns a function into a :class:`Kernel`: the name the
package calls, which runs the kernel's argument *check* (shapes and lengths
agree, windows lie inside the source: the compiled code runs without bounds
checks) and then the compiled code. numba is imported at the first call of
any kernel, so ``import xflipnslide`` stays light; the numba dispatchers of
a module's kernels are made at the first call of one of them, and each
kernel is compiled (or loaded from numba's cache) at its own first call,
for the signature of that call only: a kernel never called costs nothing,
and each dtype compiles when first used. Compiled kernels call each other
directly, past the checks: each sees a copy of its module's globals in
which every kernel is its numba dispatcher.

Compile time is the cold start (the first ``tile`` with an empty numba
cache, see ``docs/performance.md``): every kernel and each distinct
signature of a callee is a separate numba compilation with a fixed cost
of its own, so kernels keep few callees, each called with one array
layout.
"""

from __future__ import annotations

import logging
import threading
import types

import numpy as np

from ...errors import InvalidParameterError

__all__ = ["Kernel", "describe", "kernel", "require"]

log = logging.getLogger(__name__)

_DONE: set[int] = set()  # the modules whose kernels have dispatchers
_LOCK = threading.RLock()


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


def _materialise(module: dict) -> None:
    """Make the numba dispatchers of the kernels declared in ``module`` (a
    kernel module's globals), and first those of other modules that they
    call. A dispatcher compiles nothing until it is called, then only the
    signature of its arguments (or loads it from numba's cache): a kernel
    never called is never compiled, and each dtype is compiled on first use."""
    with _LOCK:
        if id(module) in _DONE:
            return
        _DONE.add(id(module))  # first: modules that call each other end
        kernels = [v for v in module.values() if isinstance(v, Kernel)]
        own = [k for k in kernels if k.__wrapped__.__globals__ is module]
        for k in kernels:
            if k.__wrapped__.__globals__ is not module:  # imported from another module
                _materialise(k.__wrapped__.__globals__)
        namespace = {n: v for n, v in module.items() if not isinstance(v, Kernel)}
        for k in own:
            func = k.__wrapped__
            compiled = types.FunctionType(
                func.__code__, namespace, func.__name__, func.__defaults__, func.__closure__
            )
            compiled.__qualname__, compiled.__doc__ = func.__qualname__, func.__doc__
            k.compiled = _jit(compiled, k.options)
        namespace.update({n: v.compiled for n, v in module.items() if isinstance(v, Kernel)})


class Kernel:
    """Stands for a numba kernel: the Python entry point that runs the
    kernel's argument check, then the compiled code (compiled or loaded at
    the first call)."""

    def __init__(self, func, options, check=None):
        self.__wrapped__, self.__name__, self.__doc__ = func, func.__name__, func.__doc__
        self.options, self.check, self.compiled = options, check, None

    def __call__(self, *args):
        if self.check is not None:
            self.check(*args)
        if self.compiled is None:
            _materialise(self.__wrapped__.__globals__)
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
