"""Draw the documentation's figures from the real sample scene (run by conf.py)."""

from __future__ import annotations

import os
import warnings

import matplotlib

matplotlib.use("Agg")
import geopandas as gpd
import matplotlib.pyplot as plt
import numpy as np
import xarray as xr

import xflipnslide
from xflipnslide.plot import plot_footprints, plot_rgb, plot_samples, plot_tiles

HERE = os.path.dirname(__file__)
# The figures show the warnings' subjects (cropped edges, filled gaps); the
# build log does not need them.
warnings.simplefilter("ignore", xflipnslide.XFlipNSlideWarning)
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
    fig = plot_tiles(masked, 128, "flipnslide")
    fig.savefig(os.path.join(OUT, "tiles.png"), dpi=80)
    plt.close(fig)
    tiles = scene.fns.preprocess(nodata=0).fns.tile(128)
    fig = plot_samples(tiles)
    fig.savefig(os.path.join(OUT, "samples.png"), dpi=70, bbox_inches="tight")
    plt.close(fig)


def tutorial_figure(path: str) -> None:
    """Split map, labels, and a stitched prediction of a tiny per-pixel model."""
    data = os.path.join(HERE, os.pardir, "tests", "data", "landsat8")
    image = xflipnslide.open_image(
        os.path.join(
            HERE,
            os.pardir,
            "tests",
            "data",
            "landsat8",
            "LC08_L1TP_224078_20200518_labels_area_RGB.tif",
        ),
        chunks=None,
    ).load()
    ready = image.fns.preprocess()
    polygons = os.path.join(data, "LC08_L1TP_224078_20200518_20200518_01_RT_polygons.gpkg")
    classes = {"water": 1, "crop": 2, "tree": 3, "developed": 4}  # 0: unlabelled
    gdf = gpd.read_file(polygons)
    label = xflipnslide.rasterize(gdf.assign(cls=gdf.name.map(classes)), like=image, column="cls")
    ds = xr.Dataset({"image": ready, "label": label})
    tiles = ds.fns.tile(32)
    parts = tiles.fns.split(block_size=64, seed=0)
    # where each subset's tiles come from
    owner = np.full(image.shape[1:], np.nan)
    for k, part in enumerate(parts.values()):
        for r, c in zip(part.row.values, part.col.values):
            owner[r : r + 32, c : c + 32] = k
    # a tiny "model": nearest class centroid in colour, fitted on training tiles
    train = parts["train"]
    x, y = train.image.values.transpose(1, 0, 2, 3).reshape(3, -1), train.label.values.ravel()
    centroids = np.stack(
        [x[:, y == k].mean(axis=1) if (y == k).any() else np.full(3, 1e6) for k in range(5)]
    )
    feats = tiles.image.values  # predict every tile, all eight views
    dist = ((feats[:, None] - centroids[None, :, :, None, None]) ** 2).sum(axis=2)
    scores = tiles.image.isel(band=0, drop=True).expand_dims(cls=5, axis=1).copy(data=-dist)
    stitched = scores.fns.untile(blend="hann", like=image)
    pred = np.where(np.isnan(stitched.values).any(0), np.nan, stitched.values.argmax(0))

    fig, axes = plt.subplots(1, 4, figsize=(12, 6))
    plot_rgb(image, ax=axes[0], title="scene")
    axes[1].imshow(
        owner,
        cmap=matplotlib.colors.ListedColormap(["#4477aa", "#ccbb44", "#ee6677"]),
        interpolation="nearest",
    )
    axes[1].set_title("split: train / val / test")
    cmap = matplotlib.colors.ListedColormap(["#dddddd", "#4477aa", "#ccbb44", "#228833", "#aa3377"])
    axes[2].imshow(ds.label.values, cmap=cmap, vmin=0, vmax=4, interpolation="nearest")
    axes[2].set_title("labels (land cover)")
    axes[3].imshow(pred, cmap=cmap, vmin=0, vmax=4, interpolation="nearest")
    axes[3].set_title("stitched prediction")
    for ax in axes:
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_xlabel("")
        ax.set_ylabel("")
    fig.tight_layout()
    fig.savefig(path, dpi=70)
    plt.close(fig)


def labels_figure(path: str) -> None:
    """Scene with a cloud, the rasterised labels, and kept vs dropped windows."""
    from matplotlib.patches import Rectangle

    data = os.path.join(HERE, os.pardir, "tests", "data", "landsat8")
    image = xflipnslide.open_image(
        os.path.join(data, "LC08_L1TP_224078_20200518_labels_area_RGB.tif"), chunks=None
    ).load()
    cloudy = image.astype("float32").copy()
    cloudy[:, 300:420, 40:200] = np.nan  # a cloud the QA layer flagged
    polygons = gpd.read_file(
        os.path.join(data, "LC08_L1TP_224078_20200518_20200518_01_RT_polygons.gpkg")
    )
    classes = {"water": 1, "crop": 2, "tree": 3, "developed": 4}
    label = xflipnslide.rasterize(
        polygons.assign(cls=polygons.name.map(classes)), image, column="cls"
    )
    ds = xr.Dataset({"image": cloudy, "label": label}).fns.preprocess()
    tiles = ds.fns.tile(64, edge="pad")
    kept = tiles.valid_fraction.values >= 0.9

    fig, axes = plt.subplots(1, 3, figsize=(10, 6), layout="constrained")
    plot_rgb(cloudy, ax=axes[0], title="scene, a cloud masked (NaN)")
    cmap = matplotlib.colors.ListedColormap(["#dddddd", "#4477aa", "#ccbb44", "#228833", "#aa3377"])
    axes[1].imshow(label.values, cmap=cmap, vmin=0, vmax=4, interpolation="nearest")
    axes[1].set_title("rasterize(polygons, like=scene)")
    plot_rgb(ds.image, ax=axes[2], title=f"min_valid=0.9 keeps {kept.sum()} of {kept.size}")
    to_x = lambda c: float(image.x[0]) + 30 * (c - 0.5)  # noqa: E731
    to_y = lambda r: float(image.y[0]) - 30 * (r - 0.5)  # noqa: E731
    for r, c, k in zip(tiles.row.values, tiles.col.values, kept):
        axes[2].add_patch(
            Rectangle(
                (to_x(c), to_y(r + 64)),
                64 * 30,
                64 * 30,
                fill=False,
                ec="#228833" if k else "#ee3333",
                lw=0.6 if k else 1.2,
            )
        )
    for ax in axes:
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_xlabel("")
        ax.set_ylabel("")
    fig.savefig(path, dpi=70)
    plt.close(fig)


class EdgeBiased:
    """A model with edge bias: a 9 x 9 box filter with zero padding."""

    def __call__(self, batch):
        k = 4
        pad = np.pad(batch, ((0, 0), (0, 0), (k, k), (k, k)))
        out = np.zeros_like(batch)
        for dy in range(-k, k + 1):
            for dx in range(-k, k + 1):
                out += pad[:, :, k + dy : k + dy + batch.shape[2], k + dx : k + dx + batch.shape[3]]
        return out / (2 * k + 1) ** 2


def rmse(a, b, margin: int = 8) -> float:
    """RMSE away from the scene border (where the whole-scene run zero-pads)."""
    inner = (slice(margin, -margin), slice(margin, -margin))
    return float(np.sqrt(np.mean((a[inner] - b[inner]) ** 2)))


def inference_figure(path: str) -> None:
    """Seams of naive stitching vs blending, against the whole-scene answer."""
    scene = xflipnslide.open_image(xflipnslide.sample_scene_path(), chunks=None).load()
    ready = scene.fns.preprocess(nodata=0).isel(band=[0])
    model = EdgeBiased()
    whole = model(ready.values[None])[0, 0]
    naive = ready.fns.predict(model, tile_size=64, stride=64, blend="mean").values[0]
    hann = ready.fns.predict(model, tile_size=64, blend="hann").values[0]
    fig, axes = plt.subplots(1, 3, figsize=(12, 4.2), layout="constrained")
    vmax = np.abs(naive - whole)[10:-10, 10:-10].max()
    for ax, img, title in (
        (axes[0], whole, "model on the whole scene"),
        (
            axes[1],
            np.abs(naive - whole),
            f"|no overlap - whole|, RMSE {rmse(naive, whole):.3f}",
        ),
        (
            axes[2],
            np.abs(hann - whole),
            f"|predict(blend='hann') - whole|, RMSE {rmse(hann, whole):.3f}",
        ),
    ):
        im = ax.imshow(
            img,
            cmap="magma" if ax is not axes[0] else "gray",
            vmin=0 if ax is not axes[0] else None,
            vmax=vmax if ax is not axes[0] else None,
        )
        ax.set_title(title, fontsize="small")
        ax.set_xticks([])
        ax.set_yticks([])
    fig.colorbar(im, ax=axes[1:], shrink=0.8)
    fig.savefig(path, dpi=70)
    plt.close(fig)


def chips_figure(path: str) -> None:
    """Chips of all eight codes drawn by their own geotransforms over the scene."""
    import tempfile

    import rasterio

    from xflipnslide.plot import TRANSFORM_COLORS

    scene = xflipnslide.open_image(xflipnslide.sample_scene_path(), chunks=None).load()
    tiles = scene.fns.tile(128)
    picks = [int(np.flatnonzero(tiles.transform.values == k)[1]) for k in range(8)]
    fig, ax = plt.subplots(figsize=(7, 6.5), layout="constrained")
    plot_rgb(scene.where(scene != 0), ax=ax, title="chips drawn by their own geotransforms")
    grey = ax.get_images()[0]
    grey.set_alpha(0.35)
    with tempfile.TemporaryDirectory() as tmp:
        out = tiles.isel(tile=picks).fns.export_chips(os.path.join(tmp, "chips"))
        for name in sorted(os.listdir(os.path.join(out, "images"))):
            with rasterio.open(os.path.join(out, "images", name)) as f:
                data = f.read(1).astype(float)
                t, code = f.transform, int(f.tags()["fns_transform"])
            j, r = np.meshgrid(np.arange(129), np.arange(129))
            gx, gy = t.a * j + t.b * r + t.c, t.d * j + t.e * r + t.f
            lo, hi = np.percentile(data, (2, 98))
            ax.pcolormesh(
                gx, gy, np.clip((data - lo) / (hi - lo), 0, 1), cmap="gray", shading="flat"
            )
            ring = np.array([[0, 0], [128, 0], [128, 128], [0, 128], [0, 0]])
            ax.plot(
                t.a * ring[:, 0] + t.b * ring[:, 1] + t.c,
                t.d * ring[:, 0] + t.e * ring[:, 1] + t.f,
                color=TRANSFORM_COLORS[code],
                lw=2,
            )
            ax.plot(t.c, t.f, "o", color=TRANSFORM_COLORS[code], ms=6)  # the chip's pixel (0, 0)
    fig.savefig(path, dpi=70)
    plt.close(fig)


def _land_cover():
    """The labelled Landsat 8 crop: image and land-cover classes as a Dataset."""
    data = os.path.join(HERE, os.pardir, "tests", "data", "landsat8")
    image = xflipnslide.open_image(
        os.path.join(data, "LC08_L1TP_224078_20200518_labels_area_RGB.tif"), chunks=None
    ).load()
    polygons = gpd.read_file(
        os.path.join(data, "LC08_L1TP_224078_20200518_20200518_01_RT_polygons.gpkg")
    )
    classes = {"water": 1, "crop": 2, "tree": 3, "developed": 4}  # 0: unlabelled
    label = xflipnslide.rasterize(
        polygons.assign(cls=polygons.name.map(classes)), image, column="cls"
    )
    label.attrs.update(
        flag_values=[0, *classes.values()], flag_meanings="unlabelled " + " ".join(classes)
    )
    return xr.Dataset({"image": image, "label": label})


def maps_figures(out: str = OUT) -> None:
    """The maps page: a split of thousands of tiles, its density, valid
    fractions after a cloud, and label samples beside their windows."""
    scene = xflipnslide.open_image(xflipnslide.sample_scene_path(), chunks=None).load()
    masked = scene.where(scene != 0)
    tiles = masked.fns.preprocess().fns.tile(32)
    parts = tiles.fns.split(seed=0)
    fig = plot_footprints(parts, scene=masked)
    fig.savefig(os.path.join(out, "maps_split.png"), dpi=80)
    plt.close(fig)
    fig = parts["train"].fns.plot_footprints(kind="density")
    fig.savefig(os.path.join(out, "maps_density.png"), dpi=80)
    plt.close(fig)
    cloudy = masked.astype("float32").copy()
    cloudy[:, 250:380, 120:300] = np.nan  # a cloud the QA layer flagged
    kept = cloudy.fns.preprocess().fns.tile(64, min_valid=0.5)
    fig = kept.fns.plot_footprints(scene=cloudy, color_by="valid_fraction")
    fig.savefig(os.path.join(out, "maps_valid.png"), dpi=80)
    plt.close(fig)
    ds = _land_cover()
    tiles = ds.fns.tile(32)
    labelled = (tiles.label.max(("y", "x")) > 0).values  # the polygons are small
    codes = tiles.transform.values
    picks = [int(np.flatnonzero(labelled & (codes == k))[0]) for k in range(8)]
    fig = tiles.isel(tile=picks).fns.plot_samples(variable="label")
    fig.savefig(os.path.join(out, "maps_samples.png"), dpi=80)
    plt.close(fig)


def main() -> None:
    os.makedirs(OUT, exist_ok=True)
    inference_figure(os.path.join(OUT, "inference.png"))
    chips_figure(os.path.join(OUT, "chips.png"))
    labels_figure(os.path.join(OUT, "labels.png"))
    tutorial_figure(os.path.join(OUT, "tutorial.png"))
    preprocess_figure(os.path.join(OUT, "preprocess.png"))
    demo_figures()
    maps_figures()


if __name__ == "__main__":
    main()
