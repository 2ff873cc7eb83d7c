"""Learning curves: test (or validation) quality against training CPU-minutes, from run histories.

A run trained with ``train.eval_every > 0`` logs PSNR / SSIM / colour error (``eval_delta_e``, mean
CIEDE2000) at every evaluation. :func:`learning_curve` turns its ``history.csv`` into one row per
evaluation with the training minutes spent up to it (the summed per-step times of the logged windows;
evaluation time is not counted; a staged run's PRM warm-up time is added in front).
:func:`plot_learning_curves` draws several variants (mean over seeds, min–max band) with reference
lines such as the hazy input and the dark channel prior. :func:`plot_losses` draws the training losses
a run logged, one panel per run.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

__all__ = ["learning_curve", "training_minutes", "plot_learning_curves", "continued", "describe", "plot_losses",
           "CURVE_METRICS"]

#: (column, axis label) of the three quality measures, in plotting order.
CURVE_METRICS = (("psnr", "PSNR (dB) ↑"), ("ssim", "SSIM ↑"), ("delta_e", "colour error ΔE2000 ↓"))


def training_minutes(h: pd.DataFrame) -> pd.Series:
    """Cumulative training minutes at each history row: each window's mean seconds per step times its steps."""
    sec = h["time_per_step"] if "time_per_step" in h else h["sec_per_step"]  # paired | unpaired trainer
    window = h["step"].diff().fillna(h["step"].iloc[0])
    return (sec * window).cumsum() / 60.0


def learning_curve(history: pd.DataFrame, warmup: pd.DataFrame | None = None) -> pd.DataFrame:
    """``step``, ``cpu_min``, ``psnr``, ``ssim``, ``delta_e`` at each evaluation of a run's history.

    ``warmup``: the history of a staged run's first stage; its training time is added to ``cpu_min``.
    A history without evaluations gives an empty frame (train with ``eval_every`` to get a curve).
    """
    if history.empty:
        return pd.DataFrame(columns=["step", "cpu_min", "psnr", "ssim", "delta_e"])
    h = history.copy()
    h["cpu_min"] = training_minutes(h)
    if warmup is not None and not warmup.empty:
        h["cpu_min"] += float(training_minutes(warmup).iloc[-1])
    if "psnr" not in h:
        return pd.DataFrame(columns=["step", "cpu_min", "psnr", "ssim", "delta_e"])
    ev = h.dropna(subset=["psnr"])
    out = pd.DataFrame({"step": ev["step"].astype(int), "cpu_min": ev["cpu_min"], "psnr": ev["psnr"], "ssim": ev["ssim"],
                        "delta_e": ev["eval_delta_e"] if "eval_delta_e" in ev else np.nan})
    return out.reset_index(drop=True)


def continued(curve: pd.DataFrame, base: pd.DataFrame) -> pd.DataFrame:
    """``curve`` of a run that started from the weights of the run whose curve is ``base``, on the
    base's axes: its steps and CPU-minutes counted on from the base's last evaluation, which opens it."""
    if base.empty or curve.empty:
        return curve
    last = base.iloc[[-1]]
    shifted = curve.assign(step=curve["step"] + int(last["step"].iloc[0]),
                           cpu_min=curve["cpu_min"] + float(last["cpu_min"].iloc[0]))
    return pd.concat([last, shifted], ignore_index=True)


def plot_learning_curves(curves: Mapping[str, Sequence[pd.DataFrame]], refs: Mapping[str, Mapping[str, float]] | None = None,
                         title: str = "", axes=None):
    """One panel per metric of :data:`CURVE_METRICS`: for each variant (``curves[label]`` = one curve per
    seed, from :func:`learning_curve`) the mean over seeds at each evaluation step against the mean
    CPU-minutes, with the seeds' min–max as a band; ``refs`` (label -> ``{"psnr", "ssim", "delta_e"}``)
    as horizontal dashed lines. ``title`` is the figure's title, or the row's when ``axes`` (one row of a larger
    figure) is given. Returns the figure."""
    import matplotlib.pyplot as plt

    own_figure = axes is None
    if own_figure:
        fig, axes = plt.subplots(1, len(CURVE_METRICS), figsize=(4.6 * len(CURVE_METRICS), 3.6))
    else:
        fig = axes[0].figure
    styles = [":", "--", "-."]
    for ax, (col, label) in zip(axes, CURVE_METRICS):
        for name, seeds in curves.items():
            seeds = [c for c in seeds if len(c)]
            if not seeds:
                continue
            df = pd.concat([c.assign(seed=i) for i, c in enumerate(seeds)])
            g = df.groupby("step")
            x, m = g["cpu_min"].mean(), g[col].mean()
            line, = ax.plot(x, m, marker=".", label=f"{name} ({len(seeds)} seed{'s' if len(seeds) > 1 else ''})")
            if len(seeds) > 1:
                ax.fill_between(x, g[col].min(), g[col].max(), color=line.get_color(), alpha=0.15, lw=0)
        for i, (name, ref) in enumerate((refs or {}).items()):
            if col in ref and ref[col] is not None and np.isfinite(ref[col]):
                ax.axhline(ref[col], color="k", ls=styles[i % len(styles)], lw=1, label=name)
        ax.set_xlabel("training CPU-minutes (1 thread)")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=7)
    if title and own_figure:
        fig.suptitle(title)
    elif title:  # one row of a larger figure: the title names this row (a suptitle would name the whole figure)
        axes[0].set_title(title, loc="left", fontsize=10, fontweight="bold")
    fig.tight_layout()
    return fig


def describe(curves: Mapping[str, Sequence[pd.DataFrame]], refs: Mapping[str, Mapping[str, float]] | None = None) -> str:
    """Markdown bullets, one per variant of ``curves`` (as :func:`plot_learning_curves` takes them): the
    seed mean at the last evaluation (PSNR, SSIM, ΔE, CPU-minutes, steps), what the second half of the
    training time added, and the difference to each reference (e.g. hazy input, DCP)."""
    out = []
    for name, seeds in curves.items():
        seeds = [c for c in seeds if len(c)]
        if not seeds:
            out.append(f"* **{name}**: no evaluation during training (a run with `eval_every` draws a curve).")
            continue
        g = pd.concat(seeds).groupby("step").mean(numeric_only=True).sort_index()
        last = g.iloc[-1]
        half = g[g["cpu_min"] <= last["cpu_min"] / 2]
        text = (f"* **{name}**: {last['psnr']:.2f} dB, SSIM {last['ssim']:.3f}, ΔE {last['delta_e']:.1f} after "
                f"{last['cpu_min']:.1f} CPU-min ({int(g.index[-1]):,} steps, mean of {len(seeds)} seed"
                f"{'s' if len(seeds) > 1 else ''})")
        if len(half) and len(g) > 2:
            gain = last["psnr"] - half.iloc[-1]["psnr"]
            trend = ("still rising: a longer schedule would likely add more" if gain > 0.25 else
                     "nearly flat: a longer run at this schedule would add little" if gain > -0.25 else
                     "falling: it peaked earlier")
            text += f"; the second half of its time added {gain:+.2f} dB ({trend})"
        best_step = g["psnr"].idxmax()
        if g.loc[best_step, "psnr"] - last["psnr"] > 0.5:
            text += (f"; it peaked at {g.loc[best_step, 'psnr']:.2f} dB at step {int(best_step):,} "
                     f"({g.loc[best_step, 'cpu_min']:.1f} CPU-min) and lost {g.loc[best_step, 'psnr'] - last['psnr']:.2f} dB "
                     "after it (a shorter run or an earlier checkpoint would score higher)")
        for rname, ref in (refs or {}).items():
            text += f"; {last['psnr'] - ref['psnr']:+.2f} dB / SSIM {last['ssim'] - ref['ssim']:+.3f} vs {rname}"
        out.append(text + ".")
    return "\n".join(out)


def plot_losses(histories: Mapping[str, pd.DataFrame], columns: Mapping[str, Sequence[str]],
                chance: Mapping[str, float] | None = None, chance_label: str = "NCE at chance",
                figsize: tuple[float, float] | None = None):
    """One panel per run of ``histories`` (title -> the run's ``history.csv``, with a ``step`` column): the
    loss columns ``columns[title]`` against the iteration on a log scale (ticks at 1, 2 and 5 per decade),
    each labelled without its ``loss_`` prefix; a column the history does not have (e.g. an identity term
    of weight 0, never logged) is left out. ``chance[title]``: a dotted grey line (``chance_label``), e.g.
    PatchNCE at chance, λ·log(num_patches). Legends sit below the panels. Returns the figure."""
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    if missing := sorted(set(histories) - set(columns)):
        raise KeyError(f"plot_losses: no loss columns given for {missing}")
    if unknown := sorted(set(chance or {}) - set(histories)):
        raise KeyError(f"plot_losses: chance lines for {unknown}, which have no history")
    n = len(histories)
    fig, axes = plt.subplots(1, n, figsize=figsize or (13 / 3 * n, 3.8), squeeze=False)
    for a, (title, h) in zip(axes[0], histories.items()):
        for c in [c for c in columns[title] if c in h]:
            a.plot(h.step, h[c], label=c.removeprefix("loss_"))
        a.set(title=title, xlabel="iteration", yscale="log")
        a.yaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
        a.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
        a.yaxis.set_minor_formatter(NullFormatter())
        if title in (chance or {}):
            a.axhline(chance[title], color="gray", ls=":", lw=1, label=chance_label)
        a.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.22), ncol=3, frameon=False)
    return fig
