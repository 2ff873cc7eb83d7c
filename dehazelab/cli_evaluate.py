"""``python -m dehazelab evaluate``: a model's PSNR/SSIM on every hazy/clear pair of a data folder."""

from __future__ import annotations

import json
import math
import os
import sys
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["cmd_evaluate"]

#: columns of the per-image CSV
COLUMNS = ["hazy", "clear", "scene", "level", "psnr", "ssim", "psnr_hazy"]


def _progress(iterable, desc: str, total=None):
    from tqdm.auto import tqdm

    return tqdm(iterable, desc=desc, total=total, file=sys.stderr, unit="img")


def _check_csv_target(csv: Path, data_root: Path, inputs: set[Path]) -> None:
    """Refuse, before any work, a ``--csv`` that is a folder, an input image, any other existing
    non-CSV file, or a path inside the dataset folder (it would change the dataset)."""
    from .data import DataError

    if csv.is_dir():
        raise DataError(f"{csv}: --csv names a folder; give a file name, e.g. {csv / 'per_image.csv'}")
    res = csv.resolve()
    if res in inputs:
        raise DataError(f"{csv}: refusing to overwrite an input image")
    if csv.exists() and csv.suffix.lower() != ".csv":
        raise DataError(f"{csv}: refusing to overwrite a file that is not a .csv")
    if res.is_relative_to(data_root.resolve()):
        raise DataError(f"{csv}: refusing to write inside the dataset folder {data_root}")


def _finite_or_none(v: float) -> float | None:
    return float(v) if math.isfinite(v) else None


def _score_pairs(pairs: list, model: Any, args, csv: Path | None) -> tuple[list[dict], list[str]]:
    """Dehaze and score every pair (rows, and the messages of pairs that could not be read). With
    ``csv``, rows land on disk as they are computed (``<csv>.partial``, renamed to ``csv`` at the end)."""
    import csv as csv_mod

    from . import metrics
    from .data import DataError
    from .data.layouts import load_pair
    from .inference import dehaze_array

    rows, failed = [], []
    partial = csv.with_name(csv.name + ".partial") if csv is not None else None
    sink = None
    if partial is not None:
        csv.parent.mkdir(parents=True, exist_ok=True)
        fh = open(partial, "w", newline="", encoding="utf-8")
        sink = csv_mod.DictWriter(fh, fieldnames=COLUMNS)
        sink.writeheader()
    try:
        for pair in _progress(pairs, f"evaluate ({args.model})"):
            try:
                hazy, clear = load_pair(pair)
                if min(hazy.shape[:2]) < metrics.SSIM_MIN_SIDE:
                    raise DataError(f"{pair.hazy}: {hazy.shape[0]}x{hazy.shape[1]} pixels is too small to score "
                                    f"(SSIM's window needs at least {metrics.SSIM_MIN_SIDE}x{metrics.SSIM_MIN_SIDE})")
            except DataError as exc:
                if args.stop_on_error:
                    raise
                failed.append(str(exc))
                continue
            pred = dehaze_array(model, hazy)  # padded to the model's size multiple: any size runs
            row = {"hazy": str(pair.hazy), "clear": str(pair.clear), "scene": pair.scene, "level": pair.level,
                   "psnr": metrics.psnr(pred, clear), "ssim": metrics.ssim(pred, clear),
                   "psnr_hazy": metrics.psnr(hazy, clear)}
            rows.append(row)
            if sink is not None:
                sink.writerow(row)
                fh.flush()
    finally:
        if sink is not None:
            fh.close()
    if partial is not None:
        os.replace(partial, csv)
    return rows, failed


def cmd_evaluate(args) -> int:
    import pandas as pd

    from .data import DataError
    from .data.layouts import detect_layout, find_pairs
    from .inference import load_model

    if args.limit < 0:
        raise SystemExit(f"error: --limit must be >= 0 (0 = all pairs), got {args.limit}")
    root = Path(args.data)
    layout = detect_layout(root)
    pairs = [p for p in find_pairs(root) if p.clear is not None]
    if not pairs:
        raise SystemExit(f"{root}: layout {layout!r} has no hazy/clear pairs to evaluate")
    if args.limit:
        pairs = pairs[: args.limit]
    csv = Path(args.csv) if args.csv else None
    if csv is not None:
        _check_csv_target(csv, root, {Path(q).resolve() for p in pairs for q in (p.hazy, p.clear)})
    model = load_model(args.model, args.weights, device=args.device)
    rows, failed = _score_pairs(pairs, model, args, csv)
    df = pd.DataFrame(rows, columns=COLUMNS)
    if df.empty:
        raise DataError(f"{root}: no pair could be scored ({len(failed)} failed, e.g. {failed[0]})")
    summary = {
        "model": args.model,
        "weights": str(args.weights) if args.weights else None,
        "data": str(root),
        "layout": layout,
        "n": int(len(df)),
        # an image equal to its GT has an infinite PSNR: null in the JSON (strict JSON has no Infinity)
        "psnr": _finite_or_none(df["psnr"].mean()),
        "ssim": _finite_or_none(df["ssim"].mean()),
        "psnr_hazy": _finite_or_none(df["psnr_hazy"].mean()),
        "n_infinite_psnr": int((~np.isfinite(df["psnr"].to_numpy())).sum()),
        "metric": "scikit-image PSNR/SSIM, RGB, data_range=1, channel_axis=-1",
        "per_image_csv": str(csv) if csv is not None else None,
        "n_failed": len(failed),
        "failed": failed,
    }
    if args.json:
        print(json.dumps(summary, allow_nan=False))
    else:
        fmt = lambda v, spec: "inf" if v is None else format(v, spec)  # noqa: E731
        where = f"; per image: {csv}" if csv is not None else " (--csv FILE for per-image numbers)"
        print(
            f"{args.model} on {root} ({layout}, n={summary['n']}): PSNR {fmt(summary['psnr'], '.2f')} dB, "
            f"SSIM {fmt(summary['ssim'], '.4f')} (hazy input PSNR {fmt(summary['psnr_hazy'], '.2f')} dB){where}"
        )
    if failed:
        print(f"error: {len(failed)} of {len(pairs)} pair(s) could not be scored (the means leave them out):",
              file=sys.stderr)
        for msg in failed:
            print(f"  {msg}", file=sys.stderr)
        return 1
    return 0
