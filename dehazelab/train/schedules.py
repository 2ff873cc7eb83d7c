"""Learning-rate schedules: multipliers of lr₀ after ``t`` completed steps, for ``LambdaLR``.

Callable objects, not lambdas, so ``LambdaLR.state_dict()`` stays plain (checkpoints load with
``weights_only=True``). :class:`CosineDecay` is the paired models' per-step cosine (AECR-Net);
:class:`LinearDecay` the CUT/CycleGAN ``linear`` policy on a step counter.
"""

from __future__ import annotations

import math
from typing import Any

import torch

__all__ = ["CosineDecay", "ConstantLR", "make_scheduler", "LinearDecay"]


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


def make_scheduler(optimizer: torch.optim.Optimizer, cfg: Any) -> torch.optim.lr_scheduler.LambdaLR:
    """Per-step ``LambdaLR`` (call ``.step()`` after every optimiser step)."""
    fn = CosineDecay(cfg.steps) if cfg.cosine else ConstantLR()
    return torch.optim.lr_scheduler.LambdaLR(optimizer, fn)


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
    def from_config(cls, cfg: Any) -> "LinearDecay":
        """From an :class:`~dehazelab.train.unpaired_config.UnpairedTrainConfig`."""
        return cls(cfg.n_steps // cfg.lr_every, cfg.n_steps_decay // cfg.lr_every, cfg.lr_every)
