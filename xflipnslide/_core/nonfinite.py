"""NaN and infinite values met while ``predict`` runs a model: counted in
the tiles the model reads and in what it returns, batch by batch, and
reported once per ``predict`` on numpy or once per output block on dask
with a :class:`~xflipnslide.errors.NonFiniteWarning`, where the user sees
it (on a ``dask.distributed`` worker, forwarded to the client too)."""

from __future__ import annotations

import sys
from dataclasses import dataclass, fields

import numpy as np

from ..errors import NonFiniteWarning, warn
from .kernels.tiles import count_non_finite

__all__ = ["NonFiniteCounts", "finite_scene"]


@dataclass
class NonFiniteCounts:
    """NaN or infinite values met while running a model: ``tiles`` run, how
    many of them hold such values in the scene (``in_tiles``, ``in_values``)
    and in the model's output (``out_tiles``, ``out_values``)."""

    tiles: int = 0
    in_tiles: int = 0
    in_values: int = 0
    out_tiles: int = 0
    out_values: int = 0

    def add(self, tiles: np.ndarray, out: np.ndarray, inputs: bool = True) -> None:
        """Count one batch: model input ``tiles`` (unless ``inputs`` is False:
        known finite) and its output ``out``."""
        found = _non_finite(tiles) if inputs else (0, 0)
        self.merge(NonFiniteCounts(len(tiles), *found, *_non_finite(out)))

    def merge(self, other: NonFiniteCounts) -> None:
        """Add ``other``'s counts to these."""
        for field in fields(self):
            setattr(self, field.name, getattr(self, field.name) + getattr(other, field.name))

    def warn(self, where: str = "") -> None:
        """One :class:`NonFiniteWarning` per kind of value found, if any;
        ``where`` says which tiles were counted."""
        if self.in_values:
            _emit(
                f"{self.in_tiles} of the {self.tiles} tiles given to the model{where} hold NaN "
                f"or infinite scene values, {self.in_values} values in all: the model sees "
                "them as they are. Fill the gaps first (scene.fns.preprocess()), or expect NaN "
                "in the prediction around them"
            )
        if self.out_values:
            _emit(
                f"the model returned NaN or infinite values for {self.out_tiles} of the "
                f"{self.tiles} tiles{where}, {self.out_values} values in all: they enter the "
                "blend, so the prediction is NaN or infinite at every pixel those tiles cover; "
                "check the model and what it is given"
            )


def _non_finite(a: np.ndarray) -> tuple[int, int]:
    """``(tiles, values)``: how many of ``a``'s tiles (first axis) hold NaN
    or infinite values, and how many such values there are."""
    if a.dtype.kind != "f":
        return 0, 0
    out = np.zeros(2, np.int64)
    count_non_finite(np.ascontiguousarray(a).reshape((len(a), -1)), out)
    return int(out[0]), int(out[1])


def finite_scene(x: np.ndarray) -> bool:
    """Whether no tile of ``x`` can hold NaN or infinity as the model's
    float32: integers and booleans, or a C-contiguous float32 scene found
    finite in one pass (a quarter of what counting every window's tiles
    reads at 50 % overlap, an eighth of that again under D4). Other scenes
    (float64, whose large values overflow float32, float16, strided) are
    counted tile by tile."""
    if x.dtype.kind in "biu":
        return True
    if x.dtype != np.float32 or not x.flags.c_contiguous or not x.size:
        return False
    return _non_finite(x.reshape((1, -1))) == (0, 0)


def _emit(message: str) -> None:
    """Warn where the user sees it: in this process (the threaded and
    synchronous schedulers, numpy), and on the client too when running on a
    ``dask.distributed`` worker."""
    if "distributed" in sys.modules:  # not imported: certainly not a worker
        import distributed

        try:
            distributed.get_worker()
        except ValueError:
            pass
        else:
            distributed.warn(message, NonFiniteWarning)
            return
    warn(message, NonFiniteWarning)
