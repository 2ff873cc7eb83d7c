"""CycleGAN (Zhu, Park, Isola, Efros, ICCV 2017) as a method object for the unpaired loop.

The baseline of CUT's Table 1 (``docs/methods.md`` §2.9), following the official
``models/cycle_gan_model.py`` of ``junyanz/pytorch-CycleGAN-and-pix2pix`` (the code base CUT builds
on). Domain A = hazy, B = clear.

Networks: ``G_A`` (A → B, the dehazer) and ``G_B`` (B → A): ResNet generators (``resnet_9blocks``,
ngf 64, non-affine InstanceNorm, no dropout, stride-2 / transposed convolutions — no anti-aliasing);
``D_A`` (judges domain B: real_B vs G_A's fakes) and ``D_B`` (judges domain A): 70×70 PatchGANs.
Init ``N(0, 0.02)``, biases 0. One Adam(2e-4, β 0.5/0.999) over both generators, one over both
discriminators. LSGAN. Two image pools of 50 fakes each.

One iteration (``optimize_parameters``), in this order:

1. forward: ``fake_B = G_A(real_A)``, ``rec_A = G_B(fake_B)``, ``fake_A = G_B(real_B)``,
   ``rec_B = G_A(fake_A)``;
2. **G step** (D_A, D_B frozen):
   ``L_G = (D_A(fake_B)−1)² + (D_B(fake_A)−1)² + λ_A‖rec_A−real_A‖₁ + λ_B‖rec_B−real_B‖₁
   + λ_idt·(λ_B‖G_A(real_B)−real_B‖₁ + λ_A‖G_B(real_A)−real_A‖₁)`` with λ_A = λ_B = 10, λ_idt = 0.5;
3. **D step**: ``½[(D_A(real_B)−1)² + D_A(pool_B(fake_B))²] + ½[(D_B(real_A)−1)² + D_B(pool_A(fake_A))²]``,
   where the pools return a mix of current and up to 50 earlier fakes
   (:class:`~dehazelab.models.image_pool.ImagePool`).

Logged: ``G_A``, ``G_B`` (adversarial terms), ``cycle_A``, ``cycle_B``, ``idt_A``, ``idt_B`` (weighted),
``G`` (total), ``D_A``, ``D_B``; ``gnorm_G``, ``gnorm_D``.

Where we differ: the official code calls ``backward`` on D_A's and D_B's losses separately before
one step; we check both for finiteness and back-propagate their sum (same gradients, the two
discriminators share no parameters). The pools' coin flips use torch's global RNG (checkpointed by
the loop), not Python's ``random``. Batches arrive in [0, 1] and are mapped to [-1, 1] here.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F

from dehazelab.losses.gan import GAN_MODES, discriminator_loss, generator_loss
from dehazelab.methods import UnpairedMethod, set_requires_grad
from dehazelab.models.image_pool import ImagePool
from dehazelab.models.init import init_weights
from dehazelab.models.patchgan import PatchGANDiscriminator
from dehazelab.models.resnet_generator import ResnetGenerator

__all__ = ["CycleGAN", "cycle_generator_loss"]


def cycle_generator_loss(nets: Mapping[str, torch.nn.Module], real_A: torch.Tensor, real_B: torch.Tensor,
                         fake_A: torch.Tensor, fake_B: torch.Tensor, rec_A: torch.Tensor, rec_B: torch.Tensor, *,
                         gan_mode: str, lambda_A: float, lambda_B: float, lambda_identity: float,
                         lambda_GAN: float = 1.0) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """CycleGAN's generator objective (step 2 of the module docstring), shared with CDD-GAN.

    ``L_G = λ_GAN·g(D_A(fake_B)) + λ_GAN·g(D_B(fake_A)) + λ_A‖rec_A−real_A‖₁ + λ_B‖rec_B−real_B‖₁
    + λ_B·λ_idt‖G_A(real_B)−real_B‖₁ + λ_A·λ_idt‖G_B(real_A)−real_A‖₁``, where ``g`` is
    :func:`~dehazelab.losses.gan.generator_loss` in ``gan_mode`` (LSGAN: ``(D−1)²``); the identity
    terms (and their two generator passes) only when ``lambda_identity > 0``. ``nets`` holds ``G_A``, ``G_B``, ``D_A``,
    ``D_B``; the caller freezes the discriminators. ``lambda_GAN`` (CDD-GAN's adversarial weight)
    multiplies each adversarial term; at 1.0 (CycleGAN) the product is exact, so the result is the same
    to the bit as without the factor.

    Returns ``(loss_G, parts)``: the total, and its weighted terms by log name (``G_A``, ``G_B``,
    ``cycle_A``, ``cycle_B`` and, with identity, ``idt_A``, ``idt_B``). The terms are summed in that
    order, which fixes the floating-point result.
    """
    G_A, G_B, D_A, D_B = (nets[k] for k in ("G_A", "G_B", "D_A", "D_B"))
    loss_G_A = generator_loss(D_A(fake_B), gan_mode) * lambda_GAN
    loss_G_B = generator_loss(D_B(fake_A), gan_mode) * lambda_GAN
    loss_cyc_A = F.l1_loss(rec_A, real_A) * lambda_A
    loss_cyc_B = F.l1_loss(rec_B, real_B) * lambda_B
    loss_G = loss_G_A + loss_G_B + loss_cyc_A + loss_cyc_B
    parts = {"G_A": loss_G_A, "G_B": loss_G_B, "cycle_A": loss_cyc_A, "cycle_B": loss_cyc_B}
    if lambda_identity > 0:
        loss_idt_A = F.l1_loss(G_A(real_B), real_B) * lambda_B * lambda_identity
        loss_idt_B = F.l1_loss(G_B(real_A), real_A) * lambda_A * lambda_identity
        loss_G = loss_G + loss_idt_A + loss_idt_B
        parts.update(idt_A=loss_idt_A, idt_B=loss_idt_B)
    return loss_G, parts


class CycleGAN(UnpairedMethod):
    """CycleGAN with the official defaults; ``G_A`` is the hazy → clear generator.

    Parameters
    ----------
    ngf, n_blocks, antialias, antialias_up:
        Generators (64, 9, False, False). ``antialias=True`` gives CUT's blur-pooled variant.
    ndf, n_layers_D:
        PatchGANs (64, 3), anti-aliased when ``antialias``.
    lambda_A, lambda_B, lambda_identity:
        Cycle weights (10, 10) and the identity weight relative to them (0.5; 0 disables the
        identity terms and their two generator passes).
    pool_size:
        Image history per discriminator (50; 0 disables it).
    gan_mode, lr, betas, init_type, init_gain, seed:
        ``"lsgan"``, 2e-4, (0.5, 0.999), ``"normal"``, 0.02; ``seed`` seeds the weight init.
    """

    name = "cyclegan"
    generator_name = "G_A"

    def __init__(self, *, ngf: int = 64, n_blocks: int = 9, antialias: bool = False, antialias_up: bool | None = None,
                 ndf: int = 64, n_layers_D: int = 3, lambda_A: float = 10.0, lambda_B: float = 10.0,
                 lambda_identity: float = 0.5, pool_size: int = 50, gan_mode: str = "lsgan", lr: float = 2e-4,
                 betas: Sequence[float] = (0.5, 0.999), init_type: str = "normal", init_gain: float = 0.02,
                 seed: int = 0, global_residual: bool = False):
        super().__init__()
        if gan_mode not in GAN_MODES:
            raise ValueError(f"unknown gan_mode {gan_mode!r}; choose from {GAN_MODES}")
        self.lambda_A, self.lambda_B, self.lambda_identity = float(lambda_A), float(lambda_B), float(lambda_identity)
        self.pool_size, self.gan_mode = int(pool_size), gan_mode
        self.lr0, self.betas = float(lr), tuple(float(b) for b in betas)
        self.init_type, self.init_gain, self.seed = init_type, float(init_gain), int(seed)
        self.g_kwargs = {"ngf": int(ngf), "n_blocks": int(n_blocks), "antialias": bool(antialias),
                         "antialias_up": bool(antialias if antialias_up is None else antialias_up)}
        if global_residual:  # generator output x + G(x) (CPU-scale recipe; models/resnet_generator.py)
            self.g_kwargs["global_residual"] = True
        self.d_kwargs = {"ndf": int(ndf), "n_layers": int(n_layers_D), "antialias": bool(antialias)}

        gen = torch.Generator().manual_seed(self.seed)
        self.nets = {"G_A": ResnetGenerator(**self.g_kwargs), "G_B": ResnetGenerator(**self.g_kwargs),
                     "D_A": PatchGANDiscriminator(**self.d_kwargs), "D_B": PatchGANDiscriminator(**self.d_kwargs)}
        for net in self.nets.values():
            init_weights(net, self.init_type, self.init_gain, generator=gen)
        adam = {"lr": self.lr0, "betas": self.betas}
        n = self.nets
        self.optimizers = {
            "G": torch.optim.Adam([*n["G_A"].parameters(), *n["G_B"].parameters()], **adam),
            "D": torch.optim.Adam([*n["D_A"].parameters(), *n["D_B"].parameters()], **adam),
        }
        # fake_B (G_A's outputs) feed D_A, fake_A feed D_B (official names fake_B_pool / fake_A_pool)
        self.pools = {"fake_B": ImagePool(self.pool_size), "fake_A": ImagePool(self.pool_size)}

    def hparams(self) -> dict[str, Any]:
        return {"method": self.name, **self.g_kwargs, "ndf": self.d_kwargs["ndf"], "n_layers_D": self.d_kwargs["n_layers"],
                "lambda_A": self.lambda_A, "lambda_B": self.lambda_B, "lambda_identity": self.lambda_identity,
                "pool_size": self.pool_size, "gan_mode": self.gan_mode, "lr": self.lr0, "betas": list(self.betas),
                "init_type": self.init_type, "init_gain": self.init_gain, "seed": self.seed}

    def model_spec(self) -> dict[str, Any]:
        return {"model": self.name, "kwargs": dict(self.g_kwargs)}

    def train_step(self, batch: Mapping[str, Any], step: int) -> dict[str, float]:
        G_A, G_B, D_A, D_B = (self.nets[k] for k in ("G_A", "G_B", "D_A", "D_B"))
        real_A, real_B = self._inputs(batch)
        logs: dict[str, float] = {}

        # 1. forward
        fake_B = G_A(real_A)
        rec_A = G_B(fake_B)
        fake_A = G_B(real_B)
        rec_B = G_A(fake_A)

        # 2. G_A + G_B step, discriminators frozen
        set_requires_grad([D_A, D_B], False)
        try:
            loss_G, parts = cycle_generator_loss(
                self.nets, real_A, real_B, fake_A, fake_B, rec_A, rec_B, gan_mode=self.gan_mode,
                lambda_A=self.lambda_A, lambda_B=self.lambda_B, lambda_identity=self.lambda_identity)
            logs.update({k: float(v.detach()) for k, v in parts.items()})
            logs["G"] = float(loss_G.detach())
            self._backward_step(loss_G, ["G"], "G", logs)
        finally:
            set_requires_grad([D_A, D_B], True)

        # 3. D_A + D_B step on pooled fakes
        pooled_B = self.pools["fake_B"].query(fake_B)
        pooled_A = self.pools["fake_A"].query(fake_A)
        loss_D_A = discriminator_loss(D_A(real_B), D_A(pooled_B), self.gan_mode)
        loss_D_B = discriminator_loss(D_B(real_A), D_B(pooled_A), self.gan_mode)
        logs["D_A"], logs["D_B"] = float(loss_D_A.detach()), float(loss_D_B.detach())
        self._check("loss D_A", loss_D_A, logs)
        self._backward_step(loss_D_A + loss_D_B, ["D"], "D", logs)
        return logs
