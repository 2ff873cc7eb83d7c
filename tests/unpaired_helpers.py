"""Scaffolding shared by the unpaired-loop tests (tests/test_unpaired.py, tests/test_cddgan.py).

Tiny data (smooth random 40x48 images, 32² crops), the loop configuration they train with, a dataset
wrapper that turns the data NaN part-way through, and the two loop checks every unpaired method must
pass: an interrupted and resumed run equals an uninterrupted one to the bit, and a NaN stops training
with the last good checkpoint kept. Each test file passes its own method builder and adds what is
particular to its method. (The loop's progress bars are switched off by the ``no_progress_bars``
fixture of tests/conftest.py, which those files use.)
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F

from dehazelab.data.datasets import PairedDataset, UnpairedDataset
from dehazelab.io import read_json
from dehazelab.methods import UnpairedMethod
from dehazelab.train.checkpoint import TrainingDiverged, load_checkpoint
from dehazelab.train.unpaired import UnpairedTrainConfig, train_unpaired


def images(n: int, seed: int, h: int = 40, w: int = 48) -> list[np.ndarray]:
    """Smooth random images (low-frequency noise upsampled), float32 HxWx3 in [0, 1]."""
    g = torch.Generator().manual_seed(seed)
    small = torch.rand(n, 3, h // 8, w // 8, generator=g)
    big = F.interpolate(small, size=(h, w), mode="bilinear", align_corners=False)
    return [im.permute(1, 2, 0).numpy().astype(np.float32) for im in big]


def unpaired_set(crop=32, augment=True) -> UnpairedDataset:
    return UnpairedDataset(images(4, 1), images(3, 2), crop=crop, augment=augment, seed=3)


def paired_test_set() -> PairedDataset:
    hz, cl = images(2, 5), images(2, 6)
    return PairedDataset([(h, c, f"t{i}") for i, (h, c) in enumerate(zip(hz, cl))])


def make_cfg(**kw) -> UnpairedTrainConfig:
    base = dict(n_steps=3, n_steps_decay=3, crop=32, eval_every=3, log_every=1, seed=11, threads=1)
    base.update(kw)
    return UnpairedTrainConfig(**base)


def all_tensors(obj, prefix=""):
    """Flatten a nested state dict into {path: tensor} (plain numbers as 0-d tensors)."""
    out = {}
    if isinstance(obj, dict):
        for k, v in obj.items():
            out.update(all_tensors(v, f"{prefix}/{k}"))
    elif isinstance(obj, (list, tuple)):
        for i, v in enumerate(obj):
            out.update(all_tensors(v, f"{prefix}/{i}"))
    elif isinstance(obj, torch.Tensor):
        out[prefix] = obj.detach().cpu()
    elif isinstance(obj, (int, float)) and not isinstance(obj, bool):
        out[prefix] = torch.tensor(float(obj), dtype=torch.float64)
    return out


def read_history(folder: Path) -> pd.DataFrame:
    return pd.read_csv(folder / "history.csv")


class PoisonAt(torch.utils.data.Dataset):
    """Wraps a dataset; from the ``bad``-th item fetched on, the hazy image is NaN."""

    def __init__(self, ds, bad: int):
        self.ds, self.bad, self.calls = ds, bad, 0

    def __len__(self):
        return len(self.ds)

    def set_epoch(self, epoch):
        self.ds.set_epoch(epoch)

    def __getitem__(self, i):
        self.calls += 1
        item = dict(self.ds[i])
        if self.calls >= self.bad:
            item["hazy"] = torch.full_like(item["hazy"], float("nan"))
        return item


class ResumedRun(NamedTuple):
    resumed: UnpairedMethod  #: the method trained in two sessions
    tensors: dict[str, torch.Tensor]  #: the uninterrupted run's state, flattened by all_tensors
    columns: list[str]  #: the history columns compared (losses, gradient norms, stats, lr, scores)


def check_resume_is_exact(build: Callable[[], UnpairedMethod], tmp_path: Path) -> ResumedRun:
    """Train ``make_cfg()`` once uninterrupted and once stopped at step 3 and resumed by a fresh object.

    Asserts that the stop left a step-3 checkpoint, that both runs end with the same state to the bit
    (every tensor, optimiser state and counter of ``state_dict()``), that their histories agree exactly
    and that the resumed run recorded where it resumed from.
    """
    cfg = make_cfg()
    full = build()
    h_full = train_unpaired(full, unpaired_set(), paired_test_set(), cfg, tmp_path / "full")

    part = build()
    train_unpaired(part, unpaired_set(), paired_test_set(), cfg, tmp_path / "part", stop_at=3)
    assert load_checkpoint(tmp_path / "part" / "last.pt")["step"] == 3
    resumed = build()  # a fresh object, as in a new session
    h_part = train_unpaired(resumed, unpaired_set(), paired_test_set(), cfg, tmp_path / "part")

    a, b = all_tensors(full.state_dict()), all_tensors(resumed.state_dict())
    assert a.keys() == b.keys()
    diff = [k for k in a if not torch.equal(a[k], b[k])]
    assert not diff, diff[:5]
    cols = [c for c in h_full.columns if c.startswith(("loss_", "gnorm_", "stat_")) or c in ("lr", "psnr", "ssim")]
    assert h_part[cols].equals(h_full[cols])
    assert read_json(tmp_path / "part" / "config.json")["resolved"]["resumed_from_step"] == 3
    return ResumedRun(resumed, a, cols)


def check_nan_stop(method: UnpairedMethod, cfg: UnpairedTrainConfig, tmp_path: Path, *, bad: int,
                   last_good_step: int) -> TrainingDiverged:
    """Train ``method`` on data that turns NaN from the ``bad``-th item on (batch size 1: step ``bad``).

    Asserts that training stops at that step with a :class:`TrainingDiverged` naming a non-finite
    discriminator loss and pointing at ``last.pt``; that ``last.pt`` is the checkpoint of step
    ``last_good_step`` (the last periodic one before the NaN), loads ``weights_only`` and holds only
    finite values; that no ``prediverge.pt`` was left; and that the history has every completed step.
    Returns the error.
    """
    with pytest.raises(TrainingDiverged) as info:
        train_unpaired(method, PoisonAt(unpaired_set(), bad=bad), None, cfg, tmp_path)
    err = info.value
    assert err.step == bad and "non-finite" in str(err) and "loss D" in err.what
    assert err.last_good == tmp_path / "last.pt"
    ck = torch.load(tmp_path / "last.pt", weights_only=True)
    assert ck["step"] == last_good_step
    assert all(torch.isfinite(v).all() for v in all_tensors(ck).values() if v.is_floating_point())
    assert not (tmp_path / "prediverge.pt").exists()
    assert read_history(tmp_path)["step"].max() == bad - 1  # rows up to the last completed step
    return err
