"""Reading a notebook's results folder (what notebook 90 assembles from)."""

import json

import pandas as pd
import pytest

from dehazelab import io
from dehazelab.results import ResultsMissing, load_results


def _folder(tmp_path, nb="01_x", size="small", **extra):
    d = tmp_path / size / nb
    d.mkdir(parents=True)
    io.write_json(d / "metrics.json", {"notebook": nb, "size": size, **extra})
    return d


def test_load_results_reads_metrics_tables_figures_and_duration(tmp_path):
    d = _folder(tmp_path, seeds=[0, 1])
    io.write_table(pd.DataFrame({"row": ["a"], "PSNR": [20.123456789]}), d / "table1")
    (d / "fig_b.png").write_bytes(b"png")
    (d / "fig_a.png").write_bytes(b"png")
    (d / "01_x.ipynb").write_text(json.dumps({"metadata": {"papermill": {"duration": 61.5}}, "cells": []}))
    r = load_results(tmp_path, "small", "01_x")
    assert r.metrics["seeds"] == [0, 1]
    assert r.table("table1").PSNR.iloc[0] == pytest.approx(20.123456789, abs=1e-12)  # the CSV keeps full precision
    assert [p.name for p in r.figures()] == ["fig_a.png", "fig_b.png"]
    assert r.duration_s == 61.5 and r.has("table1.csv") and not r.has("nope.csv")


def test_missing_folder_names_the_file_and_the_command(tmp_path):
    with pytest.raises(ResultsMissing, match=r"small/02_y/metrics.json is missing.*snakemake results/small/02_y"):
        load_results(tmp_path, "small", "02_y")
    with pytest.raises(ResultsMissing, match=r"--configfile config/smoke.yaml"):
        load_results(tmp_path, "smoke", "02_y")


def test_a_folder_of_another_size_or_notebook_is_refused(tmp_path):
    d = _folder(tmp_path, nb="01_x", size="small")
    io.write_json(d / "metrics.json", {"notebook": "01_x", "size": "smoke"})
    with pytest.raises(ResultsMissing, match="size='smoke', expected 'small'"):
        load_results(tmp_path, "small", "01_x")


def test_corrupt_metrics_and_missing_table(tmp_path):
    d = _folder(tmp_path)
    r = load_results(tmp_path, "small", "01_x")
    with pytest.raises(ResultsMissing, match="table9.csv is missing"):
        r.table("table9")
    (d / "metrics.json").write_text("{not json")
    with pytest.raises(ResultsMissing, match="not valid JSON"):
        load_results(tmp_path, "small", "01_x")
    assert r.duration_s is None
