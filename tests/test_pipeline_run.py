"""The pipeline end to end at smoke size, in a copy of the workflow: `snakemake` runs every notebook
through papermill, notebook 90 assembles *this* run's results, and `snakemake --report` writes one
self-contained HTML file holding every figure and table the Snakefile marks, with its caption.

About 2 minutes on 2 cores (the notebooks at their parameters-cell defaults)."""

import ast
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from dehazelab import paths

# what the Snakefile reads: itself, the configs and profiles, the report texts and table renderer, the
# notebooks, and the library (an input of every notebook rule; the kernels, started in the workflow
# folder, import this copy, which pyproject.toml marks as the repository root)
WORKFLOW = ["Snakefile", "pyproject.toml", "config", "profiles", "report", "notebooks", "dehazelab"]


def report_spec() -> dict:
    """The Snakefile's REPORT dict, read without running Snakemake (a literal by design)."""
    m = re.search(r"^REPORT = (\{.*?^\})$", (paths.ROOT / "Snakefile").read_text(), re.MULTILINE | re.DOTALL)
    assert m, "the Snakefile defines no REPORT dict"
    return ast.literal_eval(m.group(1))


@pytest.fixture(scope="module", params=["benchmark data", "no data"])
def smoke_run(request, tmp_path_factory):
    """The smoke pipeline and its report, on the benchmark data (skipped when there is none) and on
    the synthetic fallback: every output the Snakefile declares must be written either way."""
    data = paths.data_root()
    if request.param == "benchmark data" and data is None:
        pytest.skip("no benchmark data (DEHAZELAB_DATA / ../shared/data)")
    work = tmp_path_factory.mktemp("workflow")
    for name in WORKFLOW:
        src = paths.ROOT / name
        if src.is_dir():
            shutil.copytree(src, work / name, ignore=shutil.ignore_patterns("__pycache__", ".ipynb_checkpoints",
                                                                            "drafts"))
        else:
            shutil.copy2(src, work / name)
    env = {k: v for k, v in os.environ.items() if k != "DEHAZELAB_RESULTS"}  # the Snakefile sets it
    env["DEHAZELAB_DATA"] = str(data) if request.param == "benchmark data" else ""
    run = subprocess.run([sys.executable, "-m", "snakemake", "--configfile", "config/smoke.yaml", "--cores", "2"],
                         cwd=work, env=env, capture_output=True, text=True, timeout=1200)
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-4000:]
    html = work / "report.html"
    rep = subprocess.run([sys.executable, "-m", "snakemake", "--configfile", "config/smoke.yaml", "--report", str(html)],
                         cwd=work, env=env, capture_output=True, text=True, timeout=600)
    assert rep.returncode == 0, rep.stdout[-4000:] + rep.stderr[-4000:]
    return work, html, request.param


@pytest.mark.slow
def test_every_notebook_ran_and_90_assembled_this_run(smoke_run):
    work, _, setting = smoke_run
    spec = report_spec()
    for nb in spec:
        out = work / "results" / "smoke" / nb
        assert (out / "metrics.json").is_file(), nb
        assert (out / f"{nb}.ipynb").is_file(), nb
        for name in ([f"{f}.png" for f in spec[nb]["figures"]] + [f"{t}.csv" for t in spec[nb]["tables"]]
                     + [f"{t}.html" for t in spec[nb]["tables"]]):
            f = out / name
            assert f.is_file() and f.stat().st_size > 0, f
    # notebook 90 read the smoke results of this copy, not the repository's committed small ones
    executed = json.loads((work / "results" / "smoke" / "90_tables_figures" / "90_tables_figures.ipynb").read_text())
    text = "".join("".join(o.get("text", "")) for c in executed["cells"] for o in c.get("outputs", []))
    assert f"assembling the 'smoke' results under {work / 'results'}" in text
    # and the data setting was the one asked for (recorded in notebook 00's config.json)
    cfg = json.loads((work / "results" / "smoke" / "00_data_baselines" / "config.json").read_text())
    assert (cfg["data_root"] is None) == (setting == "no data"), cfg["data_root"]


@pytest.mark.slow
def test_report_is_one_self_contained_file_with_every_marked_output(smoke_run):
    work, html, _ = smoke_run
    page = html.read_text(encoding="utf-8", errors="replace")
    # nothing is fetched when the report is opened: no external scripts, styles or images
    assert not re.search(r"<script[^>]+src=[\"']https?:", page)
    assert not re.search(r"<link[^>]+href=[\"']https?:", page)
    assert not re.search(r"<img[^>]+src=[\"']https?:", page)
    spec = report_spec()

    def shown(text: str) -> bool:  # the report stores its texts JSON-escaped (non-ASCII as \uXXXX)
        return text in page or json.dumps(text)[1:-1] in page

    for nb, entry in spec.items():
        assert shown(entry["title"]), entry["title"]
        for name in entry["figures"]:
            assert f"filename={name}.png;base64," in page, f"{nb}/{name}.png is not embedded in the report"
        for name in entry["tables"]:  # as HTML pages (the report shows those inline, a CSV only as a download)
            assert f"filename={name}.html;base64," in page, f"{nb}/{name}.html is not embedded in the report"
        for shows in list(entry["figures"].values()) + list(entry["tables"].values()):
            assert shown(shows), f"caption missing from the report: {shows!r}"
    # every embedded PNG is a real image (report data URIs carry the file's bytes in base64)
    import base64

    pngs = re.findall(r"data:image/png;charset=utf8;filename=([^;]+);base64,([A-Za-z0-9+/=]+)", page)
    assert len(pngs) >= sum(len(e["figures"]) for e in spec.values())
    for name, data in pngs:
        assert base64.b64decode(data[:64] + "=" * (-len(data[:64]) % 4))[:8] == b"\x89PNG\r\n\x1a\n", name


def test_report_captions_are_complete():
    """Each notebook lists figures and tables with a one-line caption (what the report's "shows" label says)."""
    spec = report_spec()
    for nb, entry in spec.items():
        assert set(entry) == {"title", "figures", "tables"}, nb
        for kind in ("figures", "tables"):
            assert entry[kind], (nb, kind)
            for name, shows in entry[kind].items():
                assert isinstance(shows, str) and 20 <= len(shows) <= 200, (nb, name, shows)
                assert kind != "figures" or name.startswith("fig_"), (nb, name)


def _dry_run(work: Path, env_setting: str, *extra: str) -> dict[str, int]:
    """``snakemake -n`` in ``work`` (``extra``: more arguments): the jobs it would run, by rule."""
    env = {k: v for k, v in os.environ.items() if k != "DEHAZELAB_RESULTS"}
    env["DEHAZELAB_DATA"] = str(paths.data_root()) if env_setting == "benchmark data" else ""
    r = subprocess.run([sys.executable, "-m", "snakemake", "--configfile", "config/smoke.yaml", "-n", "--quiet", "rules",
                        *extra],
                       cwd=work, env=env, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    jobs = {}
    for line in r.stdout.splitlines():
        m = re.fullmatch(r"(\w+)\s+(\d+)", line.strip())
        if m and m.group(1) != "total":
            jobs[m.group(1)] = int(m.group(2))
    return jobs


@pytest.mark.slow
def test_editing_text_retrains_nothing_and_editing_a_model_retrains_its_runs(smoke_run, tmp_path):
    """Runs are jobs of their own: after a full pipeline, a markdown edit of notebook 02 reruns that
    notebook (and those that read it) but no training run; an edit of AOD-Net's module reruns exactly
    the runs that build AOD-Net (notebook 01's AOD-Net row and notebook 04's AOD-Net backbone)."""
    from dehazelab.runs.grids import grid, notebook_params

    work0, _, setting = smoke_run
    work = tmp_path / "copy"
    shutil.copytree(work0, work, symlinks=True)  # copy2 keeps the files' times
    assert _dry_run(work, setting) == {}, "a finished pipeline has nothing to do"

    nb = work / "notebooks" / "02_cut_fastcut.ipynb"
    doc = json.loads(nb.read_text())
    cell = next(c for c in doc["cells"] if c["cell_type"] == "markdown")
    cell["source"] = "".join(cell["source"]) + "\n\nAn edited sentence."
    nb.write_text(json.dumps(doc, indent=1))
    jobs = _dry_run(work, setting)
    assert "run_02_cut_fastcut" in jobs and "run_01_cr_aecrnet" not in jobs, jobs
    assert not {"train", "train_kept", "train_base"} & set(jobs), jobs

    shutil.copytree(work0, work, symlinks=True, dirs_exist_ok=True)  # undo
    # a real edit: Snakemake 9 ignores a newer input whose content matches what its metadata recorded
    aodnet = work / "dehazelab" / "models" / "aodnet.py"
    aodnet.write_text(aodnet.read_text() + "\n# an edit\n")
    jobs = _dry_run(work, setting)
    has_data = setting == "benchmark data"
    aod = [g for n in ("01_cr_aecrnet", "02_cut_fastcut", "03_cddgan", "04_iicl")
           for g in grid(n, notebook_params(n, {"size": "smoke"}), has_data=has_data)
           if g.spec.get("model") in ("aodnet", "iicl-aodnet")]
    ids = {g.id for g in aod}  # a run shared by two notebooks (01's AOD-Net = 04's AOD-Net base) is one job
    assert aod and sum(jobs.get(r, 0) for r in ("train", "train_kept", "train_base")) == len(ids), (jobs, [g.variant for g in aod])


@pytest.mark.slow
def test_a_fresh_clone_has_nothing_to_do_and_a_retrained_base_retrains_its_fine_tunes(smoke_run, tmp_path):
    """A clone has no Snakemake records, and git writes its files in path order: a fine-tune whose folder
    sorts before its base's (aecrnet-cr-* before aecrnet-s*) is older than the base's weights. It depends
    on the base's stamp (results/runs/<size>/.bases/, which sorts first), so nothing is outdated; and
    forcing the base to retrain retrains every run that starts from it."""
    from dehazelab.runs.grids import grid, notebook_params

    work0, _, setting = smoke_run
    work = tmp_path / "clone"
    shutil.copytree(work0, work, symlinks=True, ignore=shutil.ignore_patterns(".snakemake"))
    files = sorted((p for p in work.rglob("*") if p.is_file()), key=lambda p: p.relative_to(work).as_posix().encode())
    t0 = time.time() - 100_000
    for i, p in enumerate(files):  # the times a checkout gives: increasing in path order
        os.utime(p, (t0 + i * 0.01, t0 + i * 0.01))
    has_data = setting == "benchmark data"
    runs = {g.id: g for n in ("01_cr_aecrnet", "02_cut_fastcut", "03_cddgan", "04_iicl")
            for g in grid(n, notebook_params(n, {"size": "smoke"}), has_data=has_data)}
    tuned = {i: g.spec["init"]["run"] for i, g in runs.items() if g.spec.get("init")}
    base = sorted(set(tuned.values()))[0]
    assert any(i < base for i, b in tuned.items() if b == base), "the case this test is about: a fine-tune folder sorting first"
    assert _dry_run(work, setting) == {}, "a fresh clone has nothing to do"
    jobs = _dry_run(work, setting, "--forcerun", f"results/runs/smoke/{base}/weights.pt")
    assert jobs.get("train_base") == 1, jobs
    assert jobs.get("train", 0) + jobs.get("train_kept", 0) == sum(b == base for b in tuned.values()), jobs
