"""Exceptions raised by xflipnslide.

Every exception derives from :class:`XFlipNSlideError` and from the matching
built-in class (``ValueError``, ``ImportError``), so callers can catch either.
Messages say what was wrong and what to do about it.
"""

from __future__ import annotations

__all__ = [
    "InvalidParameterError",
    "MissingDependencyError",
    "SceneTooSmallError",
    "SpatialDimsError",
    "XFlipNSlideError",
]


class XFlipNSlideError(Exception):
    """Base class of every error raised by xflipnslide."""


class InvalidParameterError(XFlipNSlideError, ValueError):
    """An option has a value the function cannot use."""


class SceneTooSmallError(XFlipNSlideError, ValueError):
    """The scene is smaller than the minimum for the tile size and strategy."""


class SpatialDimsError(XFlipNSlideError, ValueError):
    """The spatial (row, column) dimensions are missing or ambiguous."""


class MissingDependencyError(XFlipNSlideError, ImportError):
    """An optional dependency is needed; the message names the extra to install."""


class AllMissingError(XFlipNSlideError, ValueError):
    """A band has no valid pixel at all, so its gaps cannot be filled."""


class FillReachError(XFlipNSlideError, RuntimeError):
    """With ``strict=True``: a gap is wider than the fill's reach."""


class FillReachWarning(UserWarning):
    """A gap is wider than the fill's reach: some pixels are not provably exact."""


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
