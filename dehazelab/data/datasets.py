"""Torch datasets over hazy/clear pairs, and ``load_benchmark`` to pick the pairs.

Both datasets are plain picklable classes (no lambdas, no open files), so ``DataLoader`` workers can
use them. Samples are dicts of float32 ``3xHxW`` tensors in ``[0, 1]``.

Randomness: sample ``i`` is transformed with a numpy generator seeded by ``(seed, epoch, i)``, so a
sample is the same whatever the worker count or the order of access, and changes between epochs
only through :meth:`PairedDataset.set_epoch` (call it at the start of every epoch; with
``persistent_workers=False``, the default, workers get the new epoch with each pass).

Augmentation follows AECR-Net's paired training (a random crop, a horizontal flip with probability
1/2, and a rotation by a random multiple of 90°), applied identically to the hazy and the clear
image. Where we differ: rotation by 90° or 270° is only drawn for square images (crops), so a batch
never mixes orientations; non-square images get 0° or 180°.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from .errors import DataError, data_error
from .images import read_image
from .layouts import Pair, align_clear, find_pairs
from .subsets import SOTS_TEST, SOTS_TRAIN, sots_split
from .synthetic import SOURCE as SYNTHETIC_SOURCE

# --------------------------------------------------------------------------------------------- #
# helpers


def _crop_size(crop) -> tuple[int, int] | None:
    if crop is None:
        return None
    if isinstance(crop, int):
        crop = (crop, crop)
    h, w = (int(c) for c in crop)
    if h < 1 or w < 1:
        raise ValueError(f"crop must be positive, got {crop}")
    return h, w


def _compact(image: np.ndarray) -> np.ndarray:
    """uint8 copy of a float image when that is lossless (8-bit sources), else the float image."""
    q = np.round(image * 255.0).astype(np.uint8)
    return q if np.array_equal(q.astype(np.float32) / 255.0, image) else image


def _expand(stored: np.ndarray) -> np.ndarray:
    return stored.astype(np.float32) / 255.0 if stored.dtype == np.uint8 else stored


def _to_tensor(image: np.ndarray) -> torch.Tensor:
    # np.array copies: the tensor never shares memory with a cached or caller-owned array.
    return torch.from_numpy(np.array(image.transpose(2, 0, 1), dtype=np.float32, order="C"))


@dataclass(frozen=True)
class _Geometry:
    top: int
    left: int
    height: int
    width: int
    flip: bool
    rot: int  # multiples of 90 degrees, counter-clockwise (np.rot90)

    def apply(self, image: np.ndarray) -> np.ndarray:
        out = image[self.top : self.top + self.height, self.left : self.left + self.width]
        if self.flip:
            out = out[:, ::-1]
        if self.rot:
            out = np.rot90(out, self.rot, axes=(0, 1))
        return out


def draw_geometry(shape: tuple[int, int], crop: tuple[int, int] | None, augment: bool,
                  rng: np.random.Generator, name: str = "") -> _Geometry:
    """Random crop window + flip + rotation for an image of ``shape`` (H, W).

    Always consumes the same number of draws (crop offsets, flip, rotation), so changing ``augment``
    does not change the crop positions of a given seed.
    """
    h, w = shape
    ch, cw = crop if crop is not None else (h, w)
    if ch > h or cw > w:
        raise DataError(f"{name or 'image'}: {h}x{w} is smaller than the crop {ch}x{cw}")
    top = int(rng.integers(0, h - ch + 1))
    left = int(rng.integers(0, w - cw + 1))
    flip = bool(rng.random() < 0.5)
    k = int(rng.integers(0, 4))
    if ch != cw:
        k = 2 * (k % 2)  # 0 or 180 degrees only: keep non-square images' shape
    if not augment:
        flip, k = False, 0
    return _Geometry(top, left, ch, cw, flip, k)


class _ImageCache:
    """Decoded images by path, stored compactly (uint8 when lossless); one per process."""

    def __init__(self, enabled: bool = True):
        self.enabled = enabled
        self._store: dict[str, np.ndarray] = {}

    def read(self, path: Path) -> np.ndarray:
        """The image of ``path`` as stored: uint8 (value / 255 is the float image) or float32."""
        key = str(path)
        if key in self._store:
            return self._store[key]
        image = _compact(read_image(path))
        if self.enabled:
            self._store[key] = image
        return image

    def __len__(self) -> int:
        return len(self._store)


def _is_path(x) -> bool:
    return isinstance(x, (str, Path))


def _item_name(item, index: int) -> str:
    name = getattr(item, "name", None)
    if isinstance(name, str):
        return name
    if isinstance(item, tuple) and len(item) >= 3 and isinstance(item[2], str):
        return item[2]
    return f"{index:05d}"


def _item_sides(item) -> tuple[Any, Any]:
    if hasattr(item, "hazy") and hasattr(item, "clear"):
        return item.hazy, item.clear
    if isinstance(item, (tuple, list)) and len(item) >= 2:
        return item[0], item[1]
    raise TypeError(f"cannot read a hazy/clear pair from {type(item).__name__}; "
                    "pass Pair, SyntheticPair, or (hazy, clear[, name]) tuples")


# --------------------------------------------------------------------------------------------- #
# datasets


class PairedDataset(Dataset):
    """Aligned hazy/clear pairs as ``{"hazy": 3xHxW, "clear": 3xHxW, "name": str}``.

    Args:
        pairs: a sequence of :class:`~dehazelab.data.layouts.Pair` (files, read lazily and cached),
            :class:`~dehazelab.data.synthetic.SyntheticPair` (arrays), or ``(hazy, clear[, name])``
            tuples of paths or ``HxWx3`` float arrays. A pair's clear image larger than the hazy one
            is centre-cropped (see :func:`~dehazelab.data.layouts.load_pair`).
        crop: ``None`` (whole images), ``int`` or ``(h, w)``: a random window of that size, at a
            position drawn from the sample's seed (also when ``augment`` is off).
        augment: random horizontal flip and rotation by multiples of 90° (see the module docstring).
        seed: base seed of the per-sample generators.
        cache: keep decoded images in memory, keyed by path (uint8 when lossless: the 240 files of
            the SOTS-indoor subset take about 205 MB; each worker process has its own cache).
    """

    def __init__(self, pairs: Sequence, crop=None, augment: bool = False, seed: int = 0, cache: bool = True):
        self.items = list(pairs)
        for i, item in enumerate(self.items):
            hazy, clear = _item_sides(item)
            if clear is None:
                where = hazy if _is_path(hazy) else _item_name(item, i)
                raise data_error(where, "has no ground truth; a PairedDataset needs pairs (use UnpairedDataset)")
        self.crop = _crop_size(crop)
        self.augment = bool(augment)
        self.seed = int(seed)
        self.epoch = 0
        self._cache = _ImageCache(cache)

    def __len__(self) -> int:
        return len(self.items)

    def set_epoch(self, epoch: int) -> None:
        """Change the random crops/flips for a new epoch (deterministic in ``(seed, epoch, index)``)."""
        self.epoch = int(epoch)

    def _read(self, x) -> np.ndarray:
        if _is_path(x):
            return self._cache.read(Path(x))
        arr = np.asarray(x, dtype=np.float32)
        if arr.ndim != 3 or arr.shape[2] != 3:
            raise ValueError(f"expected an HxWx3 array, got shape {arr.shape}")
        return arr

    def arrays(self, index: int) -> tuple[np.ndarray, np.ndarray, str]:
        """The untransformed ``(hazy, clear, name)`` of item ``index`` (float32 ``HxWx3``)."""
        hazy, clear, name = self._stored(index)
        return _expand(hazy), _expand(clear), name

    def _stored(self, index: int) -> tuple[np.ndarray, np.ndarray, str]:
        # Images as cached (uint8 when lossless): cropping before the float conversion is cheaper.
        item = self.items[index]
        hazy_src, clear_src = _item_sides(item)
        hazy, clear = self._read(hazy_src), self._read(clear_src)
        clear = align_clear(hazy, clear, hazy_src if _is_path(hazy_src) else "<array>",
                            clear_src if _is_path(clear_src) else "<array>")
        return hazy, clear, _item_name(item, index)

    def __getitem__(self, index: int) -> dict:
        hazy, clear, name = self._stored(index)
        rng = np.random.default_rng([self.seed, self.epoch, index])
        geo = draw_geometry(hazy.shape[:2], self.crop, self.augment, rng, name)
        return {"hazy": _to_tensor(_expand(geo.apply(hazy))), "clear": _to_tensor(_expand(geo.apply(clear))), "name": name}


class UnpairedDataset(Dataset):
    """Hazy and clear images drawn independently, for unpaired training (CycleGAN, CUT, CDD-GAN).

    As CUT's ``UnalignedDataset`` does (``serial_batches`` off): the length is the larger of the two
    sets, item ``i`` takes hazy image ``i mod n_hazy`` and a clear image drawn at random, each with
    its own random crop (and flip, if ``augment``). Items may be paths, ``HxWx3`` arrays, or pairs
    (:class:`Pair` / :class:`SyntheticPair`: the hazy side uses ``.hazy``, the clear side ``.clear``).
    Use scene-disjoint sets to keep the training honestly unpaired. Returns
    ``{"hazy", "clear", "hazy_name", "clear_name"}``. Where we differ from CUT: no resize to 286
    before cropping (crops are taken from the native resolution) and no rotation.
    """

    def __init__(self, hazy_items: Sequence, clear_items: Sequence, crop=None, seed: int = 0,
                 augment: bool = False, cache: bool = True):
        self.hazy_items = [self._side(x, "hazy") for x in hazy_items]
        self.clear_items = [self._side(x, "clear") for x in clear_items]
        if not self.hazy_items or not self.clear_items:
            raise ValueError("UnpairedDataset needs at least one hazy and one clear image")
        self.crop = _crop_size(crop)
        self.seed = int(seed)
        self.augment = bool(augment)
        self.epoch = 0
        self._cache = _ImageCache(cache)

    @staticmethod
    def _side(item, side: str) -> tuple[Any, str]:
        if hasattr(item, "hazy") and hasattr(item, "clear"):
            src = getattr(item, side)
            if src is None:
                raise data_error(item.hazy, f"has no {side} image")
            name = item.name if isinstance(getattr(item, "name", None), str) else str(src)
            return src, name
        if _is_path(item):
            return item, Path(item).stem
        return item, ""

    def __len__(self) -> int:
        return max(len(self.hazy_items), len(self.clear_items))

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def _read(self, x) -> np.ndarray:
        if _is_path(x):
            return self._cache.read(Path(x))
        return np.asarray(x, dtype=np.float32)

    def __getitem__(self, index: int) -> dict:
        rng = np.random.default_rng([self.seed, self.epoch, index])
        h_idx = index % len(self.hazy_items)
        c_idx = int(rng.integers(0, len(self.clear_items)))
        out = {}
        for side, (src, name), idx in (("hazy", self.hazy_items[h_idx], h_idx), ("clear", self.clear_items[c_idx], c_idx)):
            image = self._read(src)
            geo = replace(draw_geometry(image.shape[:2], self.crop, self.augment, rng, name), rot=0)
            out[side] = _to_tensor(_expand(geo.apply(image)))
            out[f"{side}_name"] = name or f"{side}{idx:05d}"
        return out


# --------------------------------------------------------------------------------------------- #
# choosing the pairs


def _sots_folder(root: Path) -> Path:
    return root / "sots-indoor" if (root / "sots-indoor").is_dir() else root


def sots_pairs(root: str | Path, scenes) -> list[Pair]:
    """The SOTS pairs (all haze levels) of the given scene ids, in ``find_pairs`` order.

    ``root`` is the SOTS folder itself or a data root holding ``sots-indoor/``. Scene ids may be
    ints or strings; an id with no image is a ``DataError`` naming the folder.
    """
    folder = _sots_folder(Path(root))
    pairs = find_pairs(folder, layout="sots")
    wanted = {str(s) for s in scenes}
    missing = sorted(wanted - {p.scene for p in pairs})
    if missing:
        raise data_error(folder, f"no images for scene(s) {', '.join(missing[:10])}")
    return [p for p in pairs if p.scene in wanted]


@dataclass
class Benchmark:
    """Pairs chosen by :func:`load_benchmark`, with a record of which data they are."""

    name: str  # what was asked for: "sots", "nh-haze", "synthetic"
    split: str  # "train" or "test"
    source: str  # the data actually used: "sots-indoor", "nh-haze" or "synthetic-skimage"
    pairs: list
    scenes: tuple[str, ...]
    root: Path | None = None
    notes: dict = field(default_factory=dict)

    def dataset(self, crop=None, augment: bool = False, seed: int = 0, cache: bool = True) -> PairedDataset:
        return PairedDataset(self.pairs, crop=crop, augment=augment, seed=seed, cache=cache)

    def describe(self) -> dict:
        """A JSON-friendly record of the choice (for results tables and resolved configs)."""
        return {"benchmark": self.name, "split": self.split, "source": self.source, "n_pairs": len(self.pairs),
                "scenes": list(self.scenes), "root": None if self.root is None else str(self.root), **self.notes}


def _synthetic(name: str, split: str, seed: int, size: int, levels: int, why: str) -> Benchmark:
    from .synthetic import SPLIT, synthetic_pairs

    scenes = SPLIT[split]
    pairs = synthetic_pairs(seed=seed, size=size, levels=levels, scenes=scenes)
    return Benchmark(name, split, SYNTHETIC_SOURCE, pairs, tuple(scenes), None,
                     {"fallback_reason": why, "seed": seed, "size": size, "levels": levels})


def load_benchmark(name: str, split: str, root: str | Path | None = None, *, seed: int = 0,
                   size: int = 128, levels: int = 3,
                   train: tuple[int, int] = SOTS_TRAIN, test: tuple[int, int] = SOTS_TEST) -> Benchmark:
    """Pairs of a benchmark split, falling back to the synthetic set when there is no data.

    * ``"sots"``: SOTS-indoor scenes ``train`` / ``test`` (inclusive id ranges, default 1400-1429 /
      1430-1439, all haze levels), ``source="sots-indoor"``.
    * ``"nh-haze"``: the NH-HAZE pairs; only ``split="test"`` (the shared copy holds the test
      images 51-53 only), ``source="nh-haze"``.
    * ``"synthetic"``: :func:`~dehazelab.data.synthetic.synthetic_pairs` of ``SPLIT[split]``.

    ``root`` is the data root; ``None`` asks :func:`dehazelab.paths.data_root`. When that finds no
    data (``None``), ``"sots"`` and ``"nh-haze"`` fall back to the synthetic set and say so in
    ``source`` (``"synthetic-skimage"``) and ``notes["fallback_reason"]``. A data root that exists
    but lacks the benchmark's folder is an error, not a fallback.
    """
    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    if name not in ("sots", "nh-haze", "synthetic"):
        raise ValueError(f"unknown benchmark {name!r}; known: sots, nh-haze, synthetic")
    if name == "synthetic":
        return _synthetic(name, split, seed, size, levels, "requested")
    if root is None:
        from ..paths import data_root

        root = data_root()
        if root is None:
            return _synthetic(name, split, seed, size, levels, "no data root configured")
    root = Path(root)
    if name == "sots":
        folder = _sots_folder(root)
        scenes = sots_split(train=train, test=test)[split]
        pairs = sots_pairs(folder, scenes)
        return Benchmark(name, split, "sots-indoor", pairs, tuple(scenes), root, {"scene_range": list(train if split == "train" else test)})
    if split != "test":
        raise ValueError("nh-haze: the shared copy holds only the test pairs 51-53; there is no train split")
    folder = root / "nh-haze" if (root / "nh-haze").is_dir() else root
    pairs = find_pairs(folder, layout="nh-haze")
    return Benchmark(name, split, "nh-haze", pairs, tuple(p.scene for p in pairs), root)
