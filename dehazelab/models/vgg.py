"""A frozen VGG-19 ``features`` stack for perceptual / contrastive losses — never downloads.

AECR-Net's contrastive regularisation uses an ImageNet-trained VGG-19 (``torchvision``
``vgg19(pretrained=True).features``). This machine has no internet, so :func:`vgg19_features` only
*loads* weights that are already on disk, looked up in this order:

1. the ``path`` argument;
2. the file named by ``$DEHAZELAB_VGG19``;
3. torchvision's hub cache, ``torch.hub.get_dir()/checkpoints/vgg19-dcbb9e9d.pth`` (by default
   ``~/.cache/torch/hub/checkpoints/``), i.e. what ``VGG19_Weights.IMAGENET1K_V1`` downloads.

A file given explicitly (argument or environment variable) that does not exist is an error, not a
silent fallback. With ``weights="auto"`` and no file found, a VGG-19 with seeded random weights is
returned with a loud warning: losses computed with it are *not* comparable to the paper's.

The network is built with ``torchvision.models.vgg.make_layers(cfgs["E"])`` (the exact ``features``
of ``vgg19``) and randomly initialised as torchvision's ``VGG`` does (Kaiming-normal fan-out, zero
bias) — skipping the 120 M-parameter classifier keeps construction fast. Weight files may hold a full
``vgg19`` state dict (``features.N.*`` and ``classifier.*`` keys) or a ``features``-only one.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import torch
import torch.nn as nn

__all__ = ["vgg19_features", "find_vgg19_weights", "VGG19_ENV", "VGG19_FILE"]

VGG19_ENV = "DEHAZELAB_VGG19"
VGG19_FILE = "vgg19-dcbb9e9d.pth"


def _build_features() -> nn.Sequential:
    from torchvision.models.vgg import cfgs, make_layers

    features = make_layers(cfgs["E"], batch_norm=False)
    for m in features.modules():
        if isinstance(m, nn.Conv2d):  # torchvision's VGG init
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            nn.init.zeros_(m.bias)
    return features


def find_vgg19_weights(path: str | os.PathLike | None = None) -> Path | None:
    """The ImageNet VGG-19 weight file to use, or ``None`` when there is none on disk."""
    if path is not None:
        p = Path(path).expanduser()
        if not p.is_file():
            raise FileNotFoundError(f"VGG-19 weights not found at path={str(path)!r}")
        return p
    env = os.environ.get(VGG19_ENV, "").strip()
    if env:
        p = Path(env).expanduser()
        if not p.is_file():
            raise FileNotFoundError(f"${VGG19_ENV}={env!r} is not a file")
        return p
    p = Path(torch.hub.get_dir()) / "checkpoints" / VGG19_FILE
    return p if p.is_file() else None


def _features_state_dict(sd: dict) -> dict:
    if "features.0.weight" in sd:
        return {k[len("features."):]: v for k, v in sd.items() if k.startswith("features.")}
    return dict(sd)


def vgg19_features(
    weights: str = "auto", path: str | os.PathLike | None = None, seed: int = 0
) -> tuple[nn.Module, str]:
    """Return ``(features, label)``: a frozen VGG-19 ``features`` (eval mode, no grad) and what it holds.

    ``weights``: ``"imagenet"`` (a weight file must be found, else ``FileNotFoundError``),
    ``"random"`` (seeded random weights, no warning), ``"auto"`` (ImageNet if found, else random with
    a ``UserWarning``). ``label`` is ``"imagenet:<file>"`` or ``"random(seed=<seed>)"``. The global
    RNG state is left untouched.
    """
    if weights not in ("auto", "imagenet", "random"):
        raise ValueError(f"weights must be 'auto', 'imagenet' or 'random', got {weights!r}")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        features = _build_features()
    label = f"random(seed={seed})"
    if weights != "random":
        file = find_vgg19_weights(path)
        if file is not None:
            sd = torch.load(file, map_location="cpu", weights_only=True)
            features.load_state_dict(_features_state_dict(sd))
            label = f"imagenet:{file}"
        elif weights == "imagenet":
            raise FileNotFoundError(
                f"VGG-19 ImageNet weights not found (pass path=, set ${VGG19_ENV}, or place {VGG19_FILE} in "
                f"{Path(torch.hub.get_dir()) / 'checkpoints'})"
            )
        else:
            warnings.warn(
                f"VGG-19 ImageNet weights not found (path=, ${VGG19_ENV}, torch hub cache); using seeded random "
                f"weights (seed={seed}); CR numbers are NOT comparable to the paper",
                UserWarning,
                stacklevel=2,
            )
    features.eval()
    for p in features.parameters():
        p.requires_grad_(False)
    return features, label
