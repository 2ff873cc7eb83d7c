"""Dynamic Feature Enhancement (DFE) of AECR-Net: a modulated deformable convolution (DCNv2).

The official code wraps CharlesShang's compiled ``DCN`` (methods §1.4): one ordinary conv
``conv_offset_mask`` (C → 3·k·k = 27 channels, same kernel/stride/padding as the main conv,
**zero-initialised**) predicts, per output pixel, the offsets (first 18 channels; channel ``2t`` is
the y/row offset and ``2t+1`` the x/column offset of kernel tap ``t = i·kw + j``) and the modulation
mask (last 9 channels, through a sigmoid). The main conv's weight is drawn from
``U(±1/sqrt(C·k·k))`` and its bias is zero. At initialisation the offsets are 0 and the mask 0.5, so
a fresh DFE is a plain 3×3 conv scaled by one half.

Two implementations of the *same* op, selected by ``backend``:

* ``"torchvision"`` — ``torchvision.ops.deform_conv2d(..., mask=mask)`` (its mask is the DCNv2
  modulation; same offset layout as CharlesShang's kernel). CPU and CUDA kernels; on CPU its
  backward is slow (methods §7: ~75 % of a width-16 AECR-Net step).
* ``"grid_sample"`` — for each of the k·k taps, the input is sampled bilinearly at
  ``(row, col) = (h·s − p + i·d + Δy, w·s − p + j·d + Δx)`` with ``F.grid_sample`` (all taps in one
  call, stacked along the grid's height), multiplied by the mask, and contracted with the weight in
  one ``einsum`` over (channel, tap). Coordinates are normalised with the ``align_corners=False``
  convention (``g = (2·x + 1)/W − 1``), which ``grid_sample`` maps back to exactly ``x`` for any size
  (the ``align_corners=True`` form divides by ``W − 1`` and breaks for 1-pixel maps). With
  ``padding_mode="zeros"`` every bilinear corner outside the image contributes 0 — the same rule as
  torchvision's ``bilinear_interpolate`` (a point with ``y ≤ −1``, ``y ≥ H``, ``x ≤ −1`` or ``x ≥ W``
  gives 0, corners outside the image count as 0). Forward and all gradients agree with
  torchvision to float precision (``tests/test_dfe.py``); it is several times faster on CPU
  (``benchmarks/bench_dfe.py``) at the price of materialising the ``[B, C·k·k, H·W]`` columns
  (and their gradient) in memory.
* ``"auto"`` (default) — decided per call from the input's device: ``grid_sample`` on CPU,
  ``torchvision`` on CUDA (its CUDA kernel is the reference implementation there; we did not
  benchmark on a GPU).

Both backends share the same parameters, so ``state_dict`` keys do not depend on the backend:
``offset_mask.weight`` [3·k·k, C, k, k], ``offset_mask.bias``, ``weight`` [O, C, k, k], ``bias`` [O].
Only one deformable group is implemented (AECR-Net uses one).
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

__all__ = ["DFE", "BACKENDS", "deform_conv2d_grid_sample", "resolve_backend"]

BACKENDS = ("auto", "torchvision", "grid_sample")


def resolve_backend(backend: str, device: torch.device) -> str:
    """Map ``"auto"`` to ``"grid_sample"`` on CPU and ``"torchvision"`` elsewhere."""
    if backend not in BACKENDS:
        raise ValueError(f"unknown DFE backend {backend!r}; choose one of {BACKENDS}")
    if backend == "auto":
        return "grid_sample" if device.type == "cpu" else "torchvision"
    return backend


def _out_size(size: int, k: int, stride: int, padding: int, dilation: int) -> int:
    return (size + 2 * padding - dilation * (k - 1) - 1) // stride + 1


def deform_conv2d_grid_sample(
    x: torch.Tensor,
    offset: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None = None,
    stride: int = 1,
    padding: int = 1,
    dilation: int = 1,
    mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """Modulated deformable conv with ``F.grid_sample``; same signature/semantics as torchvision's.

    ``x`` [B, C, H, W]; ``offset`` [B, 2·k·k, Ho, Wo] (``(Δy, Δx)`` pairs per tap); ``mask``
    [B, k·k, Ho, Wo] or ``None`` (= 1); ``weight`` [O, C, kh, kw]. One deformable group, no
    weight groups.
    """
    b, c, h, w = x.shape
    o, cw, kh, kw = weight.shape
    if cw != c:
        raise ValueError(f"weight expects {cw} input channels, input has {c}")
    taps = kh * kw
    ho = _out_size(h, kh, stride, padding, dilation)
    wo = _out_size(w, kw, stride, padding, dilation)
    if offset.shape != (b, 2 * taps, ho, wo):
        raise ValueError(f"offset must be {(b, 2 * taps, ho, wo)}, got {tuple(offset.shape)}")
    if mask is not None and mask.shape != (b, taps, ho, wo):
        raise ValueError(f"mask must be {(b, taps, ho, wo)}, got {tuple(mask.shape)}")

    dt, dev = x.dtype, x.device
    # Regular sampling positions per tap, in pixels: [taps, Ho, Wo].
    ki = torch.arange(kh, device=dev, dtype=dt).repeat_interleave(kw) * dilation  # row of tap t
    kj = torch.arange(kw, device=dev, dtype=dt).repeat(kh) * dilation  # column of tap t
    rows = torch.arange(ho, device=dev, dtype=dt) * stride - padding
    cols = torch.arange(wo, device=dev, dtype=dt) * stride - padding
    base_y = ki[:, None, None] + rows[None, :, None]  # [taps, Ho, 1]
    base_x = kj[:, None, None] + cols[None, None, :]  # [taps, 1, Wo]

    off = offset.reshape(b, taps, 2, ho, wo)
    py = base_y + off[:, :, 0]  # [B, taps, Ho, Wo]
    px = base_x + off[:, :, 1]
    # Pixel -> normalised coordinates, align_corners=False convention.
    gy = (2.0 * py + 1.0) / h - 1.0
    gx = (2.0 * px + 1.0) / w - 1.0
    grid = torch.stack((gx, gy), dim=-1).reshape(b, taps * ho, wo, 2)
    sampled = F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    sampled = sampled.reshape(b, c, taps, ho, wo)
    if mask is not None:
        sampled = sampled * mask.unsqueeze(1)
    cols_ = sampled.reshape(b, c * taps, ho * wo)  # features ordered (channel, tap) like weight
    # one contraction over (channel, tap); einsum lets torch pick the layout (measured faster than
    # a broadcast matmul, which copies the columns into a transposed layout)
    out = torch.einsum("ok,bkn->bon", weight.reshape(o, c * taps), cols_)  # [B, O, Ho*Wo]
    out = out.reshape(b, o, ho, wo)
    if bias is not None:
        out = out + bias.reshape(1, o, 1, 1)
    return out


class DFE(nn.Module):
    """Modulated deformable conv v2 block (AECR-Net's ``DCNBlock``/``DCN``), no activation.

    ``DFE(in_channels, out_channels, kernel_size=3, stride=1, padding=1, dilation=1,
    backend="auto")``. ``backend`` may be changed on an existing module (``m.backend = ...``).
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int = 3,
        stride: int = 1,
        padding: int = 1,
        dilation: int = 1,
        *,
        backend: str = "auto",
    ):
        super().__init__()
        resolve_backend(backend, torch.device("cpu"))  # validate the name early
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.kernel_size = kernel_size
        self.stride = stride
        self.padding = padding
        self.dilation = dilation
        self.backend = backend
        taps = kernel_size * kernel_size
        self.offset_mask = nn.Conv2d(
            in_channels, 3 * taps, kernel_size, stride=stride, padding=padding, dilation=dilation, bias=True
        )
        self.weight = nn.Parameter(torch.empty(out_channels, in_channels, kernel_size, kernel_size))
        self.bias = nn.Parameter(torch.empty(out_channels))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """DCNv2 init: main weight U(±1/sqrt(C·k·k)), bias 0; offset/mask conv all zeros."""
        bound = 1.0 / math.sqrt(self.in_channels * self.kernel_size * self.kernel_size)
        nn.init.uniform_(self.weight, -bound, bound)
        nn.init.zeros_(self.bias)
        nn.init.zeros_(self.offset_mask.weight)
        nn.init.zeros_(self.offset_mask.bias)

    def offsets_and_mask(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(offset [B, 2·k·k, Ho, Wo], mask [B, k·k, Ho, Wo])`` predicted from ``x``."""
        out = self.offset_mask(x)
        n_off = 2 * self.kernel_size * self.kernel_size
        return out[:, :n_off], torch.sigmoid(out[:, n_off:])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        offset, mask = self.offsets_and_mask(x)
        backend = resolve_backend(self.backend, x.device)
        if backend == "torchvision":
            from torchvision.ops import deform_conv2d

            return deform_conv2d(
                x, offset, self.weight, self.bias, stride=self.stride, padding=self.padding,
                dilation=self.dilation, mask=mask,
            )
        return deform_conv2d_grid_sample(
            x, offset, self.weight, self.bias, stride=self.stride, padding=self.padding,
            dilation=self.dilation, mask=mask,
        )

    def extra_repr(self) -> str:
        return (
            f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, stride={self.stride},"
            f" padding={self.padding}, dilation={self.dilation}, backend={self.backend!r}"
        )
