"""Exceptions and warnings raised by xflipnslide.

Every exception derives from :class:`XFlipNSlideError` and from the matching
built-in class (``ValueError``, ``ImportError``), so callers can catch either.
Every warning derives from :class:`XFlipNSlideWarning` (a ``UserWarning``),
so ``warnings.filterwarnings("ignore", category=XFlipNSlideWarning)`` silences
the package and ``"error"`` turns its warnings into exceptions. Messages say
what was wrong and what to do about it.
"""

from __future__ import annotations

import contextlib
import numbers
import warnings
from collections.abc import Iterator

__all__ = [
    "AllMissingError",
    "DataDroppedWarning",
    "DataFilledWarning",
    "EmptySubsetError",
    "FillReachError",
    "FillReachWarning",
    "IncompleteStoreError",
    "InvalidLabelsError",
    "InvalidParameterError",
    "InvalidTilesError",
    "IrregularGridError",
    "MissingClassWarning",
    "MissingDependencyError",
    "NonFiniteWarning",
    "SceneTooSmallError",
    "SpatialDimsError",
    "XFlipNSlideError",
    "XFlipNSlideWarning",
    "check_positive_int",
    "check_seed",
    "prefixed_warnings",
    "require",
    "warn",
]


class XFlipNSlideError(Exception):
    """Base class of every error raised by xflipnslide."""


class InvalidParameterError(XFlipNSlideError, ValueError):
    """An option has a value the function cannot use."""


class SceneTooSmallError(XFlipNSlideError, ValueError):
    """The scene is smaller than the minimum for the tile size and strategy."""


class SpatialDimsError(XFlipNSlideError, ValueError):
    """The spatial (row, column) dimensions are missing or ambiguous."""


class InvalidTilesError(XFlipNSlideError, ValueError):
    """Tiles whose geometry cannot be trusted: bad codes or origins, windows
    repeated, or tiles of several scenes mixed together."""


class EmptySubsetError(XFlipNSlideError, ValueError):
    """A requested subset of a split gets no tile."""


class MissingDependencyError(XFlipNSlideError, ImportError):
    """An optional dependency is needed; the message names the extra to install."""


class AllMissingError(XFlipNSlideError, ValueError):
    """A band has no valid pixel at all, so its gaps cannot be filled."""


class FillReachError(XFlipNSlideError, RuntimeError):
    """With ``strict=True``: a gap is wider than the fill's reach."""


class XFlipNSlideWarning(UserWarning):
    """Base class of every warning xflipnslide gives."""


class DataDroppedWarning(XFlipNSlideWarning):
    """Pixels or tiles were left out: cropped edges, tiles dropped by a split
    or a filter, a trailing partial batch."""


class DataFilledWarning(XFlipNSlideWarning):
    """Pixels were masked as missing and filled in (invented) by ``preprocess``."""


class FillReachWarning(DataFilledWarning):
    """A gap is wider than the fill's reach: some pixels are not provably exact."""


def warn(message: str, category: type[Warning] = XFlipNSlideWarning) -> None:
    """Warn with a package warning class (seen without configuring logging),
    attributed to the user's line: the first caller outside this package."""
    import os
    import sys

    package = os.path.dirname(os.path.abspath(__file__))
    frame, level = sys._getframe(0), 1
    while frame is not None and os.path.abspath(frame.f_code.co_filename).startswith(package):
        frame, level = frame.f_back, level + 1
    warnings.warn(message, category, stacklevel=level)


def check_positive_int(value, name: str, *, minimum: int = 1) -> int:
    """``value`` as an int, or an :class:`InvalidParameterError` naming ``name``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        what = "a positive integer" if minimum == 1 else f"an integer >= {minimum}"
        raise InvalidParameterError(f"{name} must be {what}; got {value!r}")
    return int(value)


def check_seed(seed, what: str, *, default: int | None = None) -> int:
    """The one check of every seed taken (``split``'s, the feeds' shuffle and
    balanced draws, the samplers'): ``seed`` as an int >= 0, or an
    :class:`InvalidParameterError` naming ``what``. With ``default``,
    ``None`` stands for it."""
    if seed is None and default is not None:
        return int(default)
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or seed < 0:
        raise InvalidParameterError(
            f"{what}: seed must be an int >= 0 (seeds are non-negative integers, and the same "
            f"seed gives the same result); got {seed!r}"
        )
    return int(seed)


def require(module: str, extra: str, feature: str):
    """Import an optional dependency or raise an error naming the extra.

    Parameters
    ----------
    module
        The module to import, e.g. ``"torch"``.
    extra
        The xflipnslide extra that installs it, e.g. ``"torch"``.
    feature
        What needs it, for the message, e.g. ``"torch_loader"``.
    """
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise MissingDependencyError(
            f"{feature} needs the optional dependency {module!r}, which is not "
            f'installed. Install it with: pip install "xflipnslide[{extra}]"'
        ) from exc


class InvalidLabelsError(InvalidParameterError):
    """Label values no class can hold: NaN, non-integers, or ids outside the
    classes (raised when the labels are read, so on dask at compute time)."""


class IncompleteStoreError(InvalidTilesError):
    """A tile store that is not whole: its writer stopped before the end (no
    completion record), or chunks were lost since (deleted, not copied)."""


class IrregularGridError(InvalidParameterError):
    """The spatial coordinates are not evenly spaced, so pixels have no single
    size and windows no single geotransform: regrid or reproject first."""


class NonFiniteWarning(XFlipNSlideWarning):
    """NaN or infinite values where numbers are expected: in the scene a model
    reads, or in a model's output (``predict``); the message counts them."""


class MissingClassWarning(XFlipNSlideWarning):
    """A class of the tile set is in no tile of a subset of a split (it cannot
    be learnt or measured there); the message names each class and subset."""


@contextlib.contextmanager
def prefixed_warnings(prefix: str) -> Iterator[None]:
    """Re-issue every warning raised inside as ``"{prefix}: {message}"``,
    same class, once the block ends (:func:`warn`).

    For one call made for several items (scenes, strategies) whose warnings
    would otherwise read the same, so that a display showing each text once
    shows each item's.
    """
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        yield
    for w in caught:
        warn(f"{prefix}: {w.message}", w.category)
