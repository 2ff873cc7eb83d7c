"""dehazelab.unpaired_runs: the runs table, the first seed's settings and the test-image check, on a grid
of stand-in finished runs (no training)."""

from __future__ import annotations

import pandas as pd
import pytest

from dehazelab.runs import GridResults
from dehazelab.runs.grids import GridRun
from dehazelab.unpaired_runs import RUN_COLUMNS, check_scored_on, first_seed_settings, runs_table


class FakeRun:
    """What the helpers read of a finished run folder: its summary, id and per-image scores."""

    def __init__(self, run_id: str, summary: dict, names=("a", "b")):
        self.id, self.summary = run_id, summary
        self.per_image = pd.DataFrame({"name": list(names), "psnr": [1.0] * len(names)})


def _grid(names=("a", "b")):
    pairs = []
    for seed in (0, 1):
        for m, nets in (("cut", {"G": 100, "D": 40, "F": 10}), ("cyclegan", {"G_A": 90, "G_B": 90, "D_A": 30, "D_B": 30})):
            spec = {"method_kwargs": {"seed": seed, "ngf": 8, "n_blocks": 6},
                    "train": {"n_steps": 3, "n_steps_decay": 3 if m == "cut" else 2, "crop": 32}}
            summary = {"psnr": 12.0 + seed, "ssim": 0.5, "delta_e": 9.0, "n_test": 2, "params": nets,
                       "params_generator": 100 if m == "cut" else 90, "train_s": 2.0, "sec_per_step": 0.1 + seed}
            pairs.append((GridRun(m, seed, spec, keep=seed == 0), FakeRun(f"{m}-s{seed}", summary, names)))
    return GridResults("02_cut_fastcut", pairs)


def test_runs_table_has_one_row_per_run_with_generator_and_all_network_parameters():
    t = runs_table(_grid())
    assert list(t.columns) == RUN_COLUMNS
    assert list(zip(t.method, t.seed)) == [("cut", 0), ("cyclegan", 0), ("cut", 1), ("cyclegan", 1)]
    assert t["params_G"].tolist() == [100, 90, 100, 90]
    assert t["params_all"].tolist() == [150, 240, 150, 240]  # 100+40+10, 90+90+30+30
    assert t["s_per_iter"].tolist() == [0.1, 0.1, 1.1, 1.1] and t["run"].tolist()[0] == "cut-s0"


def test_first_seed_settings_leave_out_the_seed_and_keep_the_schedule():
    kwargs, schedule = first_seed_settings(_grid())
    assert kwargs == {"cut": {"ngf": 8, "n_blocks": 6}, "cyclegan": {"ngf": 8, "n_blocks": 6}}
    assert schedule == {"cut": {"n_steps": 3, "n_steps_decay": 3}, "cyclegan": {"n_steps": 3, "n_steps_decay": 2}}
    no_keep = GridResults("x", [(GridRun("cut", 1, {}, keep=False), FakeRun("r", {}))])
    with pytest.raises(ValueError, match="no run of the grid keeps its weights"):
        first_seed_settings(no_keep)


class _Pair:
    def __init__(self, name):
        self.name = name


def test_check_scored_on_names_the_run_scored_on_other_images():
    check_scored_on(_grid(), [_Pair("a"), _Pair("b")])  # the same names, in order: passes
    with pytest.raises(AssertionError, match="cut-s0: scored on \\['a', 'b'\\], the notebook shows \\['b', 'a'\\]"):
        check_scored_on(_grid(), [_Pair("b"), _Pair("a")])
    with pytest.raises(AssertionError, match="cut-s0"):
        check_scored_on(_grid(), [_Pair("a")])
