"""Figures, drawn headless."""

from __future__ import annotations

import itertools
import os

import numpy as np
import pytest
import xarray as xr
from oracle import TRANSFORM, windows

import xflipnslide
from xflipnslide import InvalidParameterError

DATA = os.path.join(os.path.dirname(__file__), "data", "landsat8")

matplotlib = pytest.importorskip("matplotlib")
matplotlib.use("Agg")


def test_plot_rgb_real_scene(scene, tmp_path):
    fig = scene.where(scene != 0).fns.plot_rgb()
    ax = fig.axes[0]
    image = ax.get_images()[0].get_array()
    assert image.shape == (560, 600, 4)
    assert image[..., 3].min() == 0.0  # nodata is transparent
    assert image[..., :3].min() >= 0.0 and image[..., :3].max() <= 1.0
    x0, _, _, y1 = ax.get_images()[0].get_extent()
    assert x0 == pytest.approx(float(scene.x[0]) - 15) and y1 == pytest.approx(
        float(scene.y[0]) + 15
    )
    assert "EPSG:32621" in ax.get_xlabel() and "metre" in ax.get_xlabel()
    assert all("e" not in t.get_text() for t in ax.get_xticklabels())  # plain numbers
    fig.savefig(tmp_path / "rgb.png")
    matplotlib.pyplot.close("all")


def test_plot_rgb_picks_bands_by_name(scene):
    import warnings

    shuffled = scene.isel(band=[2, 0, 1])  # blue, red, green
    fig = shuffled.fns.plot_rgb()
    assert fig.axes[0].get_title() == "RGB: red, green, blue"
    landsat = scene.assign_coords(band=["B4", "B3", "B2"]).isel(band=[1, 2, 0])
    assert landsat.fns.plot_rgb().axes[0].get_title() == "RGB: B4, B3, B2"
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        unnamed = scene.assign_coords(band=["b1", "b2", "b3"])
        assert unnamed.fns.plot_rgb().axes[0].get_title() == "RGB: b1, b2, b3"
    matplotlib.pyplot.close("all")


def test_plots_return_figures_and_refuse_the_wrong_input(scene):
    from matplotlib.figure import Figure

    tiles = scene.fns.tile(128, edge="pad")
    figs = [
        scene.fns.plot_rgb(),
        scene.fns.plot_tiles(128),
        tiles.fns.plot_samples(n=2),
        tiles.fns.plot_footprints(),
    ]
    assert all(isinstance(f, Figure) for f in figs)
    with pytest.raises(InvalidParameterError, match=r"these are tiles.*plot_footprints"):
        tiles.fns.plot_tiles(128)
    other = scene.to_dataset(name="bands")
    with pytest.raises(InvalidParameterError, match=r"no variable 'image'.*\['bands'\].*variable="):
        xflipnslide_plot().plot_rgb(other)
    with pytest.raises(InvalidParameterError, match="drop variable="):
        scene.fns.plot_rgb(variable="image")
    matplotlib.pyplot.close("all")


def test_dataset_plots_draw_the_image_variable(scene):
    """The figures exist on the Dataset accessor and draw "image" (or variable=)."""
    ds = xr.Dataset({"image": scene, "other": scene[0] * 0})
    direct = scene.fns.plot_rgb().axes[0].get_images()[0].get_array()
    via_ds = ds.fns.plot_rgb().axes[0].get_images()[0].get_array()
    np.testing.assert_array_equal(via_ds, direct)
    renamed = ds.rename(image="scene")
    named = renamed.fns.plot_rgb(variable="scene").axes[0].get_images()[0].get_array()
    np.testing.assert_array_equal(named, direct)
    assert len(ds.fns.plot_tiles(128).axes[0].patches) == 85 + 1  # windows and the crop
    tiles = ds.fns.tile(128)
    fig = tiles.fns.plot_samples(n=1, variable="other")
    assert fig.axes[0].get_images()[0].get_array().shape == (128, 128)
    fig = tiles.fns.plot_footprints(scene=ds)
    assert len(fig.axes[0].collections[0].get_paths()) == 85
    matplotlib.pyplot.close("all")


def xflipnslide_plot():
    from xflipnslide import plot

    return plot


def test_saved_figure_keeps_the_legend_inside(scene, tmp_path):
    fig = scene.fns.plot_tiles(128, edge="pad")
    fig.savefig(tmp_path / "t.png")  # no bbox_inches: the layout must hold it
    fig.canvas.draw()
    legend = fig.legends[0].get_window_extent()
    box = fig.bbox
    assert legend.x0 >= box.x0 and legend.x1 <= box.x1 + 1
    assert legend.y0 >= box.y0 and legend.y1 <= box.y1 + 1
    matplotlib.pyplot.close("all")


def test_plot_rgb_errors(scene):
    with pytest.raises(InvalidParameterError, match="3 bands"):
        scene.fns.plot_rgb(bands=["red", "green"])
    with pytest.raises(InvalidParameterError, match="select or reduce"):
        scene.expand_dims(time=2).fns.plot_rgb()


def test_missing_matplotlib_names_the_extra(monkeypatch, scene):
    import builtins

    real = builtins.__import__

    def fake(name, *args, **kwargs):
        if name.startswith("matplotlib"):
            raise ImportError("no matplotlib")
        return real(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", fake)
    monkeypatch.delitem(__import__("sys").modules, "matplotlib", raising=False)
    monkeypatch.delitem(__import__("sys").modules, "matplotlib.pyplot", raising=False)
    with pytest.raises(ImportError, match=r'pip install "xflipnslide\[viz\]"'):
        scene.fns.plot_rgb()


def test_plot_tiles_draws_every_window(scene):
    import xflipnslide

    fig = scene.where(scene != 0).fns.plot_tiles(128)
    ax = fig.axes[0]
    plan = xflipnslide.plan_tiles((560, 600), 128)
    rects = ax.patches
    assert len(rects) == len(plan) + 1  # every window and the crop outline
    labels = [t.get_text() for t in fig.legends[0].get_texts()]
    assert labels[:8] == [f"{k} {name}" for k, name in enumerate(xflipnslide.TRANSFORMS)]
    # the crop outline: the centre 512 x 512 in map coordinates
    outline = rects[0]
    assert outline.get_width() == pytest.approx(512 * 30)
    matplotlib.pyplot.close("all")


def test_plot_samples_one_per_code(scene):
    tiles = scene.fns.preprocess(nodata=0).fns.tile(128)
    fig = tiles.fns.plot_samples(n=8)
    titles = [ax.get_title() for ax in fig.axes[::2]]  # each tile, then its window
    assert [t.split(": ")[1].split()[0] for t in titles] == [str(k) for k in range(8)]
    mask = tiles.isel(band=0)
    assert len(mask.fns.plot_samples(n=3).axes) == 6  # one row of 3 pairs
    fig = mask.fns.plot_samples(n=5, ground=False)
    assert len(fig.axes) == 8  # two rows of 4, the last 3 left empty
    assert [ax.axison for ax in fig.axes] == [True] * 5 + [False] * 3
    with pytest.raises(InvalidParameterError, match="output of tile"):
        scene.fns.plot_samples()
    matplotlib.pyplot.close("all")


# --- maps of tiles -----------------------------------------------------------


def _quiet_split(tiles, **kwargs):
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", xflipnslide.DataDroppedWarning)
        return tiles.fns.split(**kwargs)


def _corners(scene, rows, cols, T):
    """Oracle: each window's corners from the scene's own pixel-centre coordinates."""
    x0 = float(scene.x[0]) - 15.0  # left edge of the first column (30 m pixels)
    y0 = float(scene.y[0]) + 15.0  # top edge of the first row
    out = []
    for r, c in zip(rows, cols):
        left, right = x0 + 30.0 * c, x0 + 30.0 * (c + T)
        top, bottom = y0 - 30.0 * r, y0 - 30.0 * (r + T)
        out.append([(left, top), (right, top), (right, bottom), (left, bottom)])
    return np.array(out)


def _polygons(collection):
    return np.array([p.vertices[:4] for p in collection.get_paths()])


def test_plot_footprints_draws_real_tiles_where_they_lie(scene):
    """Tiles kept by min_valid (which plot_tiles refuses) as one collection,
    one polygon per tile, at the window the oracle plan gives."""
    masked = scene.where(scene != 0)
    tiles = masked.fns.preprocess().fns.tile(32, min_valid=0.9)
    assert 1000 < tiles.sizes["tile"] < 2243  # thousands, some dropped
    fig = tiles.fns.plot_footprints(scene=masked)
    ax = fig.axes[0]
    (collection,) = ax.collections
    assert len(collection.get_paths()) == tiles.sizes["tile"]
    kept = {
        (r, c, k) for r, c, k in zip(tiles.row.values, tiles.col.values, tiles.transform.values)
    }
    plan = [w for w in windows(560, 600, 32, "flipnslide") if w[:3] in kept]
    assert len(plan) == tiles.sizes["tile"]
    expected = _corners(scene, [w[0] for w in plan], [w[1] for w in plan], 32)
    np.testing.assert_allclose(_polygons(collection), expected)
    # colour by code, from the transform table
    edge = collection.get_edgecolor()[:, :3]
    want = np.array(
        [matplotlib.colors.to_rgb(xflipnslide.plot.TRANSFORM_COLORS[w[2]]) for w in plan]
    )
    np.testing.assert_allclose(edge, want)
    assert 0.3 <= collection.get_linewidth()[0] < 1  # thin at thousands of tiles
    # the scene underneath, on its own coordinates
    left, right, bottom, top = ax.get_images()[0].get_extent()
    assert (left, top) == pytest.approx((float(scene.x[0]) - 15, float(scene.y[0]) + 15))
    assert (right, bottom) == pytest.approx((float(scene.x[-1]) + 15, float(scene.y[-1]) - 15))
    assert "EPSG:32621" in ax.get_xlabel()
    matplotlib.pyplot.close("all")


def test_plot_footprints_colours_a_split_by_subset(scene):
    tiles = scene.fns.tile(32)
    parts = _quiet_split(tiles, seed=0)
    fig = xflipnslide.plot.plot_footprints(parts)
    (collection,) = fig.axes[0].collections
    sizes = [p.sizes["tile"] for p in parts.values()]
    assert len(collection.get_paths()) == sum(sizes)
    edge = collection.get_edgecolor()[:, :3]
    bounds = np.cumsum([0, *sizes])
    per_subset = [np.unique(edge[a:b], axis=0) for a, b in itertools.pairwise(bounds)]
    assert all(len(u) == 1 for u in per_subset)  # one colour per subset
    assert len({tuple(u[0]) for u in per_subset}) == 3  # and they differ
    labels = [t.get_text() for t in fig.legends[0].get_texts()]
    assert labels == [f"{n} ({k})" for n, k in zip(parts, sizes)] + ["scene (560 x 600 px)"]
    # the polygons of each subset are its own windows
    val = parts["val"]
    a, b = bounds[1], bounds[2]
    np.testing.assert_allclose(
        _polygons(collection)[a:b], _corners(scene, val.row.values, val.col.values, 32)
    )
    # one subset alone is named by its fns_split attr
    one = parts["test"].fns.plot_footprints(color_by="subset")
    assert fig.legends and one.legends[0].get_texts()[0].get_text() == f"test ({sizes[2]})"
    matplotlib.pyplot.close("all")


def test_plot_footprints_density_counts_tiles_per_pixel(scene):
    """Density view: exact per-pixel counts, against a numpy loop over windows."""
    tiles = _quiet_split(scene.fns.tile(64), seed=1)["train"]
    fig = tiles.fns.plot_footprints(kind="density")
    ax = fig.axes[0]
    (mesh,) = ax.collections
    counts = np.ma.filled(mesh.get_array(), 0).astype(int)
    xy = mesh.get_coordinates()  # (ny + 1, nx + 1, 2) cell corners, map units
    cols = np.rint((xy[0, :, 0] - (float(scene.x[0]) - 15)) / 30).astype(int)
    rows = np.rint(((float(scene.y[0]) + 15) - xy[:, 0, 1]) / 30).astype(int)
    per_pixel = np.repeat(np.repeat(counts, np.diff(rows), 0), np.diff(cols), 1)
    cover = np.zeros((560, 600), int)
    for r, c in zip(tiles.row.values, tiles.col.values):
        cover[r : r + 64, c : c + 64] += 1
    assert (rows[0], cols[0], rows[-1], cols[-1]) == (0, 0, 560, 600)
    np.testing.assert_array_equal(per_pixel, cover)
    # all tiles: every pixel 3T/4 inside the crop is in exactly 8 (SPEC 2.4)
    full = scene.fns.tile(64).fns.plot_footprints(kind="density").axes[0].collections[0]
    assert int(full.get_array().max()) == 8
    assert fig.axes[1].get_ylabel() == "tiles covering the pixel"  # the colour bar
    matplotlib.pyplot.close("all")


def test_plot_footprints_by_valid_fraction_and_grid(scene):
    tiles = scene.where(scene != 0).fns.preprocess().fns.tile(64)
    vf = tiles.valid_fraction.values
    assert vf.min() < 0.5  # the sample's nodata corner
    fig = tiles.fns.plot_footprints(color_by="valid_fraction")
    (collection,) = fig.axes[0].collections
    face = collection.get_facecolor()
    viridis = matplotlib.pyplot.get_cmap("viridis")
    order = np.argsort(-vf, kind="stable")  # emptiest drawn last, on top
    np.testing.assert_allclose(face[:, :3], viridis(vf[order])[:, :3])
    np.testing.assert_allclose(
        _polygons(collection)[-1],
        _corners(scene, [tiles.row.values[order[-1]]], [tiles.col.values[order[-1]]], 64)[0],
    )
    assert fig.axes[1].get_ylabel() == "valid_fraction"
    fig = tiles.fns.plot_footprints(color_by="grid")
    labels = [t.get_text() for t in fig.legends[0].get_texts()]
    n_outer = int((tiles.grid.values == "outer").sum())
    assert labels[:2] == [f"outer ({n_outer})", f"inner ({tiles.sizes['tile'] - n_outer})"]
    matplotlib.pyplot.close("all")


def test_plot_footprints_reads_no_pixels(scene, no_compute):
    tiles = scene.chunk({"y": 200, "x": 200}).fns.tile(64)
    fig = tiles.fns.plot_footprints(color_by="grid")
    assert len(fig.axes[0].collections[0].get_paths()) == tiles.sizes["tile"]
    tiles.fns.plot_footprints(kind="density")
    matplotlib.pyplot.close("all")


def test_plot_footprints_in_pixels_without_coordinates(scene):
    bare = xr.DataArray(scene.values, dims=("band", "y", "x"))
    tiles = bare.fns.tile(128, edge="pad")
    fig = tiles.fns.plot_footprints(scene=bare)
    ax = fig.axes[0]
    polys = _polygons(ax.collections[0])
    r, c = tiles.row.values, tiles.col.values
    np.testing.assert_array_equal(polys[:, 0], np.stack([c, r], axis=1))  # (col, row) corners
    np.testing.assert_array_equal(polys[:, 2], np.stack([c + 128, r + 128], axis=1))
    assert r.min() < 0  # padded windows reach outside the scene, drawn as they lie
    assert ax.get_ylim()[0] > ax.get_ylim()[1]  # row 0 at the top
    assert ax.get_images()[0].get_extent() == [0, 600, 560, 0]
    assert ax.get_xlabel() == "x (pixels)"
    matplotlib.pyplot.close("all")


def test_plot_footprints_refuses_what_it_cannot_draw(scene):
    from xflipnslide.plot import plot_footprints

    tiles = scene.fns.tile(64)
    with pytest.raises(InvalidParameterError, match=r"records another"):
        plot_footprints({"a": tiles, "b": scene.isel(x=slice(0, 500)).fns.tile(64)})
    with pytest.raises(InvalidParameterError, match="scene= is 560 x 500 px"):
        tiles.fns.plot_footprints(scene=scene.isel(x=slice(0, 500)))
    with pytest.raises(InvalidParameterError, match="lies elsewhere"):
        tiles.fns.plot_footprints(scene=scene.assign_coords(x=scene.x + 300))
    with pytest.raises(InvalidParameterError, match="color_by must be one of"):
        tiles.fns.plot_footprints(color_by="class")
    with pytest.raises(InvalidParameterError, match="drop color_by"):
        tiles.fns.plot_footprints(kind="density", color_by="code")
    with pytest.raises(InvalidParameterError, match="kind must be"):
        tiles.fns.plot_footprints(kind="filled")
    with pytest.raises(InvalidParameterError, match="'grid' coordinate"):
        tiles.drop_vars("grid").fns.plot_footprints(color_by="grid")
    with pytest.raises(InvalidParameterError, match="empty dict"):
        plot_footprints({})
    with pytest.raises(InvalidParameterError, match="takes tiles"):
        scene.fns.plot_footprints()
    matplotlib.pyplot.close("all")


def test_scene_under_footprints_picks_bands_by_the_rule_of_plot_rgb(scene):
    """scene= chooses and checks its red, green, blue as plot_rgb does, with
    the same message."""
    tiles = scene.fns.tile(128)
    for draw, what in (
        (lambda bands: scene.fns.plot_rgb(bands=bands), "plot_rgb"),
        (lambda bands: tiles.fns.plot_footprints(scene=scene, bands=bands), r"\(scene=\)"),
    ):
        with pytest.raises(InvalidParameterError, match=what + " needs 3 bands for red, green"):
            draw(["red", "green"])
    shuffled = scene.isel(band=[2, 0, 1])  # blue, red, green: drawn as red, green, blue
    ax = tiles.fns.plot_footprints(scene=shuffled).axes[0]
    direct = scene.fns.plot_rgb().axes[0].get_images()[0].get_array()
    np.testing.assert_array_equal(ax.get_images()[0].get_array(), direct)
    matplotlib.pyplot.close("all")


def test_importing_the_package_imports_no_matplotlib():
    import subprocess
    import sys

    code = (
        "import sys, xflipnslide, xflipnslide.plot; "
        "print(sorted(m for m in sys.modules if m.split('.')[0] == 'matplotlib'))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


# --- samples: labels and the window on the ground ------------------------------


@pytest.fixture
def labelled():
    """Real image and land-cover labels (polygons burned on the image grid)."""
    gpd = pytest.importorskip("geopandas")
    image = xflipnslide.open_image(
        os.path.join(DATA, "LC08_L1TP_224078_20200518_labels_area_RGB.tif"), chunks=None
    ).load()
    gdf = gpd.read_file(
        os.path.join(DATA, "LC08_L1TP_224078_20200518_20200518_01_RT_polygons.gpkg")
    )
    classes = {"water": 1, "crop": 2, "tree": 3, "developed": 4}
    label = xflipnslide.rasterize(gdf.assign(cls=gdf.name.map(classes)), like=image, column="cls")
    return xr.Dataset({"image": image, "label": label})


def test_plot_samples_of_labels_are_classes_with_a_legend(labelled):
    tiles = labelled.fns.tile(64)
    picks = [int(k) for k in np.flatnonzero(tiles.label.max(("y", "x")).values >= 3)[:6]]
    fig = tiles.isel(tile=picks).fns.plot_samples(variable="label", n=6)
    drawn = [labelled.label.values[r : r + 64, c : c + 64] for r, c in _origins(tiles, picks)]
    present = np.unique(np.concatenate([d.ravel() for d in drawn]))
    assert len(present) >= 3
    (legend,) = fig.legends
    assert [t.get_text() for t in legend.get_texts()] == [str(v) for v in present]
    colours = [tuple(h.get_facecolor()) for h in legend.legend_handles]
    assert len(set(colours)) == len(present)  # one colour per class, not black squares
    # each class value is drawn in its legend colour
    image = fig.axes[0].get_images()[0]
    for value, colour in zip(present, colours):
        rgba = image.cmap(image.norm(value))
        assert rgba == pytest.approx(colour)
    matplotlib.pyplot.close("all")


def _origins(tiles, picks):
    return [(int(tiles.row.values[k]), int(tiles.col.values[k])) for k in picks]


def test_plot_samples_shows_each_window_on_the_ground(labelled):
    """The panel beside each tile is the scene window itself (numpy slice),
    and the dot on the tile's first pixel marks where that pixel came from."""
    tiles = labelled.fns.tile(64)
    fig = tiles.fns.plot_samples(variable="label", n=8)
    codes = tiles.transform.values
    picks = [int(np.flatnonzero(codes == k)[0]) for k in range(8)]
    index = np.arange(64 * 64).reshape(64, 64)
    for slot, k in enumerate(picks):
        tile_ax, ground_ax = fig.axes[2 * slot], fig.axes[2 * slot + 1]
        r, c = _origins(tiles, [k])[0]
        window = labelled.label.values[r : r + 64, c : c + 64]
        np.testing.assert_array_equal(
            tile_ax.get_images()[0].get_array(), TRANSFORM[codes[k]](window)
        )
        np.testing.assert_array_equal(ground_ax.get_images()[0].get_array(), window)
        assert ground_ax.get_title() == f"ground: row {r}, col {c}"
        # the oracle: which window pixel the tile's pixel (0, 0) is
        src_row, src_col = divmod(int(TRANSFORM[codes[k]](index)[0, 0]), 64)
        (dot,) = ground_ax.get_lines()
        assert (dot.get_xdata()[0], dot.get_ydata()[0]) == pytest.approx((src_col, src_row))
        assert (tile_ax.get_lines()[0].get_xdata()[0], tile_ax.get_lines()[0].get_ydata()[0]) == (
            0,
            0,
        )
    # RGB image tiles: the tile panel is the ground panel under the tile's code
    fig = tiles.fns.plot_samples(n=8)
    for slot, k in enumerate(picks):
        shown = fig.axes[2 * slot].get_images()[0].get_array()
        ground = fig.axes[2 * slot + 1].get_images()[0].get_array()
        assert ground.shape == (64, 64, 3)
        as_tile = TRANSFORM[codes[k]](ground.transpose(2, 0, 1)).transpose(1, 2, 0)
        np.testing.assert_array_equal(as_tile, shown)
    matplotlib.pyplot.close("all")


def test_plot_samples_integer_images_stay_grey(scene):
    """Raw uint16 bands are not classes: grey, and no legend."""
    tiles = scene.isel(band=0).fns.tile(128)
    fig = tiles.fns.plot_samples(n=2)
    assert not fig.legends
    assert fig.axes[0].get_images()[0].get_cmap().name == "gray"
    fig = tiles.fns.plot_samples(n=2, categorical=True)
    assert fig.legends
    matplotlib.pyplot.close("all")


def test_docs_maps_figure_builds(tmp_path):
    """The docs page's figure, as the docs build draws it."""
    import importlib.util

    path = os.path.join(os.path.dirname(__file__), os.pardir, "docs", "figures.py")
    spec = importlib.util.spec_from_file_location("docs_figures", path)
    figures = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(figures)
    figures.maps_figures(str(tmp_path))
    names = ("maps_split", "maps_density", "maps_valid", "maps_samples")
    assert all((tmp_path / f"{n}.png").stat().st_size > 10_000 for n in names)


def test_plot_footprints_of_a_reopened_store(scene, tmp_path):
    """A store opened with plain xr.open_zarr draws the map of the tiles written."""
    tiles = _quiet_split(scene.fns.tile(64), seed=0)["val"]
    before = _polygons(tiles.fns.plot_footprints().axes[0].collections[0])
    xflipnslide.to_zarr(tiles, tmp_path / "val.zarr")
    reopened = xr.open_zarr(tmp_path / "val.zarr")
    fig = reopened.fns.plot_footprints(color_by="subset", scene=scene)
    np.testing.assert_allclose(_polygons(fig.axes[0].collections[0]), before)
    assert fig.legends[0].get_texts()[0].get_text() == f"val ({tiles.sizes['tile']})"
    matplotlib.pyplot.close("all")
