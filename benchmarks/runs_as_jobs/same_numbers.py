"""Does a change of the training code change any number? Retrain finished runs with the code of this
checkout and compare them with the originals, bit for bit.

    python benchmarks/runs_as_jobs/same_numbers.py REFERENCE_RUNS_FOLDER --out /tmp/retrained --csv out.csv

Each run folder under ``REFERENCE_RUNS_FOLDER`` holding a ``summary.json`` and a ``run_spec.json`` is trained
again from its recorded spec (``python -m dehazelab train run_spec.json``, same seed and thread count), runs
that start from another run's weights after that run. Compared per run: the test PSNR/SSIM of the summary, every
non-timing value of ``history.csv`` (losses, gradient norms, learning rate, evaluations) and, where weights
were kept, every tensor of ``weights.pt``. The CSV gets one row per run with the largest absolute difference of
each kind; 0 everywhere means the same bits.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import torch

#: history columns that measure time or memory (machine-dependent), not the arithmetic
TIMING = ("time_per_step", "sec_per_step", "data_sec", "peak_mem_mb")


def order(runs: dict[str, dict]) -> list[str]:
    """Run ids with every ``init`` base before the runs that start from it."""
    done: list[str] = []

    def visit(i: str) -> None:
        if i in done or i not in runs:
            return
        base = (runs[i]["spec"].get("init") or {}).get("run")
        if base:
            visit(base)
        done.append(i)

    for i in sorted(runs):
        visit(i)
    return done


def max_diff(a: pd.DataFrame, b: pd.DataFrame) -> float:
    cols = [c for c in a.columns if c not in TIMING and c in b.columns and pd.api.types.is_numeric_dtype(a[c])]
    if len(a) != len(b) or set(a.columns) != set(b.columns):
        return float("inf")
    return max((float(np.nanmax(np.abs(a[c].to_numpy(float) - b[c].to_numpy(float)), initial=0.0)) for c in cols),
               default=0.0)


def tensors(obj, prefix: str = "") -> dict[str, torch.Tensor]:
    """Every tensor of a (nested) weights file, by its dotted path."""
    if isinstance(obj, torch.Tensor):
        return {prefix: obj}
    if isinstance(obj, dict):
        return {k: v for key, val in obj.items() for k, v in tensors(val, f"{prefix}.{key}" if prefix else str(key)).items()}
    return {}


def weights_diff(a: Path, b: Path) -> float | None:
    if not a.exists():
        return None
    wa = tensors(torch.load(a, map_location="cpu", weights_only=True))
    wb = tensors(torch.load(b, map_location="cpu", weights_only=True))
    if set(wa) != set(wb):
        return float("inf")
    return max((float((wa[k].double() - wb[k].double()).abs().max()) if wa[k].numel() else 0.0 for k in wa),
               default=0.0)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("reference", type=Path)
    ap.add_argument("--out", type=Path, required=True, help="folder the runs are trained into (a new one)")
    ap.add_argument("--csv", type=Path, required=True)
    args = ap.parse_args(argv)
    runs = {}
    for d in sorted(args.reference.iterdir()):
        if (d / "summary.json").exists() and (d / "run_spec.json").exists():
            runs[d.name] = json.loads((d / "run_spec.json").read_text())
    rows = []
    for i in order(runs):
        ref, new = args.reference / i, args.out / i
        if not (new / "summary.json").exists():
            keep = ["--keep-weights"] if (ref / "weights.pt").exists() else []
            subprocess.run([sys.executable, "-m", "dehazelab", "train", str(ref / "run_spec.json"), "--out", str(new),
                            *keep], check=True, stdout=subprocess.DEVNULL)
        sa, sb = (json.loads((d / "summary.json").read_text()) for d in (ref, new))
        ta, tb = sa.get("test") or sa, sb.get("test") or sb
        rows.append({
            "run": i,
            "psnr_ref": ta.get("psnr"), "psnr_new": tb.get("psnr"),
            "ssim_ref": ta.get("ssim"), "ssim_new": tb.get("ssim"),
            "max_abs_diff_metrics": max(abs(ta.get(k, np.nan) - tb.get(k, np.nan)) for k in ("psnr", "ssim", "delta_e")),
            "max_abs_diff_history": max_diff(pd.read_csv(ref / "history.csv"), pd.read_csv(new / "history.csv")),
            "max_abs_diff_weights": weights_diff(ref / "weights.pt", new / "weights.pt"),
        })
    table = pd.DataFrame(rows)
    args.csv.parent.mkdir(parents=True, exist_ok=True)
    table.to_csv(args.csv, index=False)
    print(table.to_string(index=False))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
