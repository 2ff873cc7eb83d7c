"""Time the dark-channel-prior baseline, and optionally score it on SOTS-indoor.

    python benchmarks/bench_dcp.py               # median wall time at 620x460 and 1600x1200, one thread
    python benchmarks/bench_dcp.py --sots        # + hazy-input and DCP PSNR/SSIM over every SOTS hazy image
    python benchmarks/bench_dcp.py --sots --csv out.csv   # also write the per-image numbers

Timing inputs are real images when the benchmark data is there (a SOTS hazy image, an NH-HAZE hazy
image), else random noise of the same size (DCP's cost does not depend on content). Parameters are the
paper's defaults (patch 15, omega 0.95, t0 0.1, guided filter r 60, eps 1e-4); nothing is tuned here.
"""

from __future__ import annotations

import os

# "one core": pin the BLAS/OpenMP pools before numpy is imported (scipy's filters are single-threaded)
for _v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_v, "1")

import argparse  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from dehazelab.metrics import psnr, psnr_ffa, ssim, ssim_ffa  # noqa: E402
from dehazelab.models.dcp import dehaze_dcp  # noqa: E402
from dehazelab.paths import data_root  # noqa: E402


def load(path: Path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB"), dtype=np.float32) / 255.0


def center_crop(img: np.ndarray, h: int, w: int) -> np.ndarray:
    H, W = img.shape[:2]
    top, left = (H - h) // 2, (W - w) // 2
    return img[top : top + h, left : left + w]


def timing_image(h: int, w: int) -> tuple[np.ndarray, str]:
    root = data_root()
    cands = []
    if root is not None:
        cands = sorted((root / "sots-indoor" / "hazy").glob("*.png")) + sorted((root / "nh-haze").glob("*_hazy.png"))
    for p in cands:
        img = load(p)
        if img.shape[:2] == (h, w):
            return img, str(p.relative_to(root))
    return np.random.default_rng(0).random((h, w, 3), dtype=np.float32), "random noise"


def bench(repeats: int) -> None:
    print(f"DCP timing (median of {repeats} runs, OMP/BLAS threads = {os.environ['OMP_NUM_THREADS']})")
    for h, w in [(460, 620), (1200, 1600)]:
        img, src = timing_image(h, w)
        dehaze_dcp(img)  # warm-up
        ts = []
        for _ in range(repeats):
            t = time.perf_counter()
            dehaze_dcp(img)
            ts.append(time.perf_counter() - t)
        med, lo, hi = (1e3 * v for v in (statistics.median(ts), min(ts), max(ts)))
        print(f"  {w}x{h} ({src}): {med:8.1f} ms   (min {lo:.1f}, max {hi:.1f})")


def sots(csv: str | None) -> None:
    root = data_root()
    folder = None if root is None else root / "sots-indoor"
    if folder is None or not (folder / "hazy").is_dir():
        print("no sots-indoor data: skipping the SOTS measurement")
        return
    rows = []
    cropped = 0
    hazy_paths = sorted((folder / "hazy").glob("*.png"))
    for p in hazy_paths:
        hazy = load(p)
        gt = load(folder / "gt" / (p.stem.split("_")[0] + ".png"))
        if gt.shape != hazy.shape:
            gt = center_crop(gt, *hazy.shape[:2])
            cropped += 1
        J, _, A = dehaze_dcp(hazy)
        rows.append(
            dict(
                image=p.name,
                level=int(p.stem.split("_")[1]),
                hazy_psnr=psnr(hazy, gt),
                hazy_ssim=ssim(hazy, gt),
                dcp_psnr=psnr(J, gt),
                dcp_ssim=ssim(J, gt),
                dcp_psnr_ffa=psnr_ffa(J, gt),
                dcp_ssim_ffa=ssim_ffa(J, gt),
                A_mean=float(np.mean(A)),
            )
        )
    keys = ["hazy_psnr", "hazy_ssim", "dcp_psnr", "dcp_ssim", "dcp_psnr_ffa", "dcp_ssim_ffa"]
    print(f"\nSOTS-indoor: {len(rows)} hazy images, gt centre-cropped for {cropped} of them")
    print("  subset      " + " ".join(f"{k:>13s}" for k in keys))

    def line(name, rs):
        print(f"  {name:<11s} " + " ".join(f"{np.mean([r[k] for r in rs]):13.4f}" for k in keys))

    line("all", rows)
    for lev in sorted({r["level"] for r in rows}):
        line(f"level {lev}", [r for r in rows if r["level"] == lev])
    better = sum(r["dcp_psnr"] > r["hazy_psnr"] for r in rows)
    print(f"  DCP PSNR above the hazy input on {better}/{len(rows)} images")
    if csv:
        import csv as _csv

        with open(csv, "w", newline="") as f:
            wr = _csv.DictWriter(f, fieldnames=list(rows[0]))
            wr.writeheader()
            wr.writerows(rows)
        print(f"  per-image numbers written to {csv}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--sots", action="store_true", help="score DCP on every SOTS-indoor hazy image")
    ap.add_argument("--csv", default=None, help="with --sots: write per-image numbers here")
    args = ap.parse_args()
    bench(args.repeats)
    if args.sots:
        sots(args.csv)


if __name__ == "__main__":
    main()
