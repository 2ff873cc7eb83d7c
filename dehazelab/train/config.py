"""The configuration of a paired (hazy → clear) training run.

Defaults follow the AECR-Net recipe as far as it is known (methods.md §1.6/§1.12): Adam with
lr 2e-4 (the paper; the official ``option.py`` defaults to 1e-4), betas (0.9, 0.999), per-step
cosine decay, flips + 90° rotations. Crop size and batch size have no default on purpose: they are
the first thing a CPU teaching run changes (the paper uses crop 240, batch 16).

``crop`` and ``augment`` describe the *dataset* the caller builds (the dataset crops and augments;
the trainer only records them so the run's config is complete).

Fields added later (``amp``, ``channels_last``: :data:`LATE_FIELD_DEFAULTS`) are left out of
:meth:`PairedTrainConfig.config_hash` while they hold their default, so the hash of every config
written before they existed is unchanged; a checkpoint whose recorded config lacks them is read as
having the defaults when resuming (:func:`with_late_defaults`).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from collections.abc import Iterable, Mapping
from typing import Any

__all__ = ["PairedTrainConfig", "BOOKKEEPING_FIELDS", "LATE_FIELD_DEFAULTS", "with_late_defaults", "refuse_other_config"]

#: Fields that change what is logged/saved but not the trained weights. A run may be resumed with
#: different values of these; every other field must match the checkpoint's.
BOOKKEEPING_FIELDS: tuple[str, ...] = ("eval_every", "log_every", "ckpt_every", "snapshot_every", "keep_snapshots")

#: Fields added after configs and checkpoints had been recorded, with their defaults. At the default
#: they are not hashed (old hashes stay valid) and a saved config without them means the default.
LATE_FIELD_DEFAULTS: dict[str, Any] = {"amp": False, "channels_last": False}


def with_late_defaults(saved: Mapping[str, Any] | None, late: Mapping[str, Any] = LATE_FIELD_DEFAULTS) -> dict[str, Any]:
    """A saved config dict with the later-added fields filled in at their defaults (for resume checks)."""
    return {**dict(late), **dict(saved or {})}


def refuse_other_config(saved: Mapping[str, Any] | None, now: Mapping[str, Any], path: Any,
                        bookkeeping: Iterable[str], late: Mapping[str, Any] = LATE_FIELD_DEFAULTS) -> None:
    """Resuming from ``path`` (a ``last.pt`` whose trainer config is ``saved``) with config ``now``:
    ``ValueError`` naming every field that differs, apart from ``bookkeeping`` ones (logging and
    checkpoint cadence, which do not change the weights)."""
    saved = with_late_defaults(saved, late)
    skip = set(bookkeeping)
    diff = sorted(k for k in set(saved) | set(now) if k not in skip and saved.get(k) != now.get(k))
    if diff:
        detail = ", ".join(f"{k}: {saved.get(k)!r} -> {now.get(k)!r}" for k in diff)
        raise ValueError(f"cannot resume from {path}: the config differs in {detail}. "
                         "Use a new out_dir, or resume=False to start over.")


def _hash_dict(d: dict[str, Any], late: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in d.items() if not (k in late and v == late[k])}


@dataclasses.dataclass
class PairedTrainConfig:
    """Everything that determines a paired training run (apart from model, loss and data).

    Attributes
    ----------
    steps: total optimiser steps T.
    batch_size: images per step.
    crop: training crop side in pixels (applied by the dataset).
    lr: initial learning rate lr₀ of Adam.
    betas: Adam betas.
    cosine: per-step cosine decay ``lr_t = ½(1 + cos(π t / T))·lr₀`` for the update with
        ``t = 0 … T-1`` completed steps before it (the first update uses lr₀). The official
        AECR-Net/FFA-Net script evaluates the same formula at ``t = 1 … T``, so its last update has
        lr 0; ours ends at ``½(1+cos(π(T-1)/T))·lr₀ > 0``. ``False`` keeps lr₀ constant.
    eval_every: evaluate on the test set every this many steps (and always after the last
        step); ``0`` evaluates only at the end.
    seed: seeds python/numpy/torch and the data order.
    threads: torch CPU threads (CPU results are bitwise repeatable only at a fixed count);
        ``None`` leaves torch's current setting (the resolved value is recorded in config.json).
    device: ``"auto"`` (CUDA when present, else CPU), ``"cpu"``, ``"cuda"``, ``"cuda:1"`` ...
    augment: random flips + 90° rotations (applied by the dataset).
    num_workers: DataLoader workers. Resuming is bit-exact only with 0 (random augmentation in
        worker processes continues from per-epoch worker seeds, not from the saved RNG state).
    grad_clip: clip the global gradient L2 norm to this value (``None``: no clipping). The
        history's ``grad_norm`` is the norm before clipping.
    log_every: write one history row per this many steps (loss parts averaged over the window).
    ckpt_every: save ``last.pt`` every this many steps (and at the end). ``None`` → at every
        evaluation.
    snapshot_every: additionally keep numbered ``step_XXXXXXXX.pt`` snapshots every this many
        steps (``None``: none), of which the newest ``keep_snapshots`` are kept.
    amp: CUDA automatic mixed precision — forward and loss under ``torch.autocast("cuda",
        dtype=torch.float16)``, backward through a ``torch.amp.GradScaler("cuda")`` (its state is
        checkpointed). A gradient overflow caused by the loss scale is *not* divergence: the scaler
        skips that update and lowers the scale (the learning-rate schedule still advances, as in
        PyTorch's AMP recipe; the history logs ``amp_skipped`` / ``amp_scale``, and ``grad_norm``
        over the applied updates only). Only a non-finite loss, a non-finite unscaled
        gradient norm the scaler did not attribute to overflow, or more than
        ``paired.AMP_MAX_SKIPPED`` consecutive skipped updates stop the run. Without CUDA the
        setting is ignored with a warning (the run trains in float32 and ``config.json`` records
        ``resolved.amp = false``). Evaluation stays in float32.
    channels_last: convert the model and the input batches to ``torch.channels_last`` memory format
        (faster convolutions with tensor cores; on CPU it runs too, results equal within float
        rounding, not bitwise).
    """

    steps: int
    batch_size: int
    crop: int
    lr: float = 2e-4
    betas: tuple[float, float] = (0.9, 0.999)
    cosine: bool = True
    eval_every: int = 0
    seed: int = 0
    threads: int | None = None
    device: str = "auto"
    augment: bool = True
    num_workers: int = 0
    grad_clip: float | None = None
    log_every: int = 10
    ckpt_every: int | None = None
    snapshot_every: int | None = None
    keep_snapshots: int = 3
    amp: bool = False
    channels_last: bool = False

    def __post_init__(self) -> None:
        def _int(name: str, minimum: int, optional: bool = False) -> None:
            v = getattr(self, name)
            if v is None and optional:
                return
            if isinstance(v, bool) or not isinstance(v, int):
                if isinstance(v, float) and v.is_integer():
                    v = int(v)
                    setattr(self, name, v)
                else:
                    raise TypeError(f"PairedTrainConfig.{name} must be an int, got {v!r}")
            if v < minimum:
                raise ValueError(f"PairedTrainConfig.{name} must be >= {minimum}, got {v}")

        _int("steps", 1)
        _int("batch_size", 1)
        _int("crop", 1)
        _int("eval_every", 0)
        _int("seed", 0)
        _int("threads", 1, optional=True)
        _int("num_workers", 0)
        _int("log_every", 1)
        _int("ckpt_every", 1, optional=True)
        _int("snapshot_every", 1, optional=True)
        _int("keep_snapshots", 1)
        self.lr = float(self.lr)
        if not (math.isfinite(self.lr) and self.lr > 0):
            raise ValueError(f"PairedTrainConfig.lr must be a positive number, got {self.lr}")
        betas = tuple(float(b) for b in self.betas)
        if len(betas) != 2 or not all(0.0 <= b < 1.0 for b in betas):
            raise ValueError(f"PairedTrainConfig.betas must be two numbers in [0, 1), got {self.betas!r}")
        self.betas = betas  # type: ignore[assignment]
        if self.grad_clip is not None:
            self.grad_clip = float(self.grad_clip)
            if not self.grad_clip > 0:
                raise ValueError(f"PairedTrainConfig.grad_clip must be > 0 or None, got {self.grad_clip}")
        for name in ("cosine", "augment", "amp", "channels_last"):
            if not isinstance(getattr(self, name), bool):
                raise TypeError(f"PairedTrainConfig.{name} must be a bool, got {getattr(self, name)!r}")
        if not isinstance(self.device, str) or not self.device:
            raise TypeError(f"PairedTrainConfig.device must be a non-empty string, got {self.device!r}")

    # -- (de)serialisation -------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """Plain-python dict (betas as a list), JSON- and ``weights_only``-checkpoint-safe."""
        d = dataclasses.asdict(self)
        d["betas"] = list(self.betas)
        return d

    @classmethod
    def field_names(cls) -> list[str]:
        return [f.name for f in dataclasses.fields(cls)]

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "PairedTrainConfig":
        """Build a config from a mapping; unknown keys are an error (a typo must not be ignored)."""
        if not isinstance(d, Mapping):
            raise TypeError(f"PairedTrainConfig.from_dict expects a mapping, got {type(d).__name__}")
        known = set(cls.field_names())
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(
                f"unknown PairedTrainConfig key(s) {unknown}; valid keys are {sorted(known)}"
            )
        required = [f.name for f in dataclasses.fields(cls)
                    if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING]
        missing = [k for k in required if k not in d]
        if missing:
            raise ValueError(f"PairedTrainConfig.from_dict: missing required key(s) {missing}")
        return cls(**dict(d))

    def replace(self, **changes: Any) -> "PairedTrainConfig":
        """A copy with some fields changed (validated like the constructor)."""
        return dataclasses.replace(self, **changes)

    def config_hash(self, exclude: Iterable[str] = ()) -> str:
        """Short stable hash (12 hex chars of SHA-256 over the sorted-key JSON of :meth:`to_dict`).

        ``exclude`` drops fields first, e.g. ``BOOKKEEPING_FIELDS`` for "same weights" identity.
        Fields of :data:`LATE_FIELD_DEFAULTS` at their default are not hashed (see the module
        docstring), so configs from before they existed keep their hash.
        """
        d = _hash_dict(self.to_dict(), LATE_FIELD_DEFAULTS)
        for k in exclude:
            if k not in self.field_names():
                raise KeyError(f"config_hash: {k!r} is not a PairedTrainConfig field")
            d.pop(k, None)
        blob = json.dumps(d, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(blob.encode("utf-8")).hexdigest()[:12]
