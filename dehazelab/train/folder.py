"""A run folder's checkpoint files and the rule for starting a run over in it.

* :class:`CheckpointDir` — ``last.pt`` / ``best.pt`` / rotated ``step_XXXXXXXX.pt`` snapshots /
  ``prediverge.pt``, every write atomic, and the policy of when each is written (:meth:`CheckpointDir.save_due`).
* :func:`start_over` — a run starting at step 0 deletes an earlier run's files only when asked to
  (``resume=False``), or when they are its own (the same run stopped before its first checkpoint).
"""

from __future__ import annotations

import json
import os
import re
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Callable

from dehazelab.io import remove_stale_tmp
from dehazelab.train.checkpoint import save_checkpoint
from dehazelab.train.history import HistoryLog

__all__ = ["CHECKPOINT_SECONDS", "CheckpointDir", "RunFolderInUse", "start_over"]

#: ``last.pt`` is written at least this often (seconds of training) whatever the step-based policy says.
CHECKPOINT_SECONDS = 300.0


# --------------------------------------------------------------------------------------------
# checkpoint folder with rotation
# --------------------------------------------------------------------------------------------
class CheckpointDir:
    """The checkpoint files of one run folder.

    * ``last.pt`` — the latest good state (what ``resume`` continues from);
    * ``best.pt`` — the state at the best evaluation so far;
    * ``step_XXXXXXXX.pt`` — numbered snapshots, of which only the newest ``keep`` are kept;
    * ``prediverge.pt`` — the state just before a step whose loss went non-finite.

    All writes are atomic, so a crash during a save leaves the previous file in place.
    """

    SNAPSHOT_RE = re.compile(r"^step_(\d{8,})\.pt$")

    def __init__(self, folder: str | os.PathLike, keep: int = 3, every_seconds: float | None = CHECKPOINT_SECONDS):
        if keep < 1:
            raise ValueError("keep must be >= 1")
        if every_seconds is not None and not every_seconds > 0:
            raise ValueError(f"every_seconds must be > 0 or None, got {every_seconds}")
        self.folder = Path(folder)
        self.keep = int(keep)
        self.every_seconds = every_seconds
        self._last_saved = time.monotonic()  # the clock of the time-based last.pt starts with the run

    @property
    def last(self) -> Path:
        return self.folder / "last.pt"

    @property
    def best(self) -> Path:
        return self.folder / "best.pt"

    @property
    def prediverge(self) -> Path:
        return self.folder / "prediverge.pt"

    def snapshot_path(self, step: int) -> Path:
        return self.folder / f"step_{int(step):08d}.pt"

    def snapshots(self) -> list[Path]:
        """Existing numbered snapshots, oldest first."""
        if not self.folder.is_dir():
            return []
        found = [(int(m.group(1)), p) for p in self.folder.iterdir() if (m := self.SNAPSHOT_RE.match(p.name))]
        return [p for _, p in sorted(found)]

    def save_last(self, ckpt: Mapping[str, Any]) -> Path:
        path = save_checkpoint(self.last, ckpt)
        self._last_saved = time.monotonic()
        return path

    def save_best(self, ckpt: Mapping[str, Any]) -> Path:
        return save_checkpoint(self.best, ckpt)

    def save_prediverge(self, ckpt: Mapping[str, Any]) -> Path:
        return save_checkpoint(self.prediverge, ckpt)

    def save_due(self, make: Callable[[int], Mapping[str, Any]], *, step: int, last_step: int,
                 ckpt_every: int | None, snapshot_every: int | None, evaluated: bool, improved: bool,
                 force_last: bool = False) -> None:
        """The checkpoint policy shared by the training loops, at the end of ``step``.

        ``best.pt`` when the evaluation ``improved``; a snapshot every ``snapshot_every`` steps;
        ``last.pt`` at the final step, every ``ckpt_every`` steps, or (``ckpt_every`` None) after
        each evaluation — and in any case once ``every_seconds`` have passed since the last one
        (default :data:`CHECKPOINT_SECONDS`, so a kill loses minutes, not the run), or when
        ``force_last`` (a stop on a signal). ``make(step)`` builds the checkpoint only when one is due.
        """
        snapshot_due = snapshot_every is not None and step % snapshot_every == 0
        last_due = (force_last or step == last_step
                    or (ckpt_every is not None and step % ckpt_every == 0)
                    or (ckpt_every is None and evaluated)
                    or (self.every_seconds is not None and time.monotonic() - self._last_saved >= self.every_seconds))
        if improved or snapshot_due or last_due:
            ck = make(step)
            if improved:
                self.save_best(ck)
            if snapshot_due:
                self.save_snapshot(ck)
            if last_due:
                self.save_last(ck)

    def save_snapshot(self, ckpt: Mapping[str, Any]) -> Path:
        """Write ``step_<ckpt['step']>.pt`` and delete all but the newest ``keep`` snapshots."""
        path = save_checkpoint(self.snapshot_path(ckpt["step"]), ckpt)
        for old in self.snapshots()[: -self.keep]:
            old.unlink(missing_ok=True)
        return path

    def remove_stale_tmp(self, extra_names: tuple[str, ...] = ("history.csv", "config.json", "run_spec.json")) -> list[Path]:
        """Delete the temporary files a killed write of this folder's own files left behind
        (:func:`dehazelab.io.remove_stale_tmp`)."""
        import glob

        names = [glob.escape(n) for n in ("last.pt", "best.pt", "prediverge.pt", *extra_names)] + ["step_*.pt"]
        return [p for n in names for p in remove_stale_tmp(self.folder, n)]

    def clear(self) -> None:
        """Delete this run's checkpoint files (a fresh start in an old folder)."""
        for p in [self.last, self.best, self.prediverge, *self.snapshots()]:
            p.unlink(missing_ok=True)


class RunFolderInUse(FileExistsError):
    """Starting from step 0 would delete files of another run (resume was asked for, no ``last.pt``)."""


def _records_same_run(config_file: Path, identity: Mapping[str, Any]) -> bool:
    try:
        old = json.loads(config_file.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    want = json.loads(json.dumps(dict(identity), default=str))
    return isinstance(old, dict) and all(old.get(k) == v for k, v in want.items())


def start_over(ckdir: "CheckpointDir", history: HistoryLog, *, resume: bool, config_file: str | os.PathLike,
               identity: Mapping[str, Any], main: bool = True) -> None:
    """Prepare ``ckdir``'s folder for a run that starts at step 0.

    ``resume=False`` is the explicit request to start over: the folder's checkpoints (``last.pt``,
    ``best.pt``, ``prediverge.pt``, snapshots) and history are deleted. ``resume=True`` without a
    ``last.pt``: when the folder holds any of those files, :class:`RunFolderInUse` names them and
    nothing is deleted — unless ``config_file`` records this very run (every key of ``identity``,
    e.g. the config hash, equal): the same run stopped before its first checkpoint, which starting
    over reproduces. Only the main process deletes (``main``); every process checks.
    """
    leftovers = [p for p in (ckdir.last, ckdir.best, ckdir.prediverge, *ckdir.snapshots(), history.path) if p.exists()]
    if leftovers and resume and not _records_same_run(Path(config_file), identity):
        names = ", ".join(p.name for p in leftovers)
        raise RunFolderInUse(
            f"{ckdir.folder}: no last.pt to resume from, but the folder holds {names} of another run; nothing was "
            "deleted. Train into another folder, move them away, or start over with resume=False "
            "(command line: --no-resume), which deletes them")
    if main:
        history.clear()
        ckdir.clear()
