"""Seconds per iteration and peak memory of unpaired methods, each measured in a clean process.

:func:`dehazelab.train.unpaired.measure_cost` spawns one process per method. Linux passes a process's
peak-RSS record (``getrusage``'s ``ru_maxrss``) on to the process it forks, across ``exec``, for one
generation: spawned straight from a notebook kernel that holds trained networks, every child would
start at the kernel's peak and report almost no memory of its own. :func:`measure_costs` therefore
launches the measurements from a small helper process (``python -m dehazelab.cost``), whose spawned
children start clean.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Mapping, Sequence
from typing import Any

__all__ = ["OFFICIAL_KWARGS", "cost_jobs", "cost_table", "measure_costs"]

#: the official CUT / FastCUT / CycleGAN architecture (ResNet-9, ngf 64, ndf 64, 256 PatchNCE positions)
OFFICIAL_KWARGS: dict[str, dict[str, int]] = {
    "cut": {"ngf": 64, "n_blocks": 9, "ndf": 64, "num_patches": 256},
    "fastcut": {"ngf": 64, "n_blocks": 9, "ndf": 64, "num_patches": 256},
    "cyclegan": {"ngf": 64, "n_blocks": 9, "ndf": 64},
}


def cost_jobs(config: str, kwargs: Mapping[str, Mapping[str, Any]], *, crop: int, n_iter: int, warmup: int,
              threads: int, device: str, seed: int = 0) -> list[dict[str, Any]]:
    """One :func:`measure_costs` job per method of ``kwargs`` (``{method: method kwargs}``), labelled
    ``config``: ``n_iter`` timed iterations after ``warmup`` ones on ``crop``² batches."""
    cfg = {"n_steps": 1, "n_steps_decay": 0, "crop": crop, "threads": threads, "seed": seed, "device": str(device)}
    return [{"config": config, "method": n, "kwargs": kw, "n_iter": n_iter, "warmup": warmup, "cfg": dict(cfg)}
            for n, kw in kwargs.items()]


def cost_table(jobs: Sequence[Mapping[str, Any]], costs: Sequence[Mapping[str, Any]]):
    """A ``pandas.DataFrame``, one row per job and its :func:`measure_costs` result (``repeat``: the
    job's ``repeat`` key, 0 when absent — a configuration measured several times, interleaved)."""
    import pandas as pd

    return pd.DataFrame([{"config": j["config"], "method": j["method"], "repeat": int(j.get("repeat", 0)),
                          "crop": j["cfg"]["crop"],
                          "ngf": j["kwargs"]["ngf"], "sec/iter (median)": c["sec_per_iter_median"],
                          "sec/iter (mean)": c["sec_per_iter"], "peak mem above baseline (MB)": c["peak_mem_delta_mb"],
                          "baseline (MB)": c["baseline_mem_mb"], "memory kind": c["memory_kind"],
                          "device": c["device"], "threads": c["threads"], "timed iterations": c["n_iter"]}
                         for j, c in zip(jobs, costs)])


def measure_costs(jobs: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """``measure_cost`` of each job — ``{"method", "kwargs", "cfg", "n_iter", "warmup"}`` — one after
    the other, launched from a helper process. Raises ``RuntimeError`` with the helper's error output."""
    payload = [{k: job[k] for k in ("method", "kwargs", "cfg", "n_iter", "warmup")} for job in jobs]
    proc = subprocess.run([sys.executable, "-m", "dehazelab.cost"], input=json.dumps(payload),
                          capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"cost measurement failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _main() -> None:
    from .train.unpaired import measure_cost

    jobs = json.load(sys.stdin)
    print(json.dumps([measure_cost(j["method"], j["cfg"], j["n_iter"], warmup=j["warmup"], method_kwargs=j["kwargs"])
                      for j in jobs]))


if __name__ == "__main__":
    _main()
