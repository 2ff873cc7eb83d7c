"""Training runs as first-class results: one spec, one folder, read when present, trained otherwise.

A run spec (the ``python -m dehazelab train`` YAML, :mod:`dehazelab.launch`) describes one training
run; :func:`run_id` names its folder ``results/runs/<size>/<id>/`` (:mod:`dehazelab.runs.store`).
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

from .store import SUMMARY_FILE, Run, RunNotFinished, identity, run_id

__all__ = ["Run", "RunNotFinished", "GridResults", "ensure", "ensure_grid", "run_id", "identity", "runs_dir"]


def runs_dir(size: str) -> Path:
    """``results/runs/<size>`` under :func:`dehazelab.paths.results_dir`. (Beside, not inside, the
    notebooks' ``results/<size>/``: git checks files out in path order, so in a fresh clone the runs are
    written before the notebook outputs that read them and Snakemake finds everything up to date.)"""
    from .. import paths

    return paths.results_dir() / "runs" / size


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


class GridResults:
    """The finished runs of one notebook's grid (:func:`ensure_grid`), in grid order."""

    def __init__(self, notebook: str, pairs: list):
        self.notebook = notebook
        self.pairs = pairs  # [(GridRun, Run)]

    def __iter__(self):
        return iter(self.pairs)

    def __len__(self) -> int:
        return len(self.pairs)

    def run(self, variant: str, seed: int) -> Run:
        for g, r in self.pairs:
            if g.variant == variant and g.seed == seed:
                return r
        raise KeyError(f"{self.notebook}: no run of variant {variant!r} with seed {seed}")

    def first(self, variant: str) -> Run:
        """The first seed's run of ``variant`` (the one that keeps its weights)."""
        return next(r for g, r in self.pairs if g.variant == variant and g.keep)

    def table(self):
        """One row per run: variant, seed, psnr, ssim, delta_e (mean CIEDE2000), steps, the run it
        started from (``init``), n_test, params, timings, run id."""
        import pandas as pd

        rows = []
        for g, r in self.pairs:
            s = r.summary
            rows.append({"variant": g.variant, "seed": g.seed, "psnr": s.get("psnr"), "ssim": s.get("ssim"),
                         "delta_e": s.get("delta_e"), "steps": s.get("steps"), "init": (s.get("init") or {}).get("run"),
                         "n_test": s.get("n_test"), "params": s.get("params") if not isinstance(s.get("params"), dict)
                         else s.get("params_generator"), "train_s": s.get("train_s"), "warmup_s": s.get("warmup_s"),
                         "eval_s": s.get("eval_s"), "sec_per_step": s.get("sec_per_step"),
                         "psnr_j0": s.get("psnr_j0"), "ssim_j0": s.get("ssim_j0"), "run": r.id})
        return pd.DataFrame(rows)


def ensure_grid(notebook: str, params: Mapping[str, Any], *, progress: bool = True) -> GridResults:
    """Every run of ``notebook``'s grid (:func:`dehazelab.runs.grids.grid` of ``params``, the notebook's
    parameters), read from ``results/runs/<size>/`` or trained there first (:func:`ensure`). Runs are
    trained with ``params["threads"]`` torch threads when they have to be trained here."""
    from .grids import grid

    root = runs_dir(str(params["size"]))
    pairs = []
    for g in grid(notebook, params, run_threads=int(params.get("threads", 1))):
        pairs.append((g, ensure(g.spec, root, keep_weights=g.keep, label=g.variant, progress=progress)))
    return GridResults(notebook, pairs)
