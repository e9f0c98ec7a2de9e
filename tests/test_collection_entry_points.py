"""The public entry points take collections: tile, untile(scene=), predict, footprints."""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr

import xflipnslide
from xflipnslide import InvalidTilesError


def _scene(rng, ny, nx, x0):
    data = rng.standard_normal((2, ny, nx)).astype("float32")
    coords = {
        "band": ["red", "nir"],
        "y": 3000.0 - 30.0 * np.arange(ny),
        "x": x0 + 30.0 * np.arange(nx),
    }
    return xr.DataArray(data, dims=("band", "y", "x"), coords=coords)


@pytest.fixture
def scenes():
    rng = np.random.default_rng(7)
    return {"east": _scene(rng, 128, 160, 9000.0), "west": _scene(rng, 96, 128, 0.0)}


def test_tile_of_a_mapping_is_the_collection_with_every_tile_from_its_own_scene(scenes):
    tiles = xflipnslide.tile(scenes, 32, edge="pad")
    ids = tiles["scene"].values
    assert set(ids) == {"east", "west"}
    for k in range(0, tiles.sizes["tile"], 7):
        src = scenes[str(ids[k])].values
        r, c, code = (int(tiles[n][k]) for n in ("row", "col", "transform"))
        padded = np.pad(src, ((0, 0), (32, 32), (32, 32)), mode="reflect")
        window = padded[:, r + 32 : r + 64, c + 32 : c + 64]
        expected = xflipnslide.apply_transform(window, code)
        np.testing.assert_array_equal(tiles.values[k], expected)


def test_untile_takes_a_scene_and_refuses_a_collection_without_one(scenes):
    tiles = xflipnslide.tile(scenes, 32, edge="pad")
    for name, scene in scenes.items():
        back = tiles.fns.untile(scene=name)
        np.testing.assert_allclose(back.values, scene.values, rtol=0, atol=1e-6)
        np.testing.assert_array_equal(back["x"].values, scene["x"].values)
    with pytest.raises(InvalidTilesError, match="'east', 'west'"):
        tiles.fns.untile()


def test_predict_of_a_mapping_gives_a_map_per_scene(scenes):
    maps = xflipnslide.predict(scenes, lambda batch: batch, tile_size=32)
    assert set(maps) == set(scenes)
    for name, scene in scenes.items():
        np.testing.assert_allclose(maps[name].values, scene.values, atol=1e-5)
        np.testing.assert_array_equal(maps[name]["y"].values, scene["y"].values)


def test_footprints_on_the_accessor(scenes):
    pytest.importorskip("geopandas")
    tiles = xflipnslide.tile(scenes, 32)
    frame = tiles.fns.footprints()
    assert len(frame) == tiles.sizes["tile"]
    assert sorted(set(frame["scene"])) == ["east", "west"]


def test_split_on_the_accessor_takes_a_collection(scenes):
    tiles = xflipnslide.tile(scenes, 32, edge="pad")
    parts = tiles.fns.split(seed=0, by="scene", fractions={"train": 0.5, "test": 0.5})
    # two scenes far apart: one each, whole, nothing dropped
    assert sorted(str(p["scene"].values[0]) for p in parts.values()) == ["east", "west"]
    assert sum(p.sizes["tile"] for p in parts.values()) == tiles.sizes["tile"]


def test_a_shuffled_epoch_mixes_scenes_and_names_each_tiles_scene(scenes):
    pytest.importorskip("torch")
    tiles = xflipnslide.tile({k: v.chunk({"y": 32}) for k, v in scenes.items()}, 32)
    truth = tiles["scene"].values
    for epoch_seen in range(2):
        seen, mixed = [], 0
        loader = tiles.fns.torch_loader(16, shuffle=True, seed=epoch_seen, metadata=True)
        for _, meta in loader:
            index = meta["tile"].tolist()
            assert meta["scene"] == [str(truth[k]) for k in index]
            seen += index
            mixed += len(set(meta["scene"])) > 1
        assert sorted(seen) == list(range(tiles.sizes["tile"]))  # every tile once per epoch
        assert mixed > 0  # batches draw from both scenes


def test_a_reopened_collection_feeds_its_scene_ids(scenes, tmp_path):
    pytest.importorskip("torch")
    tiles = xflipnslide.tile(scenes, 32)
    xflipnslide.to_zarr(tiles, tmp_path / "tiles.zarr")
    back = xr.open_zarr(tmp_path / "tiles.zarr")  # text as zarr gives it back
    truth = [str(s) for s in tiles["scene"].values]
    got = {}
    for _, meta in back.fns.torch_loader(32, metadata=True):
        got.update(zip(meta["tile"].tolist(), meta["scene"]))
    assert [got[k] for k in range(len(truth))] == truth
