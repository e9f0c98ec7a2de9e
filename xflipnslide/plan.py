"""The window plans: where every tile comes from, without touching pixels.

A :class:`TilePlan` lists, for a scene of a given shape, the origin (row, col)
of every tile window in the input's pixel coordinates, its D4 transform code
and the grid it belongs to. :func:`plan_tiles` builds it for ``tile``,
:func:`predict_plan` for ``predict``; ``untile``, the readers of tiles and
the figures use them, so the geometry lives in one place.

The geometry is the one ``docs/tiling.md`` gives (after the Flip-n-Slide
paper): ``T`` the tile size, ``s = T // 2`` the stride of the outer grid,
``q = T // 4`` the offset of the inner grid.
"""

from __future__ import annotations

import itertools
import numbers
from dataclasses import dataclass, replace
from typing import Literal

import numpy as np

from .errors import InvalidParameterError, SceneTooSmallError, check_positive_int

__all__ = [
    "EDGES",
    "STRATEGIES",
    "TRANSFORMS",
    "TilePlan",
    "apply_transform",
    "check_min_valid",
    "invert_code",
    "plan_tiles",
    "predict_plan",
]

Strategy = Literal["flipnslide", "overlap", "no_overlap"]
Edge = Literal["crop", "pad"]

STRATEGIES: tuple[str, ...] = ("flipnslide", "overlap", "no_overlap")
EDGES: tuple[str, ...] = ("crop", "pad")

#: Transform code -> name, in the numbering of the original package's
#: ``permute_idx`` (the table in ``docs/tiling.md``).
TRANSFORMS: tuple[str, ...] = (
    "identity",
    "rot270",
    "rot180",
    "rot90",
    "flip_x",
    "flip_y",
    "antitranspose",
    "transpose",
)

# Codes of the outer grid by (row parity, column parity), and of the inner grid.
_OUTER_CODES = np.array([[0, 3], [2, 1]], dtype=np.int8)
_INNER_CODES = np.array([[4, 5], [7, 6]], dtype=np.int8)
# Multiple the tile size must be of, and the minimum tiled extent in tiles.
_TILE_MULTIPLE = {"flipnslide": 4, "overlap": 2, "no_overlap": 1}
_MIN_TILES = {"flipnslide": 2, "overlap": 2, "no_overlap": 1}


@dataclass(frozen=True, eq=False)
class TilePlan:
    """Every tile window of a scene: origins, transform codes and grids.

    Attributes
    ----------
    shape
        ``(H, W)``: rows and columns of the input scene.
    tile_size
        ``T``: the side of every (square) tile.
    strategy, edge
        As given to :func:`plan_tiles`.
    offset
        ``(oy, ox)``: input pixel of the tiled area's top-left corner; negative
        with ``edge="pad"``.
    extent
        ``(Hc, Wc)``: size of the tiled area, a multiple of ``T`` on each axis.
    rows, cols
        ``int64`` arrays: the window origins in input pixels, one per tile.
    codes
        ``int8`` array: the D4 transform code of each tile (:data:`TRANSFORMS`).
    grids
        String array: ``"outer"``, ``"inner"`` (flipnslide) or ``"regular"``.

    Examples
    --------
    >>> from xflipnslide import plan_tiles
    >>> plan = plan_tiles((512, 512), 256, "flipnslide")
    >>> len(plan), plan.extent, plan.stride
    (13, (512, 512), 128)
    >>> plan.grids[[0, 9]], plan.codes[[0, 9]]
    (array(['outer', 'inner'], dtype='<U7'), array([0, 4], dtype=int8))
    """

    shape: tuple[int, int]
    tile_size: int
    strategy: str
    edge: str
    offset: tuple[int, int]
    extent: tuple[int, int]
    rows: np.ndarray
    cols: np.ndarray
    codes: np.ndarray
    grids: np.ndarray
    stride: int = 0

    def __len__(self) -> int:
        return int(self.rows.size)

    def __dask_tokenize__(self) -> tuple:
        """Everything that decides the tiles (dask's token for graph names): two
        plans that select different windows or codes never share a name."""
        return (
            "xflipnslide.TilePlan",
            self.shape,
            self.tile_size,
            self.strategy,
            self.edge,
            self.offset,
            self.extent,
            self.stride,
            self.rows,
            self.cols,
            self.codes,
            self.grids,
        )

    @property
    def pad(self) -> tuple[tuple[int, int], tuple[int, int]]:
        """Reflect padding ``((top, bottom), (left, right))`` the windows reach into."""
        (h, w), (oy, ox), (hc, wc) = self.shape, self.offset, self.extent
        return (
            (max(-oy, 0), max(oy + hc - h, 0)),
            (max(-ox, 0), max(ox + wc - w, 0)),
        )

    def select(self, keep: np.ndarray | slice) -> TilePlan:
        """The plan of the windows where ``keep`` (a boolean mask, or a
        slice) selects, in the same order with the same codes."""
        if not isinstance(keep, slice):
            keep = np.asarray(keep, dtype=bool)
        return replace(
            self,
            rows=self.rows[keep],
            cols=self.cols[keep],
            codes=self.codes[keep],
            grids=self.grids[keep],
        )

    def source_ranges(self) -> tuple[np.ndarray, np.ndarray]:
        """Input pixels each window reads, reflect padding included:
        ``(n, 2)`` arrays of ``[start, stop)`` rows and columns."""
        return (
            read_ranges(self.rows, self.tile_size, self.shape[0]),
            read_ranges(self.cols, self.tile_size, self.shape[1]),
        )

    def counts(self) -> dict[str, int]:
        """Number of tiles per transform name (only codes that occur)."""
        values, counts = np.unique(self.codes, return_counts=True)
        return {TRANSFORMS[v]: int(c) for v, c in zip(values, counts, strict=False)}

    def runs(self, start: int = 0, stop: int | None = None) -> list[tuple[int, int]]:
        """Split tiles ``start:stop`` into runs that share one window row and grid.

        Tiles of one run lie side by side on one row of one grid, so the input
        they read is a strip ``T`` rows high; the array layer reads one strip
        per run, which bounds its memory whatever the scene's width.
        """
        stop = len(self) if stop is None else stop
        if stop <= start:
            return []
        rows, grids = self.rows[start:stop], self.grids[start:stop]
        breaks = np.flatnonzero((rows[1:] != rows[:-1]) | (grids[1:] != grids[:-1])) + 1
        edges = [0, *breaks.tolist(), stop - start]
        return [(start + a, start + b) for a, b in itertools.pairwise(edges)]


def read_range(lo: int, hi: int, size: int) -> tuple[int, int]:
    """Input pixels ``[a, b)`` to read so that reflect-padding them gives ``[lo, hi)``.

    Reflection about the scene's edge reaches as far inside as the padding
    is wide, which may be further than the window itself.
    """
    a, b = max(lo, 0), min(hi, size)
    if lo < 0:
        b = max(b, min(size, -lo + 1))
    if hi > size:
        a = min(a, max(0, size - 1 - (hi - size)))
    return a, b


def read_ranges(origins: np.ndarray, tile_size: int, size: int) -> np.ndarray:
    """:func:`read_range` of every window ``[o, o + tile_size)``: ``(n, 2)`` int64."""
    out = np.array(
        [read_range(int(o), int(o) + tile_size, size) for o in np.asarray(origins).tolist()],
        dtype=np.int64,
    )
    return out.reshape(-1, 2)


def _check_tile_size(tile_size: int, strategy: str) -> int:
    if isinstance(tile_size, bool) or not isinstance(tile_size, (int, np.integer)):
        raise InvalidParameterError(
            f"tile_size must be a positive integer number of pixels; got {tile_size!r}"
        )
    tile_size = int(tile_size)
    multiple = _TILE_MULTIPLE[strategy]
    if tile_size <= 0 or tile_size % multiple:
        what = "a positive integer" if multiple == 1 else f"a positive multiple of {multiple}"
        raise InvalidParameterError(
            f"tile_size must be {what} for strategy={strategy!r}; got {tile_size}"
        )
    return tile_size


def _min_scene(tile_size: int, strategy: str, edge: str) -> int:
    need = _MIN_TILES[strategy] * tile_size
    # With padding any scene that pads up to `need` is enough.
    return need if edge == "crop" else need - tile_size + 1


def _axis_extent(size: int, tile_size: int, edge: str) -> tuple[int, int]:
    """(offset, extent) of the tiled area along one axis."""
    if edge == "crop":
        extent = (size // tile_size) * tile_size
        return (size - extent) // 2, extent
    extent = -(-size // tile_size) * tile_size
    return -((extent - size) // 2), extent


def _grid(extent: int, tile_size: int, step: int, start: int = 0) -> np.ndarray:
    """Origins ``start + i*step`` of windows that fit in ``[0, extent - start)``."""
    return np.arange(start, extent - start - tile_size + 1, step, dtype=np.int64)


def plan_tiles(
    shape: tuple[int, int],
    tile_size: int = 256,
    strategy: Strategy = "flipnslide",
    *,
    edge: Edge = "crop",
    stride: int | None = None,
) -> TilePlan:
    """Plan the tile windows of a scene without reading any pixel.

    Parameters
    ----------
    shape
        ``(H, W)``: rows and columns of the scene.
    tile_size
        Side ``T`` of the square tiles, in pixels. A multiple of 4 for
        ``"flipnslide"`` and of 2 for ``"overlap"``.
    strategy
        ``"flipnslide"`` (50 % overlapping outer grid plus a quarter-tile
        offset inner grid, each tile with its own D4 transform),
        ``"overlap"`` (50 % overlap, no transform) or ``"no_overlap"``.
    edge
        ``"crop"`` centre-crops to the largest multiple of ``T``;
        ``"pad"`` reflect-pads symmetrically to the next multiple of ``T`` so
        no pixel is lost (origins may then be negative).
    stride
        ``"overlap"`` only: the step between windows, a divisor of
        ``tile_size`` (default ``tile_size // 2``, 50 % overlap;
        ``tile_size // 4`` gives 75 %). The tiled area is the same as for
        the default, so windows at ``i * stride`` cover it exactly.

    Returns
    -------
    TilePlan
        Origins, transform codes and grids, in tile order.

    Raises
    ------
    InvalidParameterError
        For an unknown strategy or edge, or a tile size that does not fit the
        strategy.
    SceneTooSmallError
        If the scene is below the minimum size; the message names it.

    Examples
    --------
    >>> plan = plan_tiles((1024, 1024), 256, "flipnslide")
    >>> len(plan), plan.counts()["identity"]
    (85, 16)
    >>> plan.rows[:3], plan.cols[:3], plan.codes[:3]
    (array([0, 0, 0]), array([  0, 128, 256]), array([0, 3, 0], dtype=int8))
    """
    if strategy not in STRATEGIES:
        raise InvalidParameterError(
            f"strategy must be one of {', '.join(map(repr, STRATEGIES))}; got {strategy!r}"
        )
    if edge not in EDGES:
        raise InvalidParameterError(
            f"edge must be one of {', '.join(map(repr, EDGES))}; got {edge!r}"
        )
    tile_size = _check_tile_size(tile_size, strategy)
    step = _check_stride(stride, tile_size, strategy)
    if len(shape) != 2:
        raise InvalidParameterError(f"shape must be (rows, columns); got {shape!r}")
    h, w = (int(n) for n in shape)
    need = _min_scene(tile_size, strategy, edge)
    if h < need or w < need:
        hint = (
            " Use a smaller tile_size, edge='pad' or strategy='no_overlap'."
            if edge == "crop"
            else " Use a smaller tile_size."
        )
        raise SceneTooSmallError(
            f"a scene of {h} x {w} pixels is too small for strategy={strategy!r} "
            f"with tile_size={tile_size} and edge={edge!r}: it needs at least "
            f"{need} x {need} pixels.{hint}"
        )

    (oy, hc), (ox, wc) = _axis_extent(h, tile_size, edge), _axis_extent(w, tile_size, edge)
    T, s, q = tile_size, tile_size // 2, tile_size // 4
    parts: list[tuple[np.ndarray, np.ndarray, np.ndarray, str]] = []
    if strategy == "no_overlap":
        parts.append((_grid(hc, T, T), _grid(wc, T, T), np.zeros((2, 2), np.int8), "regular"))
    elif strategy == "overlap":
        parts.append((_grid(hc, T, step), _grid(wc, T, step), np.zeros((2, 2), np.int8), "regular"))
    else:
        parts.append((_grid(hc, T, s), _grid(wc, T, s), _OUTER_CODES, "outer"))
        parts.append((_grid(hc, T, s, q), _grid(wc, T, s, q), _INNER_CODES, "inner"))

    rows, cols, codes, grids = [], [], [], []
    for ry, rx, table, grid in parts:
        iy, ix = np.meshgrid(np.arange(ry.size), np.arange(rx.size), indexing="ij")
        rows.append(oy + ry[iy.ravel()])
        cols.append(ox + rx[ix.ravel()])
        codes.append(table[iy.ravel() % 2, ix.ravel() % 2])
        grids.append(np.full(iy.size, grid, dtype="<U7"))
    return TilePlan(
        shape=(h, w),
        tile_size=T,
        strategy=strategy,
        edge=edge,
        offset=(oy, ox),
        extent=(hc, wc),
        rows=np.concatenate(rows),
        cols=np.concatenate(cols),
        codes=np.concatenate(codes).astype(np.int8),
        grids=np.concatenate(grids),
        stride=step,
    )


def _check_stride(stride, tile_size: int, strategy: str) -> int:
    default = tile_size if strategy == "no_overlap" else tile_size // 2
    if stride is None:
        return default
    if strategy != "overlap":
        raise InvalidParameterError(
            f"stride= is for strategy='overlap' only (strategy={strategy!r} has a fixed "
            f"stride of {default}); drop it or use strategy='overlap'"
        )
    if (
        isinstance(stride, bool)
        or not isinstance(stride, (int, np.integer))
        or stride <= 0
        or tile_size % stride
    ):
        raise InvalidParameterError(
            f"stride must be a positive divisor of tile_size={tile_size} (e.g. "
            f"{tile_size // 2} for 50 % overlap, {tile_size // 4} for 75 %); got {stride!r}"
        )
    return int(stride)


def apply_transform(a: np.ndarray, code: int) -> np.ndarray:
    """Apply D4 transform ``code`` to the last two axes of ``a`` (a view).

    This is the definition of the codes (the table in ``docs/tiling.md``),
    written with numpy; the numba kernels implement the same mapping in one
    pass.

    Examples
    --------
    >>> import numpy as np
    >>> from xflipnslide import apply_transform
    >>> a = np.array([[0, 1], [2, 3]])
    >>> apply_transform(a, 3)  # rot90: a quarter turn counter-clockwise
    array([[1, 3],
           [0, 2]])
    >>> apply_transform(a, 4)  # flip_x: columns reversed
    array([[1, 0],
           [3, 2]])
    """
    code = int(code)
    if code == 0:
        return a
    if 1 <= code <= 3:
        return np.rot90(a, 4 - code, axes=(-2, -1))
    if code == 4:
        return a[..., :, ::-1]
    if code == 5:
        return a[..., ::-1, :]
    if code == 6:
        return np.rot90(a, 1, axes=(-2, -1))[..., :, ::-1]
    if code == 7:
        return np.rot90(a, 1, axes=(-2, -1))[..., ::-1, :]
    raise InvalidParameterError(f"transform codes run from 0 to 7; got {code}")


#: The code that undoes each code (rotations by 90 and 270 swap; the rest are
#: their own inverse).
INVERSE_CODES = np.array([0, 3, 2, 1, 4, 5, 6, 7], dtype=np.int8)


def invert_code(code: int | np.ndarray) -> int | np.ndarray:
    """The transform code that undoes ``code``."""
    return INVERSE_CODES[code]


def check_min_valid(min_valid) -> float | None:
    """``min_valid`` as a float, or an :class:`InvalidParameterError`: the
    one rule for ``tile`` and ``predict``."""
    if min_valid is None:
        return None
    if (
        isinstance(min_valid, bool)
        or not isinstance(min_valid, numbers.Real)
        or not 0 <= min_valid <= 1
    ):
        raise InvalidParameterError(
            "min_valid must be in [0, 1], a number: the share of observed pixels a window "
            f"needs (e.g. min_valid=0.9), or None; got {min_valid!r}"
        )
    return float(min_valid)


def _predict_origins(size: int, tile_size: int, stride: int) -> np.ndarray:
    """Window origins along one axis of ``size`` pixels (see :func:`predict_plan`)."""
    ring = 2 if stride <= tile_size - 2 else 0  # inner parts (T - 2 long) must span the axis
    n = 1 + max(0, -(-(size - tile_size + ring) // stride))
    excess = (n - 1) * stride + tile_size - size
    return -(excess // 2) + stride * np.arange(n, dtype=np.int64)


def predict_plan(
    shape: tuple[int, int], tile_size: int, stride: int | None = None, tta: str | None = None
) -> TilePlan:
    """The windows (and views) ``predict`` runs the model on.

    Step ``stride`` (default ``T // 2``); per axis of ``size`` px, the fewest
    windows keeping every pixel off a window's outermost ring (where zero
    padding biases a model most), ``n = 1 + ceil((size - T + 2) / stride)``,
    centred: ``((n - 1) * stride + T - size) / 2`` px (down before, up after)
    of reflect padding, at most ``stride / 2 + 1`` if ``size >= T - 2``. With
    ``stride > T - 2`` windows abut: ``n = 1 + ceil((size - T) / stride)``
    covers. ``tta="d4"``: each window eight times in a row, codes 0..7.

    Examples
    --------
    >>> plan = predict_plan((100, 120), 32, stride=16)
    >>> len(plan), int(plan.rows.min()), int(plan.cols.max())
    (42, -6, 92)
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
    origins = []
    for size in shape:
        o = _predict_origins(int(size), T, s)
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
