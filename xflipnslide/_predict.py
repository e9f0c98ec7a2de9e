"""Array layer of inference: run a model over every window of a scene and
blend the outputs back, on numpy (streamed batch by batch) or as one dask
graph (tile chunks -> model -> overlap-add blocks).

The windows and their D4 views form a :class:`TilePlan` whose codes are the
views: with test-time augmentation each window appears eight times, once
per code, consecutively. Gathering a view is :func:`._tiling.tile_array`;
turning each output back and blending is the overlap-add of
:func:`._tiling.untile_array` (its weights are D4-symmetric, so averaging
the eight inverted views and then blending windows is one weighted sum).
"""

from __future__ import annotations

import math

import numpy as np

from . import _graph
from ._tiling import tile_array, tiles_per_chunk, untile_array
from .errors import InvalidParameterError
from .kernels import normalize_weights, scatter_tiles
from .plan import TilePlan

__all__ = ["ModelRunner", "predict_array"]


class ModelRunner:
    """A picklable callable: ``(n, C, T, T)`` float32 in, ``(n, K, T, T)``
    float32 out, calling the model once per batch of ``batch_size`` tiles.

    A ``torch.nn.Module`` runs in eval mode under ``torch.no_grad()`` on
    ``device`` (moved there once per process); anything else is called on
    numpy batches.
    """

    def __init__(self, model, batch_size: int = 32, device=None) -> None:
        self.model, self.batch_size, self.device = model, int(batch_size), device
        self._ready = False

    def __getstate__(self):
        return {**self.__dict__, "_ready": False}

    def _is_torch(self) -> bool:
        return type(self.model).__module__.startswith("torch") or any(
            c.__module__.startswith("torch") for c in type(self.model).__mro__
        )

    def _torch_call(self, batch: np.ndarray) -> np.ndarray:
        import torch

        if not self._ready:
            self.model = self.model.to(self.device) if self.device is not None else self.model
            self.model.eval()
            self._ready = True
        with torch.no_grad():
            x = torch.from_numpy(np.ascontiguousarray(batch))
            if self.device is not None:
                x = x.to(self.device)
            out = self.model(x)
            return out.detach().to("cpu").numpy()

    def __call__(self, tiles: np.ndarray) -> np.ndarray:
        outs = []
        torch_model = self._is_torch()
        for a in range(0, len(tiles), self.batch_size):
            batch = np.ascontiguousarray(tiles[a : a + self.batch_size], dtype=np.float32)
            out = self._torch_call(batch) if torch_model else self.model(batch)
            out = np.asarray(out)
            if out.ndim != 4 or out.shape[0] != len(batch) or out.shape[2:] != batch.shape[2:]:
                raise InvalidParameterError(
                    f"the model returned shape {out.shape} for a batch of shape {batch.shape}; "
                    "it must return (batch, classes, tile, tile)"
                )
            outs.append(out.astype(np.float32, copy=False))
        return np.concatenate(outs) if outs else np.empty((0,), np.float32)


def predict_array(
    x, plan: TilePlan, runner: ModelRunner, weight: np.ndarray, classes: int, *, chunks=None
):
    """``(K, H, W)`` float32: the blended model outputs over ``plan``'s
    windows and views. numpy in: streamed, holding one batch of tiles at a
    time; dask in: a lazy graph."""
    if _graph.is_lazy(x):
        return _predict_dask(x, plan, runner, weight, classes, chunks)
    x = np.asarray(x)
    acc = np.zeros((classes, *plan.shape), np.float64)  # many views: sum in float64
    wsum = np.zeros(plan.shape)
    step = max(runner.batch_size, 1) * 4
    for a in range(0, len(plan), step):
        part = plan.select(slice(a, a + step))
        tiles = tile_array(x, part).reshape((len(part), -1, plan.tile_size, plan.tile_size))
        out = runner(tiles)
        scatter_tiles(out.astype(np.float64), part.rows, part.cols, part.codes, weight, acc, wsum)
    normalize_weights(acc, wsum)
    return acc.astype(np.float32)


def _run_chunk(tiles: np.ndarray, runner: ModelRunner) -> np.ndarray:
    """Task body: the model's outputs for one chunk of tiles."""
    flat = tiles.reshape((tiles.shape[0], -1, *tiles.shape[-2:]))
    return runner(flat)


def _predict_dask(x, plan, runner, weight, classes, chunks):
    from dask.base import tokenize

    T = plan.tile_size
    # A few batches per task: memory per task is bounded by its tile chunk
    # (and its outputs), whatever the scene's size.
    per = tiles_per_chunk("32MiB", T * T * 4 * max(math.prod(x.shape[:-2]), classes), len(plan))
    per = max(runner.batch_size, (per // runner.batch_size) * runner.batch_size)
    tiles = tile_array(x, plan, tile_chunks=min(per, len(plan)))
    token = tokenize(tiles, id(runner), runner.batch_size, classes)
    model_key, name = f"fns-model-{token}", f"fns-predict-{token}"
    # The runner is one key of the graph: a distributed cluster ships it to
    # each worker once, not once per task.
    dsk: dict = {model_key: runner}
    inner = (0,) * (tiles.ndim - 1)
    for i in range(len(tiles.chunks[0])):
        dsk[(name, i, 0, 0, 0)] = (_run_chunk, (tiles.name, i, *inner), model_key)
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
