"""The configuration and learning-rate schedule of an unpaired run (CUT, FastCUT, CycleGAN, CDD-GAN).

Steps, not epochs: the official ``n_epochs`` / ``n_epochs_decay`` become ``n_steps`` / ``n_steps_decay``
(:meth:`UnpairedTrainConfig.from_epochs` converts), and :class:`LinearDecay` is the official
``linear`` policy on a step counter (module docstring of :mod:`dehazelab.train.unpaired`).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Iterable, Mapping
from typing import Any

from dehazelab.train.config import BOOKKEEPING_FIELDS, _hash_dict
from dehazelab.train.schedules import LinearDecay  # the unpaired schedule, re-exported

__all__ = ["UnpairedTrainConfig", "UNPAIRED_BOOKKEEPING_FIELDS", "UNPAIRED_LATE_FIELD_DEFAULTS", "DECAY_DATA",
           "LinearDecay"]

#: Fields that do not change the trained weights (may differ when resuming).
UNPAIRED_BOOKKEEPING_FIELDS: tuple[str, ...] = (*BOOKKEEPING_FIELDS, "eval_max_images")
DECAY_DATA = ("resize", "keep")
#: Fields added after configs had been recorded: not hashed at their default, default when absent
#: from a saved config (see :mod:`dehazelab.train.config`).
UNPAIRED_LATE_FIELD_DEFAULTS: dict[str, Any] = {"channels_last": False}


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
