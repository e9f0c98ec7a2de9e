"""What the command line prints: one line per error, one line per warning,
progress on stderr; and SIGTERM handled like Ctrl-C."""

from __future__ import annotations

import contextlib
import signal
import sys
import warnings
from collections.abc import Iterator

from ..errors import XFlipNSlideError, XFlipNSlideWarning
from ..export.zarr import CONSOLIDATED_NOTICE

__all__ = [
    "CliError",
    "interruptible",
    "one_line",
    "print_progress",
    "progress_bar",
    "quiet_third_party",
]


class CliError(Exception):
    """A user-facing error: printed as one line, exit status 2."""


def one_line(exc: BaseException) -> str:
    """The first line of the most telling message in the exception's chain
    (GDAL's "Read failed. See previous exception" points at its cause)."""
    seen = exc
    while seen is not None:
        text = _first_line(str(seen))
        cause = seen.__cause__ or seen.__context__
        if text and "see previous exception" not in text.lower():
            known = isinstance(seen, (CliError, XFlipNSlideError, OSError, ValueError))
            return text if known else f"{type(seen).__name__}: {text}"
        seen = cause
    return type(exc).__name__


def _first_line(text: str) -> str:
    """A message's first line, with what it announces when it ends with a
    colon: TorchScript puts the cause on the next line, or on the source line
    it marks ``<--- HERE``."""
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    if not lines:
        return ""
    head = lines[0]
    if not head.endswith(":") or len(lines) == 1:
        return head
    here = next((k for k, line in enumerate(lines) if "<--- HERE" in line), None)
    if here is None or here < 2:
        return f"{head} {lines[1]}"
    where = next((line for line in reversed(lines[:here]) if line.startswith("File ")), None)
    return f"{head} {lines[here - 1]}" + (f" ({where})" if where else "")


_SHOWN: set[str] = set()


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    """Warnings as one line each on stderr, each text once, named after the
    package whose class they are (``xflipnslide: DataDroppedWarning: ...``; a
    library's under its own name, never as xflipnslide's)."""
    text = f"{category.__name__}: {message}"
    origin = category.__module__.partition(".")[0]
    if issubclass(category, XFlipNSlideWarning):
        text = f"xflipnslide: {text}"
    elif origin != "builtins":
        text = f"{origin}: {text}"
    if text not in _SHOWN:
        _SHOWN.add(text)
        print(text, file=sys.stderr)


def quiet_third_party() -> None:
    """Silence warnings about libraries' own choices that a user cannot act on,
    and show the package's own as one line each (inside the caller's
    ``warnings.catch_warnings()``)."""
    _SHOWN.clear()  # each text once per command run
    warnings.showwarning = _show_warning
    warnings.filterwarnings("ignore", message=CONSOLIDATED_NOTICE)
    # Notes to programmers about APIs the command calls (torch.jit.load's);
    # Python hides them too outside __main__, whatever the caller's filters.
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    warnings.filterwarnings("ignore", category=PendingDeprecationWarning)
    warnings.filterwarnings("ignore", category=FutureWarning, module="xarray")
    warnings.filterwarnings("ignore", category=RuntimeWarning, message="All-NaN slice")


def print_progress(done: int, total: int) -> None:
    """``exported DONE / TOTAL tiles`` on stderr, over the previous one."""
    print(f"\rexported {done} / {total} tiles", end="", file=sys.stderr, flush=True)


def progress_bar():
    """dask's progress bar on stderr, shown for computations over a second
    (the command line's one dask import)."""
    from dask.diagnostics import ProgressBar

    return ProgressBar(minimum=1.0, out=sys.stderr)


def _raise_interrupt(signum, frame):
    raise KeyboardInterrupt


@contextlib.contextmanager
def interruptible() -> Iterator[None]:
    """SIGTERM interrupts like Ctrl-C, so the atomic writers remove their
    temporaries."""
    previous = signal.signal(signal.SIGTERM, _raise_interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
