"""The library helpers notebook 04 (IICL) calls: bright/dark patch pictures and summaries
(dehazelab.patches) and the variant-means figure (dehazelab.plotting.plot_variant_means)."""

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

from dehazelab import patches as P  # noqa: E402
from dehazelab import plotting  # noqa: E402
from dehazelab.losses.iicl import patch_scores, select_bright_dark_patches  # noqa: E402


def _pair(seed=0, h=32, w=40):
    """A clear image and a hazy one whose top-left quadrant is dense haze (airlight 0.9)."""
    g = torch.Generator().manual_seed(seed)
    clear = torch.rand(3, h, w, generator=g) * 0.5
    t = torch.ones(1, h, w)
    t[:, : h // 2, : w // 2] = 0.2
    hazy = clear * t + 0.9 * (1 - t)
    return hazy, clear


def _test_set(n=3):
    return [{"name": f"img{i}", "hazy": _pair(i)[0], "clear": _pair(i)[1]} for i in range(n)]


def test_fit_downscales_to_multiples_of_four():
    x = torch.rand(3, 101, 203)
    y = P.fit(x, max_side=100)
    assert max(y.shape[-2:]) <= 100 and all(s % 4 == 0 for s in y.shape[-2:])
    small = torch.rand(3, 40, 60)
    assert P.fit(small, 480) is small  # already fits: untouched


def test_to_chw_roundtrip():
    img = np.random.rand(5, 7, 3).astype(np.float32)
    assert torch.equal(P.to_chw(img).permute(1, 2, 0), torch.from_numpy(img))


def test_demo_patch_side_caps_at_a_quarter():
    assert P.demo_patch_side(torch.zeros(3, 32, 40), 48) == 8
    assert P.demo_patch_side(torch.zeros(3, 400, 400), 48) == 48


def test_patch_rows_pick_the_haze_and_match_the_selection():
    hazy, clear = _pair()
    rows, (p, bright, dark) = P.patch_rows("x", hazy, clear, patch=8, k=2)
    assert p == 8 and len(rows) == 4
    assert [r["group"] for r in rows] == ["bright", "bright", "dark", "dark"]
    b2, d2 = select_bright_dark_patches(hazy[None], patch=p, k=2, by="dark_channel")
    assert torch.equal(bright, b2) and torch.equal(dark, d2)
    sc = patch_scores(hazy[None], patch=p)[0]
    for r in rows:
        assert r["dark channel (hazy)"] == float(sc[r["y"] // p, r["x"] // p])
    # the bright patches lie in the dense-haze quadrant and hold more haze than the dark ones
    assert all(r["y"] < 16 and r["x"] < 20 for r in rows if r["group"] == "bright")
    res = {g: np.mean([r["haze residue mean|I-J|"] for r in rows if r["group"] == g]) for g in ("bright", "dark")}
    assert res["bright"] > res["dark"]
    rows_real, _ = P.patch_rows("real", hazy, None, patch=8, k=2)  # no ground truth: no haze measures
    assert "haze residue mean|I-J|" not in rows_real[0]


def test_draw_patches_returns_the_rows_of_every_image():
    hazy, clear = _pair()
    demo = [("sots", hazy, clear), ("real", hazy, None)]
    fig, df = P.draw_patches(demo, patch=8, k=2)
    plt.close(fig)
    assert len(df) == 8 and list(df.image.unique()) == ["sots", "real"]
    assert df[df.image == "real"]["haze residue mean|I-J|"].isna().all()
    assert list(df.columns[:7]) == ["image", "group", "rank", "y", "x", "patch", "dark channel (hazy)"]


def test_patch_statistics_and_summary():
    ts = _test_set(3)
    stats = P.patch_statistics(ts, patch=8, k=2)
    assert len(stats) == 3 * 2 * 2
    assert list(stats.columns) == ["image", "group"] + P.STAT_COLUMNS
    summary = P.summarize_patches(stats, n_images=len(ts))
    assert list(summary.columns) == ["group", "test images", "patches"] + P.STAT_COLUMNS + ["vgg_used"]
    assert list(summary.group) == ["bright", "dark"] and list(summary.patches) == [6, 6]
    assert summary.set_index("group").loc["bright", "dark channel (hazy)"] == pytest.approx(
        stats[stats.group == "bright"]["dark channel (hazy)"].mean())
    plt.close(P.plot_patch_statistics(stats))


def test_demo_images_spreads_over_the_test_set(tmp_path):
    ts = _test_set(5)
    demo, n_real = P.demo_images(ts, n_sots=3, n_real=1, root=tmp_path)  # no real-hazy folder
    assert n_real == 0 and [d[0] for d in demo] == ["SOTS img0", "SOTS img2", "SOTS img4"]
    assert P.real_photos(2, root=tmp_path) == []


def test_real_photos_reads_and_fits(tmp_path):
    from PIL import Image

    folder = tmp_path / "real-hazy" / "fattal"
    folder.mkdir(parents=True)
    Image.fromarray((np.random.rand(30, 50, 3) * 255).astype(np.uint8)).save(folder / "canon_input.png")
    Image.fromarray((np.random.rand(20, 20, 3) * 255).astype(np.uint8)).save(folder / "zzz.png")
    got = P.real_photos(2, root=tmp_path)
    assert [n for n, _ in got] == ["fattal/canon_input.png", "fattal/zzz.png"]  # the preferred photo first
    assert got[0][1].shape == (3, 28, 48)


def test_plot_variant_means():
    variants = ["backbone", "+ PRM"]
    table = pd.DataFrame([
        {"backbone": "—", "variant": "hazy input", "PSNR": 12.0, "SSIM": 0.6},
        {"backbone": "A", "variant": "backbone", "PSNR": 14.0, "PSNR ±95%": np.nan, "SSIM": 0.7, "SSIM ±95%": 0.01},
        {"backbone": "A", "variant": "+ PRM", "PSNR": 15.0, "PSNR ±95%": 0.5, "SSIM": 0.72, "SSIM ±95%": 0.02},
    ])
    fig = plotting.plot_variant_means(table, {"a": "A"}, variants, hazy={"PSNR": 12.0, "SSIM": 0.6}, n_seeds=1)
    axes = fig.axes
    assert len(axes) == 2 and axes[0].get_title() == "PSNR, mean ± 95% CI over 1 seed(s)"
    assert [t.get_text() for t in axes[0].get_xticklabels()] == variants
    plt.close(fig)
