"""AOD-Net (Li, Peng, Wang, Xu, Feng, "AOD-Net: All-in-One Dehazing Network", ICCV 2017).

The atmospheric scattering model ``I = J·t + A·(1 − t)`` is rewritten with one map ``K(x)`` that
absorbs both the transmission ``t`` and the airlight ``A``:

    J = K·I − K + b,   K = ((I − A)/t + (A − b)) / (I − 1),   b = 1 (constant bias)

A five-conv "K-estimation module" predicts ``K`` from the hazy image, each conv followed by ReLU,
with multi-scale concatenations:

    conv1  1×1  3→3    on I
    conv2  3×3  3→3    on conv1
    conv3  5×5  6→3    on cat(conv1, conv2)
    conv4  7×7  6→3    on cat(conv2, conv3)
    conv5  3×3 12→3    on cat(conv1, conv2, conv3, conv4)  → K

and the clean-image generation module outputs ``ReLU(K·I − K + b)``. Same padding everywhere;
PyTorch default initialisation (the original Caffe release used Gaussian init; the paper trains with
MSE). 12 + 84 + 453 + 885 + 327 = **1,761** parameters (the "0.002M" in AECR-Net's Table 1).
The output is not clamped from above; evaluation clamps to [0, 1].
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

__all__ = ["AODNet"]


class AODNet(nn.Module):
    """AOD-Net. ``AODNet(in_ch=3, b=1.0)``; input and output Bx3xHxW in [0, 1], any H, W."""

    def __init__(self, in_ch: int = 3, b: float = 1.0):
        super().__init__()
        self.in_ch = in_ch
        self.b = float(b)
        c = in_ch
        self.conv1 = nn.Conv2d(c, c, 1, padding=0)
        self.conv2 = nn.Conv2d(c, c, 3, padding=1)
        self.conv3 = nn.Conv2d(2 * c, c, 5, padding=2)
        self.conv4 = nn.Conv2d(2 * c, c, 7, padding=3)
        self.conv5 = nn.Conv2d(4 * c, c, 3, padding=1)

    def estimate_k(self, x: torch.Tensor) -> torch.Tensor:
        """The K-estimation module: the map ``K(x)`` (same shape as ``x``)."""
        x1 = F.relu(self.conv1(x))
        x2 = F.relu(self.conv2(x1))
        x3 = F.relu(self.conv3(torch.cat((x1, x2), 1)))
        x4 = F.relu(self.conv4(torch.cat((x2, x3), 1)))
        return F.relu(self.conv5(torch.cat((x1, x2, x3, x4), 1)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 4 or x.shape[1] != self.in_ch:
            raise ValueError(f"expected a Bx{self.in_ch}xHxW batch, got shape {tuple(x.shape)}")
        k = self.estimate_k(x)
        return F.relu(k * x - k + self.b)
