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


def _aecrnet(**kw):
    from .aecrnet import AECRNet

    return AECRNet(**kw)


def _aodnet(**kw):
    from .aodnet import AODNet

    return AODNet(**kw)


def _iicl(**kw):
    from .iicl import build_iicl

    return build_iicl(**kw)


def _translator(kind):
    def builder(**kw):
        from .translator import TRANSLATOR_BUILDERS

        return TRANSLATOR_BUILDERS[kind](**kw)

    return builder


MODELS: dict[str, ModelEntry] = {
    "dcp": ModelEntry(_dcp, "He et al., CVPR'09 / TPAMI'11", False, "dark channel prior (no training)"),
    "aodnet": ModelEntry(_aodnet, "Li et al., ICCV'17", True, "AOD-Net, 1,761 parameters"),
    "aecrnet": ModelEntry(_aecrnet, "Wu et al., CVPR'21", True, "AECR-Net autoencoder (FA blocks, DFE, mixup)"),
    "cut": ModelEntry(_translator("cut"), "Park et al., ECCV'20", True, "CUT ResNet generator (hazy -> clear)"),
    "fastcut": ModelEntry(_translator("fastcut"), "Park et al., ECCV'20", True, "FastCUT ResNet generator"),
    "cyclegan": ModelEntry(_translator("cyclegan"), "Zhu et al., ICCV'17", True, "CycleGAN generator G_A (hazy -> clear)"),
    "iicl": ModelEntry(_iicl, "Xu et al., ICASSP'23 (reconstruction)", True, "IICL: PRM (ASM inversion) -> ARM backbone"),
}


def build(name: str, **kwargs):
    """Build a registered model by name; an unknown name lists the known ones."""
    try:
        entry = MODELS[name]
    except KeyError:
        raise KeyError(f"unknown model {name!r}; known: {', '.join(sorted(MODELS))}") from None
    return entry.build(**kwargs)
