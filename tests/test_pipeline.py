"""The Snakemake pipeline's wiring: every notebook is in every size's config, every configured
parameter exists in that notebook's parameters cell (papermill would silently inject a typo as a
new variable), and the DAG builds."""

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from dehazelab import paths

NOTEBOOKS = sorted(p.stem for p in (paths.ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
SIZES = ["smoke", "small", "full"]


def parameters_of(nb_name: str) -> dict:
    nb = json.loads((paths.ROOT / "notebooks" / f"{nb_name}.ipynb").read_text())
    cells = [c for c in nb["cells"] if "parameters" in c.get("metadata", {}).get("tags", [])]
    assert len(cells) == 1, f"{nb_name}: expected exactly one cell tagged 'parameters', found {len(cells)}"
    tree = ast.parse("".join(cells[0]["source"]))
    return {t.id: ast.literal_eval(node.value) for node in tree.body if isinstance(node, ast.Assign) for t in node.targets}


def config(size: str) -> dict:
    return yaml.safe_load((paths.ROOT / "config" / f"{size}.yaml").read_text())


def test_there_are_notebooks():
    assert "00_data_baselines" in NOTEBOOKS


@pytest.mark.parametrize("size", SIZES)
def test_every_notebook_is_configured(size):
    cfg = config(size)
    assert cfg["size"] == size
    assert sorted(cfg["notebooks"]) == NOTEBOOKS


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("nb", NOTEBOOKS)
def test_configured_parameters_exist(size, nb):
    params = parameters_of(nb)
    for required in ("size", "threads", "out_dir"):
        assert required in params, f"{nb}: parameters cell lacks {required!r} (the Snakefile passes it)"
    given = config(size)["notebooks"].get(nb) or {}
    unknown = set(given) - set(params)
    assert not unknown, f"config/{size}.yaml sets {sorted(unknown)} which {nb} does not define"
    for k, v in given.items():  # same kind of value as the default (papermill does not convert)
        default = params[k]
        if default is None:  # "not set: the library's default" — any value may be configured
            continue
        if isinstance(default, bool) or isinstance(v, bool):
            assert isinstance(v, bool) == isinstance(default, bool), (nb, k, v)
        elif isinstance(default, (int, float)):
            assert isinstance(v, (int, float)), (nb, k, v)
        else:
            assert type(v) is type(default), (nb, k, v, default)


def test_smoke_is_the_notebook_defaults():
    # smoke.yaml must not override anything: smoke == what nbval runs
    assert all(not v for v in config("smoke")["notebooks"].values())


def test_snakemake_dry_run_plans_every_notebook(tmp_path):
    r = subprocess.run(
        [sys.executable, "-m", "snakemake", "-n", "--configfile", "config/smoke.yaml", "--forceall"],
        cwd=paths.ROOT, capture_output=True, text=True, timeout=120,
    )
    assert r.returncode == 0, r.stdout + r.stderr
    for nb in NOTEBOOKS:
        assert f"results/smoke/{nb}/metrics.json" in r.stdout, nb
    assert "-p threads" in r.stdout and '"size": "smoke"' in r.stdout


def test_report_lists_every_committed_figure():
    """Every figure a notebook wrote at the small size is an output marked for `snakemake --report`."""
    r = subprocess.run([sys.executable, "-m", "snakemake", "-n", "--configfile", "config/smoke.yaml", "--forceall"],
                       cwd=paths.ROOT, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    small = paths.ROOT / "results" / "small"
    figs = sorted(small.glob("*/fig_*.png"))
    if not figs:
        pytest.skip("no committed small-size results in this checkout")
    for f in figs:
        nb = f.parent.name
        if nb not in NOTEBOOKS:
            continue
        assert f"results/smoke/{nb}/{f.name}" in r.stdout, f"{nb}/{f.name} is not an output of run_{nb} (Snakefile REPORT)"
