"""Seed statistics and the claims verdict rule shared by every notebook.

Every notebook compares methods trained with the same seeds (same seed = same initialisation, data
order and crops), so differences are **paired by seed**: ``d_s = metric(a, s) − metric(b, s)``, and
the claim is judged on the 95 % Student-t interval of the mean of ``d_s``:

* **held** — the interval excludes 0 in the claimed direction;
* **not held (the opposite, beyond seed noise)** — it excludes 0 the other way;
* **not shown at this size (same / opposite direction, within seed noise)** — it contains 0;
* **undetermined (one seed)** — with one seed there is no interval.

:class:`ClaimsTable` collects one row per (claim, metric) in a long format that notebook 90 reads
from every paper notebook (``claims_long.csv``), so the cross-paper claims table is assembled from
numbers, not from formatted strings.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats as _st

__all__ = [
    "ci95_half",
    "mean_ci",
    "seed_summary",
    "paired_difference",
    "verdict",
    "verdict_category",
    "VERDICT_CATEGORIES",
    "Claim",
    "ClaimsTable",
    "CLAIM_COLUMNS",
]

#: The categories :func:`verdict_category` maps a verdict to, in display order.
VERDICT_CATEGORIES: tuple[str, ...] = ("held", "not shown", "not held", "undetermined")


def ci95_half(x: Iterable[float]) -> float:
    """Half-width of the 95 % Student-t interval of the mean of ``x`` (NaNs dropped); NaN for n < 2."""
    s = pd.Series(list(x) if not isinstance(x, pd.Series) else x, dtype=float).dropna()
    n = len(s)
    if n < 2:
        return float("nan")
    return float(_st.t.ppf(0.975, n - 1) * s.std(ddof=1) / math.sqrt(n))


def mean_ci(x: Iterable[float]) -> tuple[float, float]:
    """``(mean, 95 % half-width)`` of ``x`` (NaNs dropped; half-width NaN for n < 2)."""
    s = pd.Series(list(x) if not isinstance(x, pd.Series) else x, dtype=float).dropna()
    return (float(s.mean()) if len(s) else float("nan")), ci95_half(s)


def seed_summary(runs: pd.DataFrame, key: str, names: Iterable[str], metrics: Mapping[str, str] | None = None,
                 seed_col: str = "seed") -> pd.DataFrame:
    """One row per name of ``names`` (in that order): the number of seeds and, for each metric column,
    its mean over seeds and 95 % Student-t half-width (``"<label> ±95%"``; NaN with one seed).

    ``metrics`` maps a column of ``runs`` to its label (default ``psnr → PSNR``, ``ssim → SSIM``). A name
    with no row raises ``KeyError`` — a typo in a notebook fails loudly instead of giving NaN."""
    metrics = dict(metrics or {"psnr": "PSNR", "ssim": "SSIM"})
    rows = []
    for name in names:
        g = runs[runs[key] == name]
        if g.empty:
            raise KeyError(f"no run with {key} == {name!r}; have {sorted(map(str, runs[key].unique()))}")
        row: dict[str, Any] = {key: name, "seeds": int(g[seed_col].nunique())}
        for col, label in metrics.items():
            row[label], row[f"{label} ±95%"] = mean_ci(g[col])
        rows.append(row)
    return pd.DataFrame(rows)


def paired_difference(runs: pd.DataFrame, key: str, a: str, b: str, metric: str, *, sign: float = 1.0,
                      seed_col: str = "seed", where: dict | None = None) -> tuple[float, float, int]:
    """Mean of ``sign·(metric[a] − metric[b])`` over the seeds both have, its 95 % half-width, n.

    ``runs`` has one row per (``key`` value, seed); ``where`` filters it first (column → value).
    A seed present for only one side is dropped (paired comparison). Raises ``KeyError`` naming
    the missing row/column, so a typo in a notebook fails loudly instead of giving NaN.
    """
    for col in (key, metric, seed_col, *(where or {})):
        if col not in runs.columns:
            raise KeyError(f"paired_difference: runs has no column {col!r} (columns: {list(runs.columns)})")
    sel = runs
    for col, val in (where or {}).items():
        sel = sel[sel[col] == val]
    sides = []
    for name in (a, b):
        g = sel[sel[key] == name]
        if g.empty:
            raise KeyError(f"paired_difference: no runs with {key} == {name!r}"
                           + (f" where {where}" if where else ""))
        sides.append(g.set_index(seed_col)[metric])
    d = (sign * (sides[0] - sides[1])).dropna()
    m, h = mean_ci(d)
    return m, h, int(len(d))


def verdict(diff: float, half: float) -> str:
    """The verdict for a claimed *positive* difference ``diff`` with 95 % half-width ``half``."""
    if half is None or (isinstance(half, float) and math.isnan(half)):
        return "undetermined (one seed)"
    if abs(diff) > half:
        return "held" if diff > 0 else "not held (the opposite, beyond seed noise)"
    return "not shown at this size (" + ("same" if diff > 0 else "opposite") + " direction, within seed noise)"


def repeated_verdict(a, b) -> str:
    """The verdict on "``a`` is lower than ``b``" from repeated, interleaved measurements of both
    (e.g. seconds per iteration): *held* when ``a`` is lower in every repeat, *not held* when higher in
    every repeat, *not shown* when the repeats disagree; one repeat says so."""
    below = [bool(x < y) for x, y in zip(list(a), list(b), strict=True)]
    n = len(below)
    if n == 0:
        raise ValueError("repeated_verdict: no measurements")
    if n == 1:
        return ("held" if below[0] else "not held") + " (one measurement)"
    if all(below):
        return f"held (in all {n} repeats)"
    if not any(below):
        return f"not held (the opposite in all {n} repeats)"
    return f"not shown (the repeats disagree: lower in {sum(below)} of {n})"


def verdict_category(text: str) -> str:
    """Map a verdict string (e.g. from :func:`verdict`) to one of :data:`VERDICT_CATEGORIES`."""
    t = str(text).strip().lower()
    for cat in ("not held", "not shown", "undetermined", "held"):
        if t.startswith(cat):
            return cat
    raise ValueError(f"not a verdict: {text!r} (expected it to start with one of {VERDICT_CATEGORIES})")


@dataclass
class Claim:
    """One (claim, metric) row of a paper's claims.

    ``estimate`` is oriented so that positive supports the claim (e.g. ``CUT − CycleGAN`` in PSNR,
    ``CycleGAN − CUT`` in sec/iter); ``ci95`` is its half-width (NaN: one measurement, no
    interval); ``verdict`` defaults to :func:`verdict` of the two.
    """

    paper: str
    claim: str
    evidence: str
    comparison: str
    metric: str
    unit: str
    estimate: float
    ci95: float
    n: int
    verdict: str = ""
    notebook: str = ""
    setting: str = ""

    def __post_init__(self) -> None:
        self.estimate = float(self.estimate)
        self.ci95 = float("nan") if self.ci95 is None else float(self.ci95)
        if not self.verdict:
            self.verdict = verdict(self.estimate, self.ci95)
        verdict_category(self.verdict)  # validates


#: Columns of ``claims_long.csv`` (and of :meth:`ClaimsTable.frame`).
CLAIM_COLUMNS: tuple[str, ...] = tuple(Claim.__dataclass_fields__) + ("category",)


class ClaimsTable:
    """Rows of :class:`Claim` for one notebook; ``frame()`` is the long table notebook 90 reads."""

    def __init__(self, paper: str, notebook: str):
        self.paper, self.notebook = paper, notebook
        self.rows: list[Claim] = []

    def add(self, claim: str, evidence: str, comparison: str, metric: str, unit: str, estimate: float,
            ci95: float, n: int, verdict: str = "", setting: str = "") -> Claim:
        c = Claim(self.paper, claim, evidence, comparison, metric, unit, estimate, ci95, int(n), verdict,
                  self.notebook, setting)
        self.rows.append(c)
        return c

    def frame(self) -> pd.DataFrame:
        df = pd.DataFrame([asdict(c) for c in self.rows], columns=list(CLAIM_COLUMNS[:-1]))
        df["category"] = [verdict_category(v) for v in df["verdict"]]
        return df


def format_estimate(estimate: float, ci95: float, unit: str = "", digits: int = 2) -> str:
    """``"+0.09 dB ± 0.67"``; ``"(no interval)"`` in place of the interval when it is NaN (one seed, or one measurement)."""
    u = f" {unit}" if unit else ""
    if ci95 is None or not np.isfinite(ci95):
        return f"{estimate:+.{digits}f}{u} (no interval)"
    return f"{estimate:+.{digits}f}{u} ± {ci95:.{digits}f}"


__all__.append("format_estimate")


def ordering_verdict(d_ge: float, h_ge: float, d_gt: float, h_gt: float, what_gt: str = "") -> str:
    """Verdict on an ordering claim ``A ≥ B > C`` from two paired differences: ``d_ge = A − B`` and
    ``d_gt = B − C`` with their 95 % half-widths. ``A ≥ B`` is refuted only by ``A`` significantly below
    ``B``; ``B > C`` needs its interval above 0. One seed (``h_ge`` NaN) is "undetermined (one seed)";
    ``what_gt`` names ``B > C`` in the "not shown" verdict (e.g. ``"1:1 > r:1"``)."""
    if np.isnan(h_ge):
        return "undetermined (one seed)"
    if d_ge < -h_ge or d_gt < -h_gt:
        return "not held (the opposite, beyond seed noise)"
    if d_gt > h_gt:
        return "held"
    return f"not shown at this size ({what_gt} within seed noise)"


__all__.append("ordering_verdict")


def detectable_difference(sd: float, n: int, power: float = 0.8, alpha: float = 0.05) -> float:
    """Smallest true mean difference that ``n`` paired seeds with seed-to-seed standard deviation
    ``sd`` (of the per-seed differences) detect with a two-sided paired t-test at level ``alpha``
    with probability ``power``: ``(t₁₋α/₂,ₙ₋₁ + t_power,ₙ₋₁) · sd / √n`` (the usual t approximation of
    the non-central t). With ``power=0.5`` it is the 95 % half-width itself. NaN for n < 2.
    """
    from scipy.stats import t

    if n < 2 or not math.isfinite(sd):
        return float("nan")
    return float((t.ppf(1 - alpha / 2, n - 1) + t.ppf(power, n - 1)) * sd / math.sqrt(n))


__all__.append("detectable_difference")


#: One verdict per claim (:func:`claim_verdicts`): ``mixed`` = held in one setting or metric, not held in another.
CLAIM_CATEGORIES: tuple[str, ...] = ("held", "mixed", "not shown", "not held", "undetermined")


def combine_categories(categories: Iterable[str]) -> str:
    """One category for a claim tested in several settings or metrics (rows of ``claims_long``): ``held``
    when some row is held and none is not held, ``not held`` in the opposite case, ``mixed`` when both
    occur, else ``not shown`` (or ``undetermined`` when every row is)."""
    cats = set(categories)
    if "held" in cats and "not held" in cats:
        return "mixed"
    if "held" in cats:
        return "held"
    if "not held" in cats:
        return "not held"
    return "undetermined" if cats == {"undetermined"} else "not shown"


def claim_verdicts(claims: pd.DataFrame) -> pd.DataFrame:
    """One row per ``(paper, claim)`` of a stacked ``claims_long`` table: how many rows (settings ×
    metrics) tested it, their categories, and the combined category of :func:`combine_categories` —
    so a claim measured at two settings or on two metrics is counted once."""
    g = claims.groupby(["paper", "claim"], sort=False)["category"]
    return pd.DataFrame({"rows": g.size(), "categories": g.agg(lambda c: ", ".join(sorted(set(c)))),
                         "category": g.agg(combine_categories)}).reset_index()


__all__ += ["CLAIM_CATEGORIES", "combine_categories", "claim_verdicts"]
