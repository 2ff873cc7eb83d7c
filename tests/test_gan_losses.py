"""LSGAN / vanilla GAN losses and CycleGAN's image history pool."""

from __future__ import annotations

import math

import pytest
import torch

from dehazelab.losses.gan import discriminator_loss, gan_target_loss, generator_loss
from dehazelab.models.image_pool import ImagePool

# ------------------------------------------------------------------------------ GAN losses


def test_lsgan_values_by_hand():
    real = torch.tensor([[[[1.0, 0.0], [2.0, 1.0]]]])  # (D(y)-1)^2 = 0,1,1,0 -> mean 0.5
    fake = torch.tensor([[[[0.0, 1.0], [-1.0, 2.0]]]])  # D(G(x))^2 = 0,1,1,4 -> mean 1.5
    assert discriminator_loss(real, fake, "lsgan").item() == pytest.approx(0.5 * (0.5 + 1.5))
    # (D(G(x))-1)^2 = 1,0,4,1 -> mean 1.5
    assert generator_loss(fake, "lsgan").item() == pytest.approx(1.5)
    assert gan_target_loss(fake, False).item() == pytest.approx(1.5)


def test_vanilla_values_by_hand():
    logits = torch.tensor([0.0, 2.0, -3.0])
    sig = [1 / (1 + math.exp(-v)) for v in logits.tolist()]
    as_real = -sum(math.log(s) for s in sig) / 3
    as_fake = -sum(math.log(1 - s) for s in sig) / 3
    assert gan_target_loss(logits, True, "vanilla").item() == pytest.approx(as_real, rel=1e-6)
    assert generator_loss(logits, "vanilla").item() == pytest.approx(as_real, rel=1e-6)
    d = discriminator_loss(logits, logits, "vanilla").item()
    assert d == pytest.approx(0.5 * (as_real + as_fake), rel=1e-6)
    with pytest.raises(ValueError):
        generator_loss(logits, "wgan")


def test_losses_are_minimised_at_their_targets_and_give_gradients():
    perfect_real, perfect_fake = torch.ones(2, 1, 4, 4), torch.zeros(2, 1, 4, 4)
    assert discriminator_loss(perfect_real, perfect_fake).item() == 0.0
    assert generator_loss(torch.ones(1, 1, 3, 3)).item() == 0.0
    pred = torch.zeros(1, 1, 3, 3, requires_grad=True)
    generator_loss(pred).backward()  # d/dp mean((p-1)^2) = 2(p-1)/n
    torch.testing.assert_close(pred.grad, torch.full_like(pred, -2.0 / 9))


# ------------------------------------------------------------------------------ image pool


def _batch(values):
    return torch.stack([torch.full((3, 2, 2), float(v)) for v in values])


def test_pool_size_zero_is_identity_and_detaches():
    x = _batch([1, 2]).requires_grad_(True)
    out = ImagePool(0).query(x)
    assert torch.equal(out, x) and not out.requires_grad


def test_pool_fills_first_then_returns_new_or_stored_images():
    pool = ImagePool(4, generator=torch.Generator().manual_seed(0))
    first = pool.query(_batch([0, 1, 2]))
    assert torch.equal(first, _batch([0, 1, 2])) and len(pool) == 3
    seen = {0.0, 1.0, 2.0}
    for step in range(3, 60):
        out = pool.query(_batch([step]))
        assert out.shape == (1, 3, 2, 2) and len(pool) == min(step + 1, 4)
        v = out[0, 0, 0, 0].item()
        assert torch.equal(out, _batch([v]))  # an intact image, not a mixture
        assert v == step or v in seen  # either the new image or one stored earlier
        stored = {img[0, 0, 0, 0].item() for img in pool.images}
        assert step in stored or v == step  # if the new one was not stored, it was returned
        if v != step:
            assert v not in stored  # a returned old image leaves the pool (its slot got the new one)
        seen.add(float(step))


def test_pool_swap_rate_and_reproducibility():
    def run(seed):
        pool = ImagePool(5, generator=torch.Generator().manual_seed(seed))
        pool.query(_batch(range(5)))
        return [pool.query(_batch([100 + i]))[0, 0, 0, 0].item() for i in range(2000)]

    a, b, c = run(1), run(1), run(2)
    assert a == b and a != c
    swapped = sum(v != 100 + i for i, v in enumerate(a))
    assert 900 < swapped < 1100  # probability 1/2


def test_pool_stores_copies():
    pool = ImagePool(2)
    x = _batch([1, 2])
    pool.query(x)
    x.mul_(0)
    assert {img[0, 0, 0, 0].item() for img in pool.images} == {1.0, 2.0}
