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
