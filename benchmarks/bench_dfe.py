"""Benchmark the two DFE (modulated deformable conv) backends on CPU.

Reports the forward+backward time of ``DFE`` with the ``torchvision`` and ``grid_sample`` backends at
8x64x16x16 and 16x256x60x60 (non-zero offsets and masks), and the time of one whole training step
(forward, L1 loss, backward, Adam) of a small AECR-Net (ngf 16, 64x64, batch 8) with each backend.

    .venv/bin/python benchmarks/bench_dfe.py [--threads 2] [--reps 5] [--quick]

Times are medians over ``--reps`` repetitions after one warm-up; the machine's other load counts.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from dehazelab.models.aecrnet import AECRNet  # noqa: E402
from dehazelab.models.dfe import DFE  # noqa: E402

BACKENDS = ("torchvision", "grid_sample")


def _median_time(fn, reps: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def bench_dfe(shape, reps):
    b, c, h, w = shape
    torch.manual_seed(0)
    m = DFE(c, c)
    with torch.no_grad():  # offsets of about a pixel, masks spread around 0.5
        m.offset_mask.weight.normal_(0, 0.5 / (c * 9) ** 0.5)
        m.offset_mask.bias.normal_(0, 0.5)
    x = torch.randn(b, c, h, w, requires_grad=True)
    up = torch.randn(b, c, h, w)
    res, outs = {}, {}
    for backend in BACKENDS:
        m.backend = backend

        def step():
            m.zero_grad(set_to_none=True)
            x.grad = None
            y = m(x)
            (y * up).sum().backward()
            return y

        res[backend] = _median_time(step, reps)
        outs[backend] = step().detach()
    rel = ((outs["grid_sample"] - outs["torchvision"]).norm() / outs["torchvision"].norm()).item()
    return res, rel


def bench_aecrnet_step(reps, ngf=16, size=64, batch=8):
    res = {}
    for backend in BACKENDS:
        torch.manual_seed(0)
        net = AECRNet(ngf=ngf, dfe_backend=backend).train()
        c = 4 * ngf
        with torch.no_grad():  # offsets as after some training, not the all-zero init
            net.dfe[0].offset_mask.weight.normal_(0, 0.5 / (c * 9) ** 0.5)
            net.dfe[0].offset_mask.bias.normal_(0, 0.5)
        opt = torch.optim.Adam(net.parameters(), lr=2e-4)
        x, y = torch.rand(batch, 3, size, size), torch.rand(batch, 3, size, size)

        def step():
            opt.zero_grad(set_to_none=True)
            loss = F.l1_loss(net(x), y)
            loss.backward()
            opt.step()

        res[backend] = _median_time(step, reps)
    return res


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--quick", action="store_true", help="skip the 16x256x60x60 case")
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, CPU, medians of {args.reps} reps\n")

    rows = []
    shapes = [(8, 64, 16, 16)] + ([] if args.quick else [(16, 256, 60, 60)])
    for shape in shapes:
        reps = args.reps if shape[1] * shape[2] * shape[3] < 10**6 else max(2, args.reps // 2)
        t, rel = bench_dfe(shape, reps)
        rows.append(("DFE fwd+bwd " + "x".join(map(str, shape)), t["torchvision"], t["grid_sample"], rel))
    t = bench_aecrnet_step(args.reps)
    rows.append(("AECR-Net step ngf16 8x3x64x64", t["torchvision"], t["grid_sample"], float("nan")))

    head = f"| {'case':<36} | {'torchvision s':>13} | {'grid_sample s':>13} | {'speed-up':>8} | {'rel. diff':>9} |"
    print(head)
    print("|" + "|".join("-" * (len(c)) for c in head.split("|")[1:-1]) + "|")
    for name, tv, gs, rel in rows:
        rel_s = "" if rel != rel else f"{rel:.1e}"
        print(f"| {name:<36} | {tv:>13.4f} | {gs:>13.4f} | {tv / gs:>7.1f}x | {rel_s:>9} |")


if __name__ == "__main__":
    main()
