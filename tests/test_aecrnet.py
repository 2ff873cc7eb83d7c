"""AECR-Net network and its FastDeconv input layer."""

import warnings

import pytest
import torch
import torch.nn.functional as F

from dehazelab.models.aecrnet import (
    OFFICIAL_KEY_MAP,
    AECRNet,
    DehazeBlock,
    Mix,
    load_official_state_dict,
)
from dehazelab.models.dfe import DFE
from dehazelab.models.fastdeconv import FastDeconv


def n_params(m):
    return sum(p.numel() for p in m.parameters())


# --- FastDeconv ---------------------------------------------------------------------------------


def sampled_patches(x, stride=3):
    """Independent im2col: rows = 3x3 patches (pad 1) taken every `stride` pixels."""
    return F.unfold(x, 3, padding=1, stride=stride).transpose(1, 2).reshape(-1, x.shape[1] * 9)


def exact_isqrt(a):
    evals, evecs = torch.linalg.eigh(a)
    return evecs @ torch.diag(evals.rsqrt()) @ evecs.T


def test_fastdeconv_parameters_and_buffers():
    m = FastDeconv(3, 3, kernel_size=3, stride=1, padding=1)
    assert n_params(m) == 84
    assert set(m.state_dict()) == {"weight", "bias", "running_mean", "running_deconv"}
    assert m.num_features == 27 and m.running_deconv.shape == (27, 27)
    # before any training step the running statistics are the identity: eval == plain conv
    x = torch.rand(2, 3, 12, 12)
    torch.testing.assert_close(m.eval()(x), F.conv2d(x, m.weight, m.bias, padding=1))


def test_fastdeconv_whitens_patches_of_known_covariance():
    g = torch.Generator().manual_seed(0)
    stds = torch.tensor([0.5, 1.0, 2.0], dtype=torch.float64)
    means = torch.tensor([0.3, -0.2, 0.5], dtype=torch.float64)
    # i.i.d. pixels: the patch covariance is diag(std_c^2, 9 taps per channel)
    x = torch.randn(4, 3, 96, 96, generator=g, dtype=torch.float64) * stds.view(1, 3, 1, 1) + means.view(1, 3, 1, 1)
    known_cov = torch.diag(stds.repeat_interleave(9) ** 2)
    m = FastDeconv(3, 3, n_iter=20, momentum=1.0).double().train()
    m(x)  # momentum 1: the running statistics are this batch's
    d = m.running_deconv
    rows = sampled_patches(x) - m.running_mean
    white = rows @ d.T
    cov_white = white.T @ white / white.shape[0]
    eye = torch.eye(27, dtype=torch.float64)
    assert (cov_white - eye).abs().max() < 1e-3
    assert (d @ known_cov @ d - eye).abs().max() < 0.2  # sampling error + 3 % zero-padded border patches
    # the official 5 Newton-Schulz steps whiten an isotropic patch covariance too ...
    x_iso = torch.randn(4, 3, 96, 96, generator=g, dtype=torch.float64)
    m5 = FastDeconv(3, 3, momentum=1.0).double().train()
    m5(x_iso)
    rows = sampled_patches(x_iso) - m5.running_mean
    white = rows @ m5.running_deconv.T
    assert (white.T @ white / white.shape[0] - eye).abs().max() < 1e-2
    # ... but not a spread-out one (eigenvalues 0.25..4): documented official behaviour
    m5(x)
    rows = sampled_patches(x) - m5.running_mean
    white = rows @ m5.running_deconv.T
    assert (white.T @ white / white.shape[0] - eye).abs().max() > 0.1


def test_fastdeconv_train_output_is_conv_with_exactly_whitened_weight():
    torch.manual_seed(0)
    x = torch.rand(3, 3, 30, 27, dtype=torch.float64)
    m = FastDeconv(3, 4, n_iter=30).double().train()
    y = m(x)
    rows = sampled_patches(x)
    mean = rows.mean(0)
    c = rows - mean
    cov = c.T @ c / c.shape[0] + 1e-5 * torch.eye(27, dtype=torch.float64)
    w = m.weight.reshape(4, 27) @ exact_isqrt(cov)
    b = m.bias - w @ mean
    torch.testing.assert_close(y, F.conv2d(x, w.reshape(4, 3, 3, 3), b, padding=1), rtol=1e-6, atol=1e-6)


def test_fastdeconv_running_stats_ema_and_eval_conv():
    torch.manual_seed(0)
    m = FastDeconv(3, 3).train()
    x1, x2 = torch.rand(2, 3, 24, 24), torch.rand(2, 3, 24, 24) * 0.5 + 0.2
    _, d1 = m.batch_statistics(x1)
    _, d2 = m.batch_statistics(x2)
    m(x1)
    mean1 = sampled_patches(x1).mean(0)
    torch.testing.assert_close(m.running_mean, 0.1 * mean1)
    torch.testing.assert_close(m.running_deconv, 0.9 * torch.eye(27) + 0.1 * d1.detach())
    m(x2)
    mean2 = sampled_patches(x2).mean(0)
    torch.testing.assert_close(m.running_mean, 0.9 * 0.1 * mean1 + 0.1 * mean2)
    torch.testing.assert_close(
        m.running_deconv, 0.81 * torch.eye(27) + 0.09 * d1.detach() + 0.1 * d2.detach()
    )
    # eval: a plain conv with the weight whitened by the running statistics; batch-independent
    m.eval()
    x = torch.rand(2, 3, 16, 20)
    w = m.weight.reshape(3, 27) @ m.running_deconv
    b = m.bias - w @ m.running_mean
    ref = F.conv2d(x, w.reshape(3, 3, 3, 3), b, padding=1)
    torch.testing.assert_close(m(x), ref, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(m(x[:1]), ref[:1], rtol=1e-5, atol=1e-6)
    before = m.running_mean.clone()
    m(x)
    assert torch.equal(before, m.running_mean)  # eval does not update


def test_fastdeconv_backward_without_warnings():
    m = FastDeconv(3, 3).train()
    x = torch.rand(2, 3, 16, 16, requires_grad=True)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the official positional addmm would raise here
        m(x).square().mean().backward()
    assert x.grad.abs().sum() > 0 and m.weight.grad.abs().sum() > 0


# --- AECR-Net -----------------------------------------------------------------------------------


def test_parameter_counts_match_the_paper_arithmetic():
    assert n_params(AECRNet()) == 2_614_229  # the paper's "2.61M"
    assert n_params(AECRNet(shared=False)) == 9_291_989  # 2,614,229 + 5 * 1,205,089 + 652,315
    assert n_params(DehazeBlock(256)) == 1_205_089
    assert n_params(DFE(256, 256)) == 652_315
    assert n_params(AECRNet(use_dfe=False)) == 2_614_229 - 652_315
    assert n_params(AECRNet(use_mix=False)) == 2_614_229 - 2
    assert n_params(AECRNet(use_fastdeconv=False)) == 2_614_229


@pytest.mark.parametrize("shared", [True, False])
def test_shape_backward_and_weight_sharing(shared):
    torch.manual_seed(0)
    net = AECRNet(ngf=16, shared=shared)
    calls = {"fa": [0] * len(net.fa), "dfe": [0] * len(net.dfe)}
    for kind in calls:
        for i, mod in enumerate(getattr(net, kind)):
            mod.register_forward_hook(lambda *_, k=kind, j=i: calls[k].__setitem__(j, calls[k][j] + 1))
    x = torch.rand(2, 3, 32, 44)
    y = net(x)
    assert y.shape == x.shape
    assert y.abs().max() <= 1  # Tanh output
    assert calls == ({"fa": [6], "dfe": [2]} if shared else {"fa": [1] * 6, "dfe": [1] * 2})
    y.mean().backward()
    missing = [n for n, p in net.named_parameters() if p.grad is None or not torch.isfinite(p.grad).all()]
    assert not missing


def test_sizes_not_divisible_by_four_raise():
    net = AECRNet(ngf=16)
    for h, w in [(30, 32), (32, 34)]:
        with pytest.raises(ValueError, match="divisible by 4"):
            net(torch.rand(1, 3, h, w))
    with pytest.raises(ValueError):
        net(torch.rand(1, 1, 32, 32))


def _manual_forward(net, x, use_dfe=True, use_mix=True):
    """Wiring of the official Dehaze.forward, written out from the methods table."""
    d1 = net.down1(net.deconv(x))
    d2 = net.down2(d1)
    d3 = net.down3(d2)
    y = d3
    for _ in range(6):
        y = net.fa[0](y)
    if use_dfe:
        y = net.dfe[0](net.dfe[0](y))
    if use_mix:
        a1 = torch.sigmoid(net.mix1.w)
        y = a1 * d3 + (1 - a1) * y
    u = net.up1(y)
    if use_mix:
        a2 = torch.sigmoid(net.mix2.w)
        u = a2 * d2 + (1 - a2) * u
    return net.up3(net.up2(u))


@pytest.mark.parametrize("use_dfe,use_mix", [(True, True), (False, True), (True, False), (False, False)])
def test_forward_wiring_and_ablation_switches(use_dfe, use_mix):
    torch.manual_seed(0)
    net = AECRNet(ngf=16, use_dfe=use_dfe, use_mix=use_mix).eval()
    assert hasattr(net, "mix1") == use_mix and hasattr(net, "dfe") == use_dfe
    if use_mix:
        assert net.mix1.w.item() == -1.0 and net.mix2.w.item() == pytest.approx(-0.6)
        with torch.no_grad():
            net.mix1.w.fill_(0.7)
            net.mix2.w.fill_(-2.0)
    x = torch.rand(2, 3, 16, 24)
    with torch.no_grad():
        torch.testing.assert_close(net(x), _manual_forward(net, x, use_dfe, use_mix))


def test_mix_is_sigmoid_weighted_skip():
    m = Mix(m=-1.0)
    a, b = torch.full((1, 2, 2, 2), 3.0), torch.full((1, 2, 2, 2), -1.0)
    s = 1 / (1 + torch.exp(torch.tensor(1.0)))
    torch.testing.assert_close(m(a, b), (3.0 * s - (1 - s)).expand(1, 2, 2, 2))


def test_dfe_backends_give_the_same_network_output():
    torch.manual_seed(0)
    net = AECRNet(ngf=16, dfe_backend="torchvision").eval()
    with torch.no_grad():
        net.dfe[0].offset_mask.weight.normal_(0, 0.05)
        net.dfe[0].offset_mask.bias.normal_(0, 0.5)
    x = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        ref = net(x)
        net.set_dfe_backend("grid_sample")
        got = net(x)
    assert net.dfe_backend == "grid_sample"
    assert (got - ref).norm() / ref.norm() < 1e-4


# Key names of the released checkpoint: the official Dehaze's own module names, CharlesShang's DCN
# inside DCNBlock, and mix4/mix5 (GlassyWu/AECR-Net#23). Written out here, not derived from the map.
OFFICIAL_RENAMES = {
    "block.": "fa.0.",
    "dcn_block.dcn.conv_offset_mask.weight": "dfe.0.offset_mask.weight",
    "dcn_block.dcn.conv_offset_mask.bias": "dfe.0.offset_mask.bias",
    "dcn_block.dcn.weight": "dfe.0.weight",
    "dcn_block.dcn.bias": "dfe.0.bias",
    "mix4.w": "mix1.w",
    "mix5.w": "mix2.w",
}
OFFICIAL_KEYS = (
    ["deconv.weight", "deconv.bias", "deconv.running_mean", "deconv.running_deconv"]
    + ["down1.1.weight", "down1.1.bias", "down2.0.weight", "down2.0.bias", "down3.0.weight", "down3.0.bias"]
    + [f"block.{n}" for n in ("conv1.weight", "conv1.bias", "conv2.weight", "conv2.bias")]
    + [f"block.calayer.ca.{i}.{p}" for i in (0, 2) for p in ("weight", "bias")]
    + [f"block.palayer.pa.{i}.{p}" for i in (0, 2) for p in ("weight", "bias")]
    + ["up1.0.weight", "up1.0.bias", "up2.0.weight", "up2.0.bias", "up3.1.weight", "up3.1.bias"]
    + ["dcn_block.dcn.weight", "dcn_block.dcn.bias"]
    + ["dcn_block.dcn.conv_offset_mask.weight", "dcn_block.dcn.conv_offset_mask.bias", "mix4.w", "mix5.w"]
)


def _ours(official_key):
    for old, new in OFFICIAL_RENAMES.items():
        if official_key.startswith(old):
            return new + official_key[len(old):]
    return official_key


def test_official_key_names_cover_our_state_dict():
    sd = AECRNet().state_dict()
    assert sorted(_ours(k) for k in OFFICIAL_KEYS) == sorted(sd)
    assert sd["dfe.0.offset_mask.weight"].shape == (27, 256, 3, 3)
    assert set(OFFICIAL_KEY_MAP) >= {"mix4.w", "mix5.w", "dcn_block.dcn.weight", "dcn_block.dcn.bias"}


def test_load_official_state_dict_round_trip():
    torch.manual_seed(0)
    src = AECRNet(ngf=16).train()
    with torch.no_grad():
        src.dfe[0].offset_mask.weight.normal_(0, 0.05)
        src.mix1.w.fill_(0.3)
    src(torch.rand(4, 3, 16, 16))  # non-trivial FastDeconv running statistics
    src.eval()
    ours = src.state_dict()
    inverse = {_ours(k): k for k in OFFICIAL_KEYS}
    official = {"module." + inverse[k]: v.clone() for k, v in ours.items()}  # DataParallel-style
    assert set(official) == {"module." + k for k in OFFICIAL_KEYS}

    torch.manual_seed(1)
    dst = AECRNet(ngf=16).eval()
    x = torch.rand(2, 3, 16, 20)
    with torch.no_grad():
        assert not torch.allclose(dst(x), src(x))
        load_official_state_dict(dst, {"model": official, "step": 5})
        torch.testing.assert_close(dst(x), src(x), rtol=0, atol=0)
    with pytest.raises(ValueError):
        load_official_state_dict(AECRNet(ngf=16, shared=False), official)


def test_global_residual_adds_the_input_to_the_same_network_output():
    from dehazelab.models.aecrnet import AECRNet

    torch.manual_seed(0)
    plain = AECRNet(ngf=8, dfe_backend="grid_sample")
    res = AECRNet(ngf=8, dfe_backend="grid_sample", global_residual=True)
    res.load_state_dict(plain.state_dict())  # the switch adds no parameters
    x = torch.rand(2, 3, 16, 20)
    plain.eval(), res.eval()
    with torch.no_grad():
        assert torch.allclose(res(x), x + plain(x), atol=1e-6)
        assert not torch.allclose(res(x), plain(x))
    assert AECRNet(ngf=8).global_residual is False  # the paper's model stays the default
