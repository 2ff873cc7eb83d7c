"""Figure style and saving: one place, so restyling never touches the notebooks' compute."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np


def setup() -> None:
    """Apply the workbook's style once (seaborn theme, then rcParams that keep PNGs byte-stable)."""
    import matplotlib as mpl
    import seaborn as sns

    sns.set_theme(context="notebook", style="whitegrid")
    mpl.rcParams.update(
        {
            "figure.dpi": 100,
            "savefig.dpi": 120,
            "savefig.bbox": "tight",
            "image.interpolation": "nearest",
            "svg.hashsalt": "dehazelab",
        }
    )


def savefig(fig, path: str | os.PathLike) -> Path:
    """Save a figure atomically as PNG (tmp file in the same folder, then rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    fig.savefig(tmp, format=path.suffix.lstrip(".") or "png", metadata={"Software": None})
    os.replace(tmp, path)
    return path


def to_display(img) -> np.ndarray:
    """A numpy HxWx3 image in [0,1] from a numpy array or a (1x)3xHxW tensor."""
    if hasattr(img, "detach"):
        img = img.detach().cpu()
        if img.ndim == 4:
            img = img[0]
        img = img.permute(1, 2, 0).numpy()
    img = np.asarray(img, dtype=np.float32)
    if img.ndim == 2:
        img = np.repeat(img[..., None], 3, axis=-1)
    return np.clip(img, 0.0, 1.0)


def image_grid(rows, row_titles=None, col_titles=None, cell: float = 2.4, cmap=None):
    """Show a list of rows of images (numpy/tensors; 2-D arrays are drawn with ``cmap``)."""
    import matplotlib.pyplot as plt

    n_rows, n_cols = len(rows), max(len(r) for r in rows)
    fig, axes = plt.subplots(n_rows, n_cols, figsize=(cell * n_cols, cell * n_rows * 0.8), squeeze=False)
    for i, row in enumerate(rows):
        for j in range(n_cols):
            ax = axes[i, j]
            ax.axis("off")
            if j >= len(row) or row[j] is None:
                continue
            img = row[j]
            if hasattr(img, "ndim") and img.ndim == 2:
                ax.imshow(np.asarray(img), cmap=cmap or "viridis")
            else:
                ax.imshow(to_display(img))
            if col_titles and i == 0 and j < len(col_titles):
                ax.set_title(col_titles[j], fontsize=9)
        if row_titles:
            axes[i, 0].text(-0.04, 0.5, row_titles[i], transform=axes[i, 0].transAxes, rotation=90,
                            ha="right", va="center", fontsize=9)
    fig.tight_layout()
    return fig


def plot_variant_means(table, groups, variants, hazy=None, metrics=("PSNR", "SSIM"), n_seeds=None):
    """Mean ± 95 % CI of each metric per variant, one marker series per group, side by side.

    ``table`` has the columns ``"backbone"`` (the group), ``"variant"``, each metric and
    ``"<metric> ±95%"``; ``groups`` maps a group's key to its label in the ``backbone`` column (drawn in
    that order); ``hazy``: ``{metric: value}`` drawn as a dotted reference line (the hazy input).
    """
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(metrics), figsize=(5.5 * len(metrics), 3.4), squeeze=False)
    axes = axes[0]
    xs = np.arange(len(variants))
    for j, label in enumerate(groups.values()):
        t = table[(table.backbone == label) & table.variant.isin(list(variants))]
        for ax, m in zip(axes, metrics):
            ax.errorbar(xs + 0.12 * (j - 0.5), t[m], yerr=t[f"{m} ±95%"].fillna(0), fmt="o", capsize=3, label=label)
    for ax, m in zip(axes, metrics):
        if hazy is not None:
            ax.axhline(hazy[m], color="gray", ls=":", lw=0.8, label="hazy input")
        ax.set_xticks(xs, list(variants), fontsize=8)
        seeds = "" if n_seeds is None else f" over {n_seeds} seed(s)"
        ax.set(ylabel=m + (" (dB)" if m == "PSNR" else ""), title=f"{m}, mean ± 95% CI{seeds}")
        ax.legend(fontsize=7)
    return fig


def shown_psnr(rows, labels, columns) -> str:
    """Markdown bullets, one per grid row: with a ground truth (the row's last cell), the PSNR of every
    other cell of the row against it, named by ``columns``; without one (a real photograph), the mean
    brightness (mean of R, G, B in [0, 1]) of every cell, so that a result far darker or brighter than
    the input or DCP is stated in numbers."""
    from . import metrics as M

    lines = []
    for row, label in zip(rows, labels):
        if row[-1] is None:
            lines.append(f"* {label}, mean brightness: " + ", ".join(
                f"{c} {float(np.mean(to_display(img))):.2f}" for c, img in zip(columns, row[:-1])))
            continue
        gt = to_display(row[-1])
        lines.append(f"* {label}: " + ", ".join(f"{c} {M.psnr(to_display(img), gt):.1f} dB"
                                                for c, img in zip(columns, row[:-1])))
    return "\n".join(lines) or "(no images shown)"


def note_figure(text: str, size: tuple[float, float] = (7, 1.2)):
    """A figure holding only ``text``, centred: for an output figure that has nothing to show, so the file
    says plainly why (e.g. no real photographs without a data folder) instead of being missing."""
    import matplotlib.pyplot as plt

    if not str(text).strip():
        raise ValueError("note_figure: the text saying why the figure is empty is empty")
    fig, ax = plt.subplots(figsize=size)
    ax.axis("off")
    ax.text(0.5, 0.5, text, ha="center", va="center")
    return fig


#: Marker colour of each claim category in :func:`claims_summary_figure`.
CATEGORY_COLOURS: dict[str, str] = {"held": "tab:green", "not shown": "tab:gray", "not held": "tab:red",
                                    "undetermined": "tab:orange"}


def claims_summary_figure(summary, claims, refs, title: str):
    """The workbook's summary figure, two panels.

    Left: each row of ``summary`` (columns ``group``, ``row``, ``psnr``, ``ci``: a mean and its 95 %
    half-width) as a marker with error bar, one colour per group, and each ``{name: PSNR}`` of ``refs`` as
    a vertical reference line (dotted, then dashed); ``title`` heads the panel. Right: each claim of
    ``claims`` (columns ``paper``, ``claim``, ``setting``, ``estimate``, ``ci95``, ``category``) as its
    difference ± half-width (none when NaN), coloured by category (:data:`CATEGORY_COLOURS`), with 0 marked.
    """
    import matplotlib.pyplot as plt

    fig, (ax0, ax1) = plt.subplots(1, 2, figsize=(14, 0.28 * max(len(summary), len(claims)) + 2.4),
                                   gridspec_kw={"width_ratios": [1, 1.15]})
    ys = np.arange(len(summary))[::-1]
    groups = list(dict.fromkeys(summary.group))
    pal = dict(zip(groups, plt.rcParams["axes.prop_cycle"].by_key()["color"]))
    for g in groups:
        sel = summary.group == g
        ax0.errorbar(summary.psnr[sel], ys[sel.values], xerr=summary.ci[sel].fillna(0), fmt="o", capsize=2, color=pal[g], label=g)
    for (name, v), ls in zip(refs.items(), (":", "--")):
        ax0.axvline(v, color="black", lw=0.8, ls=ls, label=name)
    ax0.set_yticks(ys, [f"{g.split()[0]} · {r}" for g, r in zip(summary.group, summary.row)], fontsize=7)
    ax0.set_xlabel("PSNR (dB), SOTS-indoor test")
    ax0.set_title(title, fontsize=10)
    ax0.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.1), ncol=3)
    yc = np.arange(len(claims))[::-1]
    for i, r in claims.reset_index(drop=True).iterrows():
        ax1.errorbar(r.estimate, yc[i], xerr=0 if np.isnan(r.ci95) else r.ci95, fmt="o", capsize=2,
                     color=CATEGORY_COLOURS[r.category])
    ax1.axvline(0, color="black", lw=0.8)
    labels = [p.split()[0] + (f" [{s.split(';')[0]}]" if p.startswith("IICL") else "") + f" · {c}"
              for p, c, s in zip(claims.paper, claims.claim, claims.setting.fillna(""))]
    ax1.set_yticks(yc, [lab if len(lab) < 72 else lab[:69] + "…" for lab in labels], fontsize=7)
    ax1.yaxis.tick_right()
    ax1.set_xlabel("PSNR difference in the claimed direction (dB)")
    ax1.set_title("PSNR claims: paired-by-seed difference ± 95% CI", fontsize=10)
    for cat, c in CATEGORY_COLOURS.items():
        ax1.plot([], [], "o", color=c, label=cat)
    ax1.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.1), ncol=4)
    fig.tight_layout()
    return fig
