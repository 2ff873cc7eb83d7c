"""Tiled inference with overlap blending: any registered model on any image size in bounded memory.

:func:`dehaze_tiled` cuts an ``HxWx3`` image into overlapping tiles, runs the model on one tile at a
time and blends the tile outputs with a smooth window into a float32 output buffer of the image's
size. Nothing of the size of the full image is ever held as a network activation: the memory is
one tile's activations plus the input and output arrays (``HxWx3`` float32 each).
:func:`dehaze_auto` runs small images whole (exactly as :func:`dehazelab.inference.dehaze_array`)
and large ones tiled; it is what ``python -m dehazelab dehaze`` calls.

Tiles
-----
Along each axis the fewest ``tile``-pixel tiles whose neighbours overlap by at least ``overlap``
pixels are spread evenly from border to border (:func:`tile_spans`). Every tile starts at a multiple of
``multiple`` (:func:`size_multiple`: 4 for AECR-Net and the ResNet translators, whose stride-2
layers then sample the same grid as in a whole-image run) and is padded at its bottom/right to a
multiple of it (reflect, as :class:`~dehazelab.models.translator.ImageTranslator` pads a whole image;
replicate when the tile is too small to reflect), and the padding is cropped off the output. An
image smaller than one tile is a single tile.

Window
------
Separable, per axis: 1 inside the tile; at an edge shared with a neighbouring tile, 0 for the first
``margin`` pixels (the pixels that see least context) and then a raised-cosine ramp
``sin²(π/2 · (d − margin + ½) / (overlap − 2·margin))`` up to 1 at distance ``overlap − margin``.
Two tiles overlapping by exactly ``overlap`` then have weights summing to 1 exactly
(``sin² θ + cos² θ``); the per-axis weights are normalised by their sum anyway (the moved-back
last tile overlaps more), so the blending weights of all tiles sum to 1 at every pixel
(:func:`blend_weights`). Edges at the image border get no ramp. Defaults (:func:`default_plan`):
``tile=512, overlap=64, margin=16`` for networks.

Global operations
-----------------
Some layers look at the whole image: InstanceNorm (CUT / FastCUT / CycleGAN / CDD-GAN generators:
per-image mean and variance of every feature map), global average pooling (AECR-Net's FFA channel
attention), global average + max pooling (IICL's PRM airlight head). Run per tile they would compute
per-tile statistics, so a tiled run first makes one **statistics pass** on the whole image — or, when
it has more than ``stats_max_pixels`` (default :data:`WHOLE_MAX_PIXELS`, so the pass costs no more
memory than a whole-image run of an image :func:`dehaze_auto` runs whole), on a copy downscaled by
area averaging — recording the results of these operations (via
``torch.nn.functional.instance_norm`` / ``adaptive_avg_pool2d`` / ``adaptive_max_pool2d`` with output
size 1), and every tile then *replays* them in call order instead of computing its own. On an image
that fits the statistics pass the tiled result therefore differs from the whole-image one only by
the tiles' borders (tested: well within 0.1 dB PSNR); on a larger image the global statistics are
those of the downscaled image, an approximation (documented, not hidden). Layers that do not go
through these functions (e.g. ``x.mean((2, 3))``, GroupNorm, LayerNorm over space) are not
intercepted; none of the registered models uses one. AECR-Net's FastDeconv uses its running
statistics in eval mode and is local, as are the DFE and AOD-Net.

DCP
---
DCP's atmospheric light ``A`` is global and its guided filter (radius ``r`` = 60, after a 15×15
minimum filter) reaches ``2r + patch//2`` = 127 pixels. Run whole, DCP on a 4000×3000 photo peaks at
≈ 1.8 GB resident (float64 guided-filter maps; measured), too close to the 2 GB budget, so a tiled
DCP run estimates ``A`` on the **full-resolution** image first (dark channel + airlight: float32,
cheap) and passes it to every tile; tiles use ``margin = 2r + patch//2`` and ``overlap = 2·margin
+ 2`` (default tile 1024), so every blended pixel is computed with its complete filter support and
tiled DCP equals whole-image DCP up to float rounding.
"""

from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass
from typing import Iterator

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from dehazelab.global_ops import GlobalOpRecorder  # record once, replay per tile

__all__ = [
    "TilePlan",
    "WHOLE_MAX_PIXELS",
    "size_multiple",
    "default_plan",
    "tile_spans",
    "axis_weights",
    "blend_weights",
    "run_whole",
    "dehaze_tiled",
    "dehaze_auto",
    "GlobalOpRecorder",
]

#: :func:`dehaze_auto` runs an image whole when it has at most this many pixels (640×480: SOTS's
#: 620×460 runs whole; peak ≈ 1.1 GB resident for the paper-width networks on CPU).
WHOLE_MAX_PIXELS = 640 * 480


@dataclass(frozen=True)
class TilePlan:
    """How an image is cut: tile side, overlap between neighbours, dead margin, alignment."""

    tile: int
    overlap: int
    margin: int
    multiple: int

    def __post_init__(self):
        if self.tile < 1 or self.multiple < 1:
            raise ValueError(f"tile and multiple must be >= 1, got {self.tile}, {self.multiple}")
        if self.margin < 0 or (2 * self.margin >= self.overlap and (self.overlap or self.margin)):
            raise ValueError(f"need 0 <= 2*margin < overlap, got margin={self.margin}, overlap={self.overlap}")
        if self.tile - self.overlap < self.multiple:
            raise ValueError(f"tile ({self.tile}) must exceed overlap ({self.overlap}) by at least {self.multiple}")


# --------------------------------------------------------------------------------------------
# model properties
# --------------------------------------------------------------------------------------------
def _is_dcp(model) -> bool:
    from .models.dcp import DCP

    return isinstance(model, DCP)


def size_multiple(model: nn.Module) -> int:
    """The input-size multiple a model needs / whose sampling grid tiles must align to.

    ``model.size_multiple`` if the model defines it, else the product of the strides of its
    down-sampling layers (conv / pool / blur-pool with stride > 1): 4 for AECR-Net (two stride-2
    convs) and the ResNet generators (two stride-2 convs or blur-pools), 1 for AOD-Net and DCP.
    """
    m = getattr(model, "size_multiple", None)
    if m is not None:
        return int(m)
    from .models.antialias import BlurDownsample

    prod = 1
    for mod in model.modules():
        if isinstance(mod, (nn.Conv2d, nn.MaxPool2d, nn.AvgPool2d, BlurDownsample)) and not isinstance(
            mod, nn.ConvTranspose2d
        ):
            s = mod.stride
            s = s[0] if isinstance(s, tuple) else s
            if s and int(s) > 1:
                prod *= int(s)
    return prod


def default_plan(model: nn.Module, tile: int | None = None, overlap: int | None = None,
                 margin: int | None = None) -> TilePlan:
    """Defaults: networks ``tile=512, overlap=64, margin=16``; DCP ``tile=1024`` and the overlap /
    margin its guided filter needs (module docstring). ``tile`` is rounded up to the multiple."""
    m = size_multiple(model)
    if _is_dcp(model):
        kw = model.kwargs
        reach = (2 * int(kw["r"]) if kw.get("refine", True) else 0) + int(kw["patch"]) // 2
        need_margin = reach
        margin = need_margin if margin is None else max(margin, need_margin)
        overlap = max(overlap or 0, 2 * margin + 2)
        tile = max(tile or 1024, 2 * overlap)  # keep the stride >= the overlap
    else:
        tile = tile or 512
        overlap = 64 if overlap is None else overlap
        margin = min(16, overlap // 4) if margin is None else margin
    tile = -(-int(tile) // m) * m
    overlap = min(int(overlap), tile - m)
    if overlap <= 2 * margin:
        margin = max(0, (overlap - 1) // 2)
    return TilePlan(tile=tile, overlap=overlap, margin=margin, multiple=m)


# --------------------------------------------------------------------------------------------
# geometry
# --------------------------------------------------------------------------------------------
def tile_spans(length: int, tile: int, overlap: int, multiple: int = 1) -> list[tuple[int, int]]:
    """``[(start, stop), ...]`` covering ``range(length)``; starts are multiples of ``multiple``.

    The fewest tiles whose neighbours overlap by at least ``overlap`` (stride ``tile - overlap``
    rounded down to ``multiple``), spread evenly; the last one ends at ``length`` (it may be up to
    ``multiple - 1`` pixels longer than ``tile``). One span when ``length <= tile``.
    """
    if length <= tile:
        return [(0, length)]
    stride = max(multiple, (tile - overlap) // multiple * multiple)
    n = 1 + -(-(length - tile) // stride)
    step = (length - tile) / (n - 1)  # <= stride
    starts = [int(i * step / multiple) * multiple for i in range(n)]
    return [(s, min(s + tile, length)) for s in starts[:-1]] + [(starts[-1], length)]


def _ramp(d: np.ndarray, overlap: int, margin: int) -> np.ndarray:
    width = overlap - 2 * margin
    u = (d - margin + 0.5) / max(width, 1)
    w = np.sin(0.5 * np.pi * np.clip(u, 0.0, 1.0)) ** 2
    w[d < margin] = 0.0
    w[d >= overlap - margin] = 1.0
    return w


def axis_weights(spans: list[tuple[int, int]], overlap: int, margin: int) -> list[np.ndarray]:
    """Per-span 1-D blending weights (float64), normalised so that they sum to 1 at every position."""
    n = len(spans)
    length = spans[-1][1]
    raw = []
    for i, (s, e) in enumerate(spans):
        pos = np.arange(s, e)
        w = np.ones(e - s)
        if overlap > 0:
            if i > 0:
                w = np.minimum(w, _ramp(pos - s, overlap, margin))
            if i < n - 1:
                w = np.minimum(w, _ramp(e - 1 - pos, overlap, margin))
        raw.append(w)
    total = np.zeros(length)
    for (s, e), w in zip(spans, raw):
        total[s:e] += w
    if np.any(total <= 0):  # cannot happen when overlap > 2*margin; guard against misuse
        raise ValueError("tile layout leaves pixels without weight (overlap too small for the margin)")
    return [w / total[s:e] for (s, e), w in zip(spans, raw)]


def blend_weights(shape: tuple[int, int], plan: TilePlan) -> Iterator[tuple[slice, slice, np.ndarray]]:
    """``(rows, cols, weight HxW float32)`` per tile, row-major; the weights sum to 1 per pixel."""
    h, w = shape
    ys = tile_spans(h, plan.tile, plan.overlap, plan.multiple)
    xs = tile_spans(w, plan.tile, plan.overlap, plan.multiple)
    wy = axis_weights(ys, plan.overlap, plan.margin)
    wx = axis_weights(xs, plan.overlap, plan.margin)
    for (y0, y1), ay in zip(ys, wy):
        for (x0, x1), ax in zip(xs, wx):
            yield slice(y0, y1), slice(x0, x1), np.outer(ay, ax).astype(np.float32)


# --------------------------------------------------------------------------------------------
# running
# --------------------------------------------------------------------------------------------
def _device(model) -> torch.device:
    for t in (*model.parameters(), *model.buffers()):
        return t.device
    return torch.device("cpu")


#: Smallest side a network is run at: a smaller image (or tile) is padded up to it (replicate) and the
#: output cropped back — the CUT-family generators' reflection pads and 4x down-sampling fail below ~8.
MIN_SIDE = 16


def _pad_to(x: torch.Tensor, multiple: int, min_side: int = MIN_SIDE) -> torch.Tensor:
    h, w = x.shape[-2:]
    th, tw = (max(-(-n // multiple), -(-min_side // multiple)) * multiple for n in (h, w))
    ph, pw = th - h, tw - w
    if not (ph or pw):
        return x
    mode = "reflect" if ph < h and pw < w else "replicate"
    return F.pad(x, (0, pw, 0, ph), mode=mode)


def _run(model, arr: np.ndarray, multiple: int, device) -> np.ndarray:
    """Model on one ``hxwx3`` array (padded to ``multiple``, cropped back) -> ``3xhxw`` float32."""
    h, w = arr.shape[:2]
    x = torch.from_numpy(np.ascontiguousarray(arr.transpose(2, 0, 1), dtype=np.float32))[None].to(device)
    y = model(_pad_to(x, multiple))[..., :h, :w]
    return y[0].float().cpu().numpy()


def run_whole(model, img: np.ndarray, multiple: int | None = None) -> np.ndarray:
    """The whole image at once (padded to the model's multiple and to at least :data:`MIN_SIDE`, so
    every model takes any size, a 1x1 image included)."""
    m = size_multiple(model) if multiple is None else multiple
    with torch.no_grad():
        y = _run(model, img, m, _device(model))
    return np.clip(y, 0, 1).transpose(1, 2, 0).astype(np.float32)


def _downscale(img: np.ndarray, max_pixels: int, multiple: int) -> np.ndarray:
    h, w = img.shape[:2]
    if h * w <= max_pixels:
        return img
    s = math.sqrt(max_pixels / (h * w))
    nh, nw = max(multiple, round(h * s)), max(multiple, round(w * s))
    x = torch.from_numpy(np.ascontiguousarray(img.transpose(2, 0, 1), dtype=np.float32))[None]
    y = F.interpolate(x, size=(nh, nw), mode="area")
    return y[0].numpy().transpose(1, 2, 0)


def _dcp_tiled(model, img: np.ndarray, plan: TilePlan, progress=None) -> np.ndarray:
    from .models import dcp

    kw = model.kwargs
    img = dcp._as_image(img)
    if img.min() < 0 or img.max() > 1:  # as DCP.forward, which clamps
        img = np.clip(img, 0, 1)
    dark = dcp.dark_channel(img, kw["patch"])
    A = dcp.estimate_airlight(img, dark, kw["top"])  # global, at full resolution
    del dark
    out = np.zeros(img.shape, np.float32)
    for rows, cols, wgt in _progress_tiles(blend_weights(img.shape[:2], plan), img.shape[:2], plan, progress):
        tile = img[rows, cols]
        t = dcp.transmission(tile, A, kw["omega"], kw["patch"])
        if kw["refine"]:
            t = dcp.guided_filter(dcp.rgb_to_gray(tile), t, r=kw["r"], eps=kw["eps"])
        t = np.clip(t, 0.0, 1.0).astype(np.float32)
        out[rows, cols] += wgt[..., None] * dcp.recover(tile, t, A, kw["t0"])
    return np.clip(out, 0, 1, out=out)


def _progress_tiles(it, shape, plan, progress):
    if not progress:
        return it
    from tqdm.auto import tqdm
    import sys

    n = len(tile_spans(shape[0], plan.tile, plan.overlap, plan.multiple)) * len(
        tile_spans(shape[1], plan.tile, plan.overlap, plan.multiple))
    return tqdm(it, total=n, desc="tiles", unit="tile", leave=False, file=sys.stderr)


def dehaze_tiled(model, img: np.ndarray, tile: int | None = None, overlap: int | None = None, *,
                 margin: int | None = None, multiple: int | None = None,
                 stats_max_pixels: int | None = None, progress: bool = False) -> np.ndarray:
    """Dehaze one ``HxWx3`` float image in [0, 1] tile by tile -> float32 ``HxWx3`` in [0, 1].

    ``tile`` / ``overlap`` / ``margin``: see the module docstring (``None``: :func:`default_plan`);
    ``multiple``: tile alignment / padding (``None``: :func:`size_multiple`); ``stats_max_pixels``:
    the statistics pass runs on the whole image up to this many pixels, else on a downscaled copy
    (``None``: :data:`WHOLE_MAX_PIXELS`). Memory: one tile's activations plus the input and a float32 output array.
    """
    img = np.asarray(img)
    if img.ndim != 3 or img.shape[2] != 3:
        raise ValueError(f"expected an HxWx3 image, got shape {img.shape}")
    if img.dtype != np.float32:
        img = img.astype(np.float32)
    plan = default_plan(model, tile, overlap, margin)
    if multiple is not None:
        plan = TilePlan(plan.tile, plan.overlap, plan.margin, int(multiple))
    if _is_dcp(model):
        return _dcp_tiled(model, img, plan, progress)
    device = _device(model)
    m = plan.multiple
    rec = GlobalOpRecorder()
    with torch.no_grad():
        # statistics pass; a tiny probe first tells whether the model has global ops at all
        with rec.record():
            side = max(32, 4 * m)
            _run(model, np.full((side, side, 3), 0.5, np.float32), m, device)
        if len(rec):
            stats_img = _downscale(img, stats_max_pixels or WHOLE_MAX_PIXELS, m)
            with rec.record():
                _run(model, stats_img, m, device)
            del stats_img
        out = np.zeros(img.shape, np.float32)
        for rows, cols, wgt in _progress_tiles(blend_weights(img.shape[:2], plan), img.shape[:2], plan, progress):
            ctx = rec.replay() if len(rec) else contextlib.nullcontext()
            with ctx:
                y = _run(model, img[rows, cols], m, device)
            np.clip(y, 0, 1, out=y)
            out[rows, cols] += y.transpose(1, 2, 0) * wgt[..., None]
    return np.clip(out, 0, 1, out=out)


def dehaze_auto(model, img: np.ndarray, tile: int | None = None, overlap: int | None = None, *,
                whole_max_pixels: int = WHOLE_MAX_PIXELS, progress: bool = False) -> np.ndarray:
    """What the CLI runs. ``tile=None`` (auto): whole when ``H·W <= whole_max_pixels``, else tiled
    with the model's default tile; ``tile=0``: whole; ``tile=N``: tiled with ``N``-pixel tiles."""
    h, w = img.shape[:2]
    if tile == 0 or (tile is None and h * w <= whole_max_pixels):
        if _is_dcp(model):
            from .inference import dehaze_array

            return dehaze_array(model, img)
        return run_whole(model, img)
    return dehaze_tiled(model, img, tile, overlap, progress=progress)
