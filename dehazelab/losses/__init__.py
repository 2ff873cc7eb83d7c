"""Losses as functions of tensors/features; they know no trainer (see docs/architecture.md).

| loss | paper | module |
|---|---|---|
| contrastive regularization (CR), L1 + β·CR | AECR-Net, CVPR'21 | :mod:`.cr` |
| PatchNCE | CUT, ECCV'20 | :mod:`.patchnce` |
| LSGAN / vanilla GAN | CycleGAN / CUT | :mod:`.gan` |
| IICL: inter (CR) + intra (bright/dark patch InfoNCE) | IICL, ICASSP'23 (reconstruction) | :mod:`.iicl` |
"""

from .cr import VGG19_CR_LAYERS, VGG19_CR_WEIGHTS, ContrastiveRegularization, CRLoss, draw_contrast_samples
from .gan import discriminator_loss, gan_target_loss, generator_loss
from .iicl import IICLLoss, IntraContrast, extract_patches, select_bright_dark_patches
from .patchnce import PatchNCE, patchnce_loss

__all__ = [
    "ContrastiveRegularization",
    "CRLoss",
    "draw_contrast_samples",
    "VGG19_CR_LAYERS",
    "VGG19_CR_WEIGHTS",
    "PatchNCE",
    "patchnce_loss",
    "discriminator_loss",
    "generator_loss",
    "gan_target_loss",
    "IICLLoss",
    "IntraContrast",
    "select_bright_dark_patches",
    "extract_patches",
]
