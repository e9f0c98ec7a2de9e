"""The one writer every output of the package goes through.

An output (a folder of chips, a tile store, a GeoTIFF, a figure) is written
under a fresh, unique hidden name beside its target (``.NAME.XXXXXXXX``,
from :func:`tempfile.mkdtemp`) and moved into place with one ``rename``
when complete, so:

* an interrupted or failed write (Ctrl-C, SIGTERM, a full disk) leaves the
  disk as it was: the temporary is removed, and removing it never raises
  over the original error;
* nothing but the temporary and an earlier output of this package is ever
  removed: an existing target is replaced only with ``overwrite=True`` and
  only when ``is_ours(path)`` recognises it (each writer passes the check
  for its own marker: an export's manifest, a tile store's completion
  record, a GeoTIFF tag);
* writers racing for one target never leave the one that reported success
  with nothing: an earlier output is first renamed away under another
  unique name, the new one renamed in, and only then the old one removed;
  each writer that reports success saw its complete output in place, and
  the target ends up holding one complete output;
* the target is checked before any work is done: an empty name, a missing
  or unwritable parent folder, an existing target without ``overwrite``,
  or one that is not ours, are refused with an
  :class:`~xflipnslide.InvalidParameterError` that says what to do;
* a symbolic link is followed: the output replaces the link's target
  (written beside the resolved path) only if that target is ours; the link
  stays.

Writes are atomic on one local filesystem (POSIX ``rename``); object stores
and URLs are refused.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from ..errors import InvalidParameterError

__all__ = ["OutputKind", "Target", "check_target", "write_dir", "write_file"]

#: How a Python caller asks to replace an output, for messages.
OVERWRITE = "overwrite=True"
#: How many times a commit retries when another writer moves the same target
#: at the same moment.
ATTEMPTS = 20


@dataclass(frozen=True)
class OutputKind:
    """A kind of output: what it is called in messages (``"an export"``) and
    how to recognise one this package wrote (``is_ours(path)``: its marker,
    e.g. an export's manifest), the only thing ``overwrite`` replaces."""

    what: str
    is_ours: Callable[[str], bool]

    def holds(self, path: str) -> bool:
        """``is_ours(path)``; False for anything it cannot read."""
        try:
            return bool(self.is_ours(path))
        except Exception:  # an unreadable thing is not recognisably ours
            return False


@dataclass(frozen=True)
class Target:
    """A checked output path.

    Attributes
    ----------
    given
        The path as the caller gave it (returned to users).
    path
        Where the output goes: ``given`` made absolute, a symbolic link
        resolved.
    kind
        What the output is (:class:`OutputKind`).
    option
        How the user asks to replace it, for messages (``"overwrite=True"``,
        ``"--overwrite"``).
    """

    given: str
    path: str
    kind: OutputKind
    option: str

    @property
    def parent(self) -> str:
        return os.path.dirname(self.path)

    @property
    def name(self) -> str:
        return os.path.basename(self.path)


def check_target(
    target: str | os.PathLike, kind: OutputKind, *, overwrite: bool, option: str = OVERWRITE
) -> Target:
    """Check that ``target`` can be written, before any work is done.

    Parameters
    ----------
    target
        The output path.
    kind
        What is written (:class:`OutputKind`): its name in messages, and
        how to recognise one this package wrote there (the only thing
        ``overwrite`` replaces).
    overwrite
        Whether an existing output of this package may be replaced.
    option
        How the user passes ``overwrite``, for messages.

    Raises
    ------
    InvalidParameterError
        Empty or remote target, missing or unwritable parent folder, an
        existing target without ``overwrite`` or one that is not ours.
    """
    what = kind.what
    given = os.fspath(target) if isinstance(target, (str, os.PathLike)) else target
    if not isinstance(given, str) or not given.strip():
        raise InvalidParameterError(
            f"the output path must be a non-empty path to {what}; got {target!r}"
        )
    if "://" in given:
        raise InvalidParameterError(
            f"{given} is a URL: xflipnslide writes {what} atomically on a local filesystem "
            "only; write it locally, then copy it"
        )
    path = os.path.abspath(given)
    if os.path.islink(path):
        resolved = os.path.realpath(path)
        if not os.path.lexists(resolved):
            raise InvalidParameterError(
                f"{given} is a symbolic link to {resolved}, which does not exist: remove the "
                "link or point it at an earlier output"
            )
        path = resolved
    parent = os.path.dirname(path)
    if not os.path.isdir(parent):
        raise InvalidParameterError(
            f"cannot write {given}: the folder {parent} does not exist; create it first"
        )
    if not os.access(parent, os.W_OK | os.X_OK):
        raise InvalidParameterError(
            f"cannot write {given}: the folder {parent} is not writable; choose another path"
        )
    checked = Target(given=given, path=path, kind=kind, option=option)
    if os.path.lexists(path):
        _check_replaceable(checked, overwrite)
    return checked


def _check_replaceable(t: Target, overwrite: bool) -> None:
    if not overwrite:
        raise InvalidParameterError(f"{t.given} exists; pass {t.option} to replace it")
    if not t.kind.holds(t.path):
        raise _not_ours(t)


def _not_ours(t: Target) -> InvalidParameterError:
    return InvalidParameterError(
        f"{t.given} exists and is not {t.kind.what} written by xflipnslide; {t.option} only "
        "replaces those: choose another path, or remove it yourself"
    )


@contextlib.contextmanager
def write_dir(
    target: str | os.PathLike, kind: OutputKind, *, overwrite: bool, option: str = OVERWRITE
) -> Iterator[str]:
    """Write a folder atomically: yields a fresh empty folder beside ``target``
    to fill, moved into place when the block ends without an error.

    Parameters are those of :func:`check_target`; ``kind.is_ours`` must be
    True for the filled folder (its marker written) when the block ends.

    Examples
    --------
    >>> import os, tempfile
    >>> def has_marker(path):
    ...     return os.path.isfile(os.path.join(path, "done"))
    >>> marked = OutputKind("a marked folder", is_ours=has_marker)
    >>> target = os.path.join(tempfile.mkdtemp(), "out")
    >>> with write_dir(target, marked, overwrite=False) as tmp:
    ...     with open(os.path.join(tmp, "done"), "w") as f:
    ...         _ = f.write("complete")
    >>> os.listdir(target)
    ['done']
    """
    with _fresh(target, kind, overwrite, option) as (t, tmp):
        yield tmp
        _commit_dir(tmp, t, overwrite)


@contextlib.contextmanager
def write_file(
    target: str | os.PathLike, kind: OutputKind, *, overwrite: bool, option: str = OVERWRITE
) -> Iterator[str]:
    """Write a file atomically: yields a path (inside a fresh hidden folder
    beside ``target``, with ``target``'s name) to write, moved into place
    when the block ends without an error. Side files a writer leaves next to
    it are removed with the folder.

    Parameters are those of :func:`check_target`.
    """
    with _fresh(target, kind, overwrite, option) as (t, tmp):
        path = os.path.join(tmp, t.name)
        yield path
        if not os.path.isfile(path):
            raise InvalidParameterError(f"no file was written for {t.given}")
        if os.path.lexists(t.path):  # again: it may have appeared meanwhile
            _check_replaceable(t, overwrite)
        os.replace(path, t.path)  # one atomic step; a reader sees the old or the new file
    _discard(tmp)


@contextlib.contextmanager
def _fresh(target, kind, overwrite, option) -> Iterator[tuple[Target, str]]:
    """The checked target and a fresh hidden folder beside it, removed (never
    raising over the error) when the block fails."""
    t = check_target(target, kind, overwrite=overwrite, option=option)
    tmp = _mkdtemp(t)
    try:
        yield t, tmp
    except BaseException:
        _discard(tmp)
        raise


def _mkdtemp(t: Target) -> str:
    """A fresh folder ``.NAME.XXXXXXXX`` beside the target, with the usual
    permissions (mkdtemp's are owner-only)."""
    try:
        tmp = tempfile.mkdtemp(dir=t.parent, prefix=f".{t.name}.")
        os.chmod(tmp, 0o777 & ~_umask())
    except OSError as exc:
        raise InvalidParameterError(
            f"cannot write {t.given} in {t.parent}: {exc.strerror or exc}; choose another path"
        ) from exc
    return tmp


def _umask() -> int:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _commit_dir(tmp: str, t: Target, overwrite: bool) -> None:
    """Move ``tmp`` to ``t.path``; an earlier output of ours there is renamed
    away first and removed only once the new one is in place."""
    if not t.kind.holds(tmp):
        raise InvalidParameterError(
            f"the output for {t.given} is incomplete: its marker is missing"
        )
    olds: list[str] = []
    try:
        for _ in range(ATTEMPTS):
            if os.path.lexists(t.path):
                _check_replaceable(t, overwrite)
                old = _move_away(t)
                if old is None:  # another writer moved it first
                    continue
                olds.append(old)
            try:
                os.rename(tmp, t.path)
            except OSError as exc:
                if exc.errno in (errno.EEXIST, errno.ENOTEMPTY, errno.EISDIR, errno.ENOTDIR):
                    continue  # another writer got there in between: check what it is
                raise
            break
        else:
            raise InvalidParameterError(
                f"{t.given} kept changing while it was written (other writers?): try again"
            )
    except BaseException:
        if olds and not os.path.lexists(t.path):
            with contextlib.suppress(OSError):
                os.rename(olds.pop(), t.path)  # put the earlier output back
        for old in olds:
            _discard(old)
        raise
    for old in olds:
        _discard(old)


def _move_away(t: Target) -> str | None:
    """Rename the earlier output at ``t.path`` to a unique hidden name; None
    when it vanished meanwhile."""
    old = tempfile.mkdtemp(dir=t.parent, prefix=f".{t.name}.old.")
    try:
        os.rename(t.path, old)  # a folder replaces the empty ``old``
    except FileNotFoundError:
        os.rmdir(old)
        return None
    except BaseException:
        os.rmdir(old)
        raise
    if not t.kind.holds(old):  # swapped for something else since it was checked
        with contextlib.suppress(OSError):
            os.rename(old, t.path)
        raise _not_ours(t)
    return old


def _discard(path: str) -> None:
    """Remove a temporary (file or folder); never raises."""
    try:
        if os.path.isdir(path) and not os.path.islink(path):
            shutil.rmtree(path, ignore_errors=True)
        else:
            os.remove(path)
    except OSError:
        pass
