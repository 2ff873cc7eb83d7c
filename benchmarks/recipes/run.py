"""Run the recipe-search queue (issue 15): every entry of ``queue.yaml`` not yet finished, one after the other.

    python benchmarks/recipes/run.py [--only NAME ...] [--list]

Each entry is a spec of ``specs/`` plus ``--set`` overrides (and optionally ``stop_at: N``: train the
first N steps of the schedule only, for costly variants); its run folder is ``runs/<name>/``. A run
whose ``summary.json`` exists is skipped; an interrupted one resumes from its ``last.pt`` (the
trainer's resume). Runs use the thread count of their spec (1), so two queues can run side by side
on two cores (a queue skips a run another one is training: ``runs/<name>/.running``). Learning curves: ``python benchmarks/recipes/curves.py``.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

import yaml

HERE = Path(__file__).resolve().parent


def load_queue() -> list[dict]:
    q = yaml.safe_load((HERE / "queue.yaml").read_text())
    names = [e["name"] for e in q]
    dup = {n for n in names if names.count(n) > 1}
    if dup:
        sys.exit(f"{HERE / 'queue.yaml'}: duplicate names {sorted(dup)}")
    return q


def finished(e: dict) -> bool:
    """A run is finished when it wrote summary.json, or (``stop_at: N`` entries: a partial run of a
    longer schedule, for costly variants) when its history reached step N."""
    out = HERE / "runs" / e["name"]
    if (out / "summary.json").is_file():
        return True
    h = out / "history.csv"
    if e.get("stop_at") and h.is_file():
        lines = h.read_text().strip().splitlines()
        return len(lines) > 1 and int(lines[-1].split(",")[0]) >= int(e["stop_at"])
    return False


def claim(out: Path) -> bool:
    """Take ``out/.running`` (so several queues can share the list); a lock of a dead process is taken over."""
    out.mkdir(parents=True, exist_ok=True)
    lock = out / ".running"
    try:
        pid = int(lock.read_text())
        os.kill(pid, 0)
        return False  # another queue is training it
    except (FileNotFoundError, ValueError, ProcessLookupError):
        pass
    lock.write_text(str(os.getpid()))
    return int(lock.read_text()) == os.getpid()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", nargs="*", default=None, help="run only these names")
    ap.add_argument("--list", action="store_true", help="print the queue with each run's state")
    args = ap.parse_args()
    if args.list:
        for e in load_queue():
            done = finished(e)
            print(f"{'done' if done else 'todo':5} {e['name']}: {e['spec']} {' '.join(e.get('set', []))}")
        return 0
    tried: set[str] = set()
    while True:  # the queue is re-read after every run, so entries can be added or reordered meanwhile
        todo = [e for e in load_queue() if e["name"] not in tried
                and not finished(e)
                and (args.only is None or e["name"] in args.only)]
        e = next((e for e in todo if claim(HERE / "runs" / e["name"])), None)
        if e is None:
            break
        tried.add(e["name"])
        out = HERE / "runs" / e["name"]
        cmd = [sys.executable, "-m", "dehazelab", "train", str(HERE / "specs" / e["spec"]), "--out", str(out),
               "--label", e["name"]]
        for s in e.get("set", []):
            cmd += ["--set", s]
        if e.get("stop_at"):
            cmd += ["--stop-at", str(e["stop_at"])]
        print("+", " ".join(cmd), flush=True)
        rc = subprocess.call(cmd)
        (out / ".running").unlink(missing_ok=True)
        if rc:
            print(f"{e['name']}: exit code {rc}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
