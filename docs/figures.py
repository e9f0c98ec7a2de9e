"""Draw the documentation's figures from the real sample scene (run by conf.py)."""

from __future__ import annotations

import os

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

import xflipnslide
from xflipnslide.plot import plot_rgb, plot_samples, plot_tiles

HERE = os.path.dirname(__file__)
OUT = os.path.join(HERE, "_figures")


def preprocess_figure(path: str) -> None:
    """Raw scene, the same with cloud-like gaps, gaps filled, standardised histogram."""
    scene = xflipnslide.open_image(xflipnslide.sample_scene_path(), chunks=None).load()
    masked = scene.where(scene != 0).astype("float32")
    # cloud-like gaps on top of the scene's own nodata corner
    rng = np.random.default_rng(3)
    yy, xx = np.ogrid[: scene.sizes["y"], : scene.sizes["x"]]
    clouds = np.zeros((scene.sizes["y"], scene.sizes["x"]), bool)
    for _ in range(12):
        cy, cx, r = rng.integers(0, 560), rng.integers(0, 600), rng.integers(8, 45)
        clouds |= (yy - cy) ** 2 + (xx - cx) ** 2 <= r * r
    cloudy = masked.where(~clouds)
    filled = cloudy.fns.preprocess(standardize=False)
    ready = cloudy.fns.preprocess()

    fig, axes = plt.subplots(1, 4, figsize=(17, 4.6))
    plot_rgb(scene.where(scene != 0), ax=axes[0], title="raw (zeros are nodata)")
    plot_rgb(cloudy, ax=axes[1], title=f"nodata + {clouds.mean():.0%} cloud gaps (NaN)")
    plot_rgb(filled, ax=axes[2], title="gaps filled: nearest valid pixel")
    for band, colour in zip(ready.band.values, ("tab:red", "tab:green", "tab:blue")):
        axes[3].hist(
            ready.sel(band=band).values.ravel(), bins=120, histtype="step", color=colour, label=band
        )
    axes[3].set_title("standardised bands (mean 0, std 1)")
    axes[3].set_xlim(-4, 6)
    axes[3].legend()
    for ax in axes[:3]:
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_facecolor("magenta")
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)


def demo_figures() -> None:
    """The figures `xflipnslide demo` saves, for the getting-started page."""
    scene = xflipnslide.open_image(xflipnslide.sample_scene_path(), chunks=None).load()
    masked = scene.where(scene != 0)
    ax = plot_tiles(masked, 128, "flipnslide")
    ax.figure.savefig(os.path.join(OUT, "tiles.png"), dpi=80, bbox_inches="tight")
    plt.close(ax.figure)
    tiles = scene.fns.preprocess(nodata=0).fns.tile(128)
    fig = plot_samples(tiles)
    fig.savefig(os.path.join(OUT, "samples.png"), dpi=70, bbox_inches="tight")
    plt.close(fig)


def main() -> None:
    os.makedirs(OUT, exist_ok=True)
    preprocess_figure(os.path.join(OUT, "preprocess.png"))
    demo_figures()


if __name__ == "__main__":
    main()
