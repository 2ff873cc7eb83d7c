"""dehazelab.features: the feature statistics and searches behind notebook 03's analysis cells."""

from types import SimpleNamespace

import numpy as np
import pytest
import torch

from dehazelab import features


def test_dark_channel_is_min_over_colours_and_window():
    img = torch.ones(3, 20, 20)
    img[1, 10, 10] = 0.2  # one dark green pixel darkens its whole 15×15 neighbourhood
    d = features.dark_channel(img)
    assert d.shape == (20, 20)
    assert float(d[10, 10]) == pytest.approx(0.2) and float(d[3, 3]) == pytest.approx(0.2)
    assert float(d[0, 0]) == pytest.approx(1.0)  # more than 7 pixels away from (10, 10)
    assert torch.all(features.dark_channel(torch.full((3, 8, 8), 0.5)) == 0.5)


def test_pairs_by_scene_keeps_order():
    ps = [SimpleNamespace(scene=s, level=i) for i, s in enumerate(["b", "a", "b"])]
    got = features.pairs_by_scene(ps)
    assert list(got) == ["b", "a"] and [p.level for p in got["b"]] == [0, 2]


def test_centre_crop_side_is_capped_and_multiple_of_four():
    img = torch.arange(3 * 10 * 14, dtype=torch.float32).reshape(3, 10, 14)
    c = features.centre_crop(img, 64)
    assert c.shape == (3, 8, 8)
    assert torch.equal(c, img[:, 1:9, 3:11])
    assert features.centre_crop(img, 4).shape == (3, 4, 4)


def test_eta2_extremes_and_value():
    groups = np.array(["a", "a", "b", "b"])
    by_group = np.array([[0.0], [0.0], [1.0], [1.0]])
    within = np.array([[0.0], [1.0], [0.0], [1.0]])
    assert features.eta2(by_group, groups) == pytest.approx(1.0)
    assert features.eta2(within, groups) == pytest.approx(0.0)
    assert np.isnan(features.eta2(np.ones((4, 2)), groups))
    f = np.array([[0.0], [2.0], [4.0], [6.0]])  # mean 3, total 20; group means 1 and 5: between 2·4 + 2·4 = 16
    assert features.eta2(f, groups) == pytest.approx(16 / 20)


def test_pca2_scores_and_shares():
    rng = np.random.default_rng(0)
    f = rng.normal(size=(30, 5)) * np.array([10.0, 3.0, 0.1, 0.1, 0.1])
    z, ev = features.pca2(f)
    assert z.shape == (30, 2) and ev.shape == (2,)
    assert ev[0] > ev[1] > 0 and ev.sum() <= 1 + 1e-12
    assert np.allclose(z.mean(0), 0, atol=1e-9)
    assert np.var(z[:, 0]) == pytest.approx(ev[0] * np.var(f - f.mean(0), axis=0).sum(), rel=1e-9)


def test_pool_kinds():
    scene = np.array(["1", "1", "1", "2", "2"])
    level = np.array([1, 5, 0, 3, 0])
    tags = features.pool_kinds(scene, level, 1)
    assert [t[0] for t in tags] == ["same scene, other haze", "x itself", "same scene, clear",
                                    "other scene, hazy", "other scene, clear"]
    assert tags[3] == ("other scene, hazy", "2", 3)


def test_nearest_origin_table_counts_and_shares():
    cand_src = [(0, 0, 0, 1, 2), (0, 0, 1, 1, 2), (1, 0, 0, 1, 2), (1, 0, 1, 1, 2)]
    best = torch.tensor([0, 1, 2])
    t = features.nearest_origin_table(best, cand_src, ["x itself", "other scene, hazy"])
    row = t.set_index("nearest real patch comes from")
    assert row.loc["x itself", "negatives"] == 2 and row.loc["other scene, hazy", "negatives"] == 1
    assert row["share of candidate positions"].tolist() == [0.5, 0.5]
    assert row["share of negatives"].sum() == pytest.approx(1.0)


def test_receptive_crop_clips_at_the_border():
    img = torch.rand(3, 64, 64)
    assert features.receptive_crop(img, (0, 0, 0, 4, 4), rf=35).shape == (3, 25, 25)  # centre (8, 8)
    c = features.receptive_crop(img, (0, 2, 2, 4, 4), rf=36)  # centre (40, 40)
    assert torch.equal(c, img[:, 22:58, 22:58])


def _tiny_cddgan():
    from dehazelab.methods import build_method

    return build_method("cddgan", variant="cddgan", ngf=4, ndf=4, n_blocks=5, num_patches=4, num_negatives=4,
                        netF_nc=8, seed=0)


def test_encoder_features_and_nearest_patches_on_a_tiny_cddgan():
    torch.manual_seed(0)
    m = _tiny_cddgan()
    x = torch.rand(3, 3, 16, 16)
    q, k = features.encoder_features(m, x, "cpu")
    assert q.dtype == np.float64 and q.shape[0] == 3 and k.shape[0] == 3
    assert np.isfinite(q).all() and np.isfinite(k).all()
    li = len(m.nce_layers) - 2
    a = features.nearest_real_patches(m, x, 1, li, "cpu", noise_seed=0)
    b = features.nearest_real_patches(m, x, 1, li, "cpu", noise_seed=0)
    assert torch.equal(a["negs"], b["negs"]) and a["hardness"] == b["hardness"]  # the noise is seeded
    assert torch.allclose(a["negs"].norm(dim=1), torch.ones(len(a["negs"])), atol=1e-3)
    assert len(a["best"]) == len(a["negs"]) and max(int(i) for i in a["best"]) < len(a["cand_src"])
    assert {s[0] for s in a["cand_src"]} == {0, 1, 2}
    assert a["hardness"]["mean cos(negative, nearest real patch)"] == pytest.approx(float(a["best_cos"].mean()))
