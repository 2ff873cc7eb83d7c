"""dehazelab.metrics: the three metric conventions against independent computations."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy import ndimage
from scipy.signal.windows import gaussian as scipy_gaussian
from skimage import data, img_as_float
from skimage.filters import gaussian as skimage_blur
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from dehazelab import metrics as M


def _rgb(img) -> np.ndarray:
    return img_as_float(img).astype(np.float32)


def _noisy(img, sigma, seed):
    rng = np.random.default_rng(seed)
    return np.clip(img + rng.normal(0.0, sigma, img.shape), 0, 1).astype(np.float32)


def _t(img: np.ndarray) -> torch.Tensor:
    """numpy HxWx3 -> torch 3xHxW float32."""
    return torch.from_numpy(np.ascontiguousarray(img)).permute(2, 0, 1).float()


def _real_pairs():
    """Real photographs with realistic degradations (noise, blur, contrast loss), several sizes."""
    astro = _rgb(data.astronaut())[100:356, 120:420]  # 256x300
    chelsea = _rgb(data.chelsea())  # 300x451
    coffee = _rgb(data.coffee())[::2, ::2]  # 200x300
    hazy_coffee = (0.6 * coffee + 0.4 * np.array([0.9, 0.9, 0.95], np.float32)).astype(np.float32)
    return [
        (_noisy(astro, 0.08, 1), astro),
        (skimage_blur(chelsea, sigma=2, channel_axis=-1).astype(np.float32), chelsea),
        (hazy_coffee, coffee),
    ]


def _random_pairs():
    rng = np.random.default_rng(7)
    out = []
    for h, w in [(7, 7), (31, 45), (64, 64)]:
        gt = rng.random((h, w, 3), dtype=np.float32)
        pred = np.clip(gt + rng.normal(0, 0.2, gt.shape), 0, 1).astype(np.float32)
        out.append((pred, gt))
    # an unrelated pair (SSIM near 0) and a near-identical bright pair (cancellation-prone)
    out.append((rng.random((40, 33, 3), dtype=np.float32), rng.random((40, 33, 3), dtype=np.float32)))
    gt = (0.9 + 0.05 * rng.random((50, 50, 3))).astype(np.float32)
    out.append(((gt + 0.001 * rng.standard_normal(gt.shape)).astype(np.float32), gt))
    return out


# ---------------------------------------------------------------------------------------------
# reported convention (scikit-image wrappers)
# ---------------------------------------------------------------------------------------------


def test_psnr_ssim_match_skimage_on_numpy_and_torch():
    pred, gt = _real_pairs()[0]
    ref_p = peak_signal_noise_ratio(gt, pred, data_range=1.0)
    ref_s = structural_similarity(gt, pred, data_range=1.0, channel_axis=-1)
    assert M.psnr(pred, gt) == pytest.approx(ref_p, abs=1e-9)
    assert M.ssim(pred, gt) == pytest.approx(ref_s, abs=1e-9)
    # torch 3xHxW and 1x3xHxW give the same numbers
    assert M.psnr(_t(pred), _t(gt)) == pytest.approx(ref_p, abs=1e-6)
    assert M.ssim(_t(pred)[None], _t(gt)[None]) == pytest.approx(ref_s, abs=1e-6)


def test_psnr_known_value_and_identity():
    gt = np.full((8, 8, 3), 0.5, np.float32)
    pred = gt + np.float32(0.1)  # MSE 0.01 -> 20 dB
    assert M.psnr(pred, gt) == pytest.approx(20.0, abs=1e-4)
    assert M.psnr(gt, gt) == math.inf
    assert M.ssim(gt, gt) == pytest.approx(1.0)


def test_inputs_are_clipped_to_unit_range():
    rng = np.random.default_rng(0)
    gt = rng.random((16, 16, 3), dtype=np.float32)
    pred = gt.copy()
    pred[:4] = 1.7  # out of range
    pred[4:8] = -0.3
    clipped = np.clip(pred, 0, 1)
    assert M.psnr(pred, gt) == pytest.approx(M.psnr(clipped, gt))
    assert M.ssim(pred, gt) == pytest.approx(M.ssim(clipped, gt))
    assert M.ssim_ffa(pred, gt) == pytest.approx(M.ssim_ffa(clipped, gt))
    assert M.psnr_ffa(pred, gt) == pytest.approx(M.psnr_ffa(clipped, gt))
    tp, tg = _t(pred)[None], _t(gt)[None]
    assert float(M.batch_psnr(tp, tg)) == pytest.approx(M.psnr(clipped, gt), abs=1e-4)
    assert float(M.batch_ssim(tp, tg)) == pytest.approx(M.ssim(clipped, gt), abs=1e-4)


@pytest.mark.parametrize("fn", [M.psnr, M.ssim, M.ssim_ffa, M.psnr_ffa, M.evaluate_pair])
def test_shape_mismatch_names_both_shapes(fn):
    a = np.zeros((10, 12, 3), np.float32)
    b = np.zeros((10, 13, 3), np.float32)
    with pytest.raises(ValueError, match=r"10, 12.*10, 13"):
        fn(a, b)


@pytest.mark.parametrize("fn", [M.psnr, M.ssim])
def test_wrong_ndim_or_layout_is_rejected(fn):
    with pytest.raises(ValueError, match=r"\(10, 12\)"):
        fn(np.zeros((10, 12), np.float32), np.zeros((10, 12), np.float32))
    with pytest.raises(ValueError, match=r"3, 10, 12"):  # numpy must be HxWx3, not CHW
        fn(np.zeros((3, 10, 12), np.float32), np.zeros((3, 10, 12), np.float32))
    with pytest.raises(ValueError, match=r"2, 3, 10, 12"):  # a real batch is not one image
        fn(torch.zeros(2, 3, 10, 12), torch.zeros(2, 3, 10, 12))


def test_batched_metrics_reject_wrong_shapes():
    with pytest.raises(ValueError, match=r"\(3, 8, 8\)"):
        M.batch_psnr(torch.zeros(3, 8, 8), torch.zeros(3, 8, 8))
    with pytest.raises(ValueError, match=r"\(2, 3, 8, 8\).*\(2, 3, 8, 9\)"):
        M.batch_ssim(torch.zeros(2, 3, 8, 8), torch.zeros(2, 3, 8, 9))
    with pytest.raises(ValueError, match="smaller than the SSIM window"):
        M.batch_ssim(torch.zeros(1, 3, 6, 8), torch.zeros(1, 3, 6, 8))


# ---------------------------------------------------------------------------------------------
# AECR-Net / FFA convention
# ---------------------------------------------------------------------------------------------


def _ssim_ffa_scipy(pred: np.ndarray, gt: np.ndarray) -> float:
    """Independent float64 scipy computation of the zero-padded Gaussian SSIM (11x11, sigma 1.5)."""
    g1 = scipy_gaussian(11, std=1.5)
    k = np.outer(g1, g1)
    k /= k.sum()
    x = np.clip(pred.astype(np.float64), 0, 1)
    y = np.clip(gt.astype(np.float64), 0, 1)
    vals = []
    for c in range(3):
        a, b = x[..., c], y[..., c]

        def f(z):
            return ndimage.convolve(z, k, mode="constant", cval=0.0)

        mu_a, mu_b = f(a), f(b)
        va = f(a * a) - mu_a**2
        vb = f(b * b) - mu_b**2
        cov = f(a * b) - mu_a * mu_b
        c1, c2 = 0.01**2, 0.03**2
        vals.append(((2 * mu_a * mu_b + c1) * (2 * cov + c2)) / ((mu_a**2 + mu_b**2 + c1) * (va + vb + c2)))
    return float(np.mean(vals))


def test_ssim_ffa_of_identical_images_is_one():
    for _, gt in _real_pairs():
        assert M.ssim_ffa(gt, gt) == pytest.approx(1.0, abs=1e-6)
        assert M.ssim_ffa(_t(gt), _t(gt)) == pytest.approx(1.0, abs=1e-6)


@pytest.mark.parametrize("i", range(3))
def test_ssim_ffa_matches_independent_scipy_computation(i):
    pred, gt = _real_pairs()[i]
    ref = _ssim_ffa_scipy(pred, gt)
    assert M.ssim_ffa(pred, gt) == pytest.approx(ref, abs=1e-5)
    assert M.ssim_ffa(_t(pred), _t(gt)) == pytest.approx(ref, abs=1e-5)


def test_ssim_ffa_differs_measurably_from_skimage_on_real_pairs():
    diffs = [abs(M.ssim_ffa(p, g) - M.ssim(p, g)) for p, g in _real_pairs()]
    # the conventions differ (window, covariance normalisation, zero-padded borders): not a rounding
    # error; the differences are several 1e-3 or more on these pairs
    assert min(diffs) > 2e-3, diffs


def test_ssim_ffa_zero_padding_changes_the_border():
    # Two constant images c+d and c: in the interior the FFA map is the closed-form luminance term
    # (variances are 0), but zero padding shrinks the local means and creates spurious variance at
    # the border, so the corner value differs. (float64 here: in float32 E[x^2]-E[x]^2 cancellation
    # moves the interior value by ~1e-4, as in the official float32 code.)
    c, d = 0.5, 0.1
    p = torch.full((1, 3, 32, 32), c + d, dtype=torch.float64)
    g = torch.full((1, 3, 32, 32), c, dtype=torch.float64)
    smap = M._ssim_map_ffa(p, g)
    lum = (2 * c * (c + d) + 1e-4) / (c**2 + (c + d) ** 2 + 1e-4)
    assert float(smap[0, 0, 16, 16]) == pytest.approx(lum, abs=1e-9)
    assert abs(float(smap[0, 0, 0, 0]) - lum) > 1e-3


def test_psnr_ffa_equals_rgb_rmse_formula():
    pred, gt = _real_pairs()[0]
    rmse = np.sqrt(np.mean((pred.astype(np.float64) - gt.astype(np.float64)) ** 2))
    assert M.psnr_ffa(pred, gt) == pytest.approx(20 * np.log10(1 / rmse), abs=1e-6)
    assert M.psnr_ffa(pred, gt) == pytest.approx(M.psnr(pred, gt), abs=1e-4)
    assert M.psnr_ffa(gt, gt) == math.inf


# ---------------------------------------------------------------------------------------------
# batched torch metrics == scikit-image
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["real", "random"])
def test_batch_metrics_equal_skimage(kind):
    pairs = _real_pairs() if kind == "real" else _random_pairs()
    for pred, gt in pairs:
        ref_s = structural_similarity(gt.astype(np.float64), pred.astype(np.float64), data_range=1.0, channel_axis=-1)
        ref_p = peak_signal_noise_ratio(gt.astype(np.float64), pred.astype(np.float64), data_range=1.0)
        s = M.batch_ssim(_t(pred)[None], _t(gt)[None])
        p = M.batch_psnr(_t(pred)[None], _t(gt)[None])
        assert s.shape == (1,) and p.shape == (1,)
        assert float(s) == pytest.approx(ref_s, abs=1e-4), pred.shape
        assert float(p) == pytest.approx(ref_p, abs=1e-4), pred.shape


def test_batch_metrics_are_per_image():
    pairs = _random_pairs()[1:3]  # different sizes: crop to the common size
    h, w = 31, 45
    preds = torch.stack([_t(p[:h, :w]) for p, _ in pairs])
    gts = torch.stack([_t(g[:h, :w]) for _, g in pairs])
    s = M.batch_ssim(preds, gts)
    p = M.batch_psnr(preds, gts)
    assert s.shape == (2,) and p.shape == (2,)
    for i, (pr, g) in enumerate(pairs):
        assert float(s[i]) == pytest.approx(M.ssim(pr[:h, :w], g[:h, :w]), abs=1e-4)
        assert float(p[i]) == pytest.approx(M.psnr(pr[:h, :w], g[:h, :w]), abs=1e-4)
    assert float(s[0]) != pytest.approx(float(s[1]), abs=1e-3)  # not a batch mean


def test_batch_metrics_identity_and_device():
    x = torch.rand(2, 3, 16, 16)
    assert torch.allclose(M.batch_ssim(x, x), torch.ones(2), atol=1e-5)
    assert torch.isinf(M.batch_psnr(x, x)).all()
    assert M.batch_ssim(x, x).device == x.device


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_batch_metrics_on_cuda_match_cpu():  # pragma: no cover - no GPU on the dev machine
    pred, gt = _real_pairs()[0]
    tp, tg = _t(pred)[None], _t(gt)[None]
    s = M.batch_ssim(tp.cuda(), tg.cuda())
    assert s.device.type == "cuda"
    assert float(s) == pytest.approx(float(M.batch_ssim(tp, tg)), abs=1e-5)
    assert M.ssim_ffa(tp.cuda(), tg.cuda()) == pytest.approx(M.ssim_ffa(tp, tg), abs=1e-5)


def test_batch_ssim_is_differentiable():
    gt = torch.rand(1, 3, 16, 16)
    pred = (gt + 0.1 * torch.randn_like(gt)).clamp(0, 1).requires_grad_(True)
    M.batch_ssim(pred, gt).sum().backward()
    assert pred.grad is not None and torch.isfinite(pred.grad).all() and pred.grad.abs().sum() > 0


def test_evaluate_pair_keys_and_values():
    pred, gt = _real_pairs()[1]
    out = M.evaluate_pair(pred, gt)
    assert set(out) == {"psnr", "ssim", "ssim_ffa"}
    assert out["psnr"] == pytest.approx(M.psnr(pred, gt))
    assert out["ssim"] == pytest.approx(M.ssim(pred, gt))
    assert out["ssim_ffa"] == pytest.approx(M.ssim_ffa(pred, gt))
    assert all(isinstance(v, float) for v in out.values())


# ---- colour error (CIEDE2000) ----------------------------------------------------------------------


def _srgb_to_L(v: float) -> float:
    """CIE L* of an sRGB gray level v in [0, 1] (D65): the sRGB transfer curve, then the L* formula."""
    lin = v / 12.92 if v <= 0.04045 else ((v + 0.055) / 1.055) ** 2.4
    return 116.0 * lin ** (1 / 3) - 16.0 if lin > (6 / 29) ** 3 else 903.3 * lin


def test_delta_e_of_two_grays_matches_the_ciede2000_lightness_term():
    from dehazelab.metrics import delta_e

    # two grays have a* = b* = 0, so CIEDE2000 reduces to |ΔL| / S_L with
    # S_L = 1 + 0.015 (L̄ - 50)² / sqrt(20 + (L̄ - 50)²)   (Sharma et al. 2005, eq. 9-10)
    a, b = 0.3, 0.55
    La, Lb = _srgb_to_L(a), _srgb_to_L(b)
    Lm = (La + Lb) / 2
    expected = abs(Lb - La) / (1 + 0.015 * (Lm - 50) ** 2 / math.sqrt(20 + (Lm - 50) ** 2))
    got = delta_e(np.full((8, 9, 3), a), np.full((8, 9, 3), b))
    assert got == pytest.approx(expected, rel=1e-3)


def test_delta_e_is_zero_on_identity_and_batch_matches_single():
    from dehazelab.metrics import batch_delta_e, delta_e

    g = torch.Generator().manual_seed(0)
    x, y = torch.rand(3, 3, 16, 12, generator=g), torch.rand(3, 3, 16, 12, generator=g)
    assert torch.all(batch_delta_e(x, x) == 0)
    batch = batch_delta_e(x, y)
    assert batch.shape == (3,)
    assert batch.tolist() == pytest.approx([delta_e(a, b) for a, b in zip(x, y)])
    # a colour cast costs more than the same change spread over lightness only
    gray = torch.full((1, 3, 8, 8), 0.5)
    cast = gray.clone()
    cast[:, 0] += 0.2
    assert float(batch_delta_e(cast, gray)) > float(batch_delta_e(gray + 0.2 / 3, gray))
