"""The guarded ``InstanceNorm2d`` (``dehazelab.models.norm``) against independent references.

References: ``group_norm`` with one group per channel is the same function as a non-affine
instance norm (per image and channel: subtract the mean, divide by sqrt(biased variance + eps)),
computed by a different kernel that has no batch-1 channels-last defect; and central finite
differences (``torch.autograd.gradcheck``, float64).
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from dehazelab.models.norm import InstanceNorm2d, instance_norm_defect_present

CL = torch.channels_last


def _grads(norm: nn.Module, x: torch.Tensor, grad_out: torch.Tensor, after=None) -> torch.Tensor:
    x = x.detach().clone().requires_grad_(True)
    y = norm(x)
    if after is not None:
        y = after(y)
    (gx,) = torch.autograd.grad(y, x, grad_out)
    return gx


def _reference(x: torch.Tensor, grad_out: torch.Tensor, weight=None, bias=None, after=None) -> torch.Tensor:
    """float64 GroupNorm(C groups) gradient."""
    c = x.shape[1]
    x64 = x.detach().double().contiguous().requires_grad_(True)
    y = F.group_norm(x64, c, None if weight is None else weight.double(), None if bias is None else bias.double(),
                     eps=1e-5)
    if after is not None:
        y = after(y)
    (gx,) = torch.autograd.grad(y, x64, grad_out.double().contiguous())
    return gx


@pytest.mark.parametrize("batch", [1, 2])
@pytest.mark.parametrize("grad_layout", ["contiguous", "channels_last"])
@pytest.mark.parametrize("input_layout", ["contiguous", "channels_last"])
@pytest.mark.parametrize("affine", [False, True])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_guarded_gradient_matches_groupnorm_reference(batch, grad_layout, input_layout, affine, dtype):
    g = torch.Generator().manual_seed(batch * 7 + affine)
    x = torch.randn(batch, 8, 6, 5, generator=g, dtype=dtype) * 3 + 1
    grad_out = torch.randn(batch, 8, 6, 5, generator=g, dtype=dtype)
    if input_layout == "channels_last":
        x = x.contiguous(memory_format=CL)
    if grad_layout == "channels_last":
        grad_out = grad_out.contiguous(memory_format=CL)
    norm = InstanceNorm2d(8, affine=affine).to(dtype)
    if affine:
        with torch.no_grad():
            norm.weight.uniform_(0.5, 1.5, generator=g)
            norm.bias.uniform_(-1, 1, generator=g)
    got = _grads(norm, x, grad_out)
    ref = _reference(x, grad_out, norm.weight if affine else None, norm.bias if affine else None)
    tol = 1e-5 if dtype == torch.float32 else 1e-12
    torch.testing.assert_close(got.double(), ref, atol=tol, rtol=tol)


def test_guarded_gradient_passes_gradcheck_at_batch_1_with_channels_last_grads():
    """Finite differences, float64: the channels-last upstream gradient comes from a permute, as in
    the official CUT patch sampler (NHWC -> flatten)."""
    norm = InstanceNorm2d(4)
    g = torch.Generator().manual_seed(3)
    x = torch.randn(1, 4, 5, 4, generator=g, dtype=torch.float64, requires_grad=True)
    w = torch.randn(5 * 4, 4, generator=g, dtype=torch.float64)

    def f(inp):
        y = norm(inp)                                     # (1, C, H, W)
        return (y.permute(0, 2, 3, 1).reshape(-1, 4) * w).sum(1).square()  # grad arrives NHWC-strided

    assert torch.autograd.gradcheck(f, (x,), eps=1e-6, atol=1e-7, rtol=1e-5)


def test_forward_is_bitwise_nn_instancenorm_and_state_dict_is_the_same():
    x = torch.randn(1, 6, 9, 7, generator=torch.Generator().manual_seed(0))
    ours, theirs = InstanceNorm2d(6, affine=True), nn.InstanceNorm2d(6, affine=True)
    theirs.load_state_dict(ours.state_dict())
    assert isinstance(ours, nn.InstanceNorm2d)
    assert torch.equal(ours(x), theirs(x))
    assert ours.state_dict().keys() == theirs.state_dict().keys()
    with torch.no_grad():  # no hook without autograd
        assert torch.equal(ours(x.requires_grad_(True)), theirs(x))


def test_unbatched_input_is_guarded_too():
    x = torch.randn(8, 6, 5, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    go = torch.randn(1, 8, 6, 5, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    go = go.contiguous(memory_format=CL)[0]  # (C, H, W) with strides (1, W*C, C)
    got = _grads(InstanceNorm2d(8), x, go)
    ref = _reference(x[None], go[None])[0]
    torch.testing.assert_close(got, ref, atol=1e-12, rtol=1e-12)


def test_guard_holds_with_an_inplace_op_after_the_norm():
    x = torch.randn(1, 8, 6, 5, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    go = torch.randn(1, 8, 6, 5, generator=torch.Generator().manual_seed(5), dtype=torch.float64).contiguous(
        memory_format=CL)
    got = _grads(InstanceNorm2d(8), x, go, after=torch.relu_)
    torch.testing.assert_close(got, _reference(x, go, after=torch.relu), atol=1e-12, rtol=1e-12)


def test_library_networks_use_the_guarded_norm():
    from dehazelab.models.patchgan import PatchGANDiscriminator
    from dehazelab.models.resnet_generator import ResnetGenerator

    for net in (ResnetGenerator(ngf=4, n_blocks=1), PatchGANDiscriminator(ndf=4, n_layers=2)):
        norms = [m for m in net.modules() if isinstance(m, nn.InstanceNorm2d)]
        assert norms and all(type(m) is InstanceNorm2d for m in norms)


def test_report_whether_this_torch_still_has_the_defect():
    """Not a pass/fail of the library: tells whether the guard is still needed on this torch."""
    if not instance_norm_defect_present():
        pytest.skip(f"torch {torch.__version__}: instance_norm's batch-1 channels-last backward is right here; "
                    "dehazelab.models.norm's guard is no longer needed on this version")
    # present: then the plain module is wrong where the guarded one is right (the test above)
    x = torch.randn(1, 8, 6, 5, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    go = torch.randn(1, 8, 6, 5, generator=torch.Generator().manual_seed(1), dtype=torch.float64).contiguous(
        memory_format=CL)
    ref = _reference(x, go)
    assert not torch.allclose(_grads(nn.InstanceNorm2d(8), x, go), ref, atol=1e-6)
    torch.testing.assert_close(_grads(InstanceNorm2d(8), x, go), ref, atol=1e-12, rtol=1e-12)


@pytest.mark.parametrize("name", ["fastcut", "cyclegan", "cddgan"])
def test_guard_is_bitwise_a_noop_in_default_contiguous_training(name, monkeypatch):
    """Default (contiguous) training at batch 1 never hands an InstanceNorm a non-contiguous
    gradient, so the guard changes no bit of it: results trained before the guard stay valid."""
    import copy
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import ddp_worker
    from test_cuda import TINY_UNPAIRED

    from dehazelab.data.datasets import UnpairedDataset
    from dehazelab.methods import build_method

    torch.manual_seed(0)
    guarded = build_method(name, **TINY_UNPAIRED[name])
    plain = copy.deepcopy(guarded)
    ds = UnpairedDataset(ddp_worker.images(2, 1, 32, 32), ddp_worker.images(2, 2, 32, 32), crop=32, augment=False,
                         seed=3)
    batch = torch.utils.data.default_collate([ds[0]])
    for step in range(2):
        torch.manual_seed(step)
        guarded.train_step(batch, step)
        with monkeypatch.context() as mp:
            mp.setattr(InstanceNorm2d, "forward", nn.InstanceNorm2d.forward)
            torch.manual_seed(step)
            plain.train_step(batch, step)
    for net in guarded.nets:
        for (k, p), (_, q) in zip(guarded.nets[net].named_parameters(), plain.nets[net].named_parameters()):
            assert torch.equal(p, q), f"{net}.{k}"
