"""CDD-GAN's InfoNCE (a reconstruction, :mod:`dehazelab.methods.cddgan`): queries against one positive each
and a per-image set of negatives (in-image patches, as CUT's PatchNCE, or generated negatives)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from dehazelab.losses.patchnce import DIAGONAL_FILL

__all__ = ["contrastive_nce"]


def contrastive_nce(q: torch.Tensor, pos: torch.Tensor, negatives: torch.Tensor, tau: float = 0.07, *,
                    batch_size: int, mask_diagonal: bool = False, stats: dict | None = None) -> torch.Tensor:
    """InfoNCE of queries against one positive each and a per-image set of negatives.

    ``q``: ``(B*P, C)`` image-major queries; ``pos``: ``(B*P, C)`` (one positive per query) or
    ``(B, C)`` (one positive per image, e.g. a clear prototype); ``negatives``: ``(B*M, C)``
    image-major. Logits ``[q·pos, q·n_1 … q·n_M] / τ``, cross-entropy with target 0, mean over rows.
    ``pos`` and ``negatives`` are *not* detached here (the caller decides; the N step needs the
    negatives' graph). ``mask_diagonal=True`` (in-image negatives, ``negatives`` = the keys, M = P):
    the ``P×P`` diagonal is overwritten with −10 before dividing by τ — exactly
    :func:`dehazelab.losses.patchnce.patchnce_loss`. With ``stats`` (a dict) the mean cosines to the
    positive and to the (unmasked) negatives are stored in it.
    """
    b = int(batch_size)
    qb = q.reshape(b, -1, q.shape[-1])
    p = qb.shape[1]
    if pos.shape[0] == q.shape[0]:  # one positive per query
        posb = pos.reshape(b, p, -1)
    elif pos.shape[0] == b:  # one positive per image
        posb = pos.reshape(b, 1, -1).expand_as(qb)
    else:
        raise ValueError(f"pos has {pos.shape[0]} rows; expected {q.shape[0]} (per query) or {b} (per image)")
    nb = negatives.reshape(b, -1, negatives.shape[-1])
    l_pos = (qb * posb).sum(-1, keepdim=True)  # (B, P, 1)
    l_neg = torch.bmm(qb, nb.transpose(1, 2))  # (B, P, M)
    if stats is not None:
        with torch.no_grad():
            stats["sim_pos"] = float(l_pos.mean())
            if mask_diagonal:
                off = ~torch.eye(p, dtype=torch.bool, device=q.device)
                stats["sim_neg"] = float(l_neg[:, off].mean()) if p > 1 else float("nan")
            else:
                stats["sim_neg"] = float(l_neg.mean())
    if mask_diagonal:
        if nb.shape[1] != p:
            raise ValueError(f"mask_diagonal needs as many negatives as queries per image ({nb.shape[1]} vs {p})")
        eye = torch.eye(p, dtype=torch.bool, device=q.device)
        l_neg = l_neg.masked_fill(eye, DIAGONAL_FILL)
    logits = torch.cat([l_pos, l_neg], dim=2).reshape(b * p, -1) / tau
    target = torch.zeros(logits.shape[0], dtype=torch.long, device=logits.device)
    return F.cross_entropy(logits, target)
