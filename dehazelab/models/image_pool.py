"""CycleGAN's image history buffer (Shrivastava et al. 2017), used to update the discriminator.

Official behaviour (``util/image_pool.py`` of pytorch-CycleGAN-and-pix2pix, ``--pool_size 50``):
for each generated image of the batch,

* while the pool holds fewer than ``pool_size`` images: store it and return it unchanged;
* once full: with probability ½ return a uniformly chosen *stored* image and put the new one in its
  slot; otherwise return the new image and leave the pool as it is.

``pool_size=0`` disables the buffer (CUT forces this: ``--pool_size 0``). Images are detached (and
cloned, so later in-place edits of the caller's tensor cannot alter the history).

Difference: the coin flips and slot choices come from an explicit ``torch.Generator`` (seeded by the
caller) instead of Python's global ``random`` module, so a run is reproducible on its own.
"""

from __future__ import annotations

import torch

__all__ = ["ImagePool"]


class ImagePool:
    """History of generated images; :meth:`query` returns a batch mixing new and old fakes."""

    def __init__(self, pool_size: int = 50, generator: torch.Generator | None = None, swap_prob: float = 0.5):
        if pool_size < 0:
            raise ValueError("pool_size must be >= 0")
        self.pool_size = int(pool_size)
        self.swap_prob = float(swap_prob)
        self.generator = generator
        self.images: list[torch.Tensor] = []

    def __len__(self) -> int:
        return len(self.images)

    def query(self, images: torch.Tensor) -> torch.Tensor:
        """Return a batch of the same shape as ``images`` (B, C, H, W), detached."""
        if self.pool_size == 0:
            return images.detach()
        out = []
        for img in images.detach():
            img = img.unsqueeze(0).clone()
            if len(self.images) < self.pool_size:
                self.images.append(img)
                out.append(img)
                continue
            coin = torch.rand((), generator=self.generator).item()
            if coin < self.swap_prob:
                slot = int(torch.randint(self.pool_size, (), generator=self.generator).item())
                out.append(self.images[slot])
                self.images[slot] = img
            else:
                out.append(img)
        return torch.cat(out, dim=0)
