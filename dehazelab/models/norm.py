"""``InstanceNorm2d`` with a guard against a PyTorch CPU autograd defect (batch 1, channels-last grads).

The defect (measured on torch 2.14.1, CPU, with AVX-512 and with AVX2 kernels; float32 *and*
float64): the backward of ``torch.nn.functional.instance_norm`` returns a wrong input gradient when
the batch has **one** image and the incoming gradient has channels-last (NHWC) strides. The error is
as large as the gradient itself (e.g. 4.9 against a gradient of 2.9 on an 8x6x5 map), whatever the
input's layout and whether the norm is affine. With two or more images ``instance_norm`` reshapes
to ``(1, B*C, H, W)`` with a copy and the result is right; ``batch_norm`` and ``group_norm`` are
right at batch 1.

Where the library meets it: with ``channels_last: true`` the convolutions hand channels-last
gradients back, and FastCUT, CycleGAN and CDD-GAN run their generators on one image at a time at
batch size 1 (the last InstanceNorm of every residual block received a channels-last gradient in a
measured FastCUT/CycleGAN step). The official CUT code reaches it through the ``permute`` of its
patch sampler. Default (contiguous) training here never did: every gradient reaching an
InstanceNorm was contiguous.

The guard: when the input has a batch of one (or no batch dimension), a hook on the output makes
the gradient contiguous before the norm's backward sees it (a copy of one activation, only then;
the forward is untouched, so outputs are bitwise those of ``nn.InstanceNorm2d``). It is applied on
every device: on CUDA the copy is cheap and nothing was measured there. Checked against a float64
GroupNorm reference and finite differences in ``tests/test_norm.py``, which also reports whether the
installed torch still has the defect (so that the guard can be dropped once it is fixed).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["InstanceNorm2d", "instance_norm_defect_present"]


def _contiguous(grad: torch.Tensor | None) -> torch.Tensor | None:
    return None if grad is None else grad.contiguous()  # None: leave the gradient as it is


class InstanceNorm2d(nn.InstanceNorm2d):
    """:class:`torch.nn.InstanceNorm2d` (same arguments, same state dict, same forward) whose input
    gradient is right at batch 1 with channels-last gradients (see the module docstring)."""

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        out = super().forward(input)
        if out.requires_grad and (input.dim() == 3 or input.shape[0] == 1):
            out.register_hook(_contiguous)
        return out


def instance_norm_defect_present(dtype: torch.dtype = torch.float64) -> bool:
    """Does this torch's CPU ``instance_norm`` backward give a wrong gradient at batch 1 when the
    incoming gradient is channels-last? (Compared with the contiguous gradient, which is right.)"""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(1, 8, 6, 5, generator=g, dtype=dtype, requires_grad=True)
    grad_out = torch.randn(1, 8, 6, 5, generator=g, dtype=dtype)
    grads = []
    for go in (grad_out, grad_out.contiguous(memory_format=torch.channels_last)):
        (gx,) = torch.autograd.grad(F.instance_norm(x), x, go)
        grads.append(gx)
    tol = 1e-4 if dtype == torch.float32 else 1e-10
    return not torch.allclose(grads[0], grads[1], atol=tol, rtol=tol)
