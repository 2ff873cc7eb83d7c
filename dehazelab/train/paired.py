"""The paired (hazy → clear) training loop shared by AECR-Net, AOD-Net and IICL.

A paper differs by its ``model`` and ``loss_fn`` objects, not by a copy of this loop.

What the loop does, and where it differs from the official AECR-Net ``train_aecrnet.py``
(methods.md §1.6, §1.9, §1.10):

* Adam(lr₀, betas) with a per-step cosine decay ``lr_t = ½(1+cos(π t/T))·lr₀`` for ``t = 0…T-1``
  (official: ``t = 1…T``, so its first step is already decayed and its last step has lr 0).
* Batches come from a ``DataLoader`` whose order is a deterministic function of ``(seed, epoch)``;
  an "epoch" is ``len(train_set) // batch_size`` steps (the last incomplete batch is dropped).
  The official script calls ``next(iter(loader))`` every step, i.e. a fresh shuffle each step
  (sampling with replacement across steps); we walk through epochs without replacement.
* Evaluation: full test images, batch 1, ``model.eval()`` + ``torch.no_grad()``, output clamped
  to [0, 1], per-image PSNR/SSIM averaged (like the official ``test()``; its metric conventions
  live in ``dehazelab.metrics``).
* ``best.pt`` (best PSNR) and ``last.pt``; official: ``<model_dir>.best`` and ``<model_dir>``,
  pickled with python lists inside. Ours load with ``weights_only=True`` and resume bit-exactly on
  CPU (RNG states, data position and the logging window are part of the checkpoint).
* A non-finite loss or gradient norm stops the run with :class:`TrainingDiverged` before the bad
  update is applied; ``last.pt`` is left alone and the state before the failing step is written to
  ``prediverge.pt``.

Files written in ``out_dir``: ``config.json`` (resolved config, at start), ``history.csv``
(one row per ``log_every`` steps and at each evaluation), ``last.pt``, ``best.pt``,
optionally ``step_XXXXXXXX.pt`` snapshots, and ``prediverge.pt`` on divergence.

Several processes (``torchrun``; :mod:`dehazelab.distributed` has the common rules):
``cfg.batch_size`` is the *global* batch; each rank takes its contiguous slice of every global batch
(:class:`EpochSampler` with ``rank`` / ``world_size``) and the model is wrapped in
``DistributedDataParallel`` (``device_ids=[local_rank]`` on CUDA), which broadcasts rank 0's weights
at construction and averages the gradients in ``backward``. The logged loss (and its parts) is the
mean over ranks and is what the divergence test looks at, so all ranks stop together; the gradient
norm is that of the averaged gradient (the same on every rank). Only rank 0 writes files and
evaluates (its un-wrapped model). A parameter that gets no gradient in a step is an error in DDP
(``find_unused_parameters=False``): freeze it (``requires_grad=False``) before training.
DDP broadcasts rank 0's buffers (e.g. running statistics) at every forward. Layers that use batch
statistics in training (AECR-Net's FastDeconv whitening, BatchNorm) see only their rank's slice, so
such models do not reproduce the one-process run exactly (no SyncBatchNorm); dropout masks differ
per rank too. Model outputs pass through DDP unchanged (attributes such as IICL's ``.iicl`` survive).

CUDA options: ``cfg.amp`` (float16 autocast + ``GradScaler``; rule for skipped steps in
:class:`~dehazelab.train.config.PairedTrainConfig`) and ``cfg.channels_last``.
"""

from __future__ import annotations

import contextlib
import copy
import inspect
import math
import os
import time
import warnings
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, Sampler

from dehazelab.io import write_json
from dehazelab.repro import check_device, pick_device, seed_everything, seed_worker
from dehazelab.train.checkpoint import (
    CheckpointDir,
    start_over,
    CheckpointError,
    HistoryLog,
    MeanWindow,
    TrainingDiverged,
    capture_rng_state,
    load_checkpoint,
    make_checkpoint,
    nonfinite,
    restore_rng_state,
    unwrap_model,
    validate_model_spec,
)
from dehazelab.train.interrupt import StopOnSignal, TrainingInterrupted
from dehazelab import distributed as ddp
from dehazelab.train.config import BOOKKEEPING_FIELDS, PairedTrainConfig, with_late_defaults

__all__ = [
    "LossFn",
    "MetricFn",
    "l1_loss",
    "as_loss_fn",
    "CosineDecay",
    "ConstantLR",
    "make_scheduler",
    "derive_seed",
    "EpochSampler",
    "epoch_loader",
    "evaluate",
    "measure_step_time",
    "train_paired",
    "HISTORY_FILE",
    "CONFIG_FILE",
    "AMP_MAX_SKIPPED",
]

#: ``loss_fn(out, clear, hazy, batch) -> (loss, {part: float})``
LossFn = Callable[[torch.Tensor, torch.Tensor, torch.Tensor, Mapping[str, Any]], tuple[torch.Tensor, Mapping[str, float]]]
#: ``metric_fn(pred, gt) -> {"psnr": tensor[B], "ssim": tensor[B], ...}``
MetricFn = Callable[[torch.Tensor, torch.Tensor], Mapping[str, torch.Tensor]]

HISTORY_FILE = "history.csv"
CONFIG_FILE = "config.json"
#: With AMP, this many *consecutive* updates skipped by the GradScaler (overflowing gradients even
#: after as many halvings of the loss scale, i.e. scale 2**16 → 2**-16) count as divergence.
AMP_MAX_SKIPPED = 32


def as_loss_fn(loss_fn: Callable | None) -> LossFn:
    """Normalise ``loss_fn`` to ``f(out, clear, hazy, batch) -> (loss, {part: float})``.

    Accepted: ``None`` (L1), a callable of ``(out, clear, hazy, batch)`` or of ``(out, clear, hazy)``
    (e.g. ``dehazelab.losses.cr.CRLoss``), returning ``(loss, logs)`` or a bare loss tensor.
    """
    if loss_fn is None:
        return l1_loss
    target = loss_fn.forward if isinstance(loss_fn, nn.Module) else loss_fn
    try:
        sig = inspect.signature(target)
    except (TypeError, ValueError):  # builtins without a signature: assume the full form
        sig = None
    takes_batch = True
    if sig is not None:
        try:
            sig.bind(None, None, None, None)
        except TypeError:
            try:
                sig.bind(None, None, None)
            except TypeError:
                raise TypeError(f"loss_fn {loss_fn!r} must accept (out, clear, hazy[, batch])") from None
            takes_batch = False

    def call(out, clear, hazy, batch):
        res = loss_fn(out, clear, hazy, batch) if takes_batch else loss_fn(out, clear, hazy)
        if isinstance(res, torch.Tensor):
            return res, {}
        loss, logs = res
        return loss, dict(logs or {})

    call.__qualname__ = getattr(loss_fn, "__qualname__", type(loss_fn).__qualname__)
    return call


def l1_loss(out: torch.Tensor, clear: torch.Tensor, hazy: torch.Tensor, batch: Mapping[str, Any]):
    """Default loss: mean absolute error to the clear image (AECR-Net's reconstruction term)."""
    loss = torch.nn.functional.l1_loss(out, clear)
    return loss, {"l1": float(loss.detach())}


# --------------------------------------------------------------------------------------------
# learning-rate schedules (callable objects, so LambdaLR's state_dict stays plain)
# --------------------------------------------------------------------------------------------
class CosineDecay:
    """``f(t) = ½(1 + cos(π t / T))``: multiplier of lr₀ for the update after ``t`` completed steps."""

    def __init__(self, total_steps: int):
        self.total_steps = int(total_steps)

    def __call__(self, t: int) -> float:
        return 0.5 * (1.0 + math.cos(math.pi * t / self.total_steps))


class ConstantLR:
    """``f(t) = 1``."""

    def __call__(self, t: int) -> float:
        return 1.0


def make_scheduler(optimizer: torch.optim.Optimizer, cfg: PairedTrainConfig) -> torch.optim.lr_scheduler.LambdaLR:
    """Per-step ``LambdaLR`` (call ``.step()`` after every optimiser step)."""
    fn = CosineDecay(cfg.steps) if cfg.cosine else ConstantLR()
    return torch.optim.lr_scheduler.LambdaLR(optimizer, fn)


# --------------------------------------------------------------------------------------------
# deterministic, resumable data order
# --------------------------------------------------------------------------------------------
def derive_seed(*keys: int) -> int:
    """A well-mixed 63-bit seed from integers (numpy ``SeedSequence``), e.g. ``(seed, epoch, stream)``."""
    a, b = np.random.SeedSequence([int(k) for k in keys]).generate_state(2, dtype=np.uint32)
    return ((int(a) << 32) | int(b)) & (2**63 - 1)


def reseed_rank(seed: int, rank: int, resumed_step: int | None) -> None:
    """Give rank ``rank > 0`` of a distributed run its own RNG streams (rank 0 keeps the
    single-process ones, so a 1-process run is unchanged); after a resume they also depend on the step."""
    seed_everything(derive_seed(seed, rank) if resumed_step is None else derive_seed(seed, rank, resumed_step))


def resolved_run(device: torch.device, n_train: int, test_set: Dataset | None, steps_per_epoch: int,
                 dctx: "ddp.DistContext", batch_size: int, **specific: Any) -> dict[str, Any]:
    """The ``resolved`` block of a run's config.json that both trainers share, then ``specific``."""
    return {
        "device": str(device),
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "n_train": n_train,
        "n_test": None if test_set is None else len(test_set),
        "steps_per_epoch": steps_per_epoch,
        "world_size": dctx.world_size,
        "backend": dctx.backend,
        "batch_per_rank": batch_size // dctx.world_size,
        **specific,
    }


class EpochSampler(Sampler[int]):
    """Indices of one epoch: ``randperm(n)`` seeded by ``(seed, epoch)``, starting at ``start``.

    Because the permutation depends only on ``(seed, epoch)``, a run resumed at step ``s`` rebuilds
    exactly the remaining batches of its epoch (``start = (s mod steps_per_epoch)·batch_size``).

    Distributed (``world_size`` > 1, ``batch_size`` = the *global* batch): the permutation is the
    same on every rank; of each complete global batch ``indices[j·B : (j+1)·B]`` rank ``r`` yields
    its contiguous slice ``[r·B/W, (r+1)·B/W)`` (an incomplete last batch is dropped), so the ranks
    together see exactly the batches of a one-process run. Load it with ``batch_size = B/W``.
    """

    def __init__(self, n: int, seed: int, epoch: int, start: int = 0, *, rank: int = 0, world_size: int = 1,
                 batch_size: int | None = None):
        if not 0 <= start <= n:
            raise ValueError(f"start={start} outside [0, {n}]")
        self.n, self.seed, self.epoch, self.start = int(n), int(seed), int(epoch), int(start)
        self.rank, self.world_size = int(rank), int(world_size)
        if not 0 <= self.rank < self.world_size:
            raise ValueError(f"rank {rank} outside [0, {world_size})")
        self.batch_size = None if batch_size is None else int(batch_size)
        if self.world_size > 1:
            if self.batch_size is None:
                raise ValueError("EpochSampler: world_size > 1 needs the global batch_size")
            self.local_batch = ddp.DistContext(0, self.world_size).local_batch(self.batch_size)

    def permutation(self) -> list[int]:
        g = torch.Generator().manual_seed(derive_seed(self.seed, self.epoch, 0))
        return torch.randperm(self.n, generator=g).tolist()

    def __iter__(self) -> Iterator[int]:
        rest = self.permutation()[self.start :]
        if self.world_size == 1:
            return iter(rest)
        b, lb = self.batch_size, self.local_batch
        out: list[int] = []
        for j in range(len(rest) // b):
            lo = j * b + self.rank * lb
            out.extend(rest[lo : lo + lb])
        return iter(out)

    def __len__(self) -> int:
        if self.world_size == 1:
            return self.n - self.start
        return ((self.n - self.start) // self.batch_size) * self.local_batch


def epoch_loader(train_set: Dataset, cfg: PairedTrainConfig, epoch: int, start_batch: int = 0, *,
                 rank: int = 0, world_size: int = 1) -> DataLoader:
    """The DataLoader for ``epoch``, skipping its first ``start_batch`` batches.

    ``cfg.batch_size`` is the global batch; with ``world_size`` > 1 the loader yields rank
    ``rank``'s slices of ``cfg.batch_size / world_size`` images (see :class:`EpochSampler`).

    Calls ``train_set.set_epoch(epoch)`` when the dataset has it (``dehazelab.data.PairedDataset``
    draws its crops/flips from ``(seed, epoch, index)``, which makes resuming exact with any
    number of workers).

    The loader's own generator (seeded from ``(seed, epoch)``, and the rank for ranks > 0) only
    feeds worker base seeds; workers are initialised with :func:`dehazelab.repro.seed_worker`.
    """
    if callable(getattr(train_set, "set_epoch", None)):
        train_set.set_epoch(epoch)
    if world_size == 1:
        sampler = EpochSampler(len(train_set), cfg.seed, epoch, start_batch * cfg.batch_size)
        gen = torch.Generator().manual_seed(derive_seed(cfg.seed, epoch, 1))
        local_batch = cfg.batch_size
    else:
        sampler = EpochSampler(len(train_set), cfg.seed, epoch, start_batch * cfg.batch_size, rank=rank,
                               world_size=world_size, batch_size=cfg.batch_size)
        keys = (cfg.seed, epoch, 1) if rank == 0 else (cfg.seed, epoch, 1, rank)
        gen = torch.Generator().manual_seed(derive_seed(*keys))
        local_batch = sampler.local_batch
    return DataLoader(
        train_set,
        batch_size=local_batch,
        sampler=sampler,
        drop_last=True,
        num_workers=cfg.num_workers,
        worker_init_fn=seed_worker if cfg.num_workers > 0 else None,
        generator=gen,
        pin_memory=False,
    )


# --------------------------------------------------------------------------------------------
# evaluation
# --------------------------------------------------------------------------------------------
def _default_metric_fn() -> MetricFn:
    try:
        from dehazelab.metrics import batch_delta_e, batch_psnr, batch_ssim
    except ImportError as e:  # pragma: no cover - depends on another module being present
        raise ImportError(
            "evaluate() needs dehazelab.metrics (batch_psnr, batch_ssim) or an explicit metric_fn"
        ) from e

    def metric_fn(pred: torch.Tensor, gt: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"psnr": batch_psnr(pred, gt), "ssim": batch_ssim(pred, gt), "delta_e": batch_delta_e(pred, gt)}

    return metric_fn


def evaluate(
    model: nn.Module,
    dataset: Dataset,
    device: torch.device | str | None = None,
    metric_fn: MetricFn | None = None,
    max_images: int | None = None,
    per_image: list[dict[str, Any]] | None = None,
) -> dict[str, float]:
    """Mean metrics of ``model`` on ``dataset``: full images, batch 1, output clamped to [0, 1].

    ``per_image``: a list that receives one row per image (``name`` and each metric).

    ``dataset[i]`` must be a dict with ``"hazy"`` and ``"clear"`` (3×H×W in [0, 1]).
    ``metric_fn(pred, gt)`` returns per-image tensors (default: ``dehazelab.metrics.batch_psnr`` /
    ``batch_ssim`` / ``batch_delta_e``). Returns ``{"psnr": mean, "ssim": mean, ..., "n": images}``. The model's
    train/eval mode is restored afterwards.
    """
    metric_fn = metric_fn or _default_metric_fn()
    p = next(iter(model.parameters()), None)
    if device is None:
        device = p.device if p is not None else torch.device("cpu")
    device = torch.device(device)
    dtype = p.dtype if p is not None and p.is_floating_point() else torch.float32  # float64 reference runs
    n_total = len(dataset) if max_images is None else min(len(dataset), int(max_images))
    if n_total == 0:
        raise ValueError("evaluate: empty dataset")
    was_training = model.training
    model.eval()
    sums: dict[str, float] = {}
    n = 0
    try:
        with torch.no_grad():
            for i in range(n_total):
                item = dataset[i]
                hazy = item["hazy"].unsqueeze(0).to(device, dtype)
                clear = item["clear"].unsqueeze(0).to(device, dtype)
                pred = model(hazy).clamp(0.0, 1.0)
                row: dict[str, Any] = {"name": str(item.get("name", i))}
                for k, v in metric_fn(pred, clear).items():
                    val = float(torch.as_tensor(v, dtype=torch.float64).sum())
                    sums[k] = sums.get(k, 0.0) + val
                    row[k] = val
                if per_image is not None:
                    per_image.append(row)
                n += 1
    finally:
        model.train(was_training)
    return {**{k: s / n for k, s in sums.items()}, "n": n}


def measure_step_time(
    model: nn.Module,
    batch: Mapping[str, Any],
    loss_fn: LossFn | None = None,
    device: torch.device | str | None = None,
    steps: int = 5,
    warmup: int = 2,
    lr: float = 2e-4,
) -> float:
    """Mean wall-clock seconds of one training step (forward, loss, backward, Adam) on ``batch``.

    Works on a deep copy, so ``model`` is not changed. CUDA is synchronised around the timing.
    """
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


# --------------------------------------------------------------------------------------------
# the loop
# --------------------------------------------------------------------------------------------
def _check_resume(ckpt: Mapping[str, Any], cfg: PairedTrainConfig, model_spec: Mapping[str, Any] | None, path: Path) -> None:
    saved = with_late_defaults(ckpt.get("config"))
    now = cfg.to_dict()
    diff = sorted(k for k in set(saved) | set(now)
                  if k not in BOOKKEEPING_FIELDS and saved.get(k) != now.get(k))
    if diff:
        detail = ", ".join(f"{k}: {saved.get(k)!r} -> {now.get(k)!r}" for k in diff)
        raise ValueError(
            f"cannot resume from {path}: the config differs in {detail}. "
            "Use a new out_dir, or resume=False to start over."
        )
    spec = validate_model_spec(model_spec)
    if spec is not None and ckpt.get("model_spec") not in (None, spec):
        raise ValueError(f"cannot resume from {path}: model_spec {ckpt['model_spec']!r} != {spec!r}")


def _scaler_found_inf(scaler: torch.amp.GradScaler, optimizer: torch.optim.Optimizer) -> bool:
    """Whether ``scaler.unscale_(optimizer)`` found inf/NaN gradients (then ``scaler.step`` skips)."""
    found = scaler._found_inf_per_device(optimizer)  # private, but the only exact source (torch >= 1.6)
    return any(float(v) > 0 for v in found.values())


def _grad_norm(params: list[torch.Tensor]) -> torch.Tensor:
    grads = [p.grad for p in params if p.grad is not None]
    if not grads:
        return torch.zeros(())
    return torch.nn.utils.get_total_norm(grads, norm_type=2.0)


def train_paired(
    model: nn.Module,
    loss_fn: LossFn | None,
    train_set: Dataset,
    test_set: Dataset | None,
    cfg: PairedTrainConfig | Mapping[str, Any],
    out_dir: str | os.PathLike,
    model_spec: Mapping[str, Any] | None = None,
    resume: bool = True,
    metric_fn: MetricFn | None = None,
    progress: bool = True,
    stop_at: int | None = None,
    on_start: Callable[[], None] | None = None,
):
    """Train ``model`` on (hazy, clear) pairs; return the history as a pandas DataFrame.

    Parameters
    ----------
    model: the network; moved to the configured device. Its weights after the call are those of
        the last completed step (``best.pt`` holds the best-PSNR state).
    loss_fn: ``loss_fn(out, clear, hazy, batch) -> (loss, {part: float})``; the 3-argument form
        ``(out, clear, hazy)`` (e.g. ``CRLoss``) and a bare tensor result are accepted too (see
        :func:`as_loss_fn`); ``None`` = L1. Parts are logged as ``loss_<part>`` (a part named
        ``loss`` is the total and is not repeated). An ``nn.Module`` loss (e.g. one holding a VGG)
        is moved to the device too. Randomness inside the loss is resume-exact when it draws
        from the global RNGs or from a CPU ``torch.Generator`` held as ``loss_fn.generator``
        (its state is checkpointed).
    train_set: items ``{"hazy": 3×h×w, "clear": 3×h×w, "name": str}`` — crops of one size, already
        augmented by the dataset.
    test_set: same item format, full images; ``None`` disables evaluation.
    cfg: :class:`PairedTrainConfig` (or a dict for it).
    out_dir: run folder (created).
    model_spec: ``{"model": registry name, "kwargs": {...}}`` stored in checkpoints.
    resume: continue from ``out_dir/last.pt`` when it exists (the config, apart from
        bookkeeping fields, must match). ``False`` starts over and deletes the folder's previous
        history/checkpoints. With ``True`` and no ``last.pt``, a folder holding another run's
        checkpoints or history is refused (:func:`~dehazelab.train.checkpoint.start_over`).
        A finished run returns its history without training.
    metric_fn: see :func:`evaluate`.
    progress: show a tqdm bar (``TQDM_DISABLE=1`` in the environment also hides it).
    stop_at: stop after this step (saving ``last.pt``) as if interrupted, e.g. to train in
        chunks across notebook sessions; the schedule still spans ``cfg.steps``.
    on_start: called once (main process) when training starts: every check passed, the folder
        prepared, ``config.json`` written (the launcher writes its run spec here).

    Under ``torchrun`` (``WORLD_SIZE`` > 1) every process calls this with the same arguments;
    ``cfg.batch_size`` is the global batch (see the module docstring and
    :mod:`dehazelab.distributed`). Bit-exact resume is guaranteed only in a single process. Every rank returns the
    history read from ``out_dir`` (written by rank 0; empty on a rank that does not see it).

    Raises
    ------
    TrainingDiverged: the loss or gradient norm became non-finite (see module docstring).
    ValueError: ``cfg.batch_size`` is not divisible by the number of processes.
    """
    from tqdm.auto import tqdm

    if isinstance(cfg, Mapping):
        cfg = PairedTrainConfig.from_dict(cfg)
    if stop_at is not None and not 1 <= int(stop_at):
        raise ValueError(f"stop_at must be >= 1, got {stop_at}")
    loss_module = loss_fn if isinstance(loss_fn, nn.Module) else None
    loss_gen = getattr(loss_fn, "generator", None)
    loss_gen = loss_gen if isinstance(loss_gen, torch.Generator) else None
    loss_gen_before = None
    loss_name = "l1_loss" if loss_fn is None else getattr(loss_fn, "__qualname__", type(loss_fn).__qualname__)
    loss_fn = as_loss_fn(loss_fn)
    model_spec = validate_model_spec(model_spec)
    out_dir = Path(out_dir)
    dctx = ddp.DistContext.from_env()
    dctx.local_batch(cfg.batch_size)  # a clear error before anything else when W does not divide the batch
    if dctx.is_main:
        out_dir.mkdir(parents=True, exist_ok=True)

    n_train = len(train_set)
    if n_train < cfg.batch_size:
        raise ValueError(f"train_set has {n_train} items, fewer than batch_size={cfg.batch_size}")
    steps_per_epoch = n_train // cfg.batch_size
    ds_crop = getattr(train_set, "crop", None)
    if isinstance(ds_crop, int):
        ds_crop = (ds_crop, ds_crop)
    if isinstance(ds_crop, tuple) and tuple(ds_crop) != (cfg.crop, cfg.crop):
        warnings.warn(f"train_set.crop={ds_crop} but cfg.crop={cfg.crop}: the dataset's crop is what is used, "
                      "the recorded config is wrong", stacklevel=2)
    ds_augment = getattr(train_set, "augment", None)
    if isinstance(ds_augment, bool) and ds_augment != cfg.augment:
        warnings.warn(f"train_set.augment={ds_augment} but cfg.augment={cfg.augment}: the dataset decides, "
                      "the recorded config is wrong", stacklevel=2)

    seed_everything(cfg.seed, cfg.threads)
    device = check_device(cfg.device)
    dctx, device = ddp.init_distributed(device)
    world, rank = dctx.world_size, dctx.rank
    use_amp = bool(cfg.amp and device.type == "cuda")
    amp_note = None
    if cfg.amp and not use_amp:
        amp_note = f"amp=True ignored: device {device} is not CUDA, trained in float32"
        warnings.warn(f"PairedTrainConfig.{amp_note}", stacklevel=2)
    model.to(device)
    if cfg.channels_last:
        model.to(memory_format=torch.channels_last)
    if loss_module is not None:
        loss_module.to(device)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.Adam(params, lr=cfg.lr, betas=cfg.betas)
    scheduler = make_scheduler(optimizer, cfg)
    scaler = torch.amp.GradScaler("cuda") if use_amp else None

    ckdir = CheckpointDir(out_dir, keep=cfg.keep_snapshots)
    if dctx.is_main:
        ckdir.remove_stale_tmp()  # left by a run killed while writing
    history = HistoryLog(out_dir / HISTORY_FILE)
    window = MeanWindow()
    best: dict[str, Any] = {"metric": "psnr", "value": None, "step": None}
    step = 0
    amp_skipped_run = 0  # consecutive updates skipped by the GradScaler

    have_last = bool(resume and ckdir.last.exists())
    if dctx.enabled and ddp.any_rank(have_last) != ddp.all_ranks(have_last):
        raise RuntimeError(f"{ckdir.last} is visible on some ranks only: the run folder must be on a filesystem "
                           "shared by all ranks")
    if have_last:
        ckpt = load_checkpoint(ckdir.last)
        _check_resume(ckpt, cfg, model_spec, ckdir.last)
        try:
            unwrap_model(model).load_state_dict(ckpt["model"])
            optimizer.load_state_dict(ckpt["optimizer"])
            scheduler.load_state_dict(ckpt["scheduler"])
            if scaler is not None and "amp_scaler" in ckpt["extra"]:
                scaler.load_state_dict(ckpt["extra"]["amp_scaler"])
        except (RuntimeError, ValueError, KeyError) as e:
            raise CheckpointError(f"cannot restore training state from {ckdir.last}: {e}") from e
        step = int(ckpt["step"])
        best = dict(ckpt["best"])
        window.load_state_dict(ckpt["extra"].get("window", {}))
        amp_skipped_run = int(ckpt["extra"].get("amp_skipped_run", 0))
        restore_rng_state(ckpt["rng"])
        if loss_gen is not None and "loss_generator" in ckpt["extra"]:
            loss_gen.set_state(ckpt["extra"]["loss_generator"])
        if dctx.is_main:
            history.truncate(step)
        resumed_from = step
    else:
        start_over(ckdir, history, resume=resume, config_file=out_dir / CONFIG_FILE,
                   identity={"config_hash": cfg.config_hash()}, main=dctx.is_main)
        resumed_from = None

    train_model: nn.Module = model
    if dctx.enabled:
        # broadcasts rank 0's parameters and buffers; averages gradients in backward
        train_model = nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None)
        # rank 0 keeps the single-process RNG streams; the others get their own
        reseed_rank(cfg.seed, rank, None if resumed_from is None else step)

    resolved = resolved_run(device, n_train, test_set, steps_per_epoch, dctx, cfg.batch_size,
                            n_params=sum(p.numel() for p in params), model_spec=model_spec,
                            model_class=type(unwrap_model(model)).__qualname__, loss_fn=loss_name,
                            resumed_from_step=resumed_from, amp=use_amp, channels_last=cfg.channels_last)
    if amp_note is not None:
        resolved["amp_note"] = amp_note
    if dctx.is_main:
        write_json(out_dir / CONFIG_FILE, {"config": cfg.to_dict(), "config_hash": cfg.config_hash(),
                                           "resolved": resolved})
        if on_start is not None:
            on_start()

    last_step = cfg.steps if stop_at is None else min(cfg.steps, int(stop_at))

    def state(at_step: int, rng: Mapping[str, Any] | None = None) -> dict[str, Any]:
        extra: dict[str, Any] = {"window": window.state_dict(), "config_hash": cfg.config_hash()}
        if loss_gen is not None:  # the loss's private sampler (CR's extra samples), for an exact resume
            extra["loss_generator"] = loss_gen_before if rng is not None else loss_gen.get_state()
        if scaler is not None:
            extra["amp_scaler"] = scaler.state_dict()
            extra["amp_skipped_run"] = amp_skipped_run
        return make_checkpoint(step=at_step, model=model, optimizer=optimizer, scheduler=scheduler,
                               best=best, model_spec=model_spec, config=cfg.to_dict(), rng=rng, extra=extra)

    tqdm_kw: dict[str, Any] = {"total": cfg.steps, "initial": step, "desc": out_dir.name, "unit": "step",
                               "dynamic_ncols": True}
    if not progress or not dctx.is_main:
        tqdm_kw["disable"] = True  # otherwise tqdm reads TQDM_DISABLE from the environment
    bar = tqdm(**tqdm_kw)
    autocast = (lambda: torch.autocast("cuda", dtype=torch.float16)) if use_amp else contextlib.nullcontext
    model.train()
    batches: Iterator[Mapping[str, Any]] | None = None
    stop = StopOnSignal()
    try:
        stop.__enter__()
        while step < last_step:
            t0 = time.perf_counter()
            rng_before = capture_rng_state()
            loss_gen_before = loss_gen.get_state() if loss_gen is not None else None
            epoch, b = divmod(step, steps_per_epoch)
            if batches is None or b == 0:
                batches = iter(epoch_loader(train_set, cfg, epoch, b, rank=rank, world_size=world))
            batch = next(batches)
            hazy = batch["hazy"].to(device)
            clear = batch["clear"].to(device)
            if cfg.channels_last:
                hazy = hazy.contiguous(memory_format=torch.channels_last)
                clear = clear.contiguous(memory_format=torch.channels_last)
            lr_now = float(optimizer.param_groups[0]["lr"])

            with autocast():
                out = train_model(hazy)
                loss, parts = loss_fn(out, clear, hazy, batch)
            # parts "l1" -> column "loss_l1"; a part named "loss" repeats the total and is dropped
            parts = {(k if k.startswith("loss_") else f"loss_{k}"): float(v) for k, v in parts.items() if k != "loss"}
            loss_val = float(loss.detach())
            if dctx.enabled:  # the global batch's loss: every rank decides divergence on the same value
                means = ddp.mean_over_ranks({"loss": loss_val, **parts})
                loss_val = means.pop("loss")
                parts = means
            diverged = ("loss", loss_val) if nonfinite(loss_val) else None
            amp_skip = False
            if diverged is None:
                optimizer.zero_grad(set_to_none=True)
                if scaler is None:
                    loss.backward()
                else:
                    scaler.scale(loss).backward()
                    scaler.unscale_(optimizer)
                gnorm_t = _grad_norm(params)
                gnorm = float(gnorm_t)
                if scaler is not None and _scaler_found_inf(scaler, optimizer):
                    # unscale_ found inf/NaN gradients: the scaler skips this update and lowers the
                    # scale (an overflow of the scaled loss, not divergence) — unless it keeps happening
                    amp_skip = True
                    if amp_skipped_run + 1 > AMP_MAX_SKIPPED:
                        diverged = (f"gradient norm (AMP: {amp_skipped_run + 1} consecutive skipped updates)",
                                    gnorm)
                elif nonfinite(gnorm):
                    diverged = ("gradient norm", gnorm)
            if diverged is not None:
                # Nothing has been applied yet: model/optimiser/scheduler/window are the state
                # after step `step`, and rng_before is the RNG state at its end.
                saved = ckdir.save_prediverge(state(step, rng=rng_before)) if dctx.is_main else None
                raise TrainingDiverged(step + 1, diverged[0], diverged[1], {"loss": loss_val, **parts},
                                       last_good=ckdir.last if ckdir.last.exists() else None, saved=saved)
            if cfg.grad_clip is not None and not amp_skip:
                torch.nn.utils.clip_grads_with_norm_(params, cfg.grad_clip, gnorm_t)
            if scaler is None:
                optimizer.step()
            else:
                scaler.step(optimizer)  # skipped when unscale_ found inf/NaN
                scaler.update()
                amp_skipped_run = amp_skipped_run + 1 if amp_skip else 0
            if amp_skip:
                with warnings.catch_warnings():  # "lr_scheduler.step() before optimizer.step()": intended
                    warnings.simplefilter("ignore", UserWarning)
                    scheduler.step()
            else:
                scheduler.step()
            step += 1
            logged = {"loss": loss_val, **parts}
            if not amp_skip:
                logged["grad_norm"] = gnorm
            if scaler is not None:
                logged.update({"amp_skipped": float(amp_skip), "amp_scale": float(scaler.get_scale())})
            logged["time_per_step"] = time.perf_counter() - t0
            window.add(logged)
            bar.update(1)
            stop_now = stop.signal is not None
            if dctx.enabled:
                stop_now = ddp.any_rank(stop_now)  # a signal on any rank stops all of them at this step

            do_eval = test_set is not None and (step == cfg.steps or (cfg.eval_every > 0 and step % cfg.eval_every == 0))
            if dctx.is_main:
                ev: dict[str, float] = {}
                improved = False
                if do_eval:
                    ev = evaluate(model, test_set, device, metric_fn)
                    model.train()
                    if best["value"] is None or ev["psnr"] > best["value"]:
                        best = {"metric": "psnr", "value": float(ev["psnr"]), "step": step}
                        improved = True

                # Order matters for crash safety: the history row goes to disk before last.pt, so a
                # resume never misses a row (rows past the checkpoint are truncated on resume).
                if step % cfg.log_every == 0 or do_eval or step == cfg.steps:
                    row: dict[str, Any] = {"step": step, "epoch": step / steps_per_epoch, "lr": lr_now}
                    row.update(window.means())
                    row.update({"psnr": ev.get("psnr"), "ssim": ev.get("ssim"), "eval_n": ev.get("n")})
                    row.update({f"eval_{k}": v for k, v in ev.items() if k not in ("psnr", "ssim", "n")})
                    history.append(row)
                    window.reset()
                    post = {"loss": f"{row['loss']:.4f}"}
                    if ev:
                        post["psnr"] = f"{ev['psnr']:.2f}"
                    bar.set_postfix(post, refresh=False)

                ckdir.save_due(state, step=step, last_step=last_step, ckpt_every=cfg.ckpt_every,
                               snapshot_every=cfg.snapshot_every, evaluated=bool(do_eval), improved=bool(improved),
                               force_last=stop_now)
            else:
                if step % cfg.log_every == 0 or do_eval or step == cfg.steps:
                    window.reset()
            if do_eval:
                ddp.barrier()  # the other ranks wait for rank 0's evaluation
            if stop_now and step < last_step:
                ddp.barrier()
                raise TrainingInterrupted(step, stop.signal or "SIGTERM", ckdir.last if dctx.is_main else None)
    finally:
        stop.__exit__(None, None, None)
        bar.close()
    ddp.barrier()  # rank 0's last files are written before anyone returns
    del train_model
    return history.read()
