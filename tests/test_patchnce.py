"""PatchNCE loss, the PatchNCE generator/heads wiring, and the projection heads' patch sampling."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from dehazelab.losses.patchnce import PatchNCE, patchnce_loss
from dehazelab.models.projection_head import PatchSampleMLP, l2_normalize
from dehazelab.models.resnet_generator import CUT_NCE_LAYERS, ResnetGenerator

TAU = 0.07


def naive_patchnce(q: torch.Tensor, k: torch.Tensor, tau: float = TAU) -> float:
    """Independent reference: explicit loops over images and positions, python floats."""
    b, p, _ = q.shape
    total = 0.0
    for bi in range(b):
        for i in range(p):
            logits = [float(q[bi, i] @ k[bi, i]) / tau]
            for j in range(p):
                logits.append((-10.0 if j == i else float(q[bi, i] @ k[bi, j])) / tau)
            m = max(logits)
            lse = m + math.log(sum(math.exp(v - m) for v in logits))
            total += lse - logits[0]
    return total / (b * p)


# ------------------------------------------------------------------------------- the loss


def test_closed_form_two_orthonormal_positions():
    k = torch.eye(2, dtype=torch.float64)[None]  # one image, 2 positions, keys e1, e2
    q = k.clone()
    # row i: logits [q·k_i, masked -10, q·k_other=0] / tau  ->  log(1 + e^{-1/tau} + e^{-11/tau})
    expected = math.log(1 + math.exp(-1 / TAU) + math.exp(-11 / TAU))
    got = patchnce_loss(q, k, TAU).item()
    assert got == pytest.approx(expected, rel=1e-12)
    # without the diagonal mask the positive would also count as a negative: log(2 + e^{-1/tau})
    assert abs(got - math.log(2 + math.exp(-1 / TAU))) > 0.5


def test_matches_naive_loop_on_random_normalised_features():
    g = torch.Generator().manual_seed(0)
    q = l2_normalize(torch.randn(3, 7, 16, generator=g, dtype=torch.float64))
    k = l2_normalize(torch.randn(3, 7, 16, generator=g, dtype=torch.float64))
    assert patchnce_loss(q, k, TAU).item() == pytest.approx(naive_patchnce(q, k), rel=1e-10)
    # the flat image-major layout with batch_size gives the same value
    flat = patchnce_loss(q.reshape(21, 16), k.reshape(21, 16), TAU, batch_size=3).item()
    assert flat == pytest.approx(naive_patchnce(q, k), rel=1e-10)
    with pytest.raises(ValueError):
        patchnce_loss(q.reshape(21, 16), k.reshape(21, 16), TAU)  # 2-D needs batch_size


def test_negatives_stay_within_each_image():
    g = torch.Generator().manual_seed(1)
    q = l2_normalize(torch.randn(2, 5, 8, generator=g, dtype=torch.float64))
    k = l2_normalize(torch.randn(2, 5, 8, generator=g, dtype=torch.float64))
    k2 = k.clone()
    k2[1] = l2_normalize(torch.randn(5, 8, generator=g, dtype=torch.float64))  # change image 1's keys only
    r1 = patchnce_loss(q, k, TAU, reduction="none")
    r2 = patchnce_loss(q, k2, TAU, reduction="none")
    torch.testing.assert_close(r1[:5], r2[:5])  # image 0 unaffected
    assert not torch.allclose(r1[5:], r2[5:])
    # SinCUT-style pooling of negatives across the batch is different
    assert not torch.allclose(patchnce_loss(q, k, TAU, negatives_from_batch=True), r1.mean())


def test_keys_receive_no_gradient():
    g = torch.Generator().manual_seed(2)
    q = l2_normalize(torch.randn(1, 6, 8, generator=g)).requires_grad_(True)
    k = l2_normalize(torch.randn(1, 6, 8, generator=g)).requires_grad_(True)
    patchnce_loss(q, k, TAU).backward()
    assert k.grad is None
    assert q.grad is not None and q.grad.abs().sum() > 0


def test_identical_well_separated_features_give_near_zero_loss():
    k = torch.eye(8)[None, :4]  # 4 orthonormal keys
    q = k.clone()
    loss = patchnce_loss(q, k, TAU).item()
    assert 0 <= loss < 1e-5  # = log(1 + 3e^{-1/tau} + e^{-11/tau}) ≈ 1.9e-6
    # queries pointing away from their positives give a large loss
    assert patchnce_loss(-q, k, TAU).item() > 10


# ----------------------------------------------------------------------- projection heads


def test_heads_parameter_count_and_no_mlp_variant():
    assert sum(p.numel() for p in PatchSampleMLP().parameters()) == 560_384
    assert sum(p.numel() for p in PatchSampleMLP(use_mlp=False).parameters()) == 0


def test_heads_sample_same_positions_for_whole_batch_and_for_query():
    torch.manual_seed(0)
    heads = PatchSampleMLP(in_channels=(4, 6), nc=8)
    feats = [torch.randn(2, 4, 5, 6), torch.randn(2, 6, 3, 3)]
    emb, ids = heads(feats, num_patches=7, generator=torch.Generator().manual_seed(3))
    assert [tuple(e.shape) for e in emb] == [(14, 8), (14, 8)]
    assert [len(i) for i in ids] == [7, 7] and len(set(ids[0].tolist())) == 7
    for layer in range(2):
        f = feats[layer].flatten(2)
        manual = torch.cat([f[b][:, ids[layer]].T for b in range(2)])  # image-major rows
        torch.testing.assert_close(emb[layer], l2_normalize(heads.mlps[layer](manual)))
    torch.testing.assert_close(emb[0].norm(dim=1), torch.ones(14))
    # the query call reuses the key ids
    emb_q, ids_q = heads([f + 1 for f in feats], num_patches=7, patch_ids=ids)
    assert all(torch.equal(a, b) for a, b in zip(ids, ids_q))
    with pytest.raises(ValueError):
        heads([torch.randn(1, 5, 4, 4), feats[1]], num_patches=3)


def test_heads_sampling_is_seeded_and_all_positions_when_asked():
    heads = PatchSampleMLP(in_channels=(3,), nc=4, use_mlp=False)
    f = [torch.randn(1, 3, 10, 10)]
    _, a = heads(f, 16, generator=torch.Generator().manual_seed(7))
    _, b = heads(f, 16, generator=torch.Generator().manual_seed(7))
    _, c = heads(f, 16, generator=torch.Generator().manual_seed(8))
    assert torch.equal(a[0], b[0]) and not torch.equal(a[0], c[0])
    for n in (0, 100, 500):
        emb, ids = heads(f, n)
        assert torch.equal(ids[0], torch.arange(100)) and emb[0].shape == (100, 3)
        torch.testing.assert_close(emb[0], l2_normalize(f[0].flatten(2)[0].T))


# --------------------------------------------------------------------- generator + heads


def _small_models(seed: int = 0):
    torch.manual_seed(seed)
    g = ResnetGenerator(ngf=4, n_blocks=5)
    heads = PatchSampleMLP(in_channels=g.feature_channels(CUT_NCE_LAYERS), nc=16)
    return g, heads


def test_patchnce_module_equals_manual_composition_and_naive_loss():
    g, heads = _small_models()
    src, tgt = torch.randn(2, 3, 16, 16), torch.randn(2, 3, 16, 16)
    nce = PatchNCE(g, heads, num_patches=10, tau=TAU)
    got, per_layer = nce(src, tgt, generator=torch.Generator().manual_seed(4), per_layer=True)
    with torch.no_grad():
        k_pool, ids = heads(g(src, CUT_NCE_LAYERS, encode_only=True), 10, None, torch.Generator().manual_seed(4))
        q_pool, _ = heads(g(tgt, CUT_NCE_LAYERS, encode_only=True), 10, ids)
    naive = [naive_patchnce(q.reshape(2, -1, 16).double(), k.reshape(2, -1, 16).double()) for q, k in zip(q_pool, k_pool)]
    assert len(per_layer) == 5
    for a, b in zip(per_layer, naive):
        assert a.item() == pytest.approx(b, rel=1e-4)
    assert got.item() == pytest.approx(sum(naive) / 5, rel=1e-4)


def test_patchnce_gradients_flow_only_through_queries():
    g, heads = _small_models(1)
    src = torch.randn(1, 3, 16, 16, requires_grad=True)
    tgt = torch.randn(1, 3, 16, 16, requires_grad=True)
    loss = PatchNCE(g, heads, num_patches=8)(src, tgt)
    loss.backward()
    assert src.grad is None  # key branch: no graph at all
    assert tgt.grad is not None and tgt.grad.abs().sum() > 0
    assert all(p.grad is not None for p in heads.parameters())
    assert g.model[1].weight.grad is not None and g.model[1].weight.grad.abs().sum() > 0


def test_reusing_key_taps_from_the_main_forward_gives_the_same_loss():
    g, heads = _small_models(2)
    real_a, real_b = torch.randn(2, 3, 16, 16), torch.randn(2, 3, 16, 16)
    fake, taps = g(torch.cat([real_a, real_b]), CUT_NCE_LAYERS)  # CUT's identity batch, one pass
    nce = PatchNCE(g, heads, num_patches=12)
    ref_x = nce(real_a, fake[:2], generator=torch.Generator().manual_seed(0))
    ref_y = nce(real_b, fake[2:], generator=torch.Generator().manual_seed(1))
    re_x = nce(None, fake[:2], feat_k=[t[:2] for t in taps], generator=torch.Generator().manual_seed(0))
    re_y = nce(None, fake[2:], feat_k=[t[2:] for t in taps], generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(re_x, ref_x, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(re_y, ref_y, atol=1e-5, rtol=1e-5)
    # and one batched query pass over cat(G(x), G(y)), split per term, gives the same losses
    q_all = g(fake, CUT_NCE_LAYERS, encode_only=True)
    bq_x = nce.from_features([q[:2] for q in q_all], [t[:2] for t in taps], generator=torch.Generator().manual_seed(0))
    bq_y = nce.from_features([q[2:] for q in q_all], [t[2:] for t in taps], generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(bq_x, ref_x, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(bq_y, ref_y, atol=1e-5, rtol=1e-5)


def test_flip_hook_flips_query_features_back():
    g, heads = _small_models(3)
    src, tgt = torch.randn(1, 3, 16, 16), torch.randn(1, 3, 16, 16)
    nce = PatchNCE(g, heads, num_patches=9)
    flipped = nce(src, tgt, flipped=True, generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        k_pool, ids = heads(g(src, CUT_NCE_LAYERS, encode_only=True), 9, None, torch.Generator().manual_seed(5))
        fq = [torch.flip(f, dims=[3]) for f in g(tgt, CUT_NCE_LAYERS, encode_only=True)]
        q_pool, _ = heads(fq, 9, ids)
        manual = sum(patchnce_loss(q, k, TAU, batch_size=1) for q, k in zip(q_pool, k_pool)) / 5
    torch.testing.assert_close(flipped.detach(), manual)
    assert not torch.allclose(flipped, nce(src, tgt, generator=torch.Generator().manual_seed(5)))
