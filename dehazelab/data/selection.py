"""Which images a run uses: one place for the filters every notebook, run spec and test applies.

* :func:`filter_pairs` keeps given scenes and haze levels;
* :func:`spread` subsamples a list *evenly over its whole length* (``np.linspace`` positions), so a
  test split sorted by (scene, level) keeps every scene and every level — a stride with
  truncation (``pairs[::n // k][:k]``) would keep only the first scenes;
* :func:`scene_halves` splits paired training data for unpaired training: hazy images of the first
  half of the scenes, one clear image per scene of the second half, so no hazy image meets its own
  clear scene (CUT / FastCUT / CycleGAN / CDD-GAN notebooks and run specs).

The functions take and return the pair records of :mod:`dehazelab.data.layouts` (anything with
``scene`` and ``level`` attributes) and never touch the files.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any, TypeVar

import numpy as np

from .layouts import natural_key

T = TypeVar("T")

__all__ = ["filter_pairs", "spread", "scene_halves", "distinct_scenes"]


def filter_pairs(pairs: Sequence[T], scenes: Iterable[Any] | None = None,
                 levels: Iterable[Any] | None = None) -> list[T]:
    """The pairs whose scene is in ``scenes`` and whose haze level is in ``levels`` (``None``: any).

    Scenes and levels compare as strings (``1430`` matches scene ``"1430"``). A pair without a level
    (NH-HAZE, O-HAZE) is dropped when levels are given."""
    out = list(pairs)
    if scenes is not None:
        keep = {str(s) for s in scenes}
        out = [p for p in out if str(getattr(p, "scene", None)) in keep]
    if levels is not None:
        keep_l = {str(v) for v in levels}
        out = [p for p in out if getattr(p, "level", None) is not None and str(p.level) in keep_l]
    return out


def spread(items: Sequence[T], k: int) -> list[T]:
    """``k`` items evenly spread over ``items`` (first and last included); all when ``k`` is 0 or
    not smaller than ``len(items)``."""
    if k < 0:
        raise ValueError(f"k must be >= 0, got {k}")
    if k == 0 or k >= len(items):
        return list(items)
    idx = np.linspace(0, len(items) - 1, k).round().astype(int)
    return [items[i] for i in idx]


def scene_halves(pairs: Sequence[T]) -> tuple[list[T], list[T], list[str], list[str]]:
    """``(hazy, clear, hazy_scenes, clear_scenes)`` for unpaired training from paired data.

    Scenes are sorted naturally; the first half gives its hazy images (every level), the second
    half one clear image per scene (the first pair of the scene). Needs at least two scenes."""
    scenes = sorted({str(p.scene) for p in pairs}, key=natural_key)
    if len(scenes) < 2:
        raise ValueError(f"the unpaired split needs at least 2 scenes (hazy from the first half, clear from the "
                         f"second), got {len(scenes)}")
    hazy_scenes, clear_scenes = scenes[: len(scenes) // 2], scenes[len(scenes) // 2:]
    hs, cs = set(hazy_scenes), set(clear_scenes)
    hazy = [p for p in pairs if str(p.scene) in hs]
    clear = list({str(p.scene): p for p in pairs if str(p.scene) in cs}.values())
    return hazy, clear, hazy_scenes, clear_scenes


def distinct_scenes(pairs: Sequence[T], k: int) -> list[int]:
    """Indices of ``k`` pairs of *different* scenes for a qualitative figure: the scenes are spread
    evenly over the sorted scene list, and the haze level taken from each scene cycles through the
    levels present (so the rows show both light and dense haze). Fewer than ``k`` when there are fewer
    scenes. Items without a ``scene`` attribute count as scenes of their own."""
    if k <= 0:
        return []
    by_scene: dict[str, list[int]] = {}
    for i, p in enumerate(pairs):
        by_scene.setdefault(str(getattr(p, "scene", i)), []).append(i)
    chosen = spread(list(by_scene), k)
    out = []
    for j, scene in enumerate(chosen):
        idx = by_scene[scene]
        out.append(idx[j % len(idx)])
    return out
