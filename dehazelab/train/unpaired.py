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

import copy
import dataclasses
import hashlib
import json
import os
import time
import warnings
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from dehazelab.io import write_json
from dehazelab.methods import NonFiniteLoss, UnpairedMethod
from dehazelab.repro import check_device, pick_device, seed_everything
from dehazelab.train.checkpoint import (
    CheckpointDir,
    start_over,
    CheckpointError,
    HistoryLog,
    MeanWindow,
    TrainingDiverged,
    load_checkpoint,
    make_checkpoint,
    restore_rng_state,
    validate_model_spec,
)
from dehazelab.train.interrupt import StopOnSignal, TrainingInterrupted
from dehazelab import distributed as ddp
from dehazelab.train.config import BOOKKEEPING_FIELDS, _hash_dict, with_late_defaults
from dehazelab.train.paired import CONFIG_FILE, HISTORY_FILE, MetricFn, epoch_loader, evaluate, reseed_rank, resolved_run

__all__ = [
    "UnpairedTrainConfig",
    "UNPAIRED_BOOKKEEPING_FIELDS",
    "LinearDecay",
    "DecayPhaseDataset",
    "train_unpaired",
    "measure_cost",
    "peak_memory_mb",
]

#: Fields that do not change the trained weights (may differ when resuming).
UNPAIRED_BOOKKEEPING_FIELDS: tuple[str, ...] = (*BOOKKEEPING_FIELDS, "eval_max_images")
DECAY_DATA = ("resize", "keep")
#: Fields added after configs had been recorded: not hashed at their default, default when absent
#: from a saved config (see :mod:`dehazelab.train.config`).
UNPAIRED_LATE_FIELD_DEFAULTS: dict[str, Any] = {"channels_last": False}
#: Method log names with these prefixes go to the history as they are; others get ``loss_``.
_LOG_PREFIXES = ("loss_", "gnorm_", "stat_")


# --------------------------------------------------------------------------------------------
# configuration
# --------------------------------------------------------------------------------------------
@dataclasses.dataclass
class UnpairedTrainConfig:
    """Everything that determines an unpaired run apart from the method object and the data.

    The method's own hyper-parameters (λ's, Adam lr₀/betas, network sizes) live in the method and are
    recorded next to this config (``method.hparams()``).

    Attributes
    ----------
    n_steps: steps at the constant learning rate (official ``n_epochs`` × iterations per epoch).
    n_steps_decay: steps of linear decay that follow (``n_epochs_decay`` × iterations per epoch);
        total steps = ``n_steps + n_steps_decay``.
    crop: training crop side applied by the dataset (recorded and checked against ``train_set.crop``;
        ``None`` = whole images). Also the size whole images are resized to in the decay phase.
    batch_size: images per domain per step (official 1).
    augment: random horizontal flip by the dataset (recorded and checked; official: on).
    lr_every: the schedule advances every this many steps (see module docstring); must divide
        ``n_steps`` and ``n_steps_decay``.
    decay_data: ``"resize"`` (official: no crop in the decay phase, whole images resized to ``crop``)
        or ``"keep"`` (crops throughout).
    eval_every: evaluate every this many steps (and after the last); 0 = only at the end.
    eval_max_images: evaluate on the first this many test images only (``None``: all).
    seed: seeds python/numpy/torch (the global RNGs the methods draw from) and the data order.
    threads: torch CPU threads (``None``: leave as is; bitwise CPU repeatability needs a fixed count).
    device: ``"auto"`` / ``"cpu"`` / ``"cuda"`` ...
    num_workers: DataLoader workers (items are deterministic in ``(dataset seed, epoch, index)``).
    log_every, ckpt_every, snapshot_every, keep_snapshots: as in
        :class:`~dehazelab.train.config.PairedTrainConfig` (``ckpt_every=None``: ``last.pt`` at every
        evaluation and at the end).
    channels_last: networks and input batches in ``torch.channels_last`` memory format (a CUDA
        speed option; runs on CPU too, equal to the default within float rounding, batch 1
        included: the networks' InstanceNorms guard against torch's batch-1 channels-last
        backward defect, :mod:`dehazelab.models.norm`). Not hashed while ``False``. (No ``amp``:
        mixed precision is not implemented for the GAN loops.)
    """

    n_steps: int
    n_steps_decay: int
    crop: int | None
    batch_size: int = 1
    augment: bool = True
    lr_every: int = 1
    decay_data: str = "resize"
    eval_every: int = 0
    eval_max_images: int | None = None
    seed: int = 0
    threads: int | None = None
    device: str = "auto"
    num_workers: int = 0
    log_every: int = 10
    ckpt_every: int | None = None
    snapshot_every: int | None = None
    keep_snapshots: int = 3
    channels_last: bool = False

    def __post_init__(self) -> None:
        def _int(name: str, minimum: int, optional: bool = False) -> None:
            v = getattr(self, name)
            if v is None and optional:
                return
            if isinstance(v, float) and v.is_integer():
                v = int(v)
                setattr(self, name, v)
            if isinstance(v, bool) or not isinstance(v, int):
                raise TypeError(f"UnpairedTrainConfig.{name} must be an int, got {v!r}")
            if v < minimum:
                raise ValueError(f"UnpairedTrainConfig.{name} must be >= {minimum}, got {v}")

        for name, minimum, optional in [("n_steps", 0, False), ("n_steps_decay", 0, False), ("crop", 1, True),
                                        ("batch_size", 1, False), ("lr_every", 1, False), ("eval_every", 0, False),
                                        ("eval_max_images", 1, True), ("seed", 0, False), ("threads", 1, True),
                                        ("num_workers", 0, False), ("log_every", 1, False), ("ckpt_every", 1, True),
                                        ("snapshot_every", 1, True), ("keep_snapshots", 1, False)]:
            _int(name, minimum, optional)
        if self.steps < 1:
            raise ValueError("UnpairedTrainConfig: n_steps + n_steps_decay must be >= 1")
        if self.n_steps % self.lr_every or self.n_steps_decay % self.lr_every:
            raise ValueError(f"UnpairedTrainConfig.lr_every={self.lr_every} must divide n_steps={self.n_steps} "
                             f"and n_steps_decay={self.n_steps_decay}")
        if self.decay_data not in DECAY_DATA:
            raise ValueError(f"UnpairedTrainConfig.decay_data must be one of {DECAY_DATA}, got {self.decay_data!r}")
        for name in ("augment", "channels_last"):
            if not isinstance(getattr(self, name), bool):
                raise TypeError(f"UnpairedTrainConfig.{name} must be a bool, got {getattr(self, name)!r}")
        if not isinstance(self.device, str) or not self.device:
            raise TypeError(f"UnpairedTrainConfig.device must be a non-empty string, got {self.device!r}")

    @property
    def steps(self) -> int:
        """Total optimisation steps ``n_steps + n_steps_decay``."""
        return self.n_steps + self.n_steps_decay

    @classmethod
    def from_epochs(cls, n_epochs: int, n_epochs_decay: int, steps_per_epoch: int, *, per_epoch_lr: bool = True,
                    **kw: Any) -> "UnpairedTrainConfig":
        """The official epoch-based recipe in steps, e.g. CUT ``from_epochs(200, 200, len(ds) // bs, crop=...)``,
        FastCUT (150, 50), CycleGAN (100, 100). ``per_epoch_lr`` steps the lr once per epoch (official)."""
        if steps_per_epoch < 1:
            raise ValueError(f"steps_per_epoch must be >= 1, got {steps_per_epoch}")
        return cls(n_steps=n_epochs * steps_per_epoch, n_steps_decay=n_epochs_decay * steps_per_epoch,
                   lr_every=steps_per_epoch if per_epoch_lr else 1, **kw)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "UnpairedTrainConfig":
        """Build from a mapping; unknown keys are an error (a typo must not be ignored)."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"unknown UnpairedTrainConfig key(s) {unknown}; valid keys are {sorted(known)}")
        return cls(**dict(d))

    def replace(self, **changes: Any) -> "UnpairedTrainConfig":
        return dataclasses.replace(self, **changes)

    def config_hash(self, exclude: Iterable[str] = ()) -> str:
        """12 hex chars of SHA-256 over the sorted-key JSON of :meth:`to_dict` (minus ``exclude``;
        ``channels_last`` is left out while ``False``, so hashes recorded before it existed hold)."""
        d = _hash_dict(self.to_dict(), UNPAIRED_LATE_FIELD_DEFAULTS)
        for k in exclude:
            if k not in self.to_dict():
                raise KeyError(k)
            d.pop(k, None)
        return hashlib.sha256(json.dumps(d, sort_keys=True, separators=(",", ":")).encode()).hexdigest()[:12]


# --------------------------------------------------------------------------------------------
# schedule
# --------------------------------------------------------------------------------------------
class LinearDecay:
    """CUT/CycleGAN ``linear`` policy on a step counter: multiplier of lr₀ after ``t`` steps.

    ``f(t) = 1 − max(0, ⌊t / every⌋ + 1 − n_const) / (n_decay + 1)`` with ``n_const``, ``n_decay`` in
    units of ``every`` steps (the official formula with ``epoch_count = 1``, where a unit is an epoch).
    A callable object (not a lambda) so ``LambdaLR.state_dict()`` stays plain.
    """

    def __init__(self, n_const: int, n_decay: int, every: int = 1):
        if n_const < 0 or n_decay < 0 or every < 1:
            raise ValueError("LinearDecay needs n_const >= 0, n_decay >= 0, every >= 1")
        self.n_const, self.n_decay, self.every = int(n_const), int(n_decay), int(every)

    def __call__(self, t: int) -> float:
        return 1.0 - max(0, t // self.every + 1 - self.n_const) / (self.n_decay + 1)

    @classmethod
    def from_config(cls, cfg: UnpairedTrainConfig) -> "LinearDecay":
        return cls(cfg.n_steps // cfg.lr_every, cfg.n_steps_decay // cfg.lr_every, cfg.lr_every)


# --------------------------------------------------------------------------------------------
# the decay-phase data switch
# --------------------------------------------------------------------------------------------
def _size2(crop: Any) -> tuple[int, int] | None:
    if crop is None:
        return None
    if isinstance(crop, int):
        return (crop, crop)
    h, w = crop
    return int(h), int(w)


class DecayPhaseDataset(Dataset):
    """Adds CUT's decay-phase switch to a cropping unpaired dataset.

    Phase ``"train"``: items of ``dataset`` unchanged. Phase ``"decay"``: the same items read from a
    shallow copy of ``dataset`` with ``crop = None`` (whole images; same clear-image choice and flip,
    because ``UnpairedDataset`` draws them from ``(seed, epoch, index)``), each image resized to
    ``size`` with bicubic anti-aliased interpolation and clamped to [0, 1] (official: PIL bicubic
    resize to ``crop_size``; aspect ratio not kept, as officially).

    ``dataset`` must have a ``crop`` attribute that its ``__getitem__`` honours
    (:class:`dehazelab.data.UnpairedDataset`); ``set_epoch`` is forwarded to both views.
    """

    PHASES = ("train", "decay")

    def __init__(self, dataset: Dataset, size: int | tuple[int, int] | None = None):
        if not hasattr(dataset, "crop"):
            raise TypeError(f"{type(dataset).__name__} has no 'crop' attribute: cannot switch its crop off")
        self.dataset = dataset
        self.size = _size2(size if size is not None else dataset.crop)
        if self.size is None:
            raise ValueError("DecayPhaseDataset needs a size (the dataset does not crop)")
        self.full = copy.copy(dataset)
        self.full.crop = None
        self.phase = "train"

    def set_phase(self, phase: str) -> None:
        if phase not in self.PHASES:
            raise ValueError(f"phase must be one of {self.PHASES}, got {phase!r}")
        self.phase = phase

    def set_epoch(self, epoch: int) -> None:
        for ds in (self.dataset, self.full):
            if callable(getattr(ds, "set_epoch", None)):
                ds.set_epoch(epoch)

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> dict:
        if self.phase == "train":
            return self.dataset[index]
        item = dict(self.full[index])
        for key in ("hazy", "clear"):
            img = item[key]
            if tuple(img.shape[-2:]) != self.size:
                img = F.interpolate(img[None], size=self.size, mode="bicubic", align_corners=False,
                                    antialias=True)[0].clamp_(0.0, 1.0)
            item[key] = img
        return item


def _phased(train_set: Dataset, cfg: UnpairedTrainConfig) -> tuple[Dataset, Any, str]:
    """``(dataset to load from, object with set_phase or None, how)`` for ``cfg.decay_data``."""
    if cfg.decay_data == "keep" or cfg.n_steps_decay == 0:
        return train_set, None, "crops throughout" if cfg.decay_data == "keep" else "no decay phase"
    if callable(getattr(train_set, "set_phase", None)):
        return train_set, train_set, "dataset.set_phase"
    if getattr(train_set, "crop", None) is None:
        return train_set, None, "dataset does not crop (whole images throughout)"
    wrapped = DecayPhaseDataset(train_set)  # resize to the dataset's crop (what training used)
    return wrapped, wrapped, "DecayPhaseDataset (whole images resized to the crop size)"


# --------------------------------------------------------------------------------------------
# cost
# --------------------------------------------------------------------------------------------
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


# --------------------------------------------------------------------------------------------
# the loop
# --------------------------------------------------------------------------------------------
def _check_resume(ckpt: Mapping[str, Any], cfg: UnpairedTrainConfig, hparams: Mapping[str, Any],
                  model_spec: Mapping[str, Any], path: Path) -> None:
    saved, now = with_late_defaults(ckpt.get("config"), UNPAIRED_LATE_FIELD_DEFAULTS), cfg.to_dict()
    diff = sorted(k for k in set(saved) | set(now) if k not in UNPAIRED_BOOKKEEPING_FIELDS and saved.get(k) != now.get(k))
    if diff:
        detail = ", ".join(f"{k}: {saved.get(k)!r} -> {now.get(k)!r}" for k in diff)
        raise ValueError(f"cannot resume from {path}: the config differs in {detail}. "
                         "Use a new out_dir, or resume=False to start over.")
    saved_hp = (ckpt.get("extra") or {}).get("method_hparams")
    if saved_hp is not None and json.dumps(saved_hp, sort_keys=True) != json.dumps(dict(hparams), sort_keys=True):
        keys = sorted(k for k in set(saved_hp) | set(hparams) if saved_hp.get(k) != hparams.get(k))
        raise ValueError(f"cannot resume from {path}: method hyper-parameters differ in {keys}")
    if ckpt.get("model_spec") not in (None, model_spec):
        raise ValueError(f"cannot resume from {path}: model_spec {ckpt['model_spec']!r} != {model_spec!r}")


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
    from tqdm.auto import tqdm

    if isinstance(cfg, Mapping):
        cfg = UnpairedTrainConfig.from_dict(cfg)
    if stop_at is not None and int(stop_at) < 1:
        raise ValueError(f"stop_at must be >= 1, got {stop_at}")
    out_dir = Path(out_dir)
    dctx = ddp.DistContext.from_env()
    dctx.local_batch(cfg.batch_size)  # a clear error before anything else when W does not divide the batch
    if dctx.is_main:
        out_dir.mkdir(parents=True, exist_ok=True)

    n_train = len(train_set)
    if n_train < cfg.batch_size:
        raise ValueError(f"train_set has {n_train} items, fewer than batch_size={cfg.batch_size}")
    steps_per_epoch = n_train // cfg.batch_size
    ds_crop = _size2(getattr(train_set, "crop", None)) if hasattr(train_set, "crop") else "n/a"
    if ds_crop != "n/a" and ds_crop != _size2(cfg.crop):
        warnings.warn(f"train_set.crop={ds_crop} but cfg.crop={cfg.crop}: the dataset's crop is what is used, "
                      "the recorded config is wrong", stacklevel=2)
    ds_augment = getattr(train_set, "augment", None)
    if isinstance(ds_augment, bool) and ds_augment != cfg.augment:
        warnings.warn(f"train_set.augment={ds_augment} but cfg.augment={cfg.augment}: the dataset decides, "
                      "the recorded config is wrong", stacklevel=2)
    data, phase_switch, phase_how = _phased(train_set, cfg)

    seed_everything(cfg.seed, cfg.threads)
    device = check_device(cfg.device)
    dctx, device = ddp.init_distributed(device)
    world, rank = dctx.world_size, dctx.rank
    method.to(device, memory_format=torch.channels_last if cfg.channels_last else None)
    method.set_lr_schedule(LinearDecay.from_config(cfg))
    model_spec = validate_model_spec(method.model_spec())
    hparams = method.hparams()
    dehazer = method.dehazer()

    ckdir = CheckpointDir(out_dir, keep=cfg.keep_snapshots)
    if dctx.is_main:
        ckdir.remove_stale_tmp()  # left by a run killed while writing
    history = HistoryLog(out_dir / HISTORY_FILE)
    window = MeanWindow()
    best: dict[str, Any] = {"metric": "psnr", "value": None, "step": None}
    step = 0

    have_last = bool(resume and ckdir.last.exists())
    if dctx.enabled and ddp.any_rank(have_last) != ddp.all_ranks(have_last):
        raise RuntimeError(f"{ckdir.last} is visible on some ranks only: the run folder must be on a filesystem "
                           "shared by all ranks")
    if have_last:
        ckpt = load_checkpoint(ckdir.last)
        _check_resume(ckpt, cfg, hparams, model_spec, ckdir.last)
        try:
            state = dict(ckpt["extra"]["method_state"])
            dehazer.load_state_dict(ckpt["model"])
            state["nets"] = {**state["nets"], method.generator_name: method.generator().state_dict()}
            method.load_state_dict(state)
        except (RuntimeError, ValueError, KeyError) as e:
            raise CheckpointError(f"cannot restore training state from {ckdir.last}: {e}") from e
        step = int(ckpt["step"])
        best = dict(ckpt["best"])
        window.load_state_dict(ckpt["extra"].get("window", {}))
        restore_rng_state(ckpt["rng"])
        if dctx.is_main:
            history.truncate(step)
        resumed_from: int | None = step
    else:
        start_over(ckdir, history, resume=resume, config_file=out_dir / CONFIG_FILE,
                   identity={"config_hash": cfg.config_hash(), "method": method.name, "method_hparams": hparams},
                   main=dctx.is_main)
        resumed_from = None

    if dctx.enabled:
        for net in method.nets.values():
            ddp.broadcast_module_(net)  # every rank starts from rank 0's networks
        # rank 0 keeps the single-process RNG streams; the others get their own
        reseed_rank(cfg.seed, rank, None if resumed_from is None else step)
    param_ids = _param_ids(method)

    resolved = resolved_run(device, n_train, test_set, steps_per_epoch, dctx, cfg.batch_size,
                            n_params=method.n_params(), model_spec=model_spec,
                            method_class=type(method).__qualname__, decay_phase_data=phase_how,
                            resumed_from_step=resumed_from, channels_last=cfg.channels_last)
    if dctx.is_main:
        write_json(out_dir / CONFIG_FILE, {
            "config": cfg.to_dict(),
            "config_hash": cfg.config_hash(),
            "method": method.name,
            "method_hparams": hparams,
            "resolved": resolved,
        })
        if on_start is not None:
            on_start()

    last_step = cfg.steps if stop_at is None else min(cfg.steps, int(stop_at))

    def checkpoint(at_step: int) -> dict[str, Any]:
        state = method.state_dict()
        state["nets"] = {k: v for k, v in state["nets"].items() if k != method.generator_name}  # in "model"
        return make_checkpoint(step=at_step, model=dehazer, best=best, model_spec=model_spec, config=cfg.to_dict(),
                               extra={"method_state": state, "method_hparams": hparams, "window": window.state_dict(),
                                      "config_hash": cfg.config_hash()})

    tqdm_kw: dict[str, Any] = {"total": cfg.steps, "initial": step, "desc": out_dir.name, "unit": "step",
                               "dynamic_ncols": True}
    if not progress or not dctx.is_main:
        tqdm_kw["disable"] = True
    bar = tqdm(**tqdm_kw)
    method.train()
    batches: Iterator[Mapping[str, Any]] | None = None
    phase: str | None = None
    first_step = True
    stop = StopOnSignal()
    try:
        stop.__enter__()
        while step < last_step:
            t_data = time.perf_counter()
            epoch, b = divmod(step, steps_per_epoch)
            want = "decay" if step >= cfg.n_steps else "train"
            if phase_switch is not None and want != phase:
                phase_switch.set_phase(want)
                batches = None  # rebuild: worker processes hold a copy of the dataset
            phase = want
            if batches is None or b == 0:
                batches = iter(epoch_loader(data, cfg, epoch, b, rank=rank, world_size=world))
            batch = next(batches)
            if cfg.channels_last:
                batch = {k: (v.contiguous(memory_format=torch.channels_last)
                             if isinstance(v, torch.Tensor) and v.dim() == 4 else v) for k, v in batch.items()}
            lr_now = method.lr()
            t0 = time.perf_counter()
            try:
                logs = method.train_step(batch, step)
            except NonFiniteLoss as e:
                raise TrainingDiverged(step + 1, e.what, e.value, e.logs,
                                       last_good=ckdir.last if ckdir.last.exists() else None, saved=None) from e
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            sec = time.perf_counter() - t0
            if first_step:
                first_step = False
                if dctx.enabled and _param_ids(method) != param_ids:
                    # the step built new parameters (a lazily created network): make all ranks equal
                    for net in method.nets.values():
                        ddp.broadcast_module_(net)
                    for opt in method.optimizers.values():
                        ddp.broadcast_optimizer_state_(opt)
                    param_ids = _param_ids(method)
            method.step_schedulers()
            step += 1
            parts = {(k if k.startswith(_LOG_PREFIXES) else f"loss_{k}"): float(v) for k, v in logs.items()}
            if dctx.enabled:
                parts = ddp.mean_over_ranks(parts)
            window.add({**parts, "sec_per_step": sec, "data_sec": t0 - t_data})
            bar.update(1)
            stop_now = stop.signal is not None
            if dctx.enabled:
                stop_now = ddp.any_rank(stop_now)  # a signal on any rank stops all of them at this step

            do_eval = test_set is not None and (step == cfg.steps or (cfg.eval_every > 0 and step % cfg.eval_every == 0))
            log_due = step % cfg.log_every == 0 or do_eval or step == cfg.steps
            if dctx.is_main:
                ev: dict[str, float] = {}
                improved = False
                if do_eval:
                    ev = evaluate(dehazer, test_set, device, metric_fn, max_images=cfg.eval_max_images)
                    method.train()
                    if best["value"] is None or ev["psnr"] > best["value"]:
                        best = {"metric": "psnr", "value": float(ev["psnr"]), "step": step}
                        improved = True

                if log_due:
                    row: dict[str, Any] = {"step": step, "epoch": step / steps_per_epoch, "lr": lr_now,
                                           "decay_phase": int(phase == "decay")}
                    row.update(window.means())
                    row["peak_mem_mb"] = peak_memory_mb(device)
                    row.update({"psnr": ev.get("psnr"), "ssim": ev.get("ssim"), "eval_n": ev.get("n")})
                    row.update({f"eval_{k}": v for k, v in ev.items() if k not in ("psnr", "ssim", "n")})
                    history.append(row)
                    window.reset()
                    post = {k: f"{row[k]:.3f}" for k in ("loss_G", "loss_D") if row.get(k) is not None}
                    if ev:
                        post["psnr"] = f"{ev['psnr']:.2f}"
                    bar.set_postfix(post, refresh=False)

                ckdir.save_due(checkpoint, step=step, last_step=last_step, ckpt_every=cfg.ckpt_every,
                               snapshot_every=cfg.snapshot_every, evaluated=bool(do_eval), improved=bool(improved),
                               force_last=stop_now)
            elif log_due:
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
    return history.read()


def _param_ids(method: UnpairedMethod) -> tuple[tuple[str, tuple[int, ...]], ...]:
    """Identity of every network's parameter set (to notice networks built during a step)."""
    return tuple((k, tuple(id(p) for p in net.parameters())) for k, net in sorted(method.nets.items()))
