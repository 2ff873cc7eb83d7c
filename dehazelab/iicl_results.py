"""The runs of notebook 04 (the IICL reconstruction) and the tables it builds from them (d2l style: defined once
here, called from the notebook).

Notebook 04's grid (``nb.runs()``, declared in :mod:`dehazelab.runs.grids`) holds, per backbone, its
L1-trained base run (``"<backbone>/L1 base"``) and four fine-tunes of it (``"<backbone>/<variant>"``, the
variants of :data:`~dehazelab.runs.grids.IICL_VARIANTS`), each over several seeds.

* :func:`backbone_labels` — how each backbone is named in the tables and figures;
* :func:`runs_table`, :func:`histories`, :func:`first_seed_models` — the fine-tunes: one row per run, their
  loss histories, the first seed's networks;
* :func:`results_table` — the references, then mean ± 95 % CI per backbone and variant, and the PRM's J₀;
* :func:`paired_vs_backbone`, :func:`differences_table`, :func:`claims_table`, :func:`long_claims` — each
  variant against its backbone alone, paired by seed, and the claims those differences test;
* :func:`quality_lines` — the full framework against DCP and its quality floor (:mod:`dehazelab.floors`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import pandas as pd

from . import floors, tables
from . import stats as dstats
from .runs.grids import IICL_VARIANTS

__all__ = ["NO_VGG", "J0", "RUN_COLUMNS", "FLOOR_KIND", "backbone_labels", "fine_tunes", "runs_table", "histories",
           "first_seed_models", "results_table", "paired_vs_backbone", "differences_table", "claims_table",
           "long_claims", "quality_lines"]

#: The VGG-19 column of a row whose loss has no contrastive term.
NO_VGG = "— (no contrastive term)"
#: The row of the PRM's own restoration J₀ after its warm-up, before the ARM trains with it.
J0 = "PRM alone (J₀ after warm-up)"
#: Columns of :func:`runs_table`, in order.
RUN_COLUMNS = ["backbone", "variant", "seed", "psnr", "ssim", "delta_e", "n_test", "psnr_j0_warmup", "ssim_j0_warmup",
               "params", "warmup_s", "train_s", "eval_s", "s_per_step", "vgg_used"]
#: The quality floor (:data:`dehazelab.floors.KINDS`) of each backbone's full framework.
FLOOR_KIND = {"aecrnet": "headline", "aodnet": "aodnet"}
_SCORES = {"psnr": "PSNR", "ssim": "SSIM", "delta_e": "ΔE"}
_COMPARED = ("+ PRM", "+ IICL", "+ PRM + IICL")  # each against "backbone"


def backbone_labels(backbones: Sequence[str], ngf: int) -> dict[str, str]:
    """``{backbone: label}`` for ``backbones``, in their order: AECR-Net names its width ``ngf``. An unknown
    backbone raises ``KeyError``."""
    known = {"aecrnet": f"AECR-Net (ngf {ngf})", "aodnet": "AOD-Net"}
    if unknown := [b for b in backbones if b not in known]:
        raise KeyError(f"backbone_labels: unknown backbone(s) {unknown}; known: {sorted(known)}")
    return {b: known[b] for b in backbones}


def fine_tunes(grid_runs) -> list[tuple[Any, Any]]:
    """The ``(grid run, finished run)`` pairs of ``grid_runs`` that are fine-tunes (not an ``L1 base``), in order."""
    return [(g, r) for g, r in grid_runs if not g.variant.endswith("/L1 base")]


def runs_table(grid_runs, steps: int) -> pd.DataFrame:
    """One row per fine-tune of ``grid_runs``, in grid order, with the columns :data:`RUN_COLUMNS`: the grid's
    ``"<backbone>/<variant>"`` split in two, the test scores, J₀'s after the warm-up (``NaN`` without a
    PRM), the timings — ``s_per_step`` the median logged seconds per step, else ``train_s / steps`` — and the
    VGG-19 each run recorded (:data:`NO_VGG` for a variant without the IICL terms)."""
    runs = grid_runs.table()
    runs[["backbone", "variant"]] = runs.variant.str.split("/", n=1, expand=True)
    runs = runs[runs.variant != "L1 base"]  # the starting points: drawn in the learning curves
    runs = runs.rename(columns={"psnr_j0": "psnr_j0_warmup", "ssim_j0": "ssim_j0_warmup", "sec_per_step": "s_per_step"})
    for col in ("psnr_j0_warmup", "ssim_j0_warmup", "s_per_step"):
        runs[col] = runs[col].astype(float)
    runs["s_per_step"] = runs.s_per_step.fillna(runs.train_s / steps)
    runs["vgg_used"] = [r.summary.get("vgg") if IICL_VARIANTS[v]["iicl"] else NO_VGG
                        for (_, r), v in zip(fine_tunes(grid_runs), runs.variant)]
    return runs[RUN_COLUMNS]


def histories(grid_runs) -> dict[tuple[str, str, int], tuple[pd.DataFrame, pd.DataFrame | None]]:
    """``{(backbone, variant, seed): (history, warm-up history or None)}`` of every fine-tune of ``grid_runs``."""
    out = {}
    for g, r in fine_tunes(grid_runs):
        bb, variant = g.variant.split("/", 1)
        out[(bb, variant, g.seed)] = (r.history, r.warmup_history)
    return out


def first_seed_models(grid_runs, backbones: Sequence[str], device) -> dict[tuple[str, str], Any]:
    """``{(backbone, variant): network}``: the first seed's trained network of every variant, on ``device``."""
    return {(bb, v): grid_runs.first(f"{bb}/{v}").model(device=str(device)) for bb in backbones for v in IICL_VARIANTS}


def results_table(runs: pd.DataFrame, refs: Mapping[str, Mapping[str, float]], labels: Mapping[str, str],
                  n_test: int) -> pd.DataFrame:
    """The results: one row per reference of ``refs`` (``{name: {psnr, ssim, delta_e}}``, seeds 0), then per
    backbone of ``labels`` its variants' mean ± 95 % half-width over seeds (:func:`dehazelab.stats.seed_summary`
    of ``runs``, a :func:`runs_table`) with ``#params``, mean ``s/step (joint)``, ``warm-up s`` and
    ``vgg_used``, and — when every "+ PRM" run scored it — the PRM's own J₀ after its warm-up (:data:`J0`).
    A column ``test images`` (``n_test``) sits third."""
    rows = [{"backbone": "—", "variant": k, "seeds": 0, "PSNR": v["psnr"], "SSIM": v["ssim"], "ΔE": v["delta_e"],
             "vgg_used": NO_VGG} for k, v in refs.items()]
    for bb, label in labels.items():
        sel = runs[runs.backbone == bb]
        extra = sel.groupby("variant").agg(**{"#params": ("params", "first"), "s/step (joint)": ("s_per_step", "mean"),
                                              "warm-up s": ("warmup_s", "mean"), "vgg_used": ("vgg_used", "first")})
        rows += dstats.seed_summary(sel, "variant", IICL_VARIANTS, _SCORES).join(extra, on="variant").assign(
            backbone=label).to_dict("records")
        j0 = sel[sel.variant == "+ PRM"].assign(variant=J0)
        if len(j0) and j0.psnr_j0_warmup.notna().all():
            rows += dstats.seed_summary(j0, "variant", [J0], {"psnr_j0_warmup": "PSNR", "ssim_j0_warmup": "SSIM"}).assign(
                backbone=label, vgg_used=NO_VGG).to_dict("records")
    table = pd.DataFrame(rows)
    table.insert(2, "test images", n_test)
    return table


def paired_vs_backbone(runs: pd.DataFrame, backbone: str, variant: str, metric: str) -> tuple[float, float]:
    """Mean ``metric``(variant) − ``metric``(backbone alone) over the seeds of ``backbone``'s runs (same seed =
    same init, data and crops) and its 95 % t half-width (:func:`dehazelab.stats.paired_difference`)."""
    return dstats.paired_difference(runs, "variant", variant, "backbone", metric, where={"backbone": backbone})[:2]


def differences_table(runs: pd.DataFrame, labels: Mapping[str, str], n_seeds: int, vgg_used: str) -> pd.DataFrame:
    """Per backbone of ``labels`` and variant (+ PRM, + IICL, + PRM + IICL): ΔPSNR and ΔSSIM against the
    backbone alone with their 95 % half-widths (:func:`paired_vs_backbone`), the seeds and the VGG-19."""
    rows = []
    for bb, label in labels.items():
        for variant in _COMPARED:
            (dp, hp), (ds, hs) = (paired_vs_backbone(runs, bb, variant, m) for m in ("psnr", "ssim"))
            rows.append({"backbone": label, "variant − backbone": variant, "ΔPSNR": dp, "ΔPSNR ±95%": hp,
                         "ΔSSIM": ds, "ΔSSIM ±95%": hs, "seeds": n_seeds, "vgg_used": vgg_used})
    return pd.DataFrame(rows)


def claims_table(runs: pd.DataFrame, labels: Mapping[str, str], claims: Sequence[tuple[str, str]], evidence: str,
                 n_seeds: int, vgg_used: str) -> pd.DataFrame:
    """One row per backbone of ``labels`` and ``(variant, claim)`` of ``claims``: the paired difference of
    the variant against the backbone alone in PSNR and SSIM as text, each with its verdict
    (:func:`dehazelab.stats.verdict`), and the difference these seeds could detect."""
    rows = []
    for bb, label in labels.items():
        for variant, claim in claims:
            (dp, hp), (ds, hs) = (paired_vs_backbone(runs, bb, variant, m) for m in ("psnr", "ssim"))
            rows.append({"claim": claim, "backbone": label, "comparison": f"{variant} vs backbone",
                         "paper's evidence": evidence,
                         "ours: ΔPSNR (95% CI)": f"{dp:+.2f} dB ± {hp:.2f}", "at this size (PSNR)": dstats.verdict(dp, hp),
                         "ours: ΔSSIM (95% CI)": f"{ds:+.4f} ± {hs:.4f}", "at this size (SSIM)": dstats.verdict(ds, hs),
                         "detectable with these seeds": tables.detectable_text(hp, n_seeds),
                         "seeds": n_seeds, "vgg_used": vgg_used})
    return pd.DataFrame(rows)


def long_claims(runs: pd.DataFrame, labels: Mapping[str, str], claims: Sequence[tuple[str, str]], evidence: str,
                n_seeds: int, vgg_used: str) -> pd.DataFrame:
    """The differences of :func:`claims_table` in the project's long claims format
    (:class:`dehazelab.stats.ClaimsTable`), one row per backbone, claim and metric (PSNR in dB, then SSIM)."""
    long = dstats.ClaimsTable(paper="IICL (ICASSP'23, reconstruction)", notebook="04_iicl")
    for bb, label in labels.items():
        for variant, claim in claims:
            for metric, unit in (("PSNR", "dB"), ("SSIM", "")):
                d, h = paired_vs_backbone(runs, bb, variant, metric.lower())
                long.add(claim, evidence, f"{variant} − backbone", metric, unit, d, h, n_seeds,
                         setting=f"{label}; VGG-19: {vgg_used}")
    return long.frame()


def quality_lines(table: pd.DataFrame, refs: Mapping[str, Mapping[str, float]], labels: Mapping[str, str]) -> str:
    """Markdown bullets, one per backbone's "+ PRM + IICL" row of ``table`` (a :func:`results_table`): its PSNR
    and SSIM against DCP's (``refs["DCP"]``) and whether it meets its quality floor (:data:`FLOOR_KIND`,
    :func:`dehazelab.floors.check`, with the hazy input ``refs["hazy input"]``)."""
    kind_of = {label: FLOOR_KIND[bb] for bb, label in labels.items()}
    dcp, lines = refs["DCP"], []
    for r in table[table.variant == "+ PRM + IICL"].to_dict("records"):
        kind = kind_of[r["backbone"]]
        met, why = floors.check(kind, {"psnr": r["PSNR"], "ssim": r["SSIM"], "delta_e": r["ΔE"]}, refs["hazy input"], dcp)
        lines.append(f"* **Quality**: {r['backbone']} + PRM + IICL {r['PSNR']:.2f} dB / SSIM {r['SSIM']:.3f} against DCP "
                     f"{dcp['psnr']:.2f} dB / {dcp['ssim']:.3f}: {r['PSNR'] - dcp['psnr']:+.2f} dB, SSIM "
                     f"{r['SSIM'] - dcp['ssim']:+.3f}; its quality floor ({kind}): {met}" + (f" ({why})." if why else "."))
    return "\n".join(lines)
