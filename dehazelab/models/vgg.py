"""A frozen VGG-19 ``features`` stack for perceptual / contrastive losses, with ImageNet weights.

AECR-Net's contrastive regularisation uses an ImageNet-trained VGG-19 (``torchvision``
``vgg19(pretrained=True).features``). :func:`vgg19_features` looks for the weights in this order:

1. the ``path`` argument;
2. the file named by ``$DEHAZELAB_VGG19``;
3. torchvision's hub cache, ``torch.hub.get_dir()/checkpoints/vgg19-dcbb9e9d.pth`` (by default
   ``~/.cache/torch/hub/checkpoints/``);
4. a download through torchvision's weights API (``VGG19_Weights.IMAGENET1K_V1``: its URL, into
   that cache, hash-checked), as every torchvision user expects on a machine that is online. Set
   ``DEHAZELAB_DOWNLOAD=0`` to never download (the test suite does).

A file given explicitly (argument or environment variable) that does not exist is an error, not a
silent fallback. With ``weights="auto"`` and no weights found or downloadable, a VGG-19 with seeded
random weights is returned with a loud warning that says why: losses computed with it are *not*
comparable to the paper's, and the label (recorded in every run's results) says ``random``.

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

from ..weightfiles import DOWNLOAD_ENV, downloads_allowed, named_file

__all__ = ["vgg19_features", "find_vgg19_weights", "download_vgg19_weights", "VGG19_ENV", "VGG19_FILE",
           "DOWNLOAD_ENV"]

VGG19_ENV = "DEHAZELAB_VGG19"
VGG19_FILE = "vgg19-dcbb9e9d.pth"
#: seconds a stalled connection may take before the download counts as failed
DOWNLOAD_TIMEOUT_S = 30.0


def _vgg19_url() -> str:
    from torchvision.models import VGG19_Weights

    return VGG19_Weights.IMAGENET1K_V1.url


def download_vgg19_weights() -> tuple[Path | None, str]:
    """Fetch the ImageNet VGG-19 into torch's hub cache (``torch.hub.load_state_dict_from_url``, the
    call behind ``VGG19_Weights.get_state_dict``; the file name's hash prefix is checked). Returns
    ``(file, "")`` or ``(None, why not)``; never raises for a network failure."""
    if not downloads_allowed():
        return None, f"downloads are off (${DOWNLOAD_ENV}=0)"
    import socket

    url = _vgg19_url()
    old_timeout = socket.getdefaulttimeout()
    socket.setdefaulttimeout(DOWNLOAD_TIMEOUT_S)  # a network that drops packets must not hang a run
    try:
        torch.hub.load_state_dict_from_url(url, map_location="cpu", progress=False, check_hash=True,
                                           weights_only=True)
    except Exception as exc:  # offline, DNS, proxy, HTTP error, timeout, hash mismatch
        return None, f"download of {url} failed ({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''})"
    finally:
        socket.setdefaulttimeout(old_timeout)
    file = Path(torch.hub.get_dir()) / "checkpoints" / Path(url).name
    return (file, "") if file.is_file() else (None, f"download of {url} left no file in the hub cache")


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
    named = named_file(path, VGG19_ENV, "VGG-19")
    if named is not None:
        return named
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
        why = ""
        if file is None:
            file, why = download_vgg19_weights()
        if file is not None:
            sd = torch.load(file, map_location="cpu", weights_only=True)
            features.load_state_dict(_features_state_dict(sd))
            label = f"imagenet:{file}"
        elif weights == "imagenet":
            raise FileNotFoundError(
                f"VGG-19 ImageNet weights not found and {why} (pass path=, set ${VGG19_ENV}, or place "
                f"{VGG19_FILE} in {Path(torch.hub.get_dir()) / 'checkpoints'})"
            )
        else:
            warnings.warn(
                f"VGG-19 ImageNet weights not found (path=, ${VGG19_ENV}, torch hub cache) and {why}; using "
                f"seeded random weights (seed={seed}); CR numbers are NOT comparable to the paper",
                UserWarning,
                stacklevel=2,
            )
    features.eval()
    for p in features.parameters():
        p.requires_grad_(False)
    return features, label
