"""Where a run's results live and how they are read back.

A *run* is one training run described by a run spec (:mod:`dehazelab.launch`). Its folder is
``results/runs/<size>/<id>/`` where the id is derived from the spec (:func:`run_id`): the same spec
always lands in the same folder, and a changed spec in a new one. The folder holds

=====================  ===================================================================  =========
file                   what                                                                  committed
=====================  ===================================================================  =========
``run_spec.json``      the spec with every default filled in, and what it resolved to        yes
``config.json``        the trainer's resolved configuration                                  yes
``history.csv``        the trainer's log (loss terms, learning rate, seconds per step)       yes
``warmup/``            the first stage's ``history.csv`` / ``config.json`` (staged models)    yes
``per_image.csv``      PSNR / SSIM of every test image                                       yes
``summary.json``       the run's means, timings and sizes; written last: the run is done     yes
``weights.pt``         the trained weights, only when the run keeps them (figures, CLI)      yes
``last.pt`` etc.       the trainer's checkpoints (resume)                                    no
=====================  ===================================================================  =========

:class:`Run` reads a finished folder; :func:`dehazelab.runs.ensure` returns one, training first when
the folder has no ``summary.json``.
"""

from __future__ import annotations

import copy
import hashlib
import json
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

__all__ = ["Run", "run_id", "identity", "SUMMARY_FILE", "PER_IMAGE_FILE", "WEIGHTS_FILE", "RunNotFinished"]

SUMMARY_FILE = "summary.json"
PER_IMAGE_FILE = "per_image.csv"
WEIGHTS_FILE = "weights.pt"


def is_discriminator(net_name: str) -> bool:
    """Whether an unpaired method's network is a discriminator (``D``, ``D_A``, ``D_B``): kept weights
    leave those out, keeping each committed file small."""
    return net_name == "D" or net_name.startswith("D_")
HISTORY_FILE = "history.csv"
WARMUP_DIR = "warmup"
#: Trainer fields that change how a run executes or what it logs, not what it computes.
EXECUTION_FIELDS = ("threads", "device", "num_workers", "eval_every", "eval_max_images", "log_every", "ckpt_every",
                    "snapshot_every", "keep_snapshots")


class RunNotFinished(FileNotFoundError):
    """A run folder without ``summary.json`` (never trained, or interrupted)."""


def identity(spec_dict: Mapping[str, Any]) -> dict[str, Any]:
    """The parts of a spec (``RunSpec.to_dict()``) that decide the trained weights and the test
    metrics: everything but the description, where the data folder is mounted, caching, and the
    trainer's execution/bookkeeping fields (:data:`EXECUTION_FIELDS`)."""
    d = copy.deepcopy(dict(spec_dict))
    d.pop("description", None)
    data = d.get("data") or {}
    data.pop("root", None)
    data.pop("cache", None)
    train = d.get("train") or {}
    for k in EXECUTION_FIELDS:
        train.pop(k, None)
    return d


def _slug(s: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", s.lower()).strip("-") or "run"


def run_id(spec_dict: Mapping[str, Any]) -> str:
    """``<model or method>-<loss>-s<seed>-<10 hex digits>``: readable, and the hash of
    :func:`identity` makes it unique to what the run computes."""
    ident = identity(spec_dict)
    text = json.dumps(ident, sort_keys=True, separators=(",", ":"), default=str)
    digest = hashlib.sha256(text.encode()).hexdigest()[:10]
    name = ident.get("model") or ident.get("method") or "run"
    parts = [_slug(str(name))]
    if ident.get("loss") and ident.get("loss") != "l1":
        parts.append(_slug(str(ident["loss"])))
    parts.append(f"s{(ident.get('train') or {}).get('seed', 0)}")
    return "-".join(parts + [digest])


class Run:
    """A finished run folder: its summary, per-image metrics, histories and (when kept) weights."""

    def __init__(self, folder: str | Path):
        self.dir = Path(folder)
        f = self.dir / SUMMARY_FILE
        if not f.is_file():
            raise RunNotFinished(f"{self.dir}: no {SUMMARY_FILE}: the run has not finished (train it with "
                                 f"dehazelab.runs.ensure or `python -m dehazelab train`)")
        try:
            self.summary: dict[str, Any] = json.loads(f.read_text(encoding="utf-8"))
        except ValueError as e:
            raise RunNotFinished(f"{f}: not valid JSON ({e}); delete it to retrain the run") from None
        self.id = self.dir.name
        self.label = self.summary.get("label") or self.id

    def __repr__(self) -> str:
        return f"Run({self.id!r}, psnr={self.summary.get('psnr')}, ssim={self.summary.get('ssim')})"

    def __getitem__(self, key: str) -> Any:
        return self.summary[key]

    @property
    def spec(self) -> dict[str, Any]:
        return self.summary["spec"]

    @property
    def history(self):
        import pandas as pd

        return pd.read_csv(self.dir / HISTORY_FILE)

    @property
    def warmup_history(self):
        import pandas as pd

        f = self.dir / WARMUP_DIR / HISTORY_FILE
        return pd.read_csv(f) if f.is_file() else None

    def curve(self):
        """Test quality against training CPU-minutes at each evaluation (:func:`dehazelab.curves.learning_curve`;
        a staged run's warm-up time included)."""
        from ..curves import learning_curve

        return learning_curve(self.history, self.warmup_history)

    @property
    def per_image(self):
        import pandas as pd

        return pd.read_csv(self.dir / PER_IMAGE_FILE)

    @property
    def weights_file(self) -> Path:
        return self.dir / WEIGHTS_FILE

    def has_weights(self) -> bool:
        return self.weights_file.is_file()

    def _weights(self) -> dict[str, Any]:
        from ..train.checkpoint import read_weights_only

        if not self.has_weights():
            raise FileNotFoundError(f"{self.dir}: the run kept no {WEIGHTS_FILE} (only the runs a figure or the CLI "
                                    "needs keep their weights; rerun it with keep_weights=True)")
        return read_weights_only(self.weights_file)

    def model(self, device: str = "cpu"):
        """The trained network of a paired run (eval mode), or the dehazer of an unpaired one."""
        if self.spec["kind"] == "unpaired":
            return self.method(device).dehazer().eval()
        from ..inference import load_model

        return load_model(self.spec["model"], self.weights_file, device=device)

    def method(self, device: str = "cpu"):
        """The trained unpaired method (no optimiser state): every network but the discriminators,
        which kept weights leave out (:func:`is_discriminator`; they stay at their initialisation)."""
        from ..methods import build_method

        if self.spec["kind"] != "unpaired":
            raise ValueError(f"{self.id} is a paired run; use .model()")
        ckpt = self._weights()
        m = build_method(self.spec["method"], **self.spec["method_kwargs"])
        for k, net in m.nets.items():
            if not is_discriminator(k):
                net.load_state_dict(ckpt["nets"][k])
        return m.to(device).train(False)
