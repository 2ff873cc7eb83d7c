"""PatchNCE: CUT's multilayer, patchwise contrastive loss (Park et al., ECCV 2020).

``docs/methods.md`` §2.5. For one tapped layer, with ``P`` sampled positions per image, L2-normalised
query vectors ``q_i`` (from the *output* G(x)) and key vectors ``k_j`` (from the *input* x, same
positions):

    ℓ_i = −log [ exp(q_i·k_i/τ) / ( exp(q_i·k_i/τ) + Σ_{j≠i} exp(q_i·k_j/τ) + exp(−10/τ) ) ]

i.e. the positive is the key at the same position and the negatives are the keys at the other
``P − 1`` sampled positions **of the same image**. As in the official code the ``P×P`` similarity
matrix has its diagonal overwritten with −10 *before* the division by τ, so the positive's duplicate
stays in the denominator with weight ``exp(−10/τ) ≈ e^{−143}`` (practically removed) — that is why the
formula above has the extra term. Keys are **detached** (no gradient through the key branch, "to match
MoCo", CUT issue #14). The loss is the cross-entropy with target 0 over the logits
``[q_i·k_i, q_i·k_1, …, q_i·k_P] / τ``, averaged over all ``B·P`` rows.

:class:`PatchNCE` wires this to the generator and the projection heads: per layer it averages
``ℓ`` over the batch's positions, then averages over layers (the official ``total / n_layers``; the
paper writes sums — only the effective weight differs). ``λ_NCE`` is applied by the trainer.

Differences from the official code / speed notes:

* The key branch (encoder pass over x and the heads on it) runs under ``torch.no_grad()``. Because
  the official code detaches the keys *after* the heads, no gradient ever flows through that branch,
  so gradients are identical; we just do not build the unused graph. (``torch.inference_mode`` would
  not do: the key embeddings enter the query-key product, which saves them for backward, and
  inference tensors cannot be saved.)
* ``feat_k=`` lets the trainer pass key features it already has. In CUT mode the generator's main
  forward over ``cat(x, y)`` computes exactly the activations the key pass recomputes (same weights —
  only D has been stepped in between — and InstanceNorm is per image), so
  ``G(real, layers, encode_only=False)`` gives ``(fake, taps)`` and the taps' rows ``:B`` / ``B:`` are the
  keys for the X / Y terms: two encoder passes per iteration saved. Not valid when the input was
  flipped for flip-equivariance (the keys are features of the *unflipped* input and the encoder is
  not flip-equivariant) — then let this class compute them.
* ``flipped=True`` is FastCUT's flip-equivariance hook: the generator saw a horizontally flipped
  input, so the query feature maps are flipped back before sampling.
* Sampling uses an explicit ``torch.Generator`` (see ``models/projection_head.py``).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

__all__ = ["patchnce_loss", "PatchNCE", "DIAGONAL_FILL"]

#: Value written on the diagonal of the negatives' similarity matrix before dividing by τ.
DIAGONAL_FILL = -10.0


def _as_batched(x: torch.Tensor, batch_size: int | None, name: str) -> torch.Tensor:
    if x.dim() == 3:
        return x
    if x.dim() != 2:
        raise ValueError(f"{name} must be (B, P, C) or (B*P, C), got shape {tuple(x.shape)}")
    if batch_size is None:
        raise ValueError(f"{name} is 2-D: pass batch_size so negatives stay within each image")
    if x.shape[0] % batch_size:
        raise ValueError(f"{x.shape[0]} rows do not split into batch_size={batch_size} images")
    return x.reshape(batch_size, -1, x.shape[1])


def patchnce_loss(feat_q: torch.Tensor, feat_k: torch.Tensor, tau: float = 0.07, *,
                  batch_size: int | None = None, negatives_from_batch: bool = False,
                  reduction: str = "mean") -> torch.Tensor:
    """PatchNCE for one layer.

    Parameters
    ----------
    feat_q, feat_k:
        Query and key embeddings, ``(B, P, C)`` — or ``(B*P, C)`` image-major with ``batch_size=B``.
        Expected L2-normalised (the heads do it); row ``i`` of ``feat_k`` is the positive of row ``i``
        of ``feat_q``. ``feat_k`` is detached here.
    tau:
        Temperature (0.07).
    negatives_from_batch:
        ``False`` (CUT/FastCUT): negatives come only from the same image. ``True`` is the official
        ``--nce_includes_all_negatives_from_minibatch`` (SinCUT): all ``B·P`` keys are candidates.
    reduction:
        ``"mean"`` (default), ``"sum"`` or ``"none"`` (one value per query row, image-major).
    """
    q = _as_batched(feat_q, batch_size, "feat_q")
    k = _as_batched(feat_k, batch_size, "feat_k").detach()
    if q.shape != k.shape:
        raise ValueError(f"query {tuple(q.shape)} and key {tuple(k.shape)} shapes differ")
    b, p, c = q.shape
    l_pos = (q * k).sum(dim=-1).reshape(-1, 1)  # (B*P, 1)
    if negatives_from_batch:
        q, k = q.reshape(1, b * p, c), k.reshape(1, b * p, c)
    n = q.shape[1]
    l_neg = torch.bmm(q, k.transpose(1, 2))  # (B', n, n)
    eye = torch.eye(n, dtype=torch.bool, device=q.device)
    l_neg = l_neg.masked_fill(eye, DIAGONAL_FILL).reshape(-1, n)
    logits = torch.cat([l_pos, l_neg], dim=1) / tau
    target = torch.zeros(logits.shape[0], dtype=torch.long, device=logits.device)
    return F.cross_entropy(logits, target, reduction=reduction)


class PatchNCE:
    """``L_PatchNCE`` between an input ``src`` and its translation ``tgt = G(src)``.

    Holds references to the generator (its first ``max(layers)+1`` modules are the encoder) and the
    projection heads; it owns no parameters itself (so it is not an ``nn.Module`` and does not
    duplicate G's / H's parameters in a state dict).

    Parameters
    ----------
    generator:
        A network with ``generator(x, layers, encode_only=True) -> list of (B, C_l, H_l, W_l)``
        (``dehazelab.models.resnet_generator.ResnetGenerator``).
    heads:
        ``heads(feats, num_patches, patch_ids, generator) -> (embeddings, ids)``
        (``dehazelab.models.projection_head.PatchSampleMLP``).
    layers, num_patches, tau:
        CUT defaults ``(0, 4, 8, 12, 16)``, 256, 0.07.
    negatives_from_batch:
        See :func:`patchnce_loss` (False for CUT/FastCUT).
    """

    def __init__(self, generator, heads, layers: Sequence[int] = (0, 4, 8, 12, 16), num_patches: int = 256,
                 tau: float = 0.07, negatives_from_batch: bool = False):
        self.generator = generator
        self.heads = heads
        self.layers = tuple(int(i) for i in layers)
        self.num_patches = int(num_patches)
        self.tau = float(tau)
        self.negatives_from_batch = bool(negatives_from_batch)

    def key_features(self, src: torch.Tensor) -> list[torch.Tensor]:
        """Encoder activations of the input (keys), computed without building a graph."""
        with torch.no_grad():
            return self.generator(src, self.layers, encode_only=True)

    def __call__(self, src: torch.Tensor | None, tgt: torch.Tensor, *, flipped: bool = False,
                 feat_k: Sequence[torch.Tensor] | None = None, generator: torch.Generator | None = None,
                 per_layer: bool = False):
        """Mean over layers of the PatchNCE loss of ``tgt``'s features (queries) against ``src``'s (keys).

        ``flipped``: ``tgt`` was produced from a horizontally flipped ``src``; flip query maps back.
        ``feat_k``: precomputed key activations of ``src`` at ``self.layers`` (then ``src`` may be None).
        ``generator``: RNG for the patch positions. ``per_layer=True`` also returns the list of
        per-layer losses (detached), for logging.
        """
        feat_q = self.generator(tgt, self.layers, encode_only=True)
        if feat_k is None:
            if src is None:
                raise ValueError("give src or feat_k")
            feat_k = self.key_features(src)
        return self.from_features(feat_q, feat_k, flipped=flipped, generator=generator, per_layer=per_layer)

    def from_features(self, feat_q: Sequence[torch.Tensor], feat_k: Sequence[torch.Tensor], *,
                      flipped: bool = False, generator: torch.Generator | None = None, per_layer: bool = False):
        """The same loss from already computed query (with graph) and key activations.

        Lets a trainer batch encoder passes: e.g. one query pass over ``cat(G(x), G(y))`` split into
        the X and Y terms (InstanceNorm is per image, so this equals two separate passes).
        """
        if flipped:
            feat_q = [torch.flip(f, dims=[3]) for f in feat_q]
        feat_k = [f.detach() for f in feat_k]
        if len(feat_k) != len(feat_q):
            raise ValueError(f"{len(feat_k)} key maps for {len(feat_q)} query maps")
        batch = feat_q[0].shape[0]
        with torch.no_grad():
            k_pool, ids = self.heads(feat_k, self.num_patches, None, generator)
        q_pool, _ = self.heads(feat_q, self.num_patches, ids)
        losses = [patchnce_loss(q, k, self.tau, batch_size=batch, negatives_from_batch=self.negatives_from_batch)
                  for q, k in zip(q_pool, k_pool)]
        total = torch.stack(losses).mean()
        if per_layer:
            return total, [l.detach() for l in losses]
        return total
