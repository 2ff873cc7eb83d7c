"""dehazelab.notebook_metrics: a notebook's metrics.json record."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pandas as pd
import pytest

from dehazelab import io
from dehazelab.notebook_metrics import as_records, collect

NB = SimpleNamespace(name="02_cut_fastcut", size="smoke", data_used={"test": {"n": 2}}, seeds=[0, 1])


def test_as_records_turns_every_table_into_rows_at_any_depth():
    df = pd.DataFrame({"a": [1, 2], "b": ["x", "y"]})
    rows = [{"a": 1, "b": "x"}, {"a": 2, "b": "y"}]
    assert as_records(df) == rows
    assert as_records({"t": df, "none": None, "deep": [{"u": df}, (df, 3)], "n": 1.5}) == {
        "t": rows, "none": None, "deep": [{"u": rows}, [rows, 3]], "n": 1.5}


def test_collect_fills_in_the_notebook_and_writes_as_json(tmp_path):
    claims = pd.DataFrame({"claim": ["c"], "at this size": ["held"]})
    m = collect(NB, steps=6, claims=claims, tables={"cost": pd.DataFrame({"s": [0.1]}), "official_order": None})
    assert m == {"notebook": "02_cut_fastcut", "size": "smoke", "data": {"test": {"n": 2}}, "seeds": [0, 1], "steps": 6,
                 "claims": [{"claim": "c", "at this size": "held"}], "tables": {"cost": [{"s": 0.1}], "official_order": None}}
    assert json.loads(io.write_json(tmp_path / "metrics.json", m).read_text()) == m
    with pytest.raises(ValueError, match=r"\['seeds'\] are filled in from the notebook"):
        collect(NB, seeds=[3])
