"""A non-finite loss or gradient: one exception family for every training step and loop.

* :class:`NonFiniteLoss` — raised by a training step (a method's ``train_step``) *before* it applies
  a NaN/inf loss or gradient norm: what, its value, the loss parts computed so far;
* :class:`TrainingDiverged` — the same, raised by the training loop, which adds the step number and
  where the last good checkpoint and the pre-divergence state are.

It sits below :mod:`dehazelab.methods` and :mod:`dehazelab.train`, so neither imports the other for it.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

__all__ = ["NonFiniteLoss", "TrainingDiverged"]


class NonFiniteLoss(RuntimeError):
    """A loss or gradient norm of a training step is NaN/inf; raised before it is applied.

    ``what`` names the quantity (e.g. ``"loss D"``, ``"gradient norm G"``), ``value`` its value and
    ``logs`` the loss parts computed so far in the step. Parts of the step that ran before (e.g. a
    discriminator update preceding a failing generator loss) *have* been applied.
    """

    def __init__(self, what: str, value: float, logs: Mapping[str, float] | None = None, message: str | None = None):
        self.what, self.value, self.logs = what, float(value), dict(logs or {})
        super().__init__(message or f"non-finite {what}: {value}")


class TrainingDiverged(NonFiniteLoss):
    """A non-finite loss (or gradient norm) stopped training.

    Attributes: ``step`` (1-based number of the step that failed), ``what`` (``"loss"`` or
    ``"gradient norm"``), ``value``, ``logs`` (the loss parts of that step), ``last_good`` (path of
    the untouched last checkpoint, or ``None``) and ``saved`` (path of the pre-divergence state).
    """

    def __init__(self, step: int, what: str, value: float, logs: Mapping[str, float] | None = None,
                 last_good: Path | None = None, saved: Path | None = None):
        self.step = int(step)
        self.last_good = last_good
        self.saved = saved
        parts = ", ".join(f"{k}={v:.6g}" for k, v in dict(logs or {}).items()) or "no loss parts"
        msg = f"training diverged at step {self.step}: non-finite {what} ({value}); loss parts: {parts}"
        if saved is not None:
            msg += f"; state before this step saved to {saved}"
        msg += f"; last good checkpoint: {last_good if last_good is not None else 'none written yet'} (not overwritten)"
        super().__init__(what, value, logs, message=msg)
