"""The seed statistics and verdict rule every notebook's claims table uses."""

import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats as st

from dehazelab import stats as S


def test_ci95_half_matches_scipy_interval():
    x = np.array([1.0, 2.5, 0.5, 3.0])
    lo, hi = st.t.interval(0.95, len(x) - 1, loc=x.mean(), scale=st.sem(x))
    assert S.ci95_half(x) == pytest.approx((hi - lo) / 2, rel=1e-12)
    m, h = S.mean_ci([*x, float("nan")])  # NaN dropped
    assert m == pytest.approx(x.mean()) and h == pytest.approx((hi - lo) / 2)
    assert math.isnan(S.ci95_half([4.2]))


def _runs():
    return pd.DataFrame({
        "method": ["a", "a", "a", "b", "b", "b", "b"],
        "seed": [0, 1, 2, 0, 1, 2, 3],  # seed 3 of b has no partner: dropped
        "psnr": [20.0, 21.0, 19.0, 18.0, 20.5, 17.0, 99.0],
    })


def test_paired_difference_pairs_by_seed():
    d, h, n = S.paired_difference(_runs(), "method", "a", "b", "psnr")
    diffs = np.array([2.0, 0.5, 2.0])
    assert n == 3 and d == pytest.approx(diffs.mean())
    assert h == pytest.approx(st.t.ppf(0.975, 2) * diffs.std(ddof=1) / math.sqrt(3))
    d2, _, _ = S.paired_difference(_runs(), "method", "a", "b", "psnr", sign=-1.0)
    assert d2 == pytest.approx(-d)


def test_paired_difference_names_what_is_missing():
    with pytest.raises(KeyError, match="no runs with method == 'c'"):
        S.paired_difference(_runs(), "method", "a", "c", "psnr")
    with pytest.raises(KeyError, match="no column 'ssim'"):
        S.paired_difference(_runs(), "method", "a", "b", "ssim")


@pytest.mark.parametrize("diff,half,expected", [
    (1.0, 0.5, "held"),
    (-1.0, 0.5, "not held (the opposite, beyond seed noise)"),
    (0.3, 0.5, "not shown at this size (same direction, within seed noise)"),
    (-0.3, 0.5, "not shown at this size (opposite direction, within seed noise)"),
    (0.3, float("nan"), "undetermined (one seed)"),
])
def test_verdict_rule(diff, half, expected):
    assert S.verdict(diff, half) == expected


def test_verdict_category():
    assert S.verdict_category("held (one measurement)") == "held"
    assert S.verdict_category("not held (the opposite, beyond seed noise)") == "not held"
    assert S.verdict_category("not shown at this size (1:1 > r:1 within seed noise)") == "not shown"
    assert S.verdict_category("undetermined (one seed)") == "undetermined"
    with pytest.raises(ValueError, match="not a verdict"):
        S.verdict_category("looks fine")


def test_claims_table_long_format():
    t = S.ClaimsTable(paper="P", notebook="nb")
    t.add("x beats y", "Table 1", "x − y", "PSNR", "dB", 1.0, 0.4, 3)
    t.add("x is faster", "Table 1", "y − x", "sec/iter", "s", 0.2, float("nan"), 1, verdict="held (one measurement)")
    df = t.frame()
    assert list(df.columns) == list(S.CLAIM_COLUMNS)
    assert list(df.category) == ["held", "held"] and list(df.verdict)[0] == "held"
    assert (df.paper == "P").all() and (df.notebook == "nb").all()
    with pytest.raises(ValueError, match="not a verdict"):
        t.add("bad", "", "", "PSNR", "dB", 0.0, 0.1, 3, verdict="maybe")


def test_format_estimate():
    assert S.format_estimate(0.0912, 0.671, "dB") == "+0.09 dB ± 0.67"
    assert S.format_estimate(-1.0, float("nan")) == "-1.00 (no interval)"


def test_seed_summary_means_and_intervals_per_name_in_order():
    runs = pd.DataFrame({"config": ["a", "a", "a", "b"], "seed": [0, 1, 2, 0],
                         "psnr": [20.0, 21.0, 23.0, 18.0], "ssim": [0.7, 0.8, 0.9, 0.5]})
    t = S.seed_summary(runs, "config", ["b", "a"])
    assert list(t.config) == ["b", "a"] and list(t.seeds) == [1, 3]
    lo, hi = st.t.interval(0.95, 2, loc=np.mean([20, 21, 23]), scale=st.sem([20, 21, 23]))
    assert t.loc[1, "PSNR"] == pytest.approx(64 / 3) and t.loc[1, "PSNR ±95%"] == pytest.approx((hi - lo) / 2)
    assert t.loc[1, "SSIM"] == pytest.approx(0.8) and np.isnan(t.loc[0, "PSNR ±95%"])
    with pytest.raises(KeyError, match="'c'"):
        S.seed_summary(runs, "config", ["c"])


def test_detectable_difference_has_the_requested_power_in_simulation():
    from scipy.stats import ttest_1samp

    from dehazelab.stats import detectable_difference

    rng = np.random.default_rng(0)
    for n in (3, 5):
        d = detectable_difference(1.0, n)
        diffs = rng.normal(d, 1.0, size=(4000, n))
        p = ttest_1samp(diffs, 0.0, axis=1).pvalue
        assert 0.72 < np.mean(p < 0.05) < 0.88  # the t approximation of the non-central t, within a few %
    assert detectable_difference(1.0, 3, power=0.5) == pytest.approx(st.t.ppf(0.975, 2) / np.sqrt(3))
    assert np.isnan(detectable_difference(1.0, 1))
    assert detectable_difference(2.0, 5) == pytest.approx(2 * detectable_difference(1.0, 5))


def test_a_claim_tested_in_two_settings_is_counted_once():
    claims = pd.DataFrame({
        "paper": ["CUT"] * 4 + ["CR"],
        "claim": ["CUT uses less time", "CUT uses less time", "CUT beats CycleGAN", "CUT beats CycleGAN", "CR helps"],
        "category": ["held", "not held", "held", "not shown", "not shown"]})
    v = S.claim_verdicts(claims).set_index("claim")
    assert v.loc["CUT uses less time", "category"] == "mixed" and v.loc["CUT uses less time", "rows"] == 2
    assert v.loc["CUT beats CycleGAN", "category"] == "held"
    assert v.loc["CR helps", "category"] == "not shown"
    assert len(v) == 3  # five rows, three claims
    assert S.combine_categories(["not held", "not shown"]) == "not held"
    assert S.combine_categories(["undetermined"]) == "undetermined"


def test_repeated_verdict_needs_every_repeat_to_agree():
    assert S.repeated_verdict([1.0, 2.0, 3.0], [2.0, 3.0, 4.0]) == "held (in all 3 repeats)"
    assert S.repeated_verdict([3.0, 4.0], [2.0, 3.0]) == "not held (the opposite in all 2 repeats)"
    assert S.repeated_verdict([1.0, 4.0, 1.0], [2.0, 3.0, 2.0]) == "not shown (the repeats disagree: lower in 2 of 3)"
    assert S.repeated_verdict([1.0], [2.0]) == "held (one measurement)"
    assert S.verdict_category(S.repeated_verdict([1.0, 4.0], [2.0, 3.0])) == "not shown"
    with pytest.raises(ValueError):
        S.repeated_verdict([1.0, 2.0], [1.0])
