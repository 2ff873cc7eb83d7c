"""Image-quality metrics for dehazing: three conventions, named so nobody mixes them up.

1. **Reported convention** (what the workbook's tables use): :func:`psnr` and :func:`ssim` are thin
   wrappers around scikit-image on a single numpy ``HxWx3`` float image in [0, 1]:
   ``peak_signal_noise_ratio(gt, pred, data_range=1.0)`` and
   ``structural_similarity(gt, pred, data_range=1.0, channel_axis=-1)`` — i.e. skimage's defaults:
   uniform 7x7 window, sample covariance (``N/(N-1)``), K1 = 0.01, K2 = 0.03, the mean of the SSIM map
   over the *valid* region only (skimage crops ``(7-1)/2 = 3`` pixels per border before averaging),
   averaged over the RGB channels. Both inputs are clipped to [0, 1] first.

2. **AECR-Net / FFA-Net convention** (methods.md §1.9): :func:`ssim_ffa` and :func:`psnr_ffa`. The
   official evaluation code (FFA-Net's ``metrics.py``, reused by AECR-Net, itself the widespread
   "pytorch-ssim" recipe) clamps both images to [0, 1] and computes SSIM with an 11x11 Gaussian window
   (sigma 1.5), C1 = 0.01², C2 = 0.03², per RGB channel via a grouped convolution with **zero padding
   of 5**, so border pixels are included and the zeros pull the border statistics down; the SSIM map is
   averaged over everything (channels and pixels). PSNR is ``20·log10(1/RMSE)`` over all RGB pixels.
   It is the papers' convention, so it is written out here in torch (a hand-written Gaussian SSIM).
   Numbers in this convention are *not* comparable with (1); the difference is shown in the notebooks.

3. **Batched torch metrics for validation inside training**: :func:`batch_psnr` and
   :func:`batch_ssim` take ``Bx3xHxW`` tensors on any device and return one value per image. They are
   designed to reproduce convention (1) exactly (tested against scikit-image to 1e-4), so a validation
   curve and the final table speak the same language without a GPU→numpy round trip.

Colour error: :func:`delta_e` / :func:`batch_delta_e` are the mean CIEDE2000 difference between the
two images (scikit-image's ``rgb2lab`` + ``deltaE_ciede2000``, sRGB input, D65): ~1 is a just
noticeable difference, a sepia or pink cast is 10 or more. Lower is better.

:func:`evaluate_pair` returns the three numbers most tables need for one image pair.

Shapes: numpy images are ``HxWx3``; torch images are ``3xHxW`` (or ``1x3xHxW``) for the single-image
functions and ``Bx3xHxW`` for the batched ones. A shape mismatch or a wrong number of dimensions raises
a ``ValueError`` that names both shapes. Centre-cropping a larger ground truth to the prediction (as
the AECR-Net loader does for SOTS) is the data loader's job, not the metric's.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

__all__ = [
    "psnr",
    "ssim",
    "psnr_ffa",
    "ssim_ffa",
    "batch_psnr",
    "batch_ssim",
    "delta_e",
    "batch_delta_e",
    "evaluate_pair",
    "gaussian_window",
]

# ----------------------------------------------------------------------------------------------
# input handling
# ----------------------------------------------------------------------------------------------


def _to_numpy_hwc(img, name: str) -> np.ndarray:
    """One image as a float numpy ``HxWx3`` array (torch ``3xHxW`` / ``1x3xHxW`` is transposed)."""
    if isinstance(img, torch.Tensor):
        t = img.detach()
        if t.ndim == 4 and t.shape[0] == 1:
            t = t[0]
        if t.ndim != 3 or t.shape[0] != 3:
            raise ValueError(
                f"{name}: expected a torch image of shape (3, H, W) or (1, 3, H, W), got {tuple(img.shape)}"
            )
        arr = t.permute(1, 2, 0).to("cpu", torch.float64 if t.dtype == torch.float64 else torch.float32).numpy()
    else:
        arr = np.asarray(img)
        if arr.ndim != 3 or arr.shape[-1] != 3:
            raise ValueError(f"{name}: expected a numpy image of shape (H, W, 3), got {arr.shape}")
        if not np.issubdtype(arr.dtype, np.floating):
            raise ValueError(f"{name}: expected a float image in [0, 1], got dtype {arr.dtype}")
    return arr


def _pair_numpy(pred, gt) -> tuple[np.ndarray, np.ndarray]:
    p = _to_numpy_hwc(pred, "pred")
    g = _to_numpy_hwc(gt, "gt")
    if p.shape != g.shape:
        raise ValueError(f"shape mismatch: pred {p.shape} vs gt {g.shape} (both must be (H, W, 3))")
    return np.clip(p, 0.0, 1.0), np.clip(g, 0.0, 1.0)


def _to_torch_b3hw(img, name: str) -> torch.Tensor:
    """Image(s) as a float ``Bx3xHxW`` tensor: numpy ``HxWx3`` / ``BxHxWx3``, torch ``3xHxW`` / ``Bx3xHxW``."""
    if isinstance(img, torch.Tensor):
        t = img
        if t.ndim == 3:
            t = t.unsqueeze(0)
        if t.ndim != 4 or t.shape[1] != 3:
            raise ValueError(
                f"{name}: expected a torch image of shape (3, H, W) or (B, 3, H, W), got {tuple(img.shape)}"
            )
    else:
        arr = np.asarray(img)
        if arr.ndim == 3:
            arr = arr[None]
        if arr.ndim != 4 or arr.shape[-1] != 3:
            raise ValueError(f"{name}: expected a numpy image of shape (H, W, 3) or (B, H, W, 3), got {np.shape(img)}")
        t = torch.from_numpy(np.ascontiguousarray(arr)).permute(0, 3, 1, 2)
    if not t.is_floating_point():
        raise ValueError(f"{name}: expected a float image in [0, 1], got dtype {t.dtype}")
    return t


def _pair_torch(pred, gt, batched: bool) -> tuple[torch.Tensor, torch.Tensor]:
    if batched:
        for name, x in (("pred", pred), ("gt", gt)):
            if not isinstance(x, torch.Tensor) or x.ndim != 4 or x.shape[1] != 3:
                shape = tuple(x.shape) if hasattr(x, "shape") else type(x).__name__
                raise ValueError(f"{name}: expected a torch tensor of shape (B, 3, H, W), got {shape}")
        p, g = pred, gt
    else:
        p, g = _to_torch_b3hw(pred, "pred"), _to_torch_b3hw(gt, "gt")
    if p.shape != g.shape:
        raise ValueError(f"shape mismatch: pred {tuple(p.shape)} vs gt {tuple(g.shape)}")
    if p.device != g.device:
        raise ValueError(f"device mismatch: pred on {p.device}, gt on {g.device}")
    dtype = torch.promote_types(p.dtype, g.dtype)
    if dtype not in (torch.float32, torch.float64):
        dtype = torch.float32
    return p.to(dtype).clamp(0.0, 1.0), g.to(dtype).clamp(0.0, 1.0)


# ----------------------------------------------------------------------------------------------
# 1. reported convention: scikit-image
# ----------------------------------------------------------------------------------------------


def psnr(pred, gt) -> float:
    """PSNR in dB by scikit-image, data range 1, after clipping both images to [0, 1].

    ``pred``/``gt``: numpy ``HxWx3`` float or torch ``3xHxW``. Identical images give ``inf``.
    """
    p, g = _pair_numpy(pred, gt)
    with np.errstate(divide="ignore"):
        return float(peak_signal_noise_ratio(g, p, data_range=1.0))


#: scikit-image's default SSIM window: smaller images cannot be scored with it.
SSIM_MIN_SIDE = 7


def ssim(pred, gt) -> float:
    """SSIM by scikit-image's defaults (uniform 7x7, sample covariance, valid region, mean over RGB).

    ``structural_similarity(gt, pred, data_range=1.0, channel_axis=-1)`` after clipping to [0, 1].
    A side under :data:`SSIM_MIN_SIDE` pixels is a ``ValueError`` saying so.
    """
    p, g = _pair_numpy(pred, gt)
    if min(g.shape[:2]) < SSIM_MIN_SIDE:
        raise ValueError(f"image {g.shape[0]}x{g.shape[1]} is smaller than the SSIM window "
                         f"{SSIM_MIN_SIDE}x{SSIM_MIN_SIDE}")
    return float(structural_similarity(g, p, data_range=1.0, channel_axis=-1))


# ----------------------------------------------------------------------------------------------
# 2. AECR-Net / FFA-Net convention
# ----------------------------------------------------------------------------------------------


def gaussian_window(size: int = 11, sigma: float = 1.5, dtype=torch.float32, device=None) -> torch.Tensor:
    """The normalised 2-D Gaussian window ``size x size`` (outer product of a normalised 1-D Gaussian)."""
    x = torch.arange(size, dtype=torch.float64) - (size // 2)
    g = torch.exp(-(x**2) / (2.0 * sigma**2))
    g = g / g.sum()
    return torch.outer(g, g).to(dtype=dtype, device=device)


def _ssim_map_ffa(p: torch.Tensor, g: torch.Tensor, size: int = 11, sigma: float = 1.5) -> torch.Tensor:
    c = p.shape[1]
    w = gaussian_window(size, sigma, dtype=p.dtype, device=p.device).expand(c, 1, size, size).contiguous()
    pad = size // 2

    def filt(x):
        return F.conv2d(x, w, padding=pad, groups=c)  # zero padding, as the official code

    mu1, mu2 = filt(p), filt(g)
    mu1_sq, mu2_sq, mu12 = mu1 * mu1, mu2 * mu2, mu1 * mu2
    s1 = filt(p * p) - mu1_sq
    s2 = filt(g * g) - mu2_sq
    s12 = filt(p * g) - mu12
    c1, c2 = 0.01**2, 0.03**2
    return ((2 * mu12 + c1) * (2 * s12 + c2)) / ((mu1_sq + mu2_sq + c1) * (s1 + s2 + c2))


def ssim_ffa(pred, gt) -> float:
    """SSIM as in the AECR-Net / FFA-Net evaluation code (methods.md §1.9).

    Gaussian 11x11 window, sigma 1.5, C1 = 0.01², C2 = 0.03², per RGB channel with zero padding 5
    (borders included), mean over channels, pixels (and batch, if a batch is passed); inputs clamped
    to [0, 1]. Accepts numpy ``HxWx3`` or torch ``3xHxW`` / ``Bx3xHxW`` (computed on the tensor's device).
    """
    p, g = _pair_torch(pred, gt, batched=False)
    with torch.no_grad():
        return float(_ssim_map_ffa(p, g).mean())


def psnr_ffa(pred, gt) -> float:
    """PSNR as in the AECR-Net / FFA-Net evaluation code: clamp, RGB MSE, ``20·log10(1/RMSE)``.

    The official code evaluates with batch size 1; for a batch this returns the mean of the
    per-image PSNRs. Identical images give ``inf`` (the official code returns 100 there).
    """
    p, g = _pair_torch(pred, gt, batched=False)
    with torch.no_grad():
        mse = ((p.double() - g.double()) ** 2).flatten(1).mean(1)
        vals = [20.0 * math.log10(1.0 / math.sqrt(m)) if m > 0 else math.inf for m in mse.tolist()]
    return float(np.mean(vals))


# ----------------------------------------------------------------------------------------------
# 3. batched torch metrics matching scikit-image (for validation in training loops)
# ----------------------------------------------------------------------------------------------


def batch_psnr(pred: torch.Tensor, gt: torch.Tensor) -> torch.Tensor:
    """Per-image PSNR (dB, data range 1) of ``Bx3xHxW`` tensors after clamping to [0, 1] -> ``tensor[B]``.

    Same value as :func:`psnr` (scikit-image) on each image; ``inf`` where an image is reproduced exactly.
    Returned on the inputs' device; differentiable (wrap in ``torch.no_grad()`` for validation).
    """
    p, g = _pair_torch(pred, gt, batched=True)
    mse = ((p - g) ** 2).flatten(1).mean(1)
    return 10.0 * torch.log10(1.0 / mse)


def batch_ssim(pred: torch.Tensor, gt: torch.Tensor, win_size: int = 7) -> torch.Tensor:
    """Per-image SSIM of ``Bx3xHxW`` tensors, equal to scikit-image's default -> ``tensor[B]``.

    Reproduces ``structural_similarity(gt, pred, data_range=1, channel_axis=-1)``: uniform
    ``win_size`` window, sample covariance (``N/(N-1)`` with ``N = win_size²``), K1 = 0.01, K2 = 0.03,
    mean over the valid region (skimage filters with reflect padding and then crops
    ``(win_size-1)/2`` pixels per border, which leaves exactly the windows that lie inside the image:
    an unpadded ``avg_pool2d`` computes those directly), then mean over the three channels.

    Variances and covariance are computed from per-image, per-channel mean-centred data (they are
    shift-invariant) to avoid float32 cancellation in ``E[x²] - E[x]²``; the result is the same
    formula. Works on the inputs' device; differentiable.
    """
    p, g = _pair_torch(pred, gt, batched=True)
    h, w = p.shape[-2:]
    if min(h, w) < win_size:
        raise ValueError(f"image {h}x{w} is smaller than the SSIM window {win_size}x{win_size}")
    if win_size % 2 != 1:
        raise ValueError(f"win_size must be odd, got {win_size}")

    def box(x):
        return F.avg_pool2d(x, win_size, stride=1, padding=0)

    ux, uy = box(p), box(g)
    pc = p - p.mean(dim=(-2, -1), keepdim=True)
    gc = g - g.mean(dim=(-2, -1), keepdim=True)
    uxc, uyc = box(pc), box(gc)
    n = win_size * win_size
    cov_norm = n / (n - 1.0)
    vx = cov_norm * (box(pc * pc) - uxc * uxc)
    vy = cov_norm * (box(gc * gc) - uyc * uyc)
    vxy = cov_norm * (box(pc * gc) - uxc * uyc)
    c1, c2 = 0.01**2, 0.03**2
    s = ((2 * ux * uy + c1) * (2 * vxy + c2)) / ((ux * ux + uy * uy + c1) * (vx + vy + c2))
    return s.mean(dim=(-2, -1)).mean(dim=1)


def delta_e(pred, gt) -> float:
    """Mean CIEDE2000 colour difference (scikit-image) between two images in [0, 1] (clipped first)."""
    from skimage.color import deltaE_ciede2000, rgb2lab

    p, g = _pair_numpy(pred, gt)
    return float(np.mean(deltaE_ciede2000(rgb2lab(g), rgb2lab(p), channel_axis=-1)))


def batch_delta_e(pred: torch.Tensor, gt: torch.Tensor) -> torch.Tensor:
    """Per-image :func:`delta_e` of ``Bx3xHxW`` tensors -> ``tensor[B]`` (float64, on the CPU; computed
    by scikit-image in numpy, so not differentiable)."""
    p, g = _pair_torch(pred, gt, batched=True)
    return torch.tensor([delta_e(a, b) for a, b in zip(p.detach().cpu(), g.detach().cpu())], dtype=torch.float64)


# ----------------------------------------------------------------------------------------------
# convenience
# ----------------------------------------------------------------------------------------------


def evaluate_pair(pred, gt) -> dict:
    """``{"psnr", "ssim", "ssim_ffa"}`` for one image pair (numpy ``HxWx3`` or torch ``3xHxW``).

    ``psnr``/``ssim`` follow the reported (scikit-image) convention; ``ssim_ffa`` the AECR-Net/FFA one.
    (The FFA PSNR equals ``psnr`` up to float rounding, so it is not repeated.)
    """
    return {"psnr": psnr(pred, gt), "ssim": ssim(pred, gt), "ssim_ffa": ssim_ffa(pred, gt)}
