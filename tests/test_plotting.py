"""dehazelab.plotting: the figures built from tables (what each panel holds, not how it looks)."""

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest

from dehazelab import plotting


def test_note_figure_holds_only_its_text():
    fig = plotting.note_figure("nothing here\nbecause")
    (ax,) = fig.axes
    assert [t.get_text() for t in ax.texts] == ["nothing here\nbecause"] and not ax.axison
    assert tuple(fig.get_size_inches()) == (7, 1.2)
    plt.close(fig)
    with pytest.raises(ValueError, match="empty"):
        plotting.note_figure("  ")


def test_claims_summary_figure_draws_every_row_claim_and_reference():
    summary = pd.DataFrame({"group": ["01 CR", "01 CR", "02 CUT"], "row": ["a", "b", "c"],
                            "psnr": [20.0, 21.0, 15.0], "ci": [0.5, None, 1.0]})
    long_claim = "x" * 80
    claims = pd.DataFrame({"paper": ["CR (CVPR'21)", "IICL (ICASSP'23)"], "claim": ["CR helps", long_claim],
                           "setting": [None, "AOD-Net; fine-tune"], "estimate": [0.3, -1.0], "ci95": [0.2, float("nan")],
                           "category": ["held", "undetermined"]}, index=[7, 9])
    refs = {"hazy input": 12.0, "DCP": 16.0}
    fig = plotting.claims_summary_figure(summary, claims, refs, title="ours: PSNR")
    ax0, ax1 = fig.axes
    assert ax0.get_title() == "ours: PSNR"
    assert [t.get_text() for t in ax0.get_yticklabels()] == ["01 · a", "01 · b", "02 · c"]
    assert sorted(line.get_xdata()[0] for line in ax0.lines if line.get_linestyle() in (":", "--")) == [12.0, 16.0]
    points = np.concatenate([c.lines[0].get_xdata() for c in ax0.containers])
    assert sorted(points) == [15.0, 20.0, 21.0]
    labels = [t.get_text() for t in ax1.get_yticklabels()]
    assert labels[0] == "CR · CR helps" and labels[1].startswith("IICL [AOD-Net] · x") and labels[1].endswith("…")
    assert len(labels[1]) == 70
    xs = sorted(c.lines[0].get_xdata()[0] for c in ax1.containers)
    assert xs == [-1.0, 0.3]
    plt.close(fig)
