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


def test_continued_curve_starts_at_the_base_runs_last_point():
    import pandas as pd

    from dehazelab.curves import continued, describe

    base = pd.DataFrame({"step": [100, 200], "cpu_min": [1.0, 2.0], "psnr": [18.0, 20.0], "ssim": [0.7, 0.8],
                         "delta_e": [9.0, 8.0]})
    tune = pd.DataFrame({"step": [50], "cpu_min": [0.5], "psnr": [20.5], "ssim": [0.81], "delta_e": [7.5]})
    c = continued(tune, base)
    assert c["step"].tolist() == [200, 250] and c["cpu_min"].tolist() == [2.0, 2.5] and c["psnr"].tolist() == [20.0, 20.5]
    text = describe({"base": [base]}, {"DCP": {"psnr": 19.0, "ssim": 0.82, "delta_e": 7.0}})
    assert "20.00 dB, SSIM 0.800" in text and "+1.00 dB / SSIM -0.020 vs DCP" in text
    assert "no evaluation" in describe({"x": [base.iloc[0:0]]})


def test_describe_names_a_peak_the_run_lost():
    import pandas as pd

    from dehazelab.curves import describe

    c = pd.DataFrame({"step": [100, 200, 300, 400], "cpu_min": [1.0, 2.0, 3.0, 4.0], "psnr": [15.0, 18.0, 16.0, 16.2],
                      "ssim": [0.7] * 4, "delta_e": [9.0] * 4})
    text = describe({"x": [c]})
    assert "peaked at 18.00 dB at step 200 (2.0 CPU-min) and lost 1.80 dB" in text
    assert "peaked" not in describe({"x": [c.assign(psnr=[15.0, 16.0, 16.5, 16.4])]})


def test_rows_of_one_figure_each_carry_their_own_title():
    import matplotlib
    import matplotlib.pyplot as plt

    matplotlib.use("Agg")
    a = learning_curve(_history())
    fig, axes = plt.subplots(2, 3)
    for row, name in zip(axes, ("AECR-Net", "AOD-Net")):
        plot_learning_curves({"m": [a]}, title=name, axes=row)
    assert [axes[0][0].get_title(loc="left"), axes[1][0].get_title(loc="left")] == ["AECR-Net", "AOD-Net"]
    assert fig._suptitle is None  # no figure-wide title naming only the last row
    own = plot_learning_curves({"m": [a]}, title="01 at small size")
    assert own._suptitle.get_text() == "01 at small size"
    plt.close("all")


def test_plot_losses_draws_each_runs_logged_losses_and_its_chance_line():
    import matplotlib
    import matplotlib.pyplot as plt

    from dehazelab.curves import plot_losses

    matplotlib.use("Agg")
    steps = [1, 2, 3, 4]
    cut = pd.DataFrame({"step": steps, "loss_G_GAN": [0.5, 0.4, 0.3, 0.25], "loss_NCE": [4.0, 3.0, 2.0, 1.0]})
    gan = pd.DataFrame({"step": steps, "loss_G_A": [0.9, 0.6, 0.4, 0.3]})
    fig = plot_losses({"CUT": cut, "CycleGAN": gan}, {"CUT": ["loss_G_GAN", "loss_NCE"], "CycleGAN": ["loss_G_A", "loss_idt_A"]},
                      {"CUT": np.log(32)}, "NCE at chance")
    ax_cut, ax_gan = fig.axes
    assert [ax_cut.get_title(), ax_gan.get_title()] == ["CUT", "CycleGAN"]
    assert [l.get_label() for l in ax_cut.get_lines()] == ["G_GAN", "NCE", "NCE at chance"]
    assert ax_cut.get_lines()[1].get_ydata().tolist() == [4.0, 3.0, 2.0, 1.0]
    assert list(ax_cut.get_lines()[2].get_ydata()) == pytest.approx([np.log(32)] * 2)  # the horizontal line
    assert [l.get_label() for l in ax_gan.get_lines()] == ["G_A"]  # loss_idt_A was never logged: left out
    assert ax_cut.get_yscale() == "log" and ax_cut.get_legend() is not None
    with pytest.raises(KeyError, match="no loss columns given for \\['CycleGAN'\\]"):
        plot_losses({"CUT": cut, "CycleGAN": gan}, {"CUT": ["loss_NCE"]})
    with pytest.raises(KeyError, match="chance lines for \\['FastCUT'\\]"):
        plot_losses({"CUT": cut}, {"CUT": ["loss_NCE"]}, {"FastCUT": 1.0})
    plt.close("all")
