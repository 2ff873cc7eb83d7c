"""Notebook 03's tables and figures for the CDD-GAN reconstruction (d2l style: defined once here, called
from the notebook, whose cells keep the idea and a call or two).

* :func:`assumptions_table`, :func:`scaled_settings` — what the reconstruction assumes (with sources) and
  what the run scales down against the paper-like configuration;
* :func:`runs_table` — one row per run of the ablation grid, with its cost;
* :func:`plot_loss_panels`, :func:`plot_ablation` — the training losses and the per-seed scores;
* :func:`seed_rows`, :func:`cut_row`, :func:`ablation_table` — the ablation table, with notebook 02's CUT
  (read, never retrained) and the references;
* :func:`feature_eta2` — η² of scene and haze level in the encoders' spaces, before and after training;
* :func:`nearest_negatives`, :func:`plot_negatives` — the generated negatives and their nearest real patches;
* :class:`AblationClaims` — the abstract's claims judged on paired PSNR and SSIM differences;
* :func:`quality_summary` — the best row and the unpaired quality floor, as Markdown.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from types import SimpleNamespace
from typing import Any

import numpy as np
import pandas as pd
import torch

from . import features, floors, stats as dstats
from .cut_results import interval_text

__all__ = ["assumptions_table", "scaled_settings", "runs_table", "variant_colors", "plot_loss_panels",
           "seed_rows", "cut_row", "ablation_table", "plot_ablation", "feature_eta2", "nearest_negatives",
           "plot_negatives", "AblationClaims", "quality_summary"]

#: Columns of :func:`runs_table`, in order.
RUN_COLUMNS = ["variant", "seed", "psnr", "ssim", "delta_e", "n_test", "s_per_iter", "run_s", "params_G_A",
               "params_trained", "run"]


def assumptions_table(decay_fraction: float) -> pd.DataFrame:
    """Every assumption of the reconstruction as ``(what, reconstruction, source)`` rows; sources are the
    abstract, the overview figure, NEGCUT / DCD-GAN / CycleGAN code, or our choice (``docs/methods.md`` §3).
    ``decay_fraction`` is the share of the iterations in the linear lr decay (the schedule row)."""
    if not 0.0 <= decay_fraction < 1.0:
        raise ValueError(f"assumptions_table: decay_fraction must be in [0, 1), got {decay_fraction}")
    rows = [
        ("backbone", "two generators G_A: hazy→clear, G_B: clear→hazy, two PatchGAN discriminators, cycle L1 λ 10, identity 0.5, LSGAN, 50-image pools", "abstract (CycleGAN framework) + figure (two cycles) + CycleGAN code"),
        ("generator / discriminator architecture", "CUT's anti-aliased ResNet generator and PatchGAN", "NEGCUT code (= CUT's networks)"),
        ("contrastive loss", "PatchNCE across encoders: query = G_B's encoder on the dehazed image, positive = G_A's encoder on the hazy input at the same position; mirrored for clear→hazy", "figure (query F_enc(N_H)) + DCD-GAN code (DCLGAN-style NCE1/NCE2)"),
        ("projection heads", "one 2-layer MLP head per generator's encoder, L2-normalised, width 256", "DCD-GAN code (F1, F2) + NEGCUT/CUT code"),
        ("temperature, layers, patches", "τ 0.07; layers 0, 4, 8, 12, 16; 256 positions", "NEGCUT code (DCD-GAN uses layers 4, 8, 12, 16)"),
        ("contrastive weight", "λ_NCE 2 with ½(NCE_X + NCE_Y) (each direction weight 1)", "DCD-GAN code (DCLGAN's DCD_mode)"),
        ("negative generators", "one per direction: [mean of a momentum head's embeddings of the source ; z ~ N(0, I_64)] → MLP(nc+64 → nc → nc) → L2; only generated negatives in the loss", "abstract (negative generators, queue) + figure (G_neg, F_neg) + NEGCUT code (neg_gen_momentum, LearnedPatchNCELoss)"),
        ("'queue' of negatives", "the negatives generated in the iteration (256 per image and layer); no FIFO across iterations", "NEGCUT code; FIFO or an AdCo-style learnable bank (§3.6b) not implemented — our choice"),
        ("adversarial contrastive loss", "N minimises −(contrastive loss) + λ_MS·diversity, λ_MS 1, queries and keys detached", "abstract (maximising the adversarial contrastive loss) + NEGCUT code (compute_N_loss)"),
        ("diversity term", "−mean|n_{1:M/2} − n_{M/2+1:M}|, averaged over both directions", "NEGCUT code (which applies it to the last direction only) — averaging: our choice"),
        ("momentum heads", "EMA H′ ← 0.9 H′ + 0.1 H after each G step, starting as copies of H", "NEGCUT code (accumulate, decay 0.9); the copy at start: our choice (NEGCUT starts F′ from its own random init)"),
        ("update order", "D_A, D_B → N_A, N_B → G_A, G_B, then heads → EMA", "abstract (update alternately) + NEGCUT code (D → N → G, F)"),
        ("negatives in the G step", "re-generated with fresh noise and positions, treated as constants", "NEGCUT code re-generates; the detach: our choice (NEGCUT lets gradient reach G through the negatives' conditioning)"),
        ("clear exemplars", "the batch's unpaired clear image, embedded by the momentum head in the dehazed query's space, averaged and re-normalised, is an extra positive of every dehazed query (weight 1, same negatives)", "abstract (unpaired clear exemplars enhance task-relevant factors); form: our choice (the figure draws clear-side vectors as positives of F_enc(N_H))"),
        ("optimiser, init, batch", "Adam 2e-4 (0.5, 0.999) for G, D, heads and N; xavier 0.02; batch 1", "NEGCUT / CUT code (DCD-GAN: lr 1e-4, hinge loss)"),
        ("schedule", f"constant lr, then linear decay over the last {decay_fraction:.0%} of the iterations; crops throughout", "CycleGAN / NEGCUT code (shape); crops kept in the decay phase: our choice (as notebook 02)"),
        ("evaluation", "PSNR/SSIM (scikit-image, RGB, [0, 1]) on SOTS-indoor test scenes at native resolution", "our choice (the paper's protocol was not reachable)"),
    ]
    return pd.DataFrame(rows, columns=["what", "reconstruction", "source"])


def scaled_settings(p: Mapping[str, Any], n_test: int) -> pd.DataFrame:
    """``(setting, paper-like (assumed), this run)`` rows for notebook 03's parameters ``p`` (``n_blocks``,
    ``ngf``, ``ndf``, ``crop``, ``num_patches``, ``num_negatives``, ``netF_nc``, ``steps``,
    ``global_residual``, ``lambda_NCE``, ``cycle_weights``) scored on ``n_test`` SOTS pairs."""
    cw = p["cycle_weights"]
    cycle = " / ".join(str(cw.get(k, d)) for k, d in (("lambda_A", 10.0), ("lambda_B", 10.0), ("lambda_identity", 0.5)))
    return pd.DataFrame([
        ("generators G_A, G_B", "anti-aliased ResNet, 9 blocks, ngf 64 (CUT/NEGCUT)", f"ResNet, {p['n_blocks']} blocks, ngf {p['ngf']}"),
        ("discriminators D_A, D_B (PatchGAN) width", "64", str(p["ndf"])),
        ("training crop", "256 of a 286² resize (CUT/NEGCUT loader)", f"{p['crop']} at native resolution"),
        ("PatchNCE positions per layer", "256 (NEGCUT)", str(p["num_patches"])),
        ("generated negatives per image and layer", "256 (NEGCUT)", str(p["num_negatives"])),
        ("projection-head / negative width", "256 (NEGCUT)", str(p["netF_nc"])),
        ("iterations (batch 1)", "hundreds of thousands (NEGCUT: 400 epochs)", f"{p['steps']} for each row"),
        ("generator output", "G(x)", "x + G(x)" if p["global_residual"] else "G(x)"),
        ("contrastive weight λ_NCE", "2 (DCLGAN; assumed)", "2" if p["lambda_NCE"] is None else str(p["lambda_NCE"])),
        ("cycle λ_A / λ_B, identity λ_idt", "10 / 10 / 0.5 (CycleGAN)", cycle),
        ("test images", "SOTS (paper's protocol unknown to us)", f"{n_test} SOTS pairs at native resolution"),
    ], columns=["setting", "paper-like (assumed)", "this run"])


def runs_table(run_grid) -> pd.DataFrame:
    """One row per run of ``run_grid`` (a :class:`dehazelab.runs.GridResults`), in grid order, with the
    columns :data:`RUN_COLUMNS`: the test scores, ``s_per_iter`` (median seconds per step), ``run_s`` (training
    plus scoring), ``params_G_A`` (the hazy → clear generator) and ``params_trained`` (every network of the
    method except the momentum (``*_ema``) copies, which are not trained by a gradient)."""
    tab = run_grid.table()
    runs = tab.rename(columns={"sec_per_step": "s_per_iter", "params": "params_G_A"})
    runs["run_s"] = tab.train_s + tab.eval_s
    runs["params_trained"] = [sum(n for k, n in r.summary["params"].items() if not k.endswith("_ema")) for _, r in run_grid]
    return runs[RUN_COLUMNS]


def variant_colors(variants: Sequence[str]) -> dict[str, str]:
    """Each variant's colour: matplotlib's colour cycle, in the order of ``variants``."""
    import matplotlib.pyplot as plt

    return dict(zip(variants, plt.rcParams["axes.prop_cycle"].by_key()["color"]))


def plot_loss_panels(histories: Mapping[str, pd.DataFrame], variants: Sequence[str], short: Mapping[str, str],
                     lam: float, num_patches: int, num_negatives: int):
    """Three panels of one seed's training (``histories[variant]`` = its ``history.csv``): the backbone terms
    of the ``"cddgan"`` row (log scale), the λ-weighted contrastive terms of every contrastive row (solid X,
    dashed Y) with PatchNCE at chance λ·log(N+1) for in-image (N + 1 = ``num_patches``) and generated
    negatives, and the hardness — mean cosine of the queries to their positive and negatives."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(1, 3, figsize=(14, 3.8))
    colors = variant_colors(variants)
    h = histories["cddgan"]
    for c in [c for c in ("loss_G_A", "loss_D_A", "loss_cycle_A", "loss_idt_A") if c in h]:  # no idt term at weight 0
        ax[0].plot(h.step, h[c], label=c.removeprefix("loss_"))
    ax[0].set(title="CDD-GAN backbone terms", xlabel="iteration", yscale="log")
    for v in variants[1:]:
        hv = histories[v]
        ax[1].plot(hv.step, hv.loss_NCE_X, color=colors[v], label=f"{short[v]} NCE_X")
        ax[1].plot(hv.step, hv.loss_NCE_Y, color=colors[v], ls="--", lw=1)
        ax[2].plot(hv.step, hv.stat_sim_pos, color=colors[v], label=f"{short[v]}: cos(q, positive)")
        ax[2].plot(hv.step, hv.stat_sim_neg, color=colors[v], ls="--", label=f"{short[v]}: cos(q, negatives)")
    ax[1].axhline(lam * math.log(num_patches), color="gray", ls=":", lw=1, label="in-image NCE at chance")
    ax[1].axhline(lam * math.log(num_negatives + 1), color="black", ls=":", lw=1, label="generated NCE at chance")
    ax[1].set(title="contrastive terms (solid X, dashed Y)", xlabel="iteration")
    ax[2].set(title="hardness (deepest layer, X)", xlabel="iteration", ylabel="mean cosine")
    for a in ax:
        a.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.2), ncol=2, frameon=False)
    return fig


def seed_rows(runs: pd.DataFrame, variants: Sequence[str], label: Mapping[str, str]) -> list[dict[str, Any]]:
    """The ablation's trained rows, in the order of ``variants``: mean ± 95 % half-width over seeds of PSNR,
    SSIM and ΔE (:func:`dehazelab.stats.seed_summary`), mean ``train sec/iter``, ``#params G_A`` and
    ``#params trained``, the row named by ``label`` and ``source`` "trained here"."""
    summary = dstats.seed_summary(runs, "variant", variants, {"psnr": "PSNR", "ssim": "SSIM", "delta_e": "ΔE"})
    sizes = runs.groupby("variant").agg(**{"train sec/iter": ("s_per_iter", "mean"), "#params G_A": ("params_G_A", "first"),
                                           "#params trained": ("params_trained", "first")})
    summary = summary.join(sizes, on="variant").assign(variant=summary.variant.map(label), source="trained here")
    return summary.rename(columns={"variant": "row"}).to_dict("records")


def cut_row(cut) -> dict[str, Any] | None:
    """Notebook 02's CUT row for the ablation table from ``cut`` (a :class:`dehazelab.references.Reference`),
    flagged "not comparable" when it was scored on other test images; ``None`` when nothing was read."""
    if cut.row is None:
        return None
    return {"row": "CUT (notebook 02, read)", "source": "notebook 02" + ("" if cut.same_test_images else
            " (other test images: not comparable)"), "#params G_A": cut.row.get("#params G"),
            **{k: cut.row.get(k) for k in ("seeds", "PSNR", "PSNR ±95%", "SSIM", "SSIM ±95%", "ΔE", "ΔE ±95%",
                                           "train sec/iter")}}


def ablation_table(rows: Sequence[Mapping[str, Any]], refs: Mapping[str, Mapping[str, float]]) -> pd.DataFrame:
    """``rows`` followed by one row per reference of ``refs`` (name → ``psnr``, ``ssim``, ``delta_e``; the
    "hazy input" is "no dehazing", any other the dark channel prior), with a ``paper`` column saying that
    no paper number is available (CDD-GAN's tables were not reachable)."""
    table = [dict(r) for r in rows]
    for k, v in refs.items():
        table.append({"row": f"{k} (reference)", "seeds": 0, "PSNR": v["psnr"], "SSIM": v["ssim"], "ΔE": v["delta_e"],
                      "source": "no dehazing" if k == "hazy input" else "dark channel prior (notebook 00)"})
    ablation = pd.DataFrame(table)
    ablation["paper"] = "not available (tables unreachable)"
    return ablation


def plot_ablation(runs: pd.DataFrame, variants: Sequence[str], short: Mapping[str, str], hazy: Mapping[str, float]):
    """PSNR and SSIM of each variant: its mean over seeds with the 95 % interval, every seed as a dot, and
    the ``hazy`` input's score as a dotted line."""
    import matplotlib.pyplot as plt

    colors = variant_colors(variants)
    fig, ax = plt.subplots(1, 2, figsize=(11, 3.6))
    for a, col in zip(ax, ("psnr", "ssim")):
        for i, v in enumerate(variants):
            vals = runs[runs.variant == v][col].to_numpy()
            m_, hw = dstats.mean_ci(vals)
            a.errorbar([i], [m_], yerr=[[0 if np.isnan(hw) else hw]], fmt="o", color=colors[v], capsize=4)
            a.scatter(np.full(len(vals), i) + 0.08, vals, s=10, color=colors[v], alpha=0.5)
        a.axhline(hazy[col], color="gray", ls=":", label="hazy input")
        a.set_xticks(range(len(variants)), [short[v] for v in variants])
        a.set(ylabel=col.upper(), title=f"{col.upper()} (mean ± 95% CI; dots = seeds)")
        a.legend(fontsize=8)
    return fig


def feature_eta2(trained: Mapping[str, Any], initial, x: torch.Tensor, scene: np.ndarray, level: np.ndarray,
                 short: Mapping[str, str], device) -> tuple[pd.DataFrame, dict]:
    """``(table, query features)``: for each variant of ``trained`` (name → trained method), its initial
    weights ``initial(variant)`` ("before training") and the trained ones ("after training") encode ``x``
    (:func:`dehazelab.features.encoder_features`); the table has η² of ``scene`` and of haze ``level`` in the
    dehazed-query and hazy-input spaces; the dict maps ``(variant, weights)`` to the query features. The
    trained methods are left in training mode."""
    rows, feats = [], {}
    for v, method in trained.items():
        init = initial(v)
        for when, m_ in (("before training", init), ("after training", method)):
            q, k = features.encoder_features(m_, x, device)
            feats[(v, when)] = q
            for space, f in (("dehazed query (G_B enc of G_A(x))", q), ("hazy input (G_A enc of x)", k)):
                rows.append({"row": short[v], "weights": when, "space": space, "η² scene": features.eta2(f, scene),
                             "η² haze level": features.eta2(f, level)})
        method.train()
    return pd.DataFrame(rows), feats


def nearest_negatives(m, x: torch.Tensor, scene: np.ndarray, level: np.ndarray, scenes: Sequence[Any], device,
                      noise_seed: int = 0) -> SimpleNamespace:
    """The negatives method ``m``'s generator makes for the middle-haze image of ``scenes[0]`` in ``x``, at the
    layer 12 tap (else the second deepest), and their nearest real patches in the pool ``x``
    (:func:`dehazelab.features.nearest_real_patches`). Returns ``layer``, ``li``, ``x_idx``, ``pool_tags``,
    ``negs``, ``best_cos``, ``best``, ``cand_src``, ``hardness``, the ``origin`` table and the hardness
    table ``hard``. ``m`` is evaluated in eval mode and left in training mode."""
    m = m.train(False)
    li = m.nce_layers.index(12) if 12 in m.nce_layers else len(m.nce_layers) - 2
    hazy_idx = [i for i in range(len(x)) if scene[i] == scenes[0] and level[i] > 0]
    if not hazy_idx:
        raise ValueError(f"nearest_negatives: no hazy image of scene {scenes[0]!r} in the pool")
    x_idx = sorted(hazy_idx, key=lambda i: level[i])[len(hazy_idx) // 2]  # the middle haze level
    pool_tags = features.pool_kinds(scene, level, x_idx)  # (kind, scene, level) of each pool image
    near = features.nearest_real_patches(m, x, x_idx, li, device, noise_seed=noise_seed)
    m.train()
    origin = features.nearest_origin_table(near["best"], near["cand_src"], [t[0] for t in pool_tags])
    hard = pd.DataFrame([near["hardness"]]).T.rename(columns={0: f"layer {m.nce_layers[li]}"})
    return SimpleNamespace(layer=m.nce_layers[li], li=li, x_idx=x_idx, pool_tags=pool_tags, origin=origin, hard=hard,
                           **{k: near[k] for k in ("negs", "best_cos", "best", "cand_src", "hardness")})


def plot_negatives(near: SimpleNamespace, x: torch.Tensor, scene: np.ndarray, level: np.ndarray, n_show: int = 8,
                   rf: int = 35):
    """The image ``x[near.x_idx]`` and a spread of ``n_show`` negatives of :func:`nearest_negatives` (from the
    closest match down), each as the ``rf``-pixel neighbourhood of its nearest real patch, titled with the
    cosine and where the patch comes from."""
    import matplotlib.pyplot as plt

    from . import plotting

    n_show = min(n_show, len(near.negs))
    order = torch.argsort(near.best_cos, descending=True)[:: max(1, len(near.negs) // n_show)][:n_show]
    fig, ax = plt.subplots(1, n_show + 1, figsize=(2.0 * (n_show + 1), 2.6))
    ax[0].imshow(plotting.to_display(x[near.x_idx]))
    ax[0].set_title(f"x: scene {scene[near.x_idx]}\nlevel {level[near.x_idx]}", fontsize=8)
    for a, nidx in zip(ax[1:], order.tolist()):
        src = near.cand_src[int(near.best[nidx])]
        a.imshow(plotting.to_display(features.receptive_crop(x[src[0]], src, rf=rf)))
        kind, _, lv = near.pool_tags[src[0]]
        a.set_title(f"cos {float(near.best_cos[nidx]):.2f}\n{kind}\n(level {lv})", fontsize=7)
    for a in ax:
        a.axis("off")
    fig.suptitle(f"generated negatives of N_A (layer {near.layer}): their nearest real patches", fontsize=10, y=1.08)
    return fig


class AblationClaims:
    """The abstract's claims as paired differences between ablation rows (and notebook 02's CUT, variant
    ``"cut"``, when its per-seed scores are on the same test images): one short row per claim (``rows``,
    :attr:`columns`) and one long row per claim and metric (``long``, read by notebook 90). A claim holds
    only when the paired 95 % interval excludes 0 in the claimed direction (:func:`dehazelab.stats.verdict`)."""

    columns = ["claim", "paper's evidence", "difference", "paired seeds", "ours (difference, 95% CI)", "at this size"]

    def __init__(self, runs: pd.DataFrame, cut, setting: str, paper: str = "CDD-GAN (ECCV'22, reconstruction)",
                 notebook: str = "03_cddgan"):
        self.cut, self.setting = cut, setting
        self.runs = pd.concat([runs, cut.per_seed.reset_index().assign(variant="cut")] if cut.paired else [runs])
        self.long = dstats.ClaimsTable(paper=paper, notebook=notebook)
        self.rows: list[tuple] = []

    def paired(self, a: str, b: str, col: str) -> tuple[float, float, int]:
        """Mean of col[a] − col[b] over the seeds both have, its 95 % t half-width, and the number of seeds."""
        return dstats.paired_difference(self.runs, "variant", a, b, col)

    def add(self, claim: str, evidence: str, difference: str, a: str, b: str) -> None:
        """Judge ``a`` − ``b`` on PSNR and on SSIM (paired by seed) and add the claim to both tables."""
        (d, h, n), (ds, hs, _) = self.paired(a, b, "psnr"), self.paired(a, b, "ssim")
        self.long.add(claim, evidence, difference, "PSNR", "dB", d, h, n, setting=self.setting)
        self.long.add(claim, evidence, difference, "SSIM", "", ds, hs, n, setting=self.setting)
        self.rows.append((claim, evidence, difference, n,
                          f"PSNR {d:+.2f} dB {interval_text(h, '.2f')}; SSIM {ds:+.4f} {interval_text(hs, '.4f')}",
                          f"PSNR: {dstats.verdict(d, h)}; SSIM: {dstats.verdict(ds, hs)}"))

    def add_cut(self, claim: str, evidence: str, difference: str, a: str, seeds: Sequence[int], size: str) -> None:
        """``a`` against notebook 02's CUT: judged when paired and sharing a seed, else a short row saying why
        not (other test images, no per-seed results, no common seeds, or no CUT row at ``size``)."""
        cut = self.cut
        if cut.paired and set(cut.per_seed.index) & set(seeds):
            self.add(claim, evidence, difference, a, "cut")
        elif cut.row is not None:
            why = ("other test images" if not cut.same_test_images else "no per-seed results (runs_per_seed.csv)"
                   if cut.per_seed is None else "no common seeds")
            self.rows.append((claim, evidence, difference, 0, f"notebook 02's CUT is not paired with ours ({why})",
                              "undetermined"))
        else:
            self.rows.append((claim, evidence, difference, 0, f"notebook 02's results at size {size!r}: {cut.status}",
                              "undetermined (no CUT row)"))

    def frame(self) -> pd.DataFrame:
        """The short table, one row per claim."""
        return pd.DataFrame(self.rows, columns=self.columns)


def quality_summary(ablation: pd.DataFrame, refs: Mapping[str, Mapping[str, float]]) -> tuple[str, str]:
    """Two Markdown bullets: the best trained row (by PSNR) against the hazy input and DCP of ``refs``, and which trained
    rows meet the unpaired quality floor (:func:`dehazelab.floors.check`: hazy + 2 dB, SSIM above the hazy
    input's, ΔE at most its)."""
    trained = ablation[ablation.source == "trained here"]
    if trained.empty:
        raise ValueError("quality_summary: the ablation table has no row trained here")
    best, hz, dcp = trained.sort_values("PSNR").iloc[-1], refs["hazy input"], refs["DCP"]
    quality = (f"* **Quality**: the best row, {best.row}, {best.PSNR:.2f} dB / SSIM {best.SSIM:.3f} against the "
               f"hazy input's {hz['psnr']:.2f} dB / {hz['ssim']:.3f} and DCP's {dcp['psnr']:.2f} dB / {dcp['ssim']:.3f}.")
    rows = [(r["row"], *floors.check("unpaired", {"psnr": r["PSNR"], "ssim": r["SSIM"], "delta_e": r["ΔE"]}, hz))
            for r in trained.to_dict("records")]
    floor = (f"* **Quality floor** (hazy input + 2 dB, SSIM above the hazy input's, ΔE at most its): met by "
             f"{sum(m == 'met' for _, m, _ in rows)} of {len(rows)} rows — "
             + "; ".join(f"{row}: {m}" + (f" ({why})" if why else "") for row, m, why in rows) + ".")
    return quality, floor
