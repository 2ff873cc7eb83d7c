"""The library helpers of notebook 04 (IICL): its settings and assumptions (dehazelab.iicl_setup), its runs,
tables and claims (dehazelab.iicl_results) and its own figures (dehazelab.iicl_figures), on stand-in
finished runs (no training)."""

from __future__ import annotations

import math

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

from dehazelab import iicl_figures, iicl_results, iicl_setup  # noqa: E402
from dehazelab.runs import GridResults  # noqa: E402
from dehazelab.runs.grids import IICL_VARIANTS, GridRun, notebook_defaults  # noqa: E402

VARIANTS = list(IICL_VARIANTS)
# PSNR of (backbone, variant) at seed 0; seed 1 adds DELTA_S1[variant] (so paired differences have a spread)
BASE = {"backbone": 20.0, "+ PRM": 21.0, "+ IICL": 19.5, "+ PRM + IICL": 22.0}
DELTA_S1 = {"backbone": 0.5, "+ PRM": 1.5, "+ IICL": 0.0, "+ PRM + IICL": 0.7}


class FakeRun:
    """What the helpers read of a finished run folder."""

    def __init__(self, run_id, summary, history=None, warmup=None):
        self.id, self.summary = run_id, summary
        self.history, self.warmup_history = history, warmup
        self.per_image = pd.DataFrame({"name": ["a", "b"]})

    def model(self, device="cpu"):
        return ("model", self.id, device)


def _summary(bb, variant, seed):
    psnr = BASE.get(variant, 10.0) + (DELTA_S1.get(variant, 0.0) if seed else 0.0) - (5.0 if bb == "aodnet" else 0.0)
    prm = IICL_VARIANTS.get(variant, {}).get("prm", False)
    return {"psnr": psnr, "ssim": psnr / 100, "delta_e": 30.0 - psnr, "n_test": 2, "params": 1000 + 50 * prm,
            "train_s": 6.0, "warmup_s": 1.0 if prm else 0.0, "eval_s": 0.5,
            "sec_per_step": None if seed else 0.25, "psnr_j0": 15.0 + seed if prm else None,
            "ssim_j0": 0.6 if prm else None, "vgg": "random(seed=0)"}


def _grid(backbones=("aecrnet", "aodnet"), seeds=(0, 1)):
    pairs = []
    for bb in backbones:
        for seed in seeds:
            for variant in ["L1 base", *VARIANTS]:
                h = pd.DataFrame({"step": [1, 2], "loss_l1": [0.5, 0.4]})
                pairs.append((GridRun(f"{bb}/{variant}", seed, {}, keep=seed == seeds[0]),
                              FakeRun(f"{bb}-{variant}-s{seed}", _summary(bb, variant, seed), h)))
    return GridResults("04_iicl", pairs)


REFS = {"hazy input": {"psnr": 12.0, "ssim": 0.5, "delta_e": 20.0}, "DCP": {"psnr": 15.0, "ssim": 0.7, "delta_e": 12.0}}
LABELS = iicl_results.backbone_labels(["aecrnet", "aodnet"], 16)


def test_backbone_labels_keep_the_order_and_name_the_width():
    assert iicl_results.backbone_labels(["aodnet", "aecrnet"], 8) == {"aodnet": "AOD-Net", "aecrnet": "AECR-Net (ngf 8)"}
    assert list(iicl_results.backbone_labels(["aecrnet"], 8)) == ["aecrnet"]
    with pytest.raises(KeyError, match="unknown backbone"):
        iicl_results.backbone_labels(["ffa"], 8)


def test_runs_table_splits_variants_drops_base_runs_and_fills_step_time():
    runs = iicl_results.runs_table(_grid(), steps=12)
    assert list(runs.columns) == iicl_results.RUN_COLUMNS
    assert len(runs) == 2 * 2 * len(VARIANTS) and "L1 base" not in set(runs.variant)
    assert list(runs.variant[:4]) == VARIANTS and set(runs.backbone) == {"aecrnet", "aodnet"}
    s1 = runs[runs.seed == 1]
    assert np.allclose(s1.s_per_step, 6.0 / 12)  # no logged s/step: train_s / steps
    assert np.allclose(runs[runs.seed == 0].s_per_step, 0.25)
    no_prm = runs[~runs.variant.str.contains("PRM")]
    assert no_prm.psnr_j0_warmup.isna().all() and runs.psnr_j0_warmup.dtype == float
    iicl = runs.variant.str.contains("IICL")
    assert (runs[iicl].vgg_used == "random(seed=0)").all() and (runs[~iicl].vgg_used == iicl_results.NO_VGG).all()


def test_histories_and_first_seed_models_cover_every_fine_tune():
    grid = _grid()
    h = iicl_results.histories(grid)
    assert set(h) == {(bb, v, s) for bb in ("aecrnet", "aodnet") for v in VARIANTS for s in (0, 1)}
    assert h[("aodnet", "+ IICL", 1)][0] is grid.run("aodnet/+ IICL", 1).history
    models = iicl_results.first_seed_models(grid, ["aodnet"], "cpu")
    assert list(models) == [("aodnet", v) for v in VARIANTS]
    assert models[("aodnet", "+ PRM")] == ("model", "aodnet-+ PRM-s0", "cpu")


def test_results_table_means_references_and_j0_rows():
    runs = iicl_results.runs_table(_grid(), steps=12)
    t = iicl_results.results_table(runs, REFS, LABELS, n_test=2)
    assert list(t.columns[:3]) == ["backbone", "variant", "test images"] and (t["test images"] == 2).all()
    assert list(t.variant[:2]) == ["hazy input", "DCP"] and t.PSNR[1] == 15.0 and t.seeds[0] == 0
    aod = t[t.backbone == "AOD-Net"].set_index("variant")
    assert list(aod.index) == [*VARIANTS, iicl_results.J0]
    for v in VARIANTS:  # mean over the two seeds, computed independently
        assert aod.loc[v, "PSNR"] == pytest.approx(BASE[v] - 5.0 + DELTA_S1[v] / 2)
    assert aod.loc[iicl_results.J0, "PSNR"] == pytest.approx(15.5)
    assert aod.loc[iicl_results.J0, "vgg_used"] == iicl_results.NO_VGG
    assert aod.loc["+ PRM", "#params"] == 1050 and aod.loc["+ PRM", "warm-up s"] == 1.0


def test_paired_differences_and_claims_match_an_independent_computation():
    runs = iicl_results.runs_table(_grid(), steps=12)
    d, h = iicl_results.paired_vs_backbone(runs, "aecrnet", "+ PRM", "psnr")
    diffs = np.array([BASE["+ PRM"] - BASE["backbone"], BASE["+ PRM"] + 1.5 - BASE["backbone"] - 0.5])
    assert d == pytest.approx(diffs.mean())
    assert h == pytest.approx(12.706 * diffs.std(ddof=1) / math.sqrt(2), rel=1e-3)  # t(0.975, 1) = 12.706

    dt = iicl_results.differences_table(runs, LABELS, 2, "vgg")
    assert len(dt) == 6 and list(dt["variant − backbone"][:3]) == ["+ PRM", "+ IICL", "+ PRM + IICL"]
    assert dt.loc[0, "ΔPSNR"] == pytest.approx(d) and dt.loc[0, "ΔPSNR ±95%"] == pytest.approx(h)

    claims = [("+ PRM + IICL", "the framework helps"), ("+ IICL", "IICL helps")]
    ct = iicl_results.claims_table(runs, LABELS, claims, "abstract", 2, "vgg")
    assert list(ct.backbone) == ["AECR-Net (ngf 16)"] * 2 + ["AOD-Net"] * 2
    assert ct.loc[1, "ours: ΔPSNR (95% CI)"] == "-0.75 dB ± 3.18"  # IICL: -0.5 and -1.0
    assert ct.loc[1, "at this size (PSNR)"].startswith("not shown at this size (opposite")
    assert ct.loc[0, "comparison"] == "+ PRM + IICL vs backbone"

    long = iicl_results.long_claims(runs, LABELS, claims, "abstract", 2, "vgg")
    assert len(long) == 2 * 2 * 2  # backbones × claims × (PSNR, SSIM)
    with pytest.raises(KeyError):
        iicl_results.paired_vs_backbone(runs, "aecrnet", "+ nothing", "psnr")


def test_quality_lines_use_each_backbones_floor():
    runs = iicl_results.runs_table(_grid(), steps=12)
    t = iicl_results.results_table(runs, REFS, LABELS, n_test=2)
    text = iicl_results.quality_lines(t, REFS, LABELS)
    lines = text.split("\n")
    assert len(lines) == 2 and "(headline)" in lines[0] and "(aodnet)" in lines[1]
    assert "AECR-Net (ngf 16) + PRM + IICL 22.35 dB" in lines[0] and "+7.35 dB" in lines[0]
    assert "its quality floor (headline): not met (SSIM vs DCP: 0.223 vs 0.7" in lines[0]  # PSNR passes, SSIM not
    assert "PSNR vs DCP" not in lines[0] and "not met" in lines[1] and "PSNR vs 19.5 dB: 17.4" in lines[1]


def test_settings_table_reads_parameters_and_full_config():
    p = notebook_defaults("04_iicl")
    full = {"ngf": 64, "max_test_images": 0, "seeds": [0, 1, 2], "intra_patch": 16, "intra_k": 4}
    t = iicl_setup.settings_table(p, full, "SOTS train", 30, 7).set_index("setting")
    assert list(t.columns) == iicl_setup.SETTINGS_COLUMNS[1:]
    col = iicl_setup.SETTINGS_COLUMNS[2]
    assert t.loc["AECR-Net width ngf", col] == "64" and t.loc["PRM width", col] == ""
    assert t.loc["test images per run", col] == "all" and t.loc["test images per run", "this run"] == "7"
    assert t.loc["seeds", col] == "3" and t.loc["seeds", "this run"] == str(len(p["seeds"]))
    assert t.loc["intra patches (side, k per group)", col] == "16, 4"
    assert t.loc["training data", "this run"] == "SOTS train: 30 pairs (scenes 1400-1429)"


def test_assumptions_table_tags_every_row_and_names_the_parameters():
    p = {**notebook_defaults("04_iicl"), "finetune_steps": 1234, "intra_by": "luminance"}
    t = iicl_setup.assumptions_table(p)
    assert list(t.columns) == iicl_setup.ASSUMPTION_COLUMNS
    own = t[t.component == "this notebook"]
    assert len(own) == len(iicl_setup.notebook_assumptions(p)) == 7 and own.index[-1] == len(t) - 1
    assert own.assumption.str.contains("1,234 steps").any() and own.assumption.str.contains("luminance").any()
    assert {"abstract", "our choice"} <= set(t.source) and t.source.str.startswith("methods.md §4.3").any()


def test_plot_training_losses_offsets_the_joint_stage_after_the_warmup():
    warm = pd.DataFrame({"step": [1, 2, 3], "loss_prm_l1": [0.3, 0.2, 0.1]})
    joint = pd.DataFrame({"step": [1, 2], "loss_l1": [0.5, 0.4], "loss_intra": [1.5, 1.4]})
    fig = iicl_figures.plot_training_losses({"a": (joint, warm), "b": (joint, None)}, intra_k=2)
    ax_a, ax_b = fig.axes
    lines = {ln.get_label(): ln for ln in ax_a.get_lines()}
    assert list(lines["L1(out, J)"].get_xdata()) == [4, 5]  # shifted by the warm-up's last step
    assert list(ax_b.get_lines()[0].get_xdata()) == [1, 2]  # no warm-up: not shifted
    assert lines["ln(k+2): intra at chance"].get_ydata()[0] == pytest.approx(math.log(4))
    assert "CR (inter)" not in lines and ax_a.get_yscale() == "log" and ax_a.get_title() == "a"
    plt.close(fig)
    with pytest.raises(ValueError):
        iicl_figures.plot_training_losses({}, 2)


class _Net(torch.nn.Module):
    def forward(self, x):
        return x * 2

    def forward_all(self, x):
        return {"j0": x + 1, "out": x * 2}


def test_qualitative_dehazers_put_j0_first_then_every_variant():
    nets = {("aodnet", v): _Net() for v in VARIANTS}
    d = iicl_figures.qualitative_dehazers(nets, "aodnet")
    assert list(d) == [iicl_figures.J0_COLUMN, *VARIANTS]
    x = torch.zeros(1, 3, 4, 4)
    assert torch.equal(d[iicl_figures.J0_COLUMN](x), x + 1) and d["+ IICL"] is nets[("aodnet", "+ IICL")]
    with pytest.raises(KeyError, match="no 'aecrnet' network"):
        iicl_figures.qualitative_dehazers(nets, "aecrnet")
