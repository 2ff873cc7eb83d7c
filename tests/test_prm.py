"""IICL Pre-restore Module: exact ASM inversion, ranges, shapes, gradients, size."""

import pytest
import torch

from dehazelab.models.prm import PreRestoreModule, asm_invert


def _scene(b=2, h=16, w=20, seed=0):
    g = torch.Generator().manual_seed(seed)
    J = torch.rand(b, 3, h, w, generator=g)
    t = 0.1 + 0.9 * torch.rand(b, 1, h, w, generator=g)
    A = 0.6 + 0.4 * torch.rand(b, 3, generator=g)
    I = J * t + A[:, :, None, None] * (1 - t)  # the ASM, written out independently
    return J, t, A, I


@pytest.mark.parametrize("a_shape", ["b3", "b311"])
def test_asm_invert_is_exact_with_true_t_and_A(a_shape):
    J, t, A, I = _scene()
    A_in = A if a_shape == "b3" else A[:, :, None, None]
    torch.testing.assert_close(asm_invert(I, t, A_in, t_min=0.1), J, atol=1e-5, rtol=0)


def test_asm_invert_clamps_t_at_t_min():
    J, t, A, I = _scene()
    t_small = torch.full_like(t, 0.02)
    expected = (I - A[:, :, None, None]) / 0.1 + A[:, :, None, None]
    torch.testing.assert_close(asm_invert(I, t_small, A, t_min=0.1), expected, atol=1e-5, rtol=0)


def test_asm_invert_gradients_reach_t_and_A():
    J, t, A, I = _scene()
    t = t.clone().requires_grad_(True)
    A = A.clone().requires_grad_(True)
    asm_invert(I, t, A).square().mean().backward()
    assert torch.isfinite(t.grad).all() and t.grad.abs().sum() > 0
    assert torch.isfinite(A.grad).all() and A.grad.abs().sum() > 0


def _expected_params(w):
    trunk = (3 * w * 9 + w) + 4 * (w * w * 9 + w)
    t_head = w * 9 + 1
    a_head = (2 * w * w + w) + (w * 3 + 3)
    return trunk + t_head + a_head


@pytest.mark.parametrize("width", [8, 16])
def test_prm_parameter_count(width):
    n = sum(p.numel() for p in PreRestoreModule(width=width).parameters())
    assert n == _expected_params(width)
    if width == 16:
        assert 10_000 <= n <= 30_000


def test_prm_shapes_ranges_and_consistent_inversion():
    torch.manual_seed(0)
    prm = PreRestoreModule(width=8, t_min=0.2)
    I = torch.rand(2, 3, 24, 36)
    j0, t, A = prm(I)
    assert j0.shape == I.shape and t.shape == (2, 1, 24, 36) and A.shape == (2, 3)
    assert t.min() >= 0.2 - 1e-6 and t.max() <= 1.0
    assert (A > 0).all() and (A < 1).all()
    # J0 is the ASM inversion of I with the predicted t and A
    expected = (I - A[:, :, None, None] * (1 - t)) / t
    torch.testing.assert_close(j0, expected, atol=1e-5, rtol=1e-5)


def test_prm_initial_outputs_follow_t_init_and_A_init():
    prm = PreRestoreModule(width=8, t_min=0.1, t_init=0.7, A_init=0.9)
    with torch.no_grad():  # remove the input-dependent part: only the biases remain
        prm.t_head.weight.zero_()
        prm.a_head[-1].weight.zero_()
    _, t, A = prm(torch.rand(1, 3, 8, 8))
    torch.testing.assert_close(t, torch.full_like(t, 0.7))
    torch.testing.assert_close(A, torch.full_like(A, 0.9))


def test_prm_gradients_finite_everywhere():
    torch.manual_seed(1)
    prm = PreRestoreModule(width=8)
    I, J = torch.rand(2, 3, 16, 16), torch.rand(2, 3, 16, 16)
    j0, t, A = prm(I)
    torch.nn.functional.l1_loss(j0, J).backward()
    for name, p in prm.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
    assert prm.t_head.weight.grad.abs().sum() > 0 and prm.a_head[-1].weight.grad.abs().sum() > 0


def test_prm_rejects_bad_arguments():
    with pytest.raises(ValueError):
        PreRestoreModule(t_min=0.0)
    with pytest.raises(ValueError):
        PreRestoreModule(t_min=0.5, t_init=0.4)
    with pytest.raises(ValueError):
        PreRestoreModule()(torch.rand(1, 1, 8, 8))
