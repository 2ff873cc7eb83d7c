"""Training runs as first-class results: one spec, one folder, read when present, trained otherwise.

A run spec (the ``python -m dehazelab train`` YAML, :mod:`dehazelab.launch`) describes one training
run; :func:`run_id` names its folder ``results/<size>/runs/<id>/`` (:mod:`dehazelab.runs.store`).
Notebooks call :func:`ensure` once per run: it reads the run when its folder holds a finished
``summary.json`` and otherwise trains it in the kernel, with a progress bar, and then reads it. The
Snakefile trains the same runs as jobs (one per run, ``python -m dehazelab train``) before the
notebook runs, so under Snakemake a notebook only reads. Each notebook's grid of runs is declared
once, in :mod:`dehazelab.runs.grids`.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from .store import SUMMARY_FILE, WEIGHTS_FILE, Run, RunNotFinished, identity, run_id

__all__ = ["Run", "RunNotFinished", "ensure", "run_id", "identity", "runs_dir"]


def runs_dir(size: str) -> Path:
    """``results/<size>/runs`` under :func:`dehazelab.paths.results_dir`."""
    from .. import paths

    return paths.results_dir() / size / "runs"


def _spec(spec: Any):
    from ..launch import RunSpec, parse_spec

    if isinstance(spec, RunSpec):
        return spec
    if isinstance(spec, Mapping):
        return parse_spec(spec, source="<run spec>")
    raise TypeError(f"spec must be a run spec mapping or a RunSpec, got {type(spec).__name__}")


def ensure(spec: Mapping[str, Any] | Any, root: str | os.PathLike, *, keep_weights: bool = False,
           label: str | None = None, progress: bool = True) -> Run:
    """The finished run of ``spec`` under ``root`` (``root/<run_id>/``): read when it is there,
    trained (resuming from ``last.pt`` if an earlier attempt was interrupted) and read otherwise.

    ``keep_weights``: the run must also hold ``weights.pt`` (a figure or the CLI needs the trained
    network); a finished run without it is trained again. The recorded spec of a finished run must
    equal ``spec`` in everything that changes its numbers (:func:`identity`); a run recorded with
    another thread count or device is read as it is.
    """
    from ..launch import run

    rs = _spec(spec)
    d = rs.to_dict()
    folder = Path(root) / run_id(d)
    if (folder / SUMMARY_FILE).is_file():
        found = Run(folder)
        if identity(found.spec) != identity(d):
            raise RuntimeError(f"{folder}: its summary records another spec than the one asked for (same id, "
                               "different content); delete the folder to retrain it")
        if not keep_weights or found.has_weights():
            return found
        keep_weights = True  # finished without its weights: trained again (from step 0) to keep them
    run(rs, out_dir=folder, resume="auto", progress=progress, keep_weights=keep_weights, label=label)
    return Run(folder)
