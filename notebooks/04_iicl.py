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
# # 04 · IICL: a progressive dehazing framework with inter- and intra-image contrast (Xu et al., ICASSP 2023) — a reconstruction
#
# > **This notebook is a RECONSTRUCTION from the paper's abstract alone, not a reproduction.**
# > No code has been released and only the abstract is reachable (no paper text, no figures, no
# > tables, no numbers: methods.md §4.1). Everything the abstract does not say — the PRM's design,
# > how the brightest / darkest patches are chosen and how large they are, the losses and their
# > weights, the training schedule, the data — is *our assumption*. Every assumption is listed in
# > the table below with its source. No number in this notebook comes from the paper: the paper's
# > numbers are not available, so there is nothing to put beside ours.
#
# What the abstract says: contrastive dehazing methods use haze-free positives, often ignore
# negatives, and "even if negatives are employed, the connection between patches **within an
# image** is ignored". IICL contrasts "the **brightest and darkest patches within the same
# image**" (intra-image contrast) besides the usual restored / clear / hazy contrast (inter-image),
# inside a **progressive** framework: a light **Pre-restore Module (PRM)** followed by an
# **Alternative Restored Module (ARM)** — an existing dehazing network — "to facilitate end-to-end
# training"; the framework "benefits various dehazing models".
#
# This notebook
# 1. lists every assumption of our reconstruction, tagged *abstract* / *methods.md §4.3
#    recommendation* / *our choice*;
# 2. shows why an image's brightest and darkest regions make useful contrast pairs: the patches the
#    selection picks on SOTS test images and on real hazy photographs, with their dark-channel
#    values, and what they contain (haze residue against the ground truth);
# 3. plugs the framework into **two backbones** — AECR-Net (notebook 01, small width) and AOD-Net —
#    compares, over several seeds, *backbone alone / + PRM / + IICL / + PRM + IICL* trained with the
#    shared paired trainer on the SOTS-indoor train scenes 1400–1429 and tested on the unseen scenes
#    1430–1439 — runs read from `results/runs/<size>/` (trained by the pipeline, or here when missing);
# 4. reports mean ± 95 % CI PSNR/SSIM, a qualitative grid, and a claims table for "the framework
#    benefits various dehazing models", per backbone.
#
# **Caveat first: the VGG-19 of the contrastive terms.** Both IICL terms embed images (inter) and
# patches (intra) with an ImageNet VGG-19. Without internet (as on the machine that made the committed
# results) a *seeded random* VGG-19 stands in: the terms then contrast random-feature distances, not
# the paper's. The sentence under the setup cell says which one this run used, and every table names it.
#
# **What is scaled down, and what differs.** IICL's own training recipe is unknown, and a paper-scale
# run of this reconstruction (`config/full.yaml`) needs a GPU: on two CPU cores one AECR-Net step at
# width 64 and 240² takes about a minute (notebook 01, §6). At the small size every variant
# **fine-tunes** its backbone: AECR-Net (width 16, output $x + \mathrm{net}(x)$) and AOD-Net are first
# trained with L1 alone — the very runs of notebook 01, shared, trained once — and each variant
# (backbone alone, + PRM, + IICL, + PRM + IICL) then trains the same number of steps from those
# weights at the paper-of-AECR-Net learning rate 2e-4. The VGG-19 terms cost 5–8× an L1 step here, so
# training them from scratch for as long as the backbones would not fit the budget; the fine-tune keeps
# the comparison fair (equal steps from equal weights, paired by seed). Our numbers measure what the PRM
# and the contrastive terms add to a trained small network in a short fine-tune — the direction of each
# effect, not a fully trained IICL model.

# %% tags=["parameters"]
size = "smoke"  # smoke | small | full
seeds = [0]  # one training run per seed, backbone and variant
threads = 1
out_dir = ""  # relative to dehazelab.paths.results_dir(); empty -> "<size>/04_iicl"
backbones = ["aecrnet", "aodnet"]  # ARM backbones (dehazelab.models.iicl.BACKBONES)
steps = 6  # steps of the backbone trained with L1 from scratch (= notebook 01's run with the same parameters)
aod_steps = 6  # AOD-Net's steps (= notebook 01's)
aod_lr = 1e-3  # AOD-Net's learning rate (= notebook 01's)
finetune_steps = 2  # steps of every variant, fine-tuned from its backbone's L1 run (the same for every variant)
finetune_lr = 2e-4  # fine-tuning learning rate, cosine decay
warmup_steps = 2  # PRM-only warm-up steps before the joint stage (variants with a PRM)
global_residual = True  # AECR-Net output x + net(x) (= notebook 01's)
eval_every = 0  # evaluate on the test split every this many steps (0: at the end only)
batch_size = 2
crop = 32  # training crop (AECR-Net needs a multiple of 4)
ngf = 8  # AECR-Net width (paper of AECR-Net: 64)
prm_width = 8  # PRM trunk width (10,452 parameters at 16)
arm_input = "concat"  # concat: the ARM sees [I, J0]; prestored: J0 only
lr = 1e-3  # Adam, cosine decay (IICL's lr is unknown; AECR-Net's paper uses 2e-4)
lambda_prm = 1.0  # weight of L1(J0, J)
beta_inter = 0.1  # weight of the inter-image CR term
beta_intra = 0.1  # weight of the intra-image bright/dark InfoNCE term
tau = 0.07  # InfoNCE temperature of the intra term
intra_patch = 8  # side of the bright / dark patches in the training crops
intra_k = 2  # bright patches and dark patches per image, k of each (the crop grid must hold 2k cells)
intra_by = "dark_channel"  # dark_channel | luminance: how brightness is measured on the hazy input
intra_layer = "relu3_1"  # VGG-19 layer that embeds the patches
max_test_images = 2  # test images scored per run (0: all of the test split)
test_levels = [1, 5, 9]  # SOTS haze levels in the test split
vgg_weights = "auto"  # auto: ImageNet VGG-19 if on disk, else a seeded random VGG-19 (recorded)
demo_sots_images = 2  # SOTS test images in the patch pictures
demo_real_images = 1  # real hazy photos in the patch pictures (skipped when absent)
demo_patch = 48  # patch side in the pictures (full-resolution images)
demo_k = 3  # bright / dark patches shown per image

# %%
import shutil

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from IPython.display import Markdown, display

from dehazelab import (assemble, curves as dcurves, iicl_figures, iicl_results, iicl_setup, io, patches as P, paths,
                       plotting, qualitative, unpaired_runs, workbook)
from dehazelab.data.datasets import load_benchmark
from dehazelab.models import iicl as iicl_models
from dehazelab.models.dcp import dehaze_dcp
from dehazelab.runs.grids import IICL_MODEL
from dehazelab.runs.grids import IICL_VARIANTS as VARIANTS

# %% [markdown]
# Set-up, shared by every paper notebook (`dehazelab.workbook.start`), and the SOTS splits.

# %%
# seeds and threads, plot style, output folder, device; the grid of runs (dehazelab/runs/grids.py) and
# the test images they are scored on (the haze levels test_levels, then max_test_images spread evenly
# over the (scene, level)-sorted list, so every scene and every level appears)
nb = workbook.start("04_iicl", globals())
OUT, device, seeds, test_pairs, test_set = nb.out, nb.device, nb.seeds, nb.test_pairs, nb.test_set
assert crop % 4 == 0 and ngf % 2 == 0 and steps >= 1 and warmup_steps >= 0
assert backbones and set(backbones) <= set(iicl_models.BACKBONES), backbones
assert arm_input in iicl_models.ARM_INPUTS and intra_by in ("dark_channel", "luminance")
assert 2 * intra_k <= (crop // intra_patch) ** 2, "2k bright+dark patches must fit the crop's grid"
train_bm = load_benchmark("sots", "train", seed=0)
test_bm = load_benchmark("sots", "test", seed=0)
print(f"train: {train_bm.source}, {len(train_bm.pairs)} pairs; test: {len(test_pairs)} pairs; device {device}")

# %% [markdown]
# The settings of this run beside the paper's (unknown) and those of a paper-scale run of this
# reconstruction (`config/full.yaml`).

# %%
FULL = assemble.configured("full").get("04_iicl") or {}  # this notebook's section of config/full.yaml
setup_df = iicl_setup.settings_table(nb.params, FULL, train_bm.source, len(train_bm.pairs), len(test_pairs))
display(Markdown(io.format_table(setup_df)))

# %% [markdown]
# ## 1 · What is assumed
#
# The library modules that implement the reconstruction tag each design decision in their
# docstrings; the table below is read from those docstrings (so it cannot drift from the code),
# followed by the choices this notebook makes. *Source*: **abstract** = stated in the abstract;
# **methods.md §4.3 rec. n** = recommendation n of the project's method spec for a transparent
# reconstruction; **our choice** = neither. (`dehazelab.iicl_setup.assumptions_table` reads the tagged
# bullets of the modules' docstrings, then adds this notebook's own choices, which name its parameters.)

# %%
assumptions_df = iicl_setup.assumptions_table(nb.params)  # the modules' tagged bullets, then this notebook's own
print(assumptions_df.source.value_counts().to_string())
display(Markdown(io.format_table(assumptions_df.replace(r"\|", r"\\|", regex=True))))
# written to assumptions.csv in §3, with the VGG-19 the runs used

# %% [markdown]
# ## 2 · Why the brightest and the darkest patches of an image
#
# The atmospheric scattering model writes a hazy image as $I = J\,t + A\,(1-t)$: each pixel is the
# scene $J$ attenuated by the transmission $t \in (0, 1]$ plus airlight $A$ in proportion
# $1 - t$. The **dark channel** of a patch, $\min_{\text{window}} \min_c I_c$, is close to 0 for most
# haze-free patches (some colour channel is dark: shadows, saturated colours — the dark channel
# prior of notebook 00); haze adds $A(1-t)$ to every channel, so the dark channel of a hazy patch
# grows roughly like $A(1 - t)$. Ranking the patches of one image by their dark channel therefore
# ranks them by **haze density**:
#
# * the **brightest** patches (highest dark channel) are where the haze is densest — far away,
#   airlight-dominated — the hardest places to restore, and also where the prior fails: white
#   walls, sky and other bright objects look like dense haze;
# * the **darkest** patches are nearly haze-free: the network should change them little.
#
# Contrasting the two *within one image* holds everything but the haze fixed — the same camera,
# illumination and airlight — so the difference between the groups is the haze itself. In our
# intra term (§1, `dehazelab.losses.iicl`) the output patch at each selected place is pulled to the
# clear patch there and pushed away from the hazy patch there *and* from the hazy patches of the
# opposite group: a dense-haze output must not look like the hazy input at either end of that
# image's density range. Below: the patches the selection picks (red = brightest, blue = darkest,
# labelled with their mean dark channel) on SOTS test images — with the ground truth, so the haze
# each patch contains can be measured — and on real hazy photographs, which have none.

# %%
# n SOTS test pairs spread over the test split, then real hazy photographs (no ground truth)
demo, n_real = P.demo_images(test_set, demo_sots_images, demo_real_images)
if demo_real_images and not n_real:
    print("no real hazy photographs under", paths.data_root(), "-> real-photo panels skipped")

# %% [markdown]
# The selection on each picture; the table lists every patch drawn, with the haze it holds where the
# ground truth is known.

# %%
fig, patches_df = P.draw_patches(demo, patch=demo_patch, k=demo_k)
plotting.savefig(fig, OUT / "fig_bright_dark_patches.png")
plt.show()
patches_df["vgg_used"] = P.NO_VGG
io.write_table(patches_df, OUT / "patches_demo")
display(patches_df.drop(columns="vgg_used").round(3).head(12))  # the full table: patches_demo.csv

# %% [markdown]
# The same measurement over **every** test pair (not just the pictures): for each image, the
# `demo_k` brightest and darkest patches by dark channel of the hazy input, and how much haze they
# hold — mean $|I - J|$ and the PSNR of the hazy patch against the clear one (high PSNR = little
# haze). The dark channel of the *clear* patch tells whether a "bright" patch is bright because of
# haze (clear dark channel low) or because the scene itself is bright (clear dark channel high:
# the prior's failure case).

# %%
stats_df = P.patch_statistics(test_set, patch=demo_patch, k=demo_k)  # one row per selected patch
patch_summary = P.summarize_patches(stats_df, n_images=len(test_set))
io.write_table(patch_summary, OUT / "patches_summary")
display(patch_summary.drop(columns="vgg_used").round(3))
fig = P.plot_patch_statistics(stats_df)
plotting.savefig(fig, OUT / "fig_patch_statistics.png")
plt.show()

# %% [markdown]
# What the two groups hold, in numbers:

# %%
d_b, d_d = (patch_summary.set_index("group").loc[g, "haze residue mean|I-J|"] for g in ("bright", "dark"))
br = stats_df[stats_df.group == "bright"]
n_scene_bright = int((br["dark channel (clear)"] > 0.5).sum())
display(Markdown(
    f"Measured here, on {len(test_set)} test images: the brightest patches hold a mean haze residue "
    f"$|I-J|$ of **{d_b:.3f}**, the darkest **{d_d:.3f}**; **{n_scene_bright} of {len(br)}** bright patches "
    f"are bright in the *clear* image too (its dark channel > 0.5) — white walls, ceilings, lamps, which the "
    f"dark channel cannot tell from dense haze. There haze changes the pixels little (haze moves a pixel "
    f"towards $A$, and a white wall is already close to $A$), so the residue of the bright group understates "
    f"its haze density. Either way the two groups sit at the two ends of the image's range — airlight-like "
    f"and dark, nearly haze-free content — which is what makes them informative, mutually distinct negatives."))

# %% [markdown]
# ## 3 · The framework and its four variants
#
# $$\hat J = \mathrm{ARM}\bigl(\mathrm{adapter}[I,\ \mathrm{clamp}(J_0)]\bigr),\qquad
#   J_0 = \frac{I - A\,(1 - t)}{t},\quad (t, A) = \mathrm{PRM}(I)$$
#
# $$\mathcal L = \lambda_{prm}\,\lVert J_0 - J\rVert_1 + \lVert \hat J - J\rVert_1
#   + \beta_{inter}\,\mathrm{CR}\bigl(\hat J;\ J;\ \{I, J_0\}\bigr)
#   + \beta_{intra}\,\mathrm{InfoNCE}_{\tau}\bigl(\text{bright/dark patches}\bigr)$$
#
# | variant | network | loss | training |
# |---|---|---|---|
# | backbone | the ARM backbone alone | L1 | joint steps |
# | + PRM | PRM → ARM | L1 + λ_prm L1(J₀, J) | PRM warm-up, then joint |
# | + IICL | the backbone alone | L1 + β_inter CR (negative: I) + β_intra intra | joint steps |
# | + PRM + IICL | PRM → ARM | the full objective above (CR negatives: I and J₀) | PRM warm-up, then joint |
#
# Progressive training runs through the shared paired trainer twice (`dehazelab.runs.execute`):
# `set_stage("prm")` freezes the ARM and the loss is L1(J₀, J) alone, and the PRM's own J₀ is
# scored on the test set; `set_stage("joint")` then trains everything (a second trainer run,
# because the trainer builds its optimiser from the parameters that require grad when it starts).
#
# **Where the runs come from.** Each backbone × variant × seed is one training run, declared once
# in `dehazelab/runs/grids.py` (`_grid_04`, from this notebook's parameters) as a run spec
# (`model: iicl` / `iicl-aodnet`, `loss: iicl`, `warmup_steps` for the variants with a PRM). The
# cell below reads every run from `results/runs/<size>/<id>/`: `summary.json` (PSNR/SSIM on the
# test images above, J₀ after the warm-up, parameters, timings, the VGG-19 used), `per_image.csv`,
# `history.csv` and `warmup/history.csv`, and `weights.pt` for the first seed. The pipeline
# (Snakemake) trains them as separate jobs before this notebook runs; opened without it, the cell
# trains the missing runs here, in the kernel, and stores them there.

# %%
LABELS = iicl_results.backbone_labels(backbones, ngf)  # how tables and figures name each backbone
grid_runs = nb.runs()  # read, or trained here when missing (the L1 base runs first: notebook 01's)
runs = iicl_results.runs_table(grid_runs, steps)  # one row per fine-tune; the L1 base runs start the curves below
run_ids = {f"{g.variant} seed {g.seed}": r.id for g, r in grid_runs}
io.write_table(runs, OUT / "runs_per_seed")
unpaired_runs.check_scored_on(grid_runs, test_pairs)  # every run was scored on this notebook's test images

# %% [markdown]
# Each run's scores and timings, its loss histories, and the first seed's networks for the pictures below.

# %%
histories = iicl_results.histories(grid_runs)  # (backbone, variant, seed) -> (history, warm-up history)
print(f"every run's scores and timings: {OUT / 'runs_per_seed.csv'}")
models_seed0 = iicl_results.first_seed_models(grid_runs, backbones, device)  # (backbone, variant) -> network
total_s = float(runs[["warmup_s", "train_s", "eval_s"]].sum().sum())
print(f"all {len(runs)} runs: {total_s:.0f} s of training and scoring")
for bb in backbones:
    n = {v: int(runs[(runs.backbone == bb) & (runs.variant == v)].params.iloc[0]) for v in ("backbone", "+ PRM")}
    print(f"{LABELS[bb]}: backbone {n['backbone']:,} parameters; with PRM + adapter "
          f"{n['+ PRM']:,} (+{n['+ PRM'] - n['backbone']:,})")

# %% [markdown]
# The contrastive terms embed with a VGG-19: every run must have used the same one, recorded with the
# assumptions and the configuration.

# %%
vgg_labels = sorted(set(runs[runs.variant.str.contains("IICL")].vgg_used))
VGG_USED = " / ".join(vgg_labels)
assert len(vgg_labels) == 1, f"the runs used different VGG-19s (trained where other weights were found): {vgg_labels}"
display(Markdown(workbook.vgg_sentence(vgg_labels[0], "IICL")))
assumptions_df["vgg_used"] = VGG_USED
io.write_table(assumptions_df, OUT / "assumptions")
nb.write_config(vgg_used=VGG_USED)


# %% [markdown]
# ### The loss terms during training
# The first seed of the full variant: the PRM warm-up (L1 of J₀ alone), then the joint stage's
# terms. The intra term is a cross-entropy over 1 positive and k + 1 negatives per anchor; its
# chance level is ln(k + 2).

# %%
full_runs = {f"{label}, + PRM + IICL": histories[(bb, "+ PRM + IICL", seeds[0])] for bb, label in LABELS.items()}
fig = iicl_figures.plot_training_losses(full_runs, intra_k)  # the warm-up dashed, then the joint stage's terms
plotting.savefig(fig, OUT / "fig_training.png")
plt.show()

# %% [markdown]
# ## 4 · Results
# Means over seeds with a 95 % Student-t interval (± half-width; empty with one seed). The hazy
# input and DCP (no training, notebook 00) are scored on the same test images for reference.
# **The paper's numbers are not available** (abstract only), so there is no "paper" column.

# %%
# the references: the hazy input itself and DCP, scored on the same test images (PSNR, SSIM, ΔE)
refs = {"hazy input": nb.scores(lambda im: im), "DCP": nb.scores(lambda im: dehaze_dcp(im)[0])}

# %% [markdown]
# The table: the references, then each backbone's four variants and the PRM's own J₀ after its warm-up.

# %%
table = iicl_results.results_table(runs, refs, LABELS, len(test_pairs))  # mean ± 95 % CI over seeds
io.write_table(table, OUT / "table_iicl")
display(table[["backbone", "variant", "seeds", "PSNR", "PSNR ±95%", "SSIM", "ΔE"]].round(3))  # all columns: table_iicl.csv

# %% [markdown]
# ### Learning curves
# Quality on the test images against training CPU-minutes: each backbone's L1 run (notebook 01's),
# then each variant's fine-tune continuing from its last point (mean over seeds; the band spans the
# seeds; a PRM variant's warm-up time is included).

# %%
fig, axes = plt.subplots(len(backbones), 3, figsize=(14, 3.6 * len(backbones)), squeeze=False)
curve_text = []
for ax_row, (bb, label) in zip(axes, LABELS.items()):
    base_curves = {sd: grid_runs.run(f"{bb}/L1 base", sd).curve() for sd in seeds}
    curves = {f"{label}, L1": list(base_curves.values())}
    for v in VARIANTS:
        curves[v] = [dcurves.continued(grid_runs.run(f"{bb}/{v}", sd).curve(), base_curves[sd]) for sd in seeds]
    dcurves.plot_learning_curves(curves, refs, title=label, axes=ax_row)
    curve_text.append(f"**{label}**\n\n" + dcurves.describe(curves, refs))
plotting.savefig(fig, OUT / "fig_learning_curves.png")
plt.show()
display(Markdown("\n\n".join(curve_text)))

# %% [markdown]
# Each variant against its backbone alone, paired by seed (same seed = same initialisation, data and crops).

# %%
diffs = iicl_results.differences_table(runs, LABELS, len(seeds), VGG_USED)  # ΔPSNR, ΔSSIM and their 95 % CIs
io.write_table(diffs, OUT / "table_differences")
display(diffs.round(4))

# %% [markdown]
# The same means and intervals as a figure, the hazy input as the dotted line.

# %%
fig = plotting.plot_variant_means(table, LABELS, list(VARIANTS),
                                  hazy=table[table.variant == "hazy input"].iloc[0], n_seeds=len(seeds))
plotting.savefig(fig, OUT / "fig_results.png")
plt.show()

# %% [markdown]
# **Reading the "PRM alone" and "+ PRM" rows.** J₀ is what the light PRM (a transmission map and an
# airlight, inverted through the scattering model) restores after its warm-up, with the ARM frozen. In
# the "+ PRM" rows the ARM is the backbone *already trained with L1 on hazy inputs*, and its input
# adapter starts by passing J₀ through (`dehazelab/models/iicl.py`): at the first joint step the
# backbone therefore dehazes an image that is already partly dehazed. We think this is why the PRM
# variants come out darker, with a larger colour error and a lower SSIM, than the backbone fine-tuned on
# its own (compare the ΔE columns, and the "+ PRM" columns of the qualitative grids below): 300 joint steps
# at lr 2e-4 are too few for the backbone to re-learn its input. That is a property of our fine-tune
# set-up (our choice, forced by the budget), not evidence about the framework trained end to end as the
# abstract describes; a PRM trained jointly from the start, or an adapter that starts by passing the
# hazy image, would avoid the shift — neither was tried here.

# %% [markdown]
# ### Qualitative grid
# SOTS test images (with ground truth) and real hazy photographs (without), downscaled to at most
# 320 px for display, for each backbone: the first-seed networks of the four variants, and the
# PRM's own first restoration J₀ of the full variant.

# %%
samples = [(P.fit(h, 320), None if c is None else P.fit(c, 320), n) for n, h, c in demo]  # display size
for bb, label in LABELS.items():
    dehazers = iicl_figures.qualitative_dehazers(models_seed0, bb)  # first seed: J0 of the full variant, the four variants
    grid, titles = qualitative.dehazed_rows(samples, dehazers, device)  # hazy | each dehazer | ground truth
    fig = plotting.image_grid(grid, row_titles=titles, col_titles=["hazy", *dehazers, "ground truth"])
    fig.suptitle(label, y=1.01)
    plotting.savefig(fig, OUT / f"fig_qualitative_{bb}.png")
    fig.set_dpi(60)  # the PNG above keeps savefig's resolution; a lighter inline copy keeps the executed notebook small
    plt.show()

# %% [markdown]
# ## 5 · The paper's claims against ours
# The abstract's claim is that the framework "benefits various dehazing models". We test it per
# backbone on the full framework (+ PRM + IICL against the backbone alone, trained identically
# otherwise), and each component on its own. A claim is **held** only when the 95 % interval of
# the paired-by-seed difference excludes 0 in the claimed direction; **not held (the opposite,
# beyond seed noise)** when it excludes 0 the other way; otherwise **not shown at this size**, with
# the direction of our mean. The verdict is on PSNR; SSIM gets the same rule in its own column.
# The paper gives no numbers we could reach, so no paper number appears.

# %%
CLAIMS = [("+ PRM + IICL", "the framework (PRM + IICL) benefits the dehazing model"),
          ("+ PRM", "the progressive PRM -> ARM framework helps (component)"),
          ("+ IICL", "inter + intra contrastive learning helps (component)")]
EVIDENCE = "abstract only: 'benefits various dehazing models'; no numbers available"
claims_df = iicl_results.claims_table(runs, LABELS, CLAIMS, EVIDENCE, len(seeds), VGG_USED)  # PSNR and SSIM verdicts
io.write_table(claims_df, OUT / "claims")

# %% [markdown]
# The same differences in the project's long claims format, one row per claim and metric (read by notebook 90).

# %%
long = iicl_results.long_claims(runs, LABELS, CLAIMS, EVIDENCE, len(seeds), VGG_USED)  # per backbone, claim, metric
io.write_table(long, OUT / "claims_long")

# %% [markdown]
# The claims table, and the abstract's claim over all backbones.

# %%
with pd.option_context("display.max_colwidth", None):
    display(claims_df.drop(columns=["paper's evidence"]))
various = list(claims_df.loc[claims_df.comparison.str.startswith("+ PRM + IICL"), "at this size (PSNR)"])
print("'benefits various dehazing models' at this size:",
      "held for every backbone" if all(v == "held" for v in various) else
      f"held for {sum(v == 'held' for v in various)} of {len(various)} backbone(s)")

# %% [markdown]
# ## 6 · What held, what did not, and why we think so
# Generated from the claims (PSNR verdicts) and the table above.

# %%
short = claims_df.assign(claim=claims_df.claim + " [" + claims_df.backbone + "]")
display(Markdown(workbook.held_summary(short, None, VGG_USED, verdict_col="at this size (PSNR)",
                                       ours_col="ours: ΔPSNR (95% CI)")))
# headline floor (AECR-Net): DCP + 1 dB and DCP's SSIM; aodnet floor: 19.5 dB and SSIM 0.80 (dehazelab.floors)
display(Markdown(iicl_results.quality_lines(table, refs, LABELS)))

# %% [markdown]
# Why we think so: every variant starts from the same L1-trained weights and trains the same steps, so
# a difference is what the PRM or the contrastive terms add in that fine-tune — at this budget, a small
# change to a network that is already trained, which the column "detectable with these seeds" puts in
# proportion. A network at its L1 optimum can only trade L1 fit for a new term: when the term carries no
# information the test cares about, the expected effect is a small loss, and that is the direction of
# every contrastive row here. The contrastive terms rest on the VGG-19 named at the top; with a random
# one they contrast random-feature distances, so an IICL claim that is not held here says little about
# the paper's perceptual terms — the first thing to re-run online with the ImageNet weights. The PRM
# variants fine-tune a backbone that was trained on hazy inputs but now receives J₀ (see "Reading the
# PRM rows" in §4), which we think explains their darker, more colour-shifted outputs; their J₀ row shows
# how good the PRM's own restoration is before the joint stage. Earlier versions of this notebook trained
# every variant from scratch for a few hundred steps, and AOD-Net + IICL collapsed to a solid red image
# (7.7 dB); started from a trained AOD-Net, no variant collapses (table above), so that collapse was a
# property of training the contrastive terms from random weights on a 1,761-parameter network, not of
# the terms themselves.

# %% [markdown]
# ## Results written by this notebook
# The weights of the full framework (first seed) are the `weights.pt` of its runs, copied here as
# `iicl_<size>.pt` (AECR-Net ARM) and `iicl-aodnet_<size>.pt` (AOD-Net ARM). Each records
# `{"model": name, "kwargs": ...}`, so
#
# ```bash
# python -m dehazelab dehaze IMG --model iicl --weights results/small/04_iicl/iicl_small.pt --out dehazed/
# python -m dehazelab dehaze IMG --model iicl-aodnet --weights results/small/04_iicl/iicl-aodnet_small.pt --out dehazed/
# ```
#
# rebuild the networks from the files alone (`tests/test_iicl_registry.py` checks that a reloaded
# network reproduces the trained one, through `load_model` and through the command line).

# %%
exported = {}
for bb in backbones:
    r = grid_runs.first(f"{bb}/+ PRM + IICL")
    path = OUT / f"{IICL_MODEL[bb]}_{size}.pt"  # named as the registry model (the CLI's --model)
    shutil.copyfile(r.weights_file, path)
    exported[bb] = {"file": path.name, "model": r.spec["model"], "kwargs": r.spec["model_kwargs"],
                    "bytes": path.stat().st_size, "run": r.id}
    print(f"{path.name}: {path.stat().st_size / 1e6:.2f} MB, --model {r.spec['model']} (run {r.id})")
    if size != "full":  # width-64 AECR-Net weights are ~10 MB; the committed small/smoke ones must be small
        assert path.stat().st_size <= 5 * 2**20, (path.name, path.stat().st_size)

# %% [markdown]
# Everything measured above, in one file (`metrics.json`), then the checks that every run and table is complete.

# %%
metrics = {
    "notebook": "04_iicl", "size": size, "reconstruction": "from the abstract only (no code, no paper text)",
    "vgg": VGG_USED, "vgg_used": VGG_USED, "data": nb.data_used, "seeds": seeds,
    "steps": steps, "finetune_steps": finetune_steps, "warmup_steps": warmup_steps, "backbones": backbones,
    "table": table.to_dict("records"), "differences": diffs.to_dict("records"),
    "claims": claims_df.to_dict("records"), "patches_summary": patch_summary.to_dict("records"),
    "runs": runs.to_dict("records"), "run_ids": run_ids, "total_train_eval_s": total_s,
    "checkpoints": exported, "paper_numbers": None,
    "paper_numbers_note": "IICL's numbers are not available (abstract only); none are quoted.",
    "assumptions": assumptions_df.drop(columns="vgg_used").to_dict("records"),
}
io.write_json(OUT / "metrics.json", metrics)
print(sorted(p.name for p in OUT.iterdir()))

# %%
assert np.isfinite(runs.psnr).all() and np.isfinite(runs.ssim).all() and (runs.n_test == len(test_pairs)).all()
assert len(runs) == len(backbones) * len(VARIANTS) * len(seeds)
assert (runs[runs.variant.str.contains("IICL")].vgg_used == VGG_USED).all()
assert set(claims_df["at this size (PSNR)"]) <= {"held", "not held (the opposite, beyond seed noise)",
                                                 "not shown at this size (same direction, within seed noise)",
                                                 "not shown at this size (opposite direction, within seed noise)",
                                                 "undetermined (one seed)"}
assert {"abstract", "our choice"} <= set(assumptions_df.source) and assumptions_df.source.str.startswith(
    "methods.md §4.3").any()
