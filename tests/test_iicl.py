"""IICL reconstruction: PRM → ARM wrapper, stages, patch selection, intra contrast, total loss."""

import copy
import math

import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from dehazelab.losses.cr import ContrastiveRegularization
from dehazelab.losses.iicl import (
    IICLLoss,
    IntraContrast,
    extract_patches,
    patch_scores,
    select_bright_dark_patches,
)
from dehazelab.models.iicl import IICLNet, build_iicl


class TinyBackbone(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 4, 3, padding=1)
        self.conv2 = nn.Conv2d(4, 3, 3, padding=1)

    def forward(self, x):
        return torch.sigmoid(self.conv2(torch.relu(self.conv1(x))))


def _tiny_cr():
    torch.manual_seed(3)
    stack = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU())
    return ContrastiveRegularization(vgg=stack, weights=(1.0,), layers=((0, 2),))


def _batch(b=2, h=32, w=32, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(b, 3, h, w, generator=g), torch.rand(b, 3, h, w, generator=g)


@pytest.fixture(scope="module")
def random_vgg():
    from dehazelab.models.vgg import vgg19_features

    return vgg19_features(weights="random", seed=0)[0]


# --- the wrapper ---------------------------------------------------------------------------
def test_forward_shapes_and_attached_parts():
    torch.manual_seed(0)
    net = IICLNet(TinyBackbone(), prm_width=8)
    hazy, _ = _batch()
    out = net(hazy)
    assert out.shape == hazy.shape
    assert set(out.iicl) == {"j0", "t", "A", "stage"} and out.iicl["stage"] == "joint"
    assert out.iicl["j0"].shape == hazy.shape
    assert out.iicl["t"].shape == (2, 1, 32, 32) and out.iicl["A"].shape == (2, 3)
    parts = net.forward_all(hazy)
    torch.testing.assert_close(parts["out"], out, rtol=0, atol=0)
    torch.testing.assert_close(parts["j0"], out.iicl["j0"], rtol=0, atol=0)


def test_concat_adapter_starts_as_prestored():
    torch.manual_seed(0)
    concat = IICLNet(TinyBackbone(), prm_width=8, arm_input="concat")
    pre = IICLNet(TinyBackbone(), prm_width=8, arm_input="prestored")
    pre.load_state_dict({k: v for k, v in concat.state_dict().items() if not k.startswith("adapter.")})
    assert sum(p.numel() for p in concat.adapter.parameters()) == 6 * 3 + 3
    hazy, _ = _batch()
    torch.testing.assert_close(concat(hazy), pre(hazy), atol=1e-6, rtol=0)


@pytest.mark.parametrize("j0_clamp", [True, False])
def test_arm_sees_j0_clamped_or_raw(j0_clamp):
    torch.manual_seed(0)
    net = IICLNet(nn.Identity(), prm_width=8, arm_input="prestored", j0_clamp=j0_clamp)
    with torch.no_grad():  # push t to t_min so the raw J0 leaves [0, 1]
        net.prm.t_head.bias.fill_(-20.0)
    hazy = torch.rand(2, 3, 16, 16)
    parts = net.forward_all(hazy)
    j0 = parts["j0"]
    assert j0.min() < 0 or j0.max() > 1
    torch.testing.assert_close(parts["out"], j0.clamp(0, 1) if j0_clamp else j0, rtol=0, atol=0)


def test_without_prm_the_wrapper_is_the_backbone():
    torch.manual_seed(0)
    bb = TinyBackbone()
    net = IICLNet(bb, use_prm=False)
    assert net.prm is None and net.adapter is None
    assert sum(p.numel() for p in net.parameters()) == sum(p.numel() for p in bb.parameters())
    hazy, _ = _batch()
    out = net(hazy)
    torch.testing.assert_close(out, bb(hazy), rtol=0, atol=0)
    assert out.iicl["j0"] is None
    with pytest.raises(ValueError):
        net.set_stage("prm")
    passthrough = IICLNet(nn.Identity(), use_prm=False)(hazy)
    assert passthrough is not hazy and not hasattr(hazy, "iicl")


def test_bad_arguments():
    with pytest.raises(ValueError):
        IICLNet(TinyBackbone(), arm_input="sum")
    with pytest.raises(ValueError):
        IICLNet(TinyBackbone()).set_stage("warmup")
    with pytest.raises(ValueError):
        build_iicl(backbone="ffa")


# --- stages --------------------------------------------------------------------------------
def test_prm_stage_trains_only_the_prm_and_restores_flags():
    torch.manual_seed(0)
    net = IICLNet(TinyBackbone(), prm_width=8)
    net.backbone.conv1.bias.requires_grad_(False)  # a user's own freeze must survive the stages
    net.set_stage("prm")
    assert all(not p.requires_grad for _, p in net.arm_parameters())
    hazy, clear = _batch()
    out = net(hazy)
    torch.testing.assert_close(out, out.iicl["j0"], rtol=0, atol=0)  # warm-up output is J0
    crit = IICLLoss(cr=_tiny_cr(), intra=IntraContrast(embed="pixel", patch=8, k=2))
    loss, logs = crit(out, clear, hazy)
    assert set(logs) == {"prm_l1", "loss"}
    torch.testing.assert_close(loss, F.l1_loss(out.iicl["j0"], clear))
    loss.backward()
    for _, p in net.arm_parameters():
        assert p.grad is None
    for name, p in net.prm.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
    assert net.prm.t_head.weight.grad.abs().sum() > 0

    net.set_stage("joint")
    flags = {n: p.requires_grad for n, p in net.arm_parameters()}
    assert flags.pop("backbone.conv1.bias") is False
    assert all(flags.values())


# --- patch selection ------------------------------------------------------------------------
def _constructed_image():
    """80x80 noisy grey (5x5 grid of 16-px cells) with planted 16x16 squares.

    Bright: 0.95 at (16,16), 0.75 at (48,48) (interior, not touching, so the dark channel's minimum
    filter erodes both alike); dark: 0.02 at (0,64), 0.08 at (64,0); yellow (1,1,0) at (48,0):
    luminance 0.886 (bright) but dark channel 0 (darkest).
    """
    g = torch.Generator().manual_seed(0)
    img = 0.5 + 0.04 * (torch.rand(3, 80, 80, generator=g) - 0.5)
    for (y, x), v in {(16, 16): 0.95, (48, 48): 0.75, (0, 64): 0.02, (64, 0): 0.08}.items():
        img[:, y:y + 16, x:x + 16] = v
    img[:, 48:64, 0:16] = torch.tensor([1.0, 1.0, 0.0]).view(3, 1, 1)
    return img


def test_selection_by_luminance_finds_the_planted_squares():
    img = _constructed_image()
    hazy = torch.stack((img, img.flip(-1)))  # second image: mirrored layout, x -> 64 - x
    bright, dark = select_bright_dark_patches(hazy, patch=16, k=2, by="luminance")
    assert bright.dtype == torch.long and bright.shape == dark.shape == (2, 2, 2)
    assert bright[0].tolist() == [[16, 16], [48, 0]]  # 0.95, then yellow (0.886) before 0.75
    assert dark[0].tolist() == [[0, 64], [64, 0]]
    assert bright[1].tolist() == [[16, 48], [48, 64]] and dark[1].tolist() == [[0, 0], [64, 64]]


def test_selection_by_dark_channel_treats_saturated_colour_as_dark():
    hazy = _constructed_image()[None]
    bright, dark = select_bright_dark_patches(hazy, patch=16, k=2, by="dark_channel")
    assert bright[0].tolist() == [[16, 16], [48, 48]]
    assert dark[0].tolist() == [[48, 0], [0, 64]]  # yellow (dark channel 0) before 0.02


def test_dark_channel_scores_match_dcp():
    dcp = pytest.importorskip("dehazelab.models.dcp")
    img = torch.rand(2, 3, 32, 48, generator=torch.Generator().manual_seed(2))
    scores = patch_scores(img, patch=16, by="dark_channel", dc_window=7)
    assert scores.shape == (2, 2, 3)
    for b in range(2):
        dark = dcp.dark_channel(img[b].permute(1, 2, 0).numpy(), 7)
        ref = dark.reshape(2, 16, 3, 16).mean(axis=(1, 3))
        np.testing.assert_allclose(scores[b].numpy(), ref, atol=1e-6)


def test_ties_are_deterministic_and_sets_disjoint():
    hazy = torch.full((1, 3, 32, 32), 0.5)
    bright, dark = select_bright_dark_patches(hazy, patch=8, k=3)
    assert bright[0].tolist() == [[0, 0], [0, 8], [0, 16]]
    assert dark[0].tolist() == [[0, 24], [8, 0], [8, 8]]
    hazy = torch.rand(3, 3, 40, 40, generator=torch.Generator().manual_seed(5))
    b1, d1 = select_bright_dark_patches(hazy, patch=8, k=12, stride=4)
    b2, d2 = select_bright_dark_patches(hazy, patch=8, k=12, stride=4)
    assert torch.equal(b1, b2) and torch.equal(d1, d2)
    assert (b1 % 4 == 0).all() and b1.max() <= 32
    for i in range(3):
        assert not set(map(tuple, b1[i].tolist())) & set(map(tuple, d1[i].tolist()))


def test_selection_needs_enough_patches():
    with pytest.raises(ValueError):
        select_bright_dark_patches(torch.rand(1, 3, 32, 32), patch=16, k=3)


def test_extract_patches_matches_slicing_and_is_differentiable():
    x = torch.rand(2, 3, 20, 24, requires_grad=True)
    coords = torch.tensor([[[0, 0], [4, 16]], [[12, 3], [0, 8]]])
    crops = extract_patches(x, coords, 8)
    assert crops.shape == (2, 2, 3, 8, 8)
    for b in range(2):
        for j in range(2):
            y, xx = coords[b, j].tolist()
            assert torch.equal(crops[b, j], x[b, :, y:y + 8, xx:xx + 8])
    crops.sum().backward()
    assert x.grad.sum().item() == 2 * 2 * 3 * 64 and x.grad.max().item() == 1.0
    with pytest.raises(ValueError):
        extract_patches(x, torch.tensor([[[16, 0]], [[0, 0]]]), 8)


# --- intra contrast -------------------------------------------------------------------------
def _reference_intra_pixel(out, clear, hazy, bright, dark, p, tau, negatives):
    """Independent float64 loop implementation of the documented InfoNCE."""
    def vec(img, b, yx):
        y, x = yx
        v = img[b, :, y:y + p, x:x + p].double().flatten()
        return v / v.norm()

    total, n = 0.0, 0
    for b in range(out.shape[0]):
        groups = [bright[b].tolist(), dark[b].tolist()]
        for g in (0, 1):
            for yx in groups[g]:
                a = vec(out, b, yx)
                negs = [vec(hazy, b, yx)] + [vec(hazy if negatives == "hazy" else clear, b, o) for o in groups[1 - g]]
                logits = [float(a @ vec(clear, b, yx)) / tau] + [float(a @ v) / tau for v in negs]
                m = max(logits)
                total += -(logits[0] - (m + math.log(sum(math.exp(z - m) for z in logits))))
                n += 1
    return total / n


@pytest.mark.parametrize("negatives", ["hazy", "clear"])
def test_intra_pixel_matches_reference(negatives):
    g = torch.Generator().manual_seed(7)
    out, clear, hazy = (torch.rand(2, 3, 32, 32, generator=g) for _ in range(3))
    intra = IntraContrast(embed="pixel", tau=0.1, patch=8, k=3, negatives=negatives)
    bright, dark = select_bright_dark_patches(hazy, patch=8, k=3)
    got = intra(out, clear, hazy)
    ref = _reference_intra_pixel(out, clear, hazy, bright, dark, 8, 0.1, negatives)
    assert got.item() == pytest.approx(ref, rel=1e-5)


def test_intra_prefers_the_clear_image():
    hazy = _constructed_image()[None]
    clear = torch.rand(1, 3, 80, 80, generator=torch.Generator().manual_seed(1))
    intra = IntraContrast(embed="pixel", patch=16, k=2)
    assert intra(clear, clear, hazy) < intra(hazy, clear, hazy)


def test_intra_vgg_gradient_only_through_the_anchor(random_vgg):
    g = torch.Generator().manual_seed(0)
    out, clear, hazy = (torch.rand(2, 3, 32, 32, generator=g).requires_grad_(True) for _ in range(3))
    intra = IntraContrast(embed="vgg", vgg=random_vgg, layer="relu3_1", patch=8, k=2)
    loss = intra(out, clear, hazy)
    assert torch.isfinite(loss)
    loss.backward()
    assert out.grad is not None and torch.isfinite(out.grad).all() and out.grad.abs().sum() > 0
    assert clear.grad is None and hazy.grad is None
    assert all(p.grad is None and not p.requires_grad for p in intra.encoder.parameters())


# --- total loss -----------------------------------------------------------------------------
def test_joint_loss_is_the_documented_sum_and_prm_gets_gradients():
    torch.manual_seed(0)
    net = IICLNet(TinyBackbone(), prm_width=8)
    hazy, clear = _batch()
    cr, intra = _tiny_cr(), IntraContrast(embed="pixel", patch=8, k=2)
    crit = IICLLoss(cr=cr, intra=intra, beta_inter=0.3, beta_intra=0.2, lambda_prm=0.5)
    out = net(hazy)
    loss, logs = crit(out, clear, hazy, {})
    assert set(logs) == {"prm_l1", "l1", "cr", "intra", "loss"}
    j0 = out.iicl["j0"]
    with torch.no_grad():
        negs = torch.stack((hazy, j0.clamp(0, 1)), dim=1)
        expected = (0.5 * F.l1_loss(j0, clear) + F.l1_loss(out, clear) + 0.3 * cr(out, clear, negs)
                    + 0.2 * intra(out, clear, hazy))
    assert loss.item() == pytest.approx(expected.item(), rel=1e-6)
    assert logs["loss"] == pytest.approx(loss.item())
    loss.backward()
    for name, p in net.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
    # the PRM term alone reaches the PRM (not only through the ARM)
    net.zero_grad()
    only_prm = IICLLoss(beta_inter=0, beta_intra=0, lambda_prm=1.0)
    out = net(hazy)
    (only_prm(out, clear, hazy)[0] - F.l1_loss(out, clear)).backward()
    assert net.prm.t_head.weight.grad.abs().sum() > 0
    assert all(p.grad is None or p.grad.abs().sum() == 0 for _, p in net.arm_parameters())


def test_loss_accepts_forward_all_dict_and_rejects_lost_parts():
    torch.manual_seed(0)
    net = IICLNet(TinyBackbone(), prm_width=8)
    hazy, clear = _batch()
    crit = IICLLoss(cr=_tiny_cr(), intra=IntraContrast(embed="pixel", patch=8, k=2))
    a, _ = crit(net(hazy), clear, hazy)
    b, _ = crit(net.forward_all(hazy), clear, hazy)
    assert a.item() == pytest.approx(b.item(), rel=1e-6)
    with pytest.raises(ValueError, match="plain tensor"):
        crit(net(hazy).clamp(0, 1), clear, hazy)
    # a plain backbone works when there is no PRM term to compute
    plain = IICLLoss(cr=_tiny_cr(), intra=IntraContrast(embed="pixel", patch=8, k=2), lambda_prm=0)
    loss, logs = plain(TinyBackbone()(hazy), clear, hazy)
    assert torch.isfinite(loss) and "prm_l1" not in logs


def test_loss_default_builds_one_shared_vgg(random_vgg):
    crit = IICLLoss(vgg=random_vgg, intra_kwargs={"patch": 8, "k": 2})
    assert crit.intra.encoder[0].weight is crit.cr.slices[0][0].weight
    net = IICLNet(TinyBackbone(), prm_width=8)
    hazy, clear = _batch()
    loss, logs = crit(net(hazy), clear, hazy)
    assert torch.isfinite(loss) and set(logs) == {"prm_l1", "l1", "cr", "intra", "loss"}


def test_works_on_a_deep_copy_through_the_trainer_timer():
    train = pytest.importorskip("dehazelab.train.paired")
    torch.manual_seed(0)
    net = IICLNet(TinyBackbone(), prm_width=8)
    hazy, clear = _batch()
    crit = IICLLoss(cr=_tiny_cr(), intra=IntraContrast(embed="pixel", patch=8, k=2))
    assert copy.deepcopy(net)(hazy).iicl["j0"] is not None
    secs = train.measure_step_time(net, {"hazy": hazy, "clear": clear}, loss_fn=crit, device="cpu", steps=1, warmup=0)
    assert secs > 0


# --- real backbones -------------------------------------------------------------------------
@pytest.mark.parametrize("name,kwargs", [("aodnet", {}), ("aecrnet", {"ngf": 8})])
def test_real_backbones_plug_in(name, kwargs):
    pytest.importorskip(f"dehazelab.models.{name}")
    torch.manual_seed(0)
    net = build_iicl(backbone=name, backbone_kwargs=kwargs, prm_width=8)
    hazy, clear = _batch()
    out = net(hazy)
    assert out.shape == hazy.shape
    crit = IICLLoss(cr=_tiny_cr(), intra=IntraContrast(embed="pixel", patch=8, k=2))
    loss, _ = crit(out, clear, hazy)
    loss.backward()
    assert torch.isfinite(loss)
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in net.prm.parameters())
    bare = build_iicl(backbone=name, backbone_kwargs=kwargs, use_prm=False)
    assert type(bare.backbone).__name__ == type(net.backbone).__name__
