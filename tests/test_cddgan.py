"""CDD-GAN reconstruction: negative generators, the contrastive terms, the documented update order,
the adversarial (N) step, exact resume through the unpaired loop, the NaN guard and reloading the
dehazer from a checkpoint.

Tiny networks (ngf 8, 2 residual blocks, 16-wide heads, 16 patches / negatives, 32² crops); one CPU
thread (tests/conftest.py).
"""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from dehazelab.inference import export_weights, load_model
from dehazelab.losses.patchnce import patchnce_loss
from dehazelab.methods import METHODS, NonFiniteLoss, build_method
from dehazelab.methods.cddgan import CDDGAN, CDDGAN_VARIANTS, contrastive_nce
from dehazelab.models import MODELS
from dehazelab.models.negative_generator import NegativeGenerator, negative_diversity, pooled_embeddings
from dehazelab.models.projection_head import PatchSampleMLP, l2_normalize
from dehazelab.models.resnet_generator import to_pm1
from dehazelab.train.unpaired import train_unpaired

from unpaired_helpers import check_nan_stop, check_resume_is_exact, make_cfg, unpaired_set

TINY = {"ngf": 8, "n_blocks": 2, "ndf": 8, "nce_layers": (0, 4, 8, 12, 13), "num_patches": 16, "netF_nc": 16,
        "num_negatives": 16, "z_dim": 8, "pool_size": 2}

pytestmark = pytest.mark.usefixtures("no_progress_bars")


def tiny(variant: str = "cddgan", **kw) -> CDDGAN:
    return build_method("cddgan", variant=variant, **{**TINY, **kw})


def batch(seed=0, b=1, s=32):
    g = torch.Generator().manual_seed(seed)
    return {"hazy": torch.rand(b, 3, s, s, generator=g), "clear": torch.rand(b, 3, s, s, generator=g)}


def params_of(method, names):
    return {f"{n}.{k}": v.detach().clone() for n in names for k, v in method.nets[n].state_dict().items()}


def taps(method, b):
    """Encoder taps of one batch, as train_step computes them (keys and queries of both directions)."""
    real_A, real_B = method._inputs(b)
    L = method.nce_layers
    with torch.no_grad():
        fake_B, k_A = method.nets["G_A"](real_A, L, encode_only=False)
        _, q_X = method.nets["G_B"](fake_B, L, encode_only=False)
        fake_A, k_B = method.nets["G_B"](real_B, L, encode_only=False)
        _, q_Y = method.nets["G_A"](fake_A, L, encode_only=False)
    return k_A, k_B, q_X, q_Y


# ------------------------------------------------------------------------------ negative generator


def test_negative_generator_shapes_norms_and_parameter_count():
    g = NegativeGenerator(n_layers=3, nc=16, z_dim=8, num_negatives=10)
    pooled = [torch.randn(2, 16) for _ in range(3)]
    out = g(pooled)
    assert [tuple(o.shape) for o in out] == [(20, 16)] * 3
    for o in out:
        torch.testing.assert_close(o.norm(dim=1), torch.ones(20), rtol=0, atol=1e-5)
    assert [tuple(o.shape) for o in g(pooled, num_negatives=4)] == [(8, 16)] * 3
    # NEGCUT's size: Linear(nc+64, nc) -> ReLU -> Linear(nc, nc) per layer; 739,840 for 5 layers at nc 256
    assert sum(p.numel() for p in NegativeGenerator(5, nc=256).parameters()) == 739_840
    with pytest.raises(ValueError, match="pooled"):
        g(pooled[:2])


def test_negatives_depend_on_noise_and_condition_and_fixed_noise_is_repeatable():
    torch.manual_seed(0)
    g = NegativeGenerator(n_layers=1, nc=16, z_dim=8, num_negatives=6)
    p = [torch.randn(1, 16)]
    z = g.noise(1)
    a, b = g(p, noise=z)[0], g(p, noise=z)[0]
    assert torch.equal(a, b)
    assert not torch.allclose(a, g(p)[0])  # fresh noise
    assert not torch.allclose(a, g([torch.randn(1, 16)], noise=z)[0])  # other conditioning


def test_pooled_embeddings_average_every_position():
    heads = PatchSampleMLP(in_channels=(3, 5), nc=8)
    feats = [torch.randn(2, 3, 4, 4), torch.randn(2, 5, 2, 3)]
    pooled = pooled_embeddings(heads, feats)
    assert [tuple(p.shape) for p in pooled] == [(2, 8), (2, 8)]
    emb, _ = heads(feats, 0)
    torch.testing.assert_close(pooled[1][1], emb[1].reshape(2, 6, 8)[1].mean(0))


def test_negative_diversity_is_lower_for_diverse_negatives():
    same = l2_normalize(torch.randn(1, 16)).repeat(8, 1)
    diverse = l2_normalize(torch.randn(8, 16))
    assert float(negative_diversity([same], 8)) == 0.0
    assert float(negative_diversity([diverse], 8)) < -0.05
    with pytest.raises(ValueError):
        negative_diversity([diverse], 7)


# ------------------------------------------------------------------------------ contrastive loss


def test_in_image_contrastive_nce_is_cut_patchnce():
    g = torch.Generator().manual_seed(0)
    q = l2_normalize(torch.randn(2 * 12, 8, generator=g))
    k = l2_normalize(torch.randn(2 * 12, 8, generator=g))
    ours = contrastive_nce(q, k, k, 0.07, batch_size=2, mask_diagonal=True)
    torch.testing.assert_close(ours, patchnce_loss(q, k, 0.07, batch_size=2), rtol=1e-6, atol=1e-6)


def test_generated_negatives_formula_and_per_image_positive():
    g = torch.Generator().manual_seed(1)
    b, p, m, c, tau = 2, 5, 7, 6, 0.1
    q = l2_normalize(torch.randn(b * p, c, generator=g))
    k = l2_normalize(torch.randn(b * p, c, generator=g))
    n = l2_normalize(torch.randn(b * m, c, generator=g))
    e = l2_normalize(torch.randn(b, c, generator=g))
    want, want_e = [], []
    for i in range(b * p):
        img = i // p
        negs = n[img * m:(img + 1) * m]
        for pos, out in ((k[i], want), (e[img], want_e)):
            logits = torch.cat([(q[i] @ pos)[None], negs @ q[i]]) / tau
            out.append(-torch.log_softmax(logits, 0)[0])
    torch.testing.assert_close(contrastive_nce(q, k, n, tau, batch_size=b), torch.stack(want).mean())
    torch.testing.assert_close(contrastive_nce(q, e, n, tau, batch_size=b), torch.stack(want_e).mean())


# ------------------------------------------------------------------------------ the method


@pytest.mark.parametrize("variant", sorted(CDDGAN_VARIANTS))
def test_variants_build_the_documented_networks_and_step(variant):
    m = tiny(variant)
    nets = set(m.nets)
    base = {"G_A", "G_B", "D_A", "D_B"}
    want = {"cyclegan": base, "contrastive": base | {"H_A", "H_B"},
            "cddgan": base | {"H_A", "H_B", "H_A_ema", "H_B_ema", "N_A", "N_B"},
            "cddgan_exemplars": base | {"H_A", "H_B", "H_A_ema", "H_B_ema", "N_A", "N_B"}}[variant]
    assert nets == want
    assert set(m.optimizers) == {"cyclegan": {"G", "D"}, "contrastive": {"G", "D", "H"}}.get(variant, {"G", "D", "H", "N"})
    logs = m.train_step(batch(), 0)
    assert all(np.isfinite(v) for v in logs.values())
    if variant != "cyclegan":
        assert {"NCE_X", "NCE_Y", "stat_sim_pos", "stat_sim_neg"} <= set(logs)
    if variant.startswith("cddgan"):
        assert {"N", "N_div", "gnorm_N"} <= set(logs)
    assert ("EX" in logs) == (variant == "cddgan_exemplars")
    out = m.dehazer()(torch.rand(1, 3, 30, 34))
    assert out.shape == (1, 3, 30, 34)
    assert m.model_spec() == {"model": "cddgan", "kwargs": {"ngf": 8, "n_blocks": 2, "antialias": True,
                                                           "antialias_up": True}}
    assert m.hparams()["variant"] == variant


def test_registry_and_validation():
    assert "cddgan" in METHODS and "cddgan" in MODELS
    with pytest.raises(ValueError, match="variant"):
        build_method("cddgan", variant="negcut")
    with pytest.raises(ValueError, match="negatives"):
        tiny(negatives="bank")
    with pytest.raises(ValueError, match="even"):
        tiny(num_negatives=15)
    with pytest.raises(ValueError, match="residual block"):
        tiny(nce_layers=(0, 4, 8, 12, 16))  # 2 blocks end at index 13


def test_momentum_heads_start_as_copies_and_follow_the_ema():
    m = tiny()
    for k in ("H_A", "H_B"):
        for a, b in zip(m.nets[k].parameters(), m.nets[f"{k}_ema"].parameters()):
            assert torch.equal(a, b) and not b.requires_grad
    before = {k: [p.clone() for p in m.nets[f"{k}_ema"].parameters()] for k in ("H_A", "H_B")}
    m.train_step(batch(), 0)
    for k in ("H_A", "H_B"):
        for old, p, ema in zip(before[k], m.nets[k].parameters(), m.nets[f"{k}_ema"].parameters()):
            torch.testing.assert_close(ema, 0.9 * old + 0.1 * p, rtol=1e-6, atol=1e-7)


def test_update_order_is_D_then_N_then_G_and_heads_then_ema(monkeypatch):
    for variant, want in [("cddgan", ["D", "N", "G", "H", "EMA"]), ("cddgan_exemplars", ["D", "N", "G", "H", "EMA"]),
                          ("contrastive", ["D", "G", "H"]), ("cyclegan", ["D", "G"])]:
        m = tiny(variant)
        order: list[str] = []
        for name, opt in m.optimizers.items():
            step = opt.step

            def recorded(*a, _step=step, _name=name, **kw):
                order.append(_name)
                return _step(*a, **kw)

            monkeypatch.setattr(opt, "step", recorded)
        ema = m._update_momentum
        monkeypatch.setattr(m, "_update_momentum", lambda _ema=ema: (order.append("EMA"), _ema())[1])
        m.train_step(batch(), 0)
        assert order == want, (variant, order)


def test_n_step_raises_the_contrastive_loss_it_maximises_and_touches_only_N():
    torch.manual_seed(0)
    m = tiny(lambda_MS=0.0, lr=1e-3)
    b = batch(3)
    k_A, k_B, q_X, q_Y = taps(m, b)
    noise_X, noise_Y = m.nets["N_A"].noise(1), m.nets["N_B"].noise(1)

    def contrast():
        torch.manual_seed(123)  # the same patch positions every time
        with torch.no_grad():
            return float(m.adversarial_objective(k_A, k_B, q_X, q_Y, noise_X=noise_X, noise_Y=noise_Y)[1])

    frozen = ["G_A", "G_B", "D_A", "D_B", "H_A", "H_B", "H_A_ema", "H_B_ema"]
    others = params_of(m, frozen)
    start = contrast()
    values = [start]
    for _ in range(5):
        m.n_step(k_A, k_B, q_X, q_Y)
        values.append(contrast())
    assert values[1] > values[0] and values[-1] > values[0] + 1e-3, values
    after = params_of(m, frozen)
    assert all(torch.equal(others[k], after[k]) for k in others)


def test_generated_negatives_are_unit_vectors_and_not_collapsed():
    torch.manual_seed(0)
    m = tiny()
    cfg_batch = batch(4)
    for step in range(3):
        m.train_step(cfg_batch, step)
    k_A, _, _, _ = taps(m, cfg_batch)
    with torch.no_grad():
        negs = m.generate_negatives("X", k_A)
    for n in negs:
        assert n.shape == (m.num_negatives, m.netF_nc)
        # x / (|x| + 1e-7) as CUT/NEGCUT: the raw MLP outputs are small at xavier-0.02 init (|x| ~ 1e-3)
        torch.testing.assert_close(n.norm(dim=1), torch.ones(len(n)), rtol=0, atol=1e-3)
        cos = n @ n.T
        off = cos[~torch.eye(len(n), dtype=torch.bool)]
        assert float(off.mean()) < 0.95, float(off.mean())  # not one vector repeated
        assert torch.linalg.matrix_rank(n, atol=1e-3) >= 3
    assert float(negative_diversity(negs, m.num_negatives)) < -1e-3


def test_exemplar_prototypes_are_unit_vectors_per_image():
    m = tiny("cddgan_exemplars")
    _, k_B, _, _ = taps(m, batch(b=2))
    protos = m.exemplar_prototypes(k_B)
    assert [tuple(p.shape) for p in protos] == [(2, 16)] * 5
    for p in protos:
        torch.testing.assert_close(p.norm(dim=1), torch.ones(2), rtol=0, atol=1e-5)


# ------------------------------------------------------------------------------ loop integration


@pytest.mark.parametrize("variant", ["cddgan", "cddgan_exemplars"])
def test_resume_is_exact(tmp_path, variant):
    run = check_resume_is_exact(lambda: tiny(variant), tmp_path)
    # the negative generators and the momentum heads are part of the state compared, N's loss of the history
    assert any("N_A" in k for k in run.tensors) and any("H_A_ema" in k for k in run.tensors)
    assert "loss_N" in run.columns


def test_nan_input_stops_training_with_a_clear_error(tmp_path):
    cfg = make_cfg(n_steps=2, n_steps_decay=2, eval_every=0, ckpt_every=2)
    check_nan_stop(tiny(), cfg, tmp_path, bad=3, last_good_step=2)


def test_nan_in_the_n_step_is_raised_before_any_n_or_g_update():
    m = tiny()
    with torch.no_grad():
        next(m.nets["N_A"].parameters()).fill_(float("nan"))
    keep = params_of(m, ["G_A", "G_B", "H_A", "H_B", "N_B"])
    with pytest.raises(NonFiniteLoss, match="N"):
        m.train_step(batch(), 0)
    now = params_of(m, ["G_A", "G_B", "H_A", "H_B", "N_B"])
    assert all(torch.equal(keep[k], now[k]) for k in keep)


def test_checkpoint_and_exported_weights_reload_through_load_model(tmp_path):
    m = tiny()
    train_unpaired(m, unpaired_set(), None, make_cfg(n_steps=2, n_steps_decay=0, eval_every=0), tmp_path)
    x = torch.rand(1, 3, 36, 44, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        want = m.dehazer().eval()(x)
        for path in (tmp_path / "last.pt", export_weights(m.dehazer(), m.model_spec(), tmp_path / "cddgan_test.pt")):
            got = load_model("cddgan", path, device="cpu")(x)
            assert torch.equal(got, want), path
    with pytest.raises(SystemExit, match="not 'cyclegan'|cddgan"):
        load_model("cyclegan", tmp_path / "cddgan_test.pt", device="cpu")


def test_dehazer_is_g_a_in_unit_range():
    m = tiny()
    x = torch.rand(1, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(m.dehazer()(x), (m.nets["G_A"](to_pm1(x)) + 1) / 2)
    assert m.generator() is m.nets["G_A"]
    assert copy.deepcopy(m.state_dict())["method"] == "cddgan"


@pytest.mark.parametrize("method", ["cut", "fastcut", "cyclegan", "cddgan"])
def test_residual_generators_export_and_reload_through_load_model(method, tmp_path):
    """A method trained with the global residual exports weights the CLI's load_model rebuilds exactly
    (the recorded kwargs include ``global_residual``; a residual dehazer differs from a plain one)."""
    from dehazelab.methods import build_method

    kw = {"ngf": 4, "n_blocks": 5, "ndf": 4, "global_residual": True}
    if method in ("cut", "fastcut", "cddgan"):
        kw["num_patches"] = 8
    if method == "cddgan":
        kw.update(num_negatives=4, netF_nc=8)
    m = build_method(method, seed=0, **kw)
    x = torch.rand(1, 3, 36, 44, generator=torch.Generator().manual_seed(0))
    path = export_weights(m.dehazer(), m.model_spec(), tmp_path / f"{method}.pt")
    assert m.model_spec()["kwargs"].get("global_residual") is True
    with torch.no_grad():
        want = m.dehazer().eval()(x)
        got = load_model(method, path, device="cpu")(x)
        assert torch.equal(got, want)
        plain = build_method(method, seed=0, **{k: v for k, v in kw.items() if k != "global_residual"})
        assert not torch.allclose(plain.dehazer().eval()(x), want)
