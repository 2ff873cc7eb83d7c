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
import inspect
import os
import time
import warnings
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import Dataset

from dehazelab import distributed as ddp
from dehazelab.divergence import NonFiniteLoss
from dehazelab.train.checkpoint import (
    CheckpointError,
    capture_rng_state,
    make_checkpoint,
    nonfinite,
    unwrap_model,
    validate_model_spec,
)
from dehazelab.train.config import BOOKKEEPING_FIELDS, PairedTrainConfig, refuse_other_config
from dehazelab.train.measure import measure_step_time
from dehazelab.train.schedules import ConstantLR, CosineDecay, make_scheduler
# the loop and its pieces live in modules of their own; importable from here as before
from dehazelab.train.data_order import EpochSampler, derive_seed, epoch_loader
from dehazelab.train.evaluate import MetricFn, evaluate
from dehazelab.train.loop import CONFIG_FILE, HISTORY_FILE, TrainJob, fit

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
    "PairedJob",
    "train_paired",
    "HISTORY_FILE",
    "CONFIG_FILE",
    "AMP_MAX_SKIPPED",
]

#: ``loss_fn(out, clear, hazy, batch) -> (loss, {part: float})``
LossFn = Callable[[torch.Tensor, torch.Tensor, torch.Tensor, Mapping[str, Any]], tuple[torch.Tensor, Mapping[str, float]]]

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


def _scaler_found_inf(scaler: torch.amp.GradScaler, optimizer: torch.optim.Optimizer) -> bool:
    """Whether ``scaler.unscale_(optimizer)`` found inf/NaN gradients (then ``scaler.step`` skips)."""
    found = scaler._found_inf_per_device(optimizer)  # private, but the only exact source (torch >= 1.6)
    return any(float(v) > 0 for v in found.values())


def _grad_norm(params: list[torch.Tensor]) -> torch.Tensor:
    grads = [p.grad for p in params if p.grad is not None]
    if not grads:
        return torch.zeros(())
    return torch.nn.utils.get_total_norm(grads, norm_type=2.0)


# --------------------------------------------------------------------------------------------
# the paired job: what one step of a network trained on (hazy, clear) pairs does
# --------------------------------------------------------------------------------------------
class PairedJob(TrainJob):
    """A network, its loss, Adam and the per-step schedule, for :func:`~dehazelab.train.loop.fit`."""

    postfix_keys = ("loss",)

    def __init__(self, model: nn.Module, loss_fn: LossFn | None, cfg: PairedTrainConfig,
                 model_spec: Mapping[str, Any] | None = None):
        self.cfg = cfg
        self.model = model
        self.loss_module = loss_fn if isinstance(loss_fn, nn.Module) else None
        gen = getattr(loss_fn, "generator", None)
        self.loss_gen = gen if isinstance(gen, torch.Generator) else None  # the loss's private sampler
        self.loss_gen_before = None
        self.loss_name = "l1_loss" if loss_fn is None else getattr(loss_fn, "__qualname__", type(loss_fn).__qualname__)
        self.loss_fn = as_loss_fn(loss_fn)
        self.model_spec = validate_model_spec(model_spec)
        self.amp_skipped_run = 0  # consecutive updates skipped by the GradScaler
        self.amp_note: str | None = None

    def prepare(self, device: torch.device) -> None:
        cfg = self.cfg
        self.device = device
        self.use_amp = bool(cfg.amp and device.type == "cuda")
        if cfg.amp and not self.use_amp:
            self.amp_note = f"amp=True ignored: device {device} is not CUDA, trained in float32"
            warnings.warn(f"PairedTrainConfig.{self.amp_note}", stacklevel=4)
        self.model.to(device)
        if cfg.channels_last:
            self.model.to(memory_format=torch.channels_last)
        if self.loss_module is not None:
            self.loss_module.to(device)
        self.params = [p for p in self.model.parameters() if p.requires_grad]
        self.optimizer = torch.optim.Adam(self.params, lr=cfg.lr, betas=cfg.betas)
        self.scheduler = make_scheduler(self.optimizer, cfg)
        self.scaler = torch.amp.GradScaler("cuda") if self.use_amp else None
        self.train_model: nn.Module = self.model
        self.autocast = ((lambda: torch.autocast("cuda", dtype=torch.float16)) if self.use_amp
                         else contextlib.nullcontext)

    def check_resume(self, ckpt: Mapping[str, Any], path: Path) -> None:
        refuse_other_config(ckpt.get("config"), self.cfg.to_dict(), path, BOOKKEEPING_FIELDS)
        if self.model_spec is not None and ckpt.get("model_spec") not in (None, self.model_spec):
            raise ValueError(f"cannot resume from {path}: model_spec {ckpt['model_spec']!r} != {self.model_spec!r}")

    def load_state(self, ckpt: Mapping[str, Any], path: Path) -> None:
        try:
            unwrap_model(self.model).load_state_dict(ckpt["model"])
            self.optimizer.load_state_dict(ckpt["optimizer"])
            self.scheduler.load_state_dict(ckpt["scheduler"])
            if self.scaler is not None and "amp_scaler" in ckpt["extra"]:
                self.scaler.load_state_dict(ckpt["extra"]["amp_scaler"])
        except (RuntimeError, ValueError, KeyError) as e:
            raise CheckpointError(f"cannot restore training state from {path}: {e}") from e
        self.amp_skipped_run = int(ckpt["extra"].get("amp_skipped_run", 0))
        if self.loss_gen is not None and "loss_generator" in ckpt["extra"]:
            self.loss_gen.set_state(ckpt["extra"]["loss_generator"])

    def distribute(self, dctx: ddp.DistContext, device: torch.device) -> None:
        # broadcasts rank 0's parameters and buffers; averages gradients in backward
        self.train_model = nn.parallel.DistributedDataParallel(
            self.model, device_ids=[device.index] if device.type == "cuda" else None)
        self.dctx = dctx

    def resolved(self, resumed_from: int | None) -> dict[str, Any]:
        out = dict(n_params=sum(p.numel() for p in self.params), model_spec=self.model_spec,
                   model_class=type(unwrap_model(self.model)).__qualname__, loss_fn=self.loss_name,
                   resumed_from_step=resumed_from, amp=self.use_amp, channels_last=self.cfg.channels_last)
        if self.amp_note is not None:
            out["amp_note"] = self.amp_note
        return out

    def lr(self) -> float:
        return float(self.optimizer.param_groups[0]["lr"])

    def before_batch(self) -> None:
        self.rng_before = capture_rng_state()
        self.loss_gen_before = self.loss_gen.get_state() if self.loss_gen is not None else None

    def step(self, batch: Mapping[str, Any], step: int, t_start: float) -> dict[str, float]:
        cfg, optimizer, scaler = self.cfg, self.optimizer, self.scaler
        hazy = batch["hazy"].to(self.device)
        clear = batch["clear"].to(self.device)
        if cfg.channels_last:
            hazy = hazy.contiguous(memory_format=torch.channels_last)
            clear = clear.contiguous(memory_format=torch.channels_last)
        with self.autocast():
            out = self.train_model(hazy)
            loss, parts = self.loss_fn(out, clear, hazy, batch)
        # parts "l1" -> column "loss_l1"; a part named "loss" repeats the total and is dropped
        parts = {(k if k.startswith("loss_") else f"loss_{k}"): float(v) for k, v in parts.items() if k != "loss"}
        loss_val = float(loss.detach())
        if self.train_model is not self.model:  # DDP: the global batch's loss, the same on every rank
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
            gnorm_t = _grad_norm(self.params)
            gnorm = float(gnorm_t)
            if scaler is not None and _scaler_found_inf(scaler, optimizer):
                # unscale_ found inf/NaN gradients: the scaler skips this update and lowers the
                # scale (an overflow of the scaled loss, not divergence) — unless it keeps happening
                amp_skip = True
                if self.amp_skipped_run + 1 > AMP_MAX_SKIPPED:
                    diverged = (f"gradient norm (AMP: {self.amp_skipped_run + 1} consecutive skipped updates)", gnorm)
            elif nonfinite(gnorm):
                diverged = ("gradient norm", gnorm)
        if diverged is not None:
            # nothing is applied yet: the state before this step is saved as prediverge.pt
            e = NonFiniteLoss(diverged[0], diverged[1], {"loss": loss_val, **parts})
            e.prediverge_rng = self.rng_before
            raise e
        if cfg.grad_clip is not None and not amp_skip:
            torch.nn.utils.clip_grads_with_norm_(self.params, cfg.grad_clip, gnorm_t)
        if scaler is None:
            optimizer.step()
        else:
            scaler.step(optimizer)  # skipped when unscale_ found inf/NaN
            scaler.update()
            self.amp_skipped_run = self.amp_skipped_run + 1 if amp_skip else 0
        if amp_skip:
            with warnings.catch_warnings():  # "lr_scheduler.step() before optimizer.step()": intended
                warnings.simplefilter("ignore", UserWarning)
                self.scheduler.step()
        else:
            self.scheduler.step()
        logged = {"loss": loss_val, **parts}
        if not amp_skip:
            logged["grad_norm"] = gnorm
        if scaler is not None:
            logged.update({"amp_skipped": float(amp_skip), "amp_scale": float(scaler.get_scale())})
        logged["time_per_step"] = time.perf_counter() - t_start
        return logged

    def train_mode(self) -> None:
        self.model.train()

    def eval_model(self) -> nn.Module:
        return self.model

    def checkpoint(self, step: int, best: Mapping[str, Any], window: Mapping[str, Any],
                   rng: Mapping[str, Any] | None = None) -> dict[str, Any]:
        extra: dict[str, Any] = {"window": window, "config_hash": self.cfg.config_hash()}
        if self.loss_gen is not None:  # the loss's private sampler (CR's extra samples), for an exact resume
            extra["loss_generator"] = self.loss_gen_before if rng is not None else self.loss_gen.get_state()
        if self.scaler is not None:
            extra["amp_scaler"] = self.scaler.state_dict()
            extra["amp_skipped_run"] = self.amp_skipped_run
        return make_checkpoint(step=step, model=self.model, optimizer=self.optimizer, scheduler=self.scheduler,
                               best=dict(best), model_spec=self.model_spec, config=self.cfg.to_dict(), rng=rng,
                               extra=extra)

    def finish(self) -> None:
        self.train_model = self.model  # drop the DDP wrapper


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
    if isinstance(cfg, Mapping):
        cfg = PairedTrainConfig.from_dict(cfg)
    job = PairedJob(model, loss_fn, cfg, model_spec)
    return fit(job, train_set, test_set, out_dir, resume=resume, progress=progress, stop_at=stop_at,
               metric_fn=metric_fn, on_start=on_start)
