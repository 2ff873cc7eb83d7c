"""Time one CUT training iteration on the CPU, and try speed-ups that keep the maths identical.

Usage::

    .venv/bin/python benchmarks/bench_cut_step.py                 # official config: ResNet-9, ngf 64, 128², batch 1, 2 threads
    .venv/bin/python benchmarks/bench_cut_step.py --iters 3 --variants official,fast

One iteration follows the official ``CUTModel.optimize_parameters`` (``docs/methods.md`` §2.6), CUT mode:

1. G forward on ``cat(real_A, real_B)`` (identity batch for the λ_Y PatchNCE term) → fake_B, idt_B;
2. D step: ``½[(D(real_B)−1)² + D(fake_B.detach())²]``, Adam;
3. G+F step with D frozen: ``(D(fake_B)−1)² + ½(NCE(real_A, fake_B) + NCE(real_B, idt_B))``, Adam on G and on F.

PatchNCE: layers 0,4,8,12,16, 256 patches, τ 0.07, MLP heads; xavier(0.02) init; Adam(2e-4, 0.5, 0.999).

Variants (all compute the same losses and gradients up to float rounding; the script checks this on
the first iteration, where every variant starts from the same weights, data and patch ids):

* ``official``  — as the official code: four extra encoder passes (queries of fake_B and idt_B,
  keys of real_A and real_B), the key passes *with* an autograd graph that is never used (the keys
  are detached only after the heads).
* ``nograd``    — key passes under ``torch.no_grad()`` (what ``PatchNCE`` does by default).
* ``reuse``     — no key passes at all: the keys are the taps of the main G forward (same weights —
  only D was stepped in between — and InstanceNorm is per image, so the activations are the same).
* ``fast``      — ``reuse`` + one batched query pass over ``cat(fake_B, idt_B)`` instead of two, and one
  D forward over ``cat(real_B, fake_B)`` in the D step (again exact because norms are per image).
* ``*_cl``      — the same with ``channels_last`` memory format for models and inputs.

Output: seconds per iteration (median of the timed iterations, variants interleaved round-robin so
background load hits them alike), GFLOP per iteration from ``torch.utils.flop_counter.FlopCounterMode``
(convolutions and matrix products, forward + backward), and utilisation = (GFLOP/s) / (this CPU's
fp32 peak measured here, :func:`dehazelab.perf.fp32_peak`: the better of a matmul and a 3×3 conv).

Measured (2026-11, 2 shared AVX-512 cores, torch 2.14.1; other jobs were running most of the time,
so "min" is the least-disturbed iteration): 357 GFLOP per official-style iteration, 322.5 without
the two key passes (G fwd+bwd alone is ~95 GFLOP per 128² image). ``torch.mm`` reaches 344 GFLOP/s on
2 idle threads and 172 on one.

* 2 threads, quiet window (best of 4): official 1.63 s, nograd 1.62, reuse 1.52, fast 1.48 (×1.10),
  official_cl 1.79, fast_cl 1.57 — ~61-64 % of that machine's matmul-only peak (measured before
  ``dehazelab.perf``; rerun for utilisation against today's fp32 peak). Medians were 5-7 s: with the other
  core busy, 2-thread OpenMP runs stall.
* 2026-12-02, 2 idle threads of an AMD EPYC, against :func:`dehazelab.perf.fp32_peak` (414 GFLOP/s,
  from the 3×3 conv; the 2048² matmul reaches about half): official 1.47 s median / 1.38 min (63 % at
  min), nograd 1.46 / 1.27, reuse 1.34 / 1.17, fast 1.33 / 1.19 (×1.10 median), official_cl 1.56,
  fast_cl 1.42 — the same picture: the key passes are the saving, ``channels_last`` does not help.
* 1 thread, one core free (median of 5): official 3.26 s, nograd 3.25, reuse 2.97, fast 2.94
  (×1.11), official_cl 3.52, fast_cl 3.14 — ~65 % of the 1-thread peak.
* So: the saving is the FLOPs removed (key passes: −10 %); ``no_grad`` keys and batching change
  time by < 2 % (no_grad only saves the unused graph's memory); ``channels_last`` is 7-10 % *slower*
  on this CPU. Peak RSS ~1.5 GiB for every variant.
"""

from __future__ import annotations

import argparse
import copy
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import torch

try:
    import dehazelab  # noqa: F401
except ImportError:  # run from a checkout without an installed package
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from dehazelab.losses.gan import discriminator_loss, generator_loss
from dehazelab.losses.patchnce import PatchNCE, patchnce_loss
from dehazelab.models.init import init_weights
from dehazelab.models.patchgan import PatchGANDiscriminator
from dehazelab.models.projection_head import PatchSampleMLP
from dehazelab.models.resnet_generator import CUT_NCE_LAYERS, ResnetGenerator

VARIANTS = {
    #  name:        (keys,     batched, channels_last)
    "official":    ("graph",  False, False),
    "nograd":      ("nograd", False, False),
    "reuse":       ("reuse",  False, False),
    "fast":        ("reuse",  True,  False),
    "official_cl": ("graph",  False, True),
    "fast_cl":     ("reuse",  True,  True),
}


@dataclass
class CUTSetup:
    G: torch.nn.Module
    D: torch.nn.Module
    F: torch.nn.Module
    opt_G: torch.optim.Optimizer
    opt_D: torch.optim.Optimizer
    opt_F: torch.optim.Optimizer
    nce: PatchNCE


def build(ngf: int, n_blocks: int, seed: int = 0) -> CUTSetup:
    torch.manual_seed(seed)
    G = init_weights(ResnetGenerator(ngf=ngf, n_blocks=n_blocks), "xavier", 0.02)
    D = init_weights(PatchGANDiscriminator(), "xavier", 0.02)
    F = init_weights(PatchSampleMLP(in_channels=G.feature_channels(CUT_NCE_LAYERS)), "xavier", 0.02)
    adam = dict(lr=2e-4, betas=(0.5, 0.999))
    return CUTSetup(G, D, F, torch.optim.Adam(G.parameters(), **adam), torch.optim.Adam(D.parameters(), **adam),
                    torch.optim.Adam(F.parameters(), **adam), PatchNCE(G, F, CUT_NCE_LAYERS, 256, 0.07))


def clone_setup(s: CUTSetup, channels_last: bool) -> CUTSetup:
    G, D, F = copy.deepcopy(s.G), copy.deepcopy(s.D), copy.deepcopy(s.F)
    if channels_last:
        G, D = G.to(memory_format=torch.channels_last), D.to(memory_format=torch.channels_last)
    adam = dict(lr=2e-4, betas=(0.5, 0.999))
    return CUTSetup(G, D, F, torch.optim.Adam(G.parameters(), **adam), torch.optim.Adam(D.parameters(), **adam),
                    torch.optim.Adam(F.parameters(), **adam), PatchNCE(G, F, CUT_NCE_LAYERS, 256, 0.07))


def _nce_official(s: CUTSetup, src, tgt, gen):
    """The official order of work: key encoder pass and key heads *with* a graph, detach afterwards."""
    feat_q = s.G(tgt, CUT_NCE_LAYERS, encode_only=True)
    feat_k = s.G(src, CUT_NCE_LAYERS, encode_only=True)
    k_pool, ids = s.F(feat_k, 256, None, gen)
    q_pool, _ = s.F(feat_q, 256, ids)
    b = tgt.shape[0]
    return torch.stack([patchnce_loss(q, k, 0.07, batch_size=b) for q, k in zip(q_pool, k_pool)]).mean()


def cut_iteration(s: CUTSetup, real_A: torch.Tensor, real_B: torch.Tensor, *, keys: str = "graph",
                  batched: bool = False, seed: int = 0, lambda_gan: float = 1.0, lambda_nce: float = 1.0) -> dict:
    """One CUT-mode iteration (forward G → D step → G+F step). Returns the losses as floats."""
    b = real_A.shape[0]
    gen_x = torch.Generator().manual_seed(2 * seed)  # patch ids for the X term
    gen_y = torch.Generator().manual_seed(2 * seed + 1)  # and for the Y (identity) term

    # forward G on the identity batch
    real = torch.cat([real_A, real_B])
    if keys == "reuse":
        fake, taps = s.G(real, CUT_NCE_LAYERS)
        taps = [t.detach() for t in taps]
    else:
        fake = s.G(real)
    fake_B, idt_B = fake[:b], fake[b:]

    # D step
    s.D.requires_grad_(True)
    s.opt_D.zero_grad(set_to_none=True)
    if batched:
        pred = s.D(torch.cat([real_B, fake_B.detach()]))
        loss_D = discriminator_loss(pred[:b], pred[b:])
    else:
        pred_fake = s.D(fake_B.detach())
        loss_D = discriminator_loss(s.D(real_B), pred_fake)
    loss_D.backward()
    s.opt_D.step()

    # G + F step
    s.D.requires_grad_(False)
    s.opt_G.zero_grad(set_to_none=True)
    s.opt_F.zero_grad(set_to_none=True)
    loss_G_GAN = generator_loss(s.D(fake_B)) * lambda_gan
    if keys == "graph":
        nce_x = _nce_official(s, real_A, fake_B, gen_x)
        nce_y = _nce_official(s, real_B, idt_B, gen_y)
    elif keys == "nograd":
        nce_x = s.nce(real_A, fake_B, generator=gen_x)
        nce_y = s.nce(real_B, idt_B, generator=gen_y)
    elif batched:
        q_all = s.G(fake, CUT_NCE_LAYERS, encode_only=True)
        nce_x = s.nce.from_features([q[:b] for q in q_all], [t[:b] for t in taps], generator=gen_x)
        nce_y = s.nce.from_features([q[b:] for q in q_all], [t[b:] for t in taps], generator=gen_y)
    else:
        nce_x = s.nce(None, fake_B, feat_k=[t[:b] for t in taps], generator=gen_x)
        nce_y = s.nce(None, idt_B, feat_k=[t[b:] for t in taps], generator=gen_y)
    loss_G = loss_G_GAN + 0.5 * lambda_nce * (nce_x + nce_y)
    loss_G.backward()
    s.opt_G.step()
    s.opt_F.step()
    return {"D": loss_D.item(), "G_GAN": loss_G_GAN.item(), "NCE_X": nce_x.item(), "NCE_Y": nce_y.item()}


def peak_gflops() -> float:
    """This CPU's fp32 peak in GFLOP/s (:func:`dehazelab.perf.fp32_peak`: best of a 2048² matmul and a 3×3 conv)."""
    from dehazelab.perf import fp32_peak

    return fp32_peak()["peak"] / 1e9


def count_gflop(s: CUTSetup, a, b, **kw) -> float:
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as fc:
        cut_iteration(s, a, b, **kw)
    return fc.get_total_flops() / 1e9


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--ngf", type=int, default=64)
    ap.add_argument("--n-blocks", type=int, default=9)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--warmup", type=int, default=2, help="untimed iterations per variant (the first one is the check)")
    ap.add_argument("--iters", type=int, default=4, help="timed iterations per variant")
    ap.add_argument("--variants", default=",".join(VARIANTS), help=f"comma list of {list(VARIANTS)}")
    ap.add_argument("--no-flops", action="store_true")
    ap.add_argument("--double", action="store_true", help="float64 everywhere (to check that variants agree exactly)")
    args = ap.parse_args(argv)

    torch.set_num_threads(args.threads)
    if args.double:
        torch.set_default_dtype(torch.float64)
    names = [v.strip() for v in args.variants.split(",") if v.strip()]
    for v in names:
        if v not in VARIANTS:
            ap.error(f"unknown variant {v!r}")
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, ResNet-{args.n_blocks} ngf {args.ngf}, "
          f"{args.size}², batch {args.batch}")
    peak = peak_gflops()
    print(f"fp32 peak (best of a 2048² matmul and a 3×3 conv): {peak:.1f} GFLOP/s")

    base = build(args.ngf, args.n_blocks)
    gdata = torch.Generator().manual_seed(123)
    real_A = torch.rand(args.batch, 3, args.size, args.size, generator=gdata) * 2 - 1
    real_B = torch.rand(args.batch, 3, args.size, args.size, generator=gdata) * 2 - 1

    setups, inputs = {}, {}
    for v in names:
        keys, batched, cl = VARIANTS[v]
        setups[v] = clone_setup(base, cl)
        fmt = torch.channels_last if cl else torch.contiguous_format
        inputs[v] = (real_A.contiguous(memory_format=fmt), real_B.contiguous(memory_format=fmt))

    def run(v, seed):
        keys, batched, _ = VARIANTS[v]
        return cut_iteration(setups[v], *inputs[v], keys=keys, batched=batched, seed=seed)

    # check: first iteration from identical state, data and patch ids
    first = {}
    for v in names:
        t0 = time.perf_counter()
        first[v] = run(v, seed=0)
        print(f"  first iteration {v:12s} {time.perf_counter() - t0:6.2f} s  losses "
              + " ".join(f"{k}={x:.6f}" for k, x in first[v].items()))
    ref = first[names[0]]
    dev = max(abs(first[v][k] - ref[k]) / max(abs(ref[k]), 1e-12) for v in names for k in ref)
    print(f"max relative loss difference between variants on iteration 1: {dev:.2e}")
    # gradients of the first iteration (still held: zero_grad runs at the start of each step).
    # Weights after the step are not compared: Adam's first step is ~lr·sign(g), and the conv biases
    # in front of InstanceNorm have a true gradient of 0, so float noise alone flips them by ±lr.
    def flat_grad(net):
        return torch.cat([p.grad.reshape(-1) for p in net.parameters() if p.grad is not None])

    for net in ("G", "F", "D"):
        g0 = flat_grad(getattr(setups[names[0]], net))
        rel = {v: float((flat_grad(getattr(setups[v], net)) - g0).norm() / g0.norm()) for v in names[1:]}
        print(f"relative gradient difference ‖Δg‖/‖g‖ of {net} vs {names[0]}: "
              + ", ".join(f"{v} {r:.1e}" for v, r in rel.items()))

    for w in range(1, args.warmup):
        for v in names:
            run(v, seed=w)
    times = {v: [] for v in names}
    for it in range(args.iters):
        for v in names:
            t0 = time.perf_counter()
            run(v, seed=100 + it)
            times[v].append(time.perf_counter() - t0)

    flops = {}
    if not args.no_flops:
        for v in names:
            keys, batched, _ = VARIANTS[v]
            flops[v] = count_gflop(setups[v], *inputs[v], keys=keys, batched=batched, seed=999)

    import resource  # POSIX only; ru_maxrss is in KiB on Linux

    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    print(f"peak RSS of this process: {rss:.2f} GiB (per-variant only when a single variant is run)")
    peak = max(peak, peak_gflops())  # again at the end: take the better (less disturbed) value
    print(f"fp32 peak, best of start/end: {peak:.1f} GFLOP/s")
    print("\nmin = best iteration (least disturbed by other processes); util and speed-ups use min and median")
    print(f"{'variant':12s} {'median s':>8s} {'min s':>6s} {'max s':>6s} {'GFLOP/it':>8s} {'GFLOP/s@min':>11s} "
          f"{'util@min':>8s} {'x(min)':>6s} {'x(med)':>6s}")
    med_ref = statistics.median(times[names[0]])
    min_ref = min(times[names[0]])
    for v in names:
        med, best = statistics.median(times[v]), min(times[v])
        gf = flops.get(v, float("nan"))
        print(f"{v:12s} {med:8.3f} {best:6.3f} {max(times[v]):6.2f} {gf:8.1f} {gf / best:11.1f} "
              f"{gf / best / peak:8.1%} {min_ref / best:6.2f} {med_ref / med:6.2f}")


if __name__ == "__main__":
    main()
