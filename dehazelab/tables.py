"""Assembling a paper's tables in a notebook (d2l style: defined once here, called from the notebooks).

A paper table puts our rows (means over seeds, :func:`dehazelab.stats.seed_summary`) beside the paper's
quoted numbers (:func:`dehazelab.papers.quoted`), and names the setting that produced ours::

    t = tables.seed_table(runs, ["AOD-Net", "+ CR (1:1)"], uses_cr={...}, vgg_used="random")
    t = tables.add_quoted(t, papers.quoted("cr-table1"), {"paper PSNR (quoted)": "SOTS-indoor PSNR"})

plus the small tables every paper notebook prints: its settings beside the paper's, a short claims
table, and the cost of a training step.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from . import stats as dstats

__all__ = ["settings_table", "seed_table", "add_quoted", "mean_scores_row", "baseline_row", "ClaimRows",
           "performance_row", "tagged_assumptions"]

NO_CR = "— (no CR)"


def settings_table(rows: Iterable[tuple[str, str, Any]]) -> pd.DataFrame:
    """``(setting, paper, this run)`` rows as a frame; the third value is shown with ``str``."""
    return pd.DataFrame([(s, p, str(v)) for s, p, v in rows], columns=["setting", "paper", "this run"])


def seed_table(runs: pd.DataFrame, names: Sequence[str], uses_cr: Mapping[str, bool], vgg_used: str,
               key: str = "config") -> pd.DataFrame:
    """Mean ± 95 % half-width over seeds per row (``dehazelab.stats.seed_summary``), in the order of
    ``names``, with the row's ``#params`` (its first run's), mean ``s/step`` and the VGG-19 its CR used
    (``vgg_used`` for a row whose ``uses_cr`` is true, else "— (no CR)"). The key column is named ``row``.
    PSNR, SSIM and, when every run has one (column ``delta_e``), the mean CIEDE2000 colour error ΔE."""
    metrics = {"psnr": "PSNR", "ssim": "SSIM"}
    if "delta_e" in runs and runs["delta_e"].notna().all():
        metrics["delta_e"] = "ΔE"
    t = dstats.seed_summary(runs, key, names, metrics).rename(columns={key: "row"})
    first = runs.groupby(key).first()
    t["#params"] = [int(first.loc[n, "params"]) for n in names]
    t["s/step"] = [runs[runs[key] == n].s_per_step.mean() for n in names]
    t["VGG-19 of CR"] = [vgg_used if uses_cr[n] else NO_CR for n in names]
    return t


def mean_scores_row(row: str, scores: Sequence[tuple[float, float]], **extra: Any) -> dict[str, Any]:
    """A table row for a method that is not trained (seeds 0): the mean of ``(psnr, ssim)`` scores."""
    return {"row": row, "seeds": 0, "PSNR": np.mean([s[0] for s in scores]),
            "SSIM": np.mean([s[1] for s in scores]), **extra}


def baseline_row(row: str, dehaze: Callable[[np.ndarray], np.ndarray], test_set, **extra: Any) -> dict[str, Any]:
    """:func:`mean_scores_row` of an untrained method on every item of ``test_set`` (``hazy``/``clear``
    CHW tensors): ``dehaze`` maps an HWC float image to its HWC restoration, scored by
    :func:`dehazelab.metrics.psnr` and :func:`dehazelab.metrics.ssim` against the clear image."""
    from . import metrics as M

    scores = []
    for i in range(len(test_set)):
        it = test_set[i]
        out, clear = dehaze(it["hazy"].permute(1, 2, 0).numpy()), it["clear"].permute(1, 2, 0).numpy()
        scores.append((M.psnr(out, clear), M.ssim(out, clear)))
    return mean_scores_row(row, scores, **extra)


def add_quoted(table: pd.DataFrame, quoted: Mapping[str, Mapping[str, Any]], columns: Mapping[str, str],
               row_col: str = "row") -> pd.DataFrame:
    """Append the paper's quoted numbers: ``columns`` maps a new column to the quoted field, looked up by
    each row's ``row_col``; a row the paper does not quote raises ``KeyError``. Returns ``table``."""
    for new, field in columns.items():
        table[new] = [quoted[r][field] for r in table[row_col]]
    return table


def detectable_text(half_width: float, n: int, unit: str = "dB", digits: int = 2) -> str:
    """"≥ x.xx dB": the smallest true PSNR difference ``n`` paired seeds detect at 80 % power
    (:func:`dehazelab.stats.detectable_difference`), from the seed-to-seed spread behind a 95 %
    half-width ``half_width``; "—" when it cannot be told (one seed)."""
    import math

    from scipy.stats import t

    if n < 2 or not math.isfinite(half_width):
        return "—"
    sd = half_width * math.sqrt(n) / t.ppf(0.975, n - 1)
    return f"≥ {dstats.detectable_difference(sd, n):.{digits}f}" + (f" {unit}" if unit else "")


class ClaimRows:
    """The short claims table of a notebook (one row per claim, ``columns``) filled alongside the long
    one (:class:`dehazelab.stats.ClaimsTable`, one row per compared pair) from paired PSNR differences."""

    columns = ["claim", "paper's evidence", "ours (PSNR difference, 95% CI)", "at this size",
               "detectable with these seeds"]

    def __init__(self, runs: pd.DataFrame, long: dstats.ClaimsTable, key: str = "config", metric: str = "psnr"):
        self.runs, self.long, self.key, self.metric = runs, long, key, metric
        self.rows: list[tuple[str, str, str, str, str]] = []

    def compare(self, a: str, b: str) -> tuple[float, float, int]:
        """Mean ``metric(a) − metric(b)`` over seeds, paired, with its 95 % t half-width and the seed count."""
        return dstats.paired_difference(self.runs, self.key, a, b, self.metric)

    def add_pair(self, claim: str, evidence: str, a: str, b: str, comparison: str) -> tuple[float, float, int]:
        """The claim "``a`` beats ``b``" as one short row and one long row; its verdict is
        :func:`dehazelab.stats.verdict` of the paired PSNR difference."""
        d, h, n = self.compare(a, b)
        self.rows.append((claim, evidence, f"{d:+.2f} dB ± {h:.2f}", dstats.verdict(d, h), detectable_text(h, n)))
        self.long.add(claim, evidence, comparison, "PSNR", "dB", d, h, n)
        return d, h, n

    def add_row(self, claim: str, evidence: str, ours: str, verdict: str, detectable: str = "") -> None:
        """A short row built by the caller (e.g. an ordering claim of two differences)."""
        self.rows.append((claim, evidence, ours, verdict, detectable))

    def frame(self, **constant: Any) -> pd.DataFrame:
        """The short table, with a constant column per keyword (e.g. the VGG-19 used)."""
        df = pd.DataFrame(self.rows, columns=self.columns)
        for k, v in constant.items():
            df[k] = v
        return df


def performance_row(label: str, seconds: float, flops: float, peak: float) -> dict[str, Any]:
    """One row of a performance table: seconds and GFLOP of a step, its GFLOP/s and its fraction of
    ``peak`` (FLOP/s)."""
    return {"step": label, "s/step": seconds, "GFLOP/step": flops / 1e9, "GFLOP/s": flops / 1e9 / seconds,
            "utilisation of fp32 peak": flops / seconds / peak}


def time_step(one: Callable[[int], Any], batch: int, warmup: bool = True) -> tuple[float, float]:
    """Seconds of one timed call ``one(batch)`` (a training step on the first ``batch`` samples) and its
    FLOPs, for a performance table.

    FLOPs are counted by torch's ``FlopCounterMode`` at batch 1 and 2 and extrapolated linearly to
    ``batch`` (a convolution network's cost is linear in the batch), so that a large step is not run a
    second time under the counter; for ``batch <= 4`` it is also counted directly and the extrapolation
    checked against it (1 %). With ``warmup`` one untimed step runs before the timed one.
    """
    from torch.utils.flop_counter import FlopCounterMode

    counts = {}
    for b in sorted({1, 2, batch} if batch <= 4 else {1, 2}):
        with FlopCounterMode(display=False) as fc:
            one(b)
        counts[b] = fc.get_total_flops()
    flops = counts[1] + (batch - 1) * (counts[2] - counts[1])
    if batch in counts:
        assert abs(flops - counts[batch]) <= 0.01 * counts[batch], (flops, counts)
    if warmup:
        one(batch)
    t0 = time.perf_counter()
    one(batch)
    return time.perf_counter() - t0, flops


__all__.append("time_step")


_TAGGED = re.compile(r"^\* \[([^\]]*)\]\s*(.*?)(?=^\* |^\s*$|\Z)", re.M | re.S)


def tagged_assumptions(module: Any, component: str) -> list[tuple[str, str, str]]:
    """The ``* [tag] text`` bullets of ``module``'s docstring as ``(component, source, assumption)`` rows.

    A reconstruction's modules tag each design decision where it is made (``[abstract]``, ``[§4.3.n]`` for a
    recommendation of the method spec, ``[our choice]``), so a notebook's assumptions table is read from the
    code and cannot drift from it. Source: ``abstract``, ``methods.md §4.3 rec. n``, ``our choice``, or the
    tag itself. A module with no tagged bullet raises ``ValueError`` (a renamed tag would otherwise empty the
    table silently)."""
    rows = []
    for m in _TAGGED.finditer(module.__doc__ or ""):
        tag, text = m.group(1).strip(), " ".join(m.group(2).split())
        if tag.startswith("abstract"):
            source = "abstract"
        elif tag.startswith("§4.3"):
            rec = tag.split(".")[2] if tag.count(".") >= 2 else ""
            source = f"methods.md §4.3 rec. {rec}".strip()
        elif tag.startswith("our choice"):
            source = "our choice"
        else:
            source = tag
        rows.append((component, source, text))
    if not rows:
        raise ValueError(f"{getattr(module, '__name__', module)}: no '* [tag] text' bullet in its docstring")
    return rows
