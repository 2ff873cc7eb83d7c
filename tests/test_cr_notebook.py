"""The library helpers notebook 01 (CR / AECR-Net) assembles its tables and claims with:
``dehazelab.tables`` and ``dehazelab.stats.ordering_verdict``."""

import math

import numpy as np
import pandas as pd
import pytest
import torch

from dehazelab import metrics as M
from dehazelab import stats as dstats
from dehazelab import tables as T


def _runs(seeds=(0, 1, 2)):
    rng = np.random.default_rng(0)
    rows = []
    for name, params, base in (("AOD-Net", 1761, 18.0), ("+ mixup", 50017, 20.0), ("+ CR (1:1)", 50017, 21.0)):
        for s in seeds:
            rows.append({"config": name, "seed": s, "psnr": base + rng.normal(0, 0.1), "ssim": 0.8 + 0.01 * s,
                         "params": params, "s_per_step": 0.1 * (s + 1)})
    return pd.DataFrame(rows)


def test_settings_table_strings_the_values():
    t = T.settings_table([("batch", "16", 2), ("lr", "2e-4", "0.001")])
    assert list(t.columns) == ["setting", "paper", "this run"]
    assert t["this run"].tolist() == ["2", "0.001"]


def test_seed_table_matches_seed_summary_and_adds_size_speed_vgg():
    runs = _runs()
    names = ["+ CR (1:1)", "AOD-Net"]
    t = T.seed_table(runs, names, uses_cr={"AOD-Net": False, "+ CR (1:1)": True}, vgg_used="imagenet")
    ref = dstats.seed_summary(runs, "config", names).rename(columns={"config": "row"})
    pd.testing.assert_frame_equal(t[ref.columns], ref)
    assert list(t.columns) == list(ref.columns) + ["#params", "s/step", "VGG-19 of CR"]
    assert t["#params"].tolist() == [50017, 1761]
    assert t["s/step"].tolist() == pytest.approx([0.2, 0.2])
    assert t["VGG-19 of CR"].tolist() == ["imagenet", T.NO_CR]
    with pytest.raises(KeyError):
        T.seed_table(runs, ["typo"], uses_cr={"typo": False}, vgg_used="x")


def test_baseline_row_is_the_mean_of_per_image_scores():
    g = torch.Generator().manual_seed(0)
    items = [{"hazy": torch.rand(3, 16, 16, generator=g), "clear": torch.rand(3, 16, 16, generator=g)} for _ in range(3)]

    def dehaze(im):
        return np.clip(im * 0.9 + 0.05, 0, 1)

    row = T.baseline_row("DCP", dehaze, items, **{"#params": 0, "VGG-19 of CR": T.NO_CR})
    assert list(row) == ["row", "seeds", "PSNR", "SSIM", "#params", "VGG-19 of CR"]
    hwc = [(dehaze(it["hazy"].permute(1, 2, 0).numpy()), it["clear"].permute(1, 2, 0).numpy()) for it in items]
    assert row["PSNR"] == np.mean([M.psnr(o, c) for o, c in hwc])  # bitwise: the same sum in the same order
    assert row["SSIM"] == np.mean([M.ssim(o, c) for o, c in hwc])
    assert row["seeds"] == 0 and row["#params"] == 0


def test_add_quoted_looks_up_each_row():
    t = pd.DataFrame({"row": ["DCP", "AECR-Net"], "PSNR": [1.0, 2.0]})
    quoted = {"DCP": {"SOTS-indoor PSNR": 20.1}, "AECR-Net": {"SOTS-indoor PSNR": 37.2}}
    out = T.add_quoted(t, quoted, {"paper PSNR (quoted)": "SOTS-indoor PSNR"})
    assert out["paper PSNR (quoted)"].tolist() == [20.1, 37.2]
    with pytest.raises(KeyError):
        T.add_quoted(pd.DataFrame({"row": ["other"]}), quoted, {"q": "SOTS-indoor PSNR"})


def test_claim_rows_short_and_long_tables():
    runs = _runs()
    long = dstats.ClaimsTable(paper="P", notebook="nb")
    claims = T.ClaimRows(runs, long)
    d, h, n = claims.add_pair("CR improves over L1", "Table 2", "+ CR (1:1)", "+ mixup", comparison="cr − l1")
    assert (d, h, n) == dstats.paired_difference(runs, "config", "+ CR (1:1)", "+ mixup", "psnr")
    claims.add_row("ordering", "Table 4", "text", "held")
    df = claims.frame(**{"VGG-19 of CR": "random"})
    assert list(df.columns) == T.ClaimRows.columns + ["VGG-19 of CR"]
    # the smallest difference these seeds detect, from the per-seed differences' standard deviation
    a = runs[runs.config == "+ CR (1:1)"].set_index("seed").psnr
    b = runs[runs.config == "+ mixup"].set_index("seed").psnr
    det = dstats.detectable_difference(float((a - b).std(ddof=1)), len(a))
    assert df.iloc[0].tolist() == ["CR improves over L1", "Table 2", f"{d:+.2f} dB ± {h:.2f}", dstats.verdict(d, h),
                                   f"≥ {det:.2f} dB", "random"]
    assert df.iloc[1, 4] == ""  # a row built by the caller has no detectable difference unless given
    assert df.iloc[1, 3] == "held"
    lf = long.frame()
    assert len(lf) == 1 and lf.iloc[0]["comparison"] == "cr − l1" and lf.iloc[0]["n"] == 3


def test_claim_rows_one_seed_gives_nan_interval_text():
    claims = T.ClaimRows(_runs(seeds=(0,)), dstats.ClaimsTable(paper="P", notebook="nb"))
    claims.add_pair("c", "e", "+ CR (1:1)", "+ mixup", comparison="x")
    assert claims.rows[0][2].endswith("± nan")


@pytest.mark.parametrize("d1,h1,d2,h2,expected", [
    (0.1, math.nan, 0.2, math.nan, "undetermined (one seed)"),
    (-1.0, 0.5, 1.0, 0.5, "not held (the opposite, beyond seed noise)"),
    (0.0, 0.5, -1.0, 0.5, "not held (the opposite, beyond seed noise)"),
    (0.0, 0.5, 1.0, 0.5, "held"),
    (0.0, 0.5, 0.2, 0.5, "not shown at this size (1:1 > r:1 within seed noise)"),
])
def test_ordering_verdict(d1, h1, d2, h2, expected):
    v = dstats.ordering_verdict(d1, h1, d2, h2, what_gt="1:1 > r:1")
    assert v == expected
    dstats.verdict_category(v)  # a verdict notebook 90 can classify


def test_performance_row_and_time_step():
    torch.manual_seed(0)
    model = torch.nn.Linear(8, 4)
    x = torch.rand(3, 8)
    calls = []

    def one(b):
        calls.append(b)
        model(x[:b]).sum().backward()

    s, flops = T.time_step(one, 3, warmup=True)
    assert calls == [1, 2, 3, 3, 3]  # counted at 1, 2, 3; a warm-up; the timed step
    assert flops == 2 * (2 * 3 * 8 * 4)  # the forward and the weight-gradient matmul at batch 3 (x needs no grad)
    assert s > 0
    row = T.performance_row("step", 2.0, 4e9, 1e10)
    assert row == {"step": "step", "s/step": 2.0, "GFLOP/step": 4.0, "GFLOP/s": 2.0, "utilisation of fp32 peak": 0.2}
