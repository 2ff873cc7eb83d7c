"""PatchGAN discriminator: size, output map, receptive field, structure."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from dehazelab.models.antialias import BlurDownsample
from dehazelab.models.patchgan import PatchGANDiscriminator


def n_params(m: nn.Module) -> int:
    return sum(p.numel() for p in m.parameters())


def test_parameter_count_matches_official():
    assert n_params(PatchGANDiscriminator()) == 2_764_737
    assert n_params(PatchGANDiscriminator(antialias=False)) == 2_764_737


@pytest.mark.parametrize("antialias", [True, False])
def test_output_map_sizes(antialias):
    torch.manual_seed(0)
    d = PatchGANDiscriminator(antialias=antialias)
    with torch.no_grad():
        assert d(torch.randn(1, 3, 256, 256)).shape == (1, 1, 30, 30)
        assert d(torch.randn(2, 3, 128, 128)).shape == (2, 1, 14, 14)


def test_structure_antialiased():
    m = PatchGANDiscriminator().model
    convs = [x for x in m if isinstance(x, nn.Conv2d)]
    assert [c.stride for c in convs] == [(1, 1)] * 5
    assert [(c.in_channels, c.out_channels) for c in convs] == [(3, 64), (64, 128), (128, 256), (256, 512), (512, 1)]
    assert sum(isinstance(x, BlurDownsample) for x in m) == 3
    assert sum(isinstance(x, nn.InstanceNorm2d) for x in m) == 3  # none after the first conv
    assert not isinstance(m[-1], (nn.Sigmoid, nn.LeakyReLU))  # raw logits
    strided = [c.stride for c in PatchGANDiscriminator(antialias=False).model if isinstance(c, nn.Conv2d)]
    assert strided == [(2, 2)] * 3 + [(1, 1)] * 2


@pytest.mark.parametrize("antialias,expected", [(False, 70), (True, 84)])
def test_receptive_field(antialias, expected):
    """Support of d(logit)/d(input) for one central logit, with IN removed (its stats are global)."""
    torch.manual_seed(0)
    d = PatchGANDiscriminator(ndf=4, antialias=antialias).double()
    for i, mod in enumerate(d.model):
        if isinstance(mod, nn.InstanceNorm2d):
            d.model[i] = nn.Identity()
    x = torch.randn(1, 3, 160, 160, dtype=torch.float64, requires_grad=True)
    y = d(x)
    c = y.shape[-1] // 2
    y[0, 0, c, c].backward()
    support = x.grad[0].abs().sum(0) > 0
    rows = support.any(1).nonzero().flatten()
    cols = support.any(0).nonzero().flatten()
    assert int(rows.max() - rows.min() + 1) == expected
    assert int(cols.max() - cols.min() + 1) == expected
