"""CUT and FastCUT (Park, Efros, Zhang, Zhu, ECCV 2020) as one method object for the unpaired loop.

``docs/methods.md`` §2. Networks (official defaults, ``models/cut_model.py`` of
``taesungp/contrastive-unpaired-translation``):

* ``G``: anti-aliased ResNet generator (``resnet_9blocks``, ngf 64, non-affine InstanceNorm) —
  :class:`~dehazelab.models.resnet_generator.ResnetGenerator`; its first modules are the PatchNCE
  encoder (taps ``nce_layers`` = 0, 4, 8, 12, 16);
* ``D``: anti-aliased PatchGAN (receptive field 84×84; 70×70 without anti-aliasing) — :class:`~dehazelab.models.patchgan.PatchGANDiscriminator`;
* ``F``: one 2-layer MLP (256 wide) per tapped layer + L2 norm —
  :class:`~dehazelab.models.projection_head.PatchSampleMLP`;
* all initialised ``xavier_normal_(gain 0.02)``, biases 0; Adam(2e-4, β 0.5/0.999) each;
  LSGAN; no image pool (the official code forces ``pool_size 0``).

One iteration (``optimize_parameters``), in this order:

1. forward ``G`` on ``real = cat(real_A, real_B)`` when ``nce_idt`` (CUT) else ``real_A`` — FastCUT
   first flips ``real`` horizontally with probability ½ (``flip_equivariance``);
2. **D step**: ``½[(D(real_B) − 1)² + D(fake_B.detach())²]``, one Adam step on D;
3. **G + F step** with D frozen: ``λ_GAN·(D(fake_B) − 1)²`` plus PatchNCE —
   CUT: ``½(NCE(real_A, fake_B) + NCE(real_B, idt_B))`` (note the ½ of the code, §2.6),
   FastCUT: ``NCE(real_A, fake_B)``; each NCE term is the mean over layers of the per-layer
   PatchNCE, times ``λ_NCE`` (1 for CUT, 10 for FastCUT). One Adam step on G, then one on F.

The logged ``NCE`` / ``NCE_Y`` are the λ-weighted terms (as the official ``loss_NCE``), ``G`` is the
total generator loss, ``D`` the discriminator loss, ``stat_flipped`` 1.0 when FastCUT flipped the
input, ``gnorm_D`` / ``gnorm_G`` the gradient norms (``gnorm_G`` over G and F together).

Where we differ (maths unchanged, float rounding aside):

* **Fewer encoder passes.** The official code runs the encoder four more times per CUT iteration
  (queries of fake_B and idt_B, keys of real_A and real_B, the key passes with an unused autograd
  graph). We take the keys from the taps of the main ``G`` forward (same weights: only D was stepped
  in between; InstanceNorm is per image), run *one* query pass over ``cat(fake_B, idt_B)`` and split
  it, and run D once over ``cat(real_B, fake_B)`` in the D step. When FastCUT flipped the input the
  main-pass taps belong to the flipped image, so the keys of the unflipped ``real_A`` are computed by
  a separate (no-grad) encoder pass, as officially. ``benchmarks/bench_cut_step.py`` checks that these
  variants give the same losses and gradients.
* **RNG.** The flip coin and the patch positions come from torch's global generator (checkpointed by
  the loop) instead of NumPy's.
* Data range: batches arrive in [0, 1] and are mapped to [-1, 1] here (``to_pm1``); the official
  loader normalises to [-1, 1] directly.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import torch

from dehazelab.losses.gan import GAN_MODES, discriminator_loss, generator_loss
from dehazelab.losses.patchnce import PatchNCE
from dehazelab.methods import UnpairedMethod, set_requires_grad
from dehazelab.models.init import init_weights
from dehazelab.models.patchgan import PatchGANDiscriminator
from dehazelab.models.projection_head import PatchSampleMLP
from dehazelab.models.resnet_generator import CUT_NCE_LAYERS, ResnetGenerator

__all__ = ["CUT", "CUT_MODES"]

#: The settings that distinguish the two modes (``--CUT_mode``; ``docs/methods.md`` §2.6). The
#: official epoch counts are CUT 200 + 200 (decay), FastCUT 150 + 50 — set them in the train config.
CUT_MODES: dict[str, dict[str, Any]] = {
    "cut": {"lambda_NCE": 1.0, "nce_idt": True, "flip_equivariance": False},
    "fastcut": {"lambda_NCE": 10.0, "nce_idt": False, "flip_equivariance": True},
}


class CUT(UnpairedMethod):
    """CUT (``mode="cut"``) or FastCUT (``mode="fastcut"``): hazy (A) → clear (B).

    Parameters
    ----------
    mode:
        ``"cut"`` or ``"fastcut"``; sets the defaults of ``lambda_NCE``, ``nce_idt`` and
        ``flip_equivariance`` (see :data:`CUT_MODES`); each can still be overridden.
    ngf, n_blocks, antialias, antialias_up:
        Generator (64, 9, True, True). CPU teaching runs: ``n_blocks=6`` and smaller ``ngf``.
    ndf, n_layers_D:
        PatchGAN (64, 3), anti-aliased like the generator when ``antialias``.
    nce_layers, num_patches, nce_tau, netF_nc:
        PatchNCE taps (0, 4, 8, 12, 16), sampled positions per layer (256), temperature (0.07),
        MLP width (256).
    lambda_GAN, lambda_NCE, nce_idt, flip_equivariance:
        Loss weights and switches (1; mode defaults).
    gan_mode:
        ``"lsgan"`` (official default) or ``"vanilla"``.
    lr, betas:
        Adam for G, D and F (2e-4, (0.5, 0.999)).
    init_type, init_gain:
        Weight init (``"xavier"``, 0.02), drawn from a generator seeded with ``seed`` — the
        initial weights do not depend on the global RNG.
    """

    generator_name = "G"

    def __init__(self, mode: str = "cut", *, ngf: int = 64, n_blocks: int = 9, antialias: bool = True,
                 antialias_up: bool = True, ndf: int = 64, n_layers_D: int = 3,
                 nce_layers: Sequence[int] = CUT_NCE_LAYERS, num_patches: int = 256, nce_tau: float = 0.07,
                 netF_nc: int = 256, lambda_GAN: float = 1.0, lambda_NCE: float | None = None,
                 nce_idt: bool | None = None, flip_equivariance: bool | None = None, gan_mode: str = "lsgan",
                 lr: float = 2e-4, betas: Sequence[float] = (0.5, 0.999), init_type: str = "xavier",
                 init_gain: float = 0.02, seed: int = 0, global_residual: bool = False):
        super().__init__()
        if mode not in CUT_MODES:
            raise ValueError(f"unknown CUT mode {mode!r}; choose from {sorted(CUT_MODES)}")
        if gan_mode not in GAN_MODES:
            raise ValueError(f"unknown gan_mode {gan_mode!r}; choose from {GAN_MODES}")
        defaults = CUT_MODES[mode]
        self.name = mode
        self.mode = mode
        self.lambda_GAN = float(lambda_GAN)
        self.lambda_NCE = float(defaults["lambda_NCE"] if lambda_NCE is None else lambda_NCE)
        self.nce_idt = bool(defaults["nce_idt"] if nce_idt is None else nce_idt)
        self.flip_equivariance = bool(defaults["flip_equivariance"] if flip_equivariance is None else flip_equivariance)
        self.gan_mode = gan_mode
        self.nce_layers = tuple(int(i) for i in nce_layers)
        self.num_patches, self.nce_tau, self.netF_nc = int(num_patches), float(nce_tau), int(netF_nc)
        self.lr0, self.betas = float(lr), tuple(float(b) for b in betas)
        self.init_type, self.init_gain, self.seed = init_type, float(init_gain), int(seed)
        self.g_kwargs = {"ngf": int(ngf), "n_blocks": int(n_blocks), "antialias": bool(antialias),
                         "antialias_up": bool(antialias_up)}
        if global_residual:  # generator output x + G(x) (CPU-scale recipe; models/resnet_generator.py)
            self.g_kwargs["global_residual"] = True
        self.d_kwargs = {"ndf": int(ndf), "n_layers": int(n_layers_D), "antialias": bool(antialias)}

        gen = torch.Generator().manual_seed(self.seed)
        G = ResnetGenerator(**self.g_kwargs)
        encoder_end = G.bottleneck_start + G.n_blocks
        if max(self.nce_layers) >= encoder_end:
            warnings.warn(f"nce_layers {self.nce_layers} tap module(s) past the last residual block "
                          f"(index {encoder_end - 1}): the 'encoder' then includes decoder layers", stacklevel=2)
        D = PatchGANDiscriminator(**self.d_kwargs)
        F = PatchSampleMLP(in_channels=G.feature_channels(self.nce_layers), nc=self.netF_nc, use_mlp=True)
        for net in (G, D, F):
            init_weights(net, self.init_type, self.init_gain, generator=gen)
        self.nets = {"G": G, "D": D, "F": F}
        adam = {"lr": self.lr0, "betas": self.betas}
        # step order inside train_step: D, then G, then F (the official optimizers list is [G, D, F])
        self.optimizers = {k: torch.optim.Adam(self.nets[k].parameters(), **adam) for k in ("G", "D", "F")}
        self.nce = PatchNCE(G, F, self.nce_layers, self.num_patches, self.nce_tau)

    # ------------------------------------------------------------------------------------------
    def hparams(self) -> dict[str, Any]:
        return {"method": self.name, **self.g_kwargs, "ndf": self.d_kwargs["ndf"], "n_layers_D": self.d_kwargs["n_layers"],
                "nce_layers": list(self.nce_layers), "num_patches": self.num_patches, "nce_tau": self.nce_tau,
                "netF_nc": self.netF_nc, "lambda_GAN": self.lambda_GAN, "lambda_NCE": self.lambda_NCE,
                "nce_idt": self.nce_idt, "flip_equivariance": self.flip_equivariance, "gan_mode": self.gan_mode,
                "lr": self.lr0, "betas": list(self.betas), "init_type": self.init_type, "init_gain": self.init_gain,
                "seed": self.seed}

    def model_spec(self) -> dict[str, Any]:
        return {"model": self.name, "kwargs": dict(self.g_kwargs)}

    # ------------------------------------------------------------------------------------------
    def train_step(self, batch: Mapping[str, Any], step: int) -> dict[str, float]:
        G, D = self.nets["G"], self.nets["D"]
        real_A, real_B = self._inputs(batch)
        b = real_A.shape[0]
        logs: dict[str, float] = {}

        # 1. forward G (on the identity batch for CUT), FastCUT's random flip
        real = torch.cat([real_A, real_B]) if self.nce_idt else real_A
        flipped = bool(self.flip_equivariance and float(torch.rand(())) < 0.5)
        if flipped:
            real = torch.flip(real, dims=[3])
        use_nce = self.lambda_NCE > 0
        reuse_keys = use_nce and not flipped
        if reuse_keys:
            fake, taps = G(real, self.nce_layers, encode_only=False)
            taps = [t.detach() for t in taps]
        else:
            fake = G(real)
        fake_B = fake[:b]
        idt_B = fake[b:] if self.nce_idt else None
        logs["stat_flipped"] = float(flipped)

        # 2. D step (one forward over cat(real_B, fake_B): InstanceNorm is per image)
        set_requires_grad(D, True)
        pred = D(torch.cat([real_B, fake_B.detach()]))
        loss_D = discriminator_loss(pred[:b], pred[b:], self.gan_mode)
        logs["D"] = float(loss_D.detach())
        self._backward_step(loss_D, ["D"], "D", logs)

        # 3. G + F step with D frozen
        set_requires_grad(D, False)
        try:
            loss_G_GAN = generator_loss(D(fake_B), self.gan_mode) * self.lambda_GAN
            logs["G_GAN"] = float(loss_G_GAN.detach())
            loss_G = loss_G_GAN
            if use_nce:
                queries = G(fake if self.nce_idt else fake_B, self.nce_layers, encode_only=True)
                if reuse_keys:
                    keys = taps
                else:  # keys of the *unflipped* inputs
                    keys = self.nce.key_features(torch.cat([real_A, real_B]) if self.nce_idt else real_A)
                nce_x = self.nce.from_features([q[:b] for q in queries], [k[:b] for k in keys],
                                               flipped=flipped) * self.lambda_NCE
                logs["NCE"] = float(nce_x.detach())
                if self.nce_idt:
                    nce_y = self.nce.from_features([q[b:] for q in queries], [k[b:] for k in keys],
                                                   flipped=flipped) * self.lambda_NCE
                    logs["NCE_Y"] = float(nce_y.detach())
                    loss_G = loss_G + 0.5 * (nce_x + nce_y)
                else:
                    loss_G = loss_G + nce_x
            logs["G"] = float(loss_G.detach())
            self._backward_step(loss_G, ["G", "F"], "G", logs)
        finally:
            set_requires_grad(D, True)
        return logs
