"""dehazelab.cddgan_results: notebook 03's tables and figures, on stand-in runs, methods and references."""

from __future__ import annotations

import math
from types import SimpleNamespace

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

from dehazelab import cddgan_results as cr, features, floors, stats as dstats  # noqa: E402

VARIANTS = ["cyclegan", "contrastive", "cddgan", "cddgan_exemplars"]
SHORT = {v: v.upper() for v in VARIANTS}
LABEL = {v: f"row {v}" for v in VARIANTS}
PARAMS = dict(n_blocks=6, ngf=8, ndf=4, crop=32, num_patches=16, num_negatives=8, netF_nc=32, steps=4,
              global_residual=True, lambda_NCE=None, cycle_weights={"lambda_A": 1.0, "lambda_identity": 0.0})


def _runs(seeds=(0, 1, 2)):
    rng = np.random.default_rng(0)
    rows = [{"variant": v, "seed": s, "psnr": 12 + i + rng.normal(0, 0.1), "ssim": 0.6 + 0.01 * i + rng.normal(0, 0.001),
             "delta_e": 18.0 - i, "s_per_iter": 0.1 * (i + 1) + 0.01 * s, "params_G_A": 100, "params_trained": 300 + i}
            for i, v in enumerate(VARIANTS) for s in seeds]
    return pd.DataFrame(rows)


def test_assumptions_table_rows_and_schedule():
    t = cr.assumptions_table(0.5)
    assert list(t.columns) == ["what", "reconstruction", "source"] and len(t) == 17
    assert t.what.is_unique and (t.source.str.len() > 0).all()
    assert "last 50% of the iterations" in t.set_index("what").loc["schedule", "reconstruction"]
    assert "last 25%" in cr.assumptions_table(0.25).set_index("what").loc["schedule", "reconstruction"]
    with pytest.raises(ValueError, match="decay_fraction"):
        cr.assumptions_table(1.0)


def test_scaled_settings_reads_the_parameters():
    t = cr.scaled_settings(PARAMS, 7).set_index("setting")["this run"]
    assert t["generators G_A, G_B"] == "ResNet, 6 blocks, ngf 8"
    assert t["discriminators D_A, D_B (PatchGAN) width"] == "4" and t["training crop"] == "32 at native resolution"
    assert t["generator output"] == "x + G(x)" and t["contrastive weight λ_NCE"] == "2"
    assert t["cycle λ_A / λ_B, identity λ_idt"] == "1.0 / 10.0 / 0.0"  # λ_B not given: CycleGAN's 10
    assert t["test images"] == "7 SOTS pairs at native resolution"
    other = cr.scaled_settings({**PARAMS, "global_residual": False, "lambda_NCE": 0.5}, 1).set_index("setting")["this run"]
    assert other["generator output"] == "G(x)" and other["contrastive weight λ_NCE"] == "0.5"
    with pytest.raises(KeyError):
        cr.scaled_settings({k: v for k, v in PARAMS.items() if k != "ngf"}, 1)


def test_runs_table_costs_and_trained_parameters():
    tab = pd.DataFrame({"variant": ["a", "b"], "seed": [0, 0], "psnr": [1.0, 2.0], "ssim": [0.1, 0.2],
                        "delta_e": [3.0, 4.0], "n_test": [2, 2], "sec_per_step": [0.5, 0.7], "train_s": [10.0, 20.0],
                        "eval_s": [1.0, 2.5], "params": [5, 6], "run": ["ra", "rb"]})
    pairs = [(None, SimpleNamespace(summary={"params": {"G_A": 5, "G_B": 5, "H_A": 2, "H_A_ema": 2}})),
             (None, SimpleNamespace(summary={"params": {"G_A": 6, "N_A": 3, "H_B_ema": 9}}))]
    grid = type("G", (), {"table": lambda self: tab.copy(), "__iter__": lambda self: iter(pairs)})()
    runs = cr.runs_table(grid)
    assert list(runs.columns) == cr.RUN_COLUMNS
    assert runs.run_s.tolist() == [11.0, 22.5] and runs.params_trained.tolist() == [12, 9]
    assert runs.params_G_A.tolist() == [5, 6] and runs.s_per_iter.tolist() == [0.5, 0.7]


def test_plot_loss_panels_chance_lines_and_missing_columns():
    steps = np.arange(1, 6)
    hist = {v: pd.DataFrame({"step": steps, "loss_G_A": steps * 1.0, "loss_D_A": steps * 0.5, "loss_cycle_A": steps * 2.0,
                             "loss_NCE_X": steps * 0.1, "loss_NCE_Y": steps * 0.2, "stat_sim_pos": steps * 0.0 + 0.9,
                             "stat_sim_neg": steps * 0.0 + 0.1}) for v in VARIANTS}
    fig = cr.plot_loss_panels(hist, VARIANTS, SHORT, lam=0.5, num_patches=16, num_negatives=8)
    ax = fig.axes
    assert len(ax) == 3
    assert [ln.get_label() for ln in ax[0].lines] == ["G_A", "D_A", "cycle_A"]  # no loss_idt_A column: left out
    hlines = [ln for ln in ax[1].lines if ln.get_label().endswith("at chance")]
    assert [ln.get_ydata()[0] for ln in hlines] == pytest.approx([0.5 * math.log(16), 0.5 * math.log(9)])
    assert len(ax[2].lines) == 2 * (len(VARIANTS) - 1)  # positives and negatives of each contrastive row
    assert cr.variant_colors(VARIANTS)["cddgan"] == plt.rcParams["axes.prop_cycle"].by_key()["color"][2]
    plt.close(fig)


def test_seed_rows_match_an_independent_mean():
    runs = _runs()
    rows = {r["row"]: r for r in cr.seed_rows(runs, VARIANTS, LABEL)}
    assert list(rows) == [LABEL[v] for v in VARIANTS]
    g = runs[runs.variant == "cddgan"]
    r = rows["row cddgan"]
    assert r["PSNR"] == pytest.approx(g.psnr.mean()) and r["seeds"] == 3
    half = 4.302652729911275 * g.psnr.std(ddof=1) / math.sqrt(3)  # t_{0.975, 2}
    assert r["PSNR ±95%"] == pytest.approx(half, rel=1e-6)
    assert r["train sec/iter"] == pytest.approx(g.s_per_iter.mean()) and r["#params trained"] == 302
    assert r["source"] == "trained here"


def test_cut_row_and_ablation_table():
    assert cr.cut_row(SimpleNamespace(row=None)) is None
    row = {"seeds": 3, "PSNR": 14.0, "SSIM": 0.7, "#params G": 11, "extra": 1}
    same = cr.cut_row(SimpleNamespace(row=row, same_test_images=True))
    other = cr.cut_row(SimpleNamespace(row=row, same_test_images=False))
    assert same["source"] == "notebook 02" and "not comparable" in other["source"]
    assert same["#params G_A"] == 11 and same["PSNR"] == 14.0 and same["ΔE"] is None and "extra" not in same
    refs = {"hazy input": {"psnr": 11.0, "ssim": 0.6, "delta_e": 20.0}, "DCP": {"psnr": 13.0, "ssim": 0.7, "delta_e": 15.0}}
    t = cr.ablation_table([{"row": "a", "PSNR": 12.0}, same], refs)
    assert t.row.tolist() == ["a", "CUT (notebook 02, read)", "hazy input (reference)", "DCP (reference)"]
    assert t.source.tolist()[2:] == ["no dehazing", "dark channel prior (notebook 00)"]
    assert t.PSNR.tolist()[2:] == [11.0, 13.0] and (t.paper == "not available (tables unreachable)").all()


def test_plot_ablation_draws_means_and_seeds():
    runs = _runs()
    fig = cr.plot_ablation(runs, VARIANTS, SHORT, {"psnr": 11.0, "ssim": 0.5})
    a = fig.axes[0]
    assert [t.get_text() for t in a.get_xticklabels()] == [SHORT[v] for v in VARIANTS]
    means = [c.lines[0].get_ydata()[0] for c in a.containers]
    assert means == pytest.approx([runs[runs.variant == v].psnr.mean() for v in VARIANTS])
    assert a.lines[-1].get_ydata()[0] == 11.0  # the hazy input
    plt.close(fig)


def test_feature_eta2_rows_values_and_modes(monkeypatch):
    rng = np.random.default_rng(1)
    out = {}

    def fake_features(method, x, device):
        out[method.name] = (rng.normal(size=(len(x), 3)), rng.normal(size=(len(x), 3)))
        return out[method.name]

    class M:
        def __init__(self, name):
            self.name, self.training = name, False

        def train(self, mode=True):
            self.training = mode
            return self

    monkeypatch.setattr(features, "encoder_features", fake_features)
    trained = {v: M(v) for v in VARIANTS[:2]}
    scene, level = np.array(["1", "1", "2", "2"]), np.array([1, 3, 1, 3])
    df, feats = cr.feature_eta2(trained, lambda v: M(f"init {v}"), torch.zeros(4, 3, 8, 8), scene, level, SHORT, "cpu")
    assert len(df) == 2 * 2 * 2 and set(feats) == {(v, w) for v in VARIANTS[:2] for w in ("before training", "after training")}
    q, k = out["contrastive"]
    after = df[(df.row == "CONTRASTIVE") & (df.weights == "after training")].set_index("space")
    assert after.loc["dehazed query (G_B enc of G_A(x))", "η² scene"] == pytest.approx(features.eta2(q, scene))
    assert after.loc["hazy input (G_A enc of x)", "η² haze level"] == pytest.approx(features.eta2(k, level))
    assert np.array_equal(feats[("contrastive", "after training")], q)
    assert all(m.training for m in trained.values())


def _near_method(layers):
    class M:
        nce_layers, training = layers, True

        def train(self, mode=True):
            self.training = mode
            return self
    return M()


def test_nearest_negatives_picks_middle_haze_and_layer_12(monkeypatch):
    seen = {}

    def fake_near(m, pool, x_idx, li, device, noise_seed=0):
        seen.update(x_idx=x_idx, li=li, training=m.training)
        return {"negs": torch.eye(4), "best_cos": torch.tensor([0.9, 0.8, 0.7, 0.6]), "best": torch.tensor([0, 1, 0, 2]),
                "cand_src": [(0, 0, 0, 1, 1), (1, 0, 0, 1, 1), (4, 0, 0, 1, 1)], "hardness": {"h": 0.5}}

    monkeypatch.setattr(features, "nearest_real_patches", fake_near)
    scene = np.array(["1", "1", "1", "1", "2"])
    level = np.array([5, 1, 0, 3, 2])
    m = _near_method([0, 4, 8, 12, 16])
    near = cr.nearest_negatives(m, torch.zeros(5, 3, 4, 4), scene, level, ["1", "2"], "cpu")
    assert near.x_idx == 3 and seen == {"x_idx": 3, "li": 3, "training": False}  # levels 1, 3, 5: the middle is 3
    assert near.layer == 12 and m.training and list(near.hard.columns) == ["layer 12"]
    origin = near.origin.set_index("nearest real patch comes from")
    assert origin.loc["same scene, other haze", "negatives"] == 3 and origin.loc["other scene, hazy", "negatives"] == 1
    assert cr.nearest_negatives(_near_method([0, 4, 8]), torch.zeros(5, 3, 4, 4), scene, level, ["1"], "cpu").layer == 4
    with pytest.raises(ValueError, match="no hazy image"):
        cr.nearest_negatives(_near_method([0, 4]), torch.zeros(5, 3, 4, 4), scene, level, ["9"], "cpu")


def test_plot_negatives_panels():
    x = torch.rand(3, 3, 16, 16)
    near = SimpleNamespace(negs=torch.zeros(6, 2), best_cos=torch.tensor([0.1, 0.9, 0.5, 0.3, 0.7, 0.2]),
                           best=torch.zeros(6, dtype=torch.long), cand_src=[(1, 0, 0, 4, 4)], x_idx=0, layer=12,
                           pool_tags=[("x itself", "1", 3), ("same scene, clear", "1", 0), ("other", "2", 1)])
    fig = cr.plot_negatives(near, x, np.array(["1", "1", "2"]), np.array([3, 0, 1]), n_show=3)
    assert len(fig.axes) == 4
    assert [a.get_title().split("\n")[0] for a in fig.axes[1:]] == ["cos 0.90", "cos 0.50", "cos 0.20"]
    assert "same scene, clear" in fig.axes[1].get_title()
    plt.close(fig)


def _cut(per_seed=None, row=None, same=True, status="read"):
    paired = row is not None and same and per_seed is not None
    return SimpleNamespace(per_seed=per_seed, row=row, same_test_images=same, status=status, paired=paired)


def test_ablation_claims_paired_differences_and_cut_branches():
    runs = _runs()
    claims = cr.AblationClaims(runs, _cut(), "ngf 8, 4 iterations")
    claims.add("hard negatives help", "abstract", "CDD − C", "cddgan", "contrastive")
    d = (runs[runs.variant == "cddgan"].set_index("seed").psnr - runs[runs.variant == "contrastive"].set_index("seed").psnr)
    m, h = dstats.mean_ci(d)
    row = claims.frame().iloc[0]
    assert row["paired seeds"] == 3 and row["ours (difference, 95% CI)"].startswith(f"PSNR {m:+.2f} dB ± {h:.2f}; SSIM")
    assert row["at this size"].startswith(f"PSNR: {dstats.verdict(m, h)}; SSIM: ")
    long = claims.long.frame()
    assert long.metric.tolist() == ["PSNR", "SSIM"] and (long.setting == "ngf 8, 4 iterations").all()
    claims.add_cut("beats CUT", "abstract", "CDD − CUT", "cddgan", [0, 1, 2], "smoke")
    assert claims.frame().iloc[-1]["at this size"] == "undetermined (no CUT row)"
    other = cr.AblationClaims(runs, _cut(row={"PSNR": 1}, same=False), "s")
    other.add_cut("beats CUT", "abstract", "CDD − CUT", "cddgan", [0], "smoke")
    assert "other test images" in other.frame().iloc[0]["ours (difference, 95% CI)"]
    per_seed = pd.DataFrame({"seed": [0, 1, 2], "psnr": [10.0, 10.0, 10.0], "ssim": [0.5, 0.5, 0.5]}).set_index("seed")
    paired = cr.AblationClaims(runs, _cut(per_seed=per_seed, row={"PSNR": 10}), "s")
    paired.add_cut("beats CUT", "abstract", "CDD − CUT", "cddgan", [0, 1, 2], "smoke")
    assert paired.long.frame().estimate.iloc[0] == pytest.approx(runs[runs.variant == "cddgan"].psnr.mean() - 10.0)


def test_one_seed_has_no_interval():
    claims = cr.AblationClaims(_runs(seeds=(0,)), _cut(), "s")
    claims.add("c", "e", "d", "cddgan", "cyclegan")
    assert "(one seed: no interval)" in claims.frame().iloc[0]["ours (difference, 95% CI)"]


def test_quality_summary_best_row_and_floor():
    refs = {"hazy input": {"psnr": 11.0, "ssim": 0.60, "delta_e": 20.0}, "DCP": {"psnr": 13.0, "ssim": 0.70, "delta_e": 15.0}}
    ablation = pd.DataFrame([
        {"row": "A", "PSNR": 14.0, "SSIM": 0.65, "ΔE": 18.0, "source": "trained here"},  # meets the floor
        {"row": "B", "PSNR": 12.0, "SSIM": 0.65, "ΔE": 18.0, "source": "trained here"},  # < hazy + 2 dB
        {"row": "hazy input (reference)", "PSNR": 11.0, "SSIM": 0.6, "ΔE": 20.0, "source": "no dehazing"}])
    quality, floor = cr.quality_summary(ablation, refs)
    assert "the best row, A, 14.00 dB / SSIM 0.650" in quality and "DCP's 13.00 dB / 0.700" in quality
    assert "met by 1 of 2 rows" in floor and "A: met;" in floor
    _, why = floors.check("unpaired", {"psnr": 12.0, "ssim": 0.65, "delta_e": 18.0}, refs["hazy input"])
    assert f"B: not met ({why})" in floor
    with pytest.raises(ValueError, match="no row trained here"):
        cr.quality_summary(ablation[ablation.source != "trained here"], refs)
