"""The ResNet generator of CycleGAN / CUT / FastCUT, with CUT's encoder taps for PatchNCE.

Architecture (``docs/methods.md`` §2.2; official ``ResnetGenerator`` with ``--netG resnet_9blocks
--ngf 64 --normG instance``, anti-aliased by default). Everything lives in **one** ``nn.Sequential``
(``self.model``) whose indices are the ones CUT's ``--nce_layers 0,4,8,12,16`` refer to:

====  =============================================================  ==========================
idx   module (anti-aliased default)                                  output for a 256² input
====  =============================================================  ==========================
0     ReflectionPad2d(3)                                             3 × 262²  (padded RGB)
1-3   Conv7x7 in→ngf, InstanceNorm, ReLU                             64 × 256²
4     Conv3x3 s1 ngf→2ngf                                            128 × 256²
5-7   InstanceNorm, ReLU, BlurDownsample                             128 × 128²
8     Conv3x3 s1 2ngf→4ngf                                           256 × 128²
9-11  InstanceNorm, ReLU, BlurDownsample                             256 × 64²
12    ResnetBlock #1                                                 256 × 64²
13-20 ResnetBlocks #2-#9 (16 = block #5)                             256 × 64²
..    2 × [BlurUpsample, Conv3x3 s1, InstanceNorm, ReLU]             halves channels, doubles H
..    ReflectionPad2d(3), Conv7x7 ngf→out, Tanh                      out × 256²
====  =============================================================  ==========================

With ``antialias=False`` the down-sampling blocks become stride-2 convolutions (3 modules instead of
4) and the tap indices shift, exactly as in the official code (a known source of confusion, CUT
issue #55); with ``antialias_up=False`` the up-sampling blocks become stride-2 transposed convs.

Conventions and differences from the official code:

* InstanceNorm is non-affine with no running statistics, convolutions carry a bias, padding is
  reflect, no dropout — the official defaults for CUT.
* **Data range.** Like CUT and CycleGAN the network works on images in **[-1, 1]** (the official data
  loader normalises with mean 0.5, std 0.5) and ends in ``Tanh``. dehazelab's datasets give [0, 1];
  the trainer maps inputs with :func:`to_pm1` and outputs back with :func:`from_pm1`. The generator
  itself does not rescale, so the PatchNCE taps (layer 0 is the padded *input*) see the same values
  as in the official code.
* ReLUs are not in-place (the official ones are) so that any tapped activation stays valid; this
  costs a little memory, not results.
* Weights keep PyTorch's default init; call ``dehazelab.models.init.init_weights(G, "xavier", 0.02)``
  (CUT) or ``init_weights(G, "normal", 0.02)`` (CycleGAN) to match the official initialisation.
* ``forward(x, layers=...)`` returns the taps in the order requested (the official code requires an
  ascending list and stops after ``layers[-1]``; we stop after ``max(layers)``).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from dehazelab.models.norm import InstanceNorm2d
from dehazelab.models.antialias import BlurDownsample, BlurUpsample

__all__ = ["ResnetGenerator", "ResnetBlock", "to_pm1", "from_pm1", "CUT_NCE_LAYERS"]

#: CUT's default ``--nce_layers`` for the anti-aliased generator: padded RGB, the two
#: down-sampling convolutions (before their norm), residual blocks #1 and #5.
CUT_NCE_LAYERS: tuple[int, ...] = (0, 4, 8, 12, 16)


def to_pm1(x: torch.Tensor) -> torch.Tensor:
    """Map an image batch from dehazelab's [0, 1] to the [-1, 1] range CUT / CycleGAN work in."""
    return x * 2.0 - 1.0


def from_pm1(y: torch.Tensor) -> torch.Tensor:
    """Map a generator output from [-1, 1] back to [0, 1] (no clamping; ``Tanh`` keeps it in range)."""
    return (y + 1.0) * 0.5


def _norm(channels: int) -> nn.Module:
    return InstanceNorm2d(channels, affine=False, track_running_stats=False)  # nn.InstanceNorm2d, guarded


class ResnetBlock(nn.Module):
    """``x + [ReflPad1, Conv3x3, IN, ReLU, ReflPad1, Conv3x3, IN](x)`` (no dropout)."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv_block = nn.Sequential(
            nn.ReflectionPad2d(1),
            nn.Conv2d(channels, channels, kernel_size=3, padding=0, bias=True),
            _norm(channels),
            nn.ReLU(inplace=False),
            nn.ReflectionPad2d(1),
            nn.Conv2d(channels, channels, kernel_size=3, padding=0, bias=True),
            _norm(channels),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv_block(x)


class ResnetGenerator(nn.Module):
    """CycleGAN/CUT ResNet generator: 2 down-samplings, ``n_blocks`` residual blocks, 2 up-samplings.

    Parameters
    ----------
    in_ch, out_ch:
        Image channels in and out (3, 3).
    ngf:
        Width of the first convolution (64); the bottleneck has ``4 * ngf`` channels.
    n_blocks:
        Residual blocks (9 = ``resnet_9blocks``: 11,378,179 parameters at ngf 64; 6 = 7,837,699).
    antialias:
        Blur-pool down-sampling (CUT default True; CycleGAN's original generator is False).
    antialias_up:
        Bilinear (= CUT's fixed-filter) up-sampling followed by a conv (CUT default True;
        CycleGAN: False, i.e. stride-2 transposed convolutions).
    global_residual:
        Return ``x + net(x)`` (the Tanh output read as a correction of the input, as FFA-Net's
        global residual); not in CUT or CycleGAN (default False). A generator that starts near the
        identity keeps the scene's structure while the GAN learns the haze-free look: the CPU-scale
        recipe of the small size (the notebooks say where it is used). The output can leave [-1, 1];
        evaluation clamps.
    """

    def __init__(self, in_ch: int = 3, out_ch: int = 3, ngf: int = 64, n_blocks: int = 9,
                 antialias: bool = True, antialias_up: bool = True, global_residual: bool = False):
        super().__init__()
        if n_blocks < 0:
            raise ValueError("n_blocks must be >= 0")
        self.in_ch, self.out_ch, self.ngf, self.n_blocks = in_ch, out_ch, ngf, n_blocks
        self.antialias, self.antialias_up = antialias, antialias_up
        self.global_residual = bool(global_residual)
        if global_residual and in_ch != out_ch:
            raise ValueError(f"global_residual needs in_ch == out_ch, got {in_ch} and {out_ch}")

        layers: list[nn.Module] = [
            nn.ReflectionPad2d(3),
            nn.Conv2d(in_ch, ngf, kernel_size=7, padding=0, bias=True),
            _norm(ngf),
            nn.ReLU(inplace=False),
        ]
        ch = ngf
        for _ in range(2):  # down-sampling
            if antialias:
                layers += [nn.Conv2d(ch, ch * 2, kernel_size=3, stride=1, padding=1, bias=True),
                           _norm(ch * 2), nn.ReLU(inplace=False), BlurDownsample(ch * 2)]
            else:
                layers += [nn.Conv2d(ch, ch * 2, kernel_size=3, stride=2, padding=1, bias=True),
                           _norm(ch * 2), nn.ReLU(inplace=False)]
            ch *= 2
        self.bottleneck_start = len(layers)  # index of the first residual block
        layers += [ResnetBlock(ch) for _ in range(n_blocks)]
        for _ in range(2):  # up-sampling
            if antialias_up:
                layers += [BlurUpsample(ch),
                           nn.Conv2d(ch, ch // 2, kernel_size=3, stride=1, padding=1, bias=True),
                           _norm(ch // 2), nn.ReLU(inplace=False)]
            else:
                layers += [nn.ConvTranspose2d(ch, ch // 2, kernel_size=3, stride=2, padding=1,
                                              output_padding=1, bias=True),
                           _norm(ch // 2), nn.ReLU(inplace=False)]
            ch //= 2
        layers += [nn.ReflectionPad2d(3), nn.Conv2d(ch, out_ch, kernel_size=7, padding=0, bias=True), nn.Tanh()]
        self.model = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor, layers: Sequence[int] | None = None, encode_only: bool = False):
        """Translate ``x`` (in [-1, 1]); optionally also return activations of ``self.model[i]``.

        * ``layers`` empty/None: return the output image.
        * ``layers`` given, ``encode_only=True``: return the list of activations at those indices
          (in the requested order), and stop running after the largest index — this is CUT's
          "encoder" for PatchNCE; no separate encoder network exists.
        * ``layers`` given, ``encode_only=False``: return ``(output, activations)`` from one pass
          (what a trainer uses to reuse the input's key features, see ``losses/patchnce.py``).
        """
        if not layers:
            if encode_only:
                raise ValueError("encode_only=True needs at least one layer index")
            return self._out(x, self.model(x))
        wanted = [int(i) for i in layers]
        n = len(self.model)
        for i in wanted:
            if not 0 <= i < n:
                raise IndexError(f"layer index {i} outside 0..{n - 1}")
        last = max(wanted)
        found: dict[int, torch.Tensor] = {}
        feat = x
        for idx, module in enumerate(self.model):
            feat = module(feat)
            if idx in wanted:
                found[idx] = feat
            if encode_only and idx == last:
                break
        feats = [found[i] for i in wanted]
        return feats if encode_only else (self._out(x, feat), feats)

    def _out(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return x + y if self.global_residual else y

    def feature_channels(self, layers: Sequence[int] = CUT_NCE_LAYERS) -> list[int]:
        """Channel count of the activation at each index in ``layers`` (for building projection heads)."""
        with torch.no_grad():
            probe = torch.zeros(1, self.in_ch, 16, 16, device=next(self.parameters()).device)
            return [f.shape[1] for f in self.forward(probe, layers, encode_only=True)]
