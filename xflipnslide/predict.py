"""Inference on a whole scene: a lazy model runner with D4 test-time
augmentation and seamless blending."""

from __future__ import annotations

import numbers
from collections.abc import Callable, Hashable, Sequence
from typing import Any, Literal

import numpy as np
import xarray as xr

from ._core.predict import ModelRunner, predict_array
from ._core.tiling import BLENDS, blend_weights, check_known_chunks
from .dims import find_spatial_dims
from .errors import InvalidParameterError, SceneTooSmallError, check_positive_int
from .georef import windows_intersecting
from .plan import TilePlan, window_fractions
from .schema import OBSERVED

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


def predict_plan(
    shape: tuple[int, int], tile_size: int, stride: int | None = None, tta: str | None = None
) -> TilePlan:
    """The windows (and views) ``predict`` runs the model on.

    The ``overlap`` grid with step ``stride``, extended by ``tile_size -
    stride`` pixels of reflect padding beyond each scene edge (and as far as
    whole steps need), so every pixel of the scene lies inside windows, none
    only on a window's outermost ring. With ``tta="d4"`` each window appears
    eight times in a row, with codes 0..7; else once, code 0.
    """
    T = check_positive_int(tile_size, "tile_size")
    if stride is None and T < 2:
        raise InvalidParameterError(
            f"tile_size must be at least 2 for the default stride tile_size // 2; got {T} "
            "(pass stride=1 for one-pixel windows)"
        )
    s = T // 2 if stride is None else check_positive_int(stride, "stride")
    if s > T:
        raise InvalidParameterError(f"stride must be at most tile_size={T}; got {s}")
    if tta not in (None, "d4"):
        raise InvalidParameterError(f"tta must be None or 'd4'; got {tta!r}")
    margin = T - s
    origins = []
    for size in shape:
        steps = max(0, -(-(size + 2 * margin - T) // s))
        o = -margin + s * np.arange(steps + 1, dtype=np.int64)
        reach = max(-int(o[0]), int(o[-1]) + T - size)
        if reach >= size:
            raise SceneTooSmallError(
                f"a scene of {shape[0]} x {shape[1]} pixels is too small to reflect-pad by "
                f"{reach} px for tile_size={T}, stride={s}: use a smaller tile_size or a "
                "larger stride"
            )
        origins.append(o)
    iy, ix = np.meshgrid(np.arange(origins[0].size), np.arange(origins[1].size), indexing="ij")
    rows, cols = origins[0][iy.ravel()], origins[1][ix.ravel()]
    views = 8 if tta == "d4" else 1
    return TilePlan(
        shape=(int(shape[0]), int(shape[1])),
        tile_size=T,
        strategy="overlap",
        edge="pad",
        offset=(int(origins[0][0]), int(origins[1][0])),
        extent=(int(origins[0][-1] + T - origins[0][0]), int(origins[1][-1] + T - origins[1][0])),
        rows=np.repeat(rows, views),
        cols=np.repeat(cols, views),
        codes=np.tile(np.arange(views, dtype=np.int8), rows.size),
        grids=np.full(rows.size * views, "regular", dtype="<U7"),
        stride=s,
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
        dask-backed, preprocessed the way the model was trained.
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
        formulas in :func:`xflipnslide._tiling.blend_weights`.
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
        Dask output chunk side (default: blocks of a multiple of ``T``
        bounded by dask's ``array.chunk-size``).

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
    DataArray
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
    if not isinstance(scene, xr.DataArray):
        raise InvalidParameterError(
            "predict takes a DataArray (band, y, x); for a Dataset pick the image: "
            "ds['image'].fns.predict(model)"
        )
    if blend not in BLENDS:
        raise InvalidParameterError(
            f"blend must be one of {', '.join(map(repr, BLENDS))}; got {blend!r}"
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
    if min_valid is not None and (
        isinstance(min_valid, bool)
        or not isinstance(min_valid, numbers.Real)
        or not 0 <= min_valid <= 1
    ):
        raise InvalidParameterError(
            "min_valid must be a number in [0, 1], the share of observed pixels a window "
            f"needs (e.g. min_valid=0.9), or None; got {min_valid!r}"
        )
    ydim, xdim = find_spatial_dims(scene, dims)
    other = [d for d in scene.dims if d not in (ydim, xdim)]
    if len(other) > 1:
        raise InvalidParameterError(_extra_dims_message(scene, other, (ydim, xdim)))
    scene = scene.transpose(*other, ydim, xdim)
    check_known_chunks(scene.data)
    if chunks is not None:
        chunks = check_positive_int(chunks, "chunks")
    data = scene.data if np.issubdtype(scene.dtype, np.float32) else scene.astype("float32").data
    plan = predict_plan((scene.sizes[ydim], scene.sizes[xdim]), tile_size, stride, tta)
    if aoi is not None:
        plan = plan.select(windows_intersecting(scene, plan, (ydim, xdim), aoi, aoi_crs))
        if not len(plan):
            raise InvalidParameterError("no window intersects the area of interest")
    if min_valid is not None:
        mask = scene.coords.get(OBSERVED)
        if mask is None or set(mask.dims) != {ydim, xdim}:
            raise InvalidParameterError(
                "min_valid= needs the fns_observed mask preprocess() leaves on the scene"
            )
        observed = np.asarray(mask.transpose(ydim, xdim).values, dtype=bool)
        plan = plan.select(window_fractions(observed, plan) >= float(min_valid))
        if not len(plan):
            raise InvalidParameterError(f"no window has min_valid={min_valid} observed pixels")
    runner = ModelRunner(model, batch_size, device, classes=classes)
    if classes is None:
        classes = runner.probe(scene.sizes[other[0]] if other else 1, plan.tile_size)
    weight = blend_weights(plan.tile_size, blend, floor=0)
    out = predict_array(data, plan, runner, weight, classes, chunks=chunks)
    coords = {n: c.variable for n, c in scene.coords.items() if not (set(c.dims) & set(other))}
    return xr.DataArray(
        out, dims=(class_dim, ydim, xdim), coords=coords, attrs=dict(scene.attrs), name="prediction"
    )
