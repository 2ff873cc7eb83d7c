"""The pictures notebook 02 uses to teach PatchNCE: where the query, its positive and its negatives sit,
and how the trained encoder's similarity of one query to every input position looks.

* :func:`centre_crop` — a centred square crop of an image pair, its side a multiple of 4;
* :func:`sampling_figure` — the output's query patch (blue) on the clear image, the positive at the same
  place (green) and randomly drawn negatives (red) on the hazy input, with the receptive field as the side;
* :func:`query_maps` — cosine similarity of the output's centre query to every input key, per tapped layer;
* :func:`similarity_figure` — those maps before and after training, and one table row per map.
"""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd
import torch

from . import plotting
from .models.resnet_generator import to_pm1

__all__ = ["centre_crop", "sampling_positions", "sampling_figure", "query_maps", "similarity_figure"]

#: Receptive field (pixels) of the first residual block's output, as the CUT paper describes it, and the
#: stride of that layer (1/4 resolution).
RF, STRIDE = 35, 4


def centre_crop(sample: dict, max_side: int = 128) -> tuple[torch.Tensor, torch.Tensor]:
    """``(hazy, clear)`` centre-cropped to a square of side ``min(max_side, H, W)`` rounded down to a multiple of 4."""
    h, w = sample["hazy"].shape[-2:]
    s = min(max_side, h, w) // 4 * 4
    y0, x0 = (h - s) // 2, (w - s) // 2
    return sample["hazy"][:, y0:y0 + s, x0:x0 + s], sample["clear"][:, y0:y0 + s, x0:x0 + s]


def sampling_positions(side: int, num_patches: int, seed: int = 0, stride: int = STRIDE) -> torch.Tensor:
    """Pixel centres ``(row, col)`` of ``min(num_patches, positions)`` distinct positions of a layer at
    ``1/stride`` resolution, drawn without replacement as PatchNCE samples them; the first is the query's."""
    grid_side = side // stride
    n = min(num_patches, grid_side * grid_side)
    ids = torch.randperm(grid_side * grid_side, generator=torch.Generator().manual_seed(seed))[:n]
    return torch.stack([ids // grid_side, ids % grid_side], 1).float() * stride + stride / 2


def sampling_figure(hazy: torch.Tensor, clear: torch.Tensor, num_patches: int, seed: int = 0, rf: int = RF):
    """Query (on ``clear``, standing for the output), positive and negatives (on ``hazy``). Returns the figure."""
    import matplotlib.pyplot as plt
    from matplotlib.patches import Rectangle

    side = hazy.shape[-1]
    centres = sampling_positions(side, num_patches, seed)
    q = centres[0]

    def draw(ax, c, color, lw=2.0):
        ax.add_patch(Rectangle((float(c[1]) - rf / 2, float(c[0]) - rf / 2), rf, rf, fill=False, edgecolor=color, linewidth=lw))

    fig, ax = plt.subplots(1, 2, figsize=(8, 4.2))
    ax[0].imshow(plotting.to_display(clear))
    draw(ax[0], q, "tab:blue", 2.5)
    ax[0].set_title("output $\\hat y = G(x)$: query $v$ (blue)", fontsize=10)
    ax[1].imshow(plotting.to_display(hazy))
    ax[1].scatter(centres[1:, 1], centres[1:, 0], s=9, c="tab:red", label=f"negatives $v^-$ ({len(centres) - 1})")
    for c in centres[1:4]:
        draw(ax[1], c, "tab:red", 1.5)
    draw(ax[1], q, "tab:green", 2.5)
    ax[1].scatter([q[1]], [q[0]], s=40, c="tab:green", label="positive $v^+$ (same location)")
    ax[1].set_title("input $x$: keys", fontsize=10)
    ax[1].legend(loc="lower left", fontsize=8, framealpha=0.9)
    for a in ax:
        a.set_xlim(-0.5, side - 0.5)
        a.set_ylim(side - 0.5, -0.5)
        a.axis("off")
    fig.tight_layout()
    return fig


def query_maps(method, x: torch.Tensor):
    """``(output in [0, 1], maps)`` for image ``x`` (3×H×W in [0, 1]) through a CUT-style ``method`` (``nets["G"]``,
    ``nets["F"]``, ``nce_layers``, ``nce_tau``). One map per tapped layer except layer 0: ``(layer, sim, p, rank,
    (i, j))`` — ``sim[h, w]`` the cosine similarity of the output's centre query to the input key at each
    position, ``p`` the softmax probability (temperature ``nce_tau``) of the positive among all positions,
    ``rank`` its rank (1 = the positive is the best match), ``(i, j)`` the centre."""
    G, H = method.nets["G"], method.nets["F"]
    layers = method.nce_layers
    with torch.no_grad():
        xin = to_pm1(x[None])
        out = G(xin)
        fk = G(xin, layers, encode_only=True)
        fq = G(out, layers, encode_only=True)
        k_all, _ = H(fk, 0)  # 0 -> every position, raster order
        q_all, _ = H(fq, 0)
    maps = []
    for li, layer in enumerate(layers):
        if layer == 0:
            continue
        h, w = fk[li].shape[-2:]
        p = (h // 2) * w + w // 2
        sim = (k_all[li] @ q_all[li][p]).reshape(h, w)
        prob = torch.softmax(sim.flatten() / method.nce_tau, 0)[p]
        rank = int((sim.flatten() > sim.flatten()[p]).sum()) + 1
        maps.append((layer, sim, float(prob), rank, (h // 2, w // 2)))
    return (out[0] + 1) / 2, maps


def similarity_figure(x: torch.Tensor, rows: Sequence[tuple[str, torch.Tensor, list]]):
    """``rows`` = ``(title, output, maps)`` from :func:`query_maps` (e.g. before and after training) drawn as
    input | output | one similarity map per layer. Returns ``(figure, one table row per map)``."""
    import matplotlib.pyplot as plt

    side = x.shape[-1]
    n_maps = len(rows[0][2])
    fig, ax = plt.subplots(len(rows), n_maps + 2, figsize=(2.3 * (n_maps + 2), 2.5 * len(rows)), squeeze=False)
    records = []
    im = None
    for r, (title, out_img, maps) in enumerate(rows):
        ax[r, 0].imshow(plotting.to_display(x))
        ax[r, 1].imshow(plotting.to_display(out_img))
        for a in ax[r, :2]:
            a.plot(side / 2, side / 2, "+", color="tab:blue", ms=14, mew=2)
        ax[r, 0].set_ylabel(title, fontsize=10)
        for j, (layer, sim, prob, rank, (ci, cj)) in enumerate(maps):
            a = ax[r, j + 2]
            im = a.imshow(sim.numpy(), cmap="magma", vmin=-1, vmax=1)
            a.plot(cj, ci, "+", color="cyan", ms=10, mew=1.5)
            a.set_title(f"layer {layer}: rank {rank}/{sim.numel()}\np(positive) {prob:.2g}", fontsize=8)
            records.append({"weights": title, "layer": layer, "cos(query, positive)": float(sim[ci, cj]),
                            "mean cos(query, other keys)": float((sim.sum() - sim[ci, cj]) / (sim.numel() - 1)),
                            "rank of positive": rank, "p(positive) among all positions": prob,
                            "positions": sim.numel()})
    ax[0, 0].set_title("input x (query location)", fontsize=9)
    ax[0, 1].set_title("output G(x)", fontsize=9)
    for a in ax.flat:
        a.set_xticks([])
        a.set_yticks([])
    if im is not None:
        fig.colorbar(im, ax=ax[:, 2:].ravel().tolist(), shrink=0.8, label="cosine similarity")
    return fig, pd.DataFrame(records)
