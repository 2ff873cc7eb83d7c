"""Feature statistics for the analysis cells of the paper notebooks, defined once (d2l style).

* pictures of the haze factor: :func:`dark_channel`;
* the images a feature figure encodes: :func:`pairs_by_scene`, :func:`centre_crop`, :func:`feature_images`;
* statistics of a feature matrix: :func:`eta2` (share of variance explained by a grouping), :func:`pca2`;
* encoder features of an unpaired two-generator method (CUT-style taps): :func:`encoder_features`;
* the 2-D view coloured by scene and by haze level: :func:`plot_pca_by_scene_and_level`;
* nearest-patch searches for generated negatives: :func:`nearest_real_patches`, :func:`receptive_crop`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

__all__ = ["dark_channel", "pairs_by_scene", "centre_crop", "feature_images", "eta2", "pca2", "encoder_features",
           "plot_pca_by_scene_and_level", "pool_kinds", "nearest_real_patches", "nearest_origin_table",
           "receptive_crop"]


def dark_channel(img: torch.Tensor, patch: int = 15) -> torch.Tensor:
    """He et al.'s dark channel of a (3, H, W) image: min over colours, then a patch×patch minimum filter."""
    m = img.min(dim=0, keepdim=True).values[None]
    return (-F.max_pool2d(-m, patch, stride=1, padding=patch // 2))[0, 0]


def pairs_by_scene(pairs: Iterable[Any]) -> dict:
    """``{scene: [pairs of that scene]}`` in the order met."""
    by_scene: dict = {}
    for p in pairs:
        by_scene.setdefault(p.scene, []).append(p)
    return by_scene


def centre_crop(img: torch.Tensor, side: int) -> torch.Tensor:
    """The centre ``side``×``side`` crop (side capped by the image and rounded down to a multiple of 4)."""
    hh, ww = img.shape[-2:]
    side = min(side, hh, ww) // 4 * 4
    y, x = (hh - side) // 2, (ww - side) // 2
    return img[:, y:y + side, x:x + side]


def _level(p) -> int:
    return int(p.level) if p.level is not None and str(p.level).isdigit() else 1


def feature_images(pairs: Sequence[Any], scenes: Sequence[Any], side: int):
    """Centre crops of every hazy image of ``pairs`` and then of each scene's clear image (haze level 0).

    Returns ``(x, scene, level)``: a (N, 3, side, side) tensor and two arrays of length N (scene as str)."""
    from .data.datasets import PairedDataset

    ds = PairedDataset(pairs)
    imgs, scene, level = [], [], []
    for i, p in enumerate(pairs):
        imgs.append(centre_crop(ds[i]["hazy"], side))
        scene.append(str(p.scene))
        level.append(_level(p))
    for s in scenes:  # each scene's clear image as haze level 0
        imgs.append(centre_crop(ds[[p.scene for p in pairs].index(s)]["clear"], side))
        scene.append(str(s))
        level.append(0)
    return torch.stack(imgs), np.array(scene), np.array(level)


def eta2(f: np.ndarray, groups: np.ndarray) -> float:
    """η²: share of the total variance of the rows of ``f`` explained by the group means (nan if no variance)."""
    mu = f.mean(0)
    total = ((f - mu) ** 2).sum()
    between = sum((groups == g).sum() * ((f[groups == g].mean(0) - mu) ** 2).sum() for g in np.unique(groups))
    return float(between / total) if total > 0 else float("nan")


def pca2(f: np.ndarray):
    """First two principal-component scores of ``f`` (numpy SVD of the centred rows) and their variance shares."""
    c = f - f.mean(0)
    u, sv, _ = np.linalg.svd(c, full_matrices=False)
    return u[:, :2] * sv[:2], (sv[:2] ** 2 / (sv**2).sum())


def encoder_features(method, x: torch.Tensor, device) -> tuple[np.ndarray, np.ndarray]:
    """Mean-pooled deepest-tap features of G_B's encoder on G_A(x) (the dehazed query space) and of G_A's
    encoder on x (the input / key space), as float64 arrays (N, C). Leaves G_A and G_B in eval mode."""
    from .models.resnet_generator import to_pm1

    G_A, G_B = method.nets["G_A"].eval(), method.nets["G_B"].eval()
    layer = [max(method.nce_layers)] if method.use_nce else [G_A.bottleneck_start + G_A.n_blocks - 1]
    with torch.no_grad():
        xin = to_pm1(x.to(device))
        out, (k,) = G_A(xin, layer, encode_only=False)
        (q,) = G_B(out, layer, encode_only=True)
    return q.mean(dim=(2, 3)).cpu().double().numpy(), k.mean(dim=(2, 3)).cpu().double().numpy()


def plot_pca_by_scene_and_level(feats: Mapping[str, np.ndarray], scene: np.ndarray, level: np.ndarray,
                                scenes: Sequence[Any], name: str = ""):
    """One row per entry of ``feats`` ({"before training": f, ...}): PCA of f coloured by scene (left) and by
    haze level (right), with η² of each grouping. Returns the figure."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(len(feats), 2, figsize=(10, 4.2 * len(feats)), squeeze=False)
    markers = dict(zip(scenes, "osD^vP*X"))
    cmap = plt.get_cmap("viridis")
    for r, (when, f) in enumerate(feats.items()):
        z, ev = pca2(f)
        for c, (key, kind) in enumerate(((scene, "scene"), (level, "haze level"))):
            a = ax[r, c]
            for s in scenes:
                sel = scene == s
                if kind == "scene":
                    a.scatter(z[sel, 0], z[sel, 1], marker=markers[s], s=50, label=f"scene {s}")
                else:
                    sc = a.scatter(z[sel, 0], z[sel, 1], marker=markers[s], s=50, c=level[sel], cmap=cmap,
                                   vmin=0, vmax=max(9, level.max()))
            a.set(title=f"{name} {when}: coloured by {kind}".strip(), xlabel=f"PC1 ({ev[0]:.0%})",
                  ylabel=f"PC2 ({ev[1]:.0%})")
            a.text(0.02, 0.02, f"η²({kind}) = {eta2(f, key):.2f}", transform=a.transAxes, fontsize=9)
            if kind == "scene":
                a.legend(fontsize=8)
            else:
                fig.colorbar(sc, ax=a, label="haze level (0 = clear)")
    fig.tight_layout()
    return fig


def pool_kinds(scene: np.ndarray, level: np.ndarray, x_idx: int) -> list[tuple[str, str, int]]:
    """``(kind, scene, level)`` of every image of a candidate pool relative to its image ``x_idx``: "x itself",
    "same scene, clear" / "same scene, other haze", "other scene, clear" / "other scene, hazy"."""
    tags = []
    for i in range(len(scene)):
        if scene[i] == scene[x_idx]:
            kind = "x itself" if i == x_idx else ("same scene, clear" if level[i] == 0 else "same scene, other haze")
        else:
            kind = "other scene, clear" if level[i] == 0 else "other scene, hazy"
        tags.append((kind, scene[i], int(level[i])))
    return tags


def nearest_real_patches(method, pool: torch.Tensor, x_idx: int, li: int, device, noise_seed: int = 0) -> dict:
    """Generated negatives of a CDD-GAN-style ``method`` (``generate_negatives("X", taps)``) for image
    ``pool[x_idx]`` at tap ``method.nce_layers[li]``, and for each its nearest real patch (highest cosine) among
    the key embeddings H_A(G_A^enc(·)) of every position of every ``pool`` image.

    Returns ``negs`` (M, nc), ``best_cos`` / ``best`` (M,), ``cand_src`` (one ``(image, row, col, h, w)`` per
    candidate position) and ``hardness`` (mean cosines of the dehazed queries to their positives, to the
    generated and the in-image negatives, among the negatives, and of each negative to its nearest patch).
    The noise of the negative generator is drawn after ``torch.manual_seed(noise_seed)``."""
    from .models.resnet_generator import to_pm1

    m = method
    with torch.no_grad():
        xin = to_pm1(pool[x_idx:x_idx + 1].to(device))
        fake, k_taps = m.nets["G_A"](xin, m.nce_layers, encode_only=False)
        q_taps = m.nets["G_B"](fake, m.nce_layers, encode_only=True)
        torch.manual_seed(noise_seed)
        negs = m.generate_negatives("X", k_taps)[li]  # (M, nc)
        q_all, _ = m.nets["H_B"](q_taps, 0)
        k_x_all, _ = m.nets["H_A"](k_taps, 0)
        cand, cand_src = [], []
        for j, img in enumerate(pool):
            taps_j = m.nets["G_A"](to_pm1(img[None].to(device)), m.nce_layers, encode_only=True)
            emb, _ = m.nets["H_A"](taps_j, 0)
            hl, wl = taps_j[li].shape[-2:]
            cand.append(emb[li])
            cand_src += [(j, pos // wl, pos % wl, hl, wl) for pos in range(hl * wl)]
        cand = torch.cat(cand)
        sim = negs @ cand.T  # (M, n_candidates)
        best_cos, best = sim.max(dim=1)
        q_l, k_l = q_all[li], k_x_all[li]
        hardness = {"cos(query, positive)": float((q_l * k_l).sum(1).mean()),
                    "cos(query, generated negatives)": float((q_l @ negs.T).mean()),
                    "cos(query, in-image negatives)": float(((q_l @ k_l.T).sum() - (q_l * k_l).sum()) / (len(q_l) * (len(q_l) - 1))),
                    "mean pairwise cos among negatives": float(((negs @ negs.T).sum() - len(negs)) / (len(negs) * (len(negs) - 1))),
                    "mean cos(negative, nearest real patch)": float(best_cos.mean())}
    return {"negs": negs, "best_cos": best_cos, "best": best, "cand_src": cand_src, "hardness": hardness}


def nearest_origin_table(best: torch.Tensor, cand_src: Sequence[tuple], kinds: Sequence[str]):
    """Where the nearest real patches come from: per kind of pool image, the number and share of negatives
    whose nearest patch lies there, beside that kind's share of all candidate positions."""
    import pandas as pd

    src_kind = [kinds[cand_src[int(b)][0]] for b in best]
    origin = pd.Series(src_kind).value_counts().rename_axis("nearest real patch comes from").reset_index(name="negatives")
    n_pos_by_kind = pd.Series([kinds[c[0]] for c in cand_src]).value_counts()
    origin["share of candidate positions"] = origin["nearest real patch comes from"].map(n_pos_by_kind / len(cand_src))
    origin["share of negatives"] = origin["negatives"] / origin["negatives"].sum()
    return origin


def receptive_crop(img: torch.Tensor, src: tuple, rf: int = 35) -> torch.Tensor:
    """The ``rf``×``rf`` pixels of ``img`` (clipped at its border) around feature position ``src`` =
    ``(image, row, col, h, w)`` of an h×w tap."""
    _, pi, pj, hl, _ = src
    side = img.shape[-1]
    stride = side / hl
    cy, cx = (pi + 0.5) * stride, (pj + 0.5) * stride
    y0, x0 = int(max(0, cy - rf / 2)), int(max(0, cx - rf / 2))
    return img[:, y0:int(min(side, cy + rf / 2)), x0:int(min(side, cx + rf / 2))]
