"""Time one training iteration of the library's CUT, FastCUT and CycleGAN (``dehazelab.methods``).

Usage::

    .venv/bin/python benchmarks/bench_unpaired_step.py                      # official config, 2 threads
    .venv/bin/python benchmarks/bench_unpaired_step.py --methods cyclegan --iters 5

The official configuration of CUT's Table 1 runs (``docs/methods.md`` §2): ResNet-9 generator(s),
ngf 64, PatchGAN ndf 64, 256 PatchNCE positions, batch 1; here at 128×128 on the CPU. Each method is
measured by :func:`dehazelab.train.unpaired.measure_cost` in a fresh spawned process (warm-up
iterations, then timed ``train_step`` calls on a random batch; the process's peak RSS above its
baseline after imports), one after the other. GFLOP per iteration come from torch's
``FlopCounterMode`` over one ``train_step`` in this process, and utilisation is GFLOP/s over this
CPU's fp32 peak measured here (:func:`dehazelab.perf.fp32_peak`: the better of a matrix product and a
3×3 convolution). This is a benchmark, not a test: it asserts nothing
about time. ``benchmarks/bench_cut_step.py`` compares the official order of work of one CUT
iteration with ours.

Measured 2026-12-02 on 2 idle cores of an AMD EPYC (torch 2.14.1; fp32 peak 441 GFLOP/s from the
3×3 conv, 196 from the 2048² matmul), median of 3 after 1 warm-up: CUT 1.23 s / 322.5 GFLOP (60 % of
the peak), FastCUT 0.76 s / 190.8 GFLOP (57 %), CycleGAN 1.73 s / 468.8 GFLOP (62 %); peak RSS above
baseline 850 / 552 / 1131 MB. The official CUT code was quoted at ~5.1 s per iteration at this config on these machines (``docs/methods.md`` §7).
"""

from __future__ import annotations

import argparse

import torch
from torch.utils.flop_counter import FlopCounterMode

from dehazelab.methods import build_method
from dehazelab.perf import fp32_peak
from dehazelab.repro import seed_everything
from dehazelab.train.unpaired import measure_cost

OFFICIAL = {
    "cut": {"ngf": 64, "n_blocks": 9, "ndf": 64, "num_patches": 256},
    "fastcut": {"ngf": 64, "n_blocks": 9, "ndf": 64, "num_patches": 256},
    "cyclegan": {"ngf": 64, "n_blocks": 9, "ndf": 64},
}


def iteration_gflop(name: str, size: int, kwargs: dict) -> float:
    seed_everything(0)
    m = build_method(name, **kwargs).train()
    batch = {k: torch.rand(1, 3, size, size) for k in ("hazy", "clear")}
    with FlopCounterMode(display=False) as fc:
        m.train_step(batch, 0)
    return fc.get_total_flops() / 1e9


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--methods", default="cut,fastcut,cyclegan")
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--iters", type=int, default=3)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    names = [m.strip() for m in args.methods.split(",") if m.strip()]
    for m in names:
        if m not in OFFICIAL:
            ap.error(f"unknown method {m!r}; known: {sorted(OFFICIAL)}")
    fp32 = {k: v / 1e9 for k, v in fp32_peak().items()}
    peak = fp32["peak"]
    print(f"torch {torch.__version__}, {args.threads} threads, {args.size}², batch 1; fp32 peak {peak:.1f} GFLOP/s "
          f"(2048² matmul {fp32['mm']:.1f}, 3×3 conv {fp32['conv3x3']:.1f}; dehazelab.perf.fp32_peak)")
    print(f"{'method':9s} {'median s':>8s} {'mean s':>7s} {'GFLOP/it':>8s} {'GFLOP/s':>8s} {'util':>6s} {'peak MB':>8s}")
    # all timings first: a spawned child inherits this process's peak-RSS record (Linux), so this
    # process must not have built a network yet when the children measure their memory
    costs = {m: measure_cost(m, {"n_steps": 1, "n_steps_decay": 0, "crop": args.size, "threads": args.threads,
                                 "seed": 0, "device": "cpu"}, args.iters, warmup=args.warmup, method_kwargs=OFFICIAL[m])
             for m in names}
    for m in names:
        cost = costs[m]
        gf = iteration_gflop(m, args.size, OFFICIAL[m])
        s = cost["sec_per_iter_median"]
        print(f"{m:9s} {s:8.3f} {cost['sec_per_iter']:7.3f} {gf:8.1f} {gf / s:8.1f} {gf / s / peak:6.1%} "
              f"{cost['peak_mem_delta_mb']:8.0f}")


if __name__ == "__main__":
    main()
