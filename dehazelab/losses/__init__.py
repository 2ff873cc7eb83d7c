"""Losses as functions of tensors/features; they know no trainer (see docs/architecture.md)."""

from .cr import VGG19_CR_LAYERS, VGG19_CR_WEIGHTS, ContrastiveRegularization, CRLoss, draw_contrast_samples

__all__ = [
    "ContrastiveRegularization",
    "CRLoss",
    "draw_contrast_samples",
    "VGG19_CR_LAYERS",
    "VGG19_CR_WEIGHTS",
]
