"""The ``demo`` command: the built-in sample scene preprocessed and tiled with
every strategy, written to Zarr, with a table and figures."""

from __future__ import annotations

import importlib.util
import logging
import os
import time

from ..errors import prefixed_warnings
from ..export.atomic import OutputKind, write_file
from ..io import open_image, sample_scene_path
from ..plan import STRATEGIES, TRANSFORMS
from ..preprocess import preprocess
from ..schema import IMAGE, TILE_DIM, TRANSFORM, VALID_FRACTION
from ..tiling import tile
from .scenes import OPTION, check_out, write_tiles

__all__ = ["FIGURES", "FIGURE_SOFTWARE", "demo"]

log = logging.getLogger("xflipnslide")

#: The figures ``demo`` saves, and the PNG text it writes into them (it only
#: replaces PNGs that carry it).
FIGURES, FIGURE_SOFTWARE = ("scene.png", "tiles.png", "samples.png"), "xflipnslide demo"


def demo(args) -> int:
    os.makedirs(args.out, exist_ok=True)
    stores = {strategy: os.path.join(args.out, f"{strategy}.zarr") for strategy in STRATEGIES}
    for path in stores.values():  # replaced only when ours, checked before any work
        check_out(path, True)
    if importlib.util.find_spec("matplotlib") is not None:
        for name in FIGURES:
            check_out(os.path.join(args.out, name), True, DEMO_FIGURE)
    scene = open_image(sample_scene_path()).load()
    print(
        f"sample scene: Landsat 8, bands {', '.join(map(str, scene.band.values))}, "
        f"{scene.sizes['y']} x {scene.sizes['x']} px, {scene.dtype}, {scene.rio.crs}; "
        f"{int((scene == 0).any('band').sum())} nodata pixels (zeros)"
    )
    start = time.perf_counter()
    ready = preprocess(scene, nodata=0)
    seconds = time.perf_counter() - start
    print(f"preprocessed (nodata masked, gaps filled, bands standardised) in {seconds:.2f} s")
    header = f"{'strategy':<12}{'tiles':>7}{'MiB':>8}{'seconds':>9}  tiles per transform code"
    print(header)
    print("-" * len(header))
    flipnslide = None
    for strategy in STRATEGIES:
        start = time.perf_counter()
        with prefixed_warnings(f"strategy={strategy!r}"):  # their crops read the same
            tiles = tile(ready, args.tile_size, strategy)
        write_tiles(tiles.rename(IMAGE), stores[strategy], overwrite=True)
        seconds = time.perf_counter() - start
        codes = tiles[TRANSFORM].values
        per_code = "  ".join(f"{c}:{int((codes == c).sum())}" for c in sorted(set(codes.tolist())))
        size = tiles.nbytes / 2**20
        print(f"{strategy:<12}{tiles.sizes[TILE_DIM]:>7}{size:>8.1f}{seconds:>9.2f}  {per_code}")
        flipnslide = tiles if strategy == "flipnslide" else flipnslide
    print("codes: " + ", ".join(f"{k} {name}" for k, name in enumerate(TRANSFORMS)))
    valid = flipnslide[VALID_FRACTION].values
    print(
        f"flipnslide tiles more than half gap-filled: {int((valid < 0.5).sum())}; "
        f"min_valid=0.9 keeps {int((valid >= 0.9).sum())} of {valid.size}"
    )
    figures = _figures(scene, flipnslide, args.out, args.tile_size)
    names = "{" + ",".join(STRATEGIES) + "}.zarr"
    print(f"tiles: {os.path.join(os.path.abspath(args.out), names)}")
    if figures:
        print(f"figures: {', '.join(figures)}")
    return 0


def _figures(scene, tiles, out: str, tile_size: int) -> list[str]:
    """Save the demo's figures; an empty list without matplotlib."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        log.warning('figures skipped: install matplotlib (pip install "xflipnslide[viz]")')
        return []
    from ..plot import plot_rgb, plot_samples, plot_tiles

    masked = scene.where(scene != 0)
    figs = (
        plot_rgb(masked, title="sample scene (nodata transparent)"),
        plot_tiles(masked, tile_size, "flipnslide"),
        plot_samples(tiles),
    )
    paths = []
    for name, fig in zip(FIGURES, figs):
        path = os.path.join(out, name)
        with write_file(path, DEMO_FIGURE, overwrite=True, option=OPTION) as tmp:
            fig.savefig(tmp, format="png", dpi=90, metadata={"Software": FIGURE_SOFTWARE})
        plt.close(fig)
        paths.append(path)
    return paths


def _is_demo_figure(path: str) -> bool:
    """True for a PNG ``xflipnslide demo`` saved (its Software text)."""
    from PIL import Image

    with Image.open(path) as image:
        return image.format == "PNG" and image.text.get("Software") == FIGURE_SOFTWARE


#: Demo figures: ``demo`` replaces only these.
DEMO_FIGURE = OutputKind("a demo figure", _is_demo_figure)
