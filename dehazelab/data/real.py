"""Real hazy photographs (no ground truth) for the notebooks' qualitative figures.

The photographs live in ``<data root>/real-hazy/`` (Fattal's set, RTTS-style web photos, the classic
examples of earlier papers). :func:`real_hazy_photos` picks a named few of them and shrinks the large
ones, so that a dehazer runs on them in seconds on a CPU.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
import torch.nn.functional as F

from .images import read_image

#: Sub-folder of the data root that holds the real hazy photographs.
REAL_HAZY_DIR = "real-hazy"

#: The photographs the notebooks show, in order (paths relative to ``real-hazy/``).
REAL_HAZY_EXAMPLES: tuple[str, ...] = (
    "fattal/forest_input.png", "fattal/tiananmen_input.png", "fattal/canon_input.png",
    "rtts-style/BJ_Baidu_544.jpeg", "fattal/ny12_input.png", "fattal/train_input.png",
)


def real_hazy_photos(root: str | Path | None, names: Sequence[str], max_images: int,
                     max_side: int) -> list[tuple[str, torch.Tensor]]:
    """Load up to ``max_images`` of the photographs ``names`` from ``root/real-hazy/``.

    Args:
        root: the data root (``dehazelab.paths.data_root()``); ``None``, or a root without a
            ``real-hazy/`` folder, gives an empty list.
        names: paths relative to ``real-hazy/``, in the order wanted. Names with no file behind
            them are skipped; ``max_images`` counts the photographs found, in this order.
        max_images: how many photographs at the most (0 gives none).
        max_side: a photograph whose longer side exceeds this is shrunk, keeping its aspect ratio,
            to ``(round(H * s), round(W * s))`` with ``s = max_side / max(H, W)``: torch's bicubic
            interpolation with anti-aliasing (``align_corners=False``), clamped to ``[0, 1]``.
            Smaller photographs are returned as read.

    Returns:
        ``[(name, image), ...]``: ``name`` is the file's path relative to ``root`` as a string
        (``"real-hazy/fattal/forest_input.png"``, what the notebooks record as the data used);
        ``image`` a float32 ``3xHxW`` tensor in ``[0, 1]`` (:func:`~dehazelab.data.images.read_image`'s
        conversions).

    Raises:
        DataError: naming the file, when a listed photograph exists but cannot be read as an image.
        ValueError: when ``max_images`` is negative or ``max_side`` is not positive.
    """
    if max_images < 0:
        raise ValueError(f"max_images must be >= 0, got {max_images}")
    if max_side <= 0:
        raise ValueError(f"max_side must be > 0, got {max_side}")
    if root is None:
        return []
    root = Path(root)
    folder = root / REAL_HAZY_DIR
    if not folder.is_dir():
        return []
    files = [folder / name for name in names if (folder / name).is_file()][:max_images]
    photos = []
    for f in files:
        img = torch.from_numpy(read_image(f).transpose(2, 0, 1).copy())
        scale = min(1.0, max_side / max(img.shape[-2:]))
        if scale < 1.0:
            size = (round(img.shape[-2] * scale), round(img.shape[-1] * scale))
            img = F.interpolate(img[None], size=size, mode="bicubic", antialias=True, align_corners=False)[0].clamp(0, 1)
        photos.append((str(f.relative_to(root)), img))
    return photos
