"""The finished runs of an unpaired notebook's grid, as the notebook reads them (d2l style: defined once here).

A grid (:func:`dehazelab.runs.ensure_grid`, ``nb.runs()`` in a notebook) pairs each declared run
(:class:`dehazelab.runs.grids.GridRun`: variant, seed, spec) with its finished folder
(:class:`dehazelab.runs.store.Run`). Notebook 02 needs three views of it:

* :func:`runs_table` — one row per run: method, seed, test quality, training speed and sizes;
* :func:`first_seed_settings` — what the first seed's runs were built with (method keyword arguments
  and the iteration schedule), which the later cells rebuild and time;
* :func:`check_scored_on` — every run was scored on exactly the test images the notebook shows.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pandas as pd

__all__ = ["RUN_COLUMNS", "runs_table", "first_seed_settings", "check_scored_on"]

#: Columns of :func:`runs_table`, in order.
RUN_COLUMNS = ["method", "seed", "psnr", "ssim", "delta_e", "n_test", "s_per_iter", "train_s", "params_G",
               "params_all", "run"]


def runs_table(run_grid) -> pd.DataFrame:
    """One row per run of ``run_grid`` (a :class:`dehazelab.runs.GridResults`), in grid order, with the
    columns :data:`RUN_COLUMNS`: ``method`` (the grid's variant), ``seed``, the test ``psnr`` / ``ssim`` /
    ``delta_e`` (mean CIEDE2000) and ``n_test`` images, ``s_per_iter`` — the median seconds per
    ``train_step`` over the logged windows (a median, so a burst of background load does not move it) —
    ``train_s``, the hazy → clear generator's parameters ``params_G``, the parameters of every network of
    the method ``params_all`` (discriminators and heads included) and the ``run`` id."""
    runs = run_grid.table().rename(columns={"variant": "method", "sec_per_step": "s_per_iter", "params": "params_G"})
    runs["params_all"] = [sum(r.summary["params"].values()) for _, r in run_grid]
    return runs[RUN_COLUMNS]


def first_seed_settings(run_grid) -> tuple[dict[str, dict[str, Any]], dict[str, dict[str, int]]]:
    """``(method_kwargs, schedule)`` of the runs that keep their weights (the first seed of each variant):
    ``method_kwargs[variant]`` the keyword arguments the method was built with, its seed left out;
    ``schedule[variant]`` its ``n_steps`` (constant learning rate) and ``n_steps_decay`` (linear decay)."""
    first = [g for g, _ in run_grid if g.keep]
    if not first:
        raise ValueError("first_seed_settings: no run of the grid keeps its weights (no first-seed run)")
    method_kwargs = {g.variant: {k: v for k, v in g.spec["method_kwargs"].items() if k != "seed"} for g in first}
    schedule = {g.variant: {k: g.spec["train"][k] for k in ("n_steps", "n_steps_decay")} for g in first}
    return method_kwargs, schedule


def check_scored_on(run_grid, test_pairs: Sequence[Any]) -> None:
    """Raise ``AssertionError`` naming the run when a run's ``per_image.csv`` lists other test images (by
    name, in order) than ``test_pairs`` — the images the notebook shows and scores its references on."""
    names = [p.name for p in test_pairs]
    for _, r in run_grid:
        got = r.per_image["name"].astype(str).tolist()
        if got != names:
            raise AssertionError(f"{r.id}: scored on {got}, the notebook shows {names}")
