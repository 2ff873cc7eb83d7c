"""Scoring a dehazer on a paired test set during training (every method uses this one function)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import torch
from torch import nn
from torch.utils.data import Dataset

__all__ = ["MetricFn", "evaluate"]

#: ``metric_fn(pred, gt) -> {"psnr": tensor[B], "ssim": tensor[B], ...}``
MetricFn = Callable[[torch.Tensor, torch.Tensor], Mapping[str, torch.Tensor]]


def _default_metric_fn() -> MetricFn:
    try:
        from dehazelab.metrics import batch_delta_e, batch_psnr, batch_ssim
    except ImportError as e:  # pragma: no cover - depends on another module being present
        raise ImportError(
            "evaluate() needs dehazelab.metrics (batch_psnr, batch_ssim) or an explicit metric_fn"
        ) from e

    def metric_fn(pred: torch.Tensor, gt: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"psnr": batch_psnr(pred, gt), "ssim": batch_ssim(pred, gt), "delta_e": batch_delta_e(pred, gt)}

    return metric_fn


def evaluate(
    model: nn.Module,
    dataset: Dataset,
    device: torch.device | str | None = None,
    metric_fn: MetricFn | None = None,
    max_images: int | None = None,
    per_image: list[dict[str, Any]] | None = None,
) -> dict[str, float]:
    """Mean metrics of ``model`` on ``dataset``: full images, batch 1, output clamped to [0, 1].

    ``per_image``: a list that receives one row per image (``name`` and each metric).

    ``dataset[i]`` must be a dict with ``"hazy"`` and ``"clear"`` (3×H×W in [0, 1]).
    ``metric_fn(pred, gt)`` returns per-image tensors (default: ``dehazelab.metrics.batch_psnr`` /
    ``batch_ssim`` / ``batch_delta_e``). Returns ``{"psnr": mean, "ssim": mean, ..., "n": images}``. The model's
    train/eval mode is restored afterwards.
    """
    metric_fn = metric_fn or _default_metric_fn()
    p = next(iter(model.parameters()), None)
    if device is None:
        device = p.device if p is not None else torch.device("cpu")
    device = torch.device(device)
    dtype = p.dtype if p is not None and p.is_floating_point() else torch.float32  # float64 reference runs
    n_total = len(dataset) if max_images is None else min(len(dataset), int(max_images))
    if n_total == 0:
        raise ValueError("evaluate: empty dataset")
    was_training = model.training
    model.eval()
    sums: dict[str, float] = {}
    n = 0
    try:
        with torch.no_grad():
            for i in range(n_total):
                item = dataset[i]
                hazy = item["hazy"].unsqueeze(0).to(device, dtype)
                clear = item["clear"].unsqueeze(0).to(device, dtype)
                pred = model(hazy).clamp(0.0, 1.0)
                row: dict[str, Any] = {"name": str(item.get("name", i))}
                for k, v in metric_fn(pred, clear).items():
                    val = float(torch.as_tensor(v, dtype=torch.float64).sum())
                    sums[k] = sums.get(k, 0.0) + val
                    row[k] = val
                if per_image is not None:
                    per_image.append(row)
                n += 1
    finally:
        model.train(was_training)
    return {**{k: s / n for k, s in sums.items()}, "n": n}
