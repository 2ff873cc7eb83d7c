"""ResnetGenerator (CUT/CycleGAN), the blur up/down-sampling layers, data-range helpers and init."""

from __future__ import annotations

import time

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from dehazelab.models.antialias import BlurDownsample, BlurUpsample, binomial_filter_2d
from dehazelab.models.init import init_weights
from dehazelab.models.resnet_generator import CUT_NCE_LAYERS, ResnetBlock, ResnetGenerator, from_pm1, to_pm1


def n_params(m: nn.Module) -> int:
    return sum(p.numel() for p in m.parameters())


# ----------------------------------------------------------------------------------------- sizes


def test_parameter_counts_match_official():
    assert n_params(ResnetGenerator()) == 11_378_179  # resnet_9blocks, ngf 64 (methods.md §2.2)
    assert n_params(ResnetGenerator(n_blocks=6)) == 7_837_699  # resnet_6blocks
    # CycleGAN's non-antialiased generator: transposed convs have the same weight shapes
    assert n_params(ResnetGenerator(antialias=False, antialias_up=False)) == 11_378_179


def test_module_order_matches_official_indices():
    g = ResnetGenerator()
    m = g.model
    assert len(m) == 32
    assert isinstance(m[0], nn.ReflectionPad2d) and m[0].padding == (3, 3, 3, 3)
    assert isinstance(m[1], nn.Conv2d) and m[1].kernel_size == (7, 7) and m[1].out_channels == 64
    assert isinstance(m[2], nn.InstanceNorm2d) and isinstance(m[3], nn.ReLU)
    assert isinstance(m[4], nn.Conv2d) and m[4].stride == (1, 1) and (m[4].in_channels, m[4].out_channels) == (64, 128)
    assert isinstance(m[7], BlurDownsample) and isinstance(m[11], BlurDownsample)
    assert isinstance(m[8], nn.Conv2d) and (m[8].in_channels, m[8].out_channels) == (128, 256)
    assert all(isinstance(m[i], ResnetBlock) for i in range(12, 21))
    assert isinstance(m[21], BlurUpsample) and isinstance(m[25], BlurUpsample)
    assert isinstance(m[29], nn.ReflectionPad2d) and isinstance(m[30], nn.Conv2d) and isinstance(m[31], nn.Tanh)
    # non-affine IN without running stats, every conv has a bias
    for mod in g.modules():
        if isinstance(mod, nn.InstanceNorm2d):
            assert not mod.affine and not mod.track_running_stats
        if isinstance(mod, nn.Conv2d):
            assert mod.bias is not None
    assert g.feature_channels() == [3, 128, 256, 256, 256]


def test_non_antialiased_indices_shift_like_official():
    m = ResnetGenerator(antialias=False, antialias_up=False).model
    assert len(m) == 28
    assert isinstance(m[4], nn.Conv2d) and m[4].stride == (2, 2)  # layer 4 = strided conv
    assert isinstance(m[8], nn.InstanceNorm2d)  # layer 8 = IN after the 2nd strided conv
    assert isinstance(m[10], ResnetBlock)
    assert any(isinstance(x, nn.ConvTranspose2d) for x in m)


def test_nce_feature_shapes_at_256():
    torch.manual_seed(0)
    g = ResnetGenerator()
    t0 = time.perf_counter()
    with torch.no_grad():
        feats = g(torch.randn(1, 3, 256, 256), CUT_NCE_LAYERS, encode_only=True)
    elapsed = time.perf_counter() - t0
    assert [tuple(f.shape[1:]) for f in feats] == [(3, 262, 262), (128, 256, 256), (256, 128, 128),
                                                   (256, 64, 64), (256, 64, 64)]
    assert elapsed < 10  # loose; ~0.7 s on one core


def test_feature_shapes_scale_with_input_and_full_output_shape():
    torch.manual_seed(0)
    g = ResnetGenerator(ngf=8, n_blocks=6)
    x = torch.randn(2, 3, 32, 48)
    out, feats = g(x, CUT_NCE_LAYERS)
    assert out.shape == x.shape
    assert [tuple(f.shape) for f in feats] == [(2, 3, 38, 54), (2, 16, 32, 48), (2, 32, 16, 24),
                                               (2, 32, 8, 12), (2, 32, 8, 12)]
    g2 = ResnetGenerator(ngf=8, n_blocks=2, antialias=False, antialias_up=False)
    assert g2(x).shape == x.shape


# ------------------------------------------------------------------------------------- forward


def test_taps_equal_prefix_of_sequential_and_output_equals_plain_forward():
    torch.manual_seed(1)
    g = ResnetGenerator(ngf=8, n_blocks=5)
    x = torch.randn(2, 3, 24, 24)
    layers = (16, 0, 4)  # any order; returned in the requested order
    out, feats = g(x, layers)
    torch.testing.assert_close(out, g(x))
    for idx, f in zip(layers, feats):
        torch.testing.assert_close(f, g.model[: idx + 1](x))
    torch.testing.assert_close(feats[1], x.new_tensor(np.pad(x.numpy(), ((0, 0), (0, 0), (3, 3), (3, 3)), mode="reflect")))


def test_encode_only_stops_after_last_requested_layer():
    g = ResnetGenerator(ngf=8, n_blocks=9)
    calls = []
    for i, mod in enumerate(g.model):
        mod.register_forward_hook(lambda m, a, o, i=i: calls.append(i))
    feats = g(torch.randn(1, 3, 16, 16), (0, 4, 8), encode_only=True)
    assert len(feats) == 3
    assert calls == list(range(9))
    with pytest.raises(IndexError):
        g(torch.randn(1, 3, 16, 16), (40,), encode_only=True)


def test_instance_norm_makes_images_independent_within_batch():
    torch.manual_seed(2)
    g = ResnetGenerator(ngf=8, n_blocks=2)
    a, b = torch.randn(1, 3, 20, 20), torch.randn(1, 3, 20, 20)
    torch.testing.assert_close(g(torch.cat([a, b]))[:1], g(a), atol=1e-5, rtol=1e-4)


def test_output_in_tanh_range_and_range_helpers():
    torch.manual_seed(3)
    g = ResnetGenerator(ngf=8, n_blocks=2)
    init_weights(g, "normal", 1.0)  # big weights push the Tanh into saturation
    y = g(torch.randn(1, 3, 16, 16) * 50)
    assert y.abs().max() <= 1.0 and y.abs().max() > 0.9
    x01 = torch.rand(2, 3, 5, 5)
    torch.testing.assert_close(from_pm1(to_pm1(x01)), x01)
    assert to_pm1(torch.tensor([0.0, 0.5, 1.0])).tolist() == [-1.0, 0.0, 1.0]
    assert from_pm1(torch.tensor([-1.0, 0.0, 1.0])).tolist() == [0.0, 0.5, 1.0]


# ------------------------------------------------------------------------------ blur layers


def test_binomial_filters():
    torch.testing.assert_close(binomial_filter_2d(3), torch.outer(torch.tensor([1.0, 2, 1]), torch.tensor([1.0, 2, 1])) / 16)
    torch.testing.assert_close(binomial_filter_2d(4), torch.outer(torch.tensor([1.0, 3, 3, 1]), torch.tensor([1.0, 3, 3, 1])) / 64)


def _naive_blur_down(x: np.ndarray) -> np.ndarray:
    """Independent reference: reflect-pad 1, 3x3 [1,2,1]²/16 window, every 2nd pixel, loops."""
    w = np.outer([1, 2, 1], [1, 2, 1]) / 16.0
    b, c, h, wd = x.shape
    xp = np.pad(x, ((0, 0), (0, 0), (1, 1), (1, 1)), mode="reflect")
    ho, wo = (h - 1) // 2 + 1, (wd - 1) // 2 + 1
    out = np.zeros((b, c, ho, wo))
    for i in range(ho):
        for j in range(wo):
            out[:, :, i, j] = (xp[:, :, 2 * i:2 * i + 3, 2 * j:2 * j + 3] * w).sum(axis=(2, 3))
    return out


@pytest.mark.parametrize("h,w", [(8, 8), (7, 10)])
def test_blur_downsample_matches_naive_reference(h, w):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 3, h, w))
    got = BlurDownsample(3)(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(got, _naive_blur_down(x), atol=1e-12)
    const = BlurDownsample(4)(torch.full((1, 4, 9, 9), 0.7))
    assert const.shape == (1, 4, 5, 5)
    torch.testing.assert_close(const, torch.full_like(const, 0.7))


def test_blur_upsample_equals_official_transposed_conv_form():
    """Reference = the official layer written out: replicate pad 1, depthwise transposed conv with
    4·[1,3,3,1]²/64 at stride 2, padding 2, then crop [1:] and [:-1] on both spatial axes."""
    torch.manual_seed(0)
    c = 5
    x = torch.randn(2, c, 7, 9, dtype=torch.float64)
    a = torch.tensor([1.0, 3.0, 3.0, 1.0], dtype=torch.float64)
    filt = (torch.outer(a, a) / 64 * 4)[None, None].repeat(c, 1, 1, 1)
    ref = F.conv_transpose2d(F.pad(x, (1, 1, 1, 1), mode="replicate"), filt, stride=2, padding=2, groups=c)
    ref = ref[:, :, 1:, 1:][:, :, :-1, :-1]
    got = BlurUpsample(c)(x)
    assert got.shape == (2, c, 14, 18)
    torch.testing.assert_close(got, ref, atol=1e-12, rtol=0)


# ------------------------------------------------------------------------------------- init


def test_init_weights_xavier_and_normal():
    torch.manual_seed(0)
    g = ResnetGenerator(ngf=16, n_blocks=2)
    init_weights(g, "xavier", 0.02, generator=torch.Generator().manual_seed(0))
    conv = g.model[12].conv_block[1]  # a 64->64 3x3 conv inside residual block #1
    fan = conv.in_channels * 9
    expected = 0.02 * (2.0 / (fan + fan)) ** 0.5
    assert conv.weight.std().item() == pytest.approx(expected, rel=0.05)
    assert all(float(m.bias.detach().abs().max()) == 0.0 for m in g.modules() if isinstance(m, nn.Conv2d))
    init_weights(g, "normal", 0.02)
    assert conv.weight.std().item() == pytest.approx(0.02, rel=0.05)
    # seeded generator -> identical weights
    g1, g2 = ResnetGenerator(ngf=8, n_blocks=1), ResnetGenerator(ngf=8, n_blocks=1)
    init_weights(g1, generator=torch.Generator().manual_seed(5))
    init_weights(g2, generator=torch.Generator().manual_seed(5))
    for p1, p2 in zip(g1.parameters(), g2.parameters()):
        assert torch.equal(p1, p2)
    lin = nn.Sequential(nn.Linear(300, 200), nn.BatchNorm2d(4))
    init_weights(lin, "xavier", 0.02)
    assert lin[0].weight.std().item() == pytest.approx(0.02 * (2 / 500) ** 0.5, rel=0.05)
    assert lin[1].bias.abs().max() == 0 and abs(lin[1].weight.mean().item() - 1) < 0.05
    with pytest.raises(ValueError):
        init_weights(lin, "uniformish")


def test_global_residual_generator_returns_input_plus_output_on_both_paths():
    torch.manual_seed(0)
    plain = ResnetGenerator(ngf=8, n_blocks=2)
    res = ResnetGenerator(ngf=8, n_blocks=2, global_residual=True)
    res.load_state_dict(plain.state_dict())
    x = torch.rand(1, 3, 16, 16) * 2 - 1
    with torch.no_grad():
        y = plain(x)
        assert torch.allclose(res(x), x + y, atol=1e-6)
        out, feats = res(x, layers=[0, 4])
        assert torch.allclose(out, x + y, atol=1e-6)
        assert torch.equal(feats[0], plain(x, layers=[0], encode_only=True)[0])  # taps are unchanged
    with pytest.raises(ValueError, match="in_ch == out_ch"):
        ResnetGenerator(in_ch=1, out_ch=3, global_residual=True)


@pytest.mark.parametrize("name", ["cut", "fastcut", "cyclegan", "cddgan"])
def test_methods_pass_global_residual_to_their_generators(name):
    from dehazelab.methods import build_method

    kw = dict(ngf=8, ndf=8, n_blocks=1, seed=0)
    if name in ("cut", "fastcut", "cddgan"):
        kw["nce_layers"] = (0, 4)
    with torch.no_grad():
        plain, res = build_method(name, **kw), build_method(name, **kw, global_residual=True)
    assert "global_residual" not in plain.g_kwargs  # default runs record the same kwargs as before
    assert res.g_kwargs["global_residual"] is True
    gens = [m for net in res.nets.values() for m in net.modules() if isinstance(m, ResnetGenerator)]
    assert gens and all(g.global_residual for g in gens)
