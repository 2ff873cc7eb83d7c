"""tools/run_costs.py: the committed runs' job time per notebook, each shared run counted once."""

import importlib.util
import json

import pytest

from dehazelab import paths

_spec = importlib.util.spec_from_file_location("run_costs", paths.ROOT / "tools" / "run_costs.py")
run_costs = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(run_costs)


def test_run_seconds_adds_training_warm_up_and_scoring():
    assert run_costs.run_seconds({"train_s": 100.0, "warmup_s": 10.0, "eval_s": 5.5}) == 115.5
    assert run_costs.run_seconds({"train_s": 60.0, "warmup_s": None}) == 60.0


def test_committed_small_runs_are_counted_once_and_add_up():
    rows = run_costs.costs("small")
    by_nb = {r["notebook"]: r for r in rows}
    if any(r["missing"] for r in rows):
        pytest.skip("some small-size runs are not in this checkout")
    # notebook 04 fine-tunes notebook 01's L1 runs: they are counted for 01 only
    assert by_nb["04_iicl"]["own"] < by_nb["04_iicl"]["runs"]
    runs_dir = paths.ROOT / "results" / "runs" / "small"
    cddgan = [json.loads(p.read_text()) for p in runs_dir.glob("cddgan-*/summary.json")]
    assert len(cddgan) == by_nb["03_cddgan"]["own"]
    expect = sum(s["train_s"] + (s.get("warmup_s") or 0) + s["eval_s"] for s in cddgan) / 60
    assert by_nb["03_cddgan"]["cpu_min"] == pytest.approx(expect)
