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
layout. Starting numba at all (its import and first compilation) costs
about a second whatever is compiled, and more than a small call's work:
a kernel may therefore declare a *twin*, a numpy function with the same
arguments and results bit for bit, which :meth:`Kernel.auto` runs instead
of compiling while the work is small (see :data:`TWIN_BUDGET`).
"""

from __future__ import annotations

import logging
import threading
import types

import numpy as np

from ...errors import InvalidParameterError

__all__ = ["TWIN_BUDGET", "Kernel", "describe", "kernel", "require"]

log = logging.getLogger(__name__)

_DONE: set[int] = set()  # the modules whose kernels have dispatchers
_LOCK = threading.RLock()

#: Bytes of output (a kernel's last argument, ``out``) that a kernel's numpy
#: twin may write in one process before :meth:`Kernel.auto` compiles the
#: kernel instead. The twin costs at most 0.2–1.2 s more per GiB than the
#: kernel (``gather_tiles``, measured), so 64 MiB costs at most about 0.08 s
#: more in all, where starting numba and compiling costs 1–3 s (0.5–1 s
#: from a warm cache): small and occasional calls never start numba, and
#: many or large ones compile once, as before.
TWIN_BUDGET = 64 * 2**20


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

    def __init__(self, func, options, check=None, twin=None):
        self.__wrapped__, self.__name__, self.__doc__ = func, func.__name__, func.__doc__
        self.options, self.check, self.compiled, self.twin = options, check, None, twin
        self._twin_bytes = 0  # output the twin has written so far

    def __call__(self, *args):
        """The compiled kernel (compiled or loaded from numba's cache now if
        it is not yet)."""
        if self.check is not None:
            self.check(*args)
        return self._compiled(args)

    def auto(self, *args):
        """The kernel, or its twin while the kernel is not compiled for these
        argument types in this process and the twin's output, this call's
        included, stays within :data:`TWIN_BUDGET` bytes (the same result,
        bit for bit, either way)."""
        if self.check is not None:
            self.check(*args)
        if self.twin is not None and self._twin_takes(args):
            return self.twin(*args)
        return self._compiled(args)

    def _compiled(self, args):
        if self.compiled is None:
            _materialise(self.__wrapped__.__globals__)
        return self.compiled(*args)

    def _twin_takes(self, args) -> bool:
        """Whether the twin runs this call (and count its output if so)."""
        size = args[-1].nbytes
        with _LOCK:
            if self._twin_bytes + size > TWIN_BUDGET:
                return False
            if self.compiled is not None:
                from numba import typeof

                if tuple(typeof(a) for a in args) in self.compiled.overloads:
                    self._twin_bytes = TWIN_BUDGET  # compiled: the kernel from now on
                    return False
            self._twin_bytes += size
            return True


def kernel(check=None, twin=None, **options):
    """Declare a numba kernel, compiled with ``nogil=True, cache=True`` and
    ``options`` on first use (see :func:`_jit`). ``check(*args)`` raises
    for arguments the kernel would read or write out of bounds with;
    ``twin(*args)``, numpy code with the kernel's results bit for bit, is
    what :meth:`Kernel.auto` runs for small work before the kernel is
    compiled."""

    def decorate(func):
        return Kernel(func, options, check, twin)

    return decorate


def require(ok: bool, kernel_name: str, what: str, got: str) -> None:
    """Raise :class:`InvalidParameterError` ``"{kernel_name}: {what}; got
    {got}"`` unless ``ok``."""
    if not ok:
        raise InvalidParameterError(f"{kernel_name}: {what}; got {got}")


def describe(**arrays) -> str:
    """``"name(shape), ..."`` of the arrays, for a check's message."""
    return ", ".join(f"{k}{tuple(np.shape(v))}" for k, v in arrays.items())
