"""Bright / dark patch pictures and their summaries (notebook 04, IICL's intra-image contrast).

The selection itself (:func:`dehazelab.losses.iicl.select_bright_dark_patches`) lives with the loss;
this module gathers the demonstration images, measures what the selected patches hold (haze residue
against the ground truth, dark channel of the clear patch) and draws them, defined once so the
notebook only calls them (d2l style).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from .features import dark_channel

__all__ = ["to_chw", "fit", "real_photos", "demo_images", "demo_patch_side", "patch_rows", "draw_patches",
           "patch_statistics", "summarize_patches", "plot_patch_statistics", "NO_VGG"]

NO_VGG = "— (patch selection uses no VGG)"
STAT_COLUMNS = ["dark channel (hazy)", "dark channel (clear)", "haze residue mean|I-J|", "PSNR hazy vs clear"]
GROUP_COLOURS = (("bright", "red"), ("dark", "deepskyblue"))


def to_chw(img: np.ndarray) -> torch.Tensor:
    """A 3xHxW tensor from an HxWx3 numpy image."""
    return torch.from_numpy(np.ascontiguousarray(img.transpose(2, 0, 1)))


def fit(x: torch.Tensor, max_side: int = 480) -> torch.Tensor:
    """Downscale a 3xHxW image so its longer side is at most max_side, sides multiples of 4."""
    h, w = x.shape[-2:]
    s = min(1.0, max_side / max(h, w))
    hh, ww = max(4, int(h * s) // 4 * 4), max(4, int(w * s) // 4 * 4)
    if (hh, ww) != (h, w):
        x = F.interpolate(x[None], size=(hh, ww), mode="area")[0]
    return x


PREFERRED_REAL = ["fattal/cityscape_input.png", "fattal/tiananmen_input.png", "fattal/canon_input.png",
                  "fattal/road_input.png", "classic/dcp09_ny1.bmp"]


def real_photos(n: int, root=None) -> list[tuple[str, torch.Tensor]]:
    """Up to n real hazy photographs (no ground truth) from ``<root>/real-hazy`` (default: the data
    root) as (name, fitted 3xHxW), or [] when absent. The classic test photos come first."""
    from .data.images import IMAGE_EXTS, read_image
    from .paths import data_root

    root = data_root() if root is None else root
    if n <= 0 or root is None or not (root / "real-hazy").is_dir():
        return []
    files = [root / "real-hazy" / f for f in PREFERRED_REAL if (root / "real-hazy" / f).is_file()]
    if len(files) < n:
        files += sorted(f for f in (root / "real-hazy").rglob("*") if f.suffix.lower() in IMAGE_EXTS
                        and f not in files)
    return [(f"{f.parent.name}/{f.name}", fit(to_chw(read_image(f)))) for f in files[:n]]


def demo_images(test_set, n_sots: int, n_real: int, root=None):
    """(name, hazy 3xHxW, clear 3xHxW or None): n_sots test pairs spread evenly over ``test_set``, then
    up to n_real real hazy photographs; also returns how many real photographs were found."""
    demo = []
    for i in np.linspace(0, len(test_set) - 1, min(n_sots, len(test_set))).round().astype(int):
        it = test_set[int(i)]
        demo.append((f"SOTS {it['name']}", it["hazy"], it["clear"]))
    real = real_photos(n_real, root=root)
    demo += [(name, x, None) for name, x in real]
    return demo, len(real)


def demo_patch_side(hz: torch.Tensor, patch: int) -> int:
    """The patch side used on image ``hz``: ``patch``, at most a quarter of its shorter side."""
    return min(patch, min(hz.shape[-2:]) // 4)


def _pair_stats(hp: torch.Tensor, cp: torch.Tensor, p: int) -> dict:
    """Dark channel of the clear patch, haze residue and PSNR of a hazy patch against its clear one."""
    from .losses.iicl import patch_scores
    from .metrics import psnr

    return {"dark channel (clear)": float(patch_scores(cp[None], patch=p)[0].mean()),
            "haze residue mean|I-J|": float((hp - cp).abs().mean()),
            "PSNR hazy vs clear": psnr(hp.permute(1, 2, 0).numpy(), cp.permute(1, 2, 0).numpy())}


def patch_rows(name: str, hz: torch.Tensor, cl, patch: int, k: int):
    """The k brightest and k darkest patches of ``hz`` by dark channel, one dict per patch (image, group,
    rank, y, x, patch, its mean dark channel; with a clear image also what :func:`_pair_stats` measures),
    and the selection ``(p, bright, dark)`` (coordinates 1xkx2) for :func:`draw_patches`."""
    from .losses.iicl import extract_patches, patch_scores, select_bright_dark_patches

    p = demo_patch_side(hz, patch)
    bright, dark = select_bright_dark_patches(hz[None], patch=p, k=k, by="dark_channel")
    sc = patch_scores(hz[None], patch=p, by="dark_channel")[0]
    rows = []
    for group, coords in (("bright", bright[0]), ("dark", dark[0])):
        for rank, (y, x) in enumerate(coords.tolist()):
            row = {"image": name, "group": group, "rank": rank + 1, "y": y, "x": x, "patch": p,
                   "dark channel (hazy)": float(sc[y // p, x // p])}
            if cl is not None:
                hp = extract_patches(hz[None], torch.tensor([[[y, x]]]), p)[0, 0]
                cp = extract_patches(cl[None], torch.tensor([[[y, x]]]), p)[0, 0]
                row.update(_pair_stats(hp, cp, p))
            rows.append(row)
    return rows, (p, bright, dark)


def draw_patches(demo, patch: int, k: int):
    """One row per demo image: the hazy image with its k brightest (red, labelled with their mean dark
    channel) and darkest (blue) patches, its dark channel, and the ground truth with the same patches.
    Returns the figure and a DataFrame of :func:`patch_rows` over every image."""
    import matplotlib.pyplot as plt
    from matplotlib.patches import Rectangle

    from .plotting import to_display

    all_rows = []
    fig, axes = plt.subplots(len(demo), 3, figsize=(13, 3.4 * len(demo)), squeeze=False)
    for r, (name, hz, cl) in enumerate(demo):
        rows, (p, bright, dark) = patch_rows(name, hz, cl, patch, k)
        all_rows += rows
        scores = {(row["y"], row["x"]): row["dark channel (hazy)"] for row in rows}
        panels = [(hz, f"{name}: hazy"), (dark_channel(hz, 7), "dark channel of the hazy image (7 px)"),
                  (cl, "ground truth, same patches") if cl is not None else (None, "(real photo: no ground truth)")]
        for c, (img, title) in enumerate(panels):
            ax = axes[r, c]
            ax.axis("off")
            ax.set_title(title, fontsize=9)
            if img is None:
                continue
            if img.dim() == 2:
                ax.imshow(img.numpy(), cmap="magma", vmin=0, vmax=1)
            else:
                ax.imshow(to_display(img))
            for (group, colour), coords in zip(GROUP_COLOURS, (bright[0], dark[0])):
                for y, x in coords.tolist():
                    ax.add_patch(Rectangle((x - 0.5, y - 0.5), p, p, fill=False, lw=1.6, ec=colour))
                    if c == 0:
                        ax.text(x + 1, y + p - 2, f"{scores[(y, x)]:.2f}", color="white", fontsize=7,
                                bbox=dict(fc=colour, alpha=0.7, pad=1, lw=0))
    return fig, pd.DataFrame(all_rows)


def patch_statistics(test_set, patch: int, k: int) -> pd.DataFrame:
    """For every pair of ``test_set``: its k brightest and k darkest patches (dark channel of the hazy
    input), one row each with the dark channel of the hazy and the clear patch, the haze residue
    mean|I-J| and the PSNR of the hazy patch against the clear one."""
    from .losses.iicl import extract_patches, patch_scores, select_bright_dark_patches

    rows = []
    for i in range(len(test_set)):
        it = test_set[i]
        hz, cl = it["hazy"], it["clear"]
        p = demo_patch_side(hz, patch)
        bright, dark = select_bright_dark_patches(hz[None], patch=p, k=k)
        for group, coords in (("bright", bright), ("dark", dark)):
            hp = extract_patches(hz[None], coords, p)[0]
            cp = extract_patches(cl[None], coords, p)[0]
            for j in range(hp.shape[0]):
                rows.append({"image": it["name"], "group": group,
                             "dark channel (hazy)": float(patch_scores(hp[j][None], patch=p)[0].mean()),
                             **_pair_stats(hp[j], cp[j], p)})
    return pd.DataFrame(rows)


def summarize_patches(stats: pd.DataFrame, n_images: int) -> pd.DataFrame:
    """Per group (bright, dark): the number of test images and patches, and the mean of each measure."""
    summary = stats.groupby("group")[STAT_COLUMNS].mean().reset_index()
    summary.insert(1, "patches", stats.groupby("group").size().values)
    summary.insert(1, "test images", n_images)
    summary["vgg_used"] = NO_VGG
    return summary


def plot_patch_statistics(stats: pd.DataFrame):
    """Two scatters per patch: haze residue, and the clear patch's dark channel, against the hazy dark channel."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(1, 2, figsize=(10, 3.2))
    for g, colour in GROUP_COLOURS:
        s = stats[stats.group == g]
        ax[0].scatter(s["dark channel (hazy)"], s["haze residue mean|I-J|"], s=12, c=colour, label=g, alpha=0.7)
        ax[1].scatter(s["dark channel (hazy)"], s["dark channel (clear)"], s=12, c=colour, label=g, alpha=0.7)
    ax[0].set(xlabel="dark channel of the hazy patch", ylabel="mean |I - J| in the patch", title="haze the patch holds")
    ax[1].set(xlabel="dark channel of the hazy patch", ylabel="dark channel of the clear patch",
              title="bright because hazy, or bright scene?")
    ax[1].plot([0, 1], [0, 1], "k:", lw=0.8)
    for a in ax:
        a.legend(fontsize=8)
    return fig
