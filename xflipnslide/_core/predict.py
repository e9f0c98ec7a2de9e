"""Array layer of inference: run a model over every window of a scene and
blend the outputs back, on numpy (streamed batch by batch) or as one dask
graph (tile chunks -> model -> overlap-add blocks).

The windows and their D4 views form a :class:`~xflipnslide.TilePlan` whose
codes are the views: with test-time augmentation each window appears eight
times, once per code, consecutively. Gathering a view is
:func:`.tiling.tile_array`; turning each output back and blending is the
overlap-add of ``untile`` (:class:`.blend.OverlapAdd` on numpy, batch by
batch; :func:`.blend.untile_array` on dask). Its weights are
D4-symmetric, so averaging the eight inverted views and then blending
windows is one weighted sum.

Every model output is checked (:meth:`ModelRunner.__call__`) before any
kernel sees it: its shape, its channel count against ``classes``, its dtype.
NaN and infinite values, in the tiles the model reads and in what it
returns, are counted as the batches run and reported with a
:class:`~xflipnslide.errors.NonFiniteWarning`: once per ``predict`` on
numpy, once per chunk of tiles when a dask graph computes that chunk (from
inside the task: the threaded and synchronous schedulers run it in the
user's process, and on a ``dask.distributed`` worker the warning is also
forwarded to the client with :func:`distributed.warn`), so checking costs no
extra pass over the data.
"""

from __future__ import annotations

import math
import sys
import threading
from contextlib import contextmanager
from dataclasses import dataclass, fields

import numpy as np

from ..errors import InvalidParameterError, NonFiniteWarning, warn
from ..plan import TilePlan
from . import graph as _graph
from .blend import OverlapAdd, untile_array
from .blocks import chunk_bounds
from .tiling import tile_array, tiles_per_chunk

__all__ = ["ModelRunner", "NonFiniteCounts", "predict_array"]


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

    def add(self, tiles: np.ndarray, out: np.ndarray) -> None:
        """Count one batch: model input ``tiles`` and its output ``out``."""
        self.merge(NonFiniteCounts(len(tiles), *_non_finite(tiles), *_non_finite(out)))

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
    bad = ~np.isfinite(a.reshape((len(a), -1)))
    values = int(np.count_nonzero(bad))
    return (int(np.count_nonzero(bad.any(axis=1))), values) if values else (0, 0)


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


_MODES_LOCK = threading.Lock()
_IN_USE: dict[int, list] = {}  # id(module) -> [users, the training flag of each submodule]


@contextmanager
def _eval_mode(module):
    """Run a ``torch.nn.Module`` in eval mode, then give it back the mode of
    each of its submodules as found, also on an exception. Counted per
    module, so tasks running it at once on several threads switch it to eval
    once and back when the last one ends."""
    key = id(module)
    with _MODES_LOCK:
        entry = _IN_USE.get(key)
        if entry is None:
            entry = _IN_USE[key] = [0, [m.training for m in module.modules()]]
            module.eval()
        entry[0] += 1
    try:
        yield
    finally:
        with _MODES_LOCK:
            entry[0] -= 1
            if entry[0] == 0:
                del _IN_USE[key]
                # pre-order: a module's train() sets its subtree, later entries correct it
                for m, mode in zip(module.modules(), entry[1]):
                    if m.training != mode:
                        m.train(mode)


class ModelRunner:
    """A picklable callable: ``(n, C, T, T)`` float32 in, ``(n, K, T, T)``
    float32 out, calling the model once per batch of ``batch_size`` tiles.

    A ``torch.nn.Module`` runs in eval mode under ``torch.no_grad()`` on
    ``device`` (moved there once per process), and is left in the mode it
    was in; anything else is called on numpy batches. Every output is
    checked against ``classes`` (``K``; set by :meth:`probe` when unknown)
    before it is returned. Its dask token is the model's token
    (:func:`dask.base.tokenize`: its pickled content, weights included) and
    its options.
    """

    def __init__(self, model, batch_size: int = 32, device=None, classes: int | None = None):
        self.model, self.batch_size, self.device = model, int(batch_size), device
        self.classes, self.probed = classes, False
        self._ready = False

    def __getstate__(self):
        return {**self.__dict__, "_ready": False}

    def __dask_tokenize__(self):
        from dask.base import tokenize

        return ("fns-model", tokenize(self.model), self.batch_size, str(self.device), self.classes)

    def _is_torch(self) -> bool:
        return type(self.model).__module__.startswith("torch") or any(
            c.__module__.startswith("torch") for c in type(self.model).__mro__
        )

    def _torch_call(self, batch: np.ndarray) -> np.ndarray:
        import torch

        if not self._ready:
            self.model = self.model.to(self.device) if self.device is not None else self.model
            self._ready = True
        with torch.no_grad():
            x = torch.from_numpy(np.ascontiguousarray(batch))
            if self.device is not None:
                x = x.to(self.device)
            out = self.model(x)
            return out.detach().to("cpu").numpy()

    def probe(self, channels: int, tile_size: int) -> int:
        """Set and return ``classes`` from one call on one zero tile."""
        self.classes = None
        self.classes = int(self(np.zeros((1, channels, tile_size, tile_size), np.float32)).shape[1])
        self.probed = True
        return self.classes

    def _check(self, out, batch: np.ndarray) -> np.ndarray:
        """The model's output for ``batch`` as float32, or an error naming
        what does not fit."""
        out = np.asarray(out)
        if out.dtype.kind not in "biuf":
            raise InvalidParameterError(
                f"the model returned dtype {out.dtype} for a batch of shape {batch.shape}; it "
                "must return real numbers (float, integer or bool), e.g. logits or probabilities"
            )
        if out.ndim != 4 or out.shape[0] != len(batch) or out.shape[2:] != batch.shape[2:]:
            raise InvalidParameterError(
                f"the model returned shape {out.shape} for a batch of shape {batch.shape}; "
                "it must return (batch, classes, tile, tile)"
            )
        k = out.shape[1]
        if self.classes is None and k < 1:
            raise InvalidParameterError(
                f"the model returned shape {out.shape}: no class channel; it must return "
                "(batch, classes, tile, tile) with classes >= 1"
            )
        if self.classes is not None and k != self.classes:
            if self.probed:
                raise InvalidParameterError(
                    f"the model returned {k} class channels for a batch of shape {batch.shape} "
                    f"but {self.classes} on its first call, which set classes: it must return "
                    "the same number of classes for every batch"
                )
            raise InvalidParameterError(
                f"the model returned {k} class channels (shape {out.shape}) but classes="
                f"{self.classes}: pass classes={k}, or leave classes=None to take it from "
                "the model"
            )
        return out.astype(np.float32, copy=False)

    def run(self, tiles: np.ndarray) -> tuple[np.ndarray, NonFiniteCounts]:
        """The checked outputs for ``tiles``, and the NaN or infinite values
        counted in them and in ``tiles``."""
        counts = NonFiniteCounts()
        if self._is_torch():
            with _eval_mode(self.model):
                outs = self._batches(tiles, self._torch_call, counts)
        else:
            outs = self._batches(tiles, self.model, counts)
        return outs, counts

    def _batches(self, tiles, call, counts) -> np.ndarray:
        outs = []
        for a in range(0, len(tiles), self.batch_size):
            batch = np.ascontiguousarray(tiles[a : a + self.batch_size], dtype=np.float32)
            out = self._check(call(batch), batch)
            counts.add(batch, out)
            outs.append(out)
        if not outs:
            return np.empty((0, self.classes or 0, *tiles.shape[2:]), np.float32)
        return np.concatenate(outs)

    def __call__(self, tiles: np.ndarray) -> np.ndarray:
        """:meth:`run` without the counts."""
        return self.run(tiles)[0]


def predict_array(
    x, plan: TilePlan, runner: ModelRunner, weight: np.ndarray, classes: int, *, chunks=None
):
    """``(K, H, W)`` float32: the blended model outputs over ``plan``'s
    windows and views. numpy in: streamed, holding one batch of tiles at a
    time; dask in: a lazy graph."""
    if runner.classes != classes:
        raise InvalidParameterError(
            f"the runner expects {runner.classes} classes, not {classes}: build it with "
            "ModelRunner(..., classes=classes) or call its probe()"
        )
    if _graph.is_lazy(x):
        return _predict_dask(x, plan, runner, weight, classes, chunks)
    x = np.asarray(x)
    acc = OverlapAdd(classes, plan.shape, weight, np.float64)  # many views: sum in float64
    counts = NonFiniteCounts()
    step = max(runner.batch_size, 1) * 4
    for a in range(0, len(plan), step):
        part = plan.select(slice(a, a + step))
        tiles = tile_array(x, part).reshape((len(part), -1, plan.tile_size, plan.tile_size))
        out, found = runner.run(tiles)
        counts.merge(found)
        acc.add(out, part.rows, part.cols, part.codes)
    counts.warn()
    return acc.result(np.float32)


def _run_chunk(tiles: np.ndarray, runner: ModelRunner, start: int, total: int) -> np.ndarray:
    """Task body: the model's outputs for one chunk of tiles (``start`` is
    its first tile of ``total``), warning of NaN or infinite values in it."""
    flat = tiles.reshape((tiles.shape[0], -1, *tiles.shape[-2:]))
    out, counts = runner.run(flat)
    counts.warn(f" of one dask chunk (tiles {start}-{start + len(flat) - 1} of {total})")
    return out


def _predict_dask(x, plan, runner, weight, classes, chunks):
    from dask.base import tokenize

    T = plan.tile_size
    # A few batches per task: memory per task is bounded by its tile chunk
    # (and its outputs), whatever the scene's size.
    per = tiles_per_chunk("32MiB", T * T * 4 * max(math.prod(x.shape[:-2]), classes), len(plan))
    per = max(runner.batch_size, (per // runner.batch_size) * runner.batch_size)
    tiles = tile_array(x, plan, tile_chunks=min(per, len(plan)))
    # Names are tokens of all their values depend on: the tiles' (the scene
    # and every window origin and code) and the runner's (the model's token,
    # batch size, device, classes); the blend layer adds weights and blocks.
    model_key = f"fns-model-{tokenize(runner)}"
    name = f"fns-predict-{tokenize(tiles, model_key)}"
    # The runner is one key of the graph: a distributed cluster ships it to
    # each worker once, not once per task.
    dsk: dict = {model_key: runner}
    inner = (0,) * (tiles.ndim - 1)
    starts = chunk_bounds(tiles.chunks[0])
    for i in range(len(tiles.chunks[0])):
        key = (tiles.name, i, *inner)
        dsk[(name, i, 0, 0, 0)] = (_run_chunk, key, model_key, int(starts[i]), len(plan))
    preds = _graph.array(name, dsk, (tiles.chunks[0], (classes,), (T,), (T,)), np.float32, [tiles])
    if chunks is None:  # blocks of about 1024 px: a task holds its block and the windows on it
        chunks = max(2 * T, (1024 // T) * T)
    return untile_array(
        preds,
        plan.rows,
        plan.cols,
        plan.codes,
        plan.shape,
        weight,
        chunks=chunks,
        acc_dtype=np.float64,
    )
