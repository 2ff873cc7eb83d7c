"""IICL's losses: inter-image CR, intra-image bright/dark patch contrast, PRM supervision — a *reconstruction*.

Xu et al., ICASSP 2023 (methods §4) publish only an abstract. What it says [abstract]: contrastive
dehazing usually ignores "the connection between patches within an image"; IICL contrasts "the
brightest and darkest patches within the same image" (intra) in addition to the usual restored /
clear / hazy contrast (inter), inside a progressive PRM → ARM framework. Everything else is assumed,
tagged with its source:

Patch selection (:func:`select_bright_dark_patches`)

* [§4.3.4] brightness is measured on the **hazy input**, per image, either by the dark channel
  (``by="dark_channel"``, default: haze raises the dark channel, so the brightest patches are the
  densest-haze / airlight-like regions and the darkest the least hazy ones) or by mean luminance.
* [our choice] candidates are the cells of a non-overlapping ``patch × patch`` grid (``stride``
  can make them overlap); a remainder at the bottom/right edge is not a candidate.
* [our choice] dark-channel score of a cell = mean over the cell of the dark-channel map
  ``min_{window} min_c I`` with a ``dc_window`` (7) px minimum filter restricted to the image
  (DCP's dark channel; the same numbers as ``dehazelab.models.dcp.dark_channel``). The mean over
  the cell, rather than one minimum over it, keeps a single dark pixel from disqualifying a patch.
  Luminance score = mean of ``0.299 R + 0.587 G + 0.114 B`` over the cell.
* [our choice] the ``k`` highest-scoring cells are "bright", then the ``k`` lowest among the rest
  "dark": the two sets are disjoint by construction (needs ``2k ≤`` number of cells). Ties go to
  the earlier cell in raster order (stable sorts), so the choice is deterministic. Coordinates
  are the cells' top-left ``(y, x)`` corners, ranked brightest-first / darkest-first.

Intra contrast (:class:`IntraContrast`)

* [§4.3.4] for every selected location ``l`` of an image: anchor = embedding of the *output* patch
  at ``l``, positive = the *clear* patch at ``l``; InfoNCE with cosine similarity / τ, τ = 0.07
  (CUT's PatchNCE temperature); mean over locations and images.
* [our choice, as the lead's brief suggests] negatives = the *hazy input* patch at ``l`` plus the
  ``k`` hazy-input patches of the **opposite** brightness group (a bright anchor gets the dark
  group's, and vice versa): ``k + 1`` negatives per anchor. Every negative is then degraded input,
  so the loss never pushes the output away from clean content (a clear patch elsewhere may
  legitimately look like the anchor's true content), and the negatives span both ends of the haze
  density present in the image. ``negatives="clear"`` swaps the opposite group to the clear
  image's patches (PatchNCE-like "other locations" negatives), kept as an alternative to study.
* [§4.3.4] embedding = frozen VGG-19 (no ImageNet normalisation, as AECR-Net's CR) up to
  ``layer`` (relu3_1), globally average-pooled; positives/negatives are embedded under
  ``no_grad`` (gradients flow only through the anchor). ``embed="pixel"`` = the flattened patch,
  L2-normalised: cheap, for smoke tests.

Total (:class:`IICLLoss`)

* [§4.3.5]  ``λ_prm·L1(J₀, J) + L1(Ĵ, J) + β_inter·CR(Ĵ, J, [I, J₀]) + β_intra·Intra``,
  ``λ_prm = 1``, ``β_inter = β_intra = 0.1`` (the starting point §4.3 suggests; untuned).
* [§4.3.3] inter contrast = AECR-Net's CR (``dehazelab.losses.cr``), with two negatives, the hazy
  input and the detached ``J₀`` clamped to [0, 1]; ``ContrastiveRegularization`` averages the
  anchor-negative distance over the negatives.
* [our choice] warm-up stage (``IICLNet.set_stage("prm")``): the loss is ``L1(J₀, J)`` alone;
  ``λ_prm`` only balances it against the other terms in the joint stage.
* [our choice] the PRM outputs reach the loss on the model output's ``.iicl`` attribute (see
  ``dehazelab.models.iicl``); a dict from ``IICLNet.forward_all`` is accepted too.
"""

from __future__ import annotations

from typing import Any, Mapping

import torch
import torch.nn as nn
import torch.nn.functional as F

from .cr import ContrastiveRegularization

__all__ = [
    "select_bright_dark_patches",
    "extract_patches",
    "patch_scores",
    "IntraContrast",
    "IICLLoss",
    "VGG19_RELU_END",
]

#: End index (exclusive) in VGG-19 ``features`` of each ``reluX_1`` output.
VGG19_RELU_END: dict[str, int] = {"relu1_1": 2, "relu2_1": 7, "relu3_1": 12, "relu4_1": 21, "relu5_1": 30}

_LUMA = (0.299, 0.587, 0.114)


def patch_scores(
    hazy: torch.Tensor, patch: int = 16, stride: int | None = None, by: str = "dark_channel", dc_window: int = 7
) -> torch.Tensor:
    """Brightness score of every candidate patch: [B, nY, nX] (see the module docstring)."""
    if hazy.dim() != 4 or hazy.shape[1] != 3:
        raise ValueError(f"expected a Bx3xHxW batch, got shape {tuple(hazy.shape)}")
    stride = patch if stride is None else int(stride)
    if patch < 1 or stride < 1:
        raise ValueError(f"patch and stride must be >= 1, got {patch}, {stride}")
    h, w = hazy.shape[-2:]
    if h < patch or w < patch:
        raise ValueError(f"image {h}x{w} is smaller than one {patch}x{patch} patch")
    x = hazy.detach()
    if by == "dark_channel":
        if dc_window < 1 or dc_window % 2 == 0:
            raise ValueError(f"dc_window must be odd and >= 1, got {dc_window}")
        m = x.amin(dim=1, keepdim=True)
        # max_pool pads with -inf, so the minimum filter only sees pixels inside the image
        m = -F.max_pool2d(-m, dc_window, stride=1, padding=dc_window // 2)
    elif by == "luminance":
        wts = torch.tensor(_LUMA, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
        m = (x * wts).sum(dim=1, keepdim=True)
    else:
        raise ValueError(f"by must be 'dark_channel' or 'luminance', got {by!r}")
    return F.avg_pool2d(m, patch, stride=stride).squeeze(1)


def select_bright_dark_patches(
    hazy: torch.Tensor,
    patch: int = 16,
    k: int = 4,
    by: str = "dark_channel",
    stride: int | None = None,
    *,
    dc_window: int = 7,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Top-left ``(y, x)`` of the ``k`` brightest and ``k`` darkest patches per image.

    Returns ``(bright, dark)``, LongTensors [B, k, 2] on ``hazy``'s device, ranked
    brightest-first / darkest-first, disjoint, deterministic (ties: earlier raster cell first).
    """
    scores = patch_scores(hazy, patch, stride, by, dc_window)
    b, ny, nx = scores.shape
    n = ny * nx
    if k < 1 or 2 * k > n:
        raise ValueError(f"need 1 <= k and 2k <= {n} candidate patches, got k={k}")
    stride = patch if stride is None else int(stride)
    flat = scores.reshape(b, n)
    bright = torch.sort(flat, dim=1, descending=True, stable=True).indices[:, :k]
    rest = flat.scatter(1, bright, float("inf"))  # bright cells can't be dark
    dark = torch.sort(rest, dim=1, stable=True).indices[:, :k]

    def to_coords(idx: torch.Tensor) -> torch.Tensor:
        return torch.stack((idx // nx * stride, idx % nx * stride), dim=-1)

    return to_coords(bright), to_coords(dark)


def extract_patches(x: torch.Tensor, coords: torch.Tensor, patch: int) -> torch.Tensor:
    """Crops of ``x`` [B, C, H, W] at top-left ``coords`` [B, k, 2] (y, x) -> [B, k, C, p, p].

    Differentiable with respect to ``x`` (advanced indexing); coordinates must keep the crop inside.
    """
    if x.dim() != 4 or coords.dim() != 3 or coords.shape[0] != x.shape[0] or coords.shape[2] != 2:
        raise ValueError(f"need x [B,C,H,W] and coords [B,k,2], got {tuple(x.shape)} and {tuple(coords.shape)}")
    coords = coords.to(device=x.device, dtype=torch.long)
    h, w = x.shape[-2:]
    if coords.numel() and (
        coords.min() < 0 or coords[..., 0].max() + patch > h or coords[..., 1].max() + patch > w
    ):
        raise ValueError(f"a {patch}x{patch} crop at the given coords leaves the {h}x{w} image")
    r = torch.arange(patch, device=x.device)
    ys = coords[..., 0, None] + r  # [B, k, p]
    xs = coords[..., 1, None] + r
    bi = torch.arange(x.shape[0], device=x.device).view(-1, 1, 1, 1)
    crops = x[bi, :, ys[..., :, None], xs[..., None, :]]  # [B, k, p, p, C]
    return crops.permute(0, 1, 4, 2, 3)


class IntraContrast(nn.Module):
    """Intra-image contrast over the brightest and darkest patches (module docstring).

    ``IntraContrast(embed="vgg"|"pixel", vgg=None, layer="relu3_1", tau=0.07, patch=16, k=4,
    by="dark_channel", negatives="hazy", vgg_weights="auto", imagenet_norm=False)``.
    ``forward(out, clear, hazy, bright=None, dark=None) -> scalar``; the coordinates are selected
    from ``hazy`` when not given. ``vgg``: a VGG-19 ``features`` stack (share the one of the CR
    term to save memory); ``None`` builds :func:`dehazelab.models.vgg.vgg19_features`
    (``vgg_weights``), only for ``embed="vgg"``.
    """

    def __init__(
        self,
        embed: str = "vgg",
        vgg: nn.Module | None = None,
        layer: str = "relu3_1",
        tau: float = 0.07,
        *,
        patch: int = 16,
        k: int = 4,
        by: str = "dark_channel",
        stride: int | None = None,
        negatives: str = "hazy",
        vgg_weights: str = "auto",
        imagenet_norm: bool = False,
    ):
        super().__init__()
        if embed not in ("vgg", "pixel"):
            raise ValueError(f"embed must be 'vgg' or 'pixel', got {embed!r}")
        if negatives not in ("hazy", "clear"):
            raise ValueError(f"negatives must be 'hazy' or 'clear', got {negatives!r}")
        if tau <= 0:
            raise ValueError(f"tau must be > 0, got {tau}")
        self.embed, self.layer, self.tau = embed, layer, float(tau)
        self.patch, self.k, self.by, self.stride = int(patch), int(k), by, stride
        self.negatives, self.imagenet_norm = negatives, imagenet_norm
        self.encoder = None
        self.vgg_label = None
        if embed == "vgg":
            if layer not in VGG19_RELU_END:
                raise ValueError(f"layer must be one of {list(VGG19_RELU_END)}, got {layer!r}")
            if vgg is None:
                from dehazelab.models.vgg import vgg19_features

                vgg, self.vgg_label = vgg19_features(weights=vgg_weights)
            else:
                self.vgg_label = "custom"
            end = VGG19_RELU_END[layer]
            if len(vgg) < end:
                raise ValueError(f"the feature stack has {len(vgg)} layers, {layer} needs {end}")
            for p in vgg.parameters():
                p.requires_grad_(False)
            self.encoder = nn.Sequential(*[vgg[i] for i in range(end)]).eval()
        self.register_buffer("_mean", torch.tensor((0.485, 0.456, 0.406)).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("_std", torch.tensor((0.229, 0.224, 0.225)).view(1, 3, 1, 1), persistent=False)

    def train(self, mode: bool = True):
        super().train(mode)
        if self.encoder is not None:
            self.encoder.eval()
        return self

    def embed_patches(self, patches: torch.Tensor) -> torch.Tensor:
        """[N, 3, p, p] -> unit vectors [N, D]."""
        if self.embed == "pixel":
            z = patches.flatten(1)
        else:
            x = (patches - self._mean) / self._std if self.imagenet_norm else patches
            z = self.encoder(x).mean(dim=(2, 3))
        return F.normalize(z, dim=1, eps=1e-8)

    def forward(
        self,
        out: torch.Tensor,
        clear: torch.Tensor,
        hazy: torch.Tensor,
        bright: torch.Tensor | None = None,
        dark: torch.Tensor | None = None,
    ) -> torch.Tensor:
        if not (out.shape == clear.shape == hazy.shape):
            shapes = [tuple(x.shape) for x in (out, clear, hazy)]
            raise ValueError(f"out/clear/hazy shapes differ: {shapes}")
        if bright is None or dark is None:
            bright, dark = select_bright_dark_patches(hazy, self.patch, self.k, self.by, self.stride)
        b, k = bright.shape[:2]
        if dark.shape[:2] != (b, k):
            raise ValueError(f"bright {tuple(bright.shape)} and dark {tuple(dark.shape)} must both be [B,k,2]")
        coords = torch.cat((bright, dark), dim=1)  # [B, 2k, 2]: bright first
        p = self.patch

        def emb(x: torch.Tensor) -> torch.Tensor:  # [B, 2k, 3, p, p] -> [B, 2k, D]
            crops = extract_patches(x, coords, p)
            return self.embed_patches(crops.flatten(0, 1)).view(b, 2 * k, -1)

        za = emb(out)
        with torch.no_grad():
            zp = emb(clear.detach())
            zh = emb(hazy.detach())
            zo = zh if self.negatives == "hazy" else zp
        # opposite group: anchors 0..k-1 (bright) see dark 'zo[k:]', anchors k..2k-1 see 'zo[:k]'
        dark_group = zo[:, k:].unsqueeze(1).expand(b, k, k, -1)
        bright_group = zo[:, :k].unsqueeze(1).expand(b, k, k, -1)
        opposite = torch.cat((dark_group, bright_group), dim=1)  # [B, 2k, k, D]
        negs = torch.cat((zh.unsqueeze(2), opposite), dim=2)  # [B, 2k, k+1, D]
        pos_sim = (za * zp).sum(-1, keepdim=True)  # [B, 2k, 1]
        neg_sim = torch.einsum("bld,blnd->bln", za, negs)  # [B, 2k, k+1]
        logits = torch.cat((pos_sim, neg_sim), dim=-1) / self.tau
        target = torch.zeros(logits.shape[:-1].numel(), dtype=torch.long, device=logits.device)
        return F.cross_entropy(logits.flatten(0, 1), target)


def _prm_parts(out: Any) -> tuple[torch.Tensor, Mapping[str, Any] | None]:
    """``(final image, parts or None)`` from an IICLNet output tensor, a forward_all dict, or a plain tensor."""
    if isinstance(out, Mapping):
        return out["out"], out
    return out, getattr(out, "iicl", None)


class IICLLoss(nn.Module):
    """The IICL objective (module docstring). ``loss, logs = crit(out, clear, hazy, batch=None)``.

    ``out``: the output of ``IICLNet.forward`` (with its ``.iicl`` attribute), a
    ``IICLNet.forward_all`` dict, or a plain tensor from any model (then ``lambda_prm`` must be 0).
    ``cr`` / ``intra``: the inter / intra contrast modules; ``None`` builds them (one frozen VGG-19
    shared by both, from ``vgg`` or ``vgg_weights``) unless the matching β is 0, which skips the
    term entirely. ``intra_kwargs`` go to :class:`IntraContrast` when it is built here.
    ``logs``: python floats for the computed terms: ``prm_l1``, ``l1``, ``cr``, ``intra``, ``loss``.
    """

    def __init__(
        self,
        cr: ContrastiveRegularization | None = None,
        intra: IntraContrast | None = None,
        beta_inter: float = 0.1,
        beta_intra: float = 0.1,
        lambda_prm: float = 1.0,
        *,
        vgg: nn.Module | None = None,
        vgg_weights: str = "auto",
        intra_kwargs: Mapping[str, Any] | None = None,
    ):
        super().__init__()
        self.beta_inter, self.beta_intra, self.lambda_prm = float(beta_inter), float(beta_intra), float(lambda_prm)
        if min(self.beta_inter, self.beta_intra, self.lambda_prm) < 0:
            raise ValueError("loss weights must be >= 0")
        ikw = dict(intra_kwargs or {})
        need_vgg = (cr is None and self.beta_inter != 0) or (
            intra is None and self.beta_intra != 0 and ikw.get("embed", "vgg") == "vgg" and "vgg" not in ikw
        )
        if need_vgg and vgg is None:
            from dehazelab.models.vgg import vgg19_features

            vgg, _ = vgg19_features(weights=vgg_weights)
        if cr is None and self.beta_inter != 0:
            cr = ContrastiveRegularization(vgg=vgg)
        if intra is None and self.beta_intra != 0:
            if ikw.get("embed", "vgg") == "vgg":
                ikw.setdefault("vgg", vgg)
            intra = IntraContrast(**ikw)
        self.cr = cr if self.beta_inter != 0 else None
        self.intra = intra if self.beta_intra != 0 else None

    def forward(self, out: Any, clear: torch.Tensor, hazy: torch.Tensor, batch: Mapping[str, Any] | None = None):
        final, parts = _prm_parts(out)
        stage = parts.get("stage", "joint") if parts is not None else "joint"
        j0 = parts.get("j0") if parts is not None else None
        if parts is None and self.lambda_prm != 0:
            raise ValueError(
                "IICLLoss got a plain tensor without PRM outputs: pass IICLNet.forward's output unchanged "
                "(it carries .iicl), an IICLNet.forward_all dict, or set lambda_prm=0"
            )
        logs: dict[str, float] = {}
        if stage == "prm":
            if j0 is None:
                raise ValueError("stage 'prm' without a J0")
            loss = F.l1_loss(j0, clear)
            logs["prm_l1"] = float(loss.detach())
            logs["loss"] = logs["prm_l1"]
            return loss, logs
        l1 = F.l1_loss(final, clear)
        loss = l1
        if j0 is not None and self.lambda_prm != 0:
            prm = F.l1_loss(j0, clear)
            loss = loss + self.lambda_prm * prm
            logs["prm_l1"] = float(prm.detach())
        logs["l1"] = float(l1.detach())
        if self.cr is not None:
            negs = hazy.unsqueeze(1)
            if j0 is not None:
                negs = torch.stack((hazy, j0.detach().clamp(0.0, 1.0)), dim=1)
            cr = self.cr(final, clear, negs)
            loss = loss + self.beta_inter * cr
            logs["cr"] = float(cr.detach())
        if self.intra is not None:
            intra = self.intra(final, clear, hazy)
            loss = loss + self.beta_intra * intra
            logs["intra"] = float(intra.detach())
        logs["loss"] = float(loss.detach())
        return loss, logs
