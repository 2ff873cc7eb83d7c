"""The atmospheric scattering model: synthesise haze, invert it, and read it back from pairs.

Koschmieder's model, as used by DCP (He et al.), RESIDE (Li et al.) and AOD-Net::

    I(x) = J(x) · t(x) + A · (1 − t(x)),      t(x) = exp(−β · d(x))

``J`` clear radiance, ``I`` hazy observation, ``A`` global atmospheric light (scalar grey or RGB),
``β`` scattering coefficient, ``d`` scene depth, ``t`` transmission.

Array conventions (the project's): numpy images are channel-last ``(..., H, W, 3)``, torch images are
channel-first ``(..., 3, H, W)``. ``depth`` and ``t`` are ``(..., H, W)``; a singleton channel axis
(``(..., H, W, 1)`` in numpy, ``(..., 1, H, W)`` in torch) is accepted too. :func:`synthesize` and
:func:`invert` work on both; torch tensors stay on their device and dtype, and gradients flow.
:func:`transmission_from_pair` and :func:`motorcycle_depth` are numpy-only teaching tools.

RESIDE parameter ranges (**recalled** from the RESIDE paper, Li et al., TIP 2019, not re-read):
ITS draws β uniformly in ``[0.6, 1.8]`` and each image's A in ``[0.7, 1.0]`` on NYU-Depth-v2 /
Middlebury depth; OTS draws β from ``{0.04, 0.06, 0.08, 0.1, 0.12, 0.16, 0.2}`` and A in
``[0.8, 1.0]`` on depth estimated from single outdoor photographs. **Assumption:** we apply the ITS
range to depth normalised to ``[0, 1]``. With metric NYU depth (up to ~10 m) β = 1.8 would leave
t < 0.03 beyond 2 m, far denser haze than SOTS-indoor shows.
"""

from __future__ import annotations

from typing import Any

import numpy as np

RESIDE_ITS_BETA: tuple[float, float] = (0.6, 1.8)
RESIDE_ITS_A: tuple[float, float] = (0.7, 1.0)
RESIDE_OTS_BETA: tuple[float, float] = (0.04, 0.2)
RESIDE_OTS_A: tuple[float, float] = (0.8, 1.0)

# Middlebury 2014 "Motorcycle" calibration for skimage's 4x down-sampled copy (from the docstring of
# skimage.data.stereo_motorcycle). Middlebury 2014 gives depth = baseline * focal / (disparity + doffs),
# doffs being the x-difference of the two principal points ("Principal point dx" there).
MOTORCYCLE_FOCAL_PX = 994.978
MOTORCYCLE_BASELINE_MM = 193.001
MOTORCYCLE_DOFFS_PX = 31.086


def _is_torch(x: Any) -> bool:
    return type(x).__module__.split(".")[0] == "torch"


def _expand_map(m, image, torch_mode: bool):
    """Give a ``(..., H, W)`` map (depth or t) the image's channel axis, as size 1."""
    if m.ndim == image.ndim:
        return m
    if m.ndim == image.ndim - 1:
        return m.unsqueeze(-3) if torch_mode else m[..., None]
    raise ValueError(f"map of shape {tuple(m.shape)} does not fit an image of shape {tuple(image.shape)}")


def _channel_param(p, image, torch_mode: bool):
    """``A`` shaped to broadcast with ``image``: scalar, RGB ``(3,)``, or per sample ``(B,)``/``(B,1)``/``(B,3)``.

    A length-3 vector always means RGB; for a batch of 3 with one grey value each, pass ``(3, 1)``.
    """
    if torch_mode:
        import torch

        p = torch.as_tensor(p, dtype=image.dtype, device=image.device)
    else:
        p = np.asarray(p, dtype=image.dtype)
    if p.ndim == 0:
        return p
    if p.ndim == 1 and p.shape[0] == 3:
        return p.reshape(3, 1, 1) if torch_mode else p
    if image.ndim == 4 and p.ndim in (1, 2) and p.shape[0] == image.shape[0]:
        p = p.reshape(p.shape[0], -1)
        if p.shape[1] in (1, 3):
            return p.reshape(p.shape[0], -1, 1, 1) if torch_mode else p.reshape(p.shape[0], 1, 1, -1)
    raise ValueError(f"A of shape {tuple(p.shape)} does not fit an image of shape {tuple(image.shape)}")


def _as_float(x):
    if _is_torch(x):
        return x if x.is_floating_point() else x.float()
    x = np.asarray(x)
    return x if np.issubdtype(x.dtype, np.floating) else x.astype(np.float32)


def transmission(depth, beta):
    """``t = exp(−β·d)`` (numpy or torch, same shape as ``depth``); ``β`` scalar or one per sample."""
    depth = _as_float(depth)
    torch_mode = _is_torch(depth)
    if torch_mode:
        import torch

        b = torch.as_tensor(beta, dtype=depth.dtype, device=depth.device)
        if (b < 0).any() or (depth < 0).any():
            raise ValueError("beta and depth must be non-negative")
        if b.ndim == 1:
            b = b.reshape(-1, *([1] * (depth.ndim - 1)))
        return torch.exp(-b * depth)
    b = np.asarray(beta, dtype=depth.dtype)
    if (b < 0).any() or (depth < 0).any():
        raise ValueError("beta and depth must be non-negative")
    if b.ndim == 1:
        b = b.reshape(-1, *([1] * (depth.ndim - 1)))
    return np.exp(-b * depth)


def synthesize(J, depth, beta, A):
    """Hazy image from a clear one: returns ``(I, t)`` with ``I = J·t + A·(1−t)``, ``t = exp(−β·d)``.

    ``J``: clear image (numpy ``(...,H,W,3)`` or torch ``(...,3,H,W)``), ``depth``: non-negative
    depth ``(..., H, W)`` in the same units β is meant for (normalised ``[0, 1]`` for the RESIDE ITS
    range, see the module docstring), ``beta``: scalar or one per batch sample, ``A``: scalar grey,
    RGB triple, or per sample ``(B,)`` / ``(B, 3)``. ``t`` is returned with ``depth``'s shape, so
    ``t`` lies in ``(0, 1]`` and decreases with depth.
    """
    J = _as_float(J)
    torch_mode = _is_torch(J)
    if torch_mode:
        import torch

        depth = torch.as_tensor(depth, dtype=J.dtype, device=J.device)
    else:
        depth = np.asarray(depth, dtype=J.dtype)
    t = transmission(depth, beta)
    te = _expand_map(t, J, torch_mode)
    a = _channel_param(A, J, torch_mode)
    I = J * te + a * (1 - te)
    return I, t


def invert(I, t, A, t_min: float = 0.1, clip: bool = False):
    """Clear image from a hazy one: ``J = (I − A) / max(t, t_min) + A`` (numpy or torch).

    Exact (up to rounding) when ``t`` and ``A`` are the ones that made ``I`` and ``t >= t_min``
    everywhere. ``t_min`` is DCP's lower bound ``t0`` (0.1 in He et al.): it stops noise in dense
    haze from being amplified without bound. ``clip`` clips the result to ``[0, 1]`` (off by
    default, so the inversion stays exact and testable).
    """
    I = _as_float(I)
    torch_mode = _is_torch(I)
    if torch_mode:
        import torch

        t = torch.as_tensor(t, dtype=I.dtype, device=I.device)
        te = _expand_map(t, I, True).clamp(min=t_min)
    else:
        t = np.asarray(t, dtype=I.dtype)
        te = np.maximum(_expand_map(t, I, False), np.asarray(t_min, dtype=I.dtype))
    a = _channel_param(A, I, torch_mode)
    J = (I - a) / te + a
    if clip:
        J = J.clamp(0, 1) if torch_mode else np.clip(J, 0, 1)
    return J


def estimate_airlight_from_pair(I: np.ndarray, J: np.ndarray) -> np.ndarray:
    """Atmospheric light ``A`` (RGB) implied by an aligned hazy/clear pair (numpy ``HxWx3``).

    From the model, ``I(x) − J(x) = (1 − t(x)) · (A − J(x))``: for every pixel, ``A`` lies on the
    line through ``J(x)`` and ``I(x)`` in RGB space. All those lines meet at ``A``, so we take the
    point with the least weighted sum of squared distances to them, a 3x3 linear system (closed
    form). Each line is weighted by ``|I − J|²``: nearly haze-free pixels (short segments) have
    unreliable directions once the images are quantised to 8 bits. The system is singular when all
    lines are parallel (e.g. a grey scene under grey light); that raises ``ValueError`` -- pass
    ``A`` yourself then. This ignores the direction along the line (it does not enforce
    ``t ∈ [0, 1]``); it is a teaching estimator, not part of any paper.
    """
    I = np.asarray(I, dtype=np.float64).reshape(-1, 3)
    J = np.asarray(J, dtype=np.float64).reshape(-1, 3)
    d = I - J
    w = (d * d).sum(axis=1)  # |d|^2: the weight, and the scale that removes the normalisation
    # sum_p w_p (Id - u_p u_p^T) with u_p = d_p / |d_p|  ==  sum_p (|d_p|^2 Id - d_p d_p^T)
    M = w.sum() * np.eye(3) - d.T @ d
    b = (w[:, None] * J).sum(axis=0) - d.T @ (d * J).sum(axis=1)
    eig = np.linalg.eigvalsh(M)
    if eig[-1] <= 0 or eig[0] < 1e-6 * eig[-1]:
        raise ValueError("cannot estimate A from this pair: the hazy-clear colour lines are (nearly) parallel; pass A")
    return np.linalg.solve(M, b).astype(np.float32)


def transmission_from_pair(I: np.ndarray, J: np.ndarray, A=None, eps: float = 1e-3,
                           fill: str = "nearest") -> tuple[np.ndarray, np.ndarray]:
    """Per-pixel transmission ``t`` (and ``A``) recovered from an aligned hazy/clear pair.

    ``I``, ``J``: numpy ``HxWx3``. ``A``: scalar or RGB; when ``None`` it is estimated with
    :func:`estimate_airlight_from_pair` (lines in RGB space meeting at ``A``). Given ``A``, ``t`` at
    each pixel is the least-squares solution over the three channels of ``I − A = t · (J − A)``::

        t = Σ_c (I_c − A_c)(J_c − A_c) / Σ_c (J_c − A_c)²

    clipped to ``[0, 1]``. Where the clear colour is within ``sqrt(eps)`` of ``A``
    (``Σ_c (J_c − A_c)² < eps``) haze does not change the pixel and ``t`` is not identifiable.
    ``fill="nearest"`` (default) gives those pixels the ``t`` of the nearest identifiable pixel (an
    assumption: ``t`` varies smoothly, as depth mostly does); ``fill="nan"`` leaves them NaN, to see
    where they are (on SOTS-indoor well under 5 % of the pixels). Returns
    ``(t HxW float32, A (3,) float32)``.
    """
    I = np.asarray(I, dtype=np.float64)
    J = np.asarray(J, dtype=np.float64)
    if I.shape != J.shape or I.ndim != 3 or I.shape[2] != 3:
        raise ValueError(f"expected two HxWx3 arrays of the same shape, got {I.shape} and {J.shape}")
    if A is None:
        A = estimate_airlight_from_pair(I, J)
    A = np.broadcast_to(np.asarray(A, dtype=np.float64), (3,))
    dj = J - A
    den = (dj * dj).sum(axis=2)
    num = ((I - A) * dj).sum(axis=2)
    with np.errstate(divide="ignore", invalid="ignore"):
        t = np.where(den >= eps, num / den, np.nan)
    t = np.clip(t, 0.0, 1.0)  # NaN stays NaN
    if fill == "nearest":
        unknown = np.isnan(t)
        if unknown.all():
            raise ValueError("every pixel's clear colour equals A: t is not identifiable anywhere")
        t = _fill_nearest(t, unknown)
    elif fill != "nan":
        raise ValueError(f"fill must be 'nearest' or 'nan', got {fill!r}")
    return t.astype(np.float32), A.astype(np.float32)


def _fill_nearest(values: np.ndarray, invalid: np.ndarray) -> np.ndarray:
    from scipy import ndimage

    if not invalid.any():
        return values
    idx = ndimage.distance_transform_edt(invalid, return_distances=False, return_indices=True)
    return values[tuple(idx)]


def motorcycle_depth(normalise: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """The Middlebury 2014 "Motorcycle" scene from scikit-image: ``(left view, depth)``.

    Returns the left view as float32 ``HxWx3`` in ``[0, 1]`` and its depth as float32 ``HxW``
    (500x741, the 4x down-sampled copy bundled with scikit-image, so no download).
    ``skimage.data.stereo_motorcycle()`` returns ``(left, right, disparity)``; the disparity (pixels
    of the down-sampled images) marks pixels without ground truth as non-finite (its docstring says
    NaN; the bundled file uses +inf, so both are handled, as is a non-positive value). Depth follows
    Middlebury 2014's formula ``baseline · focal / (disparity + doffs)`` with the calibration in that
    docstring (focal 994.978 px, baseline 193.001 mm, doffs = "principal point dx" 31.086 px), so
    ``normalise=False`` returns metres (about 2 to 5 m for this scene). Pixels without disparity
    (occlusions, about 7 %) take the depth of the nearest valid pixel. With ``normalise=True``
    (default) the depth is min-max scaled to ``[0, 1]`` (nearest point 0, farthest 1), the scale the
    RESIDE ITS β range is applied to here.
    """
    from skimage import data

    left, _, disp = data.stereo_motorcycle()
    disp = np.asarray(disp, dtype=np.float64)
    invalid = ~np.isfinite(disp) | (disp <= 0)
    with np.errstate(divide="ignore", invalid="ignore"):
        depth_m = MOTORCYCLE_FOCAL_PX * MOTORCYCLE_BASELINE_MM / (disp + MOTORCYCLE_DOFFS_PX) / 1000.0
    depth_m = _fill_nearest(np.where(invalid, 0.0, depth_m), invalid)
    if normalise:
        lo, hi = depth_m.min(), depth_m.max()
        depth_m = (depth_m - lo) / (hi - lo)
    return np.asarray(left, dtype=np.float32) / 255.0, depth_m.astype(np.float32)
