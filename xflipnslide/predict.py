"""Inference on a whole scene: a lazy model runner with D4 test-time
augmentation and seamless blending."""

from __future__ import annotations

import numbers
from collections.abc import Callable, Hashable, Mapping, Sequence
from typing import Any, Literal

import numpy as np
import xarray as xr

from ._core.blend import blend_weights
from ._core.predict import ModelRunner, predict_array
from ._core.tiling import check_tileable, load_arrays, valid_fractions
from .dims import find_spatial_dims
from .errors import InvalidParameterError, check_positive_int
from .georef import windows_intersecting
from .plan import check_min_valid, predict_plan
from .schema import OBSERVED

# predict_plan lives with the other plans; it stays importable from here.
__all__ = ["predict", "predict_plan"]

#: Dimension names ``predict`` reads as the model's input channels.
CHANNEL_NAMES = ("band", "bands", "channel", "channels")


def _extra_dims_message(scene: xr.DataArray, other: list, spatial: tuple) -> str:
    """What to do with a scene that has more than one dim besides the spatial
    two: the ones that are not the (named) channel dim, and how to drop them."""
    channel = [d for d in other if str(d).lower() in CHANNEL_NAMES][:1]
    extra = [d for d in other if d not in channel]
    first = extra[0]
    pick = f"{first}=0" if str(first).isidentifier() else f"{{{first!r}: 0}}"
    if channel:
        kept = f"keeping {channel[0]!r} as the model's input channels"
    else:
        kept = "keeping one dim: the model's input channels"
    one = len(extra) == 1
    return (
        f"predict needs one channel dim besides {spatial[0]!r} and {spatial[1]!r} (band, y, x); "
        f"the scene's dims are {list(scene.dims)}, so {extra} {'is' if one else 'are'} extra: "
        f"select or reduce {'it' if one else 'them'} first (e.g. scene.isel({pick}) or "
        f"scene.mean({first!r})), {kept}"
    )


def predict(
    scene: xr.DataArray,
    model: Callable | Any,
    *,
    tile_size: int = 256,
    stride: int | None = None,
    tta: Literal["d4"] | None = None,
    blend: Literal["mean", "hann", "distance", "spline"] = "hann",
    batch_size: int = 32,
    device: Any = None,
    dims: Sequence[Hashable] | None = None,
    classes: int | None = None,
    class_dim: Hashable = "class",
    aoi: Any = None,
    aoi_crs: Any = None,
    min_valid: float | None = None,
    chunks: int | None = None,
) -> xr.DataArray:
    """Run a model over a whole scene: every pixel predicted, seams blended.

    Parameters
    ----------
    scene
        ``(band, y, x)`` (the model's input channels first), numpy- or
        dask-backed, preprocessed the way the model was trained; or a mapping
        ``{id: scene}`` of such scenes, each predicted on its own grid
        (the result is then ``{id: map}``).
    model
        A callable taking a float32 numpy batch ``(B, C, T, T)`` and
        returning ``(B, K, T, T)`` real numbers, or a ``torch.nn.Module``
        (run in eval mode under ``torch.no_grad()`` on ``device``, batches
        moved there and back, then left in the mode it was in). Every
        output is checked for that shape before it is blended.
    tile_size
        Window side ``T`` in pixels.
    stride
        Step between windows (default ``T // 2``; ``T`` for no overlap).
        The scene is reflect-padded by ``T - stride`` pixels (and to whole
        steps), so **every pixel is predicted**, no crop and no NaN.
    tta
        ``"d4"``: each window is predicted under all eight D4 transforms
        (Flip-n-Slide's codes 0-7) and each output turned back by the
        inverse transform before averaging. ``None``: one view. Flip-n-Slide
        training showed the model every orientation; TTA asks it about
        every orientation at inference, which is where that pays off.
    blend
        How overlapping windows are weighted: ``"mean"``, ``"hann"``,
        ``"distance"`` (seamless_seg's trust, falling linearly from the
        centre) or ``"spline"`` (Smoothly-Blend's second-order spline);
        formulas in :doc:`/inference`.
    batch_size
        Windows per model call.
    device
        torch device for a ``torch.nn.Module`` (e.g. ``"cuda"``).
    dims
        ``(row_dim, column_dim)``, found by name by default.
    classes
        ``K``, a positive integer; by default found by calling the model
        once on one zero tile. Every later output must have ``K`` channels.
    class_dim
        Name of the output's class dimension.
    aoi, aoi_crs
        Predict only windows whose footprint intersects this area (as for
        :func:`xflipnslide.tile`); pixels no kept window covers are NaN.
    min_valid
        Predict only windows with at least this share of observed pixels
        (from ``preprocess``'s ``fns_observed`` mask; computed first on dask);
        pixels no kept window covers are NaN.
    chunks
        Dask output chunk side along y and x (default: the largest multiple
        of ``T`` up to 1024 px, at least ``2 T``).

    Raises
    ------
    InvalidParameterError
        For a bad option (the message says what to pass), or a model output
        of the wrong shape, channel count or dtype (on dask, at compute).

    Warns
    -----
    NonFiniteWarning
        When tiles given to the model hold NaN or infinite scene values, or
        the model returns such values, with counts (on dask, per chunk of
        tiles when it is computed).

    Returns
    -------
    DataArray (or a dict of them, for a mapping of scenes)
        ``(class, y, x)`` float32 on the scene's grid with its coordinates,
        CRS and attrs; lazy for a dask scene (one task per chunk of windows,
        the model called once per batch inside it, then one task per output
        block). ``.argmax("class")`` gives the label map.

    Examples
    --------
    >>> import numpy as np, xarray as xr, xflipnslide
    >>> scene = xr.DataArray(np.random.rand(3, 300, 300).astype("float32"), dims=("band", "y", "x"))
    >>> identity = lambda batch: batch  # any (B, C, T, T) -> (B, K, T, T) callable
    >>> out = scene.fns.predict(identity, tile_size=64, tta="d4")
    >>> out.dims, bool(np.allclose(out.values, scene.values, atol=1e-6))
    (('class', 'y', 'x'), True)
    """
    if isinstance(scene, Mapping) and not isinstance(scene, xr.Dataset):
        options = dict(
            tile_size=tile_size,
            stride=stride,
            tta=tta,
            blend=blend,
            batch_size=batch_size,
            device=device,
            dims=dims,
            classes=classes,
            class_dim=class_dim,
            aoi=aoi,
            aoi_crs=aoi_crs,
            min_valid=min_valid,
            chunks=chunks,
        )
        return {key: predict(one, model, **options) for key, one in scene.items()}
    if not isinstance(scene, xr.DataArray):
        raise InvalidParameterError(
            "predict takes a DataArray (band, y, x); for a Dataset pick the image: "
            "ds['image'].fns.predict(model)"
        )
    if not callable(model):
        raise InvalidParameterError("model must be callable: a torch.nn.Module or a function")
    batch_size = check_positive_int(batch_size, "batch_size")
    if classes is not None and (
        isinstance(classes, bool) or not isinstance(classes, numbers.Integral) or classes < 1
    ):
        raise InvalidParameterError(
            "classes must be a positive integer, the number of channels the model returns "
            f"(or None to take it from one call of the model); got {classes!r}"
        )
    classes = None if classes is None else int(classes)
    min_valid = check_min_valid(min_valid)
    ydim, xdim = find_spatial_dims(scene, dims)
    other = [d for d in scene.dims if d not in (ydim, xdim)]
    if len(other) > 1:
        raise InvalidParameterError(_extra_dims_message(scene, other, (ydim, xdim)))
    scene = scene.transpose(*other, ydim, xdim)
    if chunks is not None:
        chunks = check_positive_int(chunks, "chunks")
    data = scene.data if np.issubdtype(scene.dtype, np.float32) else scene.astype("float32").data
    check_tileable(data, "the scene")
    plan = predict_plan((scene.sizes[ydim], scene.sizes[xdim]), tile_size, stride, tta)
    weight = blend_weights(plan.tile_size, blend, floor=0)
    if aoi is not None:
        plan = plan.select(windows_intersecting(scene, plan, (ydim, xdim), aoi, aoi_crs))
        if not len(plan):
            raise InvalidParameterError("no window intersects the area of interest")
    if min_valid is not None:
        mask = scene.coords.get(OBSERVED)
        if mask is None or set(mask.dims) != {ydim, xdim}:
            raise InvalidParameterError(
                f"min_valid= needs the {OBSERVED} mask preprocess() leaves on the scene"
            )
        fractions = valid_fractions(mask.transpose(ydim, xdim).data, plan)
        plan = plan.select(load_arrays([fractions])[0] >= min_valid)
        if not len(plan):
            raise InvalidParameterError(f"no window has min_valid={min_valid} observed pixels")
    runner = ModelRunner(model, batch_size, device, classes=classes)
    if classes is None:
        classes = runner.probe(scene.sizes[other[0]] if other else 1, plan.tile_size)
    out = predict_array(data, plan, runner, weight, classes, chunks=chunks)
    coords = {n: c.variable for n, c in scene.coords.items() if not (set(c.dims) & set(other))}
    return xr.DataArray(
        out, dims=(class_dim, ydim, xdim), coords=coords, attrs=dict(scene.attrs), name="prediction"
    )
