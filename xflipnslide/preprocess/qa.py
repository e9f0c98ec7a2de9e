"""Cloud masks from a product's QA layer: the Landsat Collection 2 and
Sentinel-2 L2A tables, and :func:`mask_clouds` with its checks that the QA
is that product's and lies on the scene's grid."""

from __future__ import annotations

import logging
import numbers
from collections.abc import Hashable, Iterable, Sequence
from typing import Literal

import numpy as np
import xarray as xr

from ..dims import find_spatial_dims
from ..errors import DataDroppedWarning, InvalidParameterError, warn
from ..georef import scene_transform
from ..schema import T_Xarray

__all__ = ["LANDSAT_C2_QA_BITS", "QA_DEFAULTS", "SENTINEL2_SCL_CLASSES", "mask_clouds"]

log = logging.getLogger(__name__)

#: Landsat Collection 2 ``QA_PIXEL`` bits (see :doc:`/preprocessing`), bit -> name.
LANDSAT_C2_QA_BITS = {
    0: "fill",
    1: "dilated_cloud",
    2: "cirrus",
    3: "cloud",
    4: "cloud_shadow",
    5: "snow",
    6: "clear",
    7: "water",
}
#: Sentinel-2 L2A scene classification (``SCL``) classes, value -> name.
SENTINEL2_SCL_CLASSES = {
    0: "no_data",
    1: "saturated_defective",
    2: "dark_area",
    3: "cloud_shadow",
    4: "vegetation",
    5: "not_vegetated",
    6: "water",
    7: "unclassified",
    8: "cloud_medium_probability",
    9: "cloud_high_probability",
    10: "thin_cirrus",
    11: "snow",
}
#: What :func:`mask_clouds` masks by default: Landsat bits 0-5, SCL classes
#: 0, 1, 3, 8, 9, 10 (add 11 to mask snow on Sentinel-2).
QA_DEFAULTS = {"landsat-c2": (0, 1, 2, 3, 4, 5), "sentinel-2-l2a": (0, 1, 3, 8, 9, 10)}
_QA_TABLES = {"landsat-c2": LANDSAT_C2_QA_BITS, "sentinel-2-l2a": SENTINEL2_SCL_CLASSES}


def mask_clouds(
    scene: T_Xarray,
    qa: xr.DataArray,
    *,
    product: Literal["landsat-c2", "sentinel-2-l2a"] = "landsat-c2",
    mask: int | str | Sequence[int | str] | None = None,
) -> T_Xarray:
    """Set the pixels a product's QA layer flags (clouds, shadows, ...) to NaN.

    Parameters
    ----------
    scene
        The image, ``(..., y, x)``; integer data become float32 (float64
        stays float64).
    qa
        The QA layer on the scene's grid: Landsat Collection 2 ``QA_PIXEL``
        (uint16 bit flags; Planetary Computer asset ``qa_pixel``) or
        Sentinel-2 L2A ``SCL`` (uint8 classes; asset ``SCL``): integers, or
        floats holding whole numbers, NaN read as no data (fill / class 0).
        It must lie on the scene's pixels exactly: the same ``y``/``x``
        coordinates (or, without coordinates, the same shape and recorded
        transform) and the same labels along any other dim it shares with
        the scene (times, bands). Nothing is aligned, cropped or
        reindexed; reproject a QA on another grid first, e.g.
        ``qa.rio.reproject_match(scene)`` (nearest resampling, right for
        flags). A length-1 ``band`` dim is dropped.
    product
        ``"landsat-c2"`` or ``"sentinel-2-l2a"``.
    mask
        What to mask: a Landsat bit number or name, or a list of them
        (:data:`LANDSAT_C2_QA_BITS`; default bits 0-5: fill, dilated cloud,
        cirrus, cloud, cloud shadow, snow), or SCL class values or names
        (:data:`SENTINEL2_SCL_CLASSES`; default 0, 1, 3, 8, 9, 10: no data,
        saturated/defective, cloud shadow, cloud medium and high
        probability, thin cirrus; add 11 for snow).

    Returns
    -------
    DataArray or Dataset
        ``scene`` with flagged pixels NaN (lazy for dask input), ready for
        :func:`preprocess`, whose ``fns_observed`` mask and the tiles'
        ``valid_fraction`` then count them as missing.

    Raises
    ------
    InvalidParameterError
        For an unknown product or mask name; a QA that is not on the
        scene's grid (the message gives the offset in pixels), or whose
        times or bands differ from the scene's; a boolean QA; a ``uint8``
        QA with ``product="landsat-c2"`` (``QA_PIXEL`` is uint16: that is
        SCL). When the values are read (numpy: now; dask: when computed,
        in each task): a float QA with values that are not whole numbers (an
        interpolated QA), an SCL with values outside 0-11.

    Warns
    -----
    DataDroppedWarning
        With ``product="landsat-c2"``, when every QA value is 0-11 and some
        are above 1, as Sentinel-2 SCL classes are: every real ``QA_PIXEL``
        pixel but fill reads 256 or more (its confidence bits), and SCL read
        as bits masks nearly everything (on dask: when computed).

    Examples
    --------
    >>> import numpy as np, xarray as xr, xflipnslide
    >>> scene = xr.DataArray(np.ones((1, 2, 2), "float32"), dims=("band", "y", "x"))
    >>> qa = xr.DataArray(np.array([[1 << 6, 1 << 3], [1 << 4, 1 << 7]], "uint16"), dims=("y", "x"))
    >>> xflipnslide.mask_clouds(scene, qa, product="landsat-c2").values[0]
    array([[ 1., nan],
           [nan,  1.]], dtype=float32)
    """
    if product not in _QA_TABLES:
        raise InvalidParameterError(
            f"product must be one of {', '.join(map(repr, _QA_TABLES))}; got {product!r}"
        )
    if not isinstance(qa, xr.DataArray):
        raise InvalidParameterError(f"qa must be a DataArray on the scene's grid; got {type(qa)}")
    if not isinstance(scene, (xr.DataArray, xr.Dataset)):
        raise InvalidParameterError(
            f"mask_clouds takes a DataArray or Dataset scene; got {type(scene).__name__}"
        )
    if "band" in qa.dims and qa.sizes["band"] == 1:
        qa = qa.isel(band=0, drop=True)
    _check_qa_dtype(qa, product)
    codes = _qa_codes(
        mask if mask is not None else QA_DEFAULTS[product], _QA_TABLES[product], product
    )
    missing = [d for d in qa.dims if d not in scene.dims]
    if missing:
        raise InvalidParameterError(
            f"qa has dims {missing} the scene lacks; select them first (e.g. qa.isel(...))"
        )
    _check_same_grid(scene, qa)
    flagged = xr.apply_ufunc(
        _flag_qa,
        qa.variable,  # no coordinates: the grid is checked, nothing is joined
        kwargs={"product": product, "codes": tuple(codes)},
        dask="parallelized",
        output_dtypes=[bool],
    )
    keep = xr.DataArray(~flagged)

    def one(var: xr.DataArray) -> xr.DataArray:
        dtype = np.float64 if var.dtype == np.float64 else np.float32
        return var.astype(dtype, copy=False).where(keep)

    if isinstance(scene, xr.Dataset):
        return scene.map(lambda v: one(v) if set(keep.dims) <= set(v.dims) else v)
    return one(scene).transpose(*scene.dims)


def _qa_codes(mask, table: dict[int, str], product: str) -> list[int]:
    """The bit numbers or class values ``mask`` names (one name or number, or
    several)."""
    names = {v: k for k, v in table.items()}
    if isinstance(mask, (str, bytes, numbers.Integral)) or not isinstance(mask, Iterable):
        mask = [mask]
    out = []
    for item in mask:
        if isinstance(item, str) and item in names:
            out.append(names[item])
        elif isinstance(item, numbers.Integral) and not isinstance(item, bool) and item in table:
            out.append(int(item))
        else:
            raise InvalidParameterError(
                f"mask= for {product!r} takes one or a list of {sorted(table)} or "
                f"{sorted(names)}; got {item!r}"
            )
    return out


def _check_qa_dtype(qa: xr.DataArray, product: str) -> None:
    """Refuse what the dtype alone shows is not this product's QA (free on dask)."""
    dtype = qa.dtype
    if not (np.issubdtype(dtype, np.integer) or np.issubdtype(dtype, np.floating)):
        raise InvalidParameterError(
            f"qa has dtype {dtype}; QA layers are integers (Landsat QA_PIXEL uint16 bit flags, "
            "Sentinel-2 SCL uint8 classes): pass the QA band itself, not a mask made from it"
        )
    if product == "landsat-c2" and np.issubdtype(dtype, np.integer) and dtype.itemsize < 2:
        raise InvalidParameterError(
            f"qa has dtype {dtype}, which cannot hold Landsat QA_PIXEL's 16 bits: a uint8 QA "
            "is most likely Sentinel-2 SCL; pass product='sentinel-2-l2a'"
        )


def _flag_qa(qa: np.ndarray, *, product: str, codes: tuple[int, ...]) -> np.ndarray:
    """Block function: True where ``qa`` flags a pixel, after checking its
    values fit ``product`` (on dask this runs in each task, when computed).

    A float QA (as odc-stac loads assets without a declared data type) must
    hold whole numbers; NaN reads as no data (Landsat's fill bit, SCL class 0).
    """
    if qa.dtype.kind == "f":
        nan = np.isnan(qa)
        whole = np.isfinite(qa) & (qa == np.round(qa))
        if not (nan | whole).all():
            bad = qa[~(nan | whole)].flat[0]
            raise InvalidParameterError(
                f"qa is {qa.dtype} and holds {bad!r}, which is no QA flag or class: QA values "
                "are whole numbers. A QA resampled with interpolation has lost its flags: "
                "reproject it with nearest resampling (qa.rio.reproject_match(scene))"
            )
        qa = np.where(nan, 1 if product == "landsat-c2" else 0, qa).astype(np.int64)
    if product == "landsat-c2":
        if qa.size and int(qa.max()) <= 11 and bool((qa > 1).any()):
            warn(
                "mask_clouds: every QA value is between 0 and 11, as Sentinel-2 SCL classes are, "
                "while every Landsat QA_PIXEL pixel but fill reads 256 or more (its confidence "
                "bits); read as bits, SCL masks nearly everything. If this is SCL, pass "
                "product='sentinel-2-l2a'",
                DataDroppedWarning,
            )
        return (qa & sum(1 << b for b in codes)) != 0
    if qa.size and (int(qa.min()) < 0 or int(qa.max()) > 11):
        raise InvalidParameterError(
            f"qa holds values from {int(qa.min())} to {int(qa.max())}, but Sentinel-2 SCL classes "
            "run from 0 to 11: values above 255 are Landsat QA_PIXEL bit flags (pass "
            "product='landsat-c2'); a no-data fill such as 255 can be mapped to class 0 first "
            "(qa.where(qa != 255, 0))"
        )
    return np.isin(qa, codes)


def _check_same_grid(scene: xr.DataArray | xr.Dataset, qa: xr.DataArray) -> None:
    """Raise unless ``qa`` lies on the pixels (and labels) of ``scene``."""
    spatial = find_spatial_dims(scene)
    for d in qa.dims:
        if qa.sizes[d] != scene.sizes[d]:
            raise InvalidParameterError(
                f"qa has {qa.sizes[d]} values along {d!r}, the scene {scene.sizes[d]}: the QA "
                "must be on the scene's grid (and times); reproject or align it first, e.g. "
                "qa.rio.reproject_match(scene)"
            )
    for d in qa.dims:
        if d in spatial or d not in qa.indexes or d not in scene.indexes:
            continue
        if not qa.indexes[d].equals(scene.indexes[d]):
            raise InvalidParameterError(
                f"qa is labelled {qa[d].values.tolist()[:6]} along {d!r}, the scene "
                f"{scene[d].values.tolist()[:6]}: give the QA the scene's {d!r} labels, in "
                f"order (select or reorder it, e.g. qa.sel({d}=scene.{d}))"
            )
    if all(d in qa.indexes and d in scene.indexes for d in spatial):
        for d in spatial:
            _check_same_axis(d, np.asarray(scene[d].values), np.asarray(qa[d].values))
        return
    mine, theirs = _recorded_transform(scene, spatial), _recorded_transform(qa, spatial)
    if mine is not None and theirs is not None and not theirs.almost_equals(mine, precision=1e-6):
        col, row = ~mine * (theirs.c, theirs.f)
        raise InvalidParameterError(
            f"qa's transform {tuple(theirs)[:6]} differs from the scene's {tuple(mine)[:6]} "
            f"(its origin lies {row:+.3g} rows, {col:+.3g} columns off): reproject or align it "
            "onto the scene's grid first, e.g. qa.rio.reproject_match(scene)"
        )


def _check_same_axis(dim: Hashable, mine: np.ndarray, theirs: np.ndarray) -> None:
    """Equal pixel-centre coordinates, within a millionth of a pixel."""
    numeric = np.issubdtype(mine.dtype, np.number) and np.issubdtype(theirs.dtype, np.number)
    if not numeric:
        if not np.array_equal(mine, theirs):
            raise InvalidParameterError(
                f"qa's {dim!r} coordinates differ from the scene's: reproject or align it onto "
                "the scene's grid first, e.g. qa.rio.reproject_match(scene)"
            )
        return
    step = float(np.abs(np.diff(mine)).min()) if mine.size > 1 else 1.0
    step = step or 1.0
    off = (theirs.astype(np.float64) - mine.astype(np.float64)) / step
    if np.abs(off).max(initial=0.0) > 1e-6:
        k = int(np.abs(off).argmax())
        raise InvalidParameterError(
            f"qa's {dim!r} coordinates are offset from the scene's by {off[0]:+.4g} pixels at "
            f"the first pixel (up to {off[k]:+.4g}; pixel size {step:g}): the QA must lie on "
            "the scene's grid exactly, as nothing is cropped or aligned. Reproject or align it "
            "first, e.g. qa.rio.reproject_match(scene)"
        )


def _recorded_transform(obj, spatial):
    """The affine transform ``obj`` records (from its coordinates, or
    rioxarray's ``GeoTransform``), or None for a plain array."""
    if all(d in obj.indexes for d in spatial):
        try:
            return scene_transform(obj, spatial)
        except InvalidParameterError:  # irregular coordinates: no one transform to compare
            return None
    try:
        import rioxarray  # noqa: F401  (registers .rio)

        if (
            obj.rio.grid_mapping in obj.coords
            and "GeoTransform" in obj.coords[obj.rio.grid_mapping].attrs
        ):
            return obj.rio.transform()
    except Exception as exc:  # rioxarray missing, or unreadable metadata
        log.debug("rioxarray gave no transform: %s", exc)
    return None
