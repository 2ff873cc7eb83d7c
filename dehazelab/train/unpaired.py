"""The unpaired (hazy ↔ clear) training loop shared by CUT, FastCUT, CycleGAN (and CDD-GAN).

A paper differs by its *method object* (:mod:`dehazelab.methods`: networks, optimisers, losses and
the update order of one iteration), not by a copy of this loop. The loop owns the rest, mirroring
:func:`dehazelab.train.paired.train_paired` and reusing its pieces (``epoch_loader`` /
``EpochSampler`` for a deterministic resumable data order, ``evaluate`` for PSNR/SSIM) and
:mod:`dehazelab.train.checkpoint` (weights_only checkpoints, RNG capture, history CSV).

Schedule (``docs/methods.md`` §2.7, official ``--lr_policy linear``)
---------------------------------------------------------------------
The official code keeps lr₀ for ``n_epochs`` and then decays it linearly over ``n_epochs_decay``
epochs with ``f(e) = 1 − max(0, e + 1 − n_epochs) / (n_epochs_decay + 1)``, stepped once per epoch.
We count in **steps** (iterations): the update after ``t`` completed steps uses
``lr₀ · f(t // lr_every)`` with ``n_steps / lr_every`` constant units and ``n_steps_decay / lr_every``
decay units (:class:`LinearDecay`). ``lr_every=1`` (default) decays every step; ``lr_every`` = steps
per epoch with ``n_steps``, ``n_steps_decay`` whole epochs reproduces the official per-epoch
staircase. The last update uses ``lr₀ / (n_decay_units + 1)`` — "to ~0", as officially.

Crop switched off in the decay phase
------------------------------------
The official ``UnalignedDataset`` stops resize-and-crop for the decay epochs (``load_size :=
crop_size``: whole images resized to the crop size) — a "fine-tuning phase". ``cfg.decay_data``:

* ``"resize"`` (default, official): from step ``n_steps`` on, items are whole images resized
  (bicubic, anti-aliased) to the crop size. If the dataset has ``set_phase(phase)`` the loop calls it
  with ``"train"`` / ``"decay"``; otherwise (``dehazelab.data.UnpairedDataset`` today) it wraps the
  dataset in :class:`DecayPhaseDataset`, which reads the same items without the crop and resizes them.
  Note the scale change: the official crop is 256 of a 286² resize (89 % of the image), while
  ``UnpairedDataset`` crops at the native resolution, so with 620×460 SOTS images and crop 128 the
  decay phase sees the scene ~4.8× smaller than the training phase (and than full-resolution testing).
* ``"keep"``: keep the crops throughout (our recommended choice with native-resolution crops; a
  deliberate difference, record it).

Evaluation, checkpoints, resume, divergence
-------------------------------------------
* Every ``eval_every`` steps and after the last step, ``method.dehazer()`` (an
  :class:`~dehazelab.models.translator.ImageTranslator`: [0,1] → [-1,1] → G → [0,1], full test
  images, batch 1) is scored with :func:`dehazelab.train.paired.evaluate` on the *paired* test set;
  ``best.pt`` keeps the best PSNR. (CUT reports FID against target-domain images; with paired test
  data PSNR/SSIM are available and are what dehazing papers report.)
* Checkpoint layout (``weights_only=True``-loadable): ``model`` = the dehazer's state dict and
  ``model_spec`` = ``method.model_spec()``, so :func:`~dehazelab.train.checkpoint.model_from_checkpoint`
  with a registry holding ``cut`` / ``fastcut`` / ``cyclegan`` (see ``models/translator.py``) rebuilds
  the dehazer; ``extra["method_state"]`` = everything else of ``method.state_dict()`` (other networks,
  all optimisers and schedulers, image pools), plus the logging window and hyper-parameters.
* Resume from ``last.pt`` is exact on CPU with ``num_workers=0``: global RNGs (which the methods draw
  from), the data position and phase, the schedule and the pools are restored.
* A non-finite loss or gradient norm stops the run with
  :class:`~dehazelab.train.checkpoint.TrainingDiverged`; ``last.pt`` is never overwritten by a bad
  state. Unlike the paired loop **no** ``prediverge.pt`` is written: an unpaired iteration makes
  several updates (e.g. CUT's D step precedes the generator loss, which needs the updated D), so
  the state "just before the failing update" is a half-applied iteration; resume from ``last.pt``.

Several processes (``torchrun``)
--------------------------------
The rules of :mod:`dehazelab.distributed` hold: ``cfg.batch_size`` is the global batch, each
rank trains on its contiguous slice of every global batch, rank 0 keeps ``cfg.seed`` and ranks > 0
re-seed from ``derive_seed(cfg.seed, rank)``, only rank 0 writes files and evaluates, logged values
are means over ranks. The networks are *not* wrapped in ``DistributedDataParallel``: a method
iteration makes several updates (D, then G and the heads) of networks whose ``requires_grad`` is
toggled in between, evaluates networks in passes whose gradients are discarded, and may build
networks late — patterns DDP's reducer (one all-reduce per ``backward`` over a fixed parameter set)
does not fit. The same mathematics is done explicitly: every update of
:meth:`~dehazelab.methods.UnpairedMethod._backward_step` averages the gradients of the parameters it
steps over ranks before the optimiser step (the averaged gradient of the global batch, exactly what
DDP computes), and its loss / gradient-norm checks use values all-reduced over ranks, so all ranks
raise together. Every network's parameters and buffers are broadcast from rank 0 at the start, and
again (with the optimiser states) if the first iteration created parameters that did not exist
before (a lazily built head; none of the current methods does that — CUT's heads are built eagerly
in ``__init__``). What is per rank: randomness drawn inside the step (CUT's patch positions,
FastCUT's flip, the image pools' coin flips) and the image pools themselves (each rank pools its
own fakes; checkpoints hold rank 0's pools, which every rank loads when resuming).

Mixed precision is not implemented for the GAN loops (the several interleaved losses would need
one GradScaler per optimiser and per-update skip rules); ``channels_last`` is.

Cost
----
History rows carry ``sec_per_step`` (wall-clock of ``method.train_step`` alone, window mean; data
loading is ``data_sec``) and ``peak_mem_mb`` (CUDA: ``torch.cuda.max_memory_allocated``; CPU: the
process's peak resident set size, which in a notebook includes everything the kernel did before).
For comparable per-method numbers use :func:`measure_cost`, which runs each measurement in a fresh
spawned process (``docs/methods.md`` §2.9: present relative numbers only).
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import Dataset

from dehazelab import distributed as ddp
from dehazelab.methods import UnpairedMethod
from dehazelab.train.checkpoint import CheckpointError, make_checkpoint, validate_model_spec
from dehazelab.train.config import refuse_other_config
from dehazelab.train.decay_phase import DecayPhaseDataset, phased as _phased
from dehazelab.train.evaluate import MetricFn
from dehazelab.train.loop import TrainJob, fit
from dehazelab.train.measure import measure_cost, peak_memory_mb
from dehazelab.train.unpaired_config import (
    UNPAIRED_BOOKKEEPING_FIELDS,
    UNPAIRED_LATE_FIELD_DEFAULTS,
    LinearDecay,
    UnpairedTrainConfig,
)

__all__ = [
    "UnpairedTrainConfig",
    "UNPAIRED_BOOKKEEPING_FIELDS",
    "UNPAIRED_LATE_FIELD_DEFAULTS",
    "LinearDecay",
    "DecayPhaseDataset",
    "UnpairedJob",
    "train_unpaired",
    "measure_cost",
    "peak_memory_mb",
]

#: Method log names with these prefixes go to the history as they are; others get ``loss_``.
_LOG_PREFIXES = ("loss_", "gnorm_", "stat_")


# --------------------------------------------------------------------------------------------
# the unpaired job: a method object's iteration in the one loop
# --------------------------------------------------------------------------------------------
class UnpairedJob(TrainJob):
    """A :class:`~dehazelab.methods.UnpairedMethod` (its networks, optimisers, losses and update
    order) for :func:`~dehazelab.train.loop.fit`; the decay-phase data switch lives here."""

    postfix_keys = ("loss_G", "loss_D")

    def __init__(self, method: UnpairedMethod, cfg: UnpairedTrainConfig, train_set: Dataset):
        self.cfg = cfg
        self.method = method
        self.data_set, self.phase_switch, self.phase_how = _phased(train_set, cfg)
        self.phase: str | None = None
        self.first_step = True
        self.dctx: ddp.DistContext | None = None

    def prepare(self, device: torch.device) -> None:
        method, cfg = self.method, self.cfg
        self.device = device
        method.to(device, memory_format=torch.channels_last if cfg.channels_last else None)
        method.set_lr_schedule(LinearDecay.from_config(cfg))
        self.model_spec = validate_model_spec(method.model_spec())
        self.hparams = method.hparams()
        self.dehazer = method.dehazer()
        self.param_ids = _param_ids(method)

    def record(self) -> dict[str, Any]:
        return {"method": self.method.name, "method_hparams": self.hparams}

    def check_resume(self, ckpt: Mapping[str, Any], path: Path) -> None:
        refuse_other_config(ckpt.get("config"), self.cfg.to_dict(), path, UNPAIRED_BOOKKEEPING_FIELDS,
                            UNPAIRED_LATE_FIELD_DEFAULTS)
        saved_hp, hparams = (ckpt.get("extra") or {}).get("method_hparams"), self.hparams
        if saved_hp is not None and json.dumps(saved_hp, sort_keys=True) != json.dumps(dict(hparams), sort_keys=True):
            keys = sorted(k for k in set(saved_hp) | set(hparams) if saved_hp.get(k) != hparams.get(k))
            raise ValueError(f"cannot resume from {path}: method hyper-parameters differ in {keys}")
        if ckpt.get("model_spec") not in (None, self.model_spec):
            raise ValueError(f"cannot resume from {path}: model_spec {ckpt['model_spec']!r} != {self.model_spec!r}")

    def load_state(self, ckpt: Mapping[str, Any], path: Path) -> None:
        method = self.method
        try:
            state = dict(ckpt["extra"]["method_state"])
            self.dehazer.load_state_dict(ckpt["model"])
            state["nets"] = {**state["nets"], method.generator_name: method.generator().state_dict()}
            method.load_state_dict(state)
        except (RuntimeError, ValueError, KeyError) as e:
            raise CheckpointError(f"cannot restore training state from {path}: {e}") from e

    def distribute(self, dctx: ddp.DistContext, device: torch.device) -> None:
        self.dctx = dctx
        for net in self.method.nets.values():
            ddp.broadcast_module_(net)  # every rank starts from rank 0's networks
        self.param_ids = _param_ids(self.method)

    def resolved(self, resumed_from: int | None) -> dict[str, Any]:
        return dict(n_params=self.method.n_params(), model_spec=self.model_spec,
                    method_class=type(self.method).__qualname__, decay_phase_data=self.phase_how,
                    resumed_from_step=resumed_from, channels_last=self.cfg.channels_last)

    def data(self, train_set: Dataset, step: int) -> tuple[Dataset, bool]:
        want = "decay" if step >= self.cfg.n_steps else "train"
        rebuild = False
        if self.phase_switch is not None and want != self.phase:
            self.phase_switch.set_phase(want)
            rebuild = True  # worker processes hold a copy of the dataset
        self.phase = want
        return self.data_set, rebuild

    def lr(self) -> float:
        return self.method.lr()

    def step(self, batch: Mapping[str, Any], step: int, t_start: float) -> dict[str, float]:
        method = self.method
        if self.cfg.channels_last:
            batch = {k: (v.contiguous(memory_format=torch.channels_last)
                         if isinstance(v, torch.Tensor) and v.dim() == 4 else v) for k, v in batch.items()}
        t0 = time.perf_counter()
        logs = method.train_step(batch, step)
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        sec = time.perf_counter() - t0
        if self.first_step:
            self.first_step = False
            if self.dctx is not None and _param_ids(method) != self.param_ids:
                # the step built new parameters (a lazily created network): make all ranks equal
                for net in method.nets.values():
                    ddp.broadcast_module_(net)
                for opt in method.optimizers.values():
                    ddp.broadcast_optimizer_state_(opt)
                self.param_ids = _param_ids(method)
        method.step_schedulers()
        parts = {(k if k.startswith(_LOG_PREFIXES) else f"loss_{k}"): float(v) for k, v in logs.items()}
        if self.dctx is not None:
            parts = ddp.mean_over_ranks(parts)
        return {**parts, "sec_per_step": sec, "data_sec": t0 - t_start}

    def train_mode(self) -> None:
        self.method.train()

    def eval_model(self) -> nn.Module:
        return self.dehazer

    def row_head(self, step: int) -> dict[str, Any]:
        return {"decay_phase": int(self.phase == "decay")}

    def row_tail(self, device: torch.device) -> dict[str, Any]:
        return {"peak_mem_mb": peak_memory_mb(device)}

    def checkpoint(self, step: int, best: Mapping[str, Any], window: Mapping[str, Any],
                   rng: Mapping[str, Any] | None = None) -> dict[str, Any]:
        method = self.method
        state = method.state_dict()
        state["nets"] = {k: v for k, v in state["nets"].items() if k != method.generator_name}  # in "model"
        return make_checkpoint(step=step, model=self.dehazer, best=dict(best), model_spec=self.model_spec,
                               config=self.cfg.to_dict(),
                               extra={"method_state": state, "method_hparams": self.hparams, "window": window,
                                      "config_hash": self.cfg.config_hash()})


def _param_ids(method: UnpairedMethod) -> tuple[tuple[str, tuple[int, ...]], ...]:
    """Identity of every network's parameter set (to notice networks built during a step)."""
    return tuple((k, tuple(id(p) for p in net.parameters())) for k, net in sorted(method.nets.items()))


def train_unpaired(
    method: UnpairedMethod,
    train_set: Dataset,
    test_set: Dataset | None,
    cfg: UnpairedTrainConfig | Mapping[str, Any],
    out_dir: str | os.PathLike,
    resume: bool = True,
    progress: bool = True,
    stop_at: int | None = None,
    metric_fn: MetricFn | None = None,
    on_start: Callable[[], None] | None = None,
):
    """Train an unpaired ``method`` (CUT, FastCUT, CycleGAN, ...); return the history DataFrame.

    Parameters
    ----------
    method: a :class:`dehazelab.methods.UnpairedMethod` (e.g. ``build_method("cut", ngf=32)``);
        moved to the configured device; after the call it holds the state of the last completed
        step (``best.pt`` holds the best-PSNR dehazer). Pass a freshly built method when starting
        a run (when resuming, its state is replaced by ``last.pt``).
    train_set: items ``{"hazy": 3×h×w, "clear": 3×h×w}`` in [0, 1], unpaired
        (:class:`dehazelab.data.UnpairedDataset`); crops of one size for ``batch_size > 1``.
    test_set: paired items ``{"hazy", "clear"}`` (full images) for PSNR/SSIM, or ``None``.
    cfg: :class:`UnpairedTrainConfig` or a dict for it.
    out_dir: run folder: ``config.json``, ``history.csv``, ``last.pt``, ``best.pt``, snapshots.
    resume: continue from ``out_dir/last.pt`` when it exists (config and method hyper-parameters
        must match); ``False`` deletes the folder's previous checkpoints/history and starts over;
        with ``True`` and no ``last.pt`` another run's files are refused, not deleted
        (:func:`~dehazelab.train.checkpoint.start_over`).
    progress: tqdm bar (``TQDM_DISABLE=1`` also hides it).
    stop_at: stop after this step (writing ``last.pt``) as if interrupted; the schedule still spans
        ``cfg.steps``.
    metric_fn: see :func:`dehazelab.train.paired.evaluate`.
    on_start: as in :func:`~dehazelab.train.paired.train_paired`.

    Under ``torchrun`` (``WORLD_SIZE`` > 1) every process calls this with the same arguments;
    ``cfg.batch_size`` is the global batch (module docstring, :mod:`dehazelab.distributed`).
    Bit-exact resume is guaranteed only in a single process. Every rank returns the
    history read from ``out_dir`` (written by rank 0; empty on a rank that does not see it).

    Raises :class:`~dehazelab.train.checkpoint.TrainingDiverged` on a non-finite loss/gradient, and
    ``ValueError`` when ``cfg.batch_size`` is not divisible by the number of processes.
    """
    if isinstance(cfg, Mapping):
        cfg = UnpairedTrainConfig.from_dict(cfg)
    return fit(UnpairedJob(method, cfg, train_set), train_set, test_set, out_dir, resume=resume, progress=progress,
               stop_at=stop_at, metric_fn=metric_fn, on_start=on_start)
