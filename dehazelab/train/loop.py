"""The one training loop: every model and method of the workbook trains through :func:`fit`.

A method differs by its :class:`TrainJob` (what one step does, what a checkpoint holds, how its
networks are moved, resumed and shared between processes), as models differ by
``optimize_parameters`` in BasicSR or CUT; the loop owns the rest, once:

* the run folder: ``config.json`` (resolved config, written at start), ``history.csv`` (one row
  every ``log_every`` steps and at each evaluation), ``last.pt`` / ``best.pt`` / snapshots
  (:class:`~dehazelab.train.folder.CheckpointDir`), and the rule that another run's files are never
  deleted without ``resume=False`` (:func:`~dehazelab.train.folder.start_over`);
* seeding (``cfg.seed``, ``cfg.threads``), the device, ``torchrun`` processes
  (:mod:`dehazelab.distributed`: rank 0 writes and evaluates, ranks > 0 re-seed);
* resume from ``last.pt``, exact on CPU (RNG states, data position and logging window are in it);
* the deterministic data order (:func:`~dehazelab.train.data_order.epoch_loader`);
* evaluation every ``cfg.eval_every`` steps and after the last (:func:`~dehazelab.train.evaluate.evaluate`);
* a non-finite loss or gradient norm, raised by the step as
  :class:`~dehazelab.divergence.NonFiniteLoss`, stops the run with
  :class:`~dehazelab.divergence.TrainingDiverged`; ``last.pt`` is never overwritten by a bad state;
* SIGINT/SIGTERM stop after the current step with ``last.pt`` written (:mod:`dehazelab.train.interrupt`);
* the progress bar.
"""

from __future__ import annotations

import os
import time
import warnings
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import Dataset

from dehazelab import distributed as ddp
from dehazelab.divergence import NonFiniteLoss, TrainingDiverged
from dehazelab.io import write_json
from dehazelab.repro import check_device, seed_everything
from dehazelab.train.checkpoint import load_checkpoint, restore_rng_state
from dehazelab.train.data_order import epoch_loader, reseed_rank
from dehazelab.train.evaluate import MetricFn, evaluate
from dehazelab.train.folder import CheckpointDir, start_over
from dehazelab.train.history import HistoryLog, MeanWindow
from dehazelab.train.interrupt import StopOnSignal, TrainingInterrupted

__all__ = ["TrainJob", "fit", "resolved_run", "HISTORY_FILE", "CONFIG_FILE"]

HISTORY_FILE = "history.csv"
CONFIG_FILE = "config.json"


class TrainJob:
    """What a method brings to :func:`fit`. Subclasses: ``PairedJob`` (a network and a loss:
    AECR-Net, AOD-Net, IICL; :mod:`dehazelab.train.paired`) and ``UnpairedJob`` (a
    :class:`~dehazelab.methods.UnpairedMethod`: CUT, FastCUT, CycleGAN, CDD-GAN; :mod:`dehazelab.train.unpaired`).

    ``cfg`` is the job's trainer config (fields the loop reads: ``steps``, ``batch_size``, ``crop``,
    ``augment``, ``seed``, ``threads``, ``device``, ``eval_every``, ``log_every``, ``ckpt_every``,
    ``snapshot_every``, ``keep_snapshots``, ``num_workers``; optional ``eval_max_images``).
    """

    cfg: Any
    #: history keys shown beside the progress bar
    postfix_keys: tuple[str, ...] = ()

    # -- set-up, called in this order ---------------------------------------------------------
    def prepare(self, device: torch.device) -> None:
        """Move the networks to ``device`` (after seeding) and build what training needs."""
        raise NotImplementedError

    def record(self) -> dict[str, Any]:
        """Keys of ``config.json`` besides the trainer config (also what makes two runs the same run)."""
        return {}

    def check_resume(self, ckpt: Mapping[str, Any], path: Path) -> None:
        """Refuse a ``last.pt`` of another run (``ValueError`` naming the file and the difference)."""
        raise NotImplementedError

    def load_state(self, ckpt: Mapping[str, Any], path: Path) -> None:
        """Restore networks, optimisers and schedules from ``ckpt`` (``CheckpointError`` on failure)."""
        raise NotImplementedError

    def distribute(self, dctx: ddp.DistContext, device: torch.device) -> None:
        """Several processes: make every rank start from rank 0's networks."""

    def resolved(self, resumed_from: int | None) -> dict[str, Any]:
        """The job's part of the ``resolved`` block of ``config.json``."""
        return {}

    # -- every step -----------------------------------------------------------------------------
    def data(self, train_set: Dataset, step: int) -> tuple[Dataset, bool]:
        """The dataset to draw step ``step``'s batch from, and whether the loader must be rebuilt."""
        return train_set, False

    def lr(self) -> float:
        raise NotImplementedError

    def before_batch(self) -> None:
        """Called at the start of every step, before its batch is loaded."""

    def step(self, batch: Mapping[str, Any], step: int, t_start: float) -> dict[str, float]:
        """One training step on ``batch`` (``step`` steps done before it; ``t_start``: when the step
        began, data loading included). Returns the values to log (means over ranks). Raises
        :class:`~dehazelab.divergence.NonFiniteLoss` before applying a non-finite update; set its
        ``prediverge_rng`` to an RNG state to have the state before the step saved as ``prediverge.pt``."""
        raise NotImplementedError

    def train_mode(self) -> None:
        raise NotImplementedError

    def eval_model(self) -> nn.Module:
        """The image → image network that evaluation scores."""
        raise NotImplementedError

    def row_head(self, step: int) -> dict[str, Any]:
        """History columns after ``step``, ``epoch`` and ``lr``."""
        return {}

    def row_tail(self, device: torch.device) -> dict[str, Any]:
        """History columns after the window's means, before the evaluation's."""
        return {}

    def checkpoint(self, step: int, best: Mapping[str, Any], window: Mapping[str, Any],
                   rng: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """The checkpoint after ``step`` steps (``rng``: the state before the step, for ``prediverge.pt``)."""
        raise NotImplementedError

    def finish(self) -> None:
        """Called when training ends normally."""


def resolved_run(device: torch.device, n_train: int, test_set: Dataset | None, steps_per_epoch: int,
                 dctx: "ddp.DistContext", batch_size: int, **specific: Any) -> dict[str, Any]:
    """The ``resolved`` block of a run's config.json that every job shares, then ``specific``."""
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


def _size2(crop: Any) -> tuple[int, int] | None:
    if crop is None:
        return None
    if isinstance(crop, int):
        return (crop, crop)
    h, w = crop
    return int(h), int(w)


def _check_data(train_set: Dataset, cfg: Any) -> int:
    """Steps per epoch; warns when the dataset's crop or flip disagrees with the recorded config."""
    n_train = len(train_set)
    if n_train < cfg.batch_size:
        raise ValueError(f"train_set has {n_train} items, fewer than batch_size={cfg.batch_size}")
    crop = getattr(train_set, "crop", None)
    if crop is not None and _size2(crop) != _size2(cfg.crop):
        warnings.warn(f"train_set.crop={_size2(crop)} but cfg.crop={cfg.crop}: the dataset's crop is what is used, "
                      "the recorded config is wrong", stacklevel=3)
    augment = getattr(train_set, "augment", None)
    if isinstance(augment, bool) and augment != cfg.augment:
        warnings.warn(f"train_set.augment={augment} but cfg.augment={cfg.augment}: the dataset decides, "
                      "the recorded config is wrong", stacklevel=3)
    return n_train // cfg.batch_size


def fit(job: TrainJob, train_set: Dataset, test_set: Dataset | None, out_dir: str | os.PathLike, *,
        resume: bool = True, progress: bool = True, stop_at: int | None = None,
        metric_fn: MetricFn | None = None, on_start: Callable[[], None] | None = None):
    """Train ``job`` on ``train_set`` into ``out_dir``; return the history (a pandas DataFrame).

    ``resume``: continue from ``out_dir/last.pt`` when it exists (the job checks it is the same run);
    ``False`` starts over and deletes the folder's previous checkpoints and history.
    ``stop_at``: stop after this step (saving ``last.pt``) as if interrupted; the schedule still
    spans ``cfg.steps``. ``on_start``: called once (main process) when every check passed and
    ``config.json`` is written. Every rank returns the history written by rank 0.
    """
    if stop_at is not None and int(stop_at) < 1:
        raise ValueError(f"stop_at must be >= 1, got {stop_at}")
    run = _Run(job, train_set, test_set, Path(out_dir), metric_fn)
    run.start(resume, on_start)
    run.train(stop_at, progress)
    job.finish()
    return run.history.read()


class _Run:
    """The state of one call of :func:`fit`: folder, history, best score, step counter."""

    def __init__(self, job: TrainJob, train_set: Dataset, test_set: Dataset | None, out_dir: Path,
                 metric_fn: MetricFn | None):
        self.job, self.cfg, self.out_dir = job, job.cfg, out_dir
        self.train_set, self.test_set, self.metric_fn = train_set, test_set, metric_fn
        self.dctx = ddp.DistContext.from_env()
        self.dctx.local_batch(self.cfg.batch_size)  # a clear error before anything else when W does not divide the batch
        if self.dctx.is_main:
            out_dir.mkdir(parents=True, exist_ok=True)
        self.steps_per_epoch = _check_data(train_set, self.cfg)
        self.ckdir = CheckpointDir(out_dir, keep=self.cfg.keep_snapshots)
        self.history = HistoryLog(out_dir / HISTORY_FILE)
        self.window = MeanWindow()
        self.best: dict[str, Any] = {"metric": "psnr", "value": None, "step": None}
        self.step = 0

    def state(self, at_step: int, rng: Mapping[str, Any] | None = None) -> dict[str, Any]:
        return self.job.checkpoint(at_step, self.best, self.window.state_dict(), rng=rng)

    def start(self, resume: bool, on_start: Callable[[], None] | None) -> None:
        """Seed, pick the device, resume from ``last.pt`` or start over, write ``config.json``."""
        job, cfg, ckdir = self.job, self.cfg, self.ckdir
        seed_everything(cfg.seed, cfg.threads)
        self.dctx, self.device = ddp.init_distributed(check_device(cfg.device))
        dctx = self.dctx
        job.prepare(self.device)
        if dctx.is_main:
            ckdir.remove_stale_tmp()  # left by a run killed while writing
        have_last = bool(resume and ckdir.last.exists())
        if dctx.enabled and ddp.any_rank(have_last) != ddp.all_ranks(have_last):
            raise RuntimeError(f"{ckdir.last} is visible on some ranks only: the run folder must be on a "
                               "filesystem shared by all ranks")
        identity = {"config_hash": cfg.config_hash(), **job.record()}
        resumed_from: int | None = None
        if have_last:
            ckpt = load_checkpoint(ckdir.last)
            job.check_resume(ckpt, ckdir.last)
            job.load_state(ckpt, ckdir.last)
            self.step = resumed_from = int(ckpt["step"])
            self.best = dict(ckpt["best"])
            self.window.load_state_dict(ckpt["extra"].get("window", {}))
            restore_rng_state(ckpt["rng"])
            if dctx.is_main:
                self.history.truncate(self.step)
        else:
            start_over(ckdir, self.history, resume=resume, config_file=self.out_dir / CONFIG_FILE,
                       identity=identity, main=dctx.is_main)
        if dctx.enabled:
            job.distribute(dctx, self.device)
            # rank 0 keeps the single-process RNG streams; the others get their own
            reseed_rank(cfg.seed, dctx.rank, resumed_from)
        resolved = resolved_run(self.device, len(self.train_set), self.test_set, self.steps_per_epoch, dctx,
                                cfg.batch_size, **job.resolved(resumed_from))
        if dctx.is_main:
            write_json(self.out_dir / CONFIG_FILE, {"config": cfg.to_dict(), **identity, "resolved": resolved})
            if on_start is not None:
                on_start()

    def train(self, stop_at: int | None, progress: bool) -> None:
        """Steps until ``cfg.steps`` (or ``stop_at``): batch, the job's step, then evaluation, logging, checkpoints."""
        from tqdm.auto import tqdm

        job, cfg, dctx = self.job, self.cfg, self.dctx
        last_step = cfg.steps if stop_at is None else min(cfg.steps, int(stop_at))
        tqdm_kw: dict[str, Any] = {"total": cfg.steps, "initial": self.step, "desc": self.out_dir.name,
                                   "unit": "step", "dynamic_ncols": True}
        if not progress or not dctx.is_main:
            tqdm_kw["disable"] = True  # otherwise tqdm reads TQDM_DISABLE from the environment
        self.bar = tqdm(**tqdm_kw)
        job.train_mode()
        batches: Iterator[Mapping[str, Any]] | None = None
        stop = StopOnSignal()
        try:
            stop.__enter__()
            while self.step < last_step:
                t_start = time.perf_counter()
                job.before_batch()
                epoch, b = divmod(self.step, self.steps_per_epoch)
                data, rebuild = job.data(self.train_set, self.step)
                if rebuild or batches is None or b == 0:
                    batches = iter(epoch_loader(data, cfg, epoch, b, rank=dctx.rank, world_size=dctx.world_size))
                batch = next(batches)
                lr_now = job.lr()
                try:
                    logged = job.step(batch, self.step, t_start)
                except NonFiniteLoss as e:
                    self.diverged(e)
                self.step += 1
                self.window.add(logged)
                self.bar.update(1)
                stop_now = stop.signal is not None
                if dctx.enabled:
                    stop_now = ddp.any_rank(stop_now)  # a signal on any rank stops all of them at this step
                self.after_step(lr_now, last_step, stop_now)
                if stop_now and self.step < last_step:
                    ddp.barrier()
                    raise TrainingInterrupted(self.step, stop.signal or "SIGTERM", self.ckdir.last if dctx.is_main else None)
        finally:
            stop.__exit__(None, None, None)
            self.bar.close()
        ddp.barrier()  # rank 0's last files are written before anyone returns

    def diverged(self, e: NonFiniteLoss) -> None:
        """Nothing of the failing update is applied (an unpaired iteration may have applied its earlier
        updates: no ``prediverge.pt`` then); ``last.pt`` stays the last good state."""
        rng = getattr(e, "prediverge_rng", None)
        saved = self.ckdir.save_prediverge(self.state(self.step, rng=rng)) if rng is not None and self.dctx.is_main else None
        last_good = self.ckdir.last if self.ckdir.last.exists() else None
        raise TrainingDiverged(self.step + 1, e.what, e.value, e.logs, last_good=last_good, saved=saved) from e

    def after_step(self, lr_now: float, last_step: int, stop_now: bool) -> None:
        """Evaluate, append the history row, write the checkpoints that are due (main process)."""
        cfg, step, dctx = self.cfg, self.step, self.dctx
        do_eval = self.test_set is not None and (step == cfg.steps or (cfg.eval_every > 0 and step % cfg.eval_every == 0))
        log_due = step % cfg.log_every == 0 or do_eval or step == cfg.steps
        if not dctx.is_main:
            if log_due:
                self.window.reset()
            if do_eval:
                ddp.barrier()  # wait for rank 0's evaluation
            return
        ev: dict[str, float] = {}
        improved = False
        if do_eval:
            ev = evaluate(self.job.eval_model(), self.test_set, self.device, self.metric_fn,
                          max_images=getattr(cfg, "eval_max_images", None))
            self.job.train_mode()
            if self.best["value"] is None or ev["psnr"] > self.best["value"]:
                self.best = {"metric": "psnr", "value": float(ev["psnr"]), "step": step}
                improved = True
        # Order matters for crash safety: the history row goes to disk before last.pt, so a resume
        # never misses a row (rows past the checkpoint are truncated on resume).
        if log_due:
            row: dict[str, Any] = {"step": step, "epoch": step / self.steps_per_epoch, "lr": lr_now,
                                   **self.job.row_head(step)}
            row.update(self.window.means())
            row.update(self.job.row_tail(self.device))
            row.update({"psnr": ev.get("psnr"), "ssim": ev.get("ssim"), "eval_n": ev.get("n")})
            row.update({f"eval_{k}": v for k, v in ev.items() if k not in ("psnr", "ssim", "n")})
            self.history.append(row)
            self.window.reset()
            post = {k: f"{row[k]:.4f}" for k in self.job.postfix_keys if row.get(k) is not None}
            if ev:
                post["psnr"] = f"{ev['psnr']:.2f}"
            self.bar.set_postfix(post, refresh=False)
        self.ckdir.save_due(self.state, step=step, last_step=last_step, ckpt_every=cfg.ckpt_every,
                            snapshot_every=cfg.snapshot_every, evaluated=bool(do_eval), improved=bool(improved),
                            force_last=stop_now)
        if do_eval:
            ddp.barrier()  # the other ranks wait for this evaluation
