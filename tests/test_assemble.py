"""dehazelab.assemble: notebook 90's assembling, on a small results tree written here."""

import json
import math

import numpy as np
import pandas as pd
import pytest

from dehazelab import assemble, floors
from dehazelab import stats as dstats
from dehazelab.results import ResultsMissing
from dehazelab.runs.grids import notebook_defaults

NAN = float("nan")


def _table(rows, columns):
    return pd.DataFrame(rows, columns=columns)


def _claims(paper, nb, rows):
    c = dstats.ClaimsTable(paper, nb)
    for claim, metric, est, half in rows:
        c.add(claim, "Table 1", "a vs b", metric, "dB" if metric == "PSNR" else "", est, half, 3)
    return c.frame()


def _write(folder, nb, size, metrics, tables=(), figures=()):
    out = folder / size / nb
    out.mkdir(parents=True)
    (out / "metrics.json").write_text(json.dumps({"notebook": nb, "size": size, **metrics}))
    for stem, df in tables:
        df.to_csv(out / f"{stem}.csv", index=False)
    for f in figures:
        (out / f).write_bytes(b"png")


@pytest.fixture
def tree(tmp_path):
    """results/<smoke>/<notebook>/ for 00-04, with the tables notebook 90 reads."""
    root = tmp_path / "res"
    cols = ["row", "seeds", "PSNR", "PSNR ±95%", "SSIM", "SSIM ±95%", "ΔE", "#params", "VGG-19 of CR",
            "paper PSNR (quoted)", "paper SSIM (quoted)", "paper #params (quoted)"]
    t1 = _table([("hazy input", 0, 12.0, NAN, 0.60, NAN, 20.0, 0, "— (no CR)", NAN, NAN, ""),
                 ("DCP", 0, 16.0, NAN, 0.80, NAN, 12.0, 0, "— (no CR)", 15.09, 0.7, "–"),
                 ("AOD-Net", 2, 19.8, 0.2, 0.82, 0.01, 9.0, 1761, "— (no CR)", 19.1, 0.85, "2K"),
                 ("AECR-Net (L1)", 2, 17.5, 0.3, 0.79, 0.01, 10.0, 2611, "— (no CR)", NAN, NAN, ""),
                 ("AECR-Net", 2, 17.6, 0.3, 0.81, 0.01, 9.5, 2611, "random", 37.17, 0.99, "2.61M")], cols)
    _write(root, "00_data_baselines", "smoke", {
        "data": {"sots": {"source": "sots-indoor"}}, "paper_quoted": {"CR Table 1, DCP": {"SOTS-indoor": [15.09, 0.7]}},
        "dcp": {"SOTS-indoor": {"psnr": 16.5, "psnr_ci95": 0.4, "ssim": 0.81, "ssim_ci95": 0.02, "n": 50},
                "SOTS-indoor / no refinement": {"psnr": 15.0, "psnr_ci95": 0.5, "ssim": 0.7, "ssim_ci95": 0.03, "n": 50}}},
           figures=["fig_a.png"])
    _write(root, "01_cr_aecrnet", "smoke", {"data": {"test": {"n_pairs": 20}}, "seeds": [0, 1], "steps": 100, "vgg": "random"},
           [("table1", t1), ("claims_long", _claims("CR", "01", [("CR helps", "PSNR", 0.1, 0.5), ("CR helps", "SSIM", 0.01, 0.02)]))],
           ["fig_b.png", "fig_c.png"])
    tc = _table([("hazy input (reference)", 0, 12.5, 0.61, 19.0), ("DCP (reference)", 0, 16.0, 0.8, 12.0),
                 ("CUT", 2, 15.0, 0.70, 14.0), ("FastCUT", 2, 13.0, 0.62, 18.0), ("CycleGAN", 2, 14.0, 0.66, 15.0)],
                ["method", "seeds", "PSNR", "SSIM", "ΔE"])
    _write(root, "02_cut_fastcut", "smoke", {"data": "synthetic-skimage", "hazy_input": {"n": 10}},
           [("table_cut", tc), ("claims_long", _claims("CUT", "02", [("CUT faster", "sec/iter", 0.01, NAN)]))])
    cdd = _table([("hazy input", 0, 12.0, 0.6, 20.0, "reference"), ("DCP", 0, 16.0, 0.8, 12.0, "reference"),
                  ("CDD-GAN", 2, 13.0, 0.65, 17.0, "trained here"), ("CUT (notebook 02)", 2, 15.0, 0.7, 14.0, "notebook 02")],
                 ["row", "seeds", "PSNR", "SSIM", "ΔE", "source"])
    _write(root, "03_cddgan", "smoke", {}, [("table_ablation", cdd),
                                            ("claims_long", _claims("CDD", "03", [("DD helps", "PSNR", -1.0, 0.5)]))])
    ti = _table([("—", "hazy input", 0, 12.0, 0.6, 20.0), ("—", "DCP", 0, 16.0, 0.8, 12.0),
                 ("AECR-Net (w16)", "backbone alone", 2, 17.0, 0.78, 10.0), ("AECR-Net (w16)", "+ PRM + IICL", 2, 17.2, 0.79, 10.0),
                 ("AECR-Net (w16)", "PRM alone", 2, 10.0, 0.5, 30.0), ("AOD-Net", "+ IICL", 2, 18.0, 0.8, 9.0)],
                ["backbone", "variant", "seeds", "PSNR", "SSIM", "ΔE"])
    _write(root, "04_iicl", "smoke", {}, [("table_iicl", ti),
                                          ("claims_long", _claims("IICL", "04", [("IICL helps", "PSNR", 2.0, 1.0)]))])
    return root


@pytest.fixture
def results(tree):
    from dehazelab.results import load_results

    return {nb: load_results(tree, "smoke", nb) for nb in assemble.NOTEBOOKS}


def test_start_reads_every_notebook_and_sets_up(tree, tmp_path, monkeypatch):
    monkeypatch.setenv("DEHAZELAB_RESULTS", str(tmp_path / "out"))
    params = {**notebook_defaults("90_tables_figures"), "read_size": "smoke", "read_root": str(tree)}
    cfg, out, R = assemble.start(params)
    assert out == tmp_path / "out" / "smoke" / "90_tables_figures" and out.is_dir()
    assert list(R) == list(assemble.NOTEBOOKS) and R["01_cr_aecrnet"].metrics["steps"] == 100
    assert cfg.read_root == str(tree) and cfg.out_dir == "smoke/90_tables_figures" and set(cfg.versions) == {"python", "pandas", "numpy"}
    with pytest.raises(ValueError, match="read_size"):
        assemble.start({**params, "read_size": "tiny"})
    with pytest.raises(ResultsMissing, match="small"):
        assemble.start({**params, "read_size": "small"})


def test_runs_table_and_data_kind(results):
    runs = assemble.runs_table(results)
    assert list(runs.notebook) == list(assemble.NOTEBOOKS)
    r01 = runs.set_index("notebook").loc["01_cr_aecrnet"]
    assert (r01.seeds, r01.steps, r01["VGG-19 (contrastive terms)"], r01.figures) == (2, 100, "random", 2)
    assert runs.set_index("notebook").loc["03_cddgan", "seeds"] == "—" and runs["wall time (min)"].isna().all()
    assert list(runs.data) == ["real benchmark data", "real benchmark data", "synthetic fallback"] + ["real benchmark data"] * 2


def test_scale_table_lists_only_the_settings_given_and_the_grid_pairs_them():
    ours_cfg = {"01_cr_aecrnet": {"steps": 100, "crop": 64, "lr": 1e-3}, "02_cut_fastcut": None}
    paper_cfg = {"01_cr_aecrnet": {"steps": 500000}, "02_cut_fastcut": {"seeds": [0, 1, 2]}}
    t = assemble.scale_table(["01_cr_aecrnet", "02_cut_fastcut"], "small", ours_cfg, paper_cfg)
    assert list(zip(t.notebook, t.setting)) == [("01_cr_aecrnet", "steps"), ("01_cr_aecrnet", "crop"), ("02_cut_fastcut", "seeds")]
    assert list(t["ours (small)"]) == ["100", "64", "None"] and list(t["paper scale (config/full.yaml)"]) == ["500000", "None", "[0, 1, 2]"]
    g = assemble.scale_grid(t, "small")
    assert g.loc["steps", "01_cr_aecrnet"] == "100 / 500000" and g.loc["steps", "02_cut_fastcut"] == " / "


def test_configured_reads_the_sizes_notebook_settings():
    assert "01_cr_aecrnet" in assemble.configured("small") and "01_cr_aecrnet" in assemble.configured("full")


def test_ours_renames_the_measured_columns_and_orders_them():
    df = pd.DataFrame({"name": ["a"], "x": [1], "SSIM": [0.5], "PSNR": [20.0], "seeds": [3], "training": ["L1"],
                       "#params": [12.0], "PSNR ±95%": [0.1]})
    out = assemble.ours(df, "name", extra=("training", "#params", "missing"))
    assert list(out.columns) == ["row", "seeds", "training", "ours: PSNR", "ours: PSNR ±95%", "ours: SSIM", "#params"]
    assert str(out["#params"].dtype) == "Int64" and out["ours: PSNR"][0] == 20.0
    assert list(assemble.ours(df, "name", extra=["#params", "training"]).columns)[-2:] == ["ours: SSIM", "#params"]


def test_add_dcp_rows_puts_notebook_00_beside_the_quoted_row(results):
    m = results["00_data_baselines"].metrics
    t1 = results["01_cr_aecrnet"].table("table1")
    t = assemble.ours(t1, "row", extra=("#params", "VGG-19 of CR"))
    t["test images"] = 20
    for c in ("paper PSNR (quoted)", "paper SSIM (quoted)", "paper #params (quoted)"):
        t[c] = t1[c]
    n = len(t)
    t = assemble.add_dcp_rows(t, m["dcp"], m["paper_quoted"]["CR Table 1, DCP"])
    assert len(t) == n + 1  # the "no refinement" ablation is not a Table 1 row
    r = t.iloc[-1]
    assert (r.row, r["ours: PSNR"], r["test images"], r["paper PSNR (quoted)"], r["paper #params (quoted)"]) == (
        "DCP, notebook 00 (SOTS-indoor)", 16.5, 50, 15.09, "–")
    # without benchmark data: the synthetic stand-in, with no paper number
    syn = assemble.add_dcp_rows(t.iloc[:n].copy(), {"synthetic": m["dcp"]["SOTS-indoor"], "synthetic / no refinement": {}}, {})
    assert syn.row.iloc[-1] == "DCP, notebook 00 (synthetic)" and math.isnan(syn["paper PSNR (quoted)"].iloc[-1])
    assert syn["paper #params (quoted)"].iloc[-1] == ""


def test_quality_table_holds_every_trained_model_against_its_floor(results):
    q = assemble.quality_table(results)
    assert list(q.model) == ["AOD-Net", "AECR-Net, L1 only", "AECR-Net, L1 + CR", "CUT", "FastCUT", "CycleGAN", "CDD-GAN",
                             "AECR-Net (w16) + PRM + IICL", "AECR-Net (w16) · backbone alone", "AOD-Net · + IICL"]
    assert list(q.notebook) == ["01"] * 3 + ["02"] * 3 + ["03"] + ["04"] * 3
    hazy, dcp = {"psnr": 12.0, "ssim": 0.6, "delta_e": 20.0}, {"psnr": 16.0, "ssim": 0.8, "delta_e": 12.0}
    r = q.set_index("model")
    assert r.loc["AECR-Net, L1 + CR", "met"] == floors.check("headline", {"psnr": 17.6, "ssim": 0.81, "delta_e": 9.5}, hazy, dcp)[0]
    assert r.loc["AOD-Net", "met"] == "met" and r.loc["FastCUT", "met"] == "not met"  # 0.5 dB above its hazy input
    assert r.loc["AECR-Net (w16) + PRM + IICL", "floor"] == floors.KINDS["headline"]


def test_stack_claims_checks_columns_and_rederives_verdicts(results, tree):
    claims = assemble.stack_claims(results)
    assert list(claims.paper) == ["CR", "CR", "CUT", "CDD", "IICL"] and set(claims.columns) == set(dstats.CLAIM_COLUMNS)
    long = tree / "smoke" / "04_iicl" / "claims_long.csv"
    df = pd.read_csv(long)
    df.loc[0, "verdict"] = "not held (the opposite, beyond seed noise)"  # +2.0 ± 1.0 is held
    df.to_csv(long, index=False)
    with pytest.raises(ValueError, match="disagrees"):
        assemble.stack_claims(results)
    df.loc[0, "verdict"] = "held"
    df.assign(remark="x").to_csv(long, index=False)
    with pytest.raises(ValueError, match="remark"):
        assemble.stack_claims(results)


def test_claims_texts_table_and_counts(results):
    claims = assemble.stack_claims(results)
    claims["ours (95% CI)"] = assemble.estimate_texts(claims)
    assert list(claims["ours (95% CI)"]) == ["+0.10 dB ± 0.50", "+0.0100 ± 0.0200", "+0.0100 (no interval)",
                                             "-1.00 dB ± 0.50", "+2.00 dB ± 1.00"]
    t = assemble.claims_table(claims)
    assert list(t.columns) == ["paper", "claim", "paper's evidence", "comparison", "metric", "ours (95% CI)", "seeds",
                               "at this size", "setting"]
    counts = assemble.claim_counts(dstats.claim_verdicts(claims))
    assert list(counts.columns) == ["held", "not shown", "not held", "undetermined"]  # CLAIM_CATEGORIES order, present only
    assert counts.loc["CR", "not shown"] == 1 and counts.loc["CDD", "not held"] == 1 and counts.to_numpy().sum() == 4
    # CUT's one measurement has no interval: undetermined
    assert assemble.counts_markdown(counts).splitlines() == ["* **CDD**: 1 not held", "* **CR**: 1 not shown",
                                                            "* **CUT**: 1 undetermined", "* **IICL**: 1 held"]


def test_summary_psnr_stacks_groups_without_duplicates():
    a = pd.DataFrame({"row": ["x", "y"], "ours: PSNR": [1.0, 2.0], "ours: PSNR ±95%": [0.1, 0.2]})
    b = pd.DataFrame({"row": ["y", "z"], "ours: PSNR": [2.0, 3.0]})
    s = assemble.summary_psnr([("g1", a), ("g1", a.iloc[1:]), ("g2", b)])
    assert list(zip(s.group, s.row)) == [("g1", "x"), ("g1", "y"), ("g2", "y"), ("g2", "z")]
    assert list(s.psnr) == [1.0, 2.0, 2.0, 3.0] and s.ci[:2].tolist() == [0.1, 0.2] and s.ci[2:].isna().all()


def test_psnr_references_name_their_images(results):
    assert assemble.psnr_references(results) == {"hazy input (02's 10 test images)": 12.5, "DCP (01's 20 test images)": 16.0}


def test_figures_table_and_metrics(results, tree):
    figs = assemble.figures_table(results, root=tree)
    assert list(figs.figure) == ["fig_a.png", "fig_b.png", "fig_c.png"] and figs.path[0] == "smoke/00_data_baselines/fig_a.png"
    assert assemble.figures_table(results, root=tree / "elsewhere").path[0] == str(tree / "smoke" / "00_data_baselines" / "fig_a.png")
    claims = assemble.stack_claims(results)
    per_claim = dstats.claim_verdicts(claims)
    counts, q = assemble.claim_counts(per_claim), assemble.quality_table(results)
    cfg = assemble.RunConfig("smoke", 1, "smoke/90", "smoke", str(tree))
    m = assemble.metrics(cfg, results, counts, per_claim, claims, figs, q)
    assert (m["n_claims"], m["n_claim_tests"], m["n_figures"]) == (4, 5, 4)
    assert m["quality_floors_met"] == {"met": int((q.met == "met").sum()), "of": 10}
    assert m["claims_counts"]["CR"] == {"held": 0, "not shown": 1, "not held": 0, "undetermined": 0}
    assert m["sources"]["02_cut_fastcut"]["data"] == "synthetic fallback" and m["tables"][0] == "cr_table1"
    json.dumps(m)
    assert np.isfinite(q.PSNR).all()
