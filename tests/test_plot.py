"""Figures, drawn headless."""

from __future__ import annotations

import pytest

from xflipnslide import InvalidParameterError

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
    ds = scene.to_dataset(name="image")
    assert not hasattr(ds.fns, "plot_rgb")  # name the variable instead
    from matplotlib.figure import Figure

    tiles = scene.fns.tile(128, edge="pad")
    figs = [scene.fns.plot_rgb(), scene.fns.plot_tiles(128), tiles.fns.plot_samples(n=2)]
    assert all(isinstance(f, Figure) for f in figs)
    with pytest.raises(InvalidParameterError, match="these are tiles"):
        tiles.fns.plot_tiles(128)
    with pytest.raises(InvalidParameterError, match="pick the variable"):
        xflipnslide_plot().plot_rgb(ds)
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
    titles = [ax.get_title() for ax in fig.axes]
    assert [t.split(": ")[1].split()[0] for t in titles] == [str(k) for k in range(8)]
    mask = tiles.isel(band=0)
    assert len(mask.fns.plot_samples(n=3).axes) == 4  # one row of 4, one left empty
    with pytest.raises(InvalidParameterError, match="output of tile"):
        scene.fns.plot_samples()
    matplotlib.pyplot.close("all")
