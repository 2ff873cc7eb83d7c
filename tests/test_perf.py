"""The fp32 peak every utilisation is divided by (dehazelab.perf)."""

import time

import pytest

from dehazelab import perf
from dehazelab.perf import fp32_peak


def test_fp32_peak_is_the_best_of_its_kernels_and_plausible():
    p = fp32_peak(reps=2, n=256, channels=32, side=16)
    assert set(p) == {"mm", "conv3x3", "peak"}
    assert p["peak"] == max(p["mm"], p["conv3x3"])
    # a CPU core does between 1e8 and 1e13 fp32 FLOP/s: catches a unit slip (GFLOP vs FLOP, ms vs s)
    assert 1e8 < p["mm"] < 1e13 and 1e8 < p["conv3x3"] < 1e13


def test_best_rate_is_flops_over_the_fastest_run():
    # a kernel whose runs take 40, 20, 30 ms (after an untimed warm-up of 5 ms): the rate is FLOPs / 20 ms
    durations = iter([0.005, 0.040, 0.020, 0.030])
    rate = perf._best_rate(lambda: time.sleep(next(durations)), flops=1e9, reps=3)
    assert rate == pytest.approx(1e9 / 0.020, rel=0.25)  # sleep overshoots a little, never undershoots
    assert rate <= 1e9 / 0.020 * 1.001


def test_flop_counts_match_torch_flop_counter(monkeypatch):
    # the nominal FLOPs fp32_peak divides by are the ones torch's FlopCounterMode reports for the same
    # kernels (the counter the notebooks use for a training step), so utilisation compares like with like
    from torch.utils.flop_counter import FlopCounterMode

    n, c, side = 64, 8, 12
    seen = []
    monkeypatch.setattr(perf, "_best_rate", lambda fn, flops, reps: seen.append((fn, flops)) or 1.0)
    fp32_peak(reps=1, n=n, channels=c, side=side)
    (mm_fn, mm_flops), (conv_fn, conv_flops) = seen
    for fn, flops in ((mm_fn, mm_flops), (conv_fn, conv_flops)):
        with FlopCounterMode(display=False) as fc:
            fn()
        assert fc.get_total_flops() == flops
