"""dehazelab.patchnce_figures: the crops, sampled positions, query maps and figures of notebook 02."""

import math

import matplotlib
import pytest
import torch

from dehazelab import patchnce_figures as PF
from dehazelab.methods import build_method

matplotlib.use("Agg")
TINY = dict(ngf=8, ndf=8, n_blocks=6, num_patches=16, seed=0)


def test_centre_crop_is_a_centred_square_with_a_side_divisible_by_4():
    img = torch.arange(3 * 50 * 70, dtype=torch.float32).reshape(3, 50, 70)
    hazy, clear = PF.centre_crop({"hazy": img, "clear": img + 1}, max_side=128)
    assert hazy.shape == (3, 48, 48) and torch.equal(clear, hazy + 1)
    assert torch.equal(hazy, img[:, 1:49, 11:59])  # (50-48)//2, (70-48)//2


def test_sampled_positions_are_distinct_cell_centres_of_the_layer():
    c = PF.sampling_positions(64, 300, seed=3)
    assert c.shape == (16 * 16, 2)  # capped at the number of positions
    assert len({tuple(x) for x in c.tolist()}) == len(c)
    assert ((c - 2) % 4 == 0).all() and c.min() >= 2 and c.max() <= 62
    assert torch.equal(PF.sampling_positions(64, 10, seed=3), PF.sampling_positions(64, 10, seed=3))


def test_query_maps_are_cosines_whose_rank_and_probability_follow_from_them():
    m = build_method("cut", **TINY)
    x = torch.rand(3, 32, 32, generator=torch.Generator().manual_seed(0))
    out, maps = PF.query_maps(m, x)
    assert out.shape == x.shape and 0 <= float(out.min()) and float(out.max()) <= 1
    assert [layer for layer, *_ in maps] == [layer for layer in m.nce_layers if layer != 0]
    for layer, sim, p, rank, (i, j) in maps:
        assert float(sim.abs().max()) <= 1 + 1e-5  # unit vectors
        flat = sim.flatten()
        centre = i * sim.shape[1] + j
        assert rank == int((flat > flat[centre]).sum()) + 1
        expect = math.exp(flat[centre] / m.nce_tau) / float(torch.exp(flat / m.nce_tau).sum())
        assert p == pytest.approx(expect, rel=1e-4)
    fig, df = PF.similarity_figure(x, [("before", out, maps), ("after", out, maps)])
    assert len(df) == 2 * len(maps) and set(df["weights"]) == {"before", "after"}
    assert (df["rank of positive"] >= 1).all() and (df["positions"] == [s.numel() for _, s, *_ in maps] * 2).all()
    fig2 = PF.sampling_figure(x, x, num_patches=16)
    assert len(fig2.axes) == 2
