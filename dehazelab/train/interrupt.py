"""Ctrl-C and ``kill`` (SIGINT / SIGTERM) stop training *between* steps, with ``last.pt`` saved.

Inside :class:`StopOnSignal` the first SIGINT or SIGTERM only sets :attr:`StopOnSignal.signal`; the
training loop finishes the step it is in, saves ``last.pt`` and raises :class:`TrainingInterrupted`
(a ``KeyboardInterrupt``, so a notebook cell stops as on any interrupt). A second SIGINT interrupts
at once, the usual escape when a step hangs. Handlers can only be installed from the main thread;
elsewhere the context does nothing and signals behave as usual.
"""

from __future__ import annotations

import signal
import threading
from pathlib import Path

__all__ = ["StopOnSignal", "TrainingInterrupted"]

_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class TrainingInterrupted(KeyboardInterrupt):
    """Training stopped on a signal after ``step`` steps; ``saved`` is the ``last.pt`` written (or None
    on a process that writes nothing)."""

    def __init__(self, step: int, signame: str, saved: Path | None):
        self.step, self.signame, self.saved = int(step), signame, saved
        where = f"saved {saved}" if saved is not None else "state saved by rank 0"
        super().__init__(f"{signame} at step {self.step}: {where}; run the same command again to resume")

    @property
    def exit_code(self) -> int:
        """The shell's convention: 128 + the signal number (130 for SIGINT, 143 for SIGTERM)."""
        return 128 + int(getattr(signal, self.signame, signal.SIGINT))


class StopOnSignal:
    """Context manager: remember the first SIGINT/SIGTERM instead of dying mid-step."""

    def __init__(self) -> None:
        self.signal: str | None = None
        self._old: dict[int, object] = {}

    def _handle(self, signum, frame) -> None:
        if self.signal is not None and signum == signal.SIGINT:
            self._restore()
            raise KeyboardInterrupt  # second Ctrl-C: stop now
        self.signal = signal.Signals(signum).name

    def _restore(self) -> None:
        for s, h in self._old.items():
            signal.signal(s, h)
        self._old = {}

    def __enter__(self) -> "StopOnSignal":
        if threading.current_thread() is threading.main_thread():
            for s in _SIGNALS:
                self._old[s] = signal.getsignal(s)
                signal.signal(s, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        self._restore()
