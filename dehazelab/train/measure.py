"""Cost of an unpaired method: seconds per iteration and peak memory, each measured in a fresh process."""

from __future__ import annotations

import copy
import time
from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from dehazelab.repro import pick_device, seed_everything
from dehazelab.train.checkpoint import unwrap_model
from dehazelab.train.unpaired_config import UnpairedTrainConfig

__all__ = ["measure_cost", "measure_step_time", "peak_memory_mb"]


def peak_memory_mb(device: torch.device | str) -> float | None:
    """CUDA: ``max_memory_allocated`` in MiB; CPU: the process's peak RSS in MiB (Linux/macOS)."""
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    try:
        import resource
        import sys
    except ImportError:  # pragma: no cover - Windows
        return None
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss / 2**20 if sys.platform == "darwin" else rss / 1024.0  # bytes on macOS, KiB on Linux


def _cost_worker(method_name: str, method_kwargs: dict, crop: int, batch_size: int, threads: int | None,
                 device: str, seed: int, n_iter: int, warmup: int) -> dict:
    """Body of :func:`measure_cost`, run in a fresh spawned process."""
    import dehazelab.methods as methods

    seed_everything(seed, threads)
    dev = pick_device(device)
    baseline = peak_memory_mb(dev) if dev.type != "cuda" else 0.0
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats(dev)
    method = methods.build_method(method_name, **method_kwargs).to(dev).train()
    g = torch.Generator().manual_seed(seed)
    batch = {k: torch.rand(batch_size, 3, crop, crop, generator=g) for k in ("hazy", "clear")}

    def sync() -> None:
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)

    for i in range(warmup):
        method.train_step(batch, i)
    sync()
    times = []
    for i in range(n_iter):
        t0 = time.perf_counter()
        method.train_step(batch, warmup + i)
        sync()
        times.append(time.perf_counter() - t0)
    peak = peak_memory_mb(dev)
    times_sorted = sorted(times)
    return {
        "method": method_name,
        "sec_per_iter": sum(times) / len(times),
        "sec_per_iter_median": times_sorted[len(times) // 2],
        "peak_mem_mb": peak,
        "baseline_mem_mb": baseline,
        "peak_mem_delta_mb": None if peak is None or baseline is None else peak - baseline,
        "memory_kind": "cuda max_memory_allocated" if dev.type == "cuda" else "process peak RSS",
        "device": str(dev),
        "threads": torch.get_num_threads(),
        "n_iter": n_iter,
        "warmup": warmup,
        "crop": crop,
        "batch_size": batch_size,
        "n_params": method.n_params(),
    }


def measure_cost(method_name: str, cfg: UnpairedTrainConfig | Mapping[str, Any], n_iter: int, *,
                 warmup: int = 2, method_kwargs: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Seconds per training iteration and peak memory of one method, in a fresh process.

    Builds ``dehazelab.methods.build_method(method_name, **method_kwargs)`` in a process started with
    ``multiprocessing`` *spawn* (so methods measured one after another do not share a peak), runs
    ``warmup`` untimed and ``n_iter`` timed ``train_step`` calls on a random batch of
    ``cfg.batch_size`` × 3 × ``cfg.crop``² per domain, with ``cfg.threads`` / ``cfg.device`` /
    ``cfg.seed``. CUDA is synchronised around each timed step.

    Returns ``{"sec_per_iter" (mean), "sec_per_iter_median", "peak_mem_mb", "baseline_mem_mb",
    "peak_mem_delta_mb", "memory_kind", "device", ...}``. Memory: on CUDA
    ``torch.cuda.max_memory_allocated`` (the paper's "Mem" column is GPU memory; baseline 0); on CPU
    the child's peak resident set size (``getrusage``), ``baseline_mem_mb`` being that peak after
    importing torch and dehazelab, before building the networks — ``peak_mem_delta_mb`` is then the
    training's share. Compare methods on one machine and report relative numbers.
    """
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor

    if isinstance(cfg, Mapping):
        cfg = UnpairedTrainConfig.from_dict(cfg)
    if cfg.crop is None:
        raise ValueError("measure_cost needs cfg.crop (the side of the random training batch)")
    if n_iter < 1 or warmup < 0:
        raise ValueError("measure_cost needs n_iter >= 1 and warmup >= 0")
    args = (method_name, dict(method_kwargs or {}), int(cfg.crop), int(cfg.batch_size), cfg.threads, cfg.device,
            int(cfg.seed), int(n_iter), int(warmup))
    with ProcessPoolExecutor(max_workers=1, mp_context=mp.get_context("spawn")) as ex:
        return ex.submit(_cost_worker, *args).result()


def measure_step_time(
    model: nn.Module,
    batch: Mapping[str, Any],
    loss_fn: Any = None,
    device: torch.device | str | None = None,
    steps: int = 5,
    warmup: int = 2,
    lr: float = 2e-4,
) -> float:
    """Mean wall-clock seconds of one training step (forward, loss, backward, Adam) on ``batch``.

    Works on a deep copy, so ``model`` is not changed. CUDA is synchronised around the timing.
    """
    from dehazelab.train.paired import as_loss_fn  # paired imports this module

    loss_fn = as_loss_fn(loss_fn)
    device = pick_device("auto") if device is None else torch.device(device)
    m = copy.deepcopy(unwrap_model(model)).to(device).train()
    opt = torch.optim.Adam([p for p in m.parameters() if p.requires_grad], lr=lr)
    hazy, clear = batch["hazy"].to(device), batch["clear"].to(device)

    def one() -> None:
        opt.zero_grad(set_to_none=True)
        loss, _ = loss_fn(m(hazy), clear, hazy, batch)
        loss.backward()
        opt.step()

    for _ in range(warmup):
        one()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    t0 = time.perf_counter()
    for _ in range(steps):
        one()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return (time.perf_counter() - t0) / steps
