"""The model registry: one explicit dict from CLI name to a builder (no import-by-filename magic).

Every entry builds an ``nn.Module`` mapping a hazy batch Bx3xHxW in [0,1] to a dehazed batch in
[0,1] (models trained in another range are wrapped). Checkpoints record ``{"model": name,
"kwargs": {...}}`` so ``build(name, **kwargs)`` alone rebuilds a trained model.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable


@dataclass(frozen=True)
class ModelEntry:
    build: Callable[..., "object"]
    paper: str
    needs_weights: bool
    summary: str


def _dcp(**kw):
    from .dcp import DCP

    return DCP(**kw)


MODELS: dict[str, ModelEntry] = {
    "dcp": ModelEntry(_dcp, "He et al., CVPR'09 / TPAMI'11", False, "dark channel prior (no training)"),
}


def build(name: str, **kwargs):
    """Build a registered model by name; an unknown name lists the known ones."""
    try:
        entry = MODELS[name]
    except KeyError:
        raise KeyError(f"unknown model {name!r}; known: {', '.join(sorted(MODELS))}") from None
    return entry.build(**kwargs)
