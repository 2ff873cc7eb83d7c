"""FID through a maintained library: torchmetrics' ``FrechetInceptionDistance`` (no hand-written FID).

The feature extractor is torchmetrics' default: torch-fidelity's Inception-v3 ported from the
TensorFlow graph the original FID used (2048-d pool features; the weights legacy ``pytorch-fid``
scores come from). :class:`FIDScorer` looks for those weights in this order:

1. ``weights=`` a path (a missing or unusable file is an error, not a silent fallback);
2. the file named by ``$DEHAZELAB_INCEPTION`` (the same);
3. torch's hub cache, ``torch.hub.get_dir()/checkpoints/`` + the file name of torch-fidelity's URL
   (``weights-inception-2015-12-05-6726825d.pth``), which is where torch-fidelity downloads it;
4. a download of torch-fidelity's URL into that cache (``torch.hub.load_state_dict_from_url``, the call
   torch-fidelity itself makes; 30 s socket timeout), unless downloads are off: ``DEHAZELAB_DOWNLOAD=0``
   (the setting :mod:`dehazelab.models.vgg` reads too; the test suite sets it) or ``download=False``.

Without weights there is no FID: ``FIDScorer.available`` is false, a ``UserWarning`` says why, and
``FIDScorer.note`` (``"no FID: ..."``) is what a table or ``metrics.json`` records instead. The file is
read with ``torch.load(weights_only=True)`` before torch-fidelity loads it (torch-fidelity itself
unpickles with ``weights_only=False``), so a file that would run code is refused.

``feature=`` takes any ``nn.Module`` mapping a uint8 ``Bx3xHxW`` batch to ``(B, d)`` features
(torchmetrics' custom-extractor contract); the tests use a tiny one. Images are given as floats in
[0, 1] (``CxHxW`` each, any size, or one ``BxCxHxW`` batch) and quantised to uint8 by rounding, as a
PNG of them would be.

FID from a handful of images (fewer than the 2,048 feature dimensions) rests on rank-deficient
covariances: such numbers compare rows scored on the same images, never with published FIDs.

:func:`dehazer_fids` scores a notebook's dehazers this way: their outputs on the test images (and the hazy
inputs themselves) against one clear image per test scene, the target domain.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

import torch
import torch.nn as nn

from .weightfiles import DOWNLOAD_ENV, downloads_allowed, named_file

__all__ = ["FIDScorer", "inception_url", "inception_file_name", "find_inception_weights",
           "download_inception_weights", "dehazer_fids", "INCEPTION_ENV", "MIN_IMAGES"]

INCEPTION_ENV = "DEHAZELAB_INCEPTION"
#: torchmetrics needs at least two images per side to estimate a covariance
MIN_IMAGES = 2
#: seconds a stalled connection may take before the download counts as failed
DOWNLOAD_TIMEOUT_S = 30.0
_FALLBACK_URL = ("https://github.com/toshas/torch-fidelity/releases/download/v0.2.0/"
                 "weights-inception-2015-12-05-6726825d.pth")


def inception_url() -> str:
    """The URL torch-fidelity downloads its FID Inception-v3 weights from."""
    try:
        from torch_fidelity.feature_extractor_inceptionv3 import URL_INCEPTION_V3
    except ImportError:
        return _FALLBACK_URL
    return URL_INCEPTION_V3


def inception_file_name() -> str:
    return Path(inception_url()).name


def _hub_file() -> Path:
    return Path(torch.hub.get_dir()) / "checkpoints" / inception_file_name()


def _library_missing() -> str | None:
    from importlib.util import find_spec

    for mod, pkg in (("torchmetrics", "torchmetrics"), ("torch_fidelity", "torch-fidelity")):
        if find_spec(mod) is None:
            return f"{pkg} is not installed (pip install 'torchmetrics[image]')"
    return None


def find_inception_weights(weights: str | os.PathLike = "auto") -> Path | None:
    """The Inception weight file to use, or ``None`` when none is on disk (``weights="none"``: never).

    A path given (argument or ``$DEHAZELAB_INCEPTION``) that is not a file raises ``FileNotFoundError``."""
    if str(weights) == "none":
        return None
    named = named_file(None if str(weights) == "auto" else weights, INCEPTION_ENV, "Inception")
    if named is not None:
        return named
    p = _hub_file()
    return p if p.is_file() else None


def download_inception_weights(download: bool | None = None) -> tuple[Path | None, str]:
    """Fetch torch-fidelity's Inception weights into torch's hub cache. Returns ``(file, "")`` or
    ``(None, why not)``; never raises for a network failure. ``download=None`` follows
    ``$DEHAZELAB_DOWNLOAD``."""
    if download is False:
        return None, "downloads are off (download=False)"
    if download is None and not downloads_allowed():
        return None, f"downloads are off (${DOWNLOAD_ENV}=0)"
    import socket

    url = inception_url()
    old_timeout = socket.getdefaulttimeout()
    socket.setdefaulttimeout(DOWNLOAD_TIMEOUT_S)  # a network that drops packets must not hang a notebook
    try:
        # torch-fidelity downloads with this call too (its file name carries no checked hash)
        torch.hub.load_state_dict_from_url(url, map_location="cpu", progress=False, weights_only=True)
    except Exception as exc:  # offline, DNS, proxy, HTTP error, timeout, not a weights file
        first = str(exc).splitlines()[0] if str(exc) else ""
        return None, f"download of {url} failed ({type(exc).__name__}: {first})"
    finally:
        socket.setdefaulttimeout(old_timeout)
    file = _hub_file()
    return (file, "") if file.is_file() else (None, f"download of {url} left no file in the hub cache")


def _as_uint8_images(images) -> list[torch.Tensor]:
    """``1x3xHxW`` uint8 tensors from float images in [0, 1] (a ``BxCxHxW`` batch or ``CxHxW`` items)."""
    if isinstance(images, torch.Tensor):
        images = list(images) if images.dim() == 4 else [images]
    out = []
    for im in images:
        im = torch.as_tensor(im)
        if im.dim() == 4 and im.shape[0] == 1:
            im = im[0]
        if im.dim() != 3 or im.shape[0] != 3:
            raise ValueError(f"expected 3xHxW images, got shape {tuple(im.shape)}")
        if im.dtype != torch.uint8:
            im = (im.detach().float().clamp(0, 1) * 255).round().to(torch.uint8)
        out.append(im[None])
    return out


class FIDScorer:
    """FID between sets of images with torchmetrics' ``FrechetInceptionDistance``.

    ``weights``: ``"auto"`` (``$DEHAZELAB_INCEPTION``, the hub cache, else a download), a path, or
    ``"none"`` (no FID). ``download``: ``None`` follows ``$DEHAZELAB_DOWNLOAD``; ``False`` never
    downloads. ``feature``: a custom extractor module instead of Inception (then no weights are looked
    for). ``dims``: the Inception features used (2048, the standard FID; 768, 192 or 64).
    ``available`` / ``note`` say whether FID can be computed and with what, or why not.
    """

    def __init__(self, weights: str | os.PathLike = "auto", *, feature: nn.Module | None = None,
                 download: bool | None = None, device: str | torch.device | None = None, dims: int = 2048,
                 warn: bool = True):
        self.device = torch.device(device or "cpu")
        self.dims = int(dims)  # Inception layer: 2048 (pool3, the standard FID), or 768 / 192 / 64
        self.weights: Path | None = None
        self.metric = None
        self.note = ""
        if feature is not None:
            self._build(feature)
            self.note = f"FID: torchmetrics FrechetInceptionDistance, custom features ({type(feature).__name__})"
        elif str(weights) == "none":
            self.note = "no FID: turned off (Inception weights 'none')"
        elif (missing := _library_missing()) is not None:
            self._unavailable(missing, warn)
        else:
            self._inception(weights, download, warn)

    def _inception(self, weights, download: bool | None, warn: bool) -> None:
        explicit = str(weights) != "auto" or bool(os.environ.get(INCEPTION_ENV, "").strip())
        file = find_inception_weights(weights)
        why = ""
        if file is None:
            file, why = download_inception_weights(download)
        if file is None:
            self._unavailable(f"no Inception weights (${INCEPTION_ENV}, {_hub_file()}) and {why}", warn)
            return
        try:
            state = torch.load(file, map_location="cpu", weights_only=True)  # refuses a code-running pickle
            if not isinstance(state, dict) or "fc.weight" not in state:
                raise ValueError("not torch-fidelity's Inception-v3 state dict (no 'fc.weight')")
            del state
            self._build(self.dims, str(file))
        except Exception as exc:
            why = f"{file}: cannot be used as the FID Inception weights ({type(exc).__name__}: {exc})"
            if explicit:
                raise ValueError(why) from None
            self._unavailable(why, warn)
            return
        self.weights = file
        self.note = (f"FID: torchmetrics FrechetInceptionDistance, torch-fidelity Inception-v3 weights {file.name}"
                     + ("" if self.dims == 2048 else f", {self.dims}-d features"))

    def _build(self, feature, path: str | None = None) -> None:
        from torchmetrics.image.fid import FrechetInceptionDistance

        kw = {} if path is None else {"feature_extractor_weights_path": path}
        self.metric = FrechetInceptionDistance(feature=feature, normalize=False, reset_real_features=True,
                                               **kw).to(self.device)

    def _unavailable(self, why: str, warn: bool) -> None:
        self.note = f"no FID: {why}"
        if warn:
            warnings.warn(f"FID is not computed: {why}", UserWarning, stacklevel=4)

    @property
    def available(self) -> bool:
        return self.metric is not None

    def score(self, real: Iterable[torch.Tensor] | torch.Tensor, fake: Iterable[torch.Tensor] | torch.Tensor) -> float:
        """FID between ``real`` and ``fake`` images (floats in [0, 1]; any sizes)."""
        if self.metric is None:
            raise RuntimeError(self.note)
        real_, fake_ = _as_uint8_images(real), _as_uint8_images(fake)
        if len(real_) < MIN_IMAGES or len(fake_) < MIN_IMAGES:
            raise ValueError(f"FID needs at least {MIN_IMAGES} images on each side, got {len(real_)} real and "
                             f"{len(fake_)} generated")
        self.metric.reset()
        with torch.no_grad():
            for im in real_:
                self.metric.update(im.to(self.device), real=True)
            for im in fake_:
                self.metric.update(im.to(self.device), real=False)
            return float(self.metric.compute())


def dehazer_fids(scorer: FIDScorer, dehazers: Mapping[str, nn.Module], test_set, scenes: Sequence,
                 device: str | torch.device | None = None, hazy_label: str | None = "hazy input") -> dict[str, float]:
    """FID of each dehazer's outputs on every image of ``test_set`` (items with ``hazy`` and ``clear``
    ``3xHxW`` tensors in [0, 1]; ``scenes[i]`` the scene of item ``i``) against the target domain: one clear
    image per scene (the last item of the scene; scenes in the order met). ``{label: FID}`` in the order of
    ``dehazers``, then — unless ``hazy_label`` is ``None`` — the hazy inputs themselves under ``hazy_label``.
    Outputs are computed on ``device`` (default: the scorer's) without gradients and clamped to [0, 1].
    Raises ``ValueError`` (from :meth:`FIDScorer.score`) when a side has fewer than :data:`MIN_IMAGES`
    images, e.g. a single test scene."""
    n = len(test_set)
    if len(scenes) != n:
        raise ValueError(f"dehazer_fids: {len(scenes)} scenes for {n} test images")
    device = scorer.device if device is None else device
    last_of_scene = {s: i for i, s in enumerate(scenes)}
    real = [test_set[i]["clear"] for i in last_of_scene.values()]
    out = {}
    for label, dehaze in dehazers.items():
        with torch.no_grad():
            fakes = [dehaze(test_set[i]["hazy"][None].to(device)).clamp(0, 1)[0].cpu() for i in range(n)]
        out[label] = scorer.score(real, fakes)
    if hazy_label is not None:
        out[hazy_label] = scorer.score(real, [test_set[i]["hazy"] for i in range(n)])
    return out
