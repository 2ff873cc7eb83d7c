# Regenerates every table and figure: each notebook runs through papermill at the size chosen by
# the config file (default config/small.yaml; see README). Notebooks are parameterised, not
# rewritten: the config's per-notebook dict is passed as papermill parameters.
import json
from snakemake.exceptions import WorkflowError
import shlex
import sys
from pathlib import Path

# The size comes from a config file: profiles/default sets config/small.yaml; pass
# `--configfile config/smoke.yaml` (or the full profile) to choose another. A config file given on
# the command line replaces the profile's, so no values of one size leak into another.
if not config:
    raise WorkflowError("no config: run with the default profile or --configfile config/<size>.yaml")

PYTHON = shlex.quote(sys.executable)  # the venv that runs snakemake runs the notebooks
SIZE = config["size"]
NOTEBOOKS = list(config["notebooks"])
# Library files are inputs so that an edit to dehazelab/ reruns the notebooks it may affect.
LIB = sorted(str(p) for p in Path("dehazelab").rglob("*") if p.suffix in {".py", ".json"})

# Training runs are jobs of their own. Each notebook's grid (variants x seeds) is declared once, in
# dehazelab/runs/grids.py, from the notebook's parameters (its parameters cell overridden by this
# size's config); every run becomes one `train` job writing results/runs/<size>/<id>/, with
# `run_threads` torch threads, so `snakemake --cores N` trains N runs side by side. A notebook job
# only reads its runs (plus quick demonstrations).
from dehazelab.launch import parse_spec
from dehazelab.runs.code import code_files
from dehazelab.runs.grids import grid as run_grid, notebook_params

RUN_THREADS = int(config.get("run_threads", 1))
NB_RUNS = {}  # notebook -> run ids
RUNS = {}  # run id -> (spec with defaults, keeps weights, label)
for _nb in NOTEBOOKS:
    _params = notebook_params(_nb, {**(config["notebooks"].get(_nb) or {}), "size": SIZE})
    NB_RUNS[_nb] = []
    for _g in run_grid(_nb, _params, run_threads=RUN_THREADS):
        _spec = parse_spec(_g.spec).to_dict()
        _keep = _g.keep or RUNS.get(_g.id, (None, False))[1]
        RUNS[_g.id] = (_spec, _keep, RUNS[_g.id][2] if _g.id in RUNS else _g.variant)  # a shared run: its first label
        NB_RUNS[_nb].append(_g.id)
for _id, (_spec, _keep, _label) in RUNS.items():
    _init = (_spec.get("init") or {}).get("run")
    if _init and not RUNS.get(_init, (None, False))[1]:
        raise WorkflowError(f"run {_id} ({_label}) starts from run {_init}, which no grid declares with its weights kept")
KEPT = sorted(i for i, r in RUNS.items() if r[1])
NOT_KEPT = sorted(i for i, r in RUNS.items() if not r[1])


def run_outputs(nb, size):
    """What notebook ``nb`` reads of its runs: every summary, and the weights of the kept ones."""
    ids = NB_RUNS.get(nb, [])
    return ([f"results/runs/{size}/{i}/summary.json" for i in ids]
            + [f"results/runs/{size}/{i}/weights.pt" for i in ids if RUNS[i][1]])

wildcard_constraints:
    size=r"smoke|small|full",


report: "report/workflow.rst"

# Figures and headline tables each notebook writes, each with what it shows (marked for
# `snakemake --report`, where the sentence is the file's "shows" label; tests check the lists against
# what the committed small-size results hold, so a new figure cannot be forgotten).
REPORT = {
    "00_data_baselines": {
        "title": "00 · Data and the dark channel prior",
        "figures": {
            "fig_scattering_model": "Haze synthesised with the scattering model I = J·t + A·(1 − t) on the Middlebury "
                                    "Motorcycle scene's true depth, at several β.",
            "fig_transmission_recovery": "A SOTS pair: the transmission t solved from I and J (near = bright, far = dark).",
            "fig_dcp_steps": "The dark channel prior step by step on a SOTS test image: hazy input, its dark channel, "
                             "refined transmission, DCP output, ground truth.",
            "fig_dcp_real": "DCP on real hazy photographs (no ground truth): look for halos and over-saturated far regions.",
        },
        "tables": {
            "table1_dcp": "DCP's rows of CR Table 1 (SOTS-indoor, NH-HAZE): ours beside the paper's quoted numbers.",
            "table_ssim_conventions": "PSNR/SSIM of the same images under scikit-image's and AECR-Net/FFA's code conventions.",
        },
    },
    "01_cr_aecrnet": {
        "title": "01 · CR / AECR-Net",
        "figures": {
            "fig_cr_features": "Contrastive regularization: anchor (output), positive (clear), negatives (hazy) and "
                               "their VGG-19 feature distances per layer.",
            "fig_learning_curves": "PSNR, SSIM and colour error on the test images against training CPU-minutes: "
                                   "AOD-Net, AECR-Net (L1) and its L1 / CR fine-tunes, with the hazy input and DCP.",
            "fig_cr_during_training": "The L1 and CR terms during training of the CR fine-tunes and their L1 control.",
            "fig_psnr_vs_params": "PSNR against parameters: our measured points (left) and the paper's quoted ones "
                                  "(right, separate axis).",
            "fig_qualitative": "SOTS test images and real hazy photos dehazed by DCP and the seed-0 networks.",
        },
        "tables": {
            "table1": "CR Table 1 rows (DCP, AOD-Net, AECR-Net) over seeds, beside the paper's quoted column.",
            "table2_ablation": "CR Table 2: the autoencoder + DFE + CR ablation over seeds.",
            "table4_rates": "CR Table 4: positive : negative sampling rates of the CR term.",
            "claims": "The paper's claims against our paired-by-seed differences (held / not shown / not held).",
            "performance": "Seconds, GFLOP and utilisation of a measured fp32 peak for one training step, ours and "
                           "at the paper's configuration.",
        },
    },
    "02_cut_fastcut": {
        "title": "02 · CUT / FastCUT",
        "figures": {
            "fig_patchnce_sampling": "PatchNCE: a query in the output, its positive at the same place in the input, "
                                     "negatives elsewhere.",
            "fig_patchnce_similarity": "One query's cosine similarity to every key, per layer, before and after training.",
            "fig_losses": "GAN, PatchNCE and cycle losses during training (seed 0), with chance levels.",
            "fig_learning_curves": "PSNR, SSIM and colour error against training CPU-minutes for CUT, FastCUT and "
                                   "CycleGAN, with the hazy input and DCP.",
            "fig_qualitative": "SOTS test images and real hazy photos dehazed by the seed-0 CUT, FastCUT and CycleGAN.",
        },
        "tables": {
            "table_cut": "CUT Table 1's measurable columns (PSNR/SSIM over seeds, CPU sec/iter, memory) beside the "
                         "paper's quoted ones.",
            "claims": "The paper's claims against our paired-by-seed differences (held / not shown / not held).",
            "cost": "Seconds per iteration and peak memory of each method, at our and at the official configuration.",
            "performance": "GFLOP per iteration and utilisation of a measured fp32 peak, at our and at the official "
                           "configuration.",
        },
    },
    "03_cddgan": {
        "title": "03 · CDD-GAN (reconstruction)",
        "figures": {
            "fig_scene_and_haze": "One SOTS scene at every haze level: the scene factor stays, the haze factor changes.",
            "fig_losses": "Adversarial, cycle and contrastive terms and the hardness of the negatives during training.",
            "fig_ablation": "The ablation (CycleGAN, + contrastive, + hard negatives, + exemplars, CUT) over seeds.",
            "fig_learning_curves": "PSNR, SSIM and colour error against training CPU-minutes for each ablation row, "
                                   "with the hazy input and DCP (runs trained with eval_every only).",
            "fig_features_pca": "Encoder features coloured by scene and by haze level, before and after training.",
            "fig_negatives_nearest": "Generated negatives of N_A shown through their nearest real patches.",
            "fig_qualitative": "SOTS test images and real hazy photos dehazed by each ablation row's seed-0 generator.",
        },
        "tables": {
            "assumptions": "Every assumption of the reconstruction with its source (abstract, figure, related code).",
            "table_ablation": "The ablation over seeds; the CUT row is read from notebook 02.",
            "claims": "The abstract's claims against our paired-by-seed differences (held / not shown / not held).",
            "feature_eta2": "Share of feature variance explained by scene and by haze level (η²), before and after training.",
            "negatives_hardness": "Cosine of queries to their positives, to generated negatives and to in-image negatives.",
        },
    },
    "04_iicl": {
        "title": "04 · IICL (reconstruction)",
        "figures": {
            "fig_bright_dark_patches": "An image's brightest and darkest patches by dark channel, with their values.",
            "fig_patch_statistics": "How much haze the bright and dark patches hold, over every test pair.",
            "fig_training": "PRM warm-up, then the joint stage's L1, inter- and intra-image contrastive terms (seed 0).",
            "fig_learning_curves": "PSNR, SSIM and colour error against training CPU-minutes: each backbone's L1 run, "
                                   "then its four fine-tuned variants, with the hazy input and DCP.",
            "fig_results": "Backbone / + PRM / + IICL / + PRM + IICL on AECR-Net and AOD-Net over seeds.",
            "fig_qualitative_aecrnet": "Test images and real photos through the AECR-Net variants and the PRM's J₀.",
            "fig_qualitative_aodnet": "Test images and real photos through the AOD-Net variants and the PRM's J₀.",
        },
        "tables": {
            "assumptions": "Every assumption of the reconstruction with its source (abstract, related papers).",
            "table_iicl": "Every variant on both backbones over seeds, with the hazy input, DCP and the PRM's own J₀.",
            "table_differences": "Each variant minus its backbone, paired by seed, with 95 % intervals.",
            "claims": "The abstract's claims against our paired-by-seed differences (held / not shown / not held).",
        },
    },
    "90_tables_figures": {
        "title": "90 · All papers: tables, claims, summary",
        "figures": {
            "fig_summary": "PSNR of every trained row (left) and every PSNR claim's paired difference with its "
                           "95 % interval (right).",
        },
        "tables": {
            "claims_all": "Every claim of the four papers: the paper's evidence, our difference with its interval, "
                          "the verdict.",
            "claims_counts": "Held / not shown / not held, per paper.",
            "cr_table1": "CR Table 1: ours beside the paper's quoted numbers.",
            "cr_table2_ablation": "CR Table 2 (ablation): ours beside the paper's quoted numbers.",
            "cr_table4_rates": "CR Table 4 (positive : negative rates): ours beside the paper's quoted numbers.",
            "cut_table1": "CUT Table 1: our quality and CPU cost beside the paper's quoted FID and GPU cost.",
            "cddgan_ablation": "CDD-GAN ablation (reconstruction; no paper numbers to quote).",
            "quality": "Does each trained model dehaze? Its seed mean against the hazy input and DCP on the same "
                       "test images, and whether it meets its quality floor (dehazelab/floors.py).",
            "iicl_table": "IICL on two backbones (reconstruction; no paper numbers to quote).",
            "runs": "What each notebook ran: data, seeds, steps, VGG-19 used, wall time.",
            "scale": "Every setting scaled down at the small size beside its paper-scale value (config/full.yaml).",
        },
    },
}
unlisted = sorted(set(NOTEBOOKS) - set(REPORT))
if unlisted:
    raise WorkflowError(f"Snakefile REPORT has no entry for notebook(s) {unlisted}")

# Notebooks that read other notebooks' results (never retraining them) run after them. Notebook 90
# assembles all of them; the Snakefile passes it read_size = the size being run.
READS = {
    "03_cddgan": ["02_cut_fastcut"],
    "90_tables_figures": ["00_data_baselines", "01_cr_aecrnet", "02_cut_fastcut", "03_cddgan", "04_iicl"],
}
ASSEMBLES = {"90_tables_figures"}


rule all:
    input:
        expand("results/{size}/{nb}/metrics.json", size=SIZE, nb=NOTEBOOKS),
        [f"results/{SIZE}/{nb}/{t}.html" for nb in NOTEBOOKS for t in REPORT[nb]["tables"]],


def papermill_params(nb, size):
    params = dict(config["notebooks"].get(nb) or {})
    params["size"] = size
    params["out_dir"] = f"{size}/{nb}"
    if nb in ASSEMBLES:
        params["read_size"] = size
    return json.dumps(params, sort_keys=True)


# One rule per notebook (named run_<notebook>, so a profile can give each its own resources, e.g.
# GPUs in profiles/full and profiles/slurm). Outputs: the executed notebook, its metrics, and the
# figures/tables it writes, marked for the report.
for _nb in NOTEBOOKS:
    _rep = REPORT[_nb]
    rule:
        name:
            f"run_{_nb}"
        input:
            nb=f"notebooks/{_nb}.ipynb",
            lib=LIB,
            runs=lambda w, _nb=_nb: run_outputs(_nb, w.size),
            upstream=[f"results/{{size}}/{up}/metrics.json" for up in READS.get(_nb, []) if up in NOTEBOOKS],
        output:
            nb=f"results/{{size}}/{_nb}/{_nb}.ipynb",
            metrics=f"results/{{size}}/{_nb}/metrics.json",
            figures=[report(f"results/{{size}}/{_nb}/{f}.png", caption="report/figure.rst", category=_rep["title"],
                            subcategory="figures", labels={"figure": f, "shows": shows})
                     for f, shows in _rep["figures"].items()],
            tables=[f"results/{{size}}/{_nb}/{t}.csv" for t in _rep["tables"]],  # shown through table_html
        params:
            p=lambda wildcards, _nb=_nb: papermill_params(_nb, wildcards.size),
        log:
            f"logs/{{size}}/{_nb}.log",
        threads: int(config.get("threads", 1))
        shell:
            'DEHAZELAB_RESULTS="$PWD/results" TQDM_DISABLE=1 '
            + PYTHON + f" -m papermill {{input.nb:q}} {{output.nb:q}} -k python3 -l python --no-progress-bar "
            "-y {params.p:q} -p threads {threads}"
            # an assembling notebook reads the folder this job writes to ($PWD/results, as
            # DEHAZELAB_RESULTS), not the repository the imported package resolves as its root
            + (' -p read_root "$PWD/results"' if _nb in ASSEMBLES else "")
            + " > {log:q} 2>&1"


# The report renders HTML inline but offers a CSV only as a download, so each marked table also gets a
# small HTML page (report/table_html.py: formatting only; the CSV stays the full-precision record).
rule table_html:
    input:
        csv="results/{size}/{nb}/{table}.csv",
        tool="report/table_html.py",
    output:
        report("results/{size}/{nb}/{table}.html", caption="report/table.rst",
               category=lambda w: REPORT[w.nb]["title"], subcategory="tables",
               labels=lambda w: {"table": w.table, "shows": REPORT[w.nb]["tables"][w.table]}),
    wildcard_constraints:
        nb="|".join(NOTEBOOKS),
        table=r"[a-z0-9_]+",
    params:
        title=lambda w: f"{REPORT[w.nb]['title']} — {w.table}",
        shows=lambda w: REPORT[w.nb]["tables"][w.table],
    shell:
        PYTHON + " report/table_html.py {input.csv:q} {output:q} --title {params.title:q} --shows {params.shows:q}"


# One training run: the spec (with its defaults) goes to `python -m dehazelab train -` on stdin. Inputs
# are the library files the run executes (dehazelab/runs/code.py), so editing a model, loss or trainer
# reruns exactly the runs that use it. A run that starts from another run's weights (fine-tuning, spec
# key `init`) takes as input its base's stamp, results/runs/<size>/.bases/<base>.sha256 (the SHA-256 of
# the base's weights.pt), written by the base's own job: retraining a base reruns what starts from it,
# and in a fresh clone, where git writes files in path order, the stamps (".bases" sorts first) are older
# than every run folder, so a fine-tune whose folder sorts before its base's (aecrnet-cr-* before
# aecrnet-s*) is not taken for outdated. --restart-finished: a finished checkpoint left by an earlier
# version of the code is trained again rather than resumed; an interrupted run resumes.
def _train_shell(keep, stamp=False):
    return ("echo {params.spec:q} | TQDM_DISABLE=1 " + PYTHON + " -m dehazelab train - --out results/runs/{wildcards.size}/{wildcards.run} "
            "--restart-finished --label {params.label:q}" + (" --keep-weights" if keep else "") + " > {log:q} 2>&1"
            + (" && sha256sum {output.weights:q} | cut -d' ' -f1 > {output.stamp:q}" if stamp else ""))


BASES = sorted({(spec.get("init") or {}).get("run") for spec, _, _ in RUNS.values()} - {None})


def base_stamp(size, run):
    return f"results/runs/{size}/.bases/{run}.sha256"


def _train_inputs(w):
    """The code a run executes, and the stamp of the run it starts from (``init``), if any."""
    spec = RUNS[w.run][0]
    init = (spec.get("init") or {}).get("run")
    return code_files(spec) + ([base_stamp(w.size, init)] if init else [])


_TRAIN = dict(
    input=_train_inputs,
    params=dict(spec=lambda w: json.dumps(RUNS[w.run][0], sort_keys=True), label=lambda w: RUNS[w.run][2]),
)
if NOT_KEPT:
    rule train:
        input:
            _TRAIN["input"],
        output:
            summary="results/runs/{size}/{run}/summary.json",
        wildcard_constraints:
            run="|".join(NOT_KEPT),
        params:
            **_TRAIN["params"],
        log:
            "logs/{size}/runs/{run}.log",
        threads: RUN_THREADS
        shell:
            _train_shell(False)

KEPT_LEAVES = [i for i in KEPT if i not in BASES]
if KEPT_LEAVES:
    rule train_kept:
        input:
            _TRAIN["input"],
        output:
            summary="results/runs/{size}/{run}/summary.json",
            weights="results/runs/{size}/{run}/weights.pt",
        wildcard_constraints:
            run="|".join(KEPT_LEAVES),
        params:
            **_TRAIN["params"],
        log:
            "logs/{size}/runs/{run}.log",
        threads: RUN_THREADS
        shell:
            _train_shell(True)

if BASES:
    rule train_base:  # a kept run others start from: its weights' stamp is what they depend on
        input:
            _TRAIN["input"],
        output:
            summary="results/runs/{size}/{run}/summary.json",
            weights="results/runs/{size}/{run}/weights.pt",
            stamp="results/runs/{size}/.bases/{run}.sha256",
        wildcard_constraints:
            run="|".join(BASES),
        params:
            **_TRAIN["params"],
        log:
            "logs/{size}/runs/{run}.log",
        threads: RUN_THREADS
        shell:
            _train_shell(True, stamp=True)
