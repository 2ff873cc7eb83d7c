"""Anti-aliased ("blur-pool") down- and up-sampling layers used by CUT's generator and PatchGAN.

CUT (Park et al., ECCV 2020) builds its default ResNet generator and PatchGAN discriminator with the
anti-aliasing of Zhang, "Making Convolutional Networks Shift-Invariant Again" (ICML 2019): instead of a
stride-2 convolution, the network runs a stride-1 convolution and then a fixed low-pass filter with
stride 2 (:class:`BlurDownsample`); instead of a stride-2 transposed convolution it upsamples with a
fixed filter and then runs a stride-1 convolution (:class:`BlurUpsample`). Neither layer has
trainable parameters. See ``docs/methods.md`` §2.2-2.3.

* ``BlurDownsample``: reflect-pad by 1, depthwise 3x3 binomial filter ``[1,2,1] ⊗ [1,2,1] / 16``,
  stride 2 (output ``ceil(H/2)``), as in the official ``Downsample(channels)`` with its defaults.
* ``BlurUpsample``: the official ``Upsample(channels)`` replicate-pads by 1, runs a depthwise transposed
  convolution with the filter ``4 · [1,3,3,1] ⊗ [1,3,3,1] / 64`` at stride 2 and crops one row/column on
  each side. That linear map is *exactly* bilinear ×2 interpolation with ``align_corners=False`` (each
  output pixel is 3/4 of its nearest input pixel plus 1/4 of the next one, edges clamped), so we call
  :func:`torch.nn.functional.interpolate` instead of hand-writing the transposed convolution. The
  equality (to float rounding) is checked in ``tests/test_resnet_generator.py`` against a literal
  transcription of the transposed-convolution form.

Difference from the official code: the official layers store their filter as a persistent buffer
(so it appears in checkpoints); ours keep no state in ``state_dict``.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["BlurDownsample", "BlurUpsample", "binomial_filter_2d"]


def binomial_filter_2d(size: int = 3, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """The normalised 2-D binomial filter of side ``size`` (e.g. 3 -> ``[1,2,1]⊗[1,2,1]/16``)."""
    if size < 1:
        raise ValueError(f"filter size must be >= 1, got {size}")
    row = torch.tensor([math.comb(size - 1, k) for k in range(size)], dtype=torch.float64)
    filt = torch.outer(row, row)
    return (filt / filt.sum()).to(dtype)


class BlurDownsample(nn.Module):
    """Low-pass then subsample by 2: reflect pad 1, depthwise 3x3 binomial blur, stride 2.

    Parameters
    ----------
    channels:
        Number of input channels (the blur is applied to each channel separately).
    filter_size:
        Side of the binomial filter (official default 3). Padding is ``(filter_size-1)//2`` before
        and ``ceil((filter_size-1)/2)`` after, reflect mode, as in the official layer.
    stride:
        Subsampling factor (2).
    """

    def __init__(self, channels: int, filter_size: int = 3, stride: int = 2):
        super().__init__()
        self.channels = int(channels)
        self.filter_size = int(filter_size)
        self.stride = int(stride)
        before = (self.filter_size - 1) // 2
        after = self.filter_size - 1 - before
        self._pad = (before, after, before, after)
        filt = binomial_filter_2d(self.filter_size)[None, None].repeat(self.channels, 1, 1, 1)
        self.register_buffer("filt", filt, persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[1] != self.channels:
            raise ValueError(f"expected {self.channels} channels, got {x.shape[1]}")
        if self.filter_size == 1:
            return x[:, :, :: self.stride, :: self.stride]
        x = F.pad(x, self._pad, mode="reflect")
        return F.conv2d(x, self.filt.to(dtype=x.dtype), stride=self.stride, groups=self.channels)

    def extra_repr(self) -> str:
        return f"channels={self.channels}, filter_size={self.filter_size}, stride={self.stride}"


class BlurUpsample(nn.Module):
    """×2 upsampling identical to CUT's anti-aliased ``Upsample(channels)`` (= bilinear, align_corners=False).

    ``channels`` is kept (and checked) so the module reads like the official one in a printed network.
    """

    def __init__(self, channels: int):
        super().__init__()
        self.channels = int(channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[1] != self.channels:
            raise ValueError(f"expected {self.channels} channels, got {x.shape[1]}")
        return F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)

    def extra_repr(self) -> str:
        return f"channels={self.channels}, factor=2 (bilinear == transposed conv with 4·[1,3,3,1]²/64)"
