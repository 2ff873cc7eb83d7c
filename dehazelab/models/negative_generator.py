"""NEGCUT-style negative generators: a learned "queue" of hard negatives per tapped layer.

``docs/methods.md`` §3.4 (NEGCUT, Wang et al., ICCV 2021, ``WeilunWang/NEGCUT:models/negative_generator.py``,
``--netN neg_gen_momentum``), the code base CDD-GAN's README says it builds on (§3.1). For every
tapped encoder layer ``l``:

1. the *source* image's features at that layer go through a **momentum projection head** ``H′`` (an
   exponential moving average of the PatchNCE head ``H``) at **all** positions, and are averaged over
   the positions: one ``nc``-vector per image and layer (:func:`pooled_embeddings`);
2. that vector is repeated ``num_negatives`` times, each copy concatenated with fresh noise
   ``z ~ N(0, I_64)``;
3. a 2-layer MLP ``Linear(nc + 64, nc) → ReLU → Linear(nc, nc)`` maps each of them to a vector, which
   is L2-normalised (``v / (‖v‖₂ + 1e-7)``, CUT's ``Normalize``).

So each image gets ``num_negatives`` generated negatives per layer (NEGCUT: 256 = ``num_patches``),
which live in the same unit sphere as the PatchNCE keys. The generator is trained to **maximise** the
contrastive loss of the queries against them (plus a diversity term), in alternation with the
translation networks that minimise it — see :mod:`dehazelab.methods.cddgan`.

Differences from the NEGCUT code (documented on purpose):

* **Eager creation.** NEGCUT creates the MLPs lazily at the first forward; we take the number of
  layers and ``nc`` up front (same parameters: 5 layers × (320·256 + 256 + 256·256 + 256) = 739,840
  at ``nc=256``). Initialise with ``init_weights(net, "xavier", 0.02)`` — what NEGCUT's lazy
  ``create_layers`` ends up applying (``init_net(self, opt.init_type, opt.init_gain)``; the
  ``xavier, 1.0`` call of ``define_N`` runs before any layer exists).
* **Noise RNG.** NEGCUT draws the noise with ``torch.randn`` on the device; we draw it on the CPU from
  an explicit ``torch.Generator`` (or torch's global one, which the training loop checkpoints) and
  move it, so runs are reproducible and resume exactly on every device.
* ``hidden`` (NEGCUT: ``= nc``) is a parameter.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from dehazelab.models.projection_head import l2_normalize

__all__ = ["NegativeGenerator", "pooled_embeddings", "negative_diversity"]


def pooled_embeddings(heads: nn.Module, feats: Sequence[torch.Tensor]) -> list[torch.Tensor]:
    """Per layer, the mean over **all** positions of ``heads``' L2-normalised embeddings: ``(B, nc)``.

    NEGCUT's ``netF_(feat_k, num_patches=0)`` followed by ``mean(dim=(1, 2))`` inside the negative
    generator (the mean of unit vectors, not re-normalised). ``heads`` is a
    :class:`~dehazelab.models.projection_head.PatchSampleMLP` (``num_patches=0`` → every position).
    """
    emb, _ = heads(feats, 0)
    return [e.reshape(f.shape[0], -1, e.shape[-1]).mean(dim=1) for e, f in zip(emb, feats)]


def negative_diversity(negatives: Sequence[torch.Tensor], num_negatives: int) -> torch.Tensor:
    """NEGCUT's diversity ("mode seeking") term, to be *minimised* by the negative generator:

    ``−mean |n[:, :M/2] − n[:, M/2:]|`` per layer (``n`` viewed as ``(B, M, nc)``), averaged over
    layers (``lambda_MS_neg`` is applied by the caller). Lower = the two halves of the queue differ
    more, i.e. the generator does not collapse all noise draws onto one vector.
    """
    m = int(num_negatives)
    if m < 2 or m % 2:
        raise ValueError(f"num_negatives must be even and >= 2 for the diversity term, got {m}")
    terms = []
    for n in negatives:
        n = n.reshape(-1, m, n.shape[-1])
        terms.append(-(n[:, : m // 2] - n[:, m // 2:]).abs().mean())
    return torch.stack(terms).mean()


class NegativeGenerator(nn.Module):
    """One noise-conditioned MLP per tapped layer, producing L2-normalised hard negatives.

    Parameters
    ----------
    n_layers:
        Number of tapped layers (NEGCUT: 5, for ``nce_layers`` 0,4,8,12,16).
    nc:
        Width of the projection heads' embeddings (NEGCUT ``netF_nc`` 256); the negatives have it too.
    z_dim:
        Noise dimension (NEGCUT 64).
    hidden:
        Hidden width of the MLP (NEGCUT: ``nc``; ``None`` → ``nc``).
    num_negatives:
        Default number of negatives per image and layer (NEGCUT: ``num_patches`` = 256).
    """

    def __init__(self, n_layers: int, nc: int = 256, z_dim: int = 64, hidden: int | None = None,
                 num_negatives: int = 256):
        super().__init__()
        if n_layers < 1 or nc < 1 or z_dim < 0 or num_negatives < 1:
            raise ValueError("NegativeGenerator needs n_layers >= 1, nc >= 1, z_dim >= 0, num_negatives >= 1")
        self.n_layers, self.nc, self.z_dim = int(n_layers), int(nc), int(z_dim)
        self.hidden = int(nc if hidden is None else hidden)
        self.num_negatives = int(num_negatives)
        self.mlps = nn.ModuleList(
            nn.Sequential(nn.Linear(self.nc + self.z_dim, self.hidden), nn.ReLU(inplace=False),
                          nn.Linear(self.hidden, self.nc))
            for _ in range(self.n_layers)
        )

    def noise(self, batch: int, num_negatives: int | None = None, device: torch.device | str | None = None,
              generator: torch.Generator | None = None) -> list[torch.Tensor]:
        """Fresh ``z ~ N(0, I)`` of shape ``(batch, M, z_dim)`` per layer (drawn on the CPU)."""
        m = self.num_negatives if num_negatives is None else int(num_negatives)
        return [torch.randn(batch, m, self.z_dim, generator=generator).to(device) for _ in range(self.n_layers)]

    def forward(self, pooled: Sequence[torch.Tensor], num_negatives: int | None = None,
                noise: Sequence[torch.Tensor] | None = None,
                generator: torch.Generator | None = None) -> list[torch.Tensor]:
        """``pooled[l]``: ``(B, nc)`` conditioning vectors (:func:`pooled_embeddings` of the momentum
        head). Returns per layer ``(B * M, nc)`` unit vectors, image-major (rows ``b*M:(b+1)*M``
        belong to image ``b``). ``noise`` (from :meth:`noise`) fixes the draws; otherwise fresh noise
        comes from ``generator`` (torch's global RNG when None)."""
        if len(pooled) != self.n_layers:
            raise ValueError(f"got {len(pooled)} pooled feature vectors for {self.n_layers} layers")
        b = pooled[0].shape[0]
        m = self.num_negatives if num_negatives is None else int(num_negatives)
        if noise is None:
            noise = self.noise(b, m, pooled[0].device, generator)
        out = []
        for l, (p, z) in enumerate(zip(pooled, noise)):
            if p.shape != (b, self.nc):
                raise ValueError(f"layer {l}: expected pooled shape {(b, self.nc)}, got {tuple(p.shape)}")
            z = z.to(p.device, p.dtype)
            if z.shape[:2] != (b, m):
                raise ValueError(f"layer {l}: noise shape {tuple(z.shape)} does not match (B={b}, M={m})")
            inp = torch.cat([p.unsqueeze(1).expand(b, m, self.nc), z], dim=2).reshape(b * m, -1)
            out.append(l2_normalize(self.mlps[l](inp), dim=1))
        return out
