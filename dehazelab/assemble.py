"""Notebook 90's assembling, defined once (d2l style): it reads what notebooks 00-04 wrote
(:func:`dehazelab.results.load_results`) and lays their tables side by side — never recomputing a metric.

    cfg, OUT, R = assemble.start(globals())     # R: {notebook: NotebookResults}
    runs = assemble.runs_table(R)
    cr_t1 = assemble.ours(R["01_cr_aecrnet"].table("table1"), "row", extra=("#params",))
    claims = assemble.stack_claims(R)             # every claims_long.csv, verdicts re-derived

Our measured columns are renamed ``ours: …`` (:func:`ours`); the papers' columns keep their ``(quoted)``
names, so the two are never mixed.
"""

from __future__ import annotations

import platform
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from . import stats as dstats

__all__ = ["NOTEBOOK", "NOTEBOOKS", "RunConfig", "start", "data_kind", "configured", "runs_table", "scale_table",
           "scale_grid", "ours", "add_dcp_rows", "quality_table", "stack_claims", "estimate_texts", "claims_table",
           "claim_counts", "summary_psnr", "psnr_references", "figures_table", "counts_markdown", "metrics"]

NOTEBOOK = "90_tables_figures"
#: The notebooks whose results are assembled, in order.
NOTEBOOKS: tuple[str, ...] = ("00_data_baselines", "01_cr_aecrnet", "02_cut_fastcut", "03_cddgan", "04_iicl")
#: Settings compared between the size read and the papers' scale (``config/full.yaml``), in this order.
SCALE_KEYS: tuple[str, ...] = ("steps", "finetune_steps", "ablation_steps", "aod_steps", "crop", "batch_size", "ngf",
                               "n_blocks", "num_patches", "global_residual", "seeds", "max_test_images")
#: Digits of a claim's estimate by metric (:func:`estimate_texts`); PSNR (dB) and memory (MB): 2.
DIGITS: dict[str, int] = {"SSIM": 4, "sec/iter": 4}
#: The ``metrics.json`` names of the tables notebook 90 writes.
TABLES: tuple[str, ...] = ("cr_table1", "cr_table2_ablation", "cr_table4_rates", "cut_table1", "cddgan_ablation",
                           "iicl_table", "quality", "claims_all", "claims_per_claim", "claims_counts", "runs", "scale",
                           "summary_psnr", "figures")
_OURS = {"PSNR": "ours: PSNR", "PSNR ±95%": "ours: PSNR ±95%", "SSIM": "ours: SSIM", "SSIM ±95%": "ours: SSIM ±95%",
         "ΔE": "ours: ΔE", "ΔE ±95%": "ours: ΔE ±95%"}
_SIZES = {"smoke", "small", "full"}


@dataclass
class RunConfig:
    """The resolved configuration of this run, written beside its results."""

    size: str
    threads: int
    out_dir: str
    read_size: str
    read_root: str
    versions: dict = field(default_factory=dict)


def start(params: Mapping[str, Any]) -> tuple[RunConfig, Path, dict]:
    """Set notebook 90 up from its parameters (the names of its parameters cell, read from ``params``,
    e.g. ``globals()``): ``(config, output folder, {notebook: NotebookResults})``.

    ``read_root`` empty means the repository's ``results/``. Seeds (0), threads and plot style come from
    :func:`dehazelab.workbook.prepare`; every notebook of :data:`NOTEBOOKS` must have results at ``read_size``
    (:class:`dehazelab.results.ResultsMissing` otherwise)."""
    from . import paths, workbook
    from .results import load_results

    p = workbook.parameters(NOTEBOOK, params)
    cfg = RunConfig(size=p["size"], threads=int(p["threads"]), out_dir=p["out_dir"] or f"{p['size']}/{NOTEBOOK}",
                    read_size=p["read_size"], read_root=str(p["read_root"] or paths.ROOT / "results"))
    if cfg.size not in _SIZES or cfg.read_size not in _SIZES:
        raise ValueError(f"size and read_size must be smoke, small or full, got {(cfg.size, cfg.read_size)}")
    out = workbook.prepare(NOTEBOOK, {"size": cfg.size, "out_dir": cfg.out_dir, "threads": cfg.threads}, 0)
    cfg.versions = {"python": platform.python_version(), "pandas": pd.__version__, "numpy": np.__version__}
    results = {nb: load_results(cfg.read_root, cfg.read_size, nb) for nb in NOTEBOOKS}
    return cfg, out, results


def data_kind(metrics: Mapping[str, Any]) -> str:
    """'real benchmark data' or 'synthetic fallback', from what the notebook recorded in its metrics."""
    return "synthetic fallback" if "synthetic" in str(metrics.get("data", "")) else "real benchmark data"


def configured(size: str) -> dict[str, Any]:
    """The ``notebooks:`` section of ``config/<size>.yaml`` (each notebook's parameters at that size)."""
    import yaml

    from . import paths

    return yaml.safe_load((paths.ROOT / "config" / f"{size}.yaml").read_text())["notebooks"]


def runs_table(results: Mapping[str, Any]) -> pd.DataFrame:
    """What was run, one row per notebook: its data, seeds, steps, VGG-19, wall time (minutes, from
    papermill's record; None when not recorded) and number of figures."""
    rows = []
    for nb, res in results.items():
        m = res.metrics
        rows.append({"notebook": nb, "data": data_kind(m), "seeds": len(m.get("seeds", [])) or "—",
                     "steps": m.get("steps", "—"), "VGG-19 (contrastive terms)": m.get("vgg", "—"),
                     "wall time (min)": None if res.duration_s is None else res.duration_s / 60,
                     "figures": len(res.figures())})
    return pd.DataFrame(rows)


def scale_table(notebooks: Sequence[str], read_size: str, ours_cfg: Mapping | None = None,
                paper_cfg: Mapping | None = None) -> pd.DataFrame:
    """Each setting of :data:`SCALE_KEYS` that ``config/<read_size>.yaml`` or ``config/full.yaml`` gives a
    notebook: one row per (notebook, setting) with both values as text. ``ours_cfg`` / ``paper_cfg``
    default to those files' ``notebooks:`` sections (:func:`configured`)."""
    ours_cfg = configured(read_size) if ours_cfg is None else ours_cfg
    paper_cfg = configured("full") if paper_cfg is None else paper_cfg
    rows = []
    for nb in notebooks:
        for k in SCALE_KEYS:
            a, b = (ours_cfg.get(nb) or {}).get(k), (paper_cfg.get(nb) or {}).get(k)
            if a is not None or b is not None:
                rows.append({"notebook": nb, "setting": k, f"ours ({read_size})": str(a),
                             "paper scale (config/full.yaml)": str(b)})
    return pd.DataFrame(rows)


def scale_grid(scale: pd.DataFrame, read_size: str) -> pd.DataFrame:
    """:func:`scale_table` as a grid for reading: settings down, notebooks across, cells "ours / paper"."""
    def side(col: str) -> pd.DataFrame:
        return scale.pivot(index="setting", columns="notebook", values=col).fillna("").astype(str)

    return side(f"ours ({read_size})") + " / " + side("paper scale (config/full.yaml)")


def ours(df: pd.DataFrame, label_col: str, extra: Sequence[str] = ()) -> pd.DataFrame:
    """A notebook table's label, seeds and measured columns, renamed ``ours: …`` (quoted columns keep their
    names; the label column becomes ``row``). ``extra`` columns follow the measured ones, except a first
    ``"training"``, which goes before them; columns absent from ``df`` are skipped; ``#params…`` columns
    become integers (counts, not measurements)."""
    extra = tuple(extra)
    keep = [label_col, "seeds", *(extra[:1] if extra[:1] == ("training",) else ()), *_OURS,
            *[e for e in extra if e != "training"]]
    out = df[[c for c in keep if c in df.columns]].copy()
    for c in [c for c in out.columns if c.startswith("#params")]:
        out[c] = out[c].astype("Int64")
    return out.rename(columns={**_OURS, label_col: "row"})


def add_dcp_rows(table: pd.DataFrame, dcp: Mapping[str, Mapping[str, Any]],
                 quoted: Mapping[str, Sequence[float]]) -> pd.DataFrame:
    """Append notebook 00's DCP rows (``metrics["dcp"]``) to the CR Table 1 ``table``, each beside the
    paper's quoted DCP numbers (``metrics["paper_quoted"]["CR Table 1, DCP"]``). The rows are the
    benchmarks it scored (SOTS-indoor, NH-HAZE) or, without benchmark data, its synthetic stand-in, which
    has no paper number; "… / no refinement" (notebook 00's own ablation) is left out. ``table`` needs the
    columns ``test images`` and the three ``paper … (quoted)`` (a value with no column is dropped by pandas'
    row assignment). Returns ``table``, extended in place."""
    benches = [b for b in ("SOTS-indoor", "NH-HAZE") if b in dcp] or [b for b in dcp if not b.endswith("/ no refinement")]
    for bench in benches:
        d = dcp[bench]
        q = quoted.get(bench, (np.nan, np.nan))
        table.loc[len(table)] = {"row": f"DCP, notebook 00 ({bench})", "seeds": 0, "ours: PSNR": d["psnr"],
                                 "ours: PSNR ±95%": d["psnr_ci95"], "ours: SSIM": d["ssim"], "ours: SSIM ±95%": d["ssim_ci95"],
                                 "#params": 0, "VGG-19 of CR": "— (no CR)", "test images": d["n"],
                                 "paper PSNR (quoted)": q[0], "paper SSIM (quoted)": q[1],
                                 "paper #params (quoted)": "–" if bench in quoted else ""}
    return table


def quality_table(results: Mapping[str, Any]) -> pd.DataFrame:
    """Every trained model of notebooks 01-04 against its quality floor (:func:`dehazelab.floors.quality_rows`
    on each notebook's own results table, whose hazy-input and DCP rows are the references): the headline
    models, AOD-Net, the unpaired methods and every other learned row (IICL's "PRM alone" rows excepted)."""
    from .floors import quality_rows

    t1, tc = results["01_cr_aecrnet"].table("table1"), results["02_cut_fastcut"].table("table_cut")
    cdd, ti = results["03_cddgan"].table("table_ablation"), results["04_iicl"].table("table_iicl")
    ti2 = ti.assign(name=ti.variant.where(ti.backbone == "—", ti.backbone + " · " + ti.variant))
    aecr = next((b for b in ti.backbone if str(b).startswith("AECR-Net")), "AECR-Net")
    iicl_models = {f"{aecr} + PRM + IICL": (f"{aecr} · + PRM + IICL", "headline"),
                   **{f"{b} · {v}": (f"{b} · {v}", "learned") for b, v in zip(ti.backbone, ti.variant)
                      if b != "—" and not str(v).startswith("PRM alone")
                      and not (str(b).startswith("AECR-Net") and v == "+ PRM + IICL")}}
    return pd.DataFrame(
        quality_rows("01_cr_aecrnet", t1, "row", {"AOD-Net": ("AOD-Net", "aodnet"),
                                                  "AECR-Net, L1 only": ("AECR-Net (L1)", "learned"),
                                                  "AECR-Net, L1 + CR": ("AECR-Net", "headline")})
        + quality_rows("02_cut_fastcut", tc, "method", {m: (m, "unpaired") for m in ("CUT", "FastCUT", "CycleGAN")})
        + quality_rows("03_cddgan", cdd, "row", {r: (r, "unpaired") for r in cdd.query("source == 'trained here'").row})
        + quality_rows("04_iicl", ti2, "name", iicl_models))


def stack_claims(results: Mapping[str, Any], notebooks: Sequence[str] = NOTEBOOKS[1:]) -> pd.DataFrame:
    """Every paper notebook's ``claims_long.csv`` stacked (notebook 00 makes no claim). Checks that the
    columns are :data:`dehazelab.stats.CLAIM_COLUMNS` and re-derives each verdict that has an interval
    with :func:`dehazelab.stats.verdict`, so a notebook cannot have written a wrong one (``ValueError``)."""
    claims = pd.concat([results[nb].table("claims_long") for nb in notebooks], ignore_index=True)
    bad = sorted(set(claims.columns) ^ set(dstats.CLAIM_COLUMNS))
    if bad:
        raise ValueError(f"claims_long.csv columns differ from dehazelab.stats.CLAIM_COLUMNS: {bad}")
    rederived = pd.Series([dstats.verdict(e, h) for e, h in zip(claims.estimate, claims.ci95)])
    with_interval = claims.ci95.notna()
    wrong = claims[with_interval & (claims.verdict != rederived)]
    if len(wrong):
        raise ValueError(f"a notebook's verdict disagrees with its numbers: {wrong[['paper', 'claim', 'verdict']].to_dict('records')}")
    return claims


def estimate_texts(claims: pd.DataFrame) -> list[str]:
    """Each claim's estimate as text, ``"+0.09 dB ± 0.67"`` (:func:`dehazelab.stats.format_estimate`,
    digits by metric from :data:`DIGITS`)."""
    return [dstats.format_estimate(e, h, u if isinstance(u, str) else "", DIGITS.get(m, 2))
            for e, h, u, m in zip(claims.estimate, claims.ci95, claims.unit, claims.metric)]


def claims_table(claims: pd.DataFrame) -> pd.DataFrame:
    """The cross-paper claims table for reading: paper, claim, the paper's evidence, comparison, metric,
    ``ours (95% CI)`` (:func:`estimate_texts`, added to ``claims`` by the caller), seeds, verdict, setting."""
    table = claims[["paper", "claim", "evidence", "comparison", "metric", "ours (95% CI)", "n", "verdict", "setting"]]
    return table.rename(columns={"evidence": "paper's evidence", "n": "seeds", "verdict": "at this size"})


def claim_counts(per_claim: pd.DataFrame) -> pd.DataFrame:
    """Claims per paper and combined category (:func:`dehazelab.stats.claim_verdicts`), the categories
    present as columns in :data:`dehazelab.stats.CLAIM_CATEGORIES` order."""
    counts = per_claim.groupby(["paper", "category"]).size().unstack(fill_value=0)
    return counts.reindex(columns=[c for c in dstats.CLAIM_CATEGORIES if c in counts.columns])


def summary_psnr(parts: Sequence[tuple[str, pd.DataFrame]]) -> pd.DataFrame:
    """One row per (group, row) of the ``(group label, table)`` parts (tables of :func:`ours`): its PSNR
    and 95 % half-width (None where the table has none), duplicates dropped, in order."""
    rows = [{"group": label, "row": r["row"], "psnr": r["ours: PSNR"], "ci": r.get("ours: PSNR ±95%")}
            for label, df in parts for _, r in df.iterrows()]
    return pd.DataFrame(rows).drop_duplicates(subset=["group", "row"]).reset_index(drop=True)


def psnr_references(results: Mapping[str, Any]) -> dict[str, float]:
    """The summary figure's reference lines: the hazy input's PSNR on notebook 02's test images and DCP's
    on notebook 01's, each named with its number of images."""
    tc, t1 = results["02_cut_fastcut"].table("table_cut"), results["01_cr_aecrnet"].table("table1")
    n02 = results["02_cut_fastcut"].metrics["hazy_input"]["n"]
    n01 = results["01_cr_aecrnet"].metrics["data"]["test"]["n_pairs"]
    return {f"hazy input (02's {n02} test images)": float(tc.loc[tc.method.str.startswith("hazy"), "PSNR"].iloc[0]),
            f"DCP (01's {n01} test images)": float(t1.loc[t1.row == "DCP", "PSNR"].iloc[0])}


def figures_table(results: Mapping[str, Any], root: Path | None = None) -> pd.DataFrame:
    """Every figure of the assembled notebooks: notebook, file name, and path (relative to ``root``,
    default the repository, when under it)."""
    from . import paths

    root = paths.ROOT if root is None else Path(root)
    return pd.DataFrame([{"notebook": nb, "figure": p.name,
                          "path": str(p.relative_to(root)) if p.is_relative_to(root) else str(p)}
                         for nb, res in results.items() for p in res.figures()])


def counts_markdown(counts: pd.DataFrame) -> str:
    """One Markdown bullet per paper of :func:`claim_counts`: its non-zero counts, ``* **CR**: 6 not shown``."""
    return "\n".join(f"* **{p}**: " + ", ".join(f"{int(n)} {c}" for c, n in counts.loc[p].items() if n)
                     for p in counts.index)


def metrics(cfg: RunConfig, results: Mapping[str, Any], counts: pd.DataFrame, per_claim: pd.DataFrame,
            claims: pd.DataFrame, figures: pd.DataFrame, quality: pd.DataFrame) -> dict[str, Any]:
    """``metrics.json`` of notebook 90: where each notebook's results came from, the claim counts, how many
    figures (the workbook's plus the summary figure) and how many models meet their quality floor."""
    return {
        "notebook": NOTEBOOK, "size": cfg.size, "read_size": cfg.read_size,
        "sources": {nb: {"path": str(r.path), "data": data_kind(r.metrics), "duration_s": r.duration_s}
                    for nb, r in results.items()},
        "claims_counts": {p: {c: int(n) for c, n in counts.loc[p].items()} for p in counts.index},
        "n_claims": int(len(per_claim)), "n_claim_tests": int(len(claims)), "n_figures": int(len(figures)) + 1,
        "quality_floors_met": {"met": int((quality.met == "met").sum()), "of": int(len(quality))},
        "tables": list(TABLES),
    }
