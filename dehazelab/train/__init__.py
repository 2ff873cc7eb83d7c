"""Training: one loop for every model and method, and its machinery.

* :mod:`dehazelab.train.loop`       — :func:`~dehazelab.train.loop.fit`, the one training loop (run folder,
  seeding, resume, data order, evaluation, history, checkpoints, divergence and signal stops), and
  :class:`~dehazelab.train.loop.TrainJob`, what a method brings to it.
* :mod:`dehazelab.train.paired`     — ``PairedJob`` (a network and its loss: AECR-Net, AOD-Net, IICL) and
  :func:`train_paired`; :mod:`dehazelab.train.unpaired` — ``UnpairedJob`` (a method object: CUT, FastCUT,
  CycleGAN, CDD-GAN) and ``train_unpaired``.
* :mod:`dehazelab.train.config`, :mod:`~dehazelab.train.unpaired_config` — the trainer configs (dataclasses,
  dict round trip, hash); :mod:`~dehazelab.train.schedules` — learning-rate schedules.
* :mod:`dehazelab.train.data_order` (deterministic, resumable batches), :mod:`~dehazelab.train.evaluate`
  (scoring during training), :mod:`~dehazelab.train.decay_phase` (CUT's crop-free decay phase),
  :mod:`~dehazelab.train.measure` (cost of a step).
* :mod:`dehazelab.train.checkpoint` — weights_only-safe checkpoints and RNG capture;
  :mod:`~dehazelab.train.folder` — the run folder's checkpoint files; :mod:`~dehazelab.train.history` — the
  crash-safe history CSV.
* :mod:`dehazelab.distributed` — data parallelism under ``torchrun`` (global batch sliced per rank,
  averaged gradients, rank-0-only I/O); the loop uses it, and does nothing extra in one process.
"""

from dehazelab.train.checkpoint import (
    CheckpointError,
    TrainingDiverged,
    capture_rng_state,
    load_checkpoint,
    model_from_checkpoint,
    restore_rng_state,
    save_checkpoint,
)
from dehazelab.train.config import PairedTrainConfig
from dehazelab.train.folder import CheckpointDir
from dehazelab.train.history import HistoryLog
from dehazelab.distributed import DistContext, init_distributed
from dehazelab.train.paired import evaluate, l1_loss, measure_step_time, train_paired

__all__ = [
    "PairedTrainConfig",
    "train_paired",
    "evaluate",
    "measure_step_time",
    "l1_loss",
    "TrainingDiverged",
    "CheckpointError",
    "CheckpointDir",
    "HistoryLog",
    "capture_rng_state",
    "restore_rng_state",
    "load_checkpoint",
    "save_checkpoint",
    "model_from_checkpoint",
    "DistContext",
    "init_distributed",
]
