"""DFE: the grid_sample formulation equals torchvision's deform_conv2d (forward and gradients)."""

import pytest
import torch
from torchvision.ops import deform_conv2d

from dehazelab.models.dfe import DFE, deform_conv2d_grid_sample, resolve_backend


def _rel(a, b):
    return ((a - b).norm() / b.norm().clamp_min(1e-12)).item()


@pytest.mark.parametrize(
    "b,c,o,h,w,stride,padding,dilation",
    [(2, 4, 5, 7, 6, 1, 1, 1), (2, 3, 4, 9, 8, 2, 1, 1), (1, 2, 3, 6, 5, 1, 2, 2), (2, 3, 2, 1, 1, 1, 1, 1)],
)
def test_functional_matches_torchvision_float64(b, c, o, h, w, stride, padding, dilation):
    g = torch.Generator().manual_seed(0)
    ho = (h + 2 * padding - 2 * dilation - 1) // stride + 1
    wo = (w + 2 * padding - 2 * dilation - 1) // stride + 1
    kw = dict(dtype=torch.float64)
    x = torch.randn(b, c, h, w, generator=g, **kw).requires_grad_()
    # fractional offsets of a few pixels: many taps land between pixels, some outside the image
    off = (torch.randn(b, 18, ho, wo, generator=g, **kw) * 2.5).requires_grad_()
    m = torch.rand(b, 9, ho, wo, generator=g, **kw).requires_grad_()
    wt = torch.randn(o, c, 3, 3, generator=g, **kw).requires_grad_()
    bias = torch.randn(o, generator=g, **kw).requires_grad_()
    args = dict(stride=stride, padding=padding, dilation=dilation, mask=m)
    ref = deform_conv2d(x, off, wt, bias, **args)
    got = deform_conv2d_grid_sample(x, off, wt, bias, **args)
    assert got.shape == ref.shape == (b, o, ho, wo)
    torch.testing.assert_close(got, ref, rtol=1e-10, atol=1e-10)
    up = torch.randn(ref.shape, generator=g, **kw)
    gr = torch.autograd.grad(ref, (x, off, m, wt, bias), up)
    gg = torch.autograd.grad(got, (x, off, m, wt, bias), up)
    for name, a, e in zip(("input", "offset", "mask", "weight", "bias"), gg, gr):
        torch.testing.assert_close(a, e, rtol=1e-9, atol=1e-9, msg=f"grad {name}")


def _offsets_outside_fraction(off, h, w):
    """Fraction of sampling points that fall outside [0, H-1]x[0, W-1] (3x3, stride 1, pad 1)."""
    b, _, ho, wo = off.shape
    t = torch.arange(9)
    ki, kj = (t // 3).view(1, 9, 1, 1), (t % 3).view(1, 9, 1, 1)
    py = torch.arange(ho).view(1, 1, -1, 1) - 1 + ki + off[:, 0::2]
    px = torch.arange(wo).view(1, 1, 1, -1) - 1 + kj + off[:, 1::2]
    outside = (py < 0) | (py > h - 1) | (px < 0) | (px > w - 1)
    return outside.float().mean().item()


def test_module_backends_agree_forward_and_parameter_grads():
    torch.manual_seed(0)
    c, h, w = 8, 10, 9
    m = DFE(c, c, backend="torchvision")
    with torch.no_grad():  # non-zero offset conv: offsets of a few pixels, masks away from 0.5
        m.offset_mask.weight.normal_(0, 0.2)
        m.offset_mask.bias.normal_(0, 1.0)
        m.bias.normal_(0, 0.1)
    x0 = torch.randn(2, c, h, w)
    off, mask = m.offsets_and_mask(x0)
    frac_out = _offsets_outside_fraction(off, h, w)
    frac_int = (off - off.round()).abs().lt(1e-3).float().mean().item()
    assert 0.05 < frac_out < 0.7 and frac_int < 0.01, (frac_out, frac_int)
    assert mask.std() > 0.1

    results = {}
    for backend in ("torchvision", "grid_sample"):
        m.backend = backend
        m.zero_grad()
        x = x0.clone().requires_grad_()
        y = m(x)
        (y * torch.linspace(-1, 1, y.numel()).view_as(y)).sum().backward()
        results[backend] = (y.detach(), x.grad, m.offset_mask.weight.grad.clone(),
                            m.offset_mask.bias.grad.clone(), m.weight.grad.clone(), m.bias.grad.clone())
    names = ("output", "input", "offset-conv weight", "offset-conv bias", "weight", "bias")
    for name, a, e in zip(names, results["grid_sample"], results["torchvision"]):
        assert _rel(a, e) < 1e-4, (name, _rel(a, e))


def test_init_is_dcnv2_and_state_dict_keys_do_not_depend_on_backend():
    torch.manual_seed(1)
    c = 32
    mods = {b: DFE(c, c, backend=b) for b in ("auto", "torchvision", "grid_sample")}
    keys = {b: list(m.state_dict()) for b, m in mods.items()}
    assert keys["auto"] == keys["torchvision"] == keys["grid_sample"]
    assert keys["auto"] == ["weight", "bias", "offset_mask.weight", "offset_mask.bias"]
    m = mods["auto"]
    assert m.offset_mask.weight.shape == (27, c, 3, 3)
    assert torch.count_nonzero(m.offset_mask.weight) == 0 and torch.count_nonzero(m.offset_mask.bias) == 0
    assert torch.count_nonzero(m.bias) == 0
    bound = 1 / (c * 9) ** 0.5
    assert m.weight.abs().max() <= bound and m.weight.abs().max() > 0.9 * bound
    # at init: zero offsets, mask 0.5 -> half a plain conv
    x = torch.randn(1, c, 6, 6)
    ref = 0.5 * torch.nn.functional.conv2d(x, m.weight, m.bias, padding=1)
    torch.testing.assert_close(m(x), ref, rtol=1e-5, atol=1e-5)
    # a state dict moves between backends unchanged
    mods["torchvision"].load_state_dict(mods["grid_sample"].state_dict())


def test_backend_resolution_and_validation():
    assert resolve_backend("auto", torch.device("cpu")) == "grid_sample"
    assert resolve_backend("auto", torch.device("cuda")) == "torchvision"
    assert resolve_backend("torchvision", torch.device("cpu")) == "torchvision"
    with pytest.raises(ValueError):
        DFE(4, 4, backend="mmcv")
    with pytest.raises(ValueError):
        deform_conv2d_grid_sample(torch.zeros(1, 2, 5, 5), torch.zeros(1, 18, 4, 4), torch.zeros(3, 2, 3, 3))
