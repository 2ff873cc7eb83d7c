"""dehazelab.curves: learning curves from run histories."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from dehazelab.curves import learning_curve, plot_learning_curves


def _history(sec_col="time_per_step"):
    # logged every 10 steps; evaluations at steps 20 and 40
    return pd.DataFrame({"step": [10, 20, 30, 40], sec_col: [0.6, 0.3, 0.3, 0.6],
                         "psnr": [np.nan, 15.0, np.nan, 17.0], "ssim": [np.nan, 0.6, np.nan, 0.7],
                         "eval_delta_e": [np.nan, 12.0, np.nan, 9.0]})


@pytest.mark.parametrize("sec_col", ["time_per_step", "sec_per_step"])  # paired | unpaired trainer
def test_minutes_are_the_summed_window_times_at_each_evaluation(sec_col):
    c = learning_curve(_history(sec_col))
    assert c["step"].tolist() == [20, 40]
    assert c["cpu_min"].tolist() == pytest.approx([(6 + 3) / 60, (6 + 3 + 3 + 6) / 60])
    assert c["psnr"].tolist() == [15.0, 17.0] and c["delta_e"].tolist() == [12.0, 9.0]


def test_warmup_time_comes_first_and_no_evaluations_give_an_empty_curve():
    warm = pd.DataFrame({"step": [5, 10], "time_per_step": [1.2, 1.2]})
    c = learning_curve(_history(), warmup=warm)
    assert c["cpu_min"].iloc[0] == pytest.approx((12 + 9) / 60)
    assert learning_curve(_history().drop(columns=["psnr", "ssim", "eval_delta_e"])).empty


def test_plot_shows_the_seed_mean_and_the_references():
    import matplotlib

    matplotlib.use("Agg")
    a, b = learning_curve(_history()), learning_curve(_history())
    b[["psnr", "ssim", "delta_e"]] += [2.0, 0.1, -2.0]
    fig = plot_learning_curves({"model": [a, b]}, {"DCP": {"psnr": 16.0, "ssim": 0.8, "delta_e": 7.0}})
    ax_psnr = fig.axes[0]
    line = ax_psnr.get_lines()[0]
    assert line.get_ydata().tolist() == [16.0, 18.0]  # mean over the two seeds
    assert any(list(l.get_ydata()) == [16.0, 16.0] for l in ax_psnr.get_lines()[1:])  # the reference
    assert len(fig.axes) == 3
