"""A measured fp32 compute peak of this CPU, the denominator of every "utilisation" we report.

Why not just ``torch.mm``: on some CPUs the BLAS behind ``torch.mm`` (MKL) is far from the machine's
fp32 rate — measured on an AMD EPYC with AVX-512 here, 2 threads: ``torch.mm`` 2048² 177 GFLOP/s,
a oneDNN 3×3 convolution 383 GFLOP/s — so a training step made of convolutions showed "140 % of
the matmul peak". The peak is therefore the best of two dense fp32 kernels, a square matrix product
and a 3×3 convolution (nominal FLOPs, ``2·K`` per output element), each the best of ``reps`` runs
(the least disturbed run counts). Utilisation = nominal FLOPs of a step / its time / this peak; it can
still exceed 1 for steps whose kernels do fewer than their nominal FLOPs (e.g. Winograd).
"""

from __future__ import annotations

import time

import torch
import torch.nn.functional as F

__all__ = ["fp32_peak"]


def _best_rate(fn, flops: float, reps: int) -> float:
    fn()  # warm-up (allocations, kernel selection)
    best = float("inf")
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return flops / best


def fp32_peak(reps: int = 6, n: int = 2048, channels: int = 256, side: int = 64) -> dict[str, float]:
    """``{"mm": …, "conv3x3": …, "peak": max of both}`` in FLOP/s at torch's current thread count."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    x, w = torch.randn(1, channels, side, side), torch.randn(channels, channels, 3, 3)
    with torch.no_grad():
        mm = _best_rate(lambda: a @ b, 2.0 * n**3, reps)
        conv = _best_rate(lambda: F.conv2d(x, w, padding=1), 2.0 * channels * channels * 9 * side * side, reps)
    return {"mm": mm, "conv3x3": conv, "peak": max(mm, conv)}
