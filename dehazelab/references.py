"""A row one notebook reads from another notebook's results, never retraining it.

Notebook 03 puts notebook 02's CUT beside its CDD-GAN rows and pairs them by seed; that only means
something when both were scored on the same test images. :func:`read_reference` reads the row, the
per-seed scores and what is needed to judge comparability, and says in ``status`` why nothing could
be read when the other notebook's results are absent or incomplete::

    cut = read_reference(paths.results_dir(), "small", "02_cut_fastcut", table="cut_table", key="method",
                         name="CUT", run_name="cut", test_images=[...])
    if cut.row is not None: ...
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from .results import ResultsMissing, load_results

__all__ = ["Reference", "read_reference"]


@dataclass
class Reference:
    """What was read: ``status`` is ``"read"`` or why not; ``row`` the table row (``None`` unless read);
    ``per_seed`` the other notebook's per-run scores of that method, indexed by seed (``None`` when it
    wrote none); ``same_test_images`` whether both notebooks scored the same test images."""

    status: str
    path: str
    row: dict[str, Any] | None = None
    per_seed: pd.DataFrame | None = None
    same_test_images: bool = False
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def paired(self) -> bool:
        """Per-seed scores on the same test images: a paired comparison is possible."""
        return self.row is not None and self.same_test_images and self.per_seed is not None

    def record(self) -> dict[str, Any]:
        """A JSON-ready summary for the reading notebook's ``metrics.json``."""
        out: dict[str, Any] = {"status": self.status, "path": self.path}
        if self.row is not None:
            out.update(same_test_images=self.same_test_images, **self.info)
        return out


def read_reference(root: str | Path, size: str, notebook: str, *, table: str, key: str, name: str,
                   run_name: str, test_images: Sequence[str]) -> Reference:
    """Row ``key == name`` of table ``table`` in ``<root>/<size>/<notebook>/metrics.json``, and the rows
    ``method == run_name`` of that notebook's ``runs_per_seed.csv``. ``test_images`` are the reading
    notebook's test image names; the reference is comparable only when the other notebook's are equal."""
    try:
        res = load_results(root, size, notebook)
    except ResultsMissing as e:
        return Reference(status=f"absent ({e})", path=str(Path(root) / size / notebook / "metrics.json"))
    path = str(res.path / "metrics.json")
    rows = [r for r in (res.metrics.get("tables", {}).get(table) or []) if r.get(key) == name]
    if not rows:
        return Reference(status=f"no {name} row in {notebook}'s metrics.json (table {table!r})", path=path)
    m = res.metrics
    same = (m.get("data", {}).get("test", {}).get("images") or None) == list(test_images)
    per_seed = None
    if res.has("runs_per_seed.csv"):
        runs = res.table("runs_per_seed")
        if "method" in runs.columns and (runs.method == run_name).any():
            per_seed = runs[runs.method == run_name].set_index("seed")
    info = {"seeds": m.get("seeds"), "steps": m.get("steps"), "method_kwargs": (m.get("method_kwargs") or {}).get(run_name)}
    return Reference(status="read", path=path, row=rows[0], per_seed=per_seed, same_test_images=bool(same), info=info)
