"""What the committed small-size runs cost, from their own records (issue 15's budget).

Every run's ``summary.json`` records the seconds its 1-thread job spent training (``train_s``, PRM warm-up
included as ``warmup_s``) and scoring (``eval_s``). This sums them per notebook grid of
``config/<size>.yaml``; a run two notebooks share (notebook 01's L1 runs, which notebook 04 fine-tunes) is
counted once, for the first notebook that declares it. ``--cores`` job slots side by side give the lower bound
of the wall time (the pipeline's scheduling tail and the notebooks come on top).

    python tools/run_costs.py            # markdown table on stdout
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from dehazelab.runs.grids import grid, notebook_params  # noqa: E402


def run_seconds(summary: dict) -> float:
    return float(sum(summary.get(k) or 0.0 for k in ("train_s", "warmup_s", "eval_s")))


def costs(size: str = "small") -> list[dict]:
    cfg = yaml.safe_load((ROOT / "config" / f"{size}.yaml").read_text())
    seen: set[str] = set()
    rows = []
    for nb, over in cfg["notebooks"].items():
        ids = [g.id for g in grid(nb, notebook_params(nb, {**(over or {}), "size": size}))]
        own = [i for i in ids if i not in seen]
        seen.update(ids)
        if not ids:
            continue
        secs, missing = 0.0, []
        for i in own:
            p = ROOT / "results" / "runs" / size / i / "summary.json"
            if p.is_file():
                secs += run_seconds(json.loads(p.read_text()))
            else:
                missing.append(i)
        rows.append({"notebook": nb, "runs": len(ids), "own": len(own), "cpu_min": secs / 60, "missing": missing})
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", default="small")
    ap.add_argument("--cores", type=int, default=2)
    a = ap.parse_args()
    rows = costs(a.size)
    print(f"| notebook | runs in its grid | counted here | job minutes (1 thread) | on {a.cores} cores, at least |")
    print("|---|---|---|---|---|")
    for r in rows:
        miss = f" ({len(r['missing'])} not trained)" if r["missing"] else ""
        print(f"| {r['notebook']} | {r['runs']} | {r['own']}{miss} | {r['cpu_min']:.0f} | {r['cpu_min'] / a.cores:.0f} min |")
    total = sum(r["cpu_min"] for r in rows)
    print(f"| all | | {sum(r['own'] for r in rows)} | {total:.0f} | {total / a.cores / 60:.1f} h |")


if __name__ == "__main__":
    main()
