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

__all__ = ["measure_costs"]


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
