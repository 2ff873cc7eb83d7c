"""Dark channel prior (DCP) dehazing — He, Sun, Tang, CVPR 2009 / TPAMI 2011 — the classical baseline.

Model: the atmospheric scattering model ``I(x) = J(x) t(x) + A (1 - t(x))``. In haze-free outdoor
patches at least one colour channel is close to 0 (the *dark channel prior*), so

* ``dark(I)(x) = min_{y in Ω(x)} min_c I_c(y)`` (Ω: ``patch x patch`` square, 15 in the paper);
* ``A``: among the brightest 0.1 % pixels of the dark channel, "the pixel with highest intensity in the
  input image I is selected as the atmospheric light" (paper §4.3);
* ``t̃(x) = 1 - ω · dark(I / A)(x)`` with ω = 0.95 (keeps a little haze for depth perception);
* ``t`` refined by a guided filter (see below);
* ``J = (I - A) / max(t, t0) + A`` with t0 = 0.1, clipped to [0, 1].

Settings and choices (ours where the paper leaves room):

* **Refinement.** CVPR'09/TPAMI'11 refine ``t̃`` by soft matting. He et al.'s *Guided Image Filtering*
  (ECCV 2010 / TPAMI 2013) replaces it by a guided filter with **radius r = 60, ε = 1e-4 on the gray
  hazy image as the guide**; we use that (as most DCP baselines in dehazing tables do). The gray guide
  uses the Rec.601 luma weights (0.299, 0.587, 0.114), as MATLAB's ``rgb2gray``. ``refine=False``
  returns the raw patch-wise transmission (blocky halos).
* **Box filter.** The guided filter's means are over ``(2r+1)²`` windows *truncated at the image border*
  and divided by the number of pixels actually inside (as He's ``boxfilter``/``N`` normalisation),
  computed with ``scipy.ndimage.uniform_filter`` (a running sum, O(N) independent of r) in float64.
* **Min filter / edge mode.** ``scipy.ndimage.minimum_filter`` (a separable O(N) running minimum; it
  was the fastest of scipy's filter and scikit-image's erosion on our machine) with ``mode="nearest"``:
  for a minimum that is the same as restricting the window to the image (MATLAB's ``imerode`` pads
  with +inf, which is equivalent).
* **Airlight.** Candidates: the ``max(1, floor(top·N))`` pixels with the largest dark channel (ties
  broken arbitrarily by ``np.argpartition``). Among them we pick **the single pixel with the highest
  intensity, intensity = mean of R, G, B**, and ``A`` is that pixel's RGB vector — the paper's rule.
  (Many re-implementations take the per-channel maximum or the mean over the candidates instead;
  those give a brighter or a darker ``A``.)
* ``I / A`` divides by ``max(A_c, 1e-6)``; the refined ``t`` returned is clipped to [0, 1]; the recovery
  divides by ``max(t, t0)``.

Not a learned model: :class:`DCP` is a parameter-free ``torch.nn.Module`` wrapper so the CLI and the
evaluation code can treat it like the networks (it runs numpy on the CPU and is not differentiable).
"""

from __future__ import annotations

import numpy as np
import torch
from scipy import ndimage

__all__ = [
    "dark_channel",
    "estimate_airlight",
    "transmission",
    "box_mean",
    "guided_filter",
    "rgb_to_gray",
    "recover",
    "dehaze_dcp",
    "DCP",
]

_GRAY_WEIGHTS = np.array([0.299, 0.587, 0.114])


def _as_image(img, name: str = "img") -> np.ndarray:
    arr = np.asarray(img)
    if arr.ndim != 3 or arr.shape[-1] != 3:
        raise ValueError(f"{name}: expected an (H, W, 3) image, got shape {arr.shape}")
    if arr.dtype == np.uint8:
        return arr.astype(np.float32) / 255.0
    if not np.issubdtype(arr.dtype, np.floating):
        raise ValueError(f"{name}: expected float in [0, 1] or uint8, got dtype {arr.dtype}")
    return arr


def dark_channel(img: np.ndarray, patch: int = 15) -> np.ndarray:
    """``min`` over the colour channels, then a ``patch x patch`` minimum filter -> ``HxW``.

    Border: ``mode="nearest"``, i.e. the window is restricted to the image.
    """
    img = _as_image(img)
    return ndimage.minimum_filter(img.min(axis=2), size=int(patch), mode="nearest")


def estimate_airlight(img: np.ndarray, dark: np.ndarray, top: float = 0.001) -> np.ndarray:
    """Atmospheric light ``A`` (RGB, shape ``(3,)``) as in He et al. §4.3.

    Take the ``max(1, floor(top·H·W))`` pixels with the largest dark channel; among them return the
    RGB value of the one with the highest intensity (mean over R, G, B) in ``img``.
    """
    img = _as_image(img)
    h, w, _ = img.shape
    if dark.shape != (h, w):
        raise ValueError(f"dark channel shape {dark.shape} does not match image {img.shape}")
    flat = img.reshape(-1, 3)
    n = max(1, int(np.floor(top * h * w)))
    cand = np.argpartition(dark.ravel(), -n)[-n:]
    best = cand[np.argmax(flat[cand].mean(axis=1))]
    return flat[best].astype(np.float64)


def transmission(img: np.ndarray, A, omega: float = 0.95, patch: int = 15) -> np.ndarray:
    """Raw (patch-wise) transmission ``t̃ = 1 - ω · dark(I / A)`` -> ``HxW``."""
    img = _as_image(img)
    A = np.maximum(np.asarray(A, dtype=np.float64).reshape(1, 1, 3), 1e-6)
    return 1.0 - omega * dark_channel(img / A, patch)


def box_mean(x: np.ndarray, r: int) -> np.ndarray:
    """Mean over the ``(2r+1)x(2r+1)`` window truncated to the image (float64, O(N) for any r)."""
    x = np.asarray(x, dtype=np.float64)
    size = 2 * int(r) + 1
    s = ndimage.uniform_filter(x, size=size, mode="constant", cval=0.0)
    # number of in-image pixels of each window: separable, so an outer product of 1-D counts
    counts = [ndimage.uniform_filter1d(np.ones(n), size=size, mode="constant", cval=0.0) for n in x.shape]
    return s / np.multiply.outer(counts[0], counts[1])


def guided_filter(guide: np.ndarray, src: np.ndarray, r: int = 60, eps: float = 1e-4) -> np.ndarray:
    """He et al.'s guided filter with a gray (``HxW``) guide: edge-aware smoothing of ``src``.

    Local linear model ``q = a·I + b`` per window, ``a = cov(I, p) / (var(I) + eps)``,
    ``b = mean(p) - a·mean(I)``; ``a``, ``b`` are then averaged over the windows covering each pixel.
    Returns float64 ``HxW``.
    """
    I = np.asarray(guide, dtype=np.float64)
    p = np.asarray(src, dtype=np.float64)
    if I.ndim != 2 or I.shape != p.shape:
        raise ValueError(f"guide {I.shape} and src {p.shape} must be the same 2-D shape")
    mean_I = box_mean(I, r)
    mean_p = box_mean(p, r)
    var_I = box_mean(I * I, r) - mean_I * mean_I
    cov_Ip = box_mean(I * p, r) - mean_I * mean_p
    a = cov_Ip / (var_I + eps)
    b = mean_p - a * mean_I
    return box_mean(a, r) * I + box_mean(b, r)


def rgb_to_gray(img: np.ndarray) -> np.ndarray:
    """Rec.601 luma (MATLAB ``rgb2gray`` weights) -> ``HxW`` float64."""
    return _as_image(img) @ _GRAY_WEIGHTS


def recover(img: np.ndarray, t: np.ndarray, A, t0: float = 0.1) -> np.ndarray:
    """Scene radiance ``J = (I - A) / max(t, t0) + A`` clipped to [0, 1] -> float32 ``HxWx3``."""
    img = _as_image(img)
    A = np.asarray(A, dtype=np.float64).reshape(1, 1, 3)
    J = (img - A) / np.maximum(t, t0)[..., None] + A
    return np.clip(J, 0.0, 1.0).astype(np.float32)


def dehaze_dcp(
    img: np.ndarray,
    patch: int = 15,
    omega: float = 0.95,
    t0: float = 0.1,
    r: int = 60,
    eps: float = 1e-4,
    refine: bool = True,
    top: float = 0.001,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Dehaze one numpy ``HxWx3`` image in [0, 1] (or uint8) -> ``(J, t, A)``.

    ``J``: float32 ``HxWx3`` in [0, 1]; ``t``: float32 ``HxW`` (guided-filter refined unless
    ``refine=False``, clipped to [0, 1]); ``A``: float64 ``(3,)``.
    """
    img = _as_image(img)
    dark = dark_channel(img, patch)
    A = estimate_airlight(img, dark, top)
    t = transmission(img, A, omega, patch)
    if refine:
        t = guided_filter(rgb_to_gray(img), t, r=r, eps=eps)
    t = np.clip(t, 0.0, 1.0).astype(np.float32)
    return recover(img, t, A, t0), t, A


class DCP(torch.nn.Module):
    """Parameter-free module wrapper of :func:`dehaze_dcp`: ``forward(x: Bx3xHxW) -> Bx3xHxW``.

    Each image is dehazed independently in numpy on the CPU; the output has the input's device and
    dtype. No gradients flow through it.
    """

    def __init__(
        self,
        *,
        patch: int = 15,
        omega: float = 0.95,
        t0: float = 0.1,
        r: int = 60,
        eps: float = 1e-4,
        refine: bool = True,
        top: float = 0.001,
    ):
        super().__init__()
        self.kwargs = dict(patch=patch, omega=omega, t0=t0, r=r, eps=eps, refine=refine, top=top)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 4 or x.shape[1] != 3:
            raise ValueError(f"DCP expects a (B, 3, H, W) batch, got {tuple(x.shape)}")
        imgs = x.detach().to("cpu", torch.float32).clamp(0, 1).permute(0, 2, 3, 1).numpy()
        out = np.stack([dehaze_dcp(im, **self.kwargs)[0] for im in imgs])
        return torch.from_numpy(out).permute(0, 3, 1, 2).to(device=x.device, dtype=x.dtype).contiguous()

    def extra_repr(self) -> str:
        return ", ".join(f"{k}={v}" for k, v in self.kwargs.items())
