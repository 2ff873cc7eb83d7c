"""Train a prepared run in its folder, stage by stage, then score it and write its summary.

:func:`dehazelab.launch.run` (the ``train`` command, Snakemake's train jobs, ``torchrun``) and
:func:`dehazelab.runs.ensure` (notebooks) both end here, so a run trains and is scored the same way
wherever it starts:

1. staged models (``warmup_steps > 0``, IICL) first train their pre-restore module alone in
   ``warmup/`` and score its own restoration J₀ on the test set (``warmup/j0.json``);
2. the main stage trains in the run folder itself (one trainer for paired runs,
   :func:`~dehazelab.train.paired.train_paired`, one for unpaired methods,
   :func:`~dehazelab.train.unpaired.train_unpaired`); both resume from ``last.pt``;
3. the final weights are scored image by image on the test set (``per_image.csv``), kept when asked
   (``weights.pt``), and ``summary.json`` is written last — its presence marks a finished run.
"""

from __future__ import annotations

import math
import platform
import time
from pathlib import Path
from typing import Any, Callable

from ..io import atomic_open, save_torch, write_json
from .store import PER_IMAGE_FILE, SUMMARY_FILE, WARMUP_DIR, WEIGHTS_FILE, is_discriminator, run_id

__all__ = ["train_stages", "finish", "score", "load_init"]

J0_FILE = "j0.json"


def score(model, test_set, device=None) -> tuple[dict[str, float], list[dict[str, Any]]]:
    """Means and per-image rows (``name``, ``psnr``, ``ssim``, ``delta_e``) of ``model`` on ``test_set``."""
    from ..train.paired import evaluate

    rows: list[dict[str, Any]] = []
    res = evaluate(model, test_set, device, per_image=rows)
    return res, rows


def load_init(prep, out: Path) -> dict[str, Any] | None:
    """Copy the weights of the run named by the spec's ``init`` (``out/../<run>/weights.pt``) into
    ``prep.model`` (names prefixed with ``init.prefix``); return what was loaded (run, file hash,
    how many tensors kept their own initialisation), or ``None`` without ``init``. Every error is a
    :class:`~dehazelab.runs.spec.LaunchError` naming the file."""
    import hashlib

    import torch

    from ..train.checkpoint import read_weights_only
    from .spec import LaunchError

    init = getattr(prep.spec, "init", None)
    if not init:
        return None
    path = Path(out).parent / init["run"] / WEIGHTS_FILE
    where = f"{prep.spec.source} (init.run)"
    if not path.is_file():
        raise LaunchError(f"{where}: {path} does not exist: train run {init['run']} with its weights kept first")
    ckpt = read_weights_only(path)
    if not isinstance(ckpt, dict) or ckpt.get("format") != "dehazelab-weights-1":
        raise LaunchError(f"{where}: {path} is not a dehazelab weights file (format dehazelab-weights-1)")
    own = prep.model.state_dict()
    prefix = init["prefix"]
    for name, t in ckpt["model"].items():
        key = prefix + name
        if key not in own:
            raise LaunchError(f"{where}: {path}: tensor {name!r} has no place {key!r} in model {prep.spec.model!r}")
        if tuple(own[key].shape) != tuple(t.shape):
            raise LaunchError(f"{where}: {path}: tensor {name!r} has shape {tuple(t.shape)}, "
                              f"the model's {key!r} {tuple(own[key].shape)}")
    with torch.no_grad():
        for name, t in ckpt["model"].items():
            own[prefix + name].copy_(t)
    return {"run": init["run"], "prefix": prefix, "sha256": hashlib.sha256(path.read_bytes()).hexdigest(),
            "own_init": len(own) - len(ckpt["model"])}


def train_stages(prep, out: Path, *, resume: bool, progress: bool, stop_at: int | None,
                 on_start: Callable[[], None] | None) -> dict[str, Any]:
    """Train every stage of ``prep`` (a :class:`dehazelab.launch.Prepared`) in ``out``; return the
    history of the main stage and the stage timings."""
    spec, cfg = prep.spec, prep.cfg
    # the final scoring is done by finish(), image by image; the trainer evaluates only on a schedule
    test_for_trainer = prep.test_set if cfg.eval_every else None
    info: dict[str, Any] = {"warmup_s": 0.0}
    if spec.kind == "paired":
        info["init"] = load_init(prep, out)  # before any stage; a resumed run then reads last.pt over it
    if spec.kind == "paired":
        from ..train.paired import train_paired

        if spec.warmup_steps:
            wdir = out / WARMUP_DIR
            t0 = time.perf_counter()
            prep.model.set_stage("prm")
            wcfg = cfg.replace(steps=spec.warmup_steps, log_every=max(1, spec.warmup_steps // 10), eval_every=0)
            train_paired(prep.model, prep.loss_fn, prep.train_set, None, wcfg, wdir, model_spec=prep.model_spec,
                         resume=resume, progress=progress, on_start=on_start)
            info["warmup_s"] = time.perf_counter() - t0
            if prep.test_set is not None and not (wdir / J0_FILE).is_file():
                j0, _ = score(prep.model, prep.test_set)  # stage "prm": the model returns the PRM's own J0
                write_json(wdir / J0_FILE, {"psnr": j0["psnr"], "ssim": j0["ssim"], "n": j0["n"]})
            prep.model.set_stage("joint")
            on_start = None
        t0 = time.perf_counter()
        info["history"] = train_paired(prep.model, prep.loss_fn, prep.train_set, test_for_trainer, cfg, out,
                                       model_spec=prep.model_spec, resume=resume, progress=progress,
                                       stop_at=stop_at, on_start=on_start)
    else:
        from ..train.unpaired import train_unpaired

        t0 = time.perf_counter()
        info["history"] = train_unpaired(prep.method, prep.train_set, test_for_trainer, cfg, out, resume=resume,
                                         progress=progress, stop_at=stop_at, on_start=on_start)
    info["train_s"] = time.perf_counter() - t0
    return info


def _sec_per_step(hist) -> float:
    """Median of the logged seconds per step, the first (warm-up) window left out when there are
    more than two — a median, so a burst of background load does not move it."""
    col = next((c for c in ("sec_per_step", "time_per_step") if hist is not None and c in hist), None)
    if col is None or not len(hist):
        return float("nan")
    s = hist[col].dropna()
    return float(s.iloc[1:].median() if len(s) > 2 else s.mean())


def finish(prep, out: Path, info: dict[str, Any], *, keep_weights: bool, label: str | None) -> dict[str, Any]:
    """Score the trained run, write ``per_image.csv``, ``weights.pt`` (when kept) and, last,
    ``summary.json``; return the summary."""
    import pandas as pd
    import torch

    from ..inference import export_weights

    spec = prep.spec
    net = prep.model if spec.kind == "paired" else prep.method.dehazer()
    summary: dict[str, Any] = {"id": run_id(spec.to_dict()), "label": label or spec.description or None,
                               "spec": spec.to_dict(), "steps": prep.cfg.steps,
                               "warmup_steps": getattr(spec, "warmup_steps", 0)}
    t0 = time.perf_counter()
    if prep.test_set is not None:
        res, rows = score(net, prep.test_set)
        with atomic_open(out / PER_IMAGE_FILE) as f:
            pd.DataFrame(rows).to_csv(f, index=False)
        summary.update(psnr=res["psnr"], ssim=res["ssim"], delta_e=res.get("delta_e"), n_test=res["n"])
    summary["eval_s"] = time.perf_counter() - t0
    if info.get("init"):
        summary["init"] = info["init"]
    j0 = out / WARMUP_DIR / "j0.json"
    if j0.is_file():
        import json

        d = json.loads(j0.read_text())
        summary.update(psnr_j0=d["psnr"], ssim_j0=d["ssim"])
    if spec.kind == "paired":
        summary["params"] = sum(p.numel() for p in prep.model.parameters())
        summary["vgg"] = prep.resolved.get("vgg")
    else:
        n = prep.method.n_params()
        summary["params"] = n
        summary["params_generator"] = n[prep.method.generator_name]
    summary.update(train_s=info["train_s"], warmup_s=info["warmup_s"],
                   sec_per_step=_sec_per_step(info.get("history")),
                   threads=torch.get_num_threads(), torch=torch.__version__, python=platform.python_version(),
                   machine=platform.machine(), world_size=prep.resolved.get("world_size", 1))
    if keep_weights:
        if spec.kind == "paired":
            export_weights(prep.model, prep.model_spec, out / WEIGHTS_FILE)
        else:
            # every network but the discriminators (only training needs them, and it resumes from last.pt)
            state = {"format": "dehazelab-method-weights-1", "method": spec.method,
                     "nets": {k: {n: t.detach().cpu().clone() for n, t in net_.state_dict().items()}
                              for k, net_ in prep.method.nets.items() if not is_discriminator(k)}}
            save_torch(state, out / WEIGHTS_FILE)
    summary = {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in summary.items()}
    write_json(out / SUMMARY_FILE, summary)
    return summary

