"""CUT's Table 1 and its cost claims, assembled from our runs (d2l style: defined once here, called from
notebook 02).

* :func:`table1` — our rows of CUT's Table 1 (quality and training speed as mean ± 95 % over seeds,
  :func:`dehazelab.stats.seed_summary`; cost per iteration measured in a fresh process,
  :mod:`dehazelab.cost`), the paper's quoted columns beside them, and untrained references below;
* :func:`interval_text` — "± half-width" of a claim, or "(one seed: no interval)";
* :func:`official_cost_claims` — the time and memory claims at the official architecture, judged on
  repeated, interleaved measurements (:func:`dehazelab.stats.repeated_verdict`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

from . import stats as dstats

__all__ = ["TABLE1_METRICS", "table1", "interval_text", "official_cost_claims", "OFFICIAL_SETTING"]

#: Run columns averaged over seeds in :func:`table1`, and their labels.
TABLE1_METRICS = {"psnr": "PSNR", "ssim": "SSIM", "delta_e": "ΔE", "s_per_iter": "train sec/iter"}
#: The cost columns of a :func:`dehazelab.cost.cost_table` the claims and :func:`table1` read.
TIME, MEMORY = "sec/iter (median)", "peak mem above baseline (MB)"
#: The configuration the official-architecture claims are about.
OFFICIAL_SETTING = "official architecture (ResNet-9, ngf 64, 128², batch 1)"


def table1(runs: pd.DataFrame, costs: pd.DataFrame, refs: Mapping[str, Mapping[str, float]],
           quoted: Mapping[str, Mapping[str, Any]], labels: Mapping[str, str]) -> pd.DataFrame:
    """One row per method of ``labels`` (``{method: row label}``, in order), then one per reference.

    A method's row: its label, the number of seeds and, over its seeds in ``runs`` (one row per method and
    seed, as :func:`dehazelab.unpaired_runs.runs_table` gives), the mean and 95 % half-width of PSNR, SSIM,
    ΔE and the training ``s_per_iter`` (:data:`TABLE1_METRICS`); its ``sec/iter`` and ``peak mem MB`` from
    ``costs`` (a cost table indexed by method); the parameters of its generator and of all its networks;
    and the paper's numbers ``quoted[label]`` as ``"<column> (quoted)"``. A reference row
    (``refs[name]`` = ``{"psnr", "ssim", "delta_e"}``, e.g. the hazy input) is ``"<name> (reference)"``
    with 0 seeds and its three scores. A method without runs raises ``KeyError``."""
    summary = dstats.seed_summary(runs, "method", list(labels), TABLE1_METRICS).set_index("method")
    rows = []
    for name, label in labels.items():
        s, c, first = summary.loc[name], costs.loc[name], runs[runs.method == name].iloc[0]
        rows.append({"method": label, "seeds": int(s["seeds"]), "PSNR": s["PSNR"], "PSNR ±95%": s["PSNR ±95%"],
                     "SSIM": s["SSIM"], "SSIM ±95%": s["SSIM ±95%"], "ΔE": s["ΔE"], "ΔE ±95%": s["ΔE ±95%"],
                     "sec/iter": c[TIME], "peak mem MB": c[MEMORY],
                     "train sec/iter": s["train sec/iter"], "train sec/iter ±95%": s["train sec/iter ±95%"],
                     "#params G": int(first.params_G), "#params all nets": int(first.params_all),
                     **{f"{k} (quoted)": v for k, v in quoted[label].items()}})
    for k, v in refs.items():
        rows.append({"method": f"{k} (reference)", "seeds": 0, "PSNR": v["psnr"], "SSIM": v["ssim"],
                     "ΔE": v["delta_e"]})
    return pd.DataFrame(rows)


def interval_text(half: float, fmt: str) -> str:
    """``"± <half>"`` in format ``fmt`` (e.g. ``".2f"``), or ``"(one seed: no interval)"`` when ``half`` is
    not finite (one seed gives no 95 % interval)."""
    return f"± {half:{fmt}}" if np.isfinite(half) else "(one seed: no interval)"


def _repeat_range(v: pd.Series, digits: int, with_range: bool) -> str:
    """The median of repeated measurements ``v``, with ``[min–max]`` when ``with_range``."""
    med = f"{v.median():.{digits}f}"
    return f"{med} [{v.min():.{digits}f}–{v.max():.{digits}f}]" if with_range else med


def official_cost_claims(cost_repeats: pd.DataFrame, long: dstats.ClaimsTable, evidence: Mapping[str, str],
                         repeats: int, ours: str = "this notebook") -> list[tuple[str, str, str, str]]:
    """The cost claims at the official architecture, from the rows of ``cost_repeats`` (a
    :func:`dehazelab.cost.cost_table` with a ``repeat`` column) whose ``config`` is not ``ours``: "CUT uses
    less time and memory than CycleGAN" and "FastCUT is faster than CUT", each judged by
    :func:`dehazelab.stats.repeated_verdict` (held only when every interleaved repeat agrees).

    Adds three rows to ``long`` — time and memory of CycleGAN − CUT, time of CUT − FastCUT, each the
    difference of the medians over the repeats, no interval — with ``evidence["time"]``,
    ``evidence["memory"]`` and ``evidence["faster"]`` (the paper's quoted numbers), and returns the two
    short-table rows ``(claim, evidence, ours, verdict)``: medians with their [min–max] ranges."""
    o = cost_repeats[cost_repeats.config != ours]
    per = {m: o[o.method == m].sort_values("repeat") for m in ("cut", "fastcut", "cyclegan")}
    if any(len(v) != repeats for v in per.values()):
        raise ValueError(f"official_cost_claims: expected {repeats} repeat(s) per method, got "
                         f"{ {m: len(v) for m, v in per.items()} }")
    time_ = {m: _repeat_range(v[TIME], 2, True) for m, v in per.items()}
    mem = {m: _repeat_range(v[MEMORY], 0, False) for m, v in per.items()}
    med = {m: {"time": float(v[TIME].median()), "memory": float(v[MEMORY].median())} for m, v in per.items()}
    vt, vm = (dstats.repeated_verdict(per["cut"][c], per["cyclegan"][c]) for c in (TIME, MEMORY))
    vf = dstats.repeated_verdict(per["fastcut"][TIME], per["cut"][TIME])
    setting = f"{OFFICIAL_SETTING}, {repeats} interleaved repeat(s)"
    nan = float("nan")
    long.add("CUT uses less time than CycleGAN", evidence["time"], "CycleGAN − CUT (median of repeats)", "sec/iter",
             "s", med["cyclegan"]["time"] - med["cut"]["time"], nan, repeats, verdict=vt, setting=setting)
    long.add("CUT uses less memory than CycleGAN", evidence["memory"], "CycleGAN − CUT (median of repeats)",
             "peak memory", "MB", med["cyclegan"]["memory"] - med["cut"]["memory"], nan, repeats, verdict=vm,
             setting=setting)
    long.add("FastCUT is faster than CUT", evidence["faster"], "CUT − FastCUT (median of repeats)", "sec/iter", "s",
             med["cut"]["time"] - med["fastcut"]["time"], nan, repeats, verdict=vf, setting=setting)
    return [("CUT uses less time and memory than CycleGAN — official architecture", "as above",
             f"{time_['cut']} vs {time_['cyclegan']} s/iter (median [range]); {mem['cut']} vs {mem['cyclegan']} MB",
             f"time: {vt}; memory: {vm}"),
            ("FastCUT is faster than CUT — official architecture", "as above",
             f"{time_['fastcut']} vs {time_['cut']} s/iter (median [range])", vf)]
