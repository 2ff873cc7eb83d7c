"""``FastDeconv``: the "network deconvolution" input layer of the official AECR-Net code.

Network deconvolution (Ye et al., ICLR 2020) decorrelates the *input patches* of a convolution: the
im2col columns ``X`` (one row per patch, ``k*k*C`` features) are centred and multiplied by
``Cov(X)^{-1/2}``. Because ``conv(X·D) = conv_with(W·D)``, the layer never whitens the image itself;
it folds the whitening into the kernel and the bias and runs one ordinary convolution:

    W' = W · D,   b' = b − W' · mean,   D ≈ (Cov + eps·I)^{-1/2}     (W flattened to [out, k·k·C])

What the official ``models/deconv.py`` does (methods §1.3) and this port keeps:

* training mode: patches taken with ``F.unfold`` at a *sampling stride* of ``3·stride`` (every third
  patch in each direction, for speed), per-feature mean subtracted, ``Cov = XᵀX/N + eps·I`` with
  eps 1e-5, ``Cov^{-1/2}`` by 5 coupled Newton–Schulz iterations (differentiable: gradients flow
  through the batch statistics, as in BatchNorm);
* running statistics ``running_mean`` / ``running_deconv`` tracked by an EMA with momentum 0.1
  (``running = 0.9·running + 0.1·batch``), starting from zeros / identity (no "copy the first
  batch" step in the official ``FastDeconv``), and used in eval mode — so the layer has a
  BatchNorm-like train/eval difference;
* parameter and buffer names ``weight``, ``bias``, ``running_mean``, ``running_deconv``, so a
  released checkpoint loads unchanged; 84 parameters for 3→3 channels, kernel 3.

Where this port differs: the deprecated positional ``torch.addmm(beta, M, alpha, A, B)`` overload
is replaced by the keyword form (no deprecation warning); only ``groups == 1`` is implemented (the
only case AECR-Net uses); the official ``freeze``/``freeze_iter`` option (stop updating the
statistics after some iterations, off by default) is left out.
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

__all__ = ["FastDeconv", "isqrt_newton_schulz"]


def isqrt_newton_schulz(a: torch.Tensor, n_iter: int = 5) -> torch.Tensor:
    """Approximate ``a^{-1/2}`` of a symmetric positive-definite matrix by coupled Newton–Schulz.

    ``a`` is scaled by its Frobenius norm so the iteration converges; the result is differentiable.
    With few iterations (5 in AECR-Net) small eigenvalues are only partly whitened — that is the
    official behaviour, not a bug of this port.
    """
    dim = a.shape[0]
    norm = a.norm()
    eye = torch.eye(dim, dtype=a.dtype, device=a.device)
    y = a / norm
    z = eye
    for _ in range(n_iter):
        t = 0.5 * (3.0 * eye - z @ y)
        y = y @ t
        z = t @ z
    return z / norm.sqrt()


class FastDeconv(nn.Conv2d):
    """A conv whose input patches are whitened with batch (train) or running (eval) statistics.

    Args mirror ``nn.Conv2d`` plus ``eps`` (1e-5), ``n_iter`` (5 Newton–Schulz steps), ``momentum``
    (0.1), ``block`` (channels whitened jointly, 64 → min(64, in_channels)) and
    ``sampling_stride`` (3; multiplied by the conv stride) as in the official layer.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int = 3,
        stride: int = 1,
        padding: int = 1,
        dilation: int = 1,
        bias: bool = True,
        *,
        eps: float = 1e-5,
        n_iter: int = 5,
        momentum: float = 0.1,
        block: int = 64,
        sampling_stride: int = 3,
    ):
        super().__init__(
            in_channels, out_channels, kernel_size, stride=stride, padding=padding,
            dilation=dilation, groups=1, bias=bias,
        )
        if block > in_channels:
            block = in_channels
        elif in_channels % block != 0:
            block = math.gcd(block, in_channels)
        self.block = block
        self.eps = eps
        self.n_iter = n_iter
        self.momentum = momentum
        k = self.kernel_size[0] * self.kernel_size[1]
        self.num_features = k * block
        self.sampling_stride = sampling_stride * self.stride[0]
        self.register_buffer("running_mean", torch.zeros(self.num_features))
        self.register_buffer("running_deconv", torch.eye(self.num_features))

    def _batch_patches(self, x: torch.Tensor) -> torch.Tensor:
        """Sub-sampled im2col patches as rows ``[N_patches * C/block, num_features]``."""
        n, c, _, _ = x.shape
        cols = F.unfold(x, self.kernel_size, self.dilation, self.padding, self.sampling_stride)
        cols = cols.transpose(1, 2)  # [N, L, C*k*k], features ordered (channel, ky, kx)
        # Split the channels into C/block groups of `block` channels, each group one row.
        groups = c // self.block
        cols = cols.reshape(-1, self.num_features, groups).transpose(1, 2)
        return cols.reshape(-1, self.num_features)

    def batch_statistics(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(mean, Cov^{-1/2})`` of the current batch's sampled patches (differentiable)."""
        rows = self._batch_patches(x)
        mean = rows.mean(0)
        rows = rows - mean
        eye = torch.eye(rows.shape[1], dtype=rows.dtype, device=rows.device)
        cov = torch.addmm(eye, rows.t(), rows, beta=self.eps, alpha=1.0 / rows.shape[0])
        return mean, isqrt_newton_schulz(cov, self.n_iter)

    def whitened_weight_and_bias(self, mean: torch.Tensor, deconv: torch.Tensor):
        """Fold ``deconv`` and ``mean`` into the conv: returns ``(W·D, b − (W·D)·mean)``."""
        c = self.in_channels
        g = c // self.block
        w = self.weight.reshape(-1, self.num_features, g).transpose(1, 2).reshape(-1, self.num_features)
        w = w @ deconv
        shift = (w @ mean.unsqueeze(1)).reshape(self.out_channels, -1).sum(1)
        b = -shift if self.bias is None else self.bias - shift
        w = w.reshape(-1, g, self.num_features).transpose(1, 2).reshape(self.weight.shape)
        return w, b

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[1] != self.in_channels:
            raise ValueError(f"FastDeconv expects {self.in_channels} channels, got {x.shape[1]}")
        if self.training:
            mean, deconv = self.batch_statistics(x)
            with torch.no_grad():
                self.running_mean.mul_(1 - self.momentum).add_(mean.detach(), alpha=self.momentum)
                self.running_deconv.mul_(1 - self.momentum).add_(deconv.detach(), alpha=self.momentum)
        else:
            mean, deconv = self.running_mean, self.running_deconv
        w, b = self.whitened_weight_and_bias(mean, deconv)
        return F.conv2d(x, w, b, self.stride, self.padding, self.dilation)

    def extra_repr(self) -> str:
        return (
            super().extra_repr()
            + f", block={self.block}, eps={self.eps}, n_iter={self.n_iter}, momentum={self.momentum},"
            f" sampling_stride={self.sampling_stride}"
        )
