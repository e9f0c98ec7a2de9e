"""Inference on a whole scene: a lazy model runner with D4 test-time
augmentation and seamless blending."""

from __future__ import annotations

import numbers
from collections.abc import Callable, Hashable, Mapping, Sequence
from typing import Any, Literal

import numpy as np
import xarray as xr

from ._core.blend import blend_weights
from ._core.load import load_arrays
from ._core.predict import ModelRunner, predict_array
from ._core.tiling import check_tileable, valid_fractions
from .dims import find_spatial_dims
from .errors import InvalidParameterError, check_positive_int
from .georef import windows_intersecting
from .plan import check_min_valid, predict_plan
from .schema import OBSERVED

# predict_plan lives with the other plans; it stays importable from here.
__all__ = ["label_map", "predict", "predict_plan"]

#: Dimension names ``predict`` reads as the model's input channels.
CHANNEL_NAMES = ("band", "bands", "channel", "channels")


def _extra_dims_message(scene: xr.DataArray, other: list, spatial: tuple) -> str:
    """What to do with a scene whose channel dim is ambiguous: several dims
    besides the spatial two and not exactly one of them named as channels."""
    named = [d for d in other if str(d).lower() in CHANNEL_NAMES]
    first = other[0]
    pick = f"{first}=0" if str(first).isidentifier() else f"{{{first!r}: 0}}"
    one = len(other) == 1
    if named:
        which = f"{named} all name channels"
        fix = f"rename all but the channel dim (e.g. scene.rename({{{named[-1]!r}: 'layer'}}))"
    else:
        which = "none of them is named as channels"
        fix = f"name the channel dim 'band' (e.g. scene.rename({{{other[-1]!r}: 'band'}}))"
    return (
        f"predict needs one channel dim besides {spatial[0]!r} and {spatial[1]!r} (band, y, x), "
        f"and maps over any others; the scene's dims are {list(scene.dims)}, so {other} "
        f"{'is' if one else 'are'} extra and {which}: {fix} to predict each slice of the "
        f"others, or select or reduce {'it' if one else 'them'} first (e.g. scene.isel({pick}) "
        f"or scene.mean({first!r})), keeping one dim: the model's input channels"
    )


def _channel_and_mapped(scene: xr.DataArray, other: list, spatial: tuple) -> tuple[list, list]:
    """``(channel, mapped)``: the model's channel dim (none or one) and the
    dims predicted slice by slice, or an error when the channel is ambiguous."""
    named = [d for d in other if str(d).lower() in CHANNEL_NAMES]
    if len(named) == 1:
        return named, [d for d in other if d not in named]
    if not named and len(other) <= 1:
        return other, []
    raise InvalidParameterError(_extra_dims_message(scene, other, spatial))


def _check_classes(classes) -> tuple[int | None, list | None]:
    """``(K, names)`` from ``classes``: a positive integer, a sequence of
    distinct class names, or None."""
    if classes is None:
        return None, None
    if isinstance(classes, numbers.Integral) and not isinstance(classes, bool) and classes >= 1:
        return int(classes), None
    if isinstance(classes, Sequence | np.ndarray) and not isinstance(classes, str | bytes):
        names = list(classes)
        if names and len(set(map(str, names))) == len(names):
            return len(names), names
    raise InvalidParameterError(
        "classes must be a positive integer, the number of channels the model returns, a list "
        "of distinct class names, one per channel (e.g. classes=['water', 'forest']), or None "
        f"to take the count from one call of the model; got {classes!r}"
    )


def predict(
    scene: xr.DataArray,
    model: Callable | Any,
    *,
    tile_size: int = 256,
    stride: int | None = None,
    tta: Literal["d4"] | None = None,
    blend: Literal["mean", "hann", "distance", "spline"] = "hann",
    batch_size: int | None = None,
    device: Any = None,
    precision: Literal["bf16", "fp16"] | None = None,
    dims: Sequence[Hashable] | None = None,
    classes: int | None = None,
    class_dim: Hashable = "class",
    aoi: Any = None,
    aoi_crs: Any = None,
    min_valid: float | None = None,
    mask: bool = True,
    chunks: int | None = None,
) -> xr.DataArray:
    """Run a model over a whole scene: every pixel predicted, seams blended.

    Parameters
    ----------
    scene
        ``(band, y, x)`` (the model's input channels first), numpy- or
        dask-backed, preprocessed the way the model was trained. Any other
        dims (e.g. ``(time, band, y, x)``) are predicted slice by slice and
        stacked back with their coordinates; the channel dim is the one named
        ``band``/``bands``/``channel``/``channels`` (or the only one besides
        ``y`` and ``x``), else an error says how to name it. Or a mapping
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
        The fewest windows at that step that keep every pixel off a
        window's outermost ring, centred on the scene and reflect-padded
        where they leave it (:func:`~xflipnslide.plan.predict_plan` states
        the rule), so **every pixel is predicted**, no crop and no NaN.
    tta
        ``"d4"``: each window is predicted under all eight D4 transforms
        (Flip-n-Slide's codes 0-7) and each output turned back by the
        inverse transform; the eight are averaged before the window is
        blended (one overlap-add per window). ``None``: one view. Flip-n-Slide
        training showed the model every orientation; TTA asks it about
        every orientation at inference, which is where that pays off.
    blend
        How overlapping windows are weighted: ``"mean"``, ``"hann"``,
        ``"distance"`` (seamless_seg's trust, falling linearly from the
        centre) or ``"spline"`` (Smoothly-Blend's second-order spline);
        formulas in :doc:`/inference`.
    batch_size
        Windows per model call (views, with ``tta="d4"``). None: 8 for a
        ``torch.nn.Module`` on the CPU (torch's CPU kernels take no less time
        per window in larger batches, and hold every window's activations:
        measured in :doc:`/performance`), 32 for a module on an accelerator
        or any other callable.
    device
        torch device for a ``torch.nn.Module`` (e.g. ``"cuda"``: batches go
        through pinned host memory with non-blocking copies).
    precision
        ``"bf16"`` or ``"fp16"``: run a ``torch.nn.Module`` under
        :func:`torch.autocast` of that dtype (outputs are blended in float32);
        None runs it as it is. Only for torch modules.
    dims
        ``(row_dim, column_dim)``, found by name by default.
    classes
        ``K``, a positive integer, or a list of ``K`` distinct class names
        (the ``class`` coordinate, and the band descriptions ``rio.to_raster``
        writes); by default ``K`` is found by calling the model once on one
        zero tile. Every later output must have ``K`` channels.
    class_dim
        Name of the output's class dimension.
    aoi, aoi_crs
        Predict only windows whose footprint intersects this area (as for
        :func:`xflipnslide.tile`); pixels no kept window covers are NaN.
    min_valid
        Predict only windows with at least this share of observed pixels
        (from ``preprocess``'s ``fns_observed`` mask; computed first on dask);
        pixels no kept window covers are NaN.
    mask
        ``True``: pixels ``preprocess`` never observed (its ``fns_observed``
        coordinate False) are NaN in every class; ``False`` keeps the model's
        values there. A scene without ``fns_observed`` is not masked.
    chunks
        Dask output chunk side along y and x (default: the largest multiple
        of ``T`` up to 512 px, at least ``2 T``: bounded memory per task; larger
        by steps of ``T`` where the scene would have over 4096 blocks).

    Raises
    ------
    InvalidParameterError
        For a bad option (the message says what to pass), or a model output
        of the wrong shape, channel count or dtype (on dask, at compute).

    Warns
    -----
    NonFiniteWarning
        When tiles given to the model hold NaN or infinite scene values, or
        the model returns such values, with counts (on dask, per output
        block when it is computed).

    Returns
    -------
    DataArray (or a dict of them, for a mapping of scenes)
        ``(class, y, x)`` float32 (``(time, class, y, x)`` for a time stack)
        on the scene's grid with its coordinates, CRS and attrs, its nodata
        declared NaN (``encoding["_FillValue"]``, which ``rio.to_raster``
        writes); lazy for a dask scene (one fused task per output block
        that runs the model on the windows starting in it, in bounded
        memory; see :doc:`/inference`). :func:`label_map` gives the label
        map, with a nodata class.

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
            precision=precision,
            dims=dims,
            classes=classes,
            class_dim=class_dim,
            aoi=aoi,
            aoi_crs=aoi_crs,
            min_valid=min_valid,
            mask=mask,
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
    if batch_size is not None:
        batch_size = check_positive_int(batch_size, "batch_size")
    classes, names = _check_classes(classes)
    min_valid = check_min_valid(min_valid)
    ydim, xdim = find_spatial_dims(scene, dims)
    other = [d for d in scene.dims if d not in (ydim, xdim)]
    channel, mapped = _channel_and_mapped(scene, other, (ydim, xdim))
    scene = scene.transpose(*[d for d in other if d in mapped], *channel, ydim, xdim)
    if chunks is not None:
        chunks = check_positive_int(chunks, "chunks")
    check_tileable(scene.data, "the scene")
    plan = predict_plan((scene.sizes[ydim], scene.sizes[xdim]), tile_size, stride, tta)
    if aoi is not None:
        plan = plan.select(windows_intersecting(scene, plan, (ydim, xdim), aoi, aoi_crs))
        if not len(plan):
            raise InvalidParameterError("no window intersects the area of interest")
    runner = ModelRunner(model, batch_size, device, classes=classes, precision=precision)
    if classes is None:
        classes = runner.probe(scene.sizes[channel[0]] if channel else 1, plan.tile_size)
    weight = blend_weights(plan.tile_size, blend, floor=0)
    one = _OneSlice(plan, runner, weight, (class_dim, ydim, xdim))
    out = _map_slices(scene, mapped, lambda s: one(s, classes, chunks, min_valid, mask))
    if names is not None:
        out = out.assign_coords({class_dim: np.asarray(names)})
        out.attrs["long_name"] = tuple(str(n) for n in names)  # rioxarray's band descriptions
    # Declared nodata (rioxarray's encoded nodata): rio.to_raster writes it; maps
    # derived from the scores (argmax) do not inherit a float nodata.
    out.encoding["_FillValue"] = np.nan
    return out


def label_map(pred: xr.DataArray, class_dim: Hashable = "class") -> xr.DataArray:
    """The argmax class of each pixel of a ``predict`` map, with a declared
    nodata class where it holds no prediction (NaN in every class: never
    observed, or outside the windows kept).

    ``uint8`` with nodata 255 for up to 255 classes (``uint16`` and 65535 up
    to 65535); ``rio.to_raster`` declares the nodata. Lazy stays lazy.

    Examples
    --------
    >>> import numpy as np, xarray as xr, xflipnslide
    >>> pred = xr.DataArray(
    ...     [[[0.2, np.nan], [0.9, 0.1]], [[0.8, np.nan], [0.1, 0.3]]], dims=("class", "y", "x")
    ... )
    >>> labels = xflipnslide.label_map(pred)
    >>> labels.values.tolist(), labels.dtype.name, labels.attrs["_FillValue"]
    ([[1, 255], [0, 1]], 'uint8', 255)
    """
    k = pred.sizes[class_dim]
    dtype = np.dtype(np.uint8 if k <= 255 else np.uint16 if k <= 65535 else np.uint32)
    nodata = np.iinfo(dtype).max
    known = pred.notnull().any(class_dim)
    labels = pred.fillna(-np.inf).argmax(class_dim).where(known, nodata).astype(dtype)
    labels.attrs = {n: v for n, v in pred.attrs.items() if n != "long_name"}
    labels.attrs["_FillValue"] = nodata
    return labels.rename("labels")


def _map_slices(scene: xr.DataArray, mapped: list, predict_one: Callable) -> xr.DataArray:
    """``predict_one`` of each slice of ``scene`` along the ``mapped`` dims,
    stacked back along them (lazily: each slice is its own lazy prediction)
    with their coordinates."""
    if not mapped:
        return predict_one(scene)
    dim = mapped[0]
    parts = [
        _map_slices(scene.isel({dim: i}), mapped[1:], predict_one) for i in range(scene.sizes[dim])
    ]
    # Coordinates along ``dim`` are stacked back; the others are the same in every slice.
    along = [n for n, c in scene.coords.items() if dim in c.dims and n in parts[0].coords]
    return xr.concat(parts, dim, coords=along, compat="override", join="override")


class _OneSlice:
    """Predict one ``(channel, y, x)`` slice with a fixed plan, runner and weights."""

    def __init__(self, plan, runner: ModelRunner, weight: np.ndarray, dims: tuple):
        self.plan, self.runner, self.weight, self.dims = plan, runner, weight, dims

    def __call__(self, scene: xr.DataArray, classes: int, chunks, min_valid, mask: bool):
        ydim, xdim = self.dims[1:]
        other = [d for d in scene.dims if d not in (ydim, xdim)]
        plan = self.plan
        observed = scene.coords.get(OBSERVED)
        if observed is not None and not set(observed.dims) <= {ydim, xdim}:
            raise InvalidParameterError(
                f"the scene's {OBSERVED} mask has dims {list(observed.dims)}; predict needs it "
                f"on {ydim!r} and {xdim!r} (and any dims it maps over): drop it, or pass "
                "mask=False and no min_valid="
            )
        if min_valid is not None:
            if observed is None or set(observed.dims) != {ydim, xdim}:
                raise InvalidParameterError(
                    f"min_valid= needs the {OBSERVED} mask preprocess() leaves on the scene"
                )
            fractions = valid_fractions(observed.transpose(ydim, xdim).data, plan)
            plan = plan.select(load_arrays([fractions])[0] >= min_valid)
            if not len(plan):
                raise InvalidParameterError(f"no window has min_valid={min_valid} observed pixels")
        data = scene.data if scene.dtype == np.float32 else scene.astype("float32").data
        out = predict_array(data, plan, self.runner, self.weight, classes, chunks=chunks)
        coords = {n: c.variable for n, c in scene.coords.items() if not (set(c.dims) & set(other))}
        out = xr.DataArray(
            out,
            dims=self.dims,
            coords=coords,
            attrs=dict(scene.attrs),
            name="prediction",
        )
        if mask and observed is not None:  # never observed: no prediction (NaN)
            out = out.where(out.coords[OBSERVED])
        return out
