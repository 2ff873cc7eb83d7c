"""FID through torchmetrics (dehazelab/fid.py): the library's number equals an independent Fréchet
distance of the same features, the Inception weights are found, downloaded (through a file:// URL,
no network) or missing, and a missing file falls back loudly to "no FID" with the reason."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn as nn
from scipy import linalg

from dehazelab import fid as F

pytest.importorskip("torchmetrics")
pytest.importorskip("torch_fidelity")


class TinyFeatures(nn.Module):
    """A stand-in for Inception: uint8 Bx3xHxW -> (B, 4) features (channel means, overall std), float64."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.double() / 255.0
        return torch.cat([x.mean(dim=(2, 3)), x.flatten(1).std(dim=1, keepdim=True)], dim=1)


def _images(seed: int, n: int, shift: float) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    out = []
    for i in range(n):
        h, w = 12 + 2 * (i % 3), 16 + (i % 4)  # any size: FID scores each image by itself
        base = torch.rand(3, 1, 1, generator=g) * 0.6 + shift
        out.append(((base + 0.3 * torch.rand(3, h, w, generator=g)).clamp(0, 1) * 255).round().to(torch.uint8))
    return out


def _frechet_sqrtm(f1: np.ndarray, f2: np.ndarray) -> float:
    """The FID formula with scipy's matrix square root (n > d here, so the covariances are full rank)."""
    mu1, mu2 = f1.mean(0), f2.mean(0)
    s1, s2 = np.cov(f1, rowvar=False), np.cov(f2, rowvar=False)
    covmean = linalg.sqrtm(s1 @ s2).real
    return float(((mu1 - mu2) ** 2).sum() + np.trace(s1 + s2 - 2 * covmean))


def _frechet_nuclear(f1: np.ndarray, f2: np.ndarray) -> float:
    """The same distance for n << d: tr((S1 S2)^½) = ‖A1 A2ᵀ‖_* / √((n1−1)(n2−1)), A = centred features."""
    a1, a2 = f1 - f1.mean(0), f2 - f2.mean(0)
    n1, n2 = len(f1), len(f2)
    tr_sqrt = np.linalg.svd(a1 @ a2.T, compute_uv=False).sum() / math.sqrt((n1 - 1) * (n2 - 1))
    return float(((f1.mean(0) - f2.mean(0)) ** 2).sum() + (a1 ** 2).sum() / (n1 - 1) + (a2 ** 2).sum() / (n2 - 1)
                 - 2 * tr_sqrt)


def _features(net: nn.Module, images: list[torch.Tensor]) -> np.ndarray:
    with torch.no_grad():
        return np.concatenate([net(im[None]).double().numpy() for im in images])


@pytest.fixture
def hub(tmp_path, monkeypatch):
    """An empty torch hub cache, no $DEHAZELAB_INCEPTION, downloads allowed unless a test turns them off.
    Through $TORCH_HOME, as a user sets it: torch.hub.set_dir would pin the hub folder for later tests."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))
    monkeypatch.delenv(F.INCEPTION_ENV, raising=False)
    monkeypatch.setenv("DEHAZELAB_DOWNLOAD", "1")
    return tmp_path / "torch_home" / "hub" / "checkpoints"


def test_torchmetrics_fid_with_a_tiny_feature_extractor_equals_the_sqrtm_formula():
    net = TinyFeatures()
    real, fake = _images(0, 12, 0.0), _images(1, 10, 0.2)
    scorer = F.FIDScorer(feature=net)
    assert scorer.available and "torchmetrics" in scorer.note
    got = scorer.score(real, fake)
    want = _frechet_sqrtm(_features(net, real), _features(net, fake))
    assert got == pytest.approx(want, rel=1e-6, abs=1e-9)
    assert want > 1e-3  # the two sets differ: the check is not 0 == 0
    # floats in [0, 1] are rounded to the same uint8 images, a BxCxHxW batch is a list of images, and the
    # metric starts afresh at every call
    batch = torch.stack([im[:, :12, :16] for im in fake[:6]])
    want_b = _frechet_sqrtm(_features(net, real), _features(net, list(batch)))
    assert scorer.score([im.float() / 255 for im in real], batch.float() / 255) == pytest.approx(want_b, rel=1e-6)
    assert scorer.score(real, real) == pytest.approx(0.0, abs=1e-6)
    with pytest.raises(ValueError, match="at least 2 images"):
        scorer.score(real, fake[:1])


def test_no_weights_and_downloads_off_is_a_loud_no_fid(hub, monkeypatch):
    monkeypatch.setenv("DEHAZELAB_DOWNLOAD", "0")
    monkeypatch.setattr(F, "inception_url", lambda: "file:///nonexistent/should-not-be-read.pth")
    with pytest.warns(UserWarning, match=r"FID is not computed: .*downloads are off \(\$DEHAZELAB_DOWNLOAD=0\)"):
        scorer = F.FIDScorer("auto")
    assert not scorer.available and scorer.note.startswith("no FID: ") and "downloads are off" in scorer.note
    with pytest.raises(RuntimeError, match="no FID"):
        scorer.score(_images(0, 3, 0.0), _images(1, 3, 0.0))
    monkeypatch.setenv("DEHAZELAB_DOWNLOAD", "1")  # the argument wins over the environment
    with pytest.warns(UserWarning, match=r"downloads are off \(download=False\)"):
        assert not F.FIDScorer("auto", download=False).available
    assert F.FIDScorer("none").note.startswith("no FID: turned off")


def test_a_failing_download_falls_back_loudly_with_the_reason(hub, monkeypatch, tmp_path):
    url = (tmp_path / "missing" / "weights-inception-2015-12-05-6726825d.pth").as_uri()
    monkeypatch.setattr(F, "inception_url", lambda: url)
    with pytest.warns(UserWarning, match=r"download of file://.*failed"):
        scorer = F.FIDScorer("auto")
    assert not scorer.available and "download of file://" in scorer.note


def test_the_download_lands_in_the_hub_cache_and_an_unusable_file_is_refused_loudly(hub, monkeypatch, tmp_path):
    src = tmp_path / "server" / "weights-inception-2015-12-05-6726825d.pth"
    src.parent.mkdir()
    torch.save({"fc.weight": torch.zeros(2, 2)}, src)  # not a whole Inception: loading it must fail, loudly
    monkeypatch.setattr(F, "inception_url", lambda: src.as_uri())
    assert F.find_inception_weights("auto") is None
    file, why = F.download_inception_weights()
    assert why == "" and file == hub / src.name and file.is_file()
    assert F.find_inception_weights("auto") == file
    with pytest.warns(UserWarning, match="cannot be used as the FID Inception weights"):
        scorer = F.FIDScorer("auto")
    assert not scorer.available
    with pytest.raises(ValueError, match="cannot be used"):  # named explicitly: an error, not a fallback
        F.FIDScorer(file)


def test_a_named_weights_file_that_does_not_exist_is_an_error(hub, monkeypatch, tmp_path):
    with pytest.raises(FileNotFoundError):
        F.FIDScorer(tmp_path / "nope.pth")
    monkeypatch.setenv(F.INCEPTION_ENV, str(tmp_path / "nope.pth"))
    with pytest.raises(FileNotFoundError, match=F.INCEPTION_ENV):
        F.FIDScorer("auto")


def test_with_weights_on_disk_the_library_default_inception_extractor_scores(hub, monkeypatch, tmp_path):
    """The path a machine with the real weights takes: torchmetrics' own Inception (torch-fidelity's
    network) loads the file found in the hub cache. Random weights stand in for the real ones (same
    architecture and keys); the 64-d features keep the check cheap."""
    import torch_fidelity.feature_extractor_inceptionv3 as fe

    with monkeypatch.context() as m:  # build the network without any weights to get a full state dict
        m.setattr(fe, "load_state_dict_from_url", lambda *a, **k: None)
        m.setattr(fe.FeatureExtractorInceptionV3, "load_state_dict", lambda self, *a, **k: None)
        torch.manual_seed(0)
        state = fe.FeatureExtractorInceptionV3("inception-v3-compat", ["64"]).state_dict()
    hub.mkdir(parents=True)
    torch.save(state, hub / F.inception_file_name())
    monkeypatch.setenv("DEHAZELAB_DOWNLOAD", "0")  # found on disk: nothing is downloaded
    scorer = F.FIDScorer("auto", dims=64)
    assert scorer.available and scorer.weights == hub / F.inception_file_name()
    assert F.inception_file_name() in scorer.note
    real, fake = _images(2, 4, 0.0), _images(3, 3, 0.25)
    got = scorer.score(real, fake)
    inc = scorer.metric.inception  # the library's extractor; the distance below is computed independently
    want = _frechet_nuclear(_features(inc, real), _features(inc, fake))
    assert got == pytest.approx(want, rel=1e-3, abs=1e-4) and want > 0


class _Brighten(nn.Module):
    """A stand-in dehazer: 1.5 · x (clamped to [0, 1] by dehazer_fids)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return 1.5 * x


def _uint8(x: torch.Tensor) -> torch.Tensor:
    return (x.clamp(0, 1) * 255).round().to(torch.uint8)


def test_dehazer_fids_scores_outputs_and_hazy_inputs_against_one_clear_image_per_scene():
    net = TinyFeatures()
    g = torch.Generator().manual_seed(3)
    scenes = [s for s in ("a", "b", "c", "d", "e", "f") for _ in range(2)]  # two test items per scene
    test_set = [{"hazy": torch.rand(3, 10, 12, generator=g), "clear": torch.rand(3, 10, 12, generator=g)}
                for _ in scenes]
    scorer = F.FIDScorer(feature=net)
    got = F.dehazer_fids(scorer, {"copy": nn.Identity(), "brighter": _Brighten()}, test_set, scenes,
                         hazy_label="hazy input (reference)")
    assert list(got) == ["copy", "brighter", "hazy input (reference)"]
    real = _features(net, [_uint8(test_set[i]["clear"]) for i in (1, 3, 5, 7, 9, 11)])  # each scene's last item
    hazy = [test_set[i]["hazy"] for i in range(len(scenes))]
    assert got["copy"] == pytest.approx(_frechet_sqrtm(real, _features(net, [_uint8(x) for x in hazy])), rel=1e-6)
    assert got["hazy input (reference)"] == pytest.approx(got["copy"], rel=1e-9)  # identity = the hazy inputs
    assert got["brighter"] == pytest.approx(
        _frechet_sqrtm(real, _features(net, [_uint8(1.5 * x) for x in hazy])), rel=1e-6)
    assert got["brighter"] != pytest.approx(got["copy"])  # the check can tell the dehazers apart
    assert list(F.dehazer_fids(scorer, {"copy": nn.Identity()}, test_set, scenes, hazy_label=None)) == ["copy"]
    with pytest.raises(ValueError, match="11 scenes for 12 test images"):
        F.dehazer_fids(scorer, {"copy": nn.Identity()}, test_set, scenes[:-1])
    with pytest.raises(ValueError, match="at least 2 images"):  # one scene: one clear image
        F.dehazer_fids(scorer, {"copy": nn.Identity()}, test_set, ["a"] * len(scenes))
