"""A run's training history: an append-only CSV that survives crashes and is truncated back to the
checkpoint on resume (:class:`HistoryLog`), and the running mean over one logging window
(:class:`MeanWindow`)."""

from __future__ import annotations

import csv
import io as _io
import math
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

from dehazelab.io import atomic_write_text

__all__ = ["HistoryLog", "MeanWindow"]


# --------------------------------------------------------------------------------------------
# history
# --------------------------------------------------------------------------------------------
def _cell(v: Any) -> str:
    if v is None:
        return ""
    if isinstance(v, torch.Tensor):
        v = v.item()
    if isinstance(v, np.generic):
        v = v.item()
    if isinstance(v, float):
        return "" if math.isnan(v) else repr(v)  # repr round-trips exactly
    return str(v)


class HistoryLog:
    """Append-only CSV of training rows, robust to crashes.

    Each :meth:`append` adds one line and flushes it, so a long run costs O(1) per row (an atomic
    rewrite happens only when a row brings a new column). Floats are written with ``repr`` (exact
    round trip); ``None``/NaN as empty cells. :meth:`truncate` drops rows past a step (those
    written after the checkpoint a run resumes from) and a half-written last line.
    """

    def __init__(self, path: str | os.PathLike, step_key: str = "step"):
        self.path = Path(path)
        self.step_key = step_key

    def _read_rows(self) -> tuple[list[str], list[dict[str, str]]]:
        if not self.path.is_file():
            return [], []
        text = self.path.read_text(encoding="utf-8")
        if text and not text.endswith("\n"):  # a crash mid-append: drop the partial line
            text = text[: text.rfind("\n") + 1]
        if not text.strip():
            return [], []
        reader = csv.DictReader(_io.StringIO(text))
        return list(reader.fieldnames or []), list(reader)

    def columns(self) -> list[str]:
        return self._read_rows()[0]

    def _rewrite(self, columns: list[str], rows: list[Mapping[str, Any]]) -> None:
        buf = _io.StringIO()
        w = csv.DictWriter(buf, fieldnames=columns, lineterminator="\n")
        w.writeheader()
        for r in rows:
            w.writerow({k: _cell(r.get(k)) for k in columns})
        atomic_write_text(self.path, buf.getvalue())

    def _header(self) -> list[str]:
        """Column names from the first line (``[]`` when there is no complete header)."""
        if not self.path.is_file():
            return []
        with open(self.path, encoding="utf-8", newline="") as f:
            first = f.readline()
        if not first.endswith("\n"):
            return []
        return next(csv.reader([first]), [])

    def _ends_with_newline(self) -> bool:
        with open(self.path, "rb") as f:
            f.seek(0, os.SEEK_END)
            if f.tell() == 0:
                return True
            f.seek(-1, os.SEEK_END)
            return f.read(1) == b"\n"

    def append(self, row: Mapping[str, Any]) -> None:
        """Add one row; new keys become new columns (existing rows get empty cells)."""
        if self.step_key not in row:
            raise KeyError(f"history row needs a {self.step_key!r} entry")
        columns = self._header()
        new = [k for k in row if k not in columns]
        if not columns or new or not self._ends_with_newline():
            rows = self._read_rows()[1] if columns else []
            self._rewrite(columns + new, [*rows, row])
            return
        buf = _io.StringIO()
        csv.DictWriter(buf, fieldnames=columns, lineterminator="\n").writerow({k: _cell(row.get(k)) for k in columns})
        with open(self.path, "a", encoding="utf-8", newline="") as f:
            f.write(buf.getvalue())
            f.flush()

    def truncate(self, max_step: int) -> None:
        """Keep only rows with ``step <= max_step`` (and drop a partial last line)."""
        columns, rows = self._read_rows()
        if not columns:
            if self.path.exists():
                self.path.unlink()
            return
        keep = [r for r in rows if r.get(self.step_key, "") != "" and int(float(r[self.step_key])) <= max_step]
        self._rewrite(columns, keep)

    def clear(self) -> None:
        self.path.unlink(missing_ok=True)

    def read(self):
        """The history as a pandas DataFrame (empty frame when nothing was logged)."""
        import pandas as pd

        columns, rows = self._read_rows()
        if not columns:
            return pd.DataFrame()
        if not rows:
            return pd.DataFrame(columns=columns)
        return pd.read_csv(_io.StringIO(self._text_clean()))

    def _text_clean(self) -> str:
        text = self.path.read_text(encoding="utf-8")
        if text and not text.endswith("\n"):
            text = text[: text.rfind("\n") + 1]
        return text


class MeanWindow:
    """Running means of named floats over a logging window; its state goes into checkpoints so
    a resumed run writes the same averaged rows as an uninterrupted one."""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.sums: dict[str, float] = {}
        self.counts: dict[str, int] = {}

    def add(self, values: Mapping[str, float]) -> None:
        for k, v in values.items():
            self.sums[k] = self.sums.get(k, 0.0) + float(v)
            self.counts[k] = self.counts.get(k, 0) + 1

    def means(self) -> dict[str, float]:
        return {k: self.sums[k] / self.counts[k] for k in self.sums}

    def __len__(self) -> int:
        return max(self.counts.values(), default=0)

    def state_dict(self) -> dict[str, Any]:
        return {"sums": dict(self.sums), "counts": dict(self.counts)}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.sums = {k: float(v) for k, v in state.get("sums", {}).items()}
        self.counts = {k: int(v) for k, v in state.get("counts", {}).items()}
