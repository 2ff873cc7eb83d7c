"""CycleGAN method object: update order, loss terms against an independent computation, pools, state.

Tiny networks (ngf 8, 2 residual blocks, 32² images); one CPU thread.
"""

from __future__ import annotations

import copy
import math

import pytest
import torch
import torch.nn.functional as F

from dehazelab.losses.gan import discriminator_loss, generator_loss
from dehazelab.methods import build_method
from dehazelab.models.translator import TRANSLATOR_BUILDERS
from dehazelab.train.checkpoint import build_model, check_plain

TINY = {"ngf": 8, "n_blocks": 2, "ndf": 8}


def batch(seed=0, b=1, size=32):
    g = torch.Generator().manual_seed(seed)
    return {"hazy": torch.rand(b, 3, size, size, generator=g), "clear": torch.rand(b, 3, size, size, generator=g)}


def test_defaults_follow_the_official_code():
    m = build_method("cyclegan", **TINY)
    assert (m.lambda_A, m.lambda_B, m.lambda_identity, m.pool_size, m.gan_mode) == (10.0, 10.0, 0.5, 50, "lsgan")
    assert m.generator() is m.nets["G_A"]
    assert m.nets["G_A"].antialias is False and m.nets["D_A"].antialias is False
    assert m.optimizers["G"].defaults["betas"] == (0.5, 0.999) and m.optimizers["G"].defaults["lr"] == 2e-4
    # one optimiser over both generators, one over both discriminators
    g_params = {id(p) for g in m.optimizers["G"].param_groups for p in g["params"]}
    assert g_params == {id(p) for k in ("G_A", "G_B") for p in m.nets[k].parameters()}
    # N(0, 0.02) init, zero biases
    w = m.nets["G_A"].model[1].weight
    assert float(w.detach().std()) == pytest.approx(0.02, rel=0.1) and abs(float(w.detach().mean())) < 0.005
    assert torch.count_nonzero(m.nets["G_A"].model[1].bias) == 0


def test_train_step_finite_logs_and_update_order():
    m = build_method("cyclegan", **TINY)
    order = []
    d_grads_during_g_step = []

    def before_g(*_a):
        order.append("G")
        d_grads_during_g_step.append([p.grad for k in ("D_A", "D_B") for p in m.nets[k].parameters()])

    m.optimizers["G"].register_step_pre_hook(before_g)
    m.optimizers["D"].register_step_pre_hook(lambda *_a: order.append("D"))
    logs = m.train_step(batch(0), 0)
    assert order == ["G", "D"]
    assert set(logs) == {"G_A", "G_B", "cycle_A", "cycle_B", "idt_A", "idt_B", "G", "D_A", "D_B", "gnorm_G", "gnorm_D"}
    assert all(math.isfinite(v) for v in logs.values())
    # discriminators were frozen in the generator step: no gradient reached them
    assert all(g is None for g in d_grads_during_g_step[0])
    assert all(p.requires_grad for k in ("D_A", "D_B") for p in m.nets[k].parameters())


def test_generator_losses_match_an_independent_computation():
    m = build_method("cyclegan", **TINY)
    nets0 = {k: copy.deepcopy(v) for k, v in m.nets.items()}
    bt = batch(1)
    logs = m.train_step(bt, 0)
    a, b = bt["hazy"] * 2 - 1, bt["clear"] * 2 - 1
    with torch.no_grad():
        GA, GB, DA, DB = (nets0[k] for k in ("G_A", "G_B", "D_A", "D_B"))
        fake_B, fake_A = GA(a), GB(b)
        want = {
            "G_A": generator_loss(DA(fake_B)),
            "G_B": generator_loss(DB(fake_A)),
            "cycle_A": 10 * F.l1_loss(GB(fake_B), a),
            "cycle_B": 10 * F.l1_loss(GA(fake_A), b),
            "idt_A": 0.5 * 10 * F.l1_loss(GA(b), b),
            "idt_B": 0.5 * 10 * F.l1_loss(GB(a), a),
        }
    for k, v in want.items():
        assert logs[k] == pytest.approx(float(v), rel=1e-5), k
    assert logs["G"] == pytest.approx(sum(float(v) for v in want.values()), rel=1e-5)
    # D step: after the G step, on the (first, so un-mixed) pooled fakes of the forward pass
    with torch.no_grad():
        d_a = discriminator_loss(DA(b), DA(fake_B))
    assert logs["D_A"] == pytest.approx(float(d_a), rel=1e-5)


def test_no_identity_terms_when_lambda_identity_is_zero():
    m = build_method("cyclegan", **TINY, lambda_identity=0.0)
    calls = []
    m.nets["G_A"].register_forward_pre_hook(lambda *_a: calls.append("G_A"))
    logs = m.train_step(batch(2), 0)
    assert "idt_A" not in logs and "idt_B" not in logs
    assert calls == ["G_A", "G_A"]  # fake_B and rec_B only (3 with the identity term)


def test_pools_fill_mix_and_round_trip():
    m = build_method("cyclegan", **TINY, pool_size=2)
    torch.manual_seed(0)
    for step in range(4):
        m.train_step(batch(step), step)
    assert len(m.pools["fake_B"]) == len(m.pools["fake_A"]) == 2
    state = m.state_dict()
    check_plain(state)
    assert len(state["pools"]["fake_B"]["images"]) == 2
    other = build_method("cyclegan", **TINY, pool_size=2, seed=5)
    other.load_state_dict(state)
    for k in ("fake_A", "fake_B"):
        assert all(torch.equal(x, y) for x, y in zip(m.pools[k].images, other.pools[k].images))
    torch.manual_seed(3)
    la = m.train_step(batch(9), 4)
    torch.manual_seed(3)
    lb = other.train_step(batch(9), 4)
    assert la == lb


def test_model_spec_rebuilds_g_a():
    m = build_method("cyclegan", **TINY)
    spec = m.model_spec()
    assert spec == {"model": "cyclegan", "kwargs": {"ngf": 8, "n_blocks": 2, "antialias": False, "antialias_up": False}}
    rebuilt = build_model(spec, TRANSLATOR_BUILDERS)
    rebuilt.load_state_dict(m.dehazer().state_dict())
    x = torch.rand(1, 3, 30, 30)
    with torch.no_grad():
        assert torch.equal(rebuilt(x), (m.nets["G_A"](F.pad(x * 2 - 1, (0, 2, 0, 2), mode="reflect"))[..., :30, :30] + 1) / 2)
