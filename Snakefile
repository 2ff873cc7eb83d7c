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

wildcard_constraints:
    size=r"smoke|small|full",


report: "report/workflow.rst"

# Figures and headline tables each notebook writes (marked for `snakemake --report`; tests check the
# lists against what the committed small-size results hold, so a new figure cannot be forgotten).
REPORT = {
    "00_data_baselines": {
        "title": "00 · Data and the dark channel prior",
        "figures": ["fig_scattering_model", "fig_transmission_recovery", "fig_dcp_steps", "fig_dcp_real"],
        "tables": ["table1_dcp", "table_ssim_conventions"],
    },
    "01_cr_aecrnet": {
        "title": "01 · CR / AECR-Net",
        "figures": ["fig_cr_features", "fig_cr_during_training", "fig_psnr_vs_params", "fig_qualitative"],
        "tables": ["table1", "table2_ablation", "table4_rates", "claims", "performance"],
    },
    "02_cut_fastcut": {
        "title": "02 · CUT / FastCUT",
        "figures": ["fig_patchnce_sampling", "fig_patchnce_similarity", "fig_losses", "fig_qualitative"],
        "tables": ["table_cut", "claims", "cost", "performance"],
    },
    "03_cddgan": {
        "title": "03 · CDD-GAN (reconstruction)",
        "figures": ["fig_scene_and_haze", "fig_losses", "fig_ablation", "fig_features_pca", "fig_negatives_nearest",
                    "fig_qualitative"],
        "tables": ["assumptions", "table_ablation", "claims", "feature_eta2", "negatives_hardness"],
    },
    "04_iicl": {
        "title": "04 · IICL (reconstruction)",
        "figures": ["fig_bright_dark_patches", "fig_patch_statistics", "fig_training", "fig_results",
                    "fig_qualitative_aecrnet", "fig_qualitative_aodnet"],
        "tables": ["assumptions", "table_iicl", "table_differences", "claims"],
    },
    "90_tables_figures": {
        "title": "90 · All papers: tables, claims, summary",
        "figures": ["fig_summary"],
        "tables": ["claims_all", "claims_counts", "cr_table1", "cr_table2_ablation", "cr_table4_rates", "cut_table1",
                   "cddgan_ablation", "iicl_table", "runs", "scale"],
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
            upstream=[f"results/{{size}}/{up}/metrics.json" for up in READS.get(_nb, []) if up in NOTEBOOKS],
        output:
            nb=f"results/{{size}}/{_nb}/{_nb}.ipynb",
            metrics=f"results/{{size}}/{_nb}/metrics.json",
            figures=[report(f"results/{{size}}/{_nb}/{f}.png", caption="report/figure.rst", category=_rep["title"],
                            subcategory="figures", labels={"notebook": _nb, "figure": f}) for f in _rep["figures"]],
            tables=[report(f"results/{{size}}/{_nb}/{t}.csv", caption="report/table.rst", category=_rep["title"],
                           subcategory="tables", labels={"notebook": _nb, "table": t}) for t in _rep["tables"]],
        params:
            p=lambda wildcards, _nb=_nb: papermill_params(_nb, wildcards.size),
        log:
            f"logs/{{size}}/{_nb}.log",
        threads: int(config.get("threads", 1))
        shell:
            'DEHAZELAB_RESULTS="$PWD/results" TQDM_DISABLE=1 '
            + PYTHON + f" -m papermill {{input.nb:q}} {{output.nb:q}} -k python3 -l python --no-progress-bar "
            "-y {params.p:q} -p threads {threads} > {log:q} 2>&1"
