"""The committed weights of each registered model and their test scores, read at call time.

Each notebook exports the first seed's trained network of a model as
``results/<size>/<notebook>/<model>_<size>.pt`` (what ``dehaze --model M --weights F`` loads); the run
that trained it lives in ``results/runs/<size>/<id>/`` with its ``summary.json`` (test PSNR/SSIM) and
``weights.pt`` (:mod:`dehazelab.runs.store`). :func:`committed_weights` finds each model's file and
the run it came from **by content**: the run whose kept weights equal the file's tensors (a paired
run's ``weights.pt`` is the same checkpoint; an unpaired run's holds every network, one of which is
the exported generator). Nothing is hard-coded, so the answer follows ``results/`` when it is
regenerated; a model without a file is "not committed", a file without a matching run has no scores.

``python -m dehazelab models`` prints this listing.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["CommittedWeights", "committed_weights", "SIZE"]

#: the size whose weights are committed to the repository
SIZE = "small"


@dataclass(frozen=True)
class CommittedWeights:
    model: str
    path: Path | None  # None: no file committed for this model
    run: str | None = None  # id of the run whose weights these are
    label: str | None = None  # that run's variant name in the notebook's tables
    psnr: float | None = None
    ssim: float | None = None
    n_test: int | None = None
    test_set: str | None = None
    note: str = ""  # why there are no scores (or no file)


def _state_of_checkpoint(ckpt: Any) -> tuple[dict | None, str | None]:
    """``(state dict, recorded model name)`` of an exported checkpoint (or a bare state dict)."""
    if isinstance(ckpt, dict) and isinstance(ckpt.get("model"), dict):
        spec = ckpt.get("model_spec") or {}
        return ckpt["model"], spec.get("model") if isinstance(spec, dict) else None
    if isinstance(ckpt, dict) and ckpt and all(isinstance(k, str) for k in ckpt):
        return ckpt, None
    return None, None


def _same_tensors(a: dict, b: dict) -> bool:
    import torch

    if set(a) != set(b):
        if all(k.startswith("generator.") for k in a):  # ImageTranslator(generator): keys "generator.*"
            a = {k[len("generator."):]: v for k, v in a.items()}
        if set(a) != set(b):
            return False
    return all(isinstance(b[k], torch.Tensor) and isinstance(v, torch.Tensor) and v.shape == b[k].shape
               and torch.equal(v, b[k]) for k, v in a.items())


def _run_states(weights: Any) -> list[dict]:
    """The state dicts a run's ``weights.pt`` holds: a paired run's network, or an unpaired run's nets."""
    if not isinstance(weights, dict):
        return []
    if isinstance(weights.get("nets"), dict):
        return [s for s in weights["nets"].values() if isinstance(s, dict)]
    state, _ = _state_of_checkpoint(weights)
    return [state] if state is not None else []


class _Runs:
    """The finished runs of ``results/runs/<size>`` that kept their weights (weights read lazily)."""

    def __init__(self, folder: Path):
        self.runs: list[tuple[Path, dict]] = []
        self._states: dict[Path, list[dict]] = {}
        if folder.is_dir():
            for d in sorted(p for p in folder.iterdir() if p.is_dir()):
                s, w = d / "summary.json", d / "weights.pt"
                if s.is_file() and w.is_file():
                    try:
                        self.runs.append((d, json.loads(s.read_text(encoding="utf-8"))))
                    except ValueError:
                        continue

    def states(self, d: Path) -> list[dict]:
        if d not in self._states:
            from .train.checkpoint import CheckpointError, read_weights_only

            try:
                self._states[d] = _run_states(read_weights_only(d / "weights.pt"))
            except CheckpointError:
                self._states[d] = []
        return self._states[d]

    def match(self, state: dict, model: str | None) -> tuple[Path, dict] | None:
        def named(summary: dict) -> bool:
            spec = summary.get("spec") or {}
            return model in (spec.get("model"), spec.get("method"))

        # runs of the recorded model first (cheap), then any run (a file exported under another name)
        ordered = [r for r in self.runs if model and named(r[1])] + [r for r in self.runs if not (model and named(r[1]))]
        for d, summary in ordered:
            if any(_same_tensors(state, s) for s in self.states(d)):
                return d, summary
        return None


def _test_set(summary: dict) -> str | None:
    test = ((summary.get("spec") or {}).get("data") or {}).get("test")
    if isinstance(test, dict):
        return test.get("name")
    return test if isinstance(test, str) else None


def _num(v: Any) -> float | None:
    return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else None


def committed_weights(size: str = SIZE, models: list[str] | None = None) -> dict[str, CommittedWeights]:
    """For each registered model that needs weights (or each of ``models``): its file under
    ``results/<size>/*/<model>_<size>.pt`` and the test scores of the run that trained it."""
    from . import paths
    from .models import MODELS
    from .train.checkpoint import CheckpointError, read_weights_only

    root = paths.results_dir() / size
    names = models if models is not None else sorted(n for n, e in MODELS.items() if e.needs_weights)
    from .runs import runs_dir

    runs = _Runs(runs_dir(size))
    out: dict[str, CommittedWeights] = {}
    for name in names:
        files = sorted(root.glob(f"*/{name}_{size}.pt")) if root.is_dir() else []
        if not files:
            out[name] = CommittedWeights(name, None, note="not committed")
            continue
        path = files[0]
        try:
            state, recorded = _state_of_checkpoint(read_weights_only(path))
        except CheckpointError as exc:
            out[name] = CommittedWeights(name, path, note=str(exc))
            continue
        if state is None:
            out[name] = CommittedWeights(name, path, note=f"{path.name}: not a weights checkpoint")
            continue
        found = runs.match(state, recorded or name)
        if found is None:
            out[name] = CommittedWeights(name, path, note=f"not recorded (no run in runs/{size}/ of the results folder "
                                                          "holds these weights)")
            continue
        d, s = found
        n = s.get("n_test")
        out[name] = CommittedWeights(name, path, run=d.name, label=s.get("label"), psnr=_num(s.get("psnr")),
                                     ssim=_num(s.get("ssim")), n_test=int(n) if isinstance(n, int) else None,
                                     test_set=_test_set(s),
                                     note="" if s.get("psnr") is not None else f"not recorded (run {d.name} has no test scores)")
    return out
