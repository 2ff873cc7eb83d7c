"""CDD-GAN (Chen et al., ECCV 2022, "Unpaired Deep Image Dehazing Using Contrastive Disentanglement
Learning") — a **labelled reconstruction**, as a method object for the unpaired loop.

No official code has been released and only the abstract and a thumbnail of the overview figure are
reachable; the authors' README (left in a merge conflict of their DCD-GAN repository) says the code
"is based on the NEGCUT" (``docs/methods.md`` §3.1–3.4). This module implements the reconstruction
recommended in ``docs/methods.md`` §3.7. Every design decision carries its source:

* **[ABS]** the abstract (§3.2), **[FIG]** the overview figure (§3.3), **[NEGCUT]** the NEGCUT code
  (§3.4), **[DCD]** the authors' DCD-GAN code (§3.5, itself DCLGAN-based), **[CG]** CycleGAN's
  official code, **[OURS]** our choice where nothing reachable says anything.

Domain A = hazy, B = clear.

Networks
--------
* ``G_A`` (hazy → clear, the dehazer) and ``G_B`` (clear → hazy): CUT's anti-aliased ResNet generator
  [§3.7: "CUT's antialiased ResNet-9 G"; CycleGAN framework: ABS, FIG two cycles]; ``D_A`` (judges
  clear images) and ``D_B`` (judges hazy ones): PatchGANs, LSGAN, 50-image pools [CG].
* ``H_A``, ``H_B``: PatchSampleMLP projection heads (2-layer MLP, ``netF_nc`` 256, L2 norm) on the
  features of ``G_A``'s and ``G_B``'s encoders respectively [DCD: F1 on G_A features, F2 on G_B's].
* ``H_A_ema``, ``H_B_ema``: momentum copies of the heads, ``H′ ← m·H′ + (1 − m)·H`` with ``m = 0.9``
  after every generator step [NEGCUT ``accumulate``]; they start as copies of ``H`` [OURS: NEGCUT
  initialises ``F_`` separately, so it starts random and approaches ``F`` through the EMA].
* ``N_A`` (the figure's G_neg) and ``N_B`` (F_neg): :class:`~dehazelab.models.negative_generator.NegativeGenerator`
  — per layer, ``[mean over positions of H′(source features) ; z ~ N(0, I_64)] → Linear(nc+64, nc) → ReLU
  → Linear(nc, nc) → L2``, ``num_negatives`` (256) negatives per image and layer [NEGCUT
  ``neg_gen_momentum``; one per direction: FIG]. "Queue" of the abstract = these per-iteration
  generated negatives [NEGCUT]; no FIFO across iterations [OURS], no AdCo-style learnable bank
  (§3.6b; not implemented).

Contrastive branch (cross-encoder PatchNCE in both directions) [DCD / DCLGAN; FIG: the query of the
top cycle is ``F_enc(N_H)``]
---------------------------------------------------------------------------------------------
* direction X (hazy → clear): **query** = ``H_B(G_B.enc(fake_B))``, **key/positive** = ``H_A(G_A.enc(real_A))``
  at the same sampled positions (the keys detached, as in CUT/NEGCUT/DCLGAN);
* direction Y (clear → hazy): query ``H_A(G_A.enc(fake_A))``, key ``H_B(G_B.enc(real_B))``;
* negatives (``negatives=``): ``"in_image"`` — the other sampled key positions of the same image
  (CUT's PatchNCE, the "+ contrastive" ablation row), or ``"generated"`` — only the negatives of
  ``N_A`` (X) / ``N_B`` (Y), conditioned on the source image [NEGCUT ``LearnedPatchNCELoss``: only
  generated negatives]; τ 0.07, ``num_patches`` 256, layers 0, 4, 8, 12, 16 [NEGCUT/CUT; DCD-GAN uses
  4, 8, 12, 16];
* **clear exemplars** (``exemplars=True``) [ABS "unpaired clear exemplars enhance task-relevant
  factors"; form entirely OURS]: the unpaired clear image of the batch, embedded in the *query* space
  of X by the momentum head (``H_B_ema(G_B.enc(real_B))``, averaged over positions, re-normalised —
  a "clear prototype" per layer) is an **extra positive** of every dehazed query:
  ``λ_ex · ℓ(q, e, same negatives)`` is added to the X term (the figure draws vectors on the clear
  side as positives of ``F_enc(N_H)``; what exactly they are is not readable [FIG]);
* weights: ``λ_NCE · ½ (NCE_X + NCE_Y)`` with ``λ_NCE = 2`` [DCD/DCLGAN ``lambda_NCE 2`` with the ½],
  per-layer means averaged over layers [CUT/NEGCUT].

Objective of the generators (G_A, G_B, heads) [CG + the branch above]::

    L_G = (D_A(fake_B) − 1)² + (D_B(fake_A) − 1)² + 10‖rec_A − real_A‖₁ + 10‖rec_B − real_B‖₁
          + 0.5·(10‖G_A(real_B) − real_B‖₁ + 10‖G_B(real_A) − real_A‖₁)
          + λ_NCE · ½ (NCE_X + λ_ex·EX + NCE_Y)

Negative generators, adversarial contrastive loss [ABS "maximizing the adversarial contrastive loss";
NEGCUT ``compute_N_loss``]::

    L_N = − λ_NCE · ½ (NCE_X + λ_ex·EX + NCE_Y)[q, k detached]  +  λ_MS · ½ (div(n_X) + div(n_Y))

with NEGCUT's diversity term ``div(n) = −mean |n_{1:M/2} − n_{M/2+1:M}|`` (``lambda_MS_neg`` 1)
[NEGCUT; NEGCUT applies it to the last direction's negatives only (its ``neg_k_pool`` is
overwritten) — we average both, OURS].

One iteration, in this order [§3.7 item 5 = NEGCUT's order; the abstract's "update alternately"]
-------------------------------------------------------------------------------------------------
1. forward: ``fake_B = G_A(real_A)``, ``rec_A = G_B(fake_B)``, ``fake_A = G_B(real_B)``,
   ``rec_B = G_A(fake_A)`` — the same passes give the encoder taps (keys of ``real_A`` / ``real_B``,
   queries of ``fake_B`` / ``fake_A``: no extra encoder pass is needed);
2. **D step** (``D_A`` + ``D_B`` on pooled fakes) [CG losses; D *first* as NEGCUT/CUT — official
   CycleGAN steps G first];
3. **N step** (``N_A`` + ``N_B``, minimising ``L_N``; queries and keys detached) [NEGCUT];
4. **G step** (``G_A`` + ``G_B``, then ``H_A`` + ``H_B``), D frozen, negatives re-generated with fresh
   noise and fresh patch positions and treated as constants [NEGCUT re-runs the NCE computation; in
   NEGCUT gradient also reaches G through the negatives' conditioning input — we detach it, OURS];
5. EMA of the momentum heads [NEGCUT].

With ``lambda_NCE = 0`` the class is its own CycleGAN backbone (no heads, no negative generators) —
the "CycleGAN" ablation row (anti-aliased networks and D-first order, so it differs from
:class:`~dehazelab.methods.cyclegan.CycleGAN` only where CDD-GAN's backbone does). ``variant=``
selects the ablation rows (:data:`CDDGAN_VARIANTS`).

Adam 2e-4 (0.5, 0.999) for every optimiser, xavier 0.02 init, batch 1 [NEGCUT/CUT; DCD-GAN uses lr
1e-4 and hinge loss, and leaves its heads' optimiser at PyTorch's default 1e-3 — a quirk we do not
copy]. Randomness (patch positions, noise, pools) comes from torch's global RNG, which the loop
checkpoints, so resume is exact.

Logged: ``G_A``, ``G_B``, ``cycle_A``, ``cycle_B``, ``idt_A``, ``idt_B``, ``NCE_X``, ``NCE_Y``,
``EX`` (weighted as in ``L_G``, before the ½), ``G``, ``D_A``, ``D_B``, ``N`` (``L_N``), ``N_div``;
``stat_sim_pos`` / ``stat_sim_neg`` (mean cosine of the X queries to their positives / negatives,
G step); ``gnorm_D``, ``gnorm_N``, ``gnorm_G``.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from typing import Any

import torch

from dehazelab.losses.gan import GAN_MODES, discriminator_loss
from dehazelab.losses.contrastive_nce import contrastive_nce  # CDD-GAN's InfoNCE, re-exported
from dehazelab.methods import UnpairedMethod, set_requires_grad
from dehazelab.methods.cyclegan import cycle_generator_loss
from dehazelab.models.image_pool import ImagePool
from dehazelab.models.init import init_weights
from dehazelab.models.negative_generator import NegativeGenerator, negative_diversity, pooled_embeddings
from dehazelab.models.patchgan import PatchGANDiscriminator
from dehazelab.models.projection_head import PatchSampleMLP, l2_normalize
from dehazelab.models.resnet_generator import CUT_NCE_LAYERS, ResnetGenerator

__all__ = ["CDDGAN", "CDDGAN_VARIANTS", "NEGATIVE_KINDS", "contrastive_nce"]

NEGATIVE_KINDS = ("in_image", "generated")

#: The ablation rows (keyword defaults per variant; any of them can still be overridden).
CDDGAN_VARIANTS: dict[str, dict[str, Any]] = {
    "cyclegan": {"lambda_NCE": 0.0, "negatives": "in_image", "exemplars": False},
    "contrastive": {"lambda_NCE": 2.0, "negatives": "in_image", "exemplars": False},
    "cddgan": {"lambda_NCE": 2.0, "negatives": "generated", "exemplars": False},
    "cddgan_exemplars": {"lambda_NCE": 2.0, "negatives": "generated", "exemplars": True},
}


class CDDGAN(UnpairedMethod):
    """CDD-GAN reconstruction (see the module docstring); ``G_A`` is the hazy → clear generator.

    Parameters (defaults: ``docs/methods.md`` §3.7 / NEGCUT; sources in the module docstring)
    ----------
    variant:
        ``"cddgan"`` (default: generated hard negatives), ``"contrastive"`` (in-image negatives),
        ``"cyclegan"`` (no contrastive branch), ``"cddgan_exemplars"`` (+ clear exemplars): sets the
        defaults of ``lambda_NCE``, ``negatives`` and ``exemplars`` (:data:`CDDGAN_VARIANTS`).
    ngf, n_blocks, antialias, antialias_up, ndf, n_layers_D:
        Networks (64, 9, True, True, 64, 3). CPU teaching runs: ``n_blocks=6`` and small widths.
    lambda_A, lambda_B, lambda_identity, pool_size, lambda_GAN, gan_mode:
        CycleGAN backbone (10, 10, 0.5, 50, 1, ``"lsgan"``).
    lambda_NCE, nce_layers, num_patches, nce_tau, netF_nc:
        Contrastive branch (variant default 2; (0, 4, 8, 12, 16); 256; 0.07; 256).
    negatives, num_negatives, z_dim, lambda_MS, momentum:
        ``"in_image"`` / ``"generated"``; generated negatives per image and layer (256, even);
        noise dimension (64); diversity weight (1); EMA decay of the momentum heads (0.9).
    exemplars, lambda_exemplar:
        Clear exemplars as extra positives of the dehazed queries (variant default False; weight 1).
    lr, betas, init_type, init_gain, seed:
        Adam 2e-4 (0.5, 0.999) for G, D, H and N; ``"xavier"`` 0.02 init from a generator seeded
        with ``seed`` (initial weights do not depend on the global RNG).
    """

    name = "cddgan"
    generator_name = "G_A"

    def __init__(self, variant: str = "cddgan", *, ngf: int = 64, n_blocks: int = 9, antialias: bool = True,
                 antialias_up: bool = True, ndf: int = 64, n_layers_D: int = 3, lambda_A: float = 10.0,
                 lambda_B: float = 10.0, lambda_identity: float = 0.5, pool_size: int = 50, lambda_GAN: float = 1.0,
                 gan_mode: str = "lsgan", lambda_NCE: float | None = None,
                 nce_layers: Sequence[int] = CUT_NCE_LAYERS, num_patches: int = 256, nce_tau: float = 0.07,
                 netF_nc: int = 256, negatives: str | None = None, num_negatives: int = 256, z_dim: int = 64,
                 lambda_MS: float = 1.0, momentum: float = 0.9, exemplars: bool | None = None,
                 lambda_exemplar: float = 1.0, lr: float = 2e-4, betas: Sequence[float] = (0.5, 0.999),
                 init_type: str = "xavier", init_gain: float = 0.02, seed: int = 0, global_residual: bool = False):
        super().__init__()
        if variant not in CDDGAN_VARIANTS:
            raise ValueError(f"unknown CDD-GAN variant {variant!r}; choose from {sorted(CDDGAN_VARIANTS)}")
        if gan_mode not in GAN_MODES:
            raise ValueError(f"unknown gan_mode {gan_mode!r}; choose from {GAN_MODES}")
        d = CDDGAN_VARIANTS[variant]
        self.variant = variant
        self.lambda_NCE = float(d["lambda_NCE"] if lambda_NCE is None else lambda_NCE)
        self.negatives = str(d["negatives"] if negatives is None else negatives)
        self.exemplars = bool(d["exemplars"] if exemplars is None else exemplars)
        if self.negatives not in NEGATIVE_KINDS:
            raise ValueError(f"negatives must be one of {NEGATIVE_KINDS}, got {self.negatives!r}")
        self.lambda_A, self.lambda_B, self.lambda_identity = float(lambda_A), float(lambda_B), float(lambda_identity)
        self.pool_size, self.lambda_GAN, self.gan_mode = int(pool_size), float(lambda_GAN), gan_mode
        self.nce_layers = tuple(int(i) for i in nce_layers)
        self.num_patches, self.nce_tau, self.netF_nc = int(num_patches), float(nce_tau), int(netF_nc)
        self.num_negatives, self.z_dim = int(num_negatives), int(z_dim)
        self.lambda_MS, self.momentum = float(lambda_MS), float(momentum)
        self.lambda_exemplar = float(lambda_exemplar)
        self.lr0, self.betas = float(lr), tuple(float(b) for b in betas)
        self.init_type, self.init_gain, self.seed = init_type, float(init_gain), int(seed)
        if not 0.0 <= self.momentum <= 1.0:
            raise ValueError(f"momentum must be in [0, 1], got {momentum}")
        if self.use_generated and self.lambda_MS > 0 and (self.num_negatives < 2 or self.num_negatives % 2):
            raise ValueError(f"num_negatives must be even and >= 2 (diversity term), got {num_negatives}")
        self.g_kwargs = {"ngf": int(ngf), "n_blocks": int(n_blocks), "antialias": bool(antialias),
                         "antialias_up": bool(antialias_up)}
        if global_residual:  # generator output x + G(x) (CPU-scale recipe; models/resnet_generator.py)
            self.g_kwargs["global_residual"] = True
        self.d_kwargs = {"ndf": int(ndf), "n_layers": int(n_layers_D), "antialias": bool(antialias)}

        gen = torch.Generator().manual_seed(self.seed)
        n: dict[str, torch.nn.Module] = {"G_A": ResnetGenerator(**self.g_kwargs), "G_B": ResnetGenerator(**self.g_kwargs),
                                         "D_A": PatchGANDiscriminator(**self.d_kwargs),
                                         "D_B": PatchGANDiscriminator(**self.d_kwargs)}
        if self.use_nce:
            G = n["G_A"]
            if max(self.nce_layers) >= G.bottleneck_start + G.n_blocks:
                raise ValueError(f"nce_layers {self.nce_layers} tap past the last residual block "
                                 f"(index {G.bottleneck_start + G.n_blocks - 1}); use more n_blocks")
            ch = G.feature_channels(self.nce_layers)
            n["H_A"] = PatchSampleMLP(in_channels=ch, nc=self.netF_nc, use_mlp=True)
            n["H_B"] = PatchSampleMLP(in_channels=ch, nc=self.netF_nc, use_mlp=True)
            if self.use_generated:
                n["N_A"] = NegativeGenerator(len(self.nce_layers), nc=self.netF_nc, z_dim=self.z_dim,
                                             num_negatives=self.num_negatives)
                n["N_B"] = NegativeGenerator(len(self.nce_layers), nc=self.netF_nc, z_dim=self.z_dim,
                                             num_negatives=self.num_negatives)
        for net in n.values():
            init_weights(net, self.init_type, self.init_gain, generator=gen)
        if self.use_momentum:
            for k in ("H_A", "H_B"):
                ema = copy.deepcopy(n[k])
                set_requires_grad(ema, False)
                n[f"{k}_ema"] = ema
        self.nets = n
        adam = {"lr": self.lr0, "betas": self.betas}
        self.optimizers = {
            "G": torch.optim.Adam([*n["G_A"].parameters(), *n["G_B"].parameters()], **adam),
            "D": torch.optim.Adam([*n["D_A"].parameters(), *n["D_B"].parameters()], **adam),
        }
        if self.use_nce:
            self.optimizers["H"] = torch.optim.Adam([*n["H_A"].parameters(), *n["H_B"].parameters()], **adam)
        if self.use_generated:
            self.optimizers["N"] = torch.optim.Adam([*n["N_A"].parameters(), *n["N_B"].parameters()], **adam)
        self.pools = {"fake_B": ImagePool(self.pool_size), "fake_A": ImagePool(self.pool_size)}

    # ------------------------------------------------------------------------------------------
    @property
    def use_nce(self) -> bool:
        return self.lambda_NCE > 0

    @property
    def use_generated(self) -> bool:
        return self.use_nce and self.negatives == "generated"

    @property
    def use_exemplars(self) -> bool:
        return self.use_nce and self.exemplars and self.lambda_exemplar > 0

    @property
    def use_momentum(self) -> bool:
        return self.use_generated or self.use_exemplars

    def hparams(self) -> dict[str, Any]:
        return {"method": self.name, "variant": self.variant, **self.g_kwargs, "ndf": self.d_kwargs["ndf"],
                "n_layers_D": self.d_kwargs["n_layers"], "lambda_A": self.lambda_A, "lambda_B": self.lambda_B,
                "lambda_identity": self.lambda_identity, "pool_size": self.pool_size, "lambda_GAN": self.lambda_GAN,
                "gan_mode": self.gan_mode, "lambda_NCE": self.lambda_NCE, "nce_layers": list(self.nce_layers),
                "num_patches": self.num_patches, "nce_tau": self.nce_tau, "netF_nc": self.netF_nc,
                "negatives": self.negatives, "num_negatives": self.num_negatives, "z_dim": self.z_dim,
                "lambda_MS": self.lambda_MS, "momentum": self.momentum, "exemplars": self.exemplars,
                "lambda_exemplar": self.lambda_exemplar, "lr": self.lr0, "betas": list(self.betas),
                "init_type": self.init_type, "init_gain": self.init_gain, "seed": self.seed}

    def model_spec(self) -> dict[str, Any]:
        return {"model": self.name, "kwargs": dict(self.g_kwargs)}

    # ------------------------------------------------------------------------------------------
    # pieces (also used by the notebook and the tests)
    def generate_negatives(self, direction: str, key_taps: Sequence[torch.Tensor],
                           noise: Sequence[torch.Tensor] | None = None) -> list[torch.Tensor]:
        """Negatives of ``direction`` ``"X"`` (``N_A``, conditioned on ``real_A``'s ``G_A`` taps) or ``"Y"``
        (``N_B`` on ``real_B``'s ``G_B`` taps): per layer ``(B * num_negatives, nc)``, with N's graph."""
        head, net = ("H_A_ema", "N_A") if direction == "X" else ("H_B_ema", "N_B")
        with torch.no_grad():
            pooled = pooled_embeddings(self.nets[head], [t.detach() for t in key_taps])
        return self.nets[net](pooled, noise=noise)

    def exemplar_prototypes(self, clear_taps: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        """Per layer ``(B, nc)``: the clear images' momentum-head embeddings in X's query space
        (``H_B_ema`` on ``G_B``'s taps of ``real_B``), averaged over positions and re-normalised."""
        with torch.no_grad():
            return [l2_normalize(p, dim=1) for p in pooled_embeddings(self.nets["H_B_ema"], [t.detach() for t in clear_taps])]

    def _direction_loss(self, direction: str, q_taps, k_taps, negatives=None, prototypes=None, stats=None,
                        q_grad: bool = True):
        """Mean over layers of the contrastive loss of one direction (+ the exemplar term for X).

        ``q_taps`` keep their graph (``q_grad=True``, the G step) or are embedded without one
        (``q_grad=False``, the N step: only the negatives carry a graph); keys are always detached.
        Patch positions are drawn from torch's global RNG. Returns ``(nce, ex)`` (``ex`` is 0
        without prototypes)."""
        hk, hq = ("H_A", "H_B") if direction == "X" else ("H_B", "H_A")
        b = q_taps[0].shape[0]
        with torch.no_grad():
            k_pool, ids = self.nets[hk]([t.detach() for t in k_taps], self.num_patches)
        with torch.set_grad_enabled(q_grad and torch.is_grad_enabled()):
            q_pool, _ = self.nets[hq](list(q_taps), self.num_patches, ids)
        nce, ex = [], []
        for li, (q, k) in enumerate(zip(q_pool, k_pool)):
            st = stats if (stats is not None and li == len(q_pool) - 1) else None
            if negatives is None:
                neg, mask = k, True
            else:
                neg, mask = negatives[li], False
            nce.append(contrastive_nce(q, k, neg, self.nce_tau, batch_size=b, mask_diagonal=mask, stats=st))
            if prototypes is not None:
                ex.append(contrastive_nce(q, prototypes[li], neg, self.nce_tau, batch_size=b, mask_diagonal=mask))
        nce_t = torch.stack(nce).mean()
        ex_t = torch.stack(ex).mean() if ex else torch.zeros((), device=nce_t.device)
        return nce_t, ex_t

    def adversarial_objective(self, k_A, k_B, q_X, q_Y, protos=None, noise_X=None, noise_Y=None):
        """``(L_N, contrast, div)`` of the N step for given encoder taps (queries and keys detached);
        ``noise_X`` / ``noise_Y`` fix the negatives' noise (fresh draws otherwise)."""
        n_X = self.generate_negatives("X", k_A, noise_X)
        n_Y = self.generate_negatives("Y", k_B, noise_Y)
        nce_x, ex_x = self._direction_loss("X", [t.detach() for t in q_X], k_A, n_X, protos, q_grad=False)
        nce_y, _ = self._direction_loss("Y", [t.detach() for t in q_Y], k_B, n_Y, q_grad=False)
        contrast = 0.5 * self.lambda_NCE * (nce_x + self.lambda_exemplar * ex_x + nce_y)
        div = 0.5 * (negative_diversity(n_X, self.num_negatives) + negative_diversity(n_Y, self.num_negatives))
        return -contrast + self.lambda_MS * div, contrast, div

    def n_step(self, k_A, k_B, q_X, q_Y, protos=None, logs: dict[str, float] | None = None) -> dict[str, float]:
        """One update of ``N_A`` + ``N_B`` minimising ``L_N`` (= maximising the contrastive loss, plus
        the diversity term); raises :class:`~dehazelab.methods.NonFiniteLoss` before a bad update."""
        logs = {} if logs is None else logs
        loss_N, contrast, div = self.adversarial_objective(k_A, k_B, q_X, q_Y, protos)
        logs["N"], logs["N_div"] = float(loss_N.detach()), float(div.detach())
        self._backward_step(loss_N, ["N"], "N", logs)
        return logs

    @torch.no_grad()
    def _update_momentum(self) -> None:
        """``H′ ← m·H′ + (1 − m)·H`` for both heads (NEGCUT ``accumulate``, decay 0.9)."""
        m = self.momentum
        for k in ("H_A", "H_B"):
            for p_ema, p in zip(self.nets[f"{k}_ema"].parameters(), self.nets[k].parameters()):
                p_ema.mul_(m).add_(p.detach(), alpha=1.0 - m)

    # ------------------------------------------------------------------------------------------
    def train_step(self, batch: Mapping[str, Any], step: int) -> dict[str, float]:
        G_A, G_B, D_A, D_B = (self.nets[k] for k in ("G_A", "G_B", "D_A", "D_B"))
        real_A, real_B = self._inputs(batch)
        logs: dict[str, float] = {}
        L = self.nce_layers

        # 1. forward (the cycle passes give the encoder taps)
        if self.use_nce:
            fake_B, k_A = G_A(real_A, L, encode_only=False)  # keys of X: G_A's encoder on real_A
            rec_A, q_X = G_B(fake_B, L, encode_only=False)  # queries of X: G_B's encoder on fake_B
            fake_A, k_B = G_B(real_B, L, encode_only=False)  # keys of Y (and the clear exemplars)
            rec_B, q_Y = G_A(fake_A, L, encode_only=False)  # queries of Y
            k_A, k_B = [t.detach() for t in k_A], [t.detach() for t in k_B]
        else:
            fake_B = G_A(real_A)
            rec_A = G_B(fake_B)
            fake_A = G_B(real_B)
            rec_B = G_A(fake_A)

        # 2. D step on pooled fakes
        pooled_B = self.pools["fake_B"].query(fake_B)
        pooled_A = self.pools["fake_A"].query(fake_A)
        loss_D_A = discriminator_loss(D_A(real_B), D_A(pooled_B), self.gan_mode)
        loss_D_B = discriminator_loss(D_B(real_A), D_B(pooled_A), self.gan_mode)
        logs["D_A"], logs["D_B"] = float(loss_D_A.detach()), float(loss_D_B.detach())
        self._check("loss D_A", loss_D_A, logs)
        self._check("loss D_B", loss_D_B, logs)
        self._backward_step(loss_D_A + loss_D_B, ["D"], "D", logs)

        protos = self.exemplar_prototypes(k_B) if self.use_exemplars else None

        # 3. N step: the negative generators maximise the contrastive loss (+ diversity)
        if self.use_generated:
            self.n_step(k_A, k_B, q_X, q_Y, protos, logs)

        # 4. G step (G_A + G_B, then the heads), D frozen, negatives constant
        set_requires_grad([D_A, D_B], False)
        try:
            loss_G, parts = cycle_generator_loss(
                self.nets, real_A, real_B, fake_A, fake_B, rec_A, rec_B, gan_mode=self.gan_mode,
                lambda_A=self.lambda_A, lambda_B=self.lambda_B, lambda_identity=self.lambda_identity,
                lambda_GAN=self.lambda_GAN)
            if self.use_nce:
                if self.use_generated:
                    with torch.no_grad():
                        n_X = self.generate_negatives("X", k_A)
                        n_Y = self.generate_negatives("Y", k_B)
                else:
                    n_X = n_Y = None
                st: dict[str, float] = {}
                nce_x, ex_x = self._direction_loss("X", q_X, k_A, n_X, protos, stats=st)
                nce_y, _ = self._direction_loss("Y", q_Y, k_B, n_Y)
                parts["NCE_X"], parts["NCE_Y"] = nce_x * self.lambda_NCE, nce_y * self.lambda_NCE
                if protos is not None:
                    parts["EX"] = ex_x * self.lambda_NCE * self.lambda_exemplar
                loss_G = loss_G + 0.5 * self.lambda_NCE * (nce_x + self.lambda_exemplar * ex_x + nce_y)
                logs["stat_sim_pos"], logs["stat_sim_neg"] = st["sim_pos"], st["sim_neg"]
            logs.update({k: float(v.detach()) for k, v in parts.items()})
            logs["G"] = float(loss_G.detach())
            self._backward_step(loss_G, ["G", "H"] if self.use_nce else ["G"], "G", logs)
        finally:
            set_requires_grad([D_A, D_B], True)

        # 5. EMA of the momentum heads
        if self.use_momentum:
            self._update_momentum()
        return logs
