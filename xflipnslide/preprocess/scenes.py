"""Many scenes in :func:`~xflipnslide.preprocess`: the scenes as given (one,
a mapping or a list) and what they must agree on to share one set of band
statistics (their band dims and labels; the rest, geometry included, may
differ)."""

from __future__ import annotations

from collections.abc import Callable, Hashable, Mapping, Sequence
from typing import Any

import xarray as xr

from ..errors import InvalidParameterError

__all__ = ["check_same_bands", "scene_items"]


def scene_items(obj) -> tuple[list, list, Callable[[list], Any]]:
    """``(scenes, keys, wrap)``: the scenes in order, their keys (``None``
    for a single scene) and the function that gives the results back in the
    caller's container (the result itself, a dict with the same keys, a list)."""
    if isinstance(obj, (xr.DataArray, xr.Dataset)):
        return [obj], [None], lambda outs: outs[0]
    if isinstance(obj, Mapping):
        keys, objs = list(obj), list(obj.values())

        def wrap(outs):
            return dict(zip(keys, outs))

    elif isinstance(obj, Sequence) and not isinstance(obj, (str, bytes)):
        keys, objs, wrap = list(range(len(obj))), list(obj), list
    else:
        raise InvalidParameterError(
            "preprocess takes a DataArray or Dataset, or scenes as a mapping {id: scene} or a "
            f"list of them; got {type(obj).__name__}"
        )
    if not objs:
        raise InvalidParameterError(
            "preprocess got no scene: pass {id: DataArray or Dataset, ...} or a list of them"
        )
    for key, scene in zip(keys, objs):
        if not isinstance(scene, (xr.DataArray, xr.Dataset)):
            raise InvalidParameterError(
                f"scene {key!r} is a {type(scene).__name__}; scenes are xarray DataArrays or "
                "Datasets"
            )
    for key, scene in zip(keys[1:], objs[1:]):
        if type(scene) is not type(objs[0]):
            raise InvalidParameterError(
                f"preprocess: scene {keys[0]!r} is a {type(objs[0]).__name__} and scene {key!r} "
                f"a {type(scene).__name__}: give every scene the same way (a Dataset's image "
                "variable is ds['image'], a DataArray becomes one with da.to_dataset(name=...))"
            )
    return objs, keys, wrap


def check_same_bands(
    variables: list[list[xr.DataArray]],
    keys: list,
    names: list[list[Hashable]],
    spatial: list[tuple[Hashable, Hashable]],
    time_dim: Hashable,
) -> None:
    """Refuse scenes whose variables to preprocess, band dims, their sizes or
    labels differ: one set of statistics describes the same bands. ``variables``:
    per scene, the variables to preprocess (``names``)."""
    fix = (
        "one set of statistics needs the same bands in every scene, in the same order: label "
        "them alike with .assign_coords(band=[...]) and order them with .sel(band=[...]) (or "
        "preprocess the scenes apart)"
    )
    first = keys[0]
    for key, own in zip(keys[1:], names[1:]):
        if own != names[0]:
            raise InvalidParameterError(
                f"preprocess: scenes {first!r} and {key!r} have different variables to "
                f"preprocess: {names[0]} vs {own}; name them with variables=[...]"
            )
    for j, name in enumerate(names[0]):
        what = f"variable {name!r}" if name is not None else "the data"
        ref = _bands(variables[0][j], spatial[0], time_dim)
        for key, scene, sp in zip(keys[1:], variables[1:], spatial[1:]):
            mine = _bands(scene[j], sp, time_dim)
            for item, value in ref.items():
                if mine.get(item) != value:
                    raise InvalidParameterError(
                        f"preprocess: scenes {first!r} and {key!r} differ in the {item} of "
                        f"{what}: {value!r} vs {mine.get(item)!r}; {fix}"
                    )


def _bands(var: xr.DataArray, spatial, time_dim) -> dict[str, Any]:
    """What the statistics of ``var`` run over: band dims, sizes and labels."""
    dims = [d for d in var.dims if d not in spatial and d != time_dim]
    out: dict[str, Any] = {"band dims": sorted(map(str, dims))}
    for d in sorted(dims, key=str):
        out[f"size of {d!r}"] = var.sizes[d]
        out[f"labels of {d!r}"] = var[d].values.tolist() if d in var.coords else None
    return out
