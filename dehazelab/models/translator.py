"""Inference wrapper for image-to-image generators that work in [-1, 1] (CUT, FastCUT, CycleGAN).

dehazelab's models map a hazy batch ``Bx3xHxW`` in **[0, 1]** to a dehazed batch in [0, 1]. CUT and
CycleGAN generators are trained on images normalised to **[-1, 1]** (the official data loaders
normalise with mean 0.5, std 0.5) and end in ``Tanh``. :class:`ImageTranslator` bridges the two:

    x ∈ [0, 1]  →  2x − 1  →  G  →  (y + 1) / 2  ∈ [0, 1]

using :func:`~dehazelab.models.resnet_generator.to_pm1` / ``from_pm1``. It also pads the input
(reflect) to a multiple of ``pad_multiple`` pixels and crops the output back, because the ResNet
generator halves the resolution twice and then doubles it twice: a side that is not a multiple of 4
would come back with a different size. The official ``test.py`` instead resizes every image to
256×256; we evaluate at the native resolution (``docs/methods.md`` §2.7 "Test").

Builders for the model registry (a checkpoint records ``{"model": name, "kwargs": {...}}`` and the
registry calls ``builder(**kwargs)``; the weights are then loaded with ``load_state_dict``):

* :func:`cut_generator` — CUT / FastCUT's anti-aliased ResNet generator, wrapped;
* :func:`cyclegan_generator` — the same class with CycleGAN's defaults (no anti-aliasing).

``TRANSLATOR_BUILDERS`` maps the registry names ``"cut"``, ``"fastcut"``, ``"cyclegan"`` to them.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from dehazelab.models.resnet_generator import ResnetGenerator, from_pm1, to_pm1

__all__ = ["ImageTranslator", "cut_generator", "cyclegan_generator", "TRANSLATOR_BUILDERS"]


class ImageTranslator(nn.Module):
    """``[0, 1] → [-1, 1] → generator → [0, 1]``, padding to a multiple of ``pad_multiple``.

    Parameters
    ----------
    generator:
        Any module mapping ``Bx3xHxW`` in [-1, 1] to the same shape in [-1, 1]. It is registered as
        the submodule ``generator`` (state-dict keys ``generator.*``) and shared, not copied.
    pad_multiple:
        Pad height and width up to a multiple of this (reflect padding, or replicate when the image
        is too small to reflect), run the generator, crop back to ``HxW``. ``1`` disables padding.

    The output is not clamped (``Tanh`` already keeps it in range; evaluation clamps).
    """

    def __init__(self, generator: nn.Module, pad_multiple: int = 4):
        super().__init__()
        if int(pad_multiple) < 1:
            raise ValueError(f"pad_multiple must be >= 1, got {pad_multiple}")
        self.generator = generator
        self.pad_multiple = int(pad_multiple)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 4:
            raise ValueError(f"expected a Bx3xHxW batch, got shape {tuple(x.shape)}")
        h, w = x.shape[-2:]
        m = self.pad_multiple
        ph, pw = (-h) % m, (-w) % m
        y = to_pm1(x)
        if ph or pw:
            mode = "reflect" if ph < h and pw < w else "replicate"
            y = F.pad(y, (0, pw, 0, ph), mode=mode)
        y = self.generator(y)
        if ph or pw:
            y = y[..., :h, :w]
        return from_pm1(y)

    def extra_repr(self) -> str:
        return f"range [0,1] -> [-1,1] -> G -> [0,1], pad_multiple={self.pad_multiple}"


def _resnet_kwargs(kw: dict[str, Any], antialias: bool) -> dict[str, Any]:
    allowed = {"in_ch", "out_ch", "ngf", "n_blocks", "antialias", "antialias_up", "global_residual"}
    unknown = sorted(set(kw) - allowed)
    if unknown:
        raise TypeError(f"unknown generator kwargs {unknown}; allowed: {sorted(allowed)}")
    out = {"antialias": antialias, "antialias_up": antialias}
    out.update(kw)
    return out


def cut_generator(**kw: Any) -> ImageTranslator:
    """CUT / FastCUT dehazer: ``ImageTranslator(ResnetGenerator(**kw))``, anti-aliased by default.

    ``kw``: ``in_ch``, ``out_ch``, ``ngf`` (64), ``n_blocks`` (9), ``antialias`` (True),
    ``antialias_up`` (True), ``global_residual`` (False: output ``x + G(x)``). Weights are untrained:
    load a checkpoint's ``model`` state dict.
    """
    return ImageTranslator(ResnetGenerator(**_resnet_kwargs(kw, antialias=True)))


def cyclegan_generator(**kw: Any) -> ImageTranslator:
    """CycleGAN dehazer (``G_A``, hazy → clear): as :func:`cut_generator` but ``antialias`` and
    ``antialias_up`` default to False (CycleGAN's strided / transposed convolutions)."""
    return ImageTranslator(ResnetGenerator(**_resnet_kwargs(kw, antialias=False)))


#: Registry names used in the unpaired methods' ``model_spec()``.
TRANSLATOR_BUILDERS = {"cut": cut_generator, "fastcut": cut_generator, "cyclegan": cyclegan_generator}
