"""Contrastive regularisation (CR) of AECR-Net (Wu et al., CVPR 2021) and the L1 + β·CR objective.

CR pulls the restored image (anchor, ``φ(I)``) toward the clear image (positive, ``J``) and pushes it
away from the hazy input (negative, ``I``) in the feature space of a frozen VGG-19:

    CR = Σ_i w_i · D(G_i(φ(I)), G_i(J)) / (D(G_i(φ(I)), G_i(I)) + eps)

What the official ``models/CR.py`` does and we keep (methods §1.5):

* ``G_i`` = outputs of VGG-19 ``features`` slices [0:2], [2:7], [7:12], [12:21], [21:30]
  (relu1_1, relu2_1, relu3_1, relu4_1, relu5_1), weights w = (1/32, 1/16, 1/8, 1/4, 1);
* ``D`` = ``L1Loss`` with **mean** reduction over batch, channels and pixels — the ratio of two
  batch means, not a mean of per-sample ratios; eps = 1e-7;
* positives and negatives are detached (here: their features are computed under ``no_grad``), the
  VGG is frozen, only the anchor branch carries gradients;
* no ImageNet mean/std normalisation: images enter VGG in [0, 1] (the Tanh output may be < 0);
  ``imagenet_norm=True`` adds it, as an option to study;
* ``ablation=True`` (the code's ``--is_ab``) drops the denominator: a positive-only weighted
  VGG-L1 ("perceptual") loss.

Our extension for several positives / negatives (the paper's P:K ratio study; its exact definition
is not available to us): with positives ``[B, P, 3, H, W]`` and negatives ``[B, K, 3, H, W]``,

    numerator_i   = mean_p D(G_i(anchor), G_i(pos_p))
    denominator_i = mean_k D(G_i(anchor), G_i(neg_k))

so 1:1 is exactly the official loss and the ratio's scale does not change with P or K (a sum over
negatives, as in the MindSpore port, would make the loss shrink as K grows and couple β to K).
Which images serve as extra samples is :func:`draw_contrast_samples`'s job.
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

__all__ = [
    "ContrastiveRegularization",
    "CRLoss",
    "draw_contrast_samples",
    "VGG19_CR_LAYERS",
    "VGG19_CR_WEIGHTS",
]

#: (start, end) slices of VGG-19 ``features`` ending at relu1_1, relu2_1, relu3_1, relu4_1, relu5_1.
VGG19_CR_LAYERS: tuple[tuple[int, int], ...] = ((0, 2), (2, 7), (7, 12), (12, 21), (21, 30))
VGG19_CR_WEIGHTS: tuple[float, ...] = (1 / 32, 1 / 16, 1 / 8, 1 / 4, 1.0)

_IMAGENET_MEAN = (0.485, 0.456, 0.406)
_IMAGENET_STD = (0.229, 0.224, 0.225)


def _as_samples(t: torch.Tensor, name: str) -> torch.Tensor:
    """[B, C, H, W] -> [B, 1, C, H, W]; [B, N, C, H, W] unchanged."""
    if t.dim() == 4:
        return t.unsqueeze(1)
    if t.dim() == 5:
        return t
    raise ValueError(f"{name} must be [B,C,H,W] or [B,N,C,H,W], got shape {tuple(t.shape)}")


class ContrastiveRegularization(nn.Module):
    """AECR-Net's CR term. ``forward(anchor, positive, negative) -> scalar``.

    Args (keywords): ``vgg`` — an indexable ``nn.Sequential`` feature stack (default: the frozen
    VGG-19 of :func:`dehazelab.models.vgg.vgg19_features` with ``vgg_weights``, "auto" = ImageNet if
    on disk else seeded random with a warning); ``weights`` per layer; ``layers`` — contiguous
    ``(start, end)`` slices of ``vgg`` starting at 0; ``ablation`` — drop the denominator;
    ``eps`` 1e-7; ``imagenet_norm`` — normalise inputs with ImageNet mean/std first (not in the paper).
    ``vgg_label`` records what the VGG holds (``"imagenet:<file>"``, ``"random(seed=0)"``, ``"custom"``).
    """

    def __init__(
        self,
        vgg: nn.Module | None = None,
        weights: Sequence[float] = VGG19_CR_WEIGHTS,
        layers: Sequence[tuple[int, int]] = VGG19_CR_LAYERS,
        ablation: bool = False,
        eps: float = 1e-7,
        *,
        imagenet_norm: bool = False,
        vgg_weights: str = "auto",
    ):
        super().__init__()
        if len(weights) != len(layers):
            raise ValueError(f"{len(weights)} weights for {len(layers)} layers")
        prev = 0
        for a, b in layers:
            if a != prev or b <= a:
                raise ValueError(f"layers must be contiguous (start, end) slices from 0, got {list(layers)}")
            prev = b
        if vgg is None:
            from dehazelab.models.vgg import vgg19_features

            vgg, self.vgg_label = vgg19_features(weights=vgg_weights)
        else:
            self.vgg_label = "custom"
        if len(vgg) < prev:
            raise ValueError(f"the feature stack has {len(vgg)} layers, the last slice needs {prev}")
        vgg.eval()
        for p in vgg.parameters():
            p.requires_grad_(False)
        self.slices = nn.ModuleList(nn.Sequential(*[vgg[i] for i in range(a, b)]) for a, b in layers)
        self.weights = tuple(float(w) for w in weights)
        self.layers = tuple((int(a), int(b)) for a, b in layers)
        self.ablation = ablation
        self.eps = eps
        self.imagenet_norm = imagenet_norm
        self.register_buffer("_mean", torch.tensor(_IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("_std", torch.tensor(_IMAGENET_STD).view(1, 3, 1, 1), persistent=False)

    def train(self, mode: bool = True):
        super().train(mode)
        self.slices.eval()  # the VGG never trains (it has no BN/dropout, but keep it explicit)
        return self

    def features(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The per-layer feature maps of ``x`` [N, 3, H, W]."""
        if self.imagenet_norm:
            x = (x - self._mean) / self._std
        out = []
        for s in self.slices:
            x = s(x)
            out.append(x)
        return out

    def layer_distances(
        self, anchor: torch.Tensor, positive: torch.Tensor, negative: torch.Tensor | None
    ) -> list[tuple[torch.Tensor, torch.Tensor | None]]:
        """Per layer ``(d_ap, d_an)``: mean L1 to the positives / negatives (``d_an`` None if no negatives)."""
        pos = _as_samples(positive, "positive")
        neg = None if negative is None else _as_samples(negative, "negative")
        b = anchor.shape[0]
        for name, t in (("positive", pos), ("negative", neg)):
            if t is not None and (t.shape[0] != b or t.shape[2:] != anchor.shape[1:]):
                raise ValueError(f"{name} shape {tuple(t.shape)} does not match anchor {tuple(anchor.shape)}")
        n_pos = pos.shape[1]
        others = pos.flatten(0, 1) if neg is None else torch.cat((pos.flatten(0, 1), neg.flatten(0, 1)))
        with torch.no_grad():
            other_feats = self.features(others.detach())
        anchor_feats = self.features(anchor)
        out = []
        for fa, fo in zip(anchor_feats, other_feats):
            fo = fo.detach()
            fa5 = fa.unsqueeze(1)
            fp = fo[: b * n_pos].reshape(b, n_pos, *fo.shape[1:])
            # mean over (b, p, c, h, w) == mean over p of the batch-mean L1 (all terms same size)
            d_ap = (fa5 - fp).abs().mean()
            d_an = None
            if neg is not None:
                fn = fo[b * n_pos:].reshape(b, neg.shape[1], *fo.shape[1:])
                d_an = (fa5 - fn).abs().mean()
            out.append((d_ap, d_an))
        return out

    def forward(self, anchor: torch.Tensor, positive: torch.Tensor, negative: torch.Tensor) -> torch.Tensor:
        terms = self.layer_distances(anchor, positive, None if self.ablation else negative)
        loss = anchor.new_zeros(())
        for w, (d_ap, d_an) in zip(self.weights, terms):
            loss = loss + w * (d_ap if self.ablation else d_ap / (d_an + self.eps))
        return loss


def _other_indices(b: int, n: int, generator: torch.Generator | None) -> torch.Tensor:
    """[b, n] indices into the batch, row ``i`` never containing ``i``; without replacement if n < b."""
    if n == 0:
        return torch.empty(b, 0, dtype=torch.long)
    if b < 2:
        raise ValueError("extra samples come from other images of the batch: need a batch of at least 2")
    if n <= b - 1:
        keys = torch.rand(b, b, generator=generator)
        keys.fill_diagonal_(2.0)  # self sorts last
        return keys.argsort(dim=1)[:, :n]
    shift = torch.randint(1, b, (b, n), generator=generator)  # with replacement, never 0
    return (torch.arange(b).unsqueeze(1) + shift) % b


def draw_contrast_samples(
    clear: torch.Tensor,
    hazy: torch.Tensor,
    P: int = 1,
    K: int = 1,
    generator: torch.Generator | None = None,
    *,
    extra_positives: str = "jitter",
    jitter: float = 0.1,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Positives ``[B, P, 3, H, W]`` and negatives ``[B, K, 3, H, W]`` for CR (all detached).

    Slot 0 is always the sample's own clear image (positive) and its own hazy input (negative), so
    P = K = 1 is exactly the paper's loss.

    Extra negatives (K > 1): hazy inputs of *other* samples of the batch (without replacement while
    possible, never the sample itself). They are hazy, so "away from haze" stays meaningful even
    though their content differs; CR only increases the distance to them.

    Extra positives (P > 1), ``extra_positives=``:

    * ``"jitter"`` (default): the sample's own clear image with a mild, pixel-aligned photometric
      change, ``clamp(g · J^γ, 0, 1)`` with ``log g, log γ ~ U(−jitter, jitter)``. CR's distance is a
      pixel-aligned L1 on feature maps, so a positive must show the *same scene at the same place*:
      other scenes' clear images, or flipped / rotated copies of the own one, would pull the output
      toward content that is not there. Photometric variants keep the alignment and express
      "any plausible clear rendering of this scene is good".
    * ``"other_clear"``: clear images of other samples — a naive reading of "more positives", kept
      as a control (expected to hurt, for the reason above).
    * ``"repeat"``: the own clear image repeated; with mean-over-positives this equals P = 1.

    Random numbers come from ``generator`` (a CPU ``torch.Generator``) and are moved to the images'
    device.
    """
    if clear.shape != hazy.shape or clear.dim() != 4:
        raise ValueError(f"clear and hazy must be equal [B,3,H,W], got {tuple(clear.shape)} and {tuple(hazy.shape)}")
    if P < 1 or K < 1:
        raise ValueError(f"need P >= 1 and K >= 1, got P={P}, K={K}")
    if extra_positives not in ("jitter", "other_clear", "repeat"):
        raise ValueError(f"unknown extra_positives {extra_positives!r}")
    clear, hazy = clear.detach(), hazy.detach()
    b = clear.shape[0]
    dev = clear.device

    neg_idx = _other_indices(b, K - 1, generator).to(dev)
    neg = torch.cat((hazy.unsqueeze(1), hazy[neg_idx]), dim=1)

    n_extra = P - 1
    if n_extra == 0 or extra_positives == "repeat":
        extra = clear.unsqueeze(1).expand(b, n_extra, *clear.shape[1:])
    elif extra_positives == "other_clear":
        extra = clear[_other_indices(b, n_extra, generator).to(dev)]
    else:
        u = torch.rand(2, b, n_extra, 1, 1, 1, generator=generator) * 2 - 1
        log_g, log_gamma = (u * jitter).to(device=dev, dtype=clear.dtype)
        base = clear.unsqueeze(1).clamp(min=0)
        extra = (base.pow(log_gamma.exp()) * log_g.exp()).clamp(0, 1)
    pos = torch.cat((clear.unsqueeze(1), extra), dim=1)
    return pos, neg


class CRLoss(nn.Module):
    """The AECR-Net objective ``L1(out, clear) + beta · CR(out, positives, negatives)``.

    Call as ``loss, logs = crit(out, clear, hazy)``; ``logs`` holds python floats ``l1``, ``cr``,
    ``loss``. ``beta`` 0.1 is the paper's value (the official script's flag defaults to 0 — pass it);
    ``beta=0`` skips the VGG entirely (the L1-only baseline). ``n_pos``/``n_neg`` > 1 draw extra
    samples with :func:`draw_contrast_samples` (``extra_positives``, ``generator``). Remaining
    keywords (``vgg``, ``ablation``, ``imagenet_norm``, ``vgg_weights``, ...) go to
    :class:`ContrastiveRegularization` unless ``cr`` is given.
    """

    def __init__(
        self,
        cr: ContrastiveRegularization | None = None,
        beta: float = 0.1,
        *,
        n_pos: int = 1,
        n_neg: int = 1,
        extra_positives: str = "jitter",
        generator: torch.Generator | None = None,
        **cr_kwargs,
    ):
        super().__init__()
        self.beta = float(beta)
        self.n_pos, self.n_neg = n_pos, n_neg
        self.extra_positives = extra_positives
        self.generator = generator
        if cr is None and self.beta != 0:
            cr = ContrastiveRegularization(**cr_kwargs)
        self.cr = cr

    def forward(self, out: torch.Tensor, clear: torch.Tensor, hazy: torch.Tensor):
        l1 = F.l1_loss(out, clear)
        if self.beta == 0:
            cr = out.new_zeros(())
            loss = l1
        else:
            pos, neg = draw_contrast_samples(
                clear, hazy, self.n_pos, self.n_neg, self.generator, extra_positives=self.extra_positives
            )
            cr = self.cr(out, pos, neg)
            loss = l1 + self.beta * cr
        logs = {"l1": float(l1.detach()), "cr": float(cr.detach()), "loss": float(loss.detach())}
        return loss, logs
