"""The 70×70 PatchGAN discriminator of pix2pix / CycleGAN, in CUT's anti-aliased form.

``docs/methods.md`` §2.3 (official ``NLayerDiscriminator``, ``--netD basic --n_layers_D 3 --normD instance``).
With ``antialias=True`` (CUT's default) each stride-2 4×4 convolution is replaced by a stride-1 4×4
convolution followed by :class:`~dehazelab.models.antialias.BlurDownsample`:

    Conv4x4(in→ndf) → LReLU(0.2) → Blur↓
    Conv4x4(ndf→2ndf) → IN → LReLU → Blur↓
    Conv4x4(2ndf→4ndf) → IN → LReLU → Blur↓
    Conv4x4 s1(4ndf→8ndf) → IN → LReLU
    Conv4x4 s1(8ndf→1)                      (logits; no sigmoid — LSGAN, or BCE-with-logits)

All 4×4 convolutions use zero padding 1 and a bias (InstanceNorm is non-affine). Default size:
2,764,737 parameters; a 256² input gives a 1×30×30 map, a 128² input 1×14×14. With ``antialias=False``
this is CycleGAN's original PatchGAN (same parameter count, same 30×30 output at 256²).

Receptive field of one logit (ignoring InstanceNorm, whose statistics are global): 70×70 for the
original strided version — the name "70×70 PatchGAN" — but **84×84** for the anti-aliased one,
because each 3-tap blur before a subsampling widens it (``docs/methods.md`` §2.3 says 70; that holds
only for ``antialias=False``). Both numbers are checked in ``tests/test_patchgan.py``.

Differences from the official code: LeakyReLUs are not in-place; weights keep PyTorch's default init
until ``dehazelab.models.init.init_weights`` is called (the trainer does it).
"""

from __future__ import annotations

import torch
from torch import nn

from dehazelab.models.norm import InstanceNorm2d
from dehazelab.models.antialias import BlurDownsample

__all__ = ["PatchGANDiscriminator"]


def _norm(channels: int) -> nn.Module:
    return InstanceNorm2d(channels, affine=False, track_running_stats=False)  # nn.InstanceNorm2d, guarded


class PatchGANDiscriminator(nn.Module):
    """N-layer PatchGAN: one real/fake logit per (overlapping) image patch.

    Parameters
    ----------
    in_ch:
        Image channels (3).
    ndf:
        Width of the first convolution (64); widths double per layer, capped at ``8 * ndf``.
    n_layers:
        Number of down-sampling stages (3 gives the 70×70 receptive field).
    antialias:
        Blur-pool down-sampling (CUT default True).
    """

    def __init__(self, in_ch: int = 3, ndf: int = 64, n_layers: int = 3, antialias: bool = True):
        super().__init__()
        self.in_ch, self.ndf, self.n_layers, self.antialias = in_ch, ndf, n_layers, antialias
        k, p = 4, 1

        def down(cin: int, cout: int, norm: bool) -> list[nn.Module]:
            stride = 1 if antialias else 2
            block: list[nn.Module] = [nn.Conv2d(cin, cout, kernel_size=k, stride=stride, padding=p, bias=True)]
            if norm:
                block.append(_norm(cout))
            block.append(nn.LeakyReLU(0.2, inplace=False))
            if antialias:
                block.append(BlurDownsample(cout))
            return block

        seq: list[nn.Module] = down(in_ch, ndf, norm=False)
        mult = 1
        for n in range(1, n_layers):
            prev, mult = mult, min(2 ** n, 8)
            seq += down(ndf * prev, ndf * mult, norm=True)
        prev, mult = mult, min(2 ** n_layers, 8)
        seq += [nn.Conv2d(ndf * prev, ndf * mult, kernel_size=k, stride=1, padding=p, bias=True),
                _norm(ndf * mult), nn.LeakyReLU(0.2, inplace=False),
                nn.Conv2d(ndf * mult, 1, kernel_size=k, stride=1, padding=p, bias=True)]
        self.model = nn.Sequential(*seq)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Patch logits ``(B, 1, H', W')`` for images ``x`` in [-1, 1]."""
        return self.model(x)
