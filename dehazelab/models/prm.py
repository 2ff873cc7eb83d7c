"""IICL's Pre-restore Module (PRM): a light physics-based first restoration — a *reconstruction*.

Xu, Liu, Shu, Jiang, "A Progressive Image Dehazing Framework with Inter and Intra Contrastive
Learning", ICASSP 2023, has no public code and only its abstract is reachable (methods §4.1-4.2).
The abstract names an "efficient Pre-restore Module (PRM)" in front of an interchangeable
"Alternative Restored Module (ARM)" and nothing else about it. Everything below is therefore our
design; each assumption is tagged with where it comes from:

* [abstract] there is a light PRM that produces a first, partly restored image for the ARM.
* [§4.3.1] (methods.md §4.3 recommendation 1) the PRM is physics-based: a small CNN predicts a
  transmission map ``t(x)`` and one global airlight ``A`` and inverts the atmospheric scattering
  model ``I = J·t + A·(1 − t)``:  ``J₀ = (I − A·(1 − t)) / t``.
* [§4.3.1] ``t ∈ [t_min, 1]`` with ``t_min`` = 0.1 (DCP's ``t0``); we get it as an affine map of a
  sigmoid, ``t = t_min + (1 − t_min)·σ(z)``, so the bound holds without a gradient-killing clamp.
* [§4.3.1] ``A`` comes from a pooled head; ours concatenates global average and global max pooling
  of the trunk features, then Linear → ReLU → Linear → sigmoid, giving ``A ∈ (0, 1)³`` per image.
* [our choice] trunk: 3×3 conv 3→w, then four 3×3 convs w→w with dilations 1, 2, 4, 8 (receptive
  field 33 px, enough to see haze density beyond local texture), ReLU after each, zero padding.
  With ``width=16`` the module has 10,452 parameters (trunk 9,728, t head 145, A head 579).
* [our choice] initialisation: PyTorch defaults, except the output biases, set so that a fresh PRM
  predicts ``t ≈ t_init`` (0.8) and ``A ≈ A_init`` (0.8): ``J₀`` then starts as a mild, in-range
  contrast stretch of ``I`` instead of the division by ~0.55 a zero bias would give.
* [our choice] ``J₀`` is returned unclamped (the ASM inversion is exact and differentiable
  everywhere); whoever consumes it decides about clamping (see ``dehazelab.models.iicl``).

:func:`asm_invert` is the differentiable torch inversion; it delegates to
:func:`dehazelab.data.haze.invert`, which is written for numpy *and* torch, keeps device/dtype and
gradients, and computes the algebraically identical ``(I − A)/max(t, t_min) + A``.
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from dehazelab.data.haze import invert

__all__ = ["PreRestoreModule", "asm_invert"]


def asm_invert(I: torch.Tensor, t: torch.Tensor, A: torch.Tensor, t_min: float = 0.1) -> torch.Tensor:
    """``J = (I − A·(1 − t)) / t`` with ``t`` clamped below at ``t_min`` (torch, differentiable).

    ``I`` [B, 3, H, W]; ``t`` [B, 1, H, W] (or [B, H, W]); ``A`` [B, 3], [B, 3, 1, 1], [B, 1],
    an RGB triple [3] or a scalar. Exact (to float rounding) when ``I`` was made from ``J`` with
    the same ``t ≥ t_min`` and ``A``. Delegates to :func:`dehazelab.data.haze.invert`.
    """
    if not isinstance(I, torch.Tensor) or I.dim() != 4:
        raise ValueError(f"I must be a [B,3,H,W] tensor, got {type(I).__name__} {tuple(getattr(I, 'shape', ()))}")
    A = torch.as_tensor(A, dtype=I.dtype, device=I.device)
    if A.dim() == 4:  # [B, C, 1, 1] -> [B, C]
        if A.shape[2:] != (1, 1):
            raise ValueError(f"A must be global (one value per channel), got shape {tuple(A.shape)}")
        A = A.flatten(1)
    return invert(I, t, A, t_min=t_min)


def _logit(p: float) -> float:
    return math.log(p / (1.0 - p))


class PreRestoreModule(nn.Module):
    """Light ASM-inverting CNN. ``PreRestoreModule(width=16, t_min=0.1)``.

    ``forward(I)`` with ``I`` [B, 3, H, W] in [0, 1] (any H, W) returns ``(j0, t, A)``:
    ``j0`` [B, 3, H, W] = :func:`asm_invert` ``(I, t, A)`` (unclamped), ``t`` [B, 1, H, W] in
    ``[t_min, 1]``, ``A`` [B, 3] in ``(0, 1)``. See the module docstring for what is assumed.
    """

    def __init__(
        self,
        width: int = 16,
        t_min: float = 0.1,
        *,
        dilations: tuple[int, ...] = (1, 2, 4, 8),
        t_init: float = 0.8,
        A_init: float = 0.8,
    ):
        super().__init__()
        if not 0.0 < t_min < 1.0:
            raise ValueError(f"t_min must be in (0, 1), got {t_min}")
        if not t_min < t_init < 1.0 or not 0.0 < A_init < 1.0:
            raise ValueError(f"need t_min < t_init < 1 and 0 < A_init < 1, got t_init={t_init}, A_init={A_init}")
        if width < 2:
            raise ValueError(f"width must be >= 2, got {width}")
        self.width, self.t_min = int(width), float(t_min)
        self.dilations = tuple(int(d) for d in dilations)
        layers: list[nn.Module] = [nn.Conv2d(3, width, 3, padding=1), nn.ReLU(inplace=True)]
        for d in self.dilations:
            layers += [nn.Conv2d(width, width, 3, padding=d, dilation=d), nn.ReLU(inplace=True)]
        self.trunk = nn.Sequential(*layers)
        self.t_head = nn.Conv2d(width, 1, 3, padding=1)
        self.a_head = nn.Sequential(nn.Linear(2 * width, width), nn.ReLU(inplace=True), nn.Linear(width, 3))
        with torch.no_grad():
            self.t_head.bias.fill_(_logit((t_init - t_min) / (1.0 - t_min)))
            self.a_head[-1].bias.fill_(_logit(A_init))

    def estimate(self, I: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(t [B,1,H,W] in [t_min, 1], A [B,3] in (0, 1))`` for a hazy batch ``I``."""
        if I.dim() != 4 or I.shape[1] != 3:
            raise ValueError(f"expected a Bx3xHxW batch, got shape {tuple(I.shape)}")
        f = self.trunk(I)
        t = self.t_min + (1.0 - self.t_min) * torch.sigmoid(self.t_head(f))
        pooled = torch.cat((F.adaptive_avg_pool2d(f, 1), F.adaptive_max_pool2d(f, 1)), dim=1).flatten(1)
        A = torch.sigmoid(self.a_head(pooled))
        return t, A

    def forward(self, I: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        t, A = self.estimate(I)
        return asm_invert(I, t, A, self.t_min), t, A

    def extra_repr(self) -> str:
        return f"width={self.width}, t_min={self.t_min}, dilations={self.dilations}"
