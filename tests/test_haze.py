"""The atmospheric scattering model: synthesis, inversion, recovery of t and A, the motorcycle depth."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from dehazelab.data import haze
from dehazelab.data.haze import (
    estimate_airlight_from_pair,
    invert,
    motorcycle_depth,
    synthesize,
    transmission,
    transmission_from_pair,
)
from dehazelab.data.layouts import find_pairs, load_pair
from dehazelab.paths import data_root


def _scene(seed=0, h=24, w=32):
    rng = np.random.default_rng(seed)
    return rng.random((h, w, 3)).astype(np.float32), rng.random((h, w)).astype(np.float32)


def test_synthesize_matches_the_formula_pixelwise():
    J, d = _scene()
    A = np.array([0.9, 0.8, 0.7], np.float32)
    I, t = synthesize(J, d, 1.3, A)
    assert I.shape == J.shape and t.shape == d.shape and I.dtype == np.float32
    for y, x, c in [(0, 0, 0), (5, 7, 1), (23, 31, 2)]:
        tt = math.exp(-1.3 * float(d[y, x]))
        assert t[y, x] == pytest.approx(tt, rel=1e-6)
        assert I[y, x, c] == pytest.approx(float(J[y, x, c]) * tt + float(A[c]) * (1 - tt), abs=1e-6)


@pytest.mark.parametrize("A", [0.85, (0.95, 0.9, 0.8)])
def test_invert_undoes_synthesize_numpy(A):
    J, d = _scene(1)
    I, t = synthesize(J, d, 1.5, A)
    assert t.min() >= math.exp(-1.5) - 1e-6 > 0.1  # every t above t_min: inversion is exact
    np.testing.assert_allclose(invert(I, t, A), J, atol=2e-6)


def test_invert_undoes_synthesize_torch_batch_per_sample_params():
    J, d = _scene(2)
    Jt = torch.from_numpy(np.stack([J, J[::-1].copy()])).permute(0, 3, 1, 2)  # B x 3 x H x W
    dt = torch.from_numpy(np.stack([d, d * 0.5]))
    beta = torch.tensor([0.8, 1.7])
    A = torch.tensor([[0.9, 0.85, 0.8], [0.7, 0.75, 1.0]])
    I, t = synthesize(Jt, dt, beta, A)
    assert I.shape == Jt.shape and t.shape == dt.shape
    torch.testing.assert_close(invert(I, t, A), Jt, atol=2e-6, rtol=0)
    # sample 1 alone, through numpy, gives the same numbers
    I1, _ = synthesize(J[::-1].copy(), d * 0.5, 1.7, [0.7, 0.75, 1.0])
    np.testing.assert_allclose(I[1].permute(1, 2, 0).numpy(), I1, atol=1e-6)


def test_torch_gradients_flow_through_synthesize():
    J = torch.rand(1, 3, 8, 8, requires_grad=True)
    I, t = synthesize(J, torch.rand(1, 8, 8), 1.0, 0.9)
    I.sum().backward()
    torch.testing.assert_close(J.grad, t.unsqueeze(1).expand_as(J))  # dI/dJ = t


def test_transmission_in_unit_interval_and_monotone_in_depth():
    d = np.linspace(0, 3, 50, dtype=np.float32)
    t = transmission(d, 0.9)
    assert t[0] == 1.0 and np.all(t > 0) and np.all(t <= 1)
    assert np.all(np.diff(t) < 0)  # strictly decreasing with depth for beta > 0
    np.testing.assert_array_equal(transmission(d, 0.0), np.ones_like(d))
    with pytest.raises(ValueError):
        transmission(-d - 1, 1.0)


def test_invert_applies_t_min_and_clip():
    I = np.full((2, 2, 3), 0.5, np.float32)
    t = np.array([[0.05, 0.5], [1.0, 0.1]], np.float32)
    J = invert(I, t, 1.0, t_min=0.1)
    expected = (0.5 - 1.0) / np.maximum(t, 0.1) + 1.0
    np.testing.assert_allclose(J[..., 0], expected, rtol=1e-6)
    assert J.min() < 0 and invert(I, t, 1.0, clip=True).min() == 0.0


def test_transmission_from_pair_recovers_t_and_A():
    J, d = _scene(3)
    A = np.array([0.92, 0.85, 0.78], np.float32)
    I, t = synthesize(J, d, 1.2, A)
    t_est, A_est = transmission_from_pair(I, J)
    np.testing.assert_allclose(A_est, A, atol=1e-4)
    np.testing.assert_allclose(t_est, t, atol=1e-4)
    t_given, A_given = transmission_from_pair(I, J, A=A)
    np.testing.assert_array_equal(A_given, A)
    np.testing.assert_allclose(t_given, t, atol=1e-5)


def test_transmission_from_pair_after_8bit_quantisation_is_close():
    J, d = _scene(4, 64, 64)
    I, t = synthesize(J, d, 1.0, 0.9)
    q = lambda x: np.round(x * 255) / 255  # noqa: E731 - test helper
    t_est, A_est = transmission_from_pair(q(I), q(J))
    assert np.abs(A_est - 0.9).max() < 0.01
    assert np.nanmedian(np.abs(t_est - t)) < 0.01


def test_unidentifiable_pixels_are_nan_and_parallel_lines_raise():
    J, d = _scene(5, 8, 8)
    J[0, 0] = 0.9  # equal to A: haze cannot change this pixel
    I, _ = synthesize(J, d, 1.0, 0.9)
    t_est, _ = transmission_from_pair(I, J, A=0.9, fill="nan")
    assert np.isnan(t_est[0, 0]) and np.isfinite(t_est[1:]).all()
    filled, _ = transmission_from_pair(I, J, A=0.9)  # default: nearest identifiable pixel's t
    assert np.isfinite(filled).all() and filled[0, 0] in (t_est[0, 1], t_est[1, 0], t_est[1, 1])
    np.testing.assert_array_equal(filled[1:], t_est[1:])
    with pytest.raises(ValueError, match="fill"):
        transmission_from_pair(I, J, A=0.9, fill="zero")
    grey = np.repeat(J[..., :1], 3, axis=2)  # grey scene, grey light: every line lies on the diagonal
    Ig, _ = synthesize(grey, d, 1.0, 0.9)
    with pytest.raises(ValueError, match="pass A"):
        estimate_airlight_from_pair(Ig, grey)


def test_motorcycle_depth_from_the_disparity():
    skdata = pytest.importorskip("skimage.data")
    _, _, disp = skdata.stereo_motorcycle()
    left, d = motorcycle_depth()
    assert left.shape == (*disp.shape, 3) and left.dtype == np.float32 and 0 <= left.min() and left.max() <= 1
    assert d.shape == disp.shape and d.dtype == np.float32
    assert np.isfinite(d).all() and d.min() == 0.0 and d.max() == 1.0
    _, metres = motorcycle_depth(normalise=False)
    valid = np.isfinite(disp) & (disp > 0)
    assert 0.8 < valid.mean() < 1.0  # the file really has invalid pixels to fill
    # depth * (disparity + doffs) is the constant baseline * focal wherever the disparity is valid
    prod = metres[valid] * (disp[valid] + haze.MOTORCYCLE_DOFFS_PX) * 1000
    np.testing.assert_allclose(prod, haze.MOTORCYCLE_FOCAL_PX * haze.MOTORCYCLE_BASELINE_MM, rtol=1e-4)
    assert 1.5 < metres.min() and metres.max() < 6.0
    # larger disparity = nearer: depth order is the reverse of disparity order
    assert np.corrcoef(d[valid], 1.0 / (disp[valid] + haze.MOTORCYCLE_DOFFS_PX))[0, 1] > 0.999


def test_real_sots_transmission_falls_with_haze_level():
    root = data_root()
    if root is None or not (root / "sots-indoor").is_dir():
        pytest.skip("sots-indoor not available")
    pairs = [p for p in find_pairs(root / "sots-indoor") if p.scene == "1400"]
    means = []
    for p in pairs:
        hazy, clear = load_pair(p)
        t, A = transmission_from_pair(hazy, clear, fill="nan")
        assert np.all((A > 0.7) & (A <= 1.05))
        assert np.isnan(t).mean() < 0.05
        means.append(float(np.nanmean(t)))
    assert [p.level for p in pairs] == ["1", "3", "5", "7", "9"]
    assert all(a > b for a, b in zip(means, means[1:])), means
