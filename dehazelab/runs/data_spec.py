"""The ``data`` part of a run spec: which images train and test a run (named sets or folder, layout,
scenes, haze levels, at most how many images), checked; the images are found by
:mod:`dehazelab.runs.build`."""

from __future__ import annotations

import dataclasses
import difflib
from collections.abc import Mapping
from typing import Any

from ..data.subsets import SOTS_TEST, SOTS_TRAIN
from .checks import _bool, _check_keys, _Ctx, _ids, _int, _show

__all__ = ["DATASETS", "DataSet", "UnpairedData", "DataSpec"]

DATA_KEYS = ("root", "train", "test", "cache")
SET_KEYS = ("name", "folder", "layout", "scenes", "levels", "max_images")
#: Named data sets: the choices of the notebooks (SOTS-indoor scene split of ``dehazelab.data.subsets``,
#: NH-HAZE test pairs, the offline synthetic set).
DATASETS: dict[str, dict[str, Any]] = {
    "sots-train": {"folder": "sots-indoor", "layout": "sots", "scenes": (f"{SOTS_TRAIN[0]}-{SOTS_TRAIN[1]}",),
                   "about": f"SOTS-indoor scenes {SOTS_TRAIN[0]}-{SOTS_TRAIN[1]}, all haze levels (notebooks 01-04)"},
    "sots-test": {"folder": "sots-indoor", "layout": "sots", "scenes": (f"{SOTS_TEST[0]}-{SOTS_TEST[1]}",),
                  "about": f"SOTS-indoor scenes {SOTS_TEST[0]}-{SOTS_TEST[1]}, all haze levels (the unseen test scenes)"},
    "nh-haze-test": {"folder": "nh-haze", "layout": "nh-haze", "scenes": None,
                     "about": "the NH-HAZE pairs of the data folder (51-53 in the shared copy)"},
    "synthetic-train": {"synthetic": "train", "about": "scikit-image photographs with synthetic haze, train scenes"},
    "synthetic-test": {"synthetic": "test", "about": "scikit-image photographs with synthetic haze, test scenes"},
}


@dataclasses.dataclass(frozen=True)
class DataSet:
    """A selection of images (see the module docstring); ``name`` alone = a :data:`DATASETS` entry."""

    name: str | None = None
    folder: str | None = None
    layout: str = "auto"
    scenes: tuple[str, ...] | None = None
    levels: tuple[str, ...] | None = None
    max_images: int = 0

    @property
    def synthetic(self) -> str | None:
        """``"train"`` / ``"test"`` for the synthetic sets, else ``None``."""
        return DATASETS[self.name].get("synthetic") if self.name in DATASETS else None

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "folder": self.folder, "layout": self.layout,
                "scenes": None if self.scenes is None else list(self.scenes),
                "levels": None if self.levels is None else list(self.levels), "max_images": self.max_images}


@dataclasses.dataclass(frozen=True)
class UnpairedData:
    """Unpaired training images: ``clear is None`` = the scene halves of ``hazy`` (notebook 02)."""

    hazy: DataSet
    clear: DataSet | None = None

    def to_dict(self) -> dict[str, Any]:
        if self.clear is None:
            return self.hazy.to_dict()
        return {"hazy": self.hazy.to_dict(), "clear": self.clear.to_dict()}


@dataclasses.dataclass(frozen=True)
class DataSpec:
    root: str | None
    train: DataSet | UnpairedData
    test: DataSet | None
    cache: bool = True

    def to_dict(self) -> dict[str, Any]:
        return {"root": self.root, "train": self.train.to_dict(),
                "test": None if self.test is None else self.test.to_dict(), "cache": self.cache}


def _data_set(ctx: _Ctx, key: str, v: Any) -> DataSet:
    from ..data.layouts import LAYOUTS

    if isinstance(v, str):
        v = {"name": v}
    if not isinstance(v, Mapping):
        raise ctx.err(key, f"must be a data set name ({', '.join(DATASETS)}) or a mapping with keys "
                           f"{', '.join(SET_KEYS)}; got {_show(v)}")
    _check_keys(ctx, key, v, SET_KEYS)
    name = v.get("name")
    base: dict[str, Any] = {}
    if name is not None:
        if name not in DATASETS:
            hint = difflib.get_close_matches(str(name), list(DATASETS), 1)
            raise ctx.err(f"{key}.name", f"unknown data set {name!r}; {'did you mean ' + repr(hint[0]) + '? ' if hint else ''}"
                                         f"known: {', '.join(DATASETS)}")
        base = {k: val for k, val in DATASETS[name].items() if k in SET_KEYS}
        if DATASETS[name].get("synthetic"):
            for k, unset in (("folder", None), ("layout", "auto")):  # a resolved spec writes the defaults
                if v.get(k) not in (None, unset):
                    raise ctx.err(f"{key}.{k}", f"the synthetic set {name!r} is generated in memory; it has no {k}")
    merged = {**base, **{k: val for k, val in v.items() if k != "name"}}
    folder = merged.get("folder")
    if name is None and folder is None:
        raise ctx.err(key, f"needs a name ({', '.join(DATASETS)}) or a folder")
    if folder is not None and not isinstance(folder, str):
        raise ctx.err(f"{key}.folder", f"must be a path string, got {_show(folder)}")
    layout = merged.get("layout") or "auto"
    if layout != "auto" and layout not in LAYOUTS:
        raise ctx.err(f"{key}.layout", f"unknown layout {layout!r}; known: auto, {', '.join(LAYOUTS)}")
    scenes = _ids(ctx, f"{key}.scenes", merged.get("scenes"))
    levels = _ids(ctx, f"{key}.levels", merged.get("levels"))
    max_images = _int(ctx, f"{key}.max_images", merged.get("max_images", 0), 0)
    return DataSet(name, folder, layout, scenes, levels, max_images)


def _data(ctx: _Ctx, kind: str, d: Any) -> DataSpec:
    _check_keys(ctx, "data", d, DATA_KEYS, ("train",))
    root = d.get("root")
    if root is not None and not isinstance(root, str):
        raise ctx.err("data.root", f"must be a path string or null, got {_show(root)}")
    tr = d["train"]
    if kind == "unpaired" and isinstance(tr, Mapping) and ("hazy" in tr or "clear" in tr):
        _check_keys(ctx, "data.train", tr, ("hazy", "clear"), ("hazy", "clear"))
        train: DataSet | UnpairedData = UnpairedData(_data_set(ctx, "data.train.hazy", tr["hazy"]),
                                                     _data_set(ctx, "data.train.clear", tr["clear"]))
    elif kind == "unpaired":
        train = UnpairedData(_data_set(ctx, "data.train", tr))
    else:
        train = _data_set(ctx, "data.train", tr)
    test = None if d.get("test") is None else _data_set(ctx, "data.test", d["test"])
    return DataSpec(root, train, test, _bool(ctx, "data.cache", d.get("cache", True)))
