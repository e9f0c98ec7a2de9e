"""Collections: the tiles of many scenes in one tile set (``docs/collections.md``).

:mod:`.format` writes and reads the format (the ``scene`` coordinate, the
``fns_scenes`` record) and gives one scene back; :mod:`.combine` tiles
scenes and combines tile sets; :mod:`.footprints` draws where tiles lie.
"""

from __future__ import annotations

from .combine import concat_tiles, tile_collection, untile_collection
from .footprints import footprints
from .format import SCENE, SCENES, check_single_scene, is_collection, scene_ids, scene_tiles

__all__ = [
    "SCENE",
    "SCENES",
    "check_single_scene",
    "concat_tiles",
    "footprints",
    "is_collection",
    "scene_ids",
    "scene_tiles",
    "tile_collection",
    "untile_collection",
]
