"""Read what a notebook wrote (``results/<size>/<notebook>/``) without recomputing anything.

Notebook 90 assembles every paper's tables and claims from these folders; it never retrains. A
missing or malformed file is a :class:`ResultsMissing` error naming the file and the command that
produces it.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

__all__ = ["ResultsMissing", "NotebookResults", "load_results", "run_command"]


class ResultsMissing(FileNotFoundError):
    """A results file a reader needs is absent or unreadable."""


def run_command(size: str, notebook: str) -> str:
    """The command that (re)creates ``results/<size>/<notebook>/``."""
    cfg = "" if size == "small" else f" --configfile config/{size}.yaml"
    return f"snakemake{cfg} results/{size}/{notebook}/metrics.json"


@dataclass(frozen=True)
class NotebookResults:
    """The results folder of one notebook run."""

    notebook: str
    size: str
    path: Path
    metrics: dict

    def file(self, name: str) -> Path:
        p = self.path / name
        if not p.is_file():
            raise ResultsMissing(f"{p} is missing: {self.notebook} at size {self.size!r} did not write it "
                                 f"(re-run it: {run_command(self.size, self.notebook)})")
        return p

    def has(self, name: str) -> bool:
        return (self.path / name).is_file()

    def table(self, stem: str) -> pd.DataFrame:
        """The full-precision CSV ``<stem>.csv`` written by ``dehazelab.io.write_table``."""
        p = self.file(f"{stem}.csv")
        try:
            return pd.read_csv(p)
        except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as e:
            raise ResultsMissing(f"{p} is not a readable CSV table: {e}") from e

    def figures(self) -> list[Path]:
        return sorted(self.path.glob("fig_*.png"))

    @property
    def duration_s(self) -> float | None:
        """Wall time of the executed notebook as papermill recorded it (``None`` if not recorded)."""
        p = self.path / f"{self.notebook}.ipynb"
        if not p.is_file():
            return None
        try:
            d = json.loads(p.read_text(encoding="utf-8")).get("metadata", {}).get("papermill", {}).get("duration")
        except (json.JSONDecodeError, UnicodeDecodeError):
            return None
        return float(d) if isinstance(d, (int, float)) and math.isfinite(d) else None


def load_results(root: str | Path, size: str, notebook: str) -> NotebookResults:
    """The results of ``notebook`` at ``size`` under ``root`` (normally the repository's ``results/``).

    Checks that ``metrics.json`` exists, parses, and says it was written by that notebook at that
    size — so a folder copied from another size cannot be assembled by mistake.
    """
    path = Path(root) / size / notebook
    mpath = path / "metrics.json"
    if not mpath.is_file():
        raise ResultsMissing(f"{mpath} is missing: run {notebook} at size {size!r} first "
                             f"({run_command(size, notebook)})")
    try:
        metrics: Any = json.loads(mpath.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ResultsMissing(f"{mpath} is not valid JSON ({e}); re-run {run_command(size, notebook)}") from e
    if not isinstance(metrics, dict):
        raise ResultsMissing(f"{mpath} holds a {type(metrics).__name__}, expected a JSON object")
    for key, want in (("notebook", notebook), ("size", size)):
        if metrics.get(key) != want:
            raise ResultsMissing(f"{mpath} says {key}={metrics.get(key)!r}, expected {want!r}: "
                                 f"the folder does not hold {notebook}'s {size} results")
    return NotebookResults(notebook=notebook, size=size, path=path, metrics=metrics)
