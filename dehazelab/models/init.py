"""Weight initialisation as in the CycleGAN / CUT code bases (``init_weights`` in their ``networks.py``).

* CUT: ``--init_type xavier --init_gain 0.02`` → ``xavier_normal_(W, gain=0.02)`` (``docs/methods.md`` §2.7).
* CycleGAN / pix2pix: ``--init_type normal --init_gain 0.02`` → ``W ~ N(0, 0.02)``.

Applied to the weights of every convolution (incl. transposed) and linear layer; their biases are set to 0.
Affine BatchNorm layers get ``weight ~ N(1, gain)``, bias 0, as in the official helper; non-affine
InstanceNorm has no parameters and is left alone. Fixed (buffer) filters such as the blur layers are
not parameters and are untouched.

Difference: the official helper matches layers by class *name* ("Conv" / "Linear" substrings); we match
by type (``nn.modules.conv._ConvNd``, ``nn.Linear``), which selects the same layers in these networks.
An optional ``torch.Generator`` makes the draw independent of the global RNG.
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["init_weights", "INIT_KINDS"]

INIT_KINDS = ("xavier", "normal", "kaiming", "orthogonal")


def init_weights(net: nn.Module, kind: str = "xavier", gain: float = 0.02,
                 generator: torch.Generator | None = None) -> nn.Module:
    """Initialise ``net`` in place (and return it).

    ``kind``: ``"xavier"`` (xavier_normal_, CUT default), ``"normal"`` (N(0, gain), CycleGAN),
    ``"kaiming"`` (kaiming_normal_, fan_in, a=0; ``gain`` unused), ``"orthogonal"`` (gain).
    """
    if kind not in INIT_KINDS:
        raise ValueError(f"unknown init kind {kind!r}; choose from {INIT_KINDS}")
    g = {"generator": generator} if generator is not None else {}

    for m in net.modules():
        if isinstance(m, (nn.modules.conv._ConvNd, nn.Linear)) and getattr(m, "weight", None) is not None:
            with torch.no_grad():
                if kind == "xavier":
                    nn.init.xavier_normal_(m.weight, gain=gain, **g)
                elif kind == "normal":
                    nn.init.normal_(m.weight, 0.0, gain, **g)
                elif kind == "kaiming":
                    nn.init.kaiming_normal_(m.weight, a=0, mode="fan_in", **g)
                else:
                    nn.init.orthogonal_(m.weight, gain=gain, **g)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
        elif isinstance(m, nn.modules.batchnorm._BatchNorm) and m.affine:
            with torch.no_grad():
                nn.init.normal_(m.weight, 1.0, gain, **g)
                nn.init.zeros_(m.bias)
    return net
