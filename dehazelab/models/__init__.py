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


def _iicl_with(backbone):
    """``iicl-<backbone>``: ``build_iicl`` with the backbone defaulted (and checked, if recorded)."""

    def builder(**kw):
        from .iicl import build_iicl

        given = kw.setdefault("backbone", backbone)
        if given != backbone:
            raise ValueError(f"model 'iicl-{backbone}' has backbone {backbone!r}, got backbone={given!r}")
        return build_iicl(**kw)

    return builder


def _translator(kind):
    def builder(**kw):
        from .translator import TRANSLATOR_BUILDERS

        return TRANSLATOR_BUILDERS[kind](**kw)

    return builder


def _cddgan(**kw):
    # CDD-GAN's dehazer is an anti-aliased ResNet generator (CUT's defaults); its checkpoints record
    # ngf, n_blocks, antialias and antialias_up explicitly (CDDGAN.model_spec)
    from .translator import cut_generator

    return cut_generator(**kw)


MODELS: dict[str, ModelEntry] = {
    "dcp": ModelEntry(_dcp, "He et al., CVPR'09 / TPAMI'11", False, "dark channel prior (no training)"),
    "aodnet": ModelEntry(_aodnet, "Li et al., ICCV'17", True, "AOD-Net, 1,761 parameters"),
    "aecrnet": ModelEntry(_aecrnet, "Wu et al., CVPR'21", True, "AECR-Net autoencoder (FA blocks, DFE, mixup)"),
    "cut": ModelEntry(_translator("cut"), "Park et al., ECCV'20", True, "CUT ResNet generator (hazy -> clear)"),
    "fastcut": ModelEntry(_translator("fastcut"), "Park et al., ECCV'20", True, "FastCUT ResNet generator"),
    "cyclegan": ModelEntry(_translator("cyclegan"), "Zhu et al., ICCV'17", True, "CycleGAN generator G_A (hazy -> clear)"),
    "cddgan": ModelEntry(_cddgan, "Chen et al., ECCV'22 (reconstruction)", True,
                         "CDD-GAN generator G_A (hazy -> clear; anti-aliased ResNet, CycleGAN backbone)"),
    "iicl": ModelEntry(_iicl, "Xu et al., ICASSP'23 (reconstruction)", True, "IICL: PRM (ASM inversion) -> ARM backbone"),
    "iicl-aecrnet": ModelEntry(_iicl_with("aecrnet"), "Xu et al., ICASSP'23 (reconstruction)", True,
                               "IICL with the AECR-Net backbone (= iicl's default)"),
    "iicl-aodnet": ModelEntry(_iicl_with("aodnet"), "Xu et al., ICASSP'23 (reconstruction)", True,
                              "IICL with the AOD-Net backbone"),
}


def build(name: str, **kwargs):
    """Build a registered model by name; an unknown name lists the known ones."""
    try:
        entry = MODELS[name]
    except KeyError:
        raise KeyError(f"unknown model {name!r}; known: {', '.join(sorted(MODELS))}") from None
    return entry.build(**kwargs)
