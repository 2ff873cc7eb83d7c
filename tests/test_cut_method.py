"""CUT / FastCUT method object: update order, identity NCE, flip equivariance, λ's, init, state.

Tiny networks (ngf 8, 2 residual blocks, 32² images, 16 patches); one CPU thread.
"""

from __future__ import annotations

import copy
import math

import pytest
import torch

from dehazelab.losses.gan import generator_loss
from dehazelab.methods import build_method
from dehazelab.methods.cut import CUT, CUT_MODES
from dehazelab.models.translator import TRANSLATOR_BUILDERS
from dehazelab.train.checkpoint import build_model, check_plain

TINY = {"ngf": 8, "n_blocks": 2, "ndf": 8, "nce_layers": (0, 4, 8, 12, 13), "num_patches": 16, "netF_nc": 16}


def batch(seed=0, b=1, size=32):
    g = torch.Generator().manual_seed(seed)
    return {"hazy": torch.rand(b, 3, size, size, generator=g), "clear": torch.rand(b, 3, size, size, generator=g)}


def record_steps(method):
    """Names of the optimisers in the order their step() runs."""
    order = []
    for name, opt in method.optimizers.items():
        opt.register_step_pre_hook(lambda *_a, name=name: order.append(name))
    return order


@pytest.mark.parametrize("mode", ["cut", "fastcut"])
def test_train_step_returns_finite_logs(mode):
    m = build_method(mode, **TINY)
    for step in range(2):
        logs = m.train_step(batch(step), step)
        assert all(math.isfinite(v) for v in logs.values())
    expected = {"D", "G_GAN", "NCE", "G", "gnorm_D", "gnorm_G", "stat_flipped"}
    assert set(logs) == (expected | {"NCE_Y"} if mode == "cut" else expected)


def test_mode_settings_match_the_paper():
    assert CUT_MODES["cut"] == {"lambda_NCE": 1.0, "nce_idt": True, "flip_equivariance": False}
    assert CUT_MODES["fastcut"] == {"lambda_NCE": 10.0, "nce_idt": False, "flip_equivariance": True}
    m = CUT("fastcut", **TINY, lambda_NCE=1.0)  # an override wins over the mode default
    assert (m.lambda_NCE, m.nce_idt, m.flip_equivariance) == (1.0, False, True)
    assert m.pools == {}  # CUT forces pool_size 0: no image history
    with pytest.raises(ValueError, match="mode"):
        CUT("sincut", **TINY)


def test_update_order_d_then_g_then_f_and_g_loss_uses_the_updated_d():
    m = build_method("cut", **TINY)
    order = record_steps(m)
    G0 = copy.deepcopy(m.nets["G"])
    snap = {}

    def after_d_step(*_a):
        snap["D"] = copy.deepcopy(m.nets["D"])
        snap["D_grads"] = [p.grad.clone() for p in m.nets["D"].parameters()]

    m.optimizers["D"].register_step_post_hook(after_d_step)
    bt = batch(1)
    logs = m.train_step(bt, 0)
    assert order == ["D", "G", "F"]
    # the G+F step ran with D frozen: D's gradients are still those of its own step
    assert all(torch.equal(p.grad, g) for p, g in zip(m.nets["D"].parameters(), snap["D_grads"]))
    assert all(p.requires_grad for p in m.nets["D"].parameters())  # unfrozen again afterwards
    # the generator's GAN term is computed with the D *after* its update
    with torch.no_grad():
        fake_B = G0(bt["hazy"] * 2 - 1)
        want = float(generator_loss(snap["D"](fake_B)))
        stale = float(generator_loss(build_method("cut", **TINY).nets["D"](fake_B)))
    assert logs["G_GAN"] == pytest.approx(want, rel=1e-4)
    assert abs(stale - want) > 1e-4 * abs(want)  # ... and that differs from the D before the step


def test_cut_uses_identity_nce_and_fastcut_does_not():
    inputs = {}
    for mode in ("cut", "fastcut"):
        m = build_method(mode, **TINY, flip_equivariance=False)
        calls = []
        m.nets["G"].register_forward_pre_hook(lambda _mod, args: calls.append(args[0].detach().clone()))
        bt = batch(2, b=2)
        logs = m.train_step(bt, 0)
        inputs[mode] = calls[0]
        if mode == "cut":
            assert torch.equal(calls[0], torch.cat([bt["hazy"], bt["clear"]]) * 2 - 1)  # G on cat(real_A, real_B)
            assert logs["G"] == pytest.approx(logs["G_GAN"] + 0.5 * (logs["NCE"] + logs["NCE_Y"]), rel=1e-5)
            assert len(calls) == 2  # main forward + one batched query pass (keys reused)
        else:
            assert torch.equal(calls[0], bt["hazy"] * 2 - 1)  # G on real_A only
            assert "NCE_Y" not in logs
            assert logs["G"] == pytest.approx(logs["G_GAN"] + logs["NCE"], rel=1e-5)
    assert inputs["cut"].shape[0] == 2 * inputs["fastcut"].shape[0]


def test_lambda_nce_scales_the_nce_term():
    logs = {}
    for lam in (1.0, 10.0):
        m = CUT("fastcut", **TINY, lambda_NCE=lam, flip_equivariance=False)
        torch.manual_seed(5)  # same patch positions
        logs[lam] = m.train_step(batch(3), 0)
    assert logs[10.0]["NCE"] == pytest.approx(10 * logs[1.0]["NCE"], rel=1e-5)
    assert logs[10.0]["D"] == logs[1.0]["D"]  # the D step comes first and does not see λ


def test_fastcut_flip_equivariance():
    m = build_method("fastcut", **TINY)
    calls = []
    m.nets["G"].register_forward_pre_hook(lambda _mod, args: calls.append(args[0].detach().clone()))
    torch.manual_seed(0)
    seen = set()
    for step in range(8):
        calls.clear()
        bt = batch(10 + step)
        real_A = bt["hazy"] * 2 - 1
        logs = m.train_step(bt, step)
        flipped = bool(logs["stat_flipped"])
        seen.add(flipped)
        assert torch.equal(calls[0], real_A.flip(3) if flipped else real_A)
        if flipped:  # the keys come from the *unflipped* input (an extra encoder pass)
            assert any(torch.equal(c, real_A) for c in calls[1:])
            assert len(calls) == 3
        else:
            assert len(calls) == 2
    assert seen == {True, False}


def test_flipped_steps_ask_patchnce_to_flip_the_queries_back():
    m = build_method("fastcut", **TINY)
    seen = []
    original = m.nce.from_features

    def spy(feat_q, feat_k, **kw):
        seen.append(kw.get("flipped", False))
        return original(feat_q, feat_k, **kw)

    m.nce.from_features = spy
    torch.manual_seed(2)
    flags = []
    for step in range(6):
        flags.append(bool(m.train_step(batch(step), step)["stat_flipped"]))
    assert seen == flags and set(flags) == {True, False}


def test_weights_are_xavier_002_and_seeded():
    m = build_method("cut", **TINY, seed=3)
    for name, net in m.nets.items():
        for mod in net.modules():
            if isinstance(mod, (torch.nn.Conv2d, torch.nn.Linear)):
                assert torch.count_nonzero(mod.bias) == 0, name
    conv = m.nets["G"].model[12].conv_block[1]  # a 32->32 3x3 conv of a residual block
    fan_in = fan_out = 32 * 9
    expected_std = 0.02 * math.sqrt(2.0 / (fan_in + fan_out))
    assert float(conv.weight.detach().std()) == pytest.approx(expected_std, rel=0.1)
    again = build_method("cut", **TINY, seed=3)
    assert torch.equal(conv.weight, again.nets["G"].model[12].conv_block[1].weight)
    assert not torch.equal(conv.weight, build_method("cut", **TINY, seed=4).nets["G"].model[12].conv_block[1].weight)


def test_state_dict_round_trip_and_plain():
    m = build_method("cut", **TINY)
    m.train_step(batch(0), 0)
    state = m.state_dict()
    check_plain(state)
    other = build_method("cut", **TINY, seed=9)
    other.load_state_dict(state)
    for k in m.nets:
        for (n1, a), (n2, b) in zip(m.nets[k].state_dict().items(), other.nets[k].state_dict().items()):
            assert n1 == n2 and torch.equal(a, b)
    # the optimiser moments came along: the next step is identical
    torch.manual_seed(7)
    la = m.train_step(batch(1), 1)
    torch.manual_seed(7)
    lb = other.train_step(batch(1), 1)
    assert la == lb
    with pytest.raises(ValueError):
        build_method("fastcut", **TINY).load_state_dict(state)


@pytest.mark.parametrize("mode", ["cut", "fastcut"])
def test_model_spec_rebuilds_the_dehazer(mode):
    m = build_method(mode, **TINY)
    spec = m.model_spec()
    assert spec["model"] == mode and spec["kwargs"]["antialias"] is True
    rebuilt = build_model(spec, TRANSLATOR_BUILDERS)
    rebuilt.load_state_dict(m.dehazer().state_dict())
    x = torch.rand(1, 3, 28, 36)
    with torch.no_grad():
        assert torch.equal(rebuilt(x), m.dehazer()(x))
        assert float(rebuilt(x).min()) >= 0 and float(rebuilt(x).max()) <= 1


def test_nonfinite_loss_raises_before_any_update():
    from dehazelab.methods import NonFiniteLoss

    m = build_method("fastcut", **TINY)
    before = {k: v.clone() for k, v in m.nets["D"].state_dict().items()}
    bt = batch(0)
    bt["hazy"][0, 0, 0, 0] = float("nan")
    with pytest.raises(NonFiniteLoss, match="loss D"):
        m.train_step(bt, 0)
    assert all(torch.equal(v, m.nets["D"].state_dict()[k]) for k, v in before.items())
