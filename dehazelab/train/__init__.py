"""Training loops and their shared machinery.

* :mod:`dehazelab.train.config`     — :class:`PairedTrainConfig` (dataclass, dict round trip, hash).
* :mod:`dehazelab.train.checkpoint` — weights_only-safe checkpoints, RNG capture, divergence guard,
  checkpoint folder with rotation, crash-safe history CSV (shared with the unpaired loop).
* :mod:`dehazelab.train.paired`     — :func:`train_paired`, :func:`evaluate`, :func:`measure_step_time`.
* :mod:`dehazelab.train.unpaired`   — ``train_unpaired`` (CUT, FastCUT, CycleGAN, CDD-GAN).
* :mod:`dehazelab.distributed` — data parallelism under ``torchrun`` (global batch sliced per
  rank, averaged gradients, rank-0-only I/O); both loops use it, and do nothing extra in one process.
"""

from dehazelab.train.checkpoint import (
    CheckpointDir,
    CheckpointError,
    HistoryLog,
    TrainingDiverged,
    capture_rng_state,
    load_checkpoint,
    model_from_checkpoint,
    restore_rng_state,
    save_checkpoint,
)
from dehazelab.train.config import PairedTrainConfig
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
