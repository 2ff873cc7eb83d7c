# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#       jupytext_version: 1.19.6
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 00 · Haze, data and the dark channel prior
#
# Every method in this workbook learns to undo one physical process, so we start with it:
#
# 1. **The atmospheric scattering model** — how a hazy image $I$ is made from a clear scene $J$,
#    its depth $d$, the haze density $\beta$ and the airlight $A$; we synthesise haze on a real
#    RGB-D scene and recover the transmission from a real benchmark pair.
# 2. **The data** — the benchmark layouts the library reads, the scene-disjoint SOTS split every
#    later notebook trains and tests on, and real hazy photographs without ground truth.
# 3. **Two ways to score** — PSNR/SSIM as scikit-image computes them (what we report) and the
#    zero-padded Gaussian SSIM of the AECR-Net / FFA-Net code; they differ, and we measure by how much.
# 4. **The dark channel prior** (He, Sun, Tang, CVPR'09 / TPAMI'11) — the classical baseline and the
#    first row of the CR paper's Table 1, measured here on SOTS-indoor and NH-HAZE.
#
# **Sizes.** The parameters cell below holds the *smoke* defaults (a few images, seconds; what CI
# runs). `snakemake` runs the *small* size from `config/small.yaml` (all 50 SOTS test images of the
# split, all NH-HAZE pairs); its outputs are committed under `results/small/00_data_baselines/`.

# %% tags=["parameters"]
size = "smoke"  # smoke | small | full (informational; the values below are the smoke defaults)
seed = 0
threads = 1
out_dir = ""  # relative to dehazelab.paths.results_dir(); empty -> "<size>/00_data_baselines"
sots_test_scenes = [1430, 1431]  # inclusive range of SOTS scene ids used for testing
sots_levels = [1, 5, 9]  # SOTS haze settings (of 1..10 in the official release; 1,3,5,7,9 are on disk)
nh_max_pairs = 1  # NH-HAZE pairs to evaluate (the folder holds 51-53)
real_max_images = 4  # real hazy photographs to dehaze for the qualitative grid

# %%
import time
from dataclasses import asdict

import matplotlib.pyplot as plt
import numpy as np
from IPython.display import display

from dehazelab import baselines, io, plotting
from dehazelab.data import haze
from dehazelab.models.dcp import dark_channel, dehaze_dcp

# seed and threads, plot style, output folder, data root and versions (recorded in cfg -> config.json)
cfg, OUT, DATA = baselines.start(globals())
print(f"results -> {OUT}\nbenchmark data -> {DATA or 'none found: using synthetic haze on scikit-image images'}")

# %% [markdown]
# ## 1 · The atmospheric scattering model
#
# Koschmieder's model, as used by DCP, RESIDE and every network in this workbook: a pixel $x$ of
# the hazy image mixes the attenuated scene radiance with airlight scattered towards the camera,
#
# $$ I(x) = J(x)\,t(x) + A\,\bigl(1 - t(x)\bigr), \qquad t(x) = e^{-\beta\, d(x)} . $$
#
# $t\in(0,1]$ is the *transmission*: the fraction of scene light that reaches the camera through
# depth $d$ of a medium with scattering coefficient $\beta$. Far pixels ($t\to 0$) take the colour
# of the airlight $A$. Everything dehazing does is estimating $J$ given only $I$: with $t$ and $A$
# known it is one line, $J = (I - A)/t + A$.
#
# scikit-image ships the Middlebury 2014 *Motorcycle* scene with its true disparity, so we can
# make haze on a real scene with real depth (depth $\propto$ 1/disparity).

# %%
J_moto, depth_moto = haze.motorcycle_depth()
betas = [0.6, 1.2, 1.8]
A_moto = 0.85
hazy_moto = [haze.synthesize(J_moto, depth_moto, beta=b, A=A_moto) for b in betas]  # (I, t) for each beta
fig = baselines.scattering_figure(J_moto, depth_moto, hazy_moto, betas, A_moto)
plotting.savefig(fig, OUT / "fig_scattering_model.png")
plt.show()

# the model is exactly invertible when t and A are known
J_back = haze.invert(hazy_moto[1][0], hazy_moto[1][1], A_moto, t_min=1e-3)
print("max |J - invert(I)| =", float(np.abs(J_back - J_moto).max()))
assert np.abs(J_back - J_moto).max() < 1e-4

# %% [markdown]
# ## 2 · The data
#
# The library reads the official layouts of the benchmarks (`dehazelab.data.layouts`): SOTS
# (`hazy/<scene>_<level>.png` + `gt/<scene>.png`), NH-HAZE / Dense-Haze (`<id>_hazy.png` +
# `<id>_GT.png`), O-HAZE / I-HAZE, RESIDE ITS/OTS, and folders of hazy photos without ground truth.
# Which folder is found is set by one environment variable, `DEHAZELAB_DATA`
# (default `../shared/data` beside the repository).
#
# **An honest split.** SOTS-indoor synthesises ten haze levels on each NYU-Depth scene. If
# different levels of the *same* scene were in train and test, a network could memorise the scene;
# so every notebook splits by **scene**: 1400–1429 train, 1430–1439 test (`dehazelab.data.subsets`).
# Without benchmark data, the workbook falls back to synthetic haze on scikit-image's images and
# records that in every result.

# %%
# the scene-disjoint test split of SOTS-indoor (or the synthetic test scenes without benchmark data)
sots_items, cfg.data_used["sots"] = baselines.sots_test_items(DATA, cfg.sots_test_scenes, cfg.sots_levels, cfg.seed)
assert sots_items, "no test images"

# %% [markdown]
# ### Recovering the transmission from a real pair
# A SOTS pair gives $I$ and $J$ but not $t$ or $A$. Where $J$ and $A$ differ, the model gives
# $t = (I - A)/(J - A)$ per channel; `haze.transmission_from_pair` estimates $A$ and solves for $t$ by
# least squares over the three channels. Near pixels come out bright (clear), far ones dark.

# %%
item = sots_items[len(sots_items) // 2]
t_est, A_est = haze.transmission_from_pair(item["hazy"], item["clear"])
fig = plotting.image_grid(
    [[item["clear"], item["hazy"], t_est]],
    col_titles=[f"clear J ({item['name']})", "hazy I", "recovered t\nA = (" + ", ".join(f"{a:.3f}" for a in np.ravel(A_est)) + ")"],
    cmap="magma",
)
plotting.savefig(fig, OUT / "fig_transmission_recovery.png")
plt.show()
assert t_est.shape == item["hazy"].shape[:2] and np.isfinite(t_est).all()

# %% [markdown]
# ### Real hazy photographs
# No ground truth exists for these (Fattal's set, RTTS-style web photos, the DCP paper's scenes);
# they are for looking, and every later notebook shows its model on them.

# %%
real_files = baselines.real_photo_files(DATA, cfg.real_max_images)
cfg.data_used["real"] = [str(p.relative_to(DATA)) for p in real_files]
print(f"{len(real_files)} real hazy photos selected")

# %% [markdown]
# ## 3 · Two SSIM conventions
#
# We report PSNR and SSIM as **scikit-image** computes them on RGB in $[0,1]$
# (`data_range=1, channel_axis=-1`: a 7×7 uniform window over the valid region). The AECR-Net code,
# inherited from FFA-Net, uses an 11×11 Gaussian window ($\sigma=1.5$) with **zero padding**, so the
# image border (where the padding drags the local means towards 0) counts too. The two conventions
# give different numbers for the same images; the table below measures the gap on the hazy inputs
# of our test split (hazy vs clear; `baselines.convention_gap`), so tables from different papers are
# compared with care.

# %%
conv_summary = baselines.convention_gap(sots_items)  # mean over the images, in both conventions
io.write_table(conv_summary, OUT / "table_ssim_conventions")
display(conv_summary.round(4))

# %% [markdown]
# ## 4 · The dark channel prior
#
# He et al. observed that in haze-free outdoor patches at least one colour channel is nearly black:
# the **dark channel** $J^{dark}(x) = \min_{y\in\Omega(x)} \min_c J^c(y) \approx 0$. Haze adds
# airlight and lifts it, so the dark channel of $I$ measures haze thickness. With the patch
# $\Omega$ of 15×15 pixels:
#
# * **airlight** $A$: among the brightest 0.1 % of dark-channel pixels, the brightest input pixel;
# * **transmission** $\tilde t(x) = 1 - \omega \min_{\Omega}\min_c I^c/A^c$, with $\omega=0.95$ keeping a
#   little haze for depth perception;
# * **refinement**: the blocky $\tilde t$ is smoothed by a guided filter (TPAMI'11: radius 60,
#   $\epsilon=10^{-4}$, grey guide) that follows the image's edges;
# * **recovery**: $J = (I - A)/\max(t, t_0) + A$ with $t_0 = 0.1$.
#
# Our implementation (`dehazelab/models/dcp.py`) follows the paper's settings; none was tuned
# towards a published number.

# %%
t0 = time.perf_counter()
J_dcp, t_dcp, A_dcp = dehaze_dcp(item["hazy"])
print(f"DCP on one {item['hazy'].shape[1]}x{item['hazy'].shape[0]} image: {time.perf_counter() - t0:.2f} s")
fig = plotting.image_grid(
    [[item["hazy"], dark_channel(item["hazy"]), t_dcp, J_dcp, item["clear"]]],
    col_titles=["hazy I", "dark channel of I", "refined t", "DCP output J", "ground truth"],
    cmap="magma",
)
plotting.savefig(fig, OUT / "fig_dcp_steps.png")
plt.show()

# %%
# DCP with the paper's settings, and without the guided-filter refinement (an ablation), on every image
sets = {"SOTS-indoor" if cfg.data_used["sots"]["source"] == "sots-indoor" else "synthetic": sots_items}
nh_items, nh_used = baselines.nh_haze_items(DATA, cfg.nh_max_pairs)
if nh_used is not None:
    cfg.data_used["nh-haze"] = nh_used
    sets["NH-HAZE"] = nh_items
per_image = baselines.score_dcp(sets)
io.write_table(per_image, OUT / "per_image_dcp")
per_image.groupby(["set", "method"], sort=False)[["psnr_hazy", "psnr", "ssim", "psnr_ffa", "ssim_ffa"]].mean().round(4)

# %% [markdown]
# ### CR paper, Table 1 — the DCP row
# Our measurement beside the row the CR paper prints (**quoted**, not measured here). The paper
# tests on all 500 SOTS-indoor images and NH-HAZE 51–55; we use the scene-disjoint test split and
# the NH-HAZE pairs available, so the image sets differ. Means come with a 95 % bootstrap interval
# over images (DCP has no training seed; `baselines.dcp_table`, `baselines.bootstrap_half_width`).

# %%
# CR paper (Wu et al., CVPR'21) Table 1, DCP row — quoted from dehazelab/papers.json (docs/methods.md §1.8)
PAPER_DCP = baselines.quoted_dcp()
table1 = baselines.dcp_table(per_image, PAPER_DCP)  # means, ± bootstrap_half_width over images, paper beside
io.write_table(table1, OUT / "table1_dcp")
display(table1.round(4))

# %% [markdown]
# **Reading the gap.** Published DCP numbers on SOTS-indoor disagree with each other (the CR paper's,
# quoted in the table above, and FFA-Net's table, 16.62 / 0.8179), because implementations differ in the
# airlight rule, the refinement (soft matting vs. guided filter), the patch size relative to the
# image, and the SSIM convention (section 3 measures how much the last alone moves SSIM; the
# "no refinement" row above measures how much the refinement step alone moves the score). Indoor
# NYU scenes also break the prior's assumption of sky-lit outdoor patches: white walls and bright
# objects have a high dark channel, so DCP takes them for haze and over-darkens them. The numbers
# printed below are computed from this run, not written by hand.

# %%
print("\n".join(baselines.gap_lines(table1)))

# %% [markdown]
# ### DCP on real hazy photographs
# No score is possible here; look for the classic DCP artefacts: halos at depth edges (reduced
# by the guided filter), over-saturated far regions and bright objects mistaken for haze.

# %%
if not real_files:  # the figure is one of the pipeline's outputs: it says plainly why it holds no photographs
    print("no real hazy photos available (no benchmark data folder)")
fig = baselines.dcp_real_figure(real_files)
plotting.savefig(fig, OUT / "fig_dcp_real.png")
plt.show()

# %% [markdown]
# ## Results written by this notebook
# `metrics.json` (read by the final notebook), the tables as `.md` + `.csv`, the figures, and
# `config.json` with the resolved configuration and which data were used.

# %%
metrics = baselines.metrics(cfg, table1, PAPER_DCP, conv_summary)
io.write_json(OUT / "config.json", asdict(cfg))
io.write_json(OUT / "metrics.json", metrics)
print(sorted(p.name for p in OUT.iterdir()))

# the checks that make this notebook a test
sots_key = next(iter(metrics["dcp"]))
assert metrics["dcp"][sots_key]["n"] == len(sots_items)
assert metrics["dcp"][sots_key]["psnr"] > metrics["dcp"][sots_key]["psnr_hazy"], "DCP should improve on the hazy input"
