"""Learning curves and the results table of the recipe search (issue 15).

    python benchmarks/recipes/curves.py

Reads every ``runs/<name>/history.csv`` of ``queue.yaml``; training CPU-minutes are the summed
``time_per_step`` of the history windows (evaluation time excluded; the runs use one thread, so
wall time = CPU time of one core). Writes ``results.csv`` (per run: minutes, last and best
validation PSNR / SSIM / ΔE) and ``curves_<family>.png`` with the hazy input and the dark channel
prior on the same validation images as dashed lines (``reference.json``, computed once).
"""

from __future__ import annotations

import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import yaml  # noqa: E402

from dehazelab.curves import learning_curve, plot_learning_curves  # noqa: E402

HERE = Path(__file__).resolve().parent


def curve(name: str) -> pd.DataFrame | None:
    f = HERE / "runs" / name / "history.csv"
    if not f.is_file():
        return None
    w = HERE / "runs" / name / "warmup" / "history.csv"
    return learning_curve(pd.read_csv(f), pd.read_csv(w) if w.is_file() else None)


def reference(spec_file: Path) -> dict[str, dict[str, float]]:
    """Hazy input and DCP on the validation images of ``spec_file`` (cached in reference.json)."""
    cache = HERE / "reference.json"
    refs = json.loads(cache.read_text()) if cache.is_file() else {}
    key = spec_file.name
    if key not in refs:
        import torch

        from dehazelab.data.datasets import PairedDataset
        from dehazelab.metrics import batch_delta_e, batch_psnr, batch_ssim
        from dehazelab.models.dcp import DCP
        from dehazelab.runs.build import test_pairs
        from dehazelab.runs.spec import load_spec

        pairs, _ = test_pairs(load_spec(spec_file))
        ds = PairedDataset(pairs)
        out: dict[str, list] = {"hazy": [], "dcp": []}
        for i in range(len(ds)):
            x, y = ds[i]["hazy"][None], ds[i]["clear"][None]
            for k, p in (("hazy", x), ("dcp", DCP()(x))):
                out[k].append([float(batch_psnr(p, y)), float(batch_ssim(p, y)), float(batch_delta_e(p, y))])
        refs[key] = {k: dict(zip(["psnr", "ssim", "delta_e"], np.mean(v, 0).tolist())) for k, v in out.items()}
        cache.write_text(json.dumps(refs, indent=1) + "\n")
    return refs[key]


def main() -> None:
    queue = yaml.safe_load((HERE / "queue.yaml").read_text())
    rows, families = [], {}
    for e in queue:
        ev = curve(e["name"])
        if ev is None or ev.empty:
            continue
        done = (HERE / "runs" / e["name"] / "summary.json").is_file()
        last = ev.iloc[-1]
        rows.append({"name": e["name"], "spec": e["spec"], "set": " ".join(e.get("set", [])), "finished": done,
                     "step": int(last["step"]), "cpu_min": round(float(last["cpu_min"]), 2), "psnr": last["psnr"],
                     "ssim": last["ssim"], "delta_e": last["delta_e"], "best_psnr": ev["psnr"].max(),
                     "best_psnr_step": int(ev.loc[ev["psnr"].idxmax(), "step"])})
        families.setdefault(e["name"].split("_")[0], []).append((e, ev))
    table = pd.DataFrame(rows)
    table.to_csv(HERE / "results.csv", index=False, float_format="%.4f")
    print(table.drop(columns=["spec", "set"]).to_string(index=False))
    for fam, runs in families.items():
        refs = reference(HERE / "specs" / runs[0][0]["spec"])
        fig = plot_learning_curves({e["name"]: [ev] for e, ev in runs},
                                   {"hazy input": refs["hazy"], "DCP": refs["dcp"]},
                                   title=f"recipe search, {fam}: validation scenes 1425-1429 (10 images)")
        fig.savefig(HERE / f"curves_{fam}.png", dpi=90)
        plt.close(fig)


if __name__ == "__main__":
    main()
