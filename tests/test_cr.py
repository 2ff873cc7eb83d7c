"""Contrastive regularisation, the L1 + beta*CR objective, sample drawing, and the VGG-19 loader."""

import warnings

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from dehazelab.losses.cr import ContrastiveRegularization, CRLoss, draw_contrast_samples
from dehazelab.models.vgg import VGG19_ENV, VGG19_FILE, vgg19_features

# --- a tiny fake "VGG" with known convs ---------------------------------------------------------


def fake_vgg():
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(),
        nn.Conv2d(4, 5, 3, padding=1, stride=2), nn.ReLU(),
        nn.Conv2d(5, 2, 1),
    )


FAKE_LAYERS = ((0, 2), (2, 4), (4, 5))
FAKE_WEIGHTS = (0.5, 1.0, 2.0)


def fake_feats(vgg, x):
    f1 = F.relu(F.conv2d(x, vgg[0].weight, vgg[0].bias, padding=1))
    f2 = F.relu(F.conv2d(f1, vgg[2].weight, vgg[2].bias, padding=1, stride=2))
    f3 = F.conv2d(f2, vgg[4].weight, vgg[4].bias)
    return [f1, f2, f3]


def images(*shape, seed=0):
    return torch.rand(*shape, generator=torch.Generator().manual_seed(seed))


def test_ratio_matches_independent_computation_fake_vgg():
    vgg = fake_vgg()
    cr = ContrastiveRegularization(vgg=vgg, weights=FAKE_WEIGHTS, layers=FAKE_LAYERS)
    a, p, n = images(2, 3, 10, 12, seed=1), images(2, 3, 10, 12, seed=2), images(2, 3, 10, 12, seed=3)
    expected = 0.0
    for w, fa, fp, fn in zip(FAKE_WEIGHTS, fake_feats(vgg, a), fake_feats(vgg, p), fake_feats(vgg, n)):
        expected += w * (fa - fp).abs().mean() / ((fa - fn).abs().mean() + 1e-7)
    torch.testing.assert_close(cr(a, p, n), expected)
    # [B,3,H,W] and [B,1,3,H,W] are the same thing
    torch.testing.assert_close(cr(a, p.unsqueeze(1), n.unsqueeze(1)), expected)
    # ratio of batch means, not mean of per-sample ratios
    per_sample = sum(cr(a[i:i + 1], p[i:i + 1], n[i:i + 1]) for i in range(2)) / 2
    assert abs(per_sample - expected) > 1e-4


def test_several_positives_and_negatives_use_means():
    vgg = fake_vgg()
    cr = ContrastiveRegularization(vgg=vgg, weights=FAKE_WEIGHTS, layers=FAKE_LAYERS)
    a = images(2, 3, 8, 8, seed=1)
    pos, neg = images(2, 2, 3, 8, 8, seed=2), images(2, 3, 3, 8, 8, seed=3)
    expected = 0.0
    fa = fake_feats(vgg, a)
    fps = [fake_feats(vgg, pos[:, j]) for j in range(2)]
    fns = [fake_feats(vgg, neg[:, j]) for j in range(3)]
    for i, w in enumerate(FAKE_WEIGHTS):
        num = sum((fa[i] - fp[i]).abs().mean() for fp in fps) / 2
        den = sum((fa[i] - fn[i]).abs().mean() for fn in fns) / 3
        expected += w * num / (den + 1e-7)
    torch.testing.assert_close(cr(a, pos, neg), expected)


@pytest.fixture(scope="module")
def random_vgg():
    feats, label = vgg19_features(weights="random", seed=0)
    return feats, label


def test_ratio_matches_independent_computation_real_vgg19(random_vgg):
    feats, label = random_vgg
    assert label == "random(seed=0)"
    cr = ContrastiveRegularization(vgg=feats)
    assert cr.weights == (1 / 32, 1 / 16, 1 / 8, 1 / 4, 1.0)
    a, p, n = images(2, 3, 16, 16, seed=1), images(2, 3, 16, 16, seed=2), images(2, 3, 16, 16, seed=3)
    l1 = nn.L1Loss()
    expected = 0.0
    with torch.no_grad():
        # relu1_1, relu2_1, relu3_1, relu4_1, relu5_1 = outputs of features[:2], [:7], [:12], [:21], [:30]
        for w, end in zip((1 / 32, 1 / 16, 1 / 8, 1 / 4, 1.0), (2, 7, 12, 21, 30)):
            f = feats[:end]
            assert isinstance(f[-1], nn.ReLU) and isinstance(f[-2], nn.Conv2d)
            expected += w * l1(f(a), f(p)) / (l1(f(a), f(n)) + 1e-7)
        got = cr(a, p, n)
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-6)
    assert [m.out_channels for m in feats[:30] if isinstance(m, nn.Conv2d)][-1] == 512


def test_gradients_reach_only_the_anchor(random_vgg):
    cr = ContrastiveRegularization(vgg=random_vgg[0])
    a = images(1, 3, 32, 32, seed=1).requires_grad_()
    p = images(1, 3, 32, 32, seed=2).requires_grad_()
    n = images(1, 3, 32, 32, seed=3).requires_grad_()
    cr(a, p, n).backward()
    assert a.grad is not None and a.grad.abs().sum() > 0
    assert p.grad is None and n.grad is None
    assert all(not q.requires_grad and q.grad is None for q in cr.parameters())
    cr.train()
    assert not any(m.training for m in cr.slices.modules())


def test_ablation_drops_the_denominator():
    vgg = fake_vgg()
    full = ContrastiveRegularization(vgg=vgg, weights=FAKE_WEIGHTS, layers=FAKE_LAYERS)
    ab = ContrastiveRegularization(vgg=vgg, weights=FAKE_WEIGHTS, layers=FAKE_LAYERS, ablation=True)
    a, p, n = images(2, 3, 8, 8, seed=1), images(2, 3, 8, 8, seed=2), images(2, 3, 8, 8, seed=3)
    pairs = zip(FAKE_WEIGHTS, fake_feats(vgg, a), fake_feats(vgg, p))
    expected = sum(w * (fa - fp).abs().mean() for w, fa, fp in pairs)
    torch.testing.assert_close(ab(a, p, n), expected)
    torch.testing.assert_close(ab(a, p, images(2, 3, 8, 8, seed=9)), expected)  # negatives ignored
    assert not torch.allclose(full(a, p, n), expected)


def test_value_decreases_as_anchor_moves_toward_positive(random_vgg):
    cr = ContrastiveRegularization(vgg=random_vgg[0])
    p, n = images(2, 3, 32, 32, seed=2), images(2, 3, 32, 32, seed=3) * 0.5 + 0.4  # hazy-ish
    a0 = n.clone()
    vals = [cr((1 - t) * a0 + t * p, p, n).item() for t in (0.0, 0.3, 0.6, 0.9, 1.0)]
    assert all(x > y for x, y in zip(vals, vals[1:])), vals
    assert vals[-1] == 0.0
    assert vals[0] > 1e4  # anchor == negative: the denominator collapses to eps


def test_imagenet_norm_option_changes_the_input():
    vgg = fake_vgg()
    a, p, n = images(1, 3, 8, 8, seed=1), images(1, 3, 8, 8, seed=2), images(1, 3, 8, 8, seed=3)
    plain = ContrastiveRegularization(vgg=vgg, weights=FAKE_WEIGHTS, layers=FAKE_LAYERS)
    normed = ContrastiveRegularization(vgg=vgg, weights=FAKE_WEIGHTS, layers=FAKE_LAYERS, imagenet_norm=True)
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    norm = lambda x: (x - mean) / std  # noqa: E731
    torch.testing.assert_close(normed(a, p, n), plain(norm(a), norm(p), norm(n)))


def test_bad_configurations_raise():
    vgg = fake_vgg()
    with pytest.raises(ValueError):
        ContrastiveRegularization(vgg=vgg, weights=(1.0,), layers=FAKE_LAYERS)
    with pytest.raises(ValueError):
        ContrastiveRegularization(vgg=vgg, weights=(1.0, 1.0), layers=((0, 2), (3, 4)))
    cr = ContrastiveRegularization(vgg=vgg, weights=FAKE_WEIGHTS, layers=FAKE_LAYERS)
    with pytest.raises(ValueError):
        cr(images(2, 3, 8, 8), images(3, 3, 8, 8), images(2, 3, 8, 8))


# --- drawing positives / negatives --------------------------------------------------------------


@pytest.mark.parametrize("P,K", [(1, 1), (1, 4), (4, 1), (4, 4), (3, 9)])
def test_draw_contrast_samples_shapes_and_slots(P, K):
    b = 5
    clear, hazy = images(b, 3, 6, 7, seed=1), images(b, 3, 6, 7, seed=2)
    g = torch.Generator().manual_seed(0)
    pos, neg = draw_contrast_samples(clear, hazy, P, K, g)
    assert pos.shape == (b, P, 3, 6, 7) and neg.shape == (b, K, 3, 6, 7)
    assert torch.equal(pos[:, 0], clear) and torch.equal(neg[:, 0], hazy)
    for i in range(b):
        for k in range(1, K):  # extra negatives: hazy images of OTHER samples
            matches = [j for j in range(b) if torch.equal(neg[i, k], hazy[j])]
            assert matches and i not in matches
        if K - 1 <= b - 1:  # without replacement while possible
            ids = {next(j for j in range(b) if torch.equal(neg[i, k], hazy[j])) for k in range(1, K)}
            assert len(ids) == K - 1
        for p in range(1, P):  # extra positives: own clear image, photometric jitter, aligned
            x, y = pos[i, p].flatten(), clear[i].flatten()
            assert pos[i, p].min() >= 0 and pos[i, p].max() <= 1
            assert not torch.equal(pos[i, p], clear[i])
            assert torch.corrcoef(torch.stack([x, y]))[0, 1] > 0.97
    pos2, neg2 = draw_contrast_samples(clear, hazy, P, K, torch.Generator().manual_seed(0))
    assert torch.equal(pos, pos2) and torch.equal(neg, neg2)


def test_draw_contrast_samples_other_modes_and_errors():
    clear, hazy = images(3, 3, 4, 4, seed=1), images(3, 3, 4, 4, seed=2)
    pos, _ = draw_contrast_samples(clear, hazy, 3, 1, torch.Generator().manual_seed(0), extra_positives="other_clear")
    for i in range(3):
        for p in (1, 2):
            assert any(torch.equal(pos[i, p], clear[j]) for j in range(3) if j != i)
    pos, _ = draw_contrast_samples(clear, hazy, 3, 1, extra_positives="repeat")
    assert torch.equal(pos, clear.unsqueeze(1).expand(3, 3, 3, 4, 4))
    with pytest.raises(ValueError):
        draw_contrast_samples(clear[:1], hazy[:1], 1, 2)
    with pytest.raises(ValueError):
        draw_contrast_samples(clear, hazy, 0, 1)
    out = images(3, 3, 4, 4, seed=3).requires_grad_()
    pos, neg = draw_contrast_samples(out, hazy, 2, 2)
    assert not pos.requires_grad and not neg.requires_grad


# --- the total objective ------------------------------------------------------------------------


def test_crloss_total_and_logs():
    vgg = fake_vgg()
    crit = CRLoss(vgg=vgg, weights=FAKE_WEIGHTS, layers=FAKE_LAYERS)
    assert crit.beta == 0.1
    out = images(2, 3, 8, 8, seed=1).requires_grad_()
    clear, hazy = images(2, 3, 8, 8, seed=2), images(2, 3, 8, 8, seed=3)
    loss, logs = crit(out, clear, hazy)
    cr = ContrastiveRegularization(vgg=vgg, weights=FAKE_WEIGHTS, layers=FAKE_LAYERS)(out, clear, hazy)
    l1 = (out - clear).abs().mean()
    torch.testing.assert_close(loss, l1 + 0.1 * cr)
    assert logs == pytest.approx({"l1": l1.item(), "cr": cr.item(), "loss": loss.item()})
    loss.backward()
    assert out.grad is not None
    # several samples run end to end
    crit_pk = CRLoss(vgg=vgg, weights=FAKE_WEIGHTS, layers=FAKE_LAYERS, n_pos=2, n_neg=2,
                     generator=torch.Generator().manual_seed(0))
    assert torch.isfinite(crit_pk(out, clear, hazy)[0])


def test_crloss_beta_zero_is_plain_l1_without_vgg():
    crit = CRLoss(beta=0.0)
    assert crit.cr is None
    out, clear = images(2, 3, 8, 8, seed=1), images(2, 3, 8, 8, seed=2)
    loss, logs = crit(out, clear, images(2, 3, 8, 8, seed=3))
    torch.testing.assert_close(loss, (out - clear).abs().mean())
    assert logs["cr"] == 0.0


# --- the VGG-19 loader --------------------------------------------------------------------------


@pytest.fixture
def no_weights(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))
    monkeypatch.delenv(VGG19_ENV, raising=False)
    return tmp_path


def test_vgg_fallback_warns_and_is_frozen_and_seeded(no_weights):
    state = torch.random.get_rng_state()
    with pytest.warns(UserWarning, match="NOT comparable to the paper"):
        feats, label = vgg19_features()
    assert torch.equal(state, torch.random.get_rng_state())  # global RNG untouched
    assert label == "random(seed=0)"
    assert not feats.training and all(not p.requires_grad for p in feats.parameters())
    assert sum(isinstance(m, nn.Conv2d) for m in feats) == 16 and len(feats) == 37
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # explicit "random" does not warn
        same, _ = vgg19_features(weights="random", seed=0)
        other, _ = vgg19_features(weights="random", seed=1)
    assert torch.equal(feats[0].weight, same[0].weight)
    assert not torch.equal(feats[0].weight, other[0].weight)
    with pytest.raises(FileNotFoundError):
        vgg19_features(weights="imagenet")
    with pytest.raises(ValueError):
        vgg19_features(weights="pretrained")


def test_vgg_loads_weights_from_cache_env_and_path(no_weights, random_vgg, monkeypatch):
    src = random_vgg[0]
    full = {f"features.{k}": v.clone() + 1.0 for k, v in src.state_dict().items()}
    full["classifier.6.bias"] = torch.zeros(1000)  # a full vgg19 file also holds the classifier
    cache = no_weights / "torch_home" / "hub" / "checkpoints"
    cache.mkdir(parents=True)
    torch.save(full, cache / VGG19_FILE)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        feats, label = vgg19_features()
    assert label == f"imagenet:{cache / VGG19_FILE}"
    torch.testing.assert_close(feats[28].weight, src[28].weight + 1.0)
    assert all(not p.requires_grad for p in feats.parameters())

    only = {k: v.clone() - 1.0 for k, v in src.state_dict().items()}  # features-only file
    torch.save(only, no_weights / "mine.pth")
    monkeypatch.setenv(VGG19_ENV, str(no_weights / "mine.pth"))
    feats, label = vgg19_features(weights="imagenet")
    assert label.endswith("mine.pth")
    torch.testing.assert_close(feats[0].weight, src[0].weight - 1.0)
    feats, label = vgg19_features(path=cache / VGG19_FILE)  # explicit path wins over the env var
    torch.testing.assert_close(feats[0].weight, src[0].weight + 1.0)
    with pytest.raises(FileNotFoundError):
        vgg19_features(path=no_weights / "missing.pth")
    monkeypatch.setenv(VGG19_ENV, str(no_weights / "missing.pth"))
    with pytest.raises(FileNotFoundError):
        vgg19_features()


def test_vgg_downloads_through_the_weights_api_into_the_hub_cache(no_weights, random_vgg, monkeypatch):
    """Online, the ImageNet VGG-19 is fetched as torchvision would (hub cache, hash-checked name);
    here the URL is a file:// one, so the real download code runs without a network."""
    import hashlib

    from dehazelab.models import vgg as vgg_mod

    src = random_vgg[0]
    served = no_weights / "server"
    served.mkdir()
    tmp = served / "tmp.pth"
    torch.save({f"features.{k}": v.clone() * 2 for k, v in src.state_dict().items()}, tmp)
    name = f"vgg19-{hashlib.sha256(tmp.read_bytes()).hexdigest()[:8]}.pth"  # torch.hub checks this prefix
    tmp.rename(served / name)
    monkeypatch.setattr(vgg_mod, "_vgg19_url", lambda: (served / name).as_uri())
    monkeypatch.setenv(vgg_mod.DOWNLOAD_ENV, "1")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        feats, label = vgg19_features()
    cached = no_weights / "torch_home" / "hub" / "checkpoints" / name
    assert cached.is_file() and label == f"imagenet:{cached}"
    torch.testing.assert_close(feats[0].weight, src[0].weight * 2)


def test_vgg_falls_back_loudly_when_the_download_fails_or_is_off(no_weights, monkeypatch):
    from dehazelab.models import vgg as vgg_mod

    monkeypatch.setenv(vgg_mod.DOWNLOAD_ENV, "1")
    monkeypatch.setattr(vgg_mod, "_vgg19_url", lambda: (no_weights / "nowhere" / "vgg19-dcbb9e9d.pth").as_uri())
    with pytest.warns(UserWarning, match=r"download of file://.*failed.*NOT comparable to the paper"):
        _, label = vgg19_features()
    assert label == "random(seed=0)"
    monkeypatch.setenv(vgg_mod.DOWNLOAD_ENV, "0")

    def never(*a, **k):
        raise AssertionError("downloaded although DEHAZELAB_DOWNLOAD=0")

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", never)
    with pytest.warns(UserWarning, match=r"downloads are off \(\$DEHAZELAB_DOWNLOAD=0\)"):
        _, label = vgg19_features()
    assert label == "random(seed=0)"
    with pytest.raises(FileNotFoundError, match="downloads are off"):
        vgg19_features(weights="imagenet")
