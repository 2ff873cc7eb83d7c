"""Notebook 00's plumbing, defined once (d2l style): its set-up, the images it scores, the dark channel
prior scored on them, the CR paper's Table 1 DCP row beside ours, and what it writes.

    cfg, OUT, DATA = baselines.start(globals())           # seed, style, output folder, data root
    sots_items, cfg.data_used["sots"] = baselines.sots_test_items(DATA, cfg.sots_test_scenes, cfg.sots_levels, cfg.seed)
    per_image = baselines.score_dcp({"SOTS-indoor": sots_items})
    table1 = baselines.dcp_table(per_image, baselines.quoted_dcp())

An *item* is a dict ``{"name", "hazy", "clear"}`` (SOTS items also ``"scene"``, ``"level"``) holding
float ``HxWx3`` images in ``[0, 1]``.
"""

from __future__ import annotations

import platform
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

__all__ = ["NOTEBOOK", "RunConfig", "start", "sots_test_items", "nh_haze_items", "real_photo_files",
           "convention_gap", "score_dcp", "bootstrap_half_width", "quoted_dcp", "dcp_table", "gap_lines",
           "scattering_figure", "dcp_real_figure", "metrics"]

NOTEBOOK = "00_data_baselines"

#: The DCP variants scored: the paper's settings, and without the guided-filter refinement (an ablation).
DCP_VARIANTS: tuple[tuple[str, bool], ...] = (("DCP (ours)", True), ("DCP, no refinement (ours)", False))

#: Sub-folders of ``<data>/real-hazy/`` the photographs are drawn from, in this order.
REAL_SUBFOLDERS: tuple[str, ...] = ("fattal", "rtts-style", "classic")


@dataclass
class RunConfig:
    """The resolved configuration of this run, written beside its results."""

    size: str
    seed: int
    threads: int
    out_dir: str
    sots_test_scenes: list
    sots_levels: list
    nh_max_pairs: int
    real_max_images: int
    data_root: str | None = None
    data_used: dict = field(default_factory=dict)
    versions: dict = field(default_factory=dict)


def start(params: Mapping[str, Any]) -> tuple[RunConfig, Path, Path | None]:
    """Set notebook 00 up from its parameters (the names of its parameters cell, read from ``params``,
    e.g. ``globals()``): ``(config, output folder, benchmark data root or None)``.

    Checks the size and the scene range, seeds python/numpy/torch and applies the plot style
    (:func:`dehazelab.workbook.prepare`), and records the data root and library versions in the config."""
    import torch

    from . import paths, workbook

    p = workbook.parameters(NOTEBOOK, params)
    cfg = RunConfig(
        size=p["size"], seed=int(p["seed"]), threads=int(p["threads"]), out_dir=p["out_dir"] or f"{p['size']}/{NOTEBOOK}",
        sots_test_scenes=[int(s) for s in p["sots_test_scenes"]], sots_levels=[int(v) for v in p["sots_levels"]],
        nh_max_pairs=int(p["nh_max_pairs"]), real_max_images=int(p["real_max_images"]),
    )
    if cfg.size not in {"smoke", "small", "full"}:
        raise ValueError(f"size must be smoke, small or full, got {cfg.size!r}")
    if len(cfg.sots_test_scenes) != 2 or cfg.sots_test_scenes[0] > cfg.sots_test_scenes[1]:
        raise ValueError(f"sots_test_scenes must be an inclusive range [first, last], got {cfg.sots_test_scenes}")
    out = workbook.prepare(NOTEBOOK, {"size": cfg.size, "out_dir": cfg.out_dir, "threads": cfg.threads}, cfg.seed)
    data = paths.data_root()
    cfg.data_root = str(data) if data else None
    cfg.versions = {"python": platform.python_version(), "torch": torch.__version__, "numpy": np.__version__,
                    "threads": torch.get_num_threads()}
    return cfg, out, data


def sots_test_items(data: Path | None, scenes: Sequence[int], levels: Sequence[int], seed: int = 0
                    ) -> tuple[list[dict], dict]:
    """The test images and a record of them: the SOTS-indoor pairs of the inclusive scene range ``scenes``
    and haze ``levels`` (:func:`dehazelab.data.selection.filter_pairs`) when ``data/sots-indoor`` exists,
    else the test scenes of the synthetic set (:func:`dehazelab.data.synthetic.synthetic_pairs`)."""
    from .data import layouts, synthetic
    from .data.selection import filter_pairs

    if data is not None and (data / "sots-indoor").is_dir():
        all_sots = layouts.find_pairs(data / "sots-indoor")
        lo, hi = scenes
        pairs = filter_pairs(all_sots, scenes=range(lo, hi + 1), levels=levels)
        used = {"source": "sots-indoor", "layout": layouts.detect_layout(data / "sots-indoor"), "scenes": [lo, hi],
                "levels": list(levels), "n_images": len(pairs)}
        items = []
        for p in pairs:
            hz, cl = layouts.load_pair(p)
            items.append({"name": p.hazy.name, "scene": p.scene, "level": p.level, "hazy": hz, "clear": cl})
        print(f"SOTS-indoor: {len(all_sots)} pairs on disk, {len(items)} in this run's test split")
        return items, used
    items = [{"name": f"{s['scene']}_{s['level']}", "scene": s["scene"], "level": s["level"], "hazy": s["hazy"],
              "clear": s["clear"]} for s in synthetic.synthetic_pairs(seed=seed) if s["split"] == "test"]
    print(f"no SOTS-indoor folder: {len(items)} synthetic test pairs")
    return items, {"source": "synthetic-skimage", "n_images": len(items)}


def nh_haze_items(data: Path | None, max_pairs: int) -> tuple[list[dict], dict | None]:
    """The first ``max_pairs`` NH-HAZE pairs of ``data/nh-haze`` as items, and a record of them; ``([], None)``
    when there is no such folder."""
    from .data import layouts

    if data is None or not (data / "nh-haze").is_dir():
        return [], None
    pairs = layouts.find_pairs(data / "nh-haze")[:max_pairs]
    items = []
    for p in pairs:
        hz, cl = layouts.load_pair(p)
        items.append({"name": p.hazy.name, "hazy": hz, "clear": cl})
    return items, {"source": "nh-haze", "pairs": [p.scene for p in pairs]}


def real_photo_files(data: Path | None, max_images: int) -> list[Path]:
    """Up to ``max_images`` real hazy photographs (no ground truth) of ``data/real-hazy/`` (sub-folders
    :data:`REAL_SUBFOLDERS`), taken at a regular stride through their list; ``[]`` without the folder."""
    from .data import layouts

    found = []
    if data is not None and (data / "real-hazy").is_dir():
        for sub in REAL_SUBFOLDERS:
            folder = data / "real-hazy" / sub
            if folder.is_dir():
                found += layouts.find_pairs(folder)
    return [p.hazy for p in found][:: max(1, len(found) // max(1, max_images))][:max_images]


def convention_gap(items: Iterable[Mapping[str, Any]]) -> pd.DataFrame:
    """Mean PSNR and SSIM of each item's hazy image against its clear one in the two conventions —
    scikit-image's (:func:`dehazelab.metrics.psnr` / ``ssim``, what we report) and the AECR-Net/FFA code's
    (``psnr_ffa`` / ``ssim_ffa``) — with their difference (FFA minus scikit-image), one row per quantity."""
    from . import metrics as M

    conv = pd.DataFrame([{"psnr_skimage": M.psnr(it["hazy"], it["clear"]), "psnr_ffa": M.psnr_ffa(it["hazy"], it["clear"]),
                          "ssim_skimage": M.ssim(it["hazy"], it["clear"]), "ssim_ffa": M.ssim_ffa(it["hazy"], it["clear"])}
                         for it in items])
    if conv.empty:
        raise ValueError("convention_gap: no items")
    out = pd.DataFrame({"quantity": ["PSNR (dB)", "SSIM"],
                        "scikit-image (reported)": [conv.psnr_skimage.mean(), conv.ssim_skimage.mean()],
                        "AECR-Net/FFA code": [conv.psnr_ffa.mean(), conv.ssim_ffa.mean()]})
    out["difference"] = out["AECR-Net/FFA code"] - out["scikit-image (reported)"]
    return out


def score_dcp(sets: Mapping[str, Iterable[Mapping[str, Any]]]) -> pd.DataFrame:
    """Per-image scores of DCP with the paper's settings and without its refinement (:data:`DCP_VARIANTS`)
    on every item of every set (``{set name: items}``): one row per (item, variant) with the hazy input's
    PSNR/SSIM and the output's PSNR/SSIM in both conventions."""
    from . import metrics as M
    from .models.dcp import dehaze_dcp

    rows = []
    for tag, items in sets.items():
        for it in items:
            hazy = {"psnr_hazy": M.psnr(it["hazy"], it["clear"]), "ssim_hazy": M.ssim(it["hazy"], it["clear"])}
            for variant, refine in DCP_VARIANTS:
                J, _, _ = dehaze_dcp(it["hazy"], refine=refine)
                rows.append({"method": variant, "set": tag, "image": it["name"], **hazy,
                             "psnr": M.psnr(J, it["clear"]), "ssim": M.ssim(J, it["clear"]),
                             "psnr_ffa": M.psnr_ffa(J, it["clear"]), "ssim_ffa": M.ssim_ffa(J, it["clear"])})
    return pd.DataFrame(rows)


def bootstrap_half_width(x: Iterable[float], n_boot: int = 2000, seed: int = 0) -> float:
    """Half the width of the 95 % percentile-bootstrap interval of the mean of ``x`` (``n_boot``
    resamples with replacement, numpy's ``default_rng(seed)``); NaN for fewer than 2 values. For a
    measurement with no seeds (DCP), the interval is over images."""
    x = np.asarray(list(x) if not isinstance(x, (np.ndarray, pd.Series)) else x, dtype=float)
    if n_boot < 1:
        raise ValueError(f"n_boot must be >= 1, got {n_boot}")
    if len(x) < 2:
        return float("nan")
    rng = np.random.default_rng(seed)
    means = rng.choice(x, size=(n_boot, len(x)), replace=True).mean(axis=1)
    lo, hi = np.percentile(means, [2.5, 97.5])
    return float((hi - lo) / 2)


def quoted_dcp(sets: Sequence[str] = ("SOTS-indoor", "NH-HAZE")) -> dict[str, tuple[float, float]]:
    """The CR paper's (Wu et al., CVPR'21) Table 1 DCP row, quoted from ``dehazelab/papers.json``:
    ``{test set: (PSNR, SSIM)}``."""
    from . import papers

    row = papers.quoted("cr-table1")["DCP"]
    return {s: (row[f"{s} PSNR"], row[f"{s} SSIM"]) for s in sets}


def dcp_table(per_image: pd.DataFrame, quoted: Mapping[str, tuple[float, float]]) -> pd.DataFrame:
    """Table 1's DCP rows from :func:`score_dcp`'s per-image scores: per (set, method), in order of first
    appearance, the means with their 95 % bootstrap half-widths over images (:func:`bootstrap_half_width`),
    the FFA-convention SSIM, the hazy input's PSNR, and — for "DCP (ours)" on a set in ``quoted`` — the
    paper's numbers (NaN otherwise)."""
    rows = []
    for (set_name, method), grp in per_image.groupby(["set", "method"], sort=False):
        paper = quoted.get(set_name) if method == DCP_VARIANTS[0][0] else None
        rows.append({"method": method, "test set": set_name, "n images": len(grp),
                     "PSNR": grp.psnr.mean(), "PSNR ±95%": bootstrap_half_width(grp.psnr),
                     "SSIM": grp.ssim.mean(), "SSIM ±95%": bootstrap_half_width(grp.ssim),
                     "SSIM (FFA conv.)": grp.ssim_ffa.mean(), "hazy input PSNR": grp.psnr_hazy.mean(),
                     "paper PSNR (quoted)": paper[0] if paper else np.nan,
                     "paper SSIM (quoted)": paper[1] if paper else np.nan})
    return pd.DataFrame(rows)


def gap_lines(table1: pd.DataFrame) -> list[str]:
    """One sentence per "DCP (ours)" row of :func:`dcp_table`: our PSNR/SSIM and the hazy input's, and,
    where the paper has a number, the paper's and our gap to it."""
    lines = []
    for r in table1.to_dict("records"):
        if r["method"] != DCP_VARIANTS[0][0]:
            continue
        line = (f"{r['test set']}: ours {r['PSNR']:.2f} dB / {r['SSIM']:.4f} on {r['n images']} images "
                f"(hazy input {r['hazy input PSNR']:.2f} dB)")
        if not np.isnan(r["paper PSNR (quoted)"]):
            line += (f"; paper (quoted) {r['paper PSNR (quoted)']:.2f} dB / {r['paper SSIM (quoted)']:.4f}, "
                     f"gap {r['PSNR'] - r['paper PSNR (quoted)']:+.2f} dB / {r['SSIM'] - r['paper SSIM (quoted)']:+.4f}")
        lines.append(line)
    return lines


def scattering_figure(J, depth, hazy: Sequence[tuple[Any, Any]], betas: Sequence[float], A: float, show: int = 1):
    """The scattering-model figure: clear image, depth, and the transmission and hazy image at
    ``betas[show]`` on the first row; the hazy image at every beta on the second. ``hazy`` holds the
    ``(I, t)`` of :func:`dehazelab.data.haze.synthesize` for each of ``betas``."""
    from . import plotting

    if len(hazy) != len(betas):
        raise ValueError(f"scattering_figure: {len(hazy)} hazy images for {len(betas)} betas")
    return plotting.image_grid(
        [[J, depth, hazy[show][1], hazy[show][0]], [h for h, _ in hazy]],
        col_titles=["clear J", "depth d (normalised)", f"t, beta={betas[show]}", f"hazy I, beta={betas[show]}, A={A}"],
        row_titles=["model", "beta = " + ", ".join(map(str, betas))],
        cmap="magma",
    )


def dcp_real_figure(files: Sequence[Path]):
    """The real photographs ``files`` (top row) and DCP's output on each (bottom row); without photographs,
    a figure saying why it holds none (:func:`dehazelab.plotting.note_figure`)."""
    from . import plotting
    from .data.images import read_image
    from .models.dcp import dehaze_dcp

    if not files:
        return plotting.note_figure("No real hazy photographs: no benchmark data folder with real-hazy/\n"
                                    "(set DEHAZELAB_DATA, see the README). Nothing was dehazed here.")
    rows = []
    for f in files:
        img = read_image(f)
        rows.append([img, dehaze_dcp(img)[0]])
    return plotting.image_grid([list(r) for r in zip(*rows)], row_titles=["hazy photo", "DCP"],
                               col_titles=[Path(f).stem for f in files])


def metrics(cfg: RunConfig, table1: pd.DataFrame, quoted: Mapping[str, tuple[float, float]],
            conventions: pd.DataFrame) -> dict[str, Any]:
    """``metrics.json`` of notebook 00 (read by notebook 90): the data used, each row of :func:`dcp_table`
    keyed by its test set (``"<set> / no refinement"`` for the ablation), the quoted DCP row and the SSIM
    conventions' gap (:func:`convention_gap`)."""
    dcp = {}
    for r in table1.to_dict("records"):
        key = r["test set"] + ("" if r["method"] == DCP_VARIANTS[0][0] else " / no refinement")
        dcp[key] = {"psnr": r["PSNR"], "psnr_ci95": r["PSNR ±95%"], "ssim": r["SSIM"], "ssim_ci95": r["SSIM ±95%"],
                    "ssim_ffa": r["SSIM (FFA conv.)"], "psnr_hazy": r["hazy input PSNR"], "n": r["n images"]}
    return {"notebook": NOTEBOOK, "size": cfg.size, "data": cfg.data_used, "dcp": dcp,
            "paper_quoted": {"CR Table 1, DCP": dict(quoted)},
            "ssim_conventions": conventions.set_index("quantity").to_dict("index")}
