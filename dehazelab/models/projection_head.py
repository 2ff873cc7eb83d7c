"""CUT's projection heads ``H_l`` and patch sampling (``netF = PatchSampleF(use_mlp=True, nc=256)``).

``docs/methods.md`` §2.4. For every tapped generator layer ``l`` (channels ``C_l``):

1. flatten the feature map to one vector per spatial position, ``(B, H·W, C_l)``;
2. keep ``num_patches`` positions drawn by a random permutation — **the same positions for every image
   in the batch**, and the *same* positions for the query map (G(x)'s features) as for the key map
   (x's features): the first call returns the ids, the second call receives them;
3. project with a 2-layer MLP ``Linear(C_l, nc) → ReLU → Linear(nc, nc)`` (one MLP per layer);
4. L2-normalise: ``v / (‖v‖₂ + 1e-7)``.

A "patch" is one feature-map position; its receptive field in the input is the patch (CUT issue #68).

Differences from the official code (documented on purpose):

* **Eager creation.** The official heads are created lazily at the first forward from the shapes it
  sees (``data_dependent_initialize``), which makes the parameter list unknown until data has flowed
  and complicates optimiser construction and checkpoints. We take the channel list up front —
  ``(3, 128, 256, 256, 256)`` for the default anti-aliased ResNet generator and layers 0,4,8,12,16
  (``ResnetGenerator.feature_channels`` computes it for other configurations). Same parameters:
  560,384 with ``nc=256``. Initialise with ``init_weights(heads, "xavier", 0.02)`` like CUT does.
* **Sampling RNG.** The official code draws the permutation with NumPy's global RNG (to dodge a
  ``torch.randperm`` CUDA crash, issue #83). We draw it on the CPU with an explicit
  ``torch.Generator`` (or torch's default generator when none is given), then move the ids to the
  features' device — deterministic without global NumPy state.
* ``num_patches <= 0`` or ``>= H·W`` takes all positions in raster order (the official code returns a
  (B, C, H, W) map for 0 and a random order otherwise; the PatchNCE loss does not depend on order).
  The output is always the flat ``(B·P, nc)`` matrix, image-major, which is what the loss expects.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

__all__ = ["PatchSampleMLP", "l2_normalize", "sample_positions", "CUT_HEAD_CHANNELS"]

#: Channels at CUT's default NCE layers (0, 4, 8, 12, 16) of the ngf=64 anti-aliased ResNet generator.
CUT_HEAD_CHANNELS: tuple[int, ...] = (3, 128, 256, 256, 256)


def l2_normalize(x: torch.Tensor, dim: int = -1, eps: float = 1e-7) -> torch.Tensor:
    """``x / (‖x‖₂ + eps)`` along ``dim`` — CUT's ``Normalize(2)`` (eps added to the norm, not clamped)."""
    return x / (x.norm(p=2, dim=dim, keepdim=True) + eps)


def sample_positions(n_positions: int, num_patches: int, device: torch.device | str | None = None,
                     generator: torch.Generator | None = None) -> torch.Tensor:
    """Ids of ``num_patches`` distinct positions out of ``n_positions`` (all of them when 0 or too many)."""
    if num_patches <= 0 or num_patches >= n_positions:
        return torch.arange(n_positions, device=device)
    perm = torch.randperm(n_positions, generator=generator)  # CPU draw: same ids on every device
    return perm[:num_patches].to(device)


class PatchSampleMLP(nn.Module):
    """Sample feature positions and project them with one MLP per tapped layer.

    Parameters
    ----------
    in_channels:
        Channels of each tapped feature map, in tap order (default: CUT's ``(3, 128, 256, 256, 256)``).
    nc:
        Width of the MLP and of the output embedding (256).
    use_mlp:
        ``False`` gives CUT's ``--netF sample`` variant (sampling + L2-norm only, no parameters).
    """

    def __init__(self, in_channels: Sequence[int] = CUT_HEAD_CHANNELS, nc: int = 256, use_mlp: bool = True):
        super().__init__()
        self.in_channels = tuple(int(c) for c in in_channels)
        self.nc = int(nc)
        self.use_mlp = bool(use_mlp)
        if self.use_mlp:
            self.mlps = nn.ModuleList(
                nn.Sequential(nn.Linear(c, self.nc), nn.ReLU(inplace=False), nn.Linear(self.nc, self.nc))
                for c in self.in_channels
            )
        else:
            self.mlps = None

    def forward(self, feats: Sequence[torch.Tensor], num_patches: int = 256,
                patch_ids: Sequence[torch.Tensor] | None = None,
                generator: torch.Generator | None = None) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """Return ``(embeddings, ids)``.

        ``feats[l]`` is ``(B, C_l, H_l, W_l)``; ``embeddings[l]`` is ``(B * P_l, nc)`` (image-major:
        rows ``b*P_l : (b+1)*P_l`` belong to image ``b``), L2-normalised; ``ids[l]`` are the ``P_l``
        sampled flat positions. Pass the ids returned by the key call as ``patch_ids`` for the query
        call so both see the same positions.
        """
        if len(feats) != len(self.in_channels):
            raise ValueError(f"got {len(feats)} feature maps for {len(self.in_channels)} heads")
        if patch_ids is not None and len(patch_ids) != len(feats):
            raise ValueError("patch_ids must have one entry per feature map")
        out, ids = [], []
        for l, feat in enumerate(feats):
            b, c, h, w = feat.shape
            if c != self.in_channels[l]:
                raise ValueError(f"layer {l}: expected {self.in_channels[l]} channels, got {c}")
            flat = feat.flatten(2)  # (B, C, H*W)
            if patch_ids is not None:
                pid = patch_ids[l].to(feat.device)
            else:
                pid = sample_positions(h * w, num_patches, device=feat.device, generator=generator)
            x = flat[:, :, pid].transpose(1, 2).reshape(-1, c)  # (B*P, C), image-major
            if self.use_mlp:
                x = self.mlps[l](x)
            out.append(l2_normalize(x, dim=1))
            ids.append(pid)
        return out, ids
