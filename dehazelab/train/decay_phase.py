"""CUT's decay phase without crops: whole images resized to the crop size (official ``UnalignedDataset``
behaviour in the decay epochs; see the module docstring of :mod:`dehazelab.train.unpaired`)."""

from __future__ import annotations

import copy
from typing import Any

import torch.nn.functional as F
from torch.utils.data import Dataset

from dehazelab.train.loop import _size2
from dehazelab.train.unpaired_config import UnpairedTrainConfig

__all__ = ["DecayPhaseDataset", "phased"]


class DecayPhaseDataset(Dataset):
    """Adds CUT's decay-phase switch to a cropping unpaired dataset.

    Phase ``"train"``: items of ``dataset`` unchanged. Phase ``"decay"``: the same items read from a
    shallow copy of ``dataset`` with ``crop = None`` (whole images; same clear-image choice and flip,
    because ``UnpairedDataset`` draws them from ``(seed, epoch, index)``), each image resized to
    ``size`` with bicubic anti-aliased interpolation and clamped to [0, 1] (official: PIL bicubic
    resize to ``crop_size``; aspect ratio not kept, as officially).

    ``dataset`` must have a ``crop`` attribute that its ``__getitem__`` honours
    (:class:`dehazelab.data.UnpairedDataset`); ``set_epoch`` is forwarded to both views.
    """

    PHASES = ("train", "decay")

    def __init__(self, dataset: Dataset, size: int | tuple[int, int] | None = None):
        if not hasattr(dataset, "crop"):
            raise TypeError(f"{type(dataset).__name__} has no 'crop' attribute: cannot switch its crop off")
        self.dataset = dataset
        self.size = _size2(size if size is not None else dataset.crop)
        if self.size is None:
            raise ValueError("DecayPhaseDataset needs a size (the dataset does not crop)")
        self.full = copy.copy(dataset)
        self.full.crop = None
        self.phase = "train"

    def set_phase(self, phase: str) -> None:
        if phase not in self.PHASES:
            raise ValueError(f"phase must be one of {self.PHASES}, got {phase!r}")
        self.phase = phase

    def set_epoch(self, epoch: int) -> None:
        for ds in (self.dataset, self.full):
            if callable(getattr(ds, "set_epoch", None)):
                ds.set_epoch(epoch)

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> dict:
        if self.phase == "train":
            return self.dataset[index]
        item = dict(self.full[index])
        for key in ("hazy", "clear"):
            img = item[key]
            if tuple(img.shape[-2:]) != self.size:
                img = F.interpolate(img[None], size=self.size, mode="bicubic", align_corners=False,
                                    antialias=True)[0].clamp_(0.0, 1.0)
            item[key] = img
        return item


def phased(train_set: Dataset, cfg: UnpairedTrainConfig) -> tuple[Dataset, Any, str]:
    """``(dataset to load from, object with set_phase or None, how)`` for ``cfg.decay_data``."""
    if cfg.decay_data == "keep" or cfg.n_steps_decay == 0:
        return train_set, None, "crops throughout" if cfg.decay_data == "keep" else "no decay phase"
    if callable(getattr(train_set, "set_phase", None)):
        return train_set, train_set, "dataset.set_phase"
    if getattr(train_set, "crop", None) is None:
        return train_set, None, "dataset does not crop (whole images throughout)"
    wrapped = DecayPhaseDataset(train_set)  # resize to the dataset's crop (what training used)
    return wrapped, wrapped, "DecayPhaseDataset (whole images resized to the crop size)"
