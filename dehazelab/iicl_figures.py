"""The figures of notebook 04 (the IICL reconstruction) that are its own (d2l style: defined once here).

* :func:`plot_training_losses` — the loss terms of a progressive run: the PRM warm-up, then the joint stage,
  with the intra term's chance level;
* :class:`PRMOutput` and :func:`qualitative_dehazers` — the networks of a qualitative grid row: the PRM's own
  restoration J₀ of the full variant, then every variant, ready for
  :func:`dehazelab.qualitative.dehazed_rows`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import pandas as pd
import torch

from .runs.grids import IICL_VARIANTS

__all__ = ["JOINT_LOSSES", "J0_COLUMN", "plot_training_losses", "PRMOutput", "qualitative_dehazers"]

#: Loss columns of a joint-stage ``history.csv`` and their legend labels, in drawing order.
JOINT_LOSSES = (("loss_prm_l1", "L1(J0, J)"), ("loss_l1", "L1(out, J)"), ("loss_cr", "CR (inter)"),
                ("loss_intra", "intra InfoNCE"))
#: The qualitative grid's column of the PRM's J₀.
J0_COLUMN = "J0 (PRM, full variant)"


def plot_training_losses(runs: Mapping[str, tuple[pd.DataFrame, pd.DataFrame | None]], intra_k: int):
    """One panel per ``title -> (history, warm-up history or None)`` of ``runs``, on a log scale: the warm-up's
    L1(J₀, J) dashed, then the joint stage's :data:`JOINT_LOSSES` (those logged) shifted to start where the
    warm-up ended, and a dotted line at ln(``intra_k`` + 2), the intra InfoNCE at chance (1 positive and
    k + 1 negatives per anchor). Returns the figure."""
    import matplotlib.pyplot as plt

    if not runs:
        raise ValueError("plot_training_losses: no run to draw")
    fig, axes = plt.subplots(1, len(runs), figsize=(6.5 * len(runs), 3.3), squeeze=False)
    for ax, (title, (hist, hist_w)) in zip(axes[0], runs.items()):
        off = 0
        if hist_w is not None:
            ax.plot(hist_w["step"], hist_w["loss_prm_l1"], "k--", label="warm-up: L1(J0, J)")
            off = int(hist_w["step"].max())
        for col, label in JOINT_LOSSES:
            if col in hist:
                ax.plot(hist["step"] + off, hist[col], label=label)
        ax.axhline(math.log(intra_k + 2), color="gray", lw=0.8, ls=":", label="ln(k+2): intra at chance")
        ax.set(title=title, xlabel="step (warm-up, then joint)", yscale="log")
        ax.legend(fontsize=7)
    return fig


class PRMOutput(torch.nn.Module):
    """The PRM's own restoration J₀ of a PRM → ARM network (``forward_all(x)["j0"]``), as a dehazer."""

    def __init__(self, net: torch.nn.Module):
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net.forward_all(x)["j0"]


def qualitative_dehazers(models: Mapping[tuple[str, str], torch.nn.Module], backbone: str) -> dict[str, torch.nn.Module]:
    """``{column title: dehazer}`` of ``backbone``'s row of a qualitative grid: :data:`J0_COLUMN` (the full
    variant's J₀, :class:`PRMOutput`), then each variant of :data:`~dehazelab.runs.grids.IICL_VARIANTS`
    (``models[(backbone, variant)]``, e.g. :func:`dehazelab.iicl_results.first_seed_models`)."""
    if missing := [v for v in IICL_VARIANTS if (backbone, v) not in models]:
        raise KeyError(f"qualitative_dehazers: no {backbone!r} network for {missing}")
    return {J0_COLUMN: PRMOutput(models[(backbone, "+ PRM + IICL")]),
            **{v: models[(backbone, v)] for v in IICL_VARIANTS}}
