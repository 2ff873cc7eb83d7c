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
# # 02 · CUT and FastCUT (Park, Efros, Zhang, Zhu, ECCV 2020), with a CycleGAN baseline
#
# *Contrastive Learning for Unpaired Image-to-Image Translation* replaces CycleGAN's second
# generator and cycle loss with a **patchwise contrastive loss, PatchNCE**: a patch of the output
# should be more similar to the input patch *at the same place* than to the input patches
# elsewhere. One generator, one discriminator and a small projection head — so, the paper reports,
# better translations (lower FID) at less time and memory per iteration than CycleGAN, and
# **FastCUT** (no identity term, a heavier PatchNCE weight) is cheaper still.
#
# This notebook
# 1. explains PatchNCE with pictures: a query, its positive at the same location, the negatives
#    elsewhere, and the similarity map of one query against all keys before and after training;
# 2. trains CUT, FastCUT and CycleGAN with the shared unpaired trainer on **unpaired** SOTS-indoor
#    data — hazy images of one half of the training scenes, clear images of the *other* half, so no
#    hazy image ever meets its own clear scene — with several seeds (the runs are read from
#    `results/runs/<size>/`: trained there by the pipeline, or here when missing), scores PSNR/SSIM on
#    the paired, unseen test scenes 1430–1439 and shows the three dehazers on real hazy photographs;
# 3. regenerates the columns of CUT's Table 1 that we can measure here (quality, sec/iter, memory;
#    all three methods in the same run on the same device) beside the paper's quoted numbers;
# 4. measures one iteration of each method at the official configuration (time, memory, FLOPs,
#    utilisation of the CPU's measured fp32 peak);
# 5. checks the paper's claims against ours.
#
# **What is scaled down, and why.** CUT trains a ResNet-9 generator (ngf 64) on 256×256 crops for
# 400 epochs of batch 1 on a GPU (about half a million iterations on Horse→Zebra). On this CPU one
# such iteration at 128×128 takes seconds (§6; `docs/methods.md` §7). The small size therefore
# trains **narrow ResNet-6 networks on 64² crops for 3,000 iterations** (about 4–8 CPU-minutes a
# run) — the table printed below lists every scaled-down setting beside the official one. Our numbers
# measure what the three objectives do for small networks after minutes of training: the direction
# of each claim at this size, not the paper's scores. FID needs the standard Inception weights,
# downloaded on first use when the machine is online (§5).
#
# **What differs from the official code, and why.** Chosen on validation scenes 1425–1429 carved from
# the training scenes (`benchmarks/recipes/README.md` has every run):
#
# * **The generators output $x + G(x)$** (a global residual) instead of $G(x)$: dehazing changes an
#   image far less than horse→zebra does, and predicting only the change gave CUT +1.1 dB and a much
#   better SSIM at 3,000 iterations. Without it, FastCUT and CycleGAN fell below the hazy input's SSIM.
# * **Weaker identity-keeping terms for FastCUT and CycleGAN.** With the residual, copying the input
#   satisfies FastCUT's PatchNCE (weight 10) and CycleGAN's cycle (10) and identity (0.5) terms so well
#   that both stayed at the identity (PSNR = the hazy input's). With FastCUT's λ_NCE at 1 (CUT's value)
#   and CycleGAN's cycle weights at 1 and no identity loss, both moved off it and beat the hazy input
#   on validation by 4.5 dB or more. These are changes of the papers' loss weights: FastCUT here is
#   "CUT without the identity NCE term and with flip-equivariance", and our CycleGAN is a weaker-cycle
#   CycleGAN. CUT keeps its official weights.

# %% tags=["parameters"]
size = "smoke"  # smoke | small | full
seeds = [0]  # one training run per seed and method
threads = 1
out_dir = ""  # relative to dehazelab.paths.results_dir(); empty -> "<size>/02_cut_fastcut"
steps = 6  # training iterations per run (batch 1), the same for the three methods
crop = 32  # training crop side (native resolution; official: 286-resize then 256 crop)
ngf = 8  # generator width (official 64)
ndf = 8  # discriminator width (official 64)
n_blocks = 6  # residual blocks (official CUT: 9; at least 5 keep the PatchNCE tap 16 inside the encoder)
num_patches = 32  # PatchNCE positions sampled per layer (official 256)
global_residual = True  # generator output x + net(x) (see "What differs from the official code")
loss_weights = {"fastcut": {"lambda_NCE": 1.0}, "cyclegan": {"lambda_A": 1.0, "lambda_B": 1.0, "lambda_identity": 0.0}}  # changed from the official
eval_every = 0  # evaluate on the test split every this many iterations (learning curves; 0: at the end only)
decay_data = "keep"  # "keep": crops throughout; "resize": official whole-image resize in the decay phase
max_test_images = 2  # paired test images scored per run (0: all of the test split)
test_levels = [1, 3, 5, 7, 9]  # SOTS haze levels of the test split
real_max_images = 1  # real hazy photographs shown (skipped when the data folder has none)
real_max_side = 320  # real photos are resized so their longer side is at most this
cost_iters = 2  # timed iterations per method for the sec/iter and memory columns
perf_official = False  # time one iteration of each method at the official config (ResNet-9, ngf 64, 128², batch 1)
official_repeats = 1  # times the official-config measurement is repeated, interleaved (a claim needs them to agree)
inception_weights = "auto"  # FID: "auto" (hub cache, else download), a path to torch-fidelity's Inception file, or "none"

# %%
import math
import time

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch
from IPython.display import Markdown, display

from dehazelab import (cost, curves as dcurves, cut_results, fid as dfid, inference, io, methods, notebook_metrics,
                       papers, paths, patchnce_figures as PF, perf, plotting, qualitative, runs as druns,
                       stats as dstats, unpaired_runs, workbook)
from dehazelab.losses.patchnce import patchnce_loss
from dehazelab.models import dcp, projection_head
from dehazelab.train.paired import evaluate

# %% [markdown]
# The set-up: seeds and threads, plot style, output folder and device (`dehazelab.workbook.start`),
# the three methods, and the unpaired training split — no scene appears on both sides.

# %%
# seeds and threads, plot style, output folder, device; the grid of runs (dehazelab/runs/grids.py), the
# test images they are scored on, and their unpaired training split (dehazelab.data.selection.scene_halves:
# hazy images of the first half of the training scenes, one clear image per scene of the second half)
nb = workbook.start("02_cut_fastcut", globals())
METHODS, LABEL = ("cut", "fastcut", "cyclegan"), {"cut": "CUT", "fastcut": "FastCUT", "cyclegan": "CycleGAN"}
OUT, device, seeds, test_pairs, test_set = nb.out, nb.device, nb.seeds, nb.test_pairs, nb.test_set
hazy_items, clear_items, tr = nb.hazy_items, nb.clear_items, nb.data_used["train"]
assert steps >= 2 and crop % 4 == 0 and n_blocks >= 5 and cost_iters >= 1 and decay_data in ("keep", "resize")
assert not {p.scene for p in hazy_items} & {p.scene for p in clear_items}
print(f"train: {len(hazy_items)} hazy images of scenes {'-'.join(tr['hazy_scenes'])}, "
      f"{len(clear_items)} clear images of scenes {'-'.join(tr['clear_scenes'])}; test: {len(test_pairs)} pairs; "
      f"device {device}")

# %% [markdown]
# Every setting this run scales down, beside the official one:

# %%
scaled = pd.DataFrame([
    ("generator", "ResNet, 9 blocks, ngf 64", f"ResNet, {n_blocks} blocks, ngf {ngf}"),
    ("discriminator (PatchGAN) width ndf", "64", str(ndf)),
    ("training crop", "256 of a 286² resize", f"{crop} at native resolution"),
    ("PatchNCE positions per layer", "256", str(num_patches)),
    ("iterations (batch 1)", "~534k CUT, ~267k FastCUT on Horse→Zebra", f"{steps} for each method"),
    ("generator output", "G(x)", "x + G(x)" if global_residual else "G(x)"),
    ("FastCUT λ_NCE", "10", str((loss_weights.get("fastcut") or {}).get("lambda_NCE", 10.0))),
    ("CycleGAN λ_A / λ_B / λ_identity", "10 / 10 / 0.5",
     " / ".join(str((loss_weights.get("cyclegan") or {}).get(k, d)) for k, d in
                (("lambda_A", 10.0), ("lambda_B", 10.0), ("lambda_identity", 0.5)))),
    ("test images", "test set resized to 256²", f"{len(test_pairs)} SOTS pairs at native resolution"),
], columns=["setting", "official CUT", "this run"])
display(scaled)
nb.write_config()

# %% [markdown]
# ## 1 · PatchNCE
#
# CUT's generator $G$ is an encoder followed by a decoder; the encoder is simply $G$'s own first
# layers. Feed it the input $x$ and the output $\hat y = G(x)$, and tap layers $l$ (pixels, the two
# down-sampling convolutions, residual blocks 1 and 5: receptive fields of about 1, 9, 15, 35 and 99
# pixels). A small MLP $H_l$ maps the feature vector at each sampled position $s$ to a unit vector:
# the **query** $v = H_l(G^l_{enc}(\hat y))_s$ comes from the *output*, the **keys** from the *input*:
# the **positive** $v^+ = H_l(G^l_{enc}(x))_s$ at the same position, the **negatives**
# $v^-_n = H_l(G^l_{enc}(x))_{s'}$ at the $N$ other sampled positions of the same image. PatchNCE is
# the cross-entropy of picking the positive out of the $N+1$ candidates,
#
# $$ \ell(v, v^+, v^-) = -\log \frac{\exp(v\cdot v^+/\tau)}{\exp(v\cdot v^+/\tau) + \sum_{n=1}^{N}\exp(v\cdot v^-_n/\tau)},
#    \qquad \tau = 0.07, $$
#
# averaged over the sampled positions and the tapped layers. It keeps the *content* of each input
# patch in the output patch at the same place, while the GAN loss $(D(G(x)) - 1)^2$ moves the output
# towards the target domain (here: clear images). CUT adds the same loss on clear images,
# $\ell$ on $(y, G(y))$ — an identity regulariser — and weights
# $\mathcal L = \mathcal L_{GAN} + \tfrac12\bigl(\mathcal L_{NCE}(x) + \mathcal L_{NCE}(y)\bigr)$ (the ½ is the official code's);
# **FastCUT** drops the identity term, weights $10\,\mathcal L_{NCE}(x)$ and flips inputs at random
# (flip-equivariance). **CycleGAN** instead trains a second generator back to the hazy domain and asks
# for $\lVert G_B(G_A(x)) - x\rVert_1$ to be small (cycle consistency), in both directions.
#
# Below: one test crop, with its ground-truth clear image standing in for the output a perfect
# dehazer would give. The query (blue) is a patch of the output; the positive (green) is the input
# patch at the same location; the negatives (red) are the other sampled input locations (a few drawn
# as patches, all as dots). The patch sides are the receptive field of the residual-block-1 layer.

# %%
demo_hazy, demo_clear = PF.centre_crop(test_set[0])  # a centred square crop of the first test pair
fig = PF.sampling_figure(demo_hazy, demo_clear, num_patches, seed=0)  # dehazelab.patchnce_figures
plotting.savefig(fig, OUT / "fig_patchnce_sampling.png")
plt.show()

# %% [markdown]
# The loss itself is a classification over one row of logits per query: the positive's similarity
# first, then the negatives'. With random unit vectors all similarities are near 0 and the loss is
# about $\log(N+1)$ — chance; a query that matches its positive much better than the negatives
# drives it towards 0. `dehazelab.losses.patchnce.patchnce_loss` computes it (tested against a
# direct implementation of the formula in `tests/test_patchnce.py`):

# %%
l2_normalize = projection_head.l2_normalize  # each vector scaled to length 1
g = torch.Generator().manual_seed(1)
P, C = 64, 32
keys = l2_normalize(torch.randn(1, P, C, generator=g))
random_q = l2_normalize(torch.randn(1, P, C, generator=g))
matched_q = l2_normalize(keys + 0.3 * torch.randn(1, P, C, generator=g))
nce_demo = pd.DataFrame({"queries": ["random (unrelated to the keys)", "noisy copies of their positives"],
                         "PatchNCE": [float(patchnce_loss(random_q, keys)), float(patchnce_loss(matched_q, keys))],
                         "log(N+1) (chance)": [math.log(P), math.log(P)]})
display(nce_demo.round(3))
assert nce_demo.PatchNCE[1] < nce_demo.PatchNCE[0]

# %% [markdown]
# ## 2 · Training the three methods on unpaired data
#
# One run = one method and one seed; all runs see the same hazy and clear images, crops and number of
# iterations (batch 1, the official batch size). Besides the output and loss weights above, each method
# keeps its own official recipe:
# networks (anti-aliased ResNet generator and PatchGAN for CUT/FastCUT, a second generator and
# discriminator for CycleGAN), initialisation, LSGAN, Adam(2e-4, β 0.5/0.999), CycleGAN's 50-image
# pools, and the *shape* of the official schedule — a constant learning rate followed by a linear
# decay over the last half (CUT, CycleGAN) or quarter (FastCUT) of the iterations.
#
# Where we differ on purpose: crops are taken at the native 620×460 resolution (the official loader
# resizes to 286² first), and with `decay_data="keep"` the crops stay on in the decay phase (the
# official loader switches to whole images resized to the crop size, which at our crop sizes would
# show the scenes several times smaller than at test time; `dehazelab/train/unpaired.py`). Each run is
# scored once, after its last iteration, on the paired test images at full resolution.
#
# The runs are not trained by this notebook's own loop: the grid (3 methods × `seeds`) is declared once
# in `dehazelab/runs/grids.py`, and each run is read from `results/runs/<size>/<id>/` (its
# `summary.json`, `per_image.csv`, `history.csv`, and `weights.pt` for the first seed) — trained there by
# the pipeline (one `python -m dehazelab train` job per run) before this notebook runs, or here, in the
# kernel, when it is missing. The run id is a hash of everything that decides the run's numbers, so a
# changed parameter reads (or trains) another folder, never a stale one.

# %%
# The runs (3 methods × seeds) are declared once, in dehazelab/runs/grids.py; each is read from
# results/runs/<size>/<id>/ when it has finished there and trained here, in the kernel, otherwise.
t_all = time.perf_counter()
run_grid = nb.runs()
print(f"{len(run_grid)} runs from {druns.runs_dir(size)} ({time.perf_counter() - t_all:.0f} s in this kernel)")
# one row per run; s_per_iter: the median seconds per train_step over the logged windows (the warm-up
# window left out when there are several) — a median, so a burst of background load does not move it
runs = unpaired_runs.runs_table(run_grid)
histories = {(g.variant, g.seed): r.history for g, r in run_grid}
methods_seed0 = {name: run_grid.first(name).method(device) for name in METHODS}
# what the first seed's runs were built with (the later cells rebuild and time the same networks)
method_kwargs, schedule = unpaired_runs.first_seed_settings(run_grid)

# %% [markdown]
# Each run's scores and training speed go to `runs_per_seed` (one row per run, with its folder;
# `dehazelab.unpaired_runs.runs_table`).

# %%
io.write_table(runs, OUT / "runs_per_seed")
nb.write_config(method_kwargs=method_kwargs, schedule=schedule)

# %% [markdown]
# The hazy input itself, scored the same way, is the "do nothing" reference; the checks below make
# sure every run was scored on exactly the test images this notebook shows.

# %%
hazy_ref = evaluate(torch.nn.Identity(), test_set, device)
refs = {"hazy input": nb.scores(lambda im: im), "DCP": nb.scores(lambda im: dcp.dehaze_dcp(im)[0])}
print(f"hazy input (no dehazing): PSNR {hazy_ref['psnr']:.2f} SSIM {hazy_ref['ssim']:.4f}; "
      f"DCP {refs['DCP']['psnr']:.2f} / {refs['DCP']['ssim']:.4f}")
assert np.isfinite(runs.psnr).all() and (runs.n_test == len(test_pairs)).all()
unpaired_runs.check_scored_on(run_grid, test_pairs)  # on exactly the test images this notebook shows
assert len(runs) == len(METHODS) * len(seeds)

# %% [markdown]
# ### Learning curves
# Quality on the test images against training CPU-minutes (mean over seeds; the band spans the
# seeds), with the hazy input and DCP as dashed references.

# %%
curves = {LABEL[m]: [run_grid.run(m, sd).curve() for sd in seeds] for m in METHODS}
fig = dcurves.plot_learning_curves(curves, refs, title=f"02 at {size} size")
plotting.savefig(fig, OUT / "fig_learning_curves.png")
plt.show()
display(Markdown(dcurves.describe(curves, refs)))

# %% [markdown]
# ### Losses during training (seed 0)
# Under LSGAN a discriminator that cannot tell the outputs from clear images answers 0.5 everywhere,
# which puts both its loss (D) and the generator's GAN term at 0.25. PatchNCE starts near chance,
# $\log(\text{num\_patches})$ (times 10 for FastCUT; dotted lines), and falls as output patches
# become identifiable with their input patches. CycleGAN's cycle and identity terms are L1 distances
# times their weights (the settings table; officially 10 and 5).

# %%
s0 = int(seeds[0])
losses = {"CUT": ["loss_G_GAN", "loss_D", "loss_NCE", "loss_NCE_Y"], "FastCUT": ["loss_G_GAN", "loss_D", "loss_NCE"],
          "CycleGAN": ["loss_G_A", "loss_D_A", "loss_cycle_A", "loss_idt_A"]}  # idt_A: not logged at weight 0
chance = {"CUT": 1.0 * math.log(num_patches),  # λ_NCE · log(num_patches)
          "FastCUT": float(method_kwargs["fastcut"].get("lambda_NCE", 10.0)) * math.log(num_patches)}
fig = dcurves.plot_losses({LABEL[m]: histories[(m, s0)] for m in METHODS}, losses, chance, "NCE at chance")
plotting.savefig(fig, OUT / "fig_losses.png")
plt.show()

# %% [markdown]
# ### What PatchNCE learned: one query against all keys, before and after training
# For the seed-0 CUT run: the centre position of a test crop's *output* is the query; its cosine
# similarity to the input's key at **every** position of the same layer is the map (brighter = more
# similar; the positive is at the marked centre). Before training (the same seed's initial weights)
# the maps say little about location; PatchNCE trains the encoder and heads so that the query's
# best match is its own location and the negatives elsewhere are pushed away. The number above each
# map are the positive's rank among all positions of that layer (1 = the query's best match is its
# own location) and the probability PatchNCE would give it against all of them (softmax of
# similarity / τ; training only ever contrasts it with `num_patches` − 1 sampled negatives).
# `dehazelab.patchnce_figures.query_maps` computes the maps.

# %% [markdown]
# The maps of the same seed's CUT networks before and after training (written to
# `fig_patchnce_similarity.png`, and as numbers to `patchnce_similarity`):

# %%
trained_cut = methods_seed0["cut"]
init_cut = methods.build_method("cut", seed=s0, **method_kwargs["cut"])  # the same seed's initial weights
rows = [("before training", *PF.query_maps(init_cut, demo_hazy)), ("after training", *PF.query_maps(trained_cut, demo_hazy))]
fig, sim_df = PF.similarity_figure(demo_hazy, rows)
plotting.savefig(fig, OUT / "fig_patchnce_similarity.png")
plt.show()
io.write_table(sim_df, OUT / "patchnce_similarity")
display(sim_df.round(3))
assert np.isfinite(sim_df.select_dtypes("number").to_numpy()).all()

# %% [markdown]
# ### Dehazed test images and real hazy photographs
# SOTS test images (unseen scenes, with ground truth) and real hazy photographs (no ground truth;
# resized so that the longer side is at most `real_max_side`), dehazed by the seed-0 generators.

# %%
dehazers = {name: methods_seed0[name].dehazer().eval() for name in METHODS}
samples = nb.shown_pairs(3)  # (hazy, clear, "scene, haze level") of 3 different scenes
real, nb.data_used["real"] = qualitative.real_photo_rows(paths.data_root(), real_max_images, real_max_side)
if not real:
    print("no real hazy photographs found (no data folder or no real-hazy/ in it): showing SOTS test images only")
grid, row_titles = qualitative.dehazed_rows(samples + real, dehazers, device)  # hazy | each method | ground truth
fig = plotting.image_grid(grid, row_titles=row_titles, col_titles=["hazy"] + [LABEL[n] for n in METHODS] + ["ground truth"])
plotting.savefig(fig, OUT / "fig_qualitative.png")
plt.show()
nb.write_config(method_kwargs=method_kwargs, schedule=schedule)

# %% [markdown]
# What to look for: a residual generator that has learned little leaves the veil in place (the
# column looks like the hazy one); one that has learned the clear domain's statistics without the
# scene's lifts the veil but may shift colours or invent texture, most visibly on the real photos,
# which are unlike any training image. The PSNR of each shown test image, and the mean brightness of
# each real photograph, which has no ground truth (generated):

# %%
display(Markdown(plotting.shown_psnr(grid, row_titles, ["hazy"] + [LABEL[n] for n in METHODS])))

# %% [markdown]
# ## 3 · Cost per iteration, measured here
# CUT's Table 1 reports seconds per iteration and GPU memory on one GPU at 256², batch 1. We measure
# the same two quantities for our training configuration — and, with `perf_official=True`, at the
# official architecture (ResNet-9, ngf 64, ndf 64, 256 patches, 128², batch 1) — each method in a
# **fresh process** (`measure_cost`: warm-up iterations, then timed ones on a random batch), one after
# the other on this machine: the median seconds per `train_step`, and the process's peak resident
# memory above its baseline after imports (CPU: there is no GPU memory to report). Only the ratios
# between the methods carry over to other machines.
#
# *A measurement detail.* Linux hands a new process the peak-RSS record (`getrusage`'s `ru_maxrss`)
# of the process it was forked from, across `exec`, for one generation. Spawned directly from this
# kernel — which holds the trained networks by now, and may have trained the runs itself — every child
# would start with the kernel's peak and report almost no memory of its own. So `dehazelab.cost`
# launches the measurements from a small helper Python process, whose spawned children start clean.

# %%
OFFICIAL_KW = cost.OFFICIAL_KWARGS  # ResNet-9, ngf 64, ndf 64, 256 patches (dehazelab.cost)
jobs = cost.cost_jobs("this notebook", method_kwargs, crop=crop, n_iter=cost_iters, warmup=2, threads=threads,
                      device=device)
if perf_official:  # repeated, the three methods interleaved, so a drift in background load hits all of them
    for rep_ in range(official_repeats):
        jobs += [dict(j, repeat=rep_) for j in cost.cost_jobs("official (ResNet-9, ngf 64, 128²)", OFFICIAL_KW,
                                                               crop=128, n_iter=2, warmup=1, threads=threads, device=device)]
costs = cost.measure_costs(jobs)  # each in a fresh process, launched from a clean helper (dehazelab.cost)
cost_repeats = cost.cost_table(jobs, costs)
io.write_table(cost_repeats, OUT / "cost_repeats")
cost_all = cost_repeats[cost_repeats.repeat == 0].drop(columns="repeat").reset_index(drop=True)
io.write_table(cost_all, OUT / "cost")
cost_df = cost_all[cost_all.config == "this notebook"].set_index("method")
display(cost_all.round(4))
assert (cost_repeats["sec/iter (median)"] > 0).all() and len(cost_repeats) == len(jobs)

# %% [markdown]
# ## 4 · CUT Table 1, the columns we can measure
# Quality: PSNR/SSIM (scikit-image conventions, RGB, full test images) — mean over seeds with a 95 %
# Student-t interval (± half-width; empty with one seed). Cost: §3 (sec/iter and memory in a fresh
# process) and the sec/iter of `train_step` during the training runs (mean ± over seeds). The paper's columns are
# quoted beside ours; they are FIDs on other datasets and GPU numbers, so compare **directions**, not
# values. Of the quoted numbers the CUT/FastCUT FIDs were verified independently (clean-fid's
# re-computation); the CycleGAN FIDs and the sec/iter and memory columns are recalled from the paper
# (`docs/methods.md` §2.9; the numbers and their status are in `dehazelab/papers.json`).

# %%
_t1 = papers.quoted("cut-table1")  # CUT paper Table 1, quoted (dehazelab/papers.json)
PAPER_T1 = {name: dict(_t1[LABEL[name]]) for name in METHODS}
# the cost claims of §7 quote these columns, with their status ("recalled" unless every number was verified)
COST_SRC = f"Table 1, {papers.status('cut-table1', columns=['sec/iter', 'Mem GB'])}"
Q_TIME = f"{PAPER_T1['cut']['sec/iter']:.2f} vs {PAPER_T1['cyclegan']['sec/iter']:.2f} s/iter"
Q_MEM = f"{PAPER_T1['cut']['Mem GB']:.2f} vs {PAPER_T1['cyclegan']['Mem GB']:.2f} GB"
Q_FAST = f"{PAPER_T1['fastcut']['sec/iter']:.2f} vs {PAPER_T1['cut']['sec/iter']:.2f} s/iter"

# %% [markdown]
# Our rows: the mean over seeds of each method's quality and training speed (with its 95 % half-width,
# `dehazelab.stats.seed_summary`), its cost from §3, and the paper's quoted columns beside them; the
# hazy input and DCP close the table (`dehazelab.cut_results.table1`).

# %%
cut_table = cut_results.table1(runs, cost_df, refs, _t1, LABEL)  # _t1: the quoted Table 1, by row label

# %% [markdown]
# ## 5 · FID — whenever the standard Inception weights are available
# The paper's quality columns are FIDs: the Fréchet distance between Inception-v3 pool features of
# the translated test images and of real target-domain images. We compute it with a maintained
# library, torchmetrics' `FrechetInceptionDistance` (`dehazelab/fid.py`), and its default feature
# extractor: torch-fidelity's port of the TensorFlow FID Inception-v3, the weights legacy `pytorch-fid`
# uses. With `inception_weights="auto"` the file is read from the torch hub cache (or
# `$DEHAZELAB_INCEPTION`) and downloaded there on first use — unless `DEHAZELAB_DOWNLOAD=0`; a path
# names the file; `"none"` turns FID off. Without the weights the table has no FID column and
# `metrics.json` records why (`fid`). The target domain is one clear image per test scene
# (`dehazelab.fid.dehazer_fids`; the DCP reference row gets no FID). Note that
# the paper scored a few hundred images at 256²: an FID of our handful of test images (below 2,048
# samples the covariances are rank-deficient) is a different number, comparable only between our rows.
# PSNR/SSIM, which our paired test scenes make possible, remain the quality columns.

# %%
fid = dfid.FIDScorer(inception_weights, device=device)
fid_note = fid.note
if fid.available:
    try:  # each seed-0 dehazer's outputs, and the hazy inputs, against one clear image per test scene
        fids = dfid.dehazer_fids(fid, {LABEL[m]: dehazers[m] for m in METHODS}, test_set,
                                 [p.scene for p in test_pairs], device, hazy_label="hazy input (reference)")
        cut_table.insert(6, "FID (Inception, seed 0)", cut_table.method.map(fids))  # DCP: not scored
    except ValueError as exc:  # fewer than two images on a side (the smoke size's test scenes)
        fid_note = f"no FID: {exc}"
print(fid_note)
io.write_table(cut_table, OUT / "table_cut")
display(cut_table.round(4))

# %% [markdown]
# ## 6 · Performance: one iteration at the official configuration
# GFLOP per iteration (torch's FLOP counter over one `train_step`: convolutions and matrix products,
# forward and backward) and the utilisation of this CPU's measured fp32 peak (the better of a 2048²
# matrix product and a 3×3 convolution, `dehazelab.perf.fp32_peak`: on some CPUs `torch.mm`'s BLAS
# reaches only half the convolution kernels' rate, and a matmul-only peak read above 100 %), next to the times of §3 —
# for our training configuration and, with `perf_official=True`, for each method at the official
# configuration (ResNet-9, ngf 64, ndf 64, 256 patches, 128×128, batch 1) on this CPU.
#
# `docs/methods.md` §7 (quoted) timed the **official CUT code** here at about 5.1 s per iteration at
# 128² and counted about 370 GFLOP per iteration. Ours computes the same losses and gradients with
# less work (`dehazelab/methods/cut.py`, checked equal by `benchmarks/bench_cut_step.py`): the
# PatchNCE **keys come from the taps of the main G pass** over `cat(real_A, real_B)` instead of two
# more encoder passes (only D changed in between, and InstanceNorm is per image); the queries of
# `fake_B` and `idt_B` come from **one combined encoder pass**; the D step runs **one D forward** over
# `cat(real_B, fake_B)`; a key pass that is still needed (FastCUT's flipped inputs) builds no autograd
# graph. How much of the speed-up that explains is measured, not assumed: the second table times the
# official *order of work* (as re-implemented in `benchmarks/bench_cut_step.py`, variant `official`)
# against ours (variant `fast`) in this process, interleaved, from the same weights and data.

# %%
fp32 = perf.fp32_peak()  # {"mm", "conv3x3", "peak"} in FLOP/s
peak = fp32["peak"]
perf_df = perf.performance_table(cost_all, {"this notebook": method_kwargs, "official (ResNet-9, ngf 64, 128²)": OFFICIAL_KW},
                                 peak, LABEL, device=device, threads=threads)
io.write_table(perf_df, OUT / "performance")
print(f"measured fp32 peak on {torch.get_num_threads()} thread(s): {peak / 1e9:.1f} GFLOP/s "
      f"(2048² matmul {fp32['mm'] / 1e9:.1f}, 3×3 conv {fp32['conv3x3'] / 1e9:.1f})")
display(perf_df.round(3))
assert (perf_df["GFLOP/iter"] > 0).all() and (perf_df["s/iter"] > 0).all()

# %% [markdown]
# With `perf_official=True`: the official order of work against ours, one CUT iteration at the
# official configuration (`dehazelab.perf.official_order_table`, written to `performance_official_order`).

# %%
BENCH = paths.ROOT / "benchmarks" / "bench_cut_step.py"
order_df = None
if perf_official and BENCH.is_file():
    order_df = perf.official_order_table(BENCH, peak, threads=threads)
    io.write_table(order_df, OUT / "performance_official_order")
    display(order_df.round(3))
    print(perf.official_order_note(order_df, fp32))

# %% [markdown]
# ## 7 · The paper's claims against ours
# A claim *holds* here when the 95 % interval of the paired difference lies on the claimed side of 0
# (quality and training time are paired by seed: same seed = same data order and crops); when the
# interval contains 0 the claim is *not shown at this size* (the direction of our mean is given), and
# *not held* means the opposite beyond seed noise. The paper's quality evidence is FID,
# which we compute only with the Inception weights and then on a handful of images (§5), so "beats" is
# judged on PSNR and on SSIM separately. Training
# time is each run's sec/iter (§2); memory is one measurement per method (§3), which does not vary
# with the seed. With `perf_official=True` the cost claims are also checked at the official
# architecture (one measurement each, §3) — the configuration the paper's claim is about.

# %%
paired = dstats.paired_difference  # mean of sign·(col[a] − col[b]) over the seeds, its 95 % t half-width, n
verdict = dstats.verdict  # 'held' only when the paired 95 % interval excludes 0 in the claimed direction
pm = cut_results.interval_text  # "± half-width", or "(one seed: no interval)"
claims = []  # the short table (claims.md)
long = dstats.ClaimsTable(paper="CUT / FastCUT (ECCV'20)", notebook="02_cut_fastcut")  # one row per measure
n_seeds = len(seeds)
setting = f"ngf {method_kwargs['cut'].get('ngf')}, {steps} iterations, crop {crop}" + (
    f"; loss weights changed: {loss_weights}" if loss_weights else "")

# %% [markdown]
# **Quality.** CUT beats CycleGAN: the paired difference in PSNR and in SSIM.

# %%
d, h, _ = paired(runs, "method", "cut", "cyclegan", "psnr")
ds, hs, _ = paired(runs, "method", "cut", "cyclegan", "ssim")
long.add("CUT beats CycleGAN", "lower FID (Table 1)", "CUT − CycleGAN", "PSNR", "dB", d, h, n_seeds, setting=setting)
long.add("CUT beats CycleGAN", "lower FID (Table 1)", "CUT − CycleGAN", "SSIM", "", ds, hs, n_seeds, setting=setting)
claims.append(("CUT beats CycleGAN", "lower FID on Horse→Zebra, Cat→Dog and Cityscapes (Table 1)",
               f"PSNR {d:+.2f} dB {pm(h, '.2f')}; SSIM {ds:+.4f} {pm(hs, '.4f')}",
               f"PSNR: {verdict(d, h)}; SSIM: {verdict(ds, hs)}"))

# %% [markdown]
# **Cost at our configuration.** CUT uses less time (paired by seed) and memory (one measurement) than
# CycleGAN.

# %%
mem = cost_df["peak mem above baseline (MB)"]
d, h, _ = paired(runs, "method", "cut", "cyclegan", "s_per_iter", sign=-1.0)  # positive = CUT faster
mem_ok = bool(mem["cut"] < mem["cyclegan"])
long.add("CUT uses less time than CycleGAN", f"{Q_TIME} ({COST_SRC})", "CycleGAN − CUT", "sec/iter",
         "s", d, h, n_seeds, setting=setting)
long.add("CUT uses less memory than CycleGAN", f"{Q_MEM} ({COST_SRC})", "CycleGAN − CUT", "peak memory",
         "MB", mem["cyclegan"] - mem["cut"], float("nan"), 1,
         verdict=("held" if mem_ok else "not held") + " (one measurement)", setting=setting)
claims.append(("CUT uses less time and memory than CycleGAN", f"{Q_TIME}, {Q_MEM} ({COST_SRC})",
               f"CycleGAN − CUT: {d:+.4f} s/iter {pm(h, '.4f')}; memory {mem['cut']:.0f} vs {mem['cyclegan']:.0f} MB",
               f"time: {verdict(d, h)}; memory: {'held' if mem_ok else 'not held'} (one measurement)"))

# %% [markdown]
# FastCUT is faster than CUT:

# %%
d, h, _ = paired(runs, "method", "fastcut", "cut", "s_per_iter", sign=-1.0)  # positive = FastCUT faster
long.add("FastCUT is faster than CUT", f"{Q_FAST} ({COST_SRC})", "CUT − FastCUT", "sec/iter", "s",
         d, h, n_seeds, setting=setting)
claims.append(("FastCUT is faster than CUT", f"{Q_FAST} ({COST_SRC})",
               f"CUT − FastCUT: {d:+.4f} s/iter {pm(h, '.4f')}", verdict(d, h)))


# %% [markdown]
# **Cost at the official architecture** (with `perf_official=True`; `official_repeats` interleaved
# measurements per method, §3). One measurement flipped between sessions on this machine, so a verdict
# here needs every repeat to agree (`dehazelab.cut_results.official_cost_claims`).

# %%
if perf_official:  # dehazelab.cut_results: medians of the repeats, held only when every repeat agrees
    claims += cut_results.official_cost_claims(
        cost_repeats, long, {"time": f"{Q_TIME} ({COST_SRC})", "memory": f"{Q_MEM} ({COST_SRC})",
                             "faster": f"{Q_FAST} ({COST_SRC})"}, repeats=official_repeats)

# %% [markdown]
# The verdicts, written to `claims` (this table) and `claims_long` (one row per measure, read by notebook 90):

# %%
claims_df = pd.DataFrame(claims, columns=["claim", "paper's evidence (quoted)", "ours (difference, 95% CI)", "at this size"])
io.write_table(claims_df, OUT / "claims")
io.write_table(long.frame(), OUT / "claims_long")  # read by notebook 90
display(claims_df)

# %% [markdown]
# ## 8 · What held, what did not, and why we think so
# Generated from the long claims table (one line per claim and measure).

# %%
display(Markdown(workbook.held_summary_long(long.frame())))

# %% [markdown]
# Why we think so. Quality: all three methods share data, crops, iterations and the residual output,
# but CycleGAN and FastCUT run with weakened identity-keeping terms (above) — so "CUT beats CycleGAN"
# compares CUT with a weaker-cycle CycleGAN, not the paper's. PSNR and SSIM against ground truth are
# not the paper's FID either: an unpaired method can match the clear domain's look (what FID rewards)
# while moving away from the scene's exact colours (what PSNR punishes). Cost: per-iteration time
# depends on the implementation and the hardware; our CUT reuses encoder passes the official code
# repeats (§6), which changes the CUT/CycleGAN ratio, and the official-architecture claims count only
# when every interleaved repeat agrees.

# %% [markdown]
# ## Results written by this notebook
# Generator weights of the seed-0 run of each method are saved as `cut_<size>.pt`, `fastcut_<size>.pt`
# and `cyclegan_<size>.pt`; `python -m dehazelab dehaze IMG --model cut --weights cut_small.pt`
# rebuilds the dehazer from the file alone (checked below: the reloaded model reproduces the
# in-memory one).

# %%
weights = {}
for name in METHODS:
    m = methods_seed0[name]
    weights[name] = inference.export_weights(m.dehazer(), m.model_spec(), OUT / f"{name}_{size}.pt")
    reloaded = inference.load_model(name, weights[name], device=device)
    x = test_set[0]["hazy"][None].to(device)
    with torch.no_grad():
        assert torch.allclose(reloaded(x), dehazers[name](x), atol=1e-5), name
    assert weights[name].stat().st_size <= 5 * 2**20, (name, weights[name].stat().st_size)

# %% [markdown]
# Every number of this notebook, in `metrics.json`:

# %%
metrics = notebook_metrics.collect(  # + notebook, size, data used, seeds; every table as a list of rows
    nb, steps=steps, runs=runs.run.tolist(), method_kwargs=method_kwargs, schedule=schedule, fid=fid_note,
    hazy_input=hazy_ref, claims=claims_df, performance=perf_df,
    tables={"cut_table": cut_table, "cost": cost_all, "patchnce_similarity": sim_df, "official_order": order_df},
    fp32_peak_gflops={k: v / 1e9 for k, v in fp32.items()}, weights={k: v.name for k, v in weights.items()},
    paper_quoted={"table1": PAPER_T1, "official_code_cpu_sec_per_iter_128": 5.1,
                  "official_code_gflop_per_iter_128": 370})
io.write_json(OUT / "metrics.json", metrics)
print(sorted(p.name for p in OUT.iterdir()))
assert {f"{n}_{size}.pt" for n in METHODS} <= {p.name for p in OUT.iterdir()}
