"""Library helpers of notebook 02 (CUT / FastCUT): cost jobs and tables (dehazelab.cost), FLOPs,
performance and official-order tables (dehazelab.perf)."""

import math

import pandas as pd
import pytest

from dehazelab import perf
from dehazelab.cost import OFFICIAL_KWARGS, cost_jobs, cost_table

COST = {"sec_per_iter_median": 0.5, "sec_per_iter": 0.6, "peak_mem_delta_mb": 100.0, "baseline_mem_mb": 300.0,
        "memory_kind": "rss", "device": "cpu", "threads": 1, "n_iter": 2}
COST_COLUMNS = ["config", "method", "repeat", "crop", "ngf", "sec/iter (median)", "sec/iter (mean)",
                "peak mem above baseline (MB)", "baseline (MB)", "memory kind", "device", "threads", "timed iterations"]


def test_cost_jobs_one_per_method_with_the_measure_cost_fields():
    jobs = cost_jobs("official", OFFICIAL_KWARGS, crop=128, n_iter=2, warmup=1, threads=1, device="cpu")
    assert [j["method"] for j in jobs] == ["cut", "fastcut", "cyclegan"]
    assert jobs[0] == {"config": "official", "method": "cut", "kwargs": OFFICIAL_KWARGS["cut"], "n_iter": 2,
                       "warmup": 1, "cfg": {"n_steps": 1, "n_steps_decay": 0, "crop": 128, "threads": 1,
                                            "seed": 0, "device": "cpu"}}
    assert jobs[0]["cfg"] is not jobs[1]["cfg"]


def test_cost_table_columns_and_values():
    jobs = cost_jobs("this notebook", {"cut": {"ngf": 8}, "cyclegan": {"ngf": 8}}, crop=32, n_iter=2, warmup=2,
                     threads=1, device="cpu")
    df = cost_table(jobs, [COST, {**COST, "sec_per_iter_median": 1.0}])
    assert list(df.columns) == COST_COLUMNS
    assert df["method"].tolist() == ["cut", "cyclegan"] and df["crop"].tolist() == [32, 32]
    assert df["sec/iter (median)"].tolist() == [0.5, 1.0] and (df["ngf"] == 8).all()
    assert df["repeat"].tolist() == [0, 0]  # jobs without a repeat key
    rep = cost_table([dict(j, repeat=2) for j in jobs], [COST, COST])
    assert rep["repeat"].tolist() == [2, 2]


def test_performance_table_divides_flops_by_time_and_peak():
    jobs = cost_jobs("ours", {"cut": {"ngf": 8}}, crop=32, n_iter=2, warmup=2, threads=1, device="cpu")
    jobs += cost_jobs("official", {"cut": {"ngf": 64}}, crop=128, n_iter=2, warmup=1, threads=1, device="cpu")
    cost_all = cost_table(jobs, [COST, {**COST, "sec_per_iter_median": 2.0}])
    seen = []

    def fake_flops(name, crop, kwargs, *, device, threads):
        seen.append((name, crop, kwargs["ngf"]))
        return 4e9

    df = perf.performance_table(cost_all, {"ours": {"cut": {"ngf": 8}}, "official": {"cut": {"ngf": 64}}}, 8e9,
                                {"cut": "CUT"}, flops=fake_flops)
    assert seen == [("cut", 32, 8), ("cut", 128, 64)]
    assert list(df.columns) == ["config", "method", "crop", "ngf", "s/iter", "peak mem MB", "GFLOP/iter", "GFLOP/s",
                                "utilisation of fp32 peak"]
    assert df["method"].tolist() == ["CUT", "CUT"] and df["GFLOP/iter"].tolist() == [4.0, 4.0]
    assert df["GFLOP/s"].tolist() == [8.0, 2.0] and df["utilisation of fp32 peak"].tolist() == [1.0, 0.25]


def test_iteration_flops_counts_a_small_cut_step():
    kw = {"ngf": 4, "n_blocks": 5, "ndf": 4, "num_patches": 8}
    f1 = perf.iteration_flops("cut", 32, kw)
    assert f1 > 0 and f1 == perf.iteration_flops("cut", 32, kw)  # deterministic
    # 4x the pixels: the convolutions scale with them, the PatchNCE head (a fixed number of patches) does not
    assert 2 * f1 < perf.iteration_flops("cut", 64, kw) < 4 * f1


FAKE_BENCH = '''
import time
from dataclasses import dataclass

@dataclass
class Setup:
    work: float

def build(ngf, n_blocks, seed=0):
    return Setup(0.0)

def clone_setup(s, channels_last):
    return Setup(s.work)

def cut_iteration(s, a, b, *, keys, batched, seed):
    time.sleep(0.002 if batched else 0.004)

def count_gflop(s, a, b, *, keys, batched, seed):
    return 1.0 if batched else 2.0
'''


def test_official_order_table_and_note_with_a_stand_in_benchmark(tmp_path):
    bench = tmp_path / "bench_fake.py"
    bench.write_text(FAKE_BENCH)
    df = perf.official_order_table(bench, peak=1e9, iters=3)
    assert df["CUT iteration, official config"].tolist() == ["official order of work",
                                                             "ours (keys reused, batched passes)"]
    assert df["GFLOP/iter"].tolist() == [2.0, 1.0]
    assert df["s/iter (median)"].iloc[0] > df["s/iter (median)"].iloc[1] > 0
    assert df["utilisation of fp32 peak"].tolist() == pytest.approx(
        (df["GFLOP/iter"] / df["s/iter (median)"]).tolist())
    note = perf.official_order_note(df, {"peak": 1e9, "mm": 5e8})
    assert note.startswith("ours needs 50% of the official order's FLOPs")
    assert "most of the gap to the quoted time lies outside the order of work" in note  # ms ≪ 0.8 · 5.1 s
    slow = pd.DataFrame({"GFLOP/iter": [2.0, 1.0], "s/iter (median)": [5.0, 4.0]})
    assert "close to the official order" in perf.official_order_note(slow, {"peak": 1e9, "mm": 5e8})
    assert math.isfinite(df["s/iter (median)"].sum())


# ---------------------------------------------------------------- dehazelab.cut_results (Table 1, claims)

def _runs(seeds=(0, 1, 2)):
    """Two methods × seeds, one row per run, as unpaired_runs.runs_table gives them."""
    rows = []
    for m, base in (("cut", 20.0), ("cyclegan", 18.0)):
        for s in seeds:
            rows.append({"method": m, "seed": s, "psnr": base + s, "ssim": 0.5 + 0.1 * s, "delta_e": 10.0 - s,
                         "s_per_iter": 0.2 + 0.01 * s, "params_G": 100 if m == "cut" else 90,
                         "params_all": 150 if m == "cut" else 200})
    return pd.DataFrame(rows)


def _half95(xs):
    """The 95 % Student-t half-width, written out: t(0.975, n−1) · sd / √n."""
    from scipy.stats import t

    xs = pd.Series(xs, dtype=float)
    return float(t.ppf(0.975, len(xs) - 1) * xs.std(ddof=1) / math.sqrt(len(xs)))


TABLE1_COLUMNS = ["method", "seeds", "PSNR", "PSNR ±95%", "SSIM", "SSIM ±95%", "ΔE", "ΔE ±95%", "sec/iter",
                  "peak mem MB", "train sec/iter", "train sec/iter ±95%", "#params G", "#params all nets",
                  "H→Z FID (quoted)", "sec/iter (quoted)"]


def test_table1_rows_are_seed_means_costs_and_quoted_numbers_then_references():
    from dehazelab.cut_results import table1

    costs = pd.DataFrame({"method": ["cut", "cyclegan"], "sec/iter (median)": [0.3, 0.5],
                          "peak mem above baseline (MB)": [40.0, 60.0]}).set_index("method")
    quoted = {"CUT": {"H→Z FID": 45.5, "sec/iter": 0.24}, "CycleGAN": {"H→Z FID": 77.2, "sec/iter": 0.4}}
    refs = {"hazy input": {"psnr": 12.0, "ssim": 0.6, "delta_e": 18.0}, "DCP": {"psnr": 20.8, "ssim": 0.83, "delta_e": 6.7}}
    t = table1(_runs(), costs, refs, quoted, {"cut": "CUT", "cyclegan": "CycleGAN"})
    assert list(t.columns) == TABLE1_COLUMNS
    assert t["method"].tolist() == ["CUT", "CycleGAN", "hazy input (reference)", "DCP (reference)"]
    cut = t.iloc[0]
    assert cut["seeds"] == 3 and cut["PSNR"] == pytest.approx(21.0) and cut["SSIM"] == pytest.approx(0.6)
    assert cut["PSNR ±95%"] == pytest.approx(_half95([20.0, 21.0, 22.0]))
    assert cut["train sec/iter"] == pytest.approx(0.21) and cut["train sec/iter ±95%"] == pytest.approx(_half95([0.2, 0.21, 0.22]))
    assert cut["ΔE"] == pytest.approx(9.0) and cut["ΔE ±95%"] == pytest.approx(_half95([10.0, 9.0, 8.0]))
    assert (cut["sec/iter"], cut["peak mem MB"], cut["#params G"], cut["#params all nets"]) == (0.3, 40.0, 100, 150)
    assert t.iloc[1][["H→Z FID (quoted)", "sec/iter (quoted)"]].tolist() == [77.2, 0.4]
    dcp = t.iloc[3]
    assert (dcp["seeds"], dcp["PSNR"], dcp["SSIM"], dcp["ΔE"]) == (0, 20.8, 0.83, 6.7)
    assert dcp[["PSNR ±95%", "sec/iter", "#params G", "H→Z FID (quoted)"]].isna().all()
    one = table1(_runs(seeds=(0,)), costs, {}, quoted, {"cut": "CUT"})
    assert one["seeds"].tolist() == [1] and math.isnan(one["PSNR ±95%"].iloc[0])  # one seed: no interval
    with pytest.raises(KeyError, match="fastcut"):
        table1(_runs(), costs, {}, {"FastCUT": {}}, {"fastcut": "FastCUT"})


def test_interval_text_gives_the_half_width_or_says_there_is_none():
    from dehazelab.cut_results import interval_text

    assert interval_text(0.123456, ".2f") == "± 0.12" and interval_text(1.5, ".4f") == "± 1.5000"
    assert interval_text(float("nan"), ".2f") == interval_text(float("inf"), ".2f") == "(one seed: no interval)"


def _repeats(times, mems):
    """cost_repeats rows: ours once, then the official config ``len(times['cut'])`` times, interleaved."""
    rows = [{"config": "this notebook", "method": m, "repeat": 0, "sec/iter (median)": 0.01,
             "peak mem above baseline (MB)": 1.0} for m in ("cut", "fastcut", "cyclegan")]
    for r in range(len(times["cut"])):
        rows += [{"config": "official", "method": m, "repeat": r, "sec/iter (median)": times[m][r],
                  "peak mem above baseline (MB)": mems[m][r]} for m in ("cyclegan", "cut", "fastcut")]
    return pd.DataFrame(rows)


def test_official_cost_claims_take_medians_of_the_repeats_and_need_every_repeat_to_agree():
    from dehazelab import stats as dstats
    from dehazelab.cut_results import official_cost_claims

    times = {"cut": [1.0, 1.2, 0.9], "fastcut": [0.8, 0.7, 0.6], "cyclegan": [2.0, 1.1, 2.5]}
    mems = {"cut": [300.0, 310.0, 290.0], "fastcut": [200.0] * 3, "cyclegan": [500.0, 520.0, 480.0]}
    long = dstats.ClaimsTable(paper="p", notebook="nb")
    short = official_cost_claims(_repeats(times, mems), long, {"time": "T", "memory": "M", "faster": "F"}, repeats=3)
    assert short == [
        ("CUT uses less time and memory than CycleGAN — official architecture", "as above",
         "1.00 [0.90–1.20] vs 2.00 [1.10–2.50] s/iter (median [range]); 300 vs 500 MB",
         "time: not shown (the repeats disagree: lower in 2 of 3); memory: held (in all 3 repeats)"),
        ("FastCUT is faster than CUT — official architecture", "as above",
         "0.70 [0.60–0.80] vs 1.00 [0.90–1.20] s/iter (median [range])", "held (in all 3 repeats)")]
    f = long.frame()
    assert f["claim"].tolist() == ["CUT uses less time than CycleGAN", "CUT uses less memory than CycleGAN",
                                   "FastCUT is faster than CUT"]
    assert f["evidence"].tolist() == ["T", "M", "F"]
    assert f["estimate"].tolist() == pytest.approx([2.0 - 1.0, 500.0 - 300.0, 1.0 - 0.7])  # medians' differences
    assert f["ci95"].isna().all() and (f["n"] == 3).all()
    assert f["category"].tolist() == ["not shown", "held", "held"]
    assert (f["setting"] == "official architecture (ResNet-9, ngf 64, 128², batch 1), 3 interleaved repeat(s)").all()
    one = official_cost_claims(_repeats({m: v[:1] for m, v in times.items()}, {m: v[:1] for m, v in mems.items()}),
                               dstats.ClaimsTable("p", "nb"), {"time": "", "memory": "", "faster": ""}, repeats=1)
    assert one[0][3] == "time: held (one measurement); memory: held (one measurement)"
    with pytest.raises(ValueError, match="expected 2 repeat"):
        official_cost_claims(_repeats(times, mems), dstats.ClaimsTable("p", "nb"), {"time": "", "memory": "", "faster": ""},
                             repeats=2)
