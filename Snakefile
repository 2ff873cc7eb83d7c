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
    nb=r"[0-9]{2}_[a-z0-9_]+",
    size=r"smoke|small|full",


rule all:
    input:
        expand("results/{size}/{nb}/metrics.json", size=SIZE, nb=NOTEBOOKS),


def papermill_params(wildcards):
    params = dict(config["notebooks"].get(wildcards.nb) or {})
    params["size"] = wildcards.size
    params["out_dir"] = f"{wildcards.size}/{wildcards.nb}"
    return json.dumps(params, sort_keys=True)


# Notebooks that read another notebook's results (never retraining it) run after it.
READS = {"03_cddgan": ["02_cut_fastcut"]}


def upstream_metrics(wildcards):
    return [f"results/{wildcards.size}/{up}/metrics.json" for up in READS.get(wildcards.nb, []) if up in NOTEBOOKS]


rule notebook:
    input:
        nb="notebooks/{nb}.ipynb",
        lib=LIB,
        upstream=upstream_metrics,
    output:
        nb="results/{size}/{nb}/{nb}.ipynb",
        metrics="results/{size}/{nb}/metrics.json",
    params:
        p=papermill_params,
    log:
        "logs/{size}/{nb}.log",
    threads: int(config.get("threads", 1))
    shell:
        'DEHAZELAB_RESULTS="$PWD/results" TQDM_DISABLE=1 '
        + PYTHON + " -m papermill {input.nb:q} {output.nb:q} -k python3 -l python --no-progress-bar "
        "-y {params.p:q} -p threads {threads} > {log:q} 2>&1"
