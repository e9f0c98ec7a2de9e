"""Array layer of inference: run a model over every window of a scene and
blend the outputs back, on numpy (streamed batch by batch) or as one dask
graph (:mod:`.predict_graph`: one task per output block).

The windows and their D4 views form a :class:`~xflipnslide.TilePlan` whose
codes are the views: with test-time augmentation each window appears eight
times, once per code, consecutively. The pipeline (:func:`stream`) runs
parts of whole windows: gather their views (:func:`.tiling.tile_array`, or
:func:`~.kernels.gather_tiles` from a block's source), call the model,
average each window's views turned back by their inverse transforms
(:func:`~.kernels.tiles.fold_views`: one tile per window), and overlap-add
that one tile (:class:`.blend.OverlapAdd`, float64 sums of float32 tiles).
Host work runs on a helper thread beside the model only where the model
leaves cores free (:meth:`ModelRunner.overlaps_host`), else between its calls.

Every model output is checked (:meth:`ModelRunner.__call__`) before any
kernel sees it: its shape, its channel count against ``classes``, its dtype.
NaN and infinite values, in the tiles the model reads (on numpy, only when
the scene is not found finite in one pass) and in what it returns, are
counted as the batches run and reported with a
:class:`~xflipnslide.errors.NonFiniteWarning`: once per ``predict`` on
numpy, once per output block when a dask graph computes that block (from
inside the task: the threaded and synchronous schedulers run it in the
user's process, and on a ``dask.distributed`` worker the warning is also
forwarded to the client with :func:`distributed.warn`).
"""

from __future__ import annotations

import itertools
import os
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager, nullcontext

import numpy as np

from ..errors import InvalidParameterError
from ..plan import TilePlan
from . import graph as _graph
from .blend import OverlapAdd
from .blocks import strip_source, strips
from .kernels import as_bits, gather_tiles
from .kernels.tiles import fold_views
from .nonfinite import NonFiniteCounts, finite_scene
from .tiling import tile_array

__all__ = [
    "PRECISIONS",
    "ModelRunner",
    "NonFiniteCounts",
    "predict_array",
    "stream",
    "window_starts",
]

#: Windows per model call by default (a module on an accelerator, or any
#: other callable), and for a torch module on the CPU, whose kernels take no
#: less time per window in larger batches but hold every window's
#: activations (and, for some shapes, switch to a slower path that holds
#: several times more: see ``docs/performance.md``).
BATCH, CPU_BATCH = 32, 8

#: ``precision=`` values: torch autocast dtypes, or None (the model's own).
PRECISIONS = {None: None, "bf16": "bfloat16", "fp16": "float16"}


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
    was in; with ``precision`` ``"bf16"`` or ``"fp16"`` under
    :func:`torch.autocast` of that dtype (outputs come back as float32). On
    a CUDA device each batch goes through a pinned host buffer (one per
    thread) with non-blocking copies both ways. Anything else is called on
    numpy batches (``precision`` must then be None). Every output is
    checked against ``classes`` (``K``; set by :meth:`probe` when unknown)
    before it is returned. Its dask token is the model's token
    (:func:`dask.base.tokenize`: its pickled content, weights included) and
    its options.
    """

    def __init__(
        self, model, batch_size=None, device=None, classes: int | None = None, precision=None
    ):
        self.model, self.device = model, device
        self.batch_size = int(batch_size) if batch_size is not None else self.default_batch()
        self.classes, self.probed = classes, False
        if precision not in PRECISIONS:
            raise InvalidParameterError(
                f"precision must be None, 'bf16' or 'fp16'; got {precision!r}"
            )
        if precision is not None and not self._is_torch():
            raise InvalidParameterError(
                f"precision={precision!r} runs a torch.nn.Module under torch.autocast; this "
                "model is a plain callable: cast inside it, or pass precision=None"
            )
        self.precision = precision
        self._ready = False
        self._local = threading.local()

    def __getstate__(self):
        return {**self.__dict__, "_ready": False, "_local": None}

    def __setstate__(self, state):
        self.__dict__.update(state, _local=threading.local())

    def __dask_tokenize__(self):
        from dask.base import tokenize

        return (
            "fns-model",
            tokenize(self.model),
            self.batch_size,
            str(self.device),
            self.classes,
            self.precision,
        )

    def default_batch(self) -> int:
        """Windows per call where the caller gives none: :data:`CPU_BATCH`
        for a torch module on the host CPU, :data:`BATCH` otherwise."""
        return CPU_BATCH if self._is_torch() and not self.on_accelerator() else BATCH

    def _is_torch(self) -> bool:
        return type(self.model).__module__.startswith("torch") or any(
            c.__module__.startswith("torch") for c in type(self.model).__mro__
        )

    def overlaps_host(self) -> bool:
        """Whether host work (gathering windows, blending outputs) runs on a
        helper thread beside the model: where the model leaves cores free (a
        torch module on a device other than the CPU, a CPU module with fewer
        torch threads than this process's cores, a plain callable: unknown).
        Not for a CPU module whose threads use every core: a helper would
        take cores from them (see ``docs/performance.md``)."""
        if not self._is_torch():
            return True
        import torch

        return self.on_accelerator() or torch.get_num_threads() < _cores()

    def on_accelerator(self) -> bool:
        """Whether the model is a torch module on a device other than the CPU."""
        if not self._is_torch() or self.device is None:
            return False
        import torch

        return torch.device(self.device).type != "cpu"

    def _torch_call(self, batch: np.ndarray) -> np.ndarray:
        import torch

        if not self._ready:
            self.model = self.model.to(self.device) if self.device is not None else self.model
            self._ready = True
        device = torch.device(self.device) if self.device is not None else torch.device("cpu")
        cuda = device.type == "cuda"
        if self.precision is not None:
            autocast = torch.autocast(device.type, dtype=getattr(torch, PRECISIONS[self.precision]))
        else:
            autocast = nullcontext()
        with torch.no_grad(), autocast:
            x = torch.from_numpy(np.ascontiguousarray(batch))
            if cuda:  # pinned staging: the copy to the device does not block the host
                x = self._pinned("input", x).copy_(x).to(device, non_blocking=True)
            elif self.device is not None:
                x = x.to(device)
            out = self.model(x).detach()
            if out.dtype != torch.float32:
                out = out.float()
            if cuda:
                host = self._pinned("output", out).copy_(out, non_blocking=True)
                torch.cuda.current_stream(device).synchronize()
                return host.numpy().copy()
            return out.to("cpu").numpy()

    def _pinned(self, role: str, like):
        """This thread's pinned host tensor for ``role``, shaped like ``like``."""
        import torch

        buffers = self._local.__dict__.setdefault("pinned", {})
        buf = buffers.get(role)
        if buf is None or buf.shape != like.shape or buf.dtype != like.dtype:
            buf = buffers[role] = torch.empty(like.shape, dtype=like.dtype, pin_memory=True)
        return buf

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

    def run(self, tiles: np.ndarray, inputs: bool = True) -> tuple[np.ndarray, NonFiniteCounts]:
        """The checked outputs for ``tiles``, and the NaN or infinite values
        counted in them and in ``tiles`` (unless ``inputs`` is False: known
        finite)."""
        counts = NonFiniteCounts()
        if self._is_torch():
            with _eval_mode(self.model):
                outs = self._batches(tiles, self._torch_call, counts, inputs)
        else:
            outs = self._batches(tiles, self.model, counts, inputs)
        return outs, counts

    def _batches(self, tiles, call, counts, inputs) -> np.ndarray:
        outs = []
        for a in range(0, len(tiles), self.batch_size):
            batch = np.ascontiguousarray(tiles[a : a + self.batch_size], dtype=np.float32)
            out = self._check(call(batch), batch)
            counts.add(batch, out, inputs)
            outs.append(out)
        if not outs:
            return np.empty((0, self.classes or 0, *tiles.shape[2:]), np.float32)
        return outs[0] if len(outs) == 1 else np.concatenate(outs)

    def __call__(self, tiles: np.ndarray) -> np.ndarray:
        """:meth:`run` without the counts."""
        return self.run(tiles)[0]


def _cores() -> int:
    """CPU cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not on Linux
        return os.cpu_count() or 1


def window_starts(plan: TilePlan) -> np.ndarray:
    """Edges of the runs of consecutive entries of ``plan`` that share one
    window (its views): ``[0, ..., len(plan)]``."""
    new = np.flatnonzero((np.diff(plan.rows) != 0) | (np.diff(plan.cols) != 0)) + 1
    return np.concatenate([[0], new, [len(plan)]]).astype(np.int64)


def parts(starts: np.ndarray, step: int) -> list[tuple[int, int]]:
    """Ranges of whole windows (indices into ``starts``) of about ``step``
    entries each: the units the pipeline gathers, runs and blends."""
    out, g, m = [], 0, len(starts) - 1
    while g < m:
        h = int(np.searchsorted(starts, starts[g] + step, side="right")) - 1
        h = min(max(h, g + 1), m)
        out.append((g, h))
        g = h
    return out


def stream(
    runner: ModelRunner,
    starts: np.ndarray,
    codes: np.ndarray,
    gather: Callable[[int, int], np.ndarray],
    blend: Callable[[np.ndarray, int, int], None],
    inputs: bool = True,
    overlap: bool | None = None,
) -> NonFiniteCounts:
    """Run the model over every window: ``gather(a, b)`` gives the views of
    entries ``a:b`` (``(b - a, C, T, T)`` float32), ``blend(tiles, g, h)``
    adds the averaged views of windows ``g:h`` (one tile each), in order.
    Where ``overlap`` (default :meth:`ModelRunner.overlaps_host`), a helper
    thread gathers part ``k + 1`` and blends part ``k - 1`` while the model
    runs part ``k``; else each part is gathered, run and blended in turn.
    Returns the NaN and infinity counts (of the tiles unless not ``inputs``)."""
    counts = NonFiniteCounts()
    units = parts(starts, max(runner.batch_size, 1))
    if not units:
        return counts

    def fold(out: np.ndarray, g: int, h: int) -> None:
        a, b = int(starts[g]), int(starts[h])
        if b - a != h - g:  # views to average: one tile per window
            edges = starts[g : h + 1] - a
            folded = np.empty((h - g, *out.shape[1:]), np.float32)
            fold_views(out, edges, codes[a:b], folded)
            out = folded
        blend(out, g, h)

    def entries(unit):
        return int(starts[unit[0]]), int(starts[unit[1]])

    if not (runner.overlaps_host() if overlap is None else overlap):
        for unit in units:
            out = runner.run(gather(*entries(unit)), inputs)
            counts.merge(out[1])
            fold(out[0], *unit)
        return counts

    with ThreadPoolExecutor(1, thread_name_prefix="fns-predict") as helper:
        ahead = helper.submit(gather, *entries(units[0]))
        behind = None
        for k, unit in enumerate(units):
            tiles = ahead.result()
            if k + 1 < len(units):
                ahead = helper.submit(gather, *entries(units[k + 1]))
            out, found = runner.run(tiles, inputs)
            del tiles
            counts.merge(found)
            if behind is not None:
                behind.result()
            behind = helper.submit(fold, out, *unit)
        behind.result()
    return counts


def predict_array(
    x, plan: TilePlan, runner: ModelRunner, weight: np.ndarray, classes: int, *, chunks=None
):
    """``(K, H, W)`` float32: the blended model outputs over ``plan``'s
    windows and views. numpy in: streamed, holding a few parts of windows at
    a time; dask in: a lazy graph of one task per output block
    (:func:`.predict_graph.predict_dask`)."""
    if runner.classes != classes:
        raise InvalidParameterError(
            f"the runner expects {runner.classes} classes, not {classes}: build it with "
            "ModelRunner(..., classes=classes) or call its probe()"
        )
    if _graph.is_lazy(x):
        from .predict_graph import predict_dask

        return predict_dask(x, plan, runner, weight, classes, chunks)
    x = np.asarray(x)
    acc = OverlapAdd(classes, plan.shape, weight, np.float64)  # many views: sum in float64
    starts = window_starts(plan)
    rows, cols = plan.rows[starts[:-1]], plan.cols[starts[:-1]]
    gather = _scene_gather(x, plan)

    def blend(tiles: np.ndarray, g: int, h: int) -> None:
        acc.add(tiles, rows[g:h], cols[g:h], np.zeros(h - g, np.int8))

    stream(runner, starts, plan.codes, gather, blend, not finite_scene(x)).warn()
    return acc.result(np.float32)


def _scene_gather(x: np.ndarray, plan: TilePlan) -> Callable[[int, int], np.ndarray]:
    """``gather(a, b)``: the tiles of entries ``a:b`` of ``plan`` from the
    in-memory scene ``x``, ``(b - a, C, T, T)``, on this thread. Windows
    wholly inside a C-contiguous scene are read in place; the others (into
    the reflect padding) from their strip (:func:`.blocks.strips`), padded
    once for all its views."""
    T, (h, w) = plan.tile_size, plan.shape
    if not x.flags.c_contiguous:
        return lambda a, b: tile_array(x, plan.select(slice(a, b))).reshape((b - a, -1, T, T))
    rows, cols, codes = plan.rows, plan.cols, plan.codes
    flat = as_bits(x.reshape((-1, h, w)))
    inside = (rows >= 0) & (cols >= 0) & (rows + T <= h) & (cols + T <= w)

    def gather(a: int, b: int) -> np.ndarray:
        out = np.empty((b - a, flat.shape[0], T, T), x.dtype)
        bits = as_bits(out)
        edges = np.flatnonzero(np.diff(inside[a:b])) + 1
        for s, e in itertools.pairwise([a, *(a + edges).tolist(), b]):
            if inside[s]:
                gather_tiles(flat, rows[s:e], cols[s:e], codes[s:e], bits[s - a : e - a])
                continue
            for st in strips(plan, s, e):
                src = as_bits(strip_source(x[..., st.y, st.x], st.pad))
                gather_tiles(src, st.rows, st.cols, st.codes, bits[st.start - a : st.stop - a])
        return out

    return gather
