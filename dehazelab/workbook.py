"""What every paper notebook does before it teaches, defined once (d2l style): seed and threads, plot
style, output folder, device, the grid of runs it reads and the test images those runs are scored on,
and the resolved configuration written beside its results.

    nb = workbook.start("01_cr_aecrnet", globals())  # the names of its parameters cell, as papermill set them
    runs = nb.runs()                               # dehazelab.runs.ensure_grid: read, or train what is missing
    ...
    nb.write_config(vgg_used=...)                  # <out>/config.json

The parameters are the names of the notebook's parameters cell (:func:`dehazelab.runs.grids.notebook_defaults`)
read from the mapping given (``globals()``); a name missing from it is an error.
"""

from __future__ import annotations

import platform
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["Notebook", "start", "parameters", "prepare", "vgg_sentence", "md_number", "held_summary", "held_summary_long"]


def held_summary_long(long, vgg: str | None = None) -> str:
    """:func:`held_summary` of a long claims table (``dehazelab.stats.ClaimsTable.frame()``: one row per
    claim, metric and setting), each row named by its claim and metric."""
    import pandas as pd

    from .stats import format_estimate
    from .tables import detectable_text

    short = pd.DataFrame({
        "claim": [f"{r.claim} — {r.metric}" + (" (official architecture)" if "official" in str(r.setting) else "")
                  for r in long.itertuples()],
        "ours": [format_estimate(r.estimate, r.ci95, r.unit, 4 if r.unit in ("", "s") else 2) for r in long.itertuples()],
        "at this size": list(long["verdict"]),
        "detectable with these seeds": [detectable_text(r.ci95, int(r.n), r.unit, 4 if r.unit in ("", "s") else 2)
                                        for r in long.itertuples()],
    })
    return held_summary(short, None, vgg, ours_col="ours")


def held_summary(claims, table=None, vgg: str | None = None, *, ours: str | None = None,
                 floor_ref: str | None = None, claim_col: str = "claim", verdict_col: str = "at this size",
                 ours_col: str = "ours (PSNR difference, 95% CI)") -> str:
    """Markdown for a notebook's ending, generated from its results: the claims grouped as held / not
    held / not shown / undetermined (each with our difference and, when given, what the seeds could
    detect), then — with ``table`` (rows ``row``, ``PSNR``, ``SSIM``), ``ours`` and ``floor_ref`` —
    where the method stands against that reference."""
    from .stats import verdict_category

    groups: dict[str, list[str]] = {"held": [], "not held": [], "not shown": [], "undetermined": []}
    for _, r in claims.iterrows():
        det = r.get("detectable with these seeds", "")
        extra = f"; detectable with these seeds: {det}" if det and det != "—" else ""
        groups[verdict_category(r[verdict_col])].append(f"{r[claim_col]} ({r[ours_col]}{extra})")
    titles = {"held": "**Held**", "not held": "**Not held** (the opposite, beyond seed noise)",
              "not shown": "**Not shown at this size** (within seed noise)", "undetermined": "**Undetermined** (one seed)"}
    lines = [f"* {titles[k]}: " + "; ".join(v) + "." for k, v in groups.items() if v]
    if table is not None and ours is not None and floor_ref is not None:
        t = table.set_index("row")
        if ours in t.index and floor_ref in t.index:
            a, b = t.loc[ours], t.loc[floor_ref]
            lines.append(f"* **Quality**: {ours} {a['PSNR']:.2f} dB / SSIM {a['SSIM']:.3f} against {floor_ref} "
                         f"{b['PSNR']:.2f} dB / {b['SSIM']:.3f}: {a['PSNR'] - b['PSNR']:+.2f} dB, SSIM "
                         f"{a['SSIM'] - b['SSIM']:+.3f}.")
    if vgg is not None and not str(vgg).startswith("imagenet"):
        lines.append(f"* Every VGG-19 term above used a random VGG-19 (`{vgg}`), not the paper's ImageNet one.")
    return "\n".join(lines)


def vgg_sentence(label: str, loss: str) -> str:
    """One Markdown sentence saying which VGG-19 the ``loss`` (e.g. "CR") of this run uses, from the
    label :func:`dehazelab.models.vgg.vgg19_features` returns."""
    if label.startswith("imagenet"):
        return (f"**This run's {loss} uses the ImageNet VGG-19** (`{label}`): the paper's loss, so its "
                "rows can be read against the paper's.")
    return (f"**This run's {loss} uses a random VGG-19** (`{label}`; the ImageNet weights could not be "
            f"loaded here). Its {loss} rows test the loss's form with random features, not the paper's loss: "
            "read their differences from L1 with that in mind.")


def md_number(x: float, digits: int = 2, unit: str = "") -> str:
    """``x`` for a generated sentence: fixed digits, a thin space before the unit, "n/a" when not finite."""
    import math

    if x is None or not math.isfinite(float(x)):
        return "n/a"
    return f"{float(x):.{digits}f}" + (f" {unit}" if unit else "")


@dataclass
class Notebook:
    """One executing notebook: its parameters, where it writes, and what its runs are scored on."""

    name: str
    params: dict[str, Any]
    seeds: list[int]
    out: Path
    device: Any
    versions: dict[str, Any]
    grid: list = field(default_factory=list)  # dehazelab.runs.grids.GridRun, in grid order
    test_pairs: list = field(default_factory=list)
    hazy_items: list = field(default_factory=list)  # unpaired notebooks: the runs' hazy training images
    clear_items: list = field(default_factory=list)  # ... and their clear ones (other scenes)
    data_used: dict[str, Any] = field(default_factory=dict)

    @property
    def size(self) -> str:
        return str(self.params["size"])

    @property
    def test_set(self):
        from .data.datasets import PairedDataset

        return PairedDataset(self.test_pairs)

    def scores(self, dehaze) -> dict[str, float]:
        """Mean PSNR, SSIM and ΔE (CIEDE2000) over the test pairs of an untrained method: ``dehaze`` maps
        an HWC float image to its HWC restoration (``lambda im: im`` scores the hazy input itself)."""
        import numpy as np

        from . import metrics as M

        ds, rows = self.test_set, []
        for i in range(len(ds)):
            it = ds[i]
            hazy, clear = it["hazy"].permute(1, 2, 0).numpy(), it["clear"].permute(1, 2, 0).numpy()
            out = np.clip(dehaze(hazy), 0.0, 1.0)
            rows.append((M.psnr(out, clear), M.ssim(out, clear), M.delta_e(out, clear)))
        a = np.asarray(rows, dtype=float)
        return {"psnr": float(a[:, 0].mean()), "ssim": float(a[:, 1].mean()), "delta_e": float(a[:, 2].mean())}

    def shown_pairs(self, k: int) -> list[tuple[Any, Any, str]]:
        """``k`` test pairs of *different* scenes for a qualitative figure (``data.selection.distinct_scenes``):
        ``(hazy, clear, row label)`` with the label naming the scene and haze level."""
        from .data.selection import distinct_scenes

        ds = self.test_set
        out = []
        for i in distinct_scenes(self.test_pairs, k):
            p, item = self.test_pairs[i], ds[i]
            level = getattr(p, "level", None)
            label = f"{getattr(p, 'scene', p.name)}" + (f", haze level {level}" if level not in (None, "") else "")
            out.append((item["hazy"], item["clear"], label))
        return out

    def runs(self, progress: bool = True):
        """Every run of the grid (:func:`dehazelab.runs.ensure_grid`): read when finished, else trained here."""
        from .runs import ensure_grid

        return ensure_grid(self.name, self.params, progress=progress)

    def write_config(self, **extra: Any) -> Path:
        """``<out>/config.json``: the parameters, the runs' ids, the data used, versions, and ``extra``."""
        from . import io
        from .runs import runs_dir

        cfg = {**self.params, "seeds": self.seeds, "out_dir": str(self.out), "data_used": self.data_used,
               "runs_dir": str(runs_dir(self.size)), "runs": {f"{g.variant}/seed{g.seed}": g.id for g in self.grid},
               "versions": self.versions, **extra}
        io.write_json(self.out / "config.json", cfg)
        return self.out / "config.json"


def parameters(name: str, params: Mapping[str, Any]) -> dict[str, Any]:
    """The names of notebook ``name``'s parameters cell (:func:`dehazelab.runs.grids.notebook_defaults`) with
    their values read from ``params`` (the notebook's ``globals()``, as papermill set them), in the cell's
    order; a name missing from ``params`` is a ``ValueError`` naming it."""
    from .runs.grids import notebook_defaults

    declared = notebook_defaults(name)
    missing = [k for k in declared if k not in params]
    if missing:
        raise ValueError(f"{name}: parameter(s) {missing} of its parameters cell are not given")
    return {k: params[k] for k in declared}  # from globals(): the parameters cell's names only


def prepare(name: str, params: Mapping[str, Any], seed: int) -> Path:
    """Seed python/numpy/torch with ``seed`` at ``params["threads"]`` threads (default 1), apply the plot
    style, and create the output folder ``<results>/<params["out_dir"] or "<size>/<name>">``, returned."""
    from . import paths, plotting, repro

    repro.seed_everything(int(seed), threads=int(params.get("threads", 1)))
    plotting.setup()
    warnings.filterwarnings("ignore", message="IProgress not found")  # tqdm.auto in a kernel without ipywidgets
    out = paths.results_dir() / (params.get("out_dir") or f"{params['size']}/{name}")
    out.mkdir(parents=True, exist_ok=True)
    return out


def start(name: str, params: Mapping[str, Any]) -> Notebook:
    """Set up notebook ``name`` from its parameters: seed python/numpy/torch with the first seed at
    ``params["threads"]`` threads, the plot style, ``<results>/<out_dir or size/name>/``, the device
    (CUDA when present), and — for a notebook that trains — its grid of runs and their test images."""
    import torch

    from . import repro
    from .runs.grids import GRIDS, grid

    params = parameters(name, params)
    seeds = [int(s) for s in params.get("seeds", [params.get("seed", 0)])]
    if not seeds:
        raise ValueError(f"{name}: seeds is empty")
    out = prepare(name, params, seeds[0])
    device = repro.pick_device("auto")
    versions = {"python": platform.python_version(), "torch": torch.__version__, "device": str(device),
                "threads": torch.get_num_threads()}
    nb = Notebook(name, params, seeds, out, device, versions)
    if name in GRIDS:
        from .launch import parse_spec
        from .runs.build import test_pairs, unpaired_train

        nb.grid = grid(name, params, run_threads=int(params.get("threads", 1)))
        spec = parse_spec(nb.grid[0].spec, source=f"{name} grid")
        nb.test_pairs, info = test_pairs(spec)
        nb.data_used = {"test": info}
        if spec.kind == "unpaired":
            nb.hazy_items, nb.clear_items, nb.data_used["train"] = unpaired_train(spec)
    return nb
