"""Adversarial losses for CycleGAN / CUT / FastCUT (functions of discriminator outputs only).

``docs/methods.md`` §2.6. Both code bases use ``--gan_mode lsgan`` (Mao et al. 2017) by default:

* discriminator: ``½ [ mean((D(y) − 1)²) + mean(D(G(x))²) ]``  (real target 1, fake target 0);
* generator:     ``mean((D(G(x)) − 1)²)``.

``mode="vanilla"`` is the original GAN objective on logits (``BCEWithLogits``): the discriminator
minimises ``½ [BCE(D(y), 1) + BCE(D(G(x)), 0)]``, the generator the non-saturating ``BCE(D(G(x)), 1)``.

The means run over every element of the PatchGAN logit map and the batch, as in the official
``GANLoss`` (``nn.MSELoss`` / ``nn.BCEWithLogitsLoss`` with mean reduction). The caller is responsible
for detaching ``G(x)`` in the discriminator step and for freezing D in the generator step.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["GAN_MODES", "gan_target_loss", "discriminator_loss", "generator_loss"]

GAN_MODES = ("lsgan", "vanilla")


def gan_target_loss(pred: torch.Tensor, target_is_real: bool, mode: str = "lsgan") -> torch.Tensor:
    """Mean loss of logits ``pred`` against the constant target 1 (real) or 0 (fake)."""
    target = torch.full_like(pred, 1.0 if target_is_real else 0.0)
    if mode == "lsgan":
        return F.mse_loss(pred, target)
    if mode == "vanilla":
        return F.binary_cross_entropy_with_logits(pred, target)
    raise ValueError(f"unknown GAN mode {mode!r}; choose from {GAN_MODES}")


def discriminator_loss(pred_real: torch.Tensor, pred_fake: torch.Tensor, mode: str = "lsgan") -> torch.Tensor:
    """``½ [loss(D(real), 1) + loss(D(fake), 0)]`` — the ½ slows D relative to G, as in the official code."""
    return 0.5 * (gan_target_loss(pred_real, True, mode) + gan_target_loss(pred_fake, False, mode))


def generator_loss(pred_fake: torch.Tensor, mode: str = "lsgan") -> torch.Tensor:
    """``loss(D(G(x)), 1)``: the generator wants its outputs classified as real."""
    return gan_target_loss(pred_fake, True, mode)
