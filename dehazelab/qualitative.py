"""The rows of a qualitative figure: test images with their ground truth and real hazy photographs without,
each dehazed by every method (d2l style: defined once here, called from the notebooks).

* :func:`real_photo_rows` — real hazy photographs as rows with no ground truth (``None``), and their names;
* :func:`dehazed_rows` — each row's hazy image, every dehazer's output and the ground truth, ready for
  :func:`dehazelab.plotting.image_grid` and :func:`dehazelab.plotting.shown_psnr`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

__all__ = ["real_photo_rows", "dehazed_rows"]


def real_photo_rows(root, max_images: int, max_side: int, names: Sequence[str] | None = None):
    """``(rows, files)``: up to ``max_images`` real hazy photographs of ``root/real-hazy/``
    (:func:`dehazelab.data.real_hazy_photos` of ``names``, default
    :data:`~dehazelab.data.REAL_HAZY_EXAMPLES`, the longer side shrunk to ``max_side``) as
    ``(image, None, file stem)`` rows — no ground truth — and their paths relative to ``root`` (what a
    notebook records as the data used). No data folder, or none with photographs: two empty lists."""
    from .data import REAL_HAZY_EXAMPLES, real_hazy_photos

    real = real_hazy_photos(root, REAL_HAZY_EXAMPLES if names is None else names, max_images, max_side)
    return [(img, None, Path(name).stem) for name, img in real], [name for name, _ in real]


def dehazed_rows(samples: Sequence[tuple[torch.Tensor, Any, str]], dehazers: Mapping[str, torch.nn.Module],
                 device="cpu") -> tuple[list[list[Any]], list[str]]:
    """``(grid, row titles)`` for ``samples`` = ``(hazy, clear or None, title)``: each grid row is the hazy
    image, the output of every dehazer of ``dehazers`` (in their order; run on ``device`` without
    gradients, clamped to [0, 1], returned on the CPU) and the clear image (``None`` for a real photo)."""
    grid, titles = [], []
    with torch.no_grad():
        for hazy, clear, title in samples:
            if hazy.dim() != 3:
                raise ValueError(f"dehazed_rows: {title!r}: expected a 3xHxW image, got shape {tuple(hazy.shape)}")
            outs = [d(hazy[None].to(device)).clamp(0, 1)[0].cpu() for d in dehazers.values()]
            grid.append([hazy, *outs, clear])
            titles.append(title)
    return grid, titles
