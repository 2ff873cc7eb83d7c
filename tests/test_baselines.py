"""dehazelab.baselines: notebook 00's set-up, images, DCP scores and tables (tiny images written here)."""

import json
import math

import numpy as np
import pandas as pd
import pytest
import torch

from dehazelab import baselines, papers
from dehazelab import metrics as M
from dehazelab.data import synthetic
from dehazelab.data.images import write_image
from dehazelab.models.dcp import dehaze_dcp
from dehazelab.runs.grids import notebook_defaults


def _img(seed, h=24, w=28):
    return np.random.default_rng(seed).uniform(0.05, 0.95, (h, w, 3)).astype(np.float32)


def _item(seed, name="x"):
    clear = _img(seed)
    return {"name": name, "hazy": (0.6 * clear + 0.35).astype(np.float32), "clear": clear}


@pytest.fixture
def offline(tmp_path, monkeypatch):
    monkeypatch.setenv("DEHAZELAB_RESULTS", str(tmp_path / "results"))
    monkeypatch.setenv("DEHAZELAB_DATA", "")
    return tmp_path


def test_start_resolves_the_config_and_sets_up(offline):
    params = {**notebook_defaults("00_data_baselines"), "seed": 7, "sots_levels": ["1", 9], "other": 1}
    cfg, out, data = baselines.start(params)
    assert data is None and cfg.data_root is None
    assert out == offline / "results" / "smoke" / "00_data_baselines" and out.is_dir()
    assert cfg.out_dir == "smoke/00_data_baselines" and cfg.seed == 7 and cfg.sots_levels == [1, 9]
    assert torch.initial_seed() == 7 and torch.get_num_threads() == params["threads"]
    assert cfg.versions["torch"] == torch.__version__ and cfg.versions["threads"] == params["threads"]
    assert cfg.data_used == {}


@pytest.mark.parametrize("change, match", [({"size": "huge"}, "size"), ({"sots_test_scenes": [1431, 1430]}, "range"),
                                           ({"sots_test_scenes": [1430]}, "range")])
def test_start_refuses_bad_parameters(offline, change, match):
    with pytest.raises(ValueError, match=match):
        baselines.start({**notebook_defaults("00_data_baselines"), **change})


def test_start_names_a_missing_parameter(offline):
    params = notebook_defaults("00_data_baselines")
    del params["nh_max_pairs"]
    with pytest.raises(ValueError, match="nh_max_pairs"):
        baselines.start(params)


def test_without_data_the_test_items_are_the_synthetic_test_scenes():
    items, used = baselines.sots_test_items(None, [1430, 1431], [1], seed=0)
    want = [p for p in synthetic.synthetic_pairs(seed=0) if p.split == "test"]
    assert [it["name"] for it in items] == [f"{p.scene}_{p.level}" for p in want]
    assert used == {"source": "synthetic-skimage", "n_images": len(want)}
    np.testing.assert_array_equal(items[0]["hazy"], want[0].hazy)


def _sots_folder(root):
    for scene in (1429, 1430, 1431, 1432):
        write_image(root / "sots-indoor" / "gt" / f"{scene}.png", _img(scene))
        for level in (1, 5, 9):
            write_image(root / "sots-indoor" / "hazy" / f"{scene}_{level}.png", _img(scene * 10 + level))


def test_sots_items_keep_the_inclusive_scene_range_and_levels(tmp_path):
    _sots_folder(tmp_path)
    items, used = baselines.sots_test_items(tmp_path, [1430, 1431], [1, 9])
    assert [(it["scene"], it["level"]) for it in items] == [("1430", "1"), ("1430", "9"), ("1431", "1"), ("1431", "9")]
    assert used == {"source": "sots-indoor", "layout": "sots", "scenes": [1430, 1431], "levels": [1, 9], "n_images": 4}
    assert items[0]["name"] == "1430_1.png" and items[0]["hazy"].shape == (24, 28, 3)
    assert np.abs(items[0]["clear"] - _img(1430)).max() < 1 / 255 + 1e-6  # 8-bit PNG round trip


def test_nh_haze_items_take_the_first_pairs(tmp_path):
    assert baselines.nh_haze_items(None, 3) == ([], None)
    assert baselines.nh_haze_items(tmp_path, 3) == ([], None)  # no nh-haze folder
    for i in (51, 52, 53):
        write_image(tmp_path / "nh-haze" / f"{i}_hazy.png", _img(i))
        write_image(tmp_path / "nh-haze" / f"{i}_GT.png", _img(i + 100))
    items, used = baselines.nh_haze_items(tmp_path, 2)
    assert [it["name"] for it in items] == ["51_hazy.png", "52_hazy.png"] and used == {"source": "nh-haze", "pairs": ["51", "52"]}
    assert baselines.nh_haze_items(tmp_path, 0) == ([], {"source": "nh-haze", "pairs": []})


def test_real_photo_files_stride_through_the_subfolders(tmp_path):
    assert baselines.real_photo_files(None, 4) == [] and baselines.real_photo_files(tmp_path, 4) == []
    names = [f"fattal/f{i}.png" for i in range(6)] + [f"classic/c{i}.png" for i in range(3)]
    for n in names:
        write_image(tmp_path / "real-hazy" / n, _img(len(n)))
    files = baselines.real_photo_files(tmp_path, 4)
    # fattal first, then classic (the order of REAL_SUBFOLDERS); 9 photos, stride 9 // 4 = 2, first 4
    assert [str(f.relative_to(tmp_path / "real-hazy")) for f in files] == ["fattal/f0.png", "fattal/f2.png",
                                                                           "fattal/f4.png", "classic/c0.png"]
    assert len(baselines.real_photo_files(tmp_path, 20)) == 9 and baselines.real_photo_files(tmp_path, 0) == []


def test_convention_gap_is_the_mean_of_each_convention():
    items = [_item(1), _item(2), _item(3)]
    t = baselines.convention_gap(items)
    assert list(t.columns) == ["quantity", "scikit-image (reported)", "AECR-Net/FFA code", "difference"]
    sk = t.set_index("quantity")["scikit-image (reported)"]
    ffa = t.set_index("quantity")["AECR-Net/FFA code"]
    assert sk["PSNR (dB)"] == pytest.approx(np.mean([M.psnr(i["hazy"], i["clear"]) for i in items]))
    assert ffa["SSIM"] == pytest.approx(np.mean([M.ssim_ffa(i["hazy"], i["clear"]) for i in items]))
    np.testing.assert_allclose(t["difference"], t["AECR-Net/FFA code"] - t["scikit-image (reported)"])
    with pytest.raises(ValueError, match="no items"):
        baselines.convention_gap([])


def test_score_dcp_scores_both_variants_on_every_set():
    a, b = _item(1, "a"), _item(2, "b")
    df = baselines.score_dcp({"S": [a], "N": [b]})
    assert list(zip(df["set"], df.image, df.method)) == [("S", "a", "DCP (ours)"), ("S", "a", "DCP, no refinement (ours)"),
                                                         ("N", "b", "DCP (ours)"), ("N", "b", "DCP, no refinement (ours)")]
    J = dehaze_dcp(b["hazy"], refine=False)[0]
    r = df.iloc[3]
    assert r.psnr == pytest.approx(M.psnr(J, b["clear"])) and r.ssim_ffa == pytest.approx(M.ssim_ffa(J, b["clear"]))
    assert r.psnr_hazy == pytest.approx(M.psnr(b["hazy"], b["clear"])) and df.psnr_hazy[2] == r.psnr_hazy
    assert df.psnr[0] != df.psnr[1]  # the refinement changes the output


def test_bootstrap_half_width_behaves_like_an_interval_of_the_mean():
    x = np.random.default_rng(3).normal(10.0, 2.0, 400)
    h = baselines.bootstrap_half_width(x, n_boot=4000)
    assert h == pytest.approx(1.96 * x.std(ddof=1) / math.sqrt(len(x)), rel=0.1)  # the normal approximation
    assert baselines.bootstrap_half_width(x + 5.0, n_boot=500) == pytest.approx(baselines.bootstrap_half_width(x, n_boot=500))
    assert baselines.bootstrap_half_width(3 * x, n_boot=500) == pytest.approx(3 * baselines.bootstrap_half_width(x, n_boot=500))
    assert baselines.bootstrap_half_width([2.0, 2.0, 2.0]) == 0.0
    assert math.isnan(baselines.bootstrap_half_width([1.0]))
    with pytest.raises(ValueError, match="n_boot"):
        baselines.bootstrap_half_width(x, n_boot=0)


def test_quoted_dcp_is_the_papers_row():
    row = papers.quoted("cr-table1")["DCP"]
    q = baselines.quoted_dcp()
    assert q["SOTS-indoor"] == (row["SOTS-indoor PSNR"], row["SOTS-indoor SSIM"]) and q["SOTS-indoor"][0] == 15.09
    assert set(q) == {"SOTS-indoor", "NH-HAZE"}


def _per_image():
    return pd.DataFrame({"method": ["DCP (ours)", "DCP, no refinement (ours)"] * 3 + ["DCP (ours)"],
                         "set": ["S"] * 6 + ["N"], "image": list("aabbccd"),
                         "psnr_hazy": [10, 10, 12, 12, 14, 14, 9.0], "ssim_hazy": [0.5] * 7,
                         "psnr": [15, 14, 17, 16, 19, 18, 11.0], "ssim": [0.7, 0.6, 0.8, 0.7, 0.9, 0.8, 0.5],
                         "psnr_ffa": [0.0] * 7, "ssim_ffa": [0.1, 0.0, 0.2, 0.0, 0.3, 0.0, 0.4]})


def test_dcp_table_means_and_quotes_only_the_paper_setting():
    t = baselines.dcp_table(_per_image(), {"S": (16.0, 0.8)})
    assert list(zip(t["test set"], t.method)) == [("S", "DCP (ours)"), ("S", "DCP, no refinement (ours)"), ("N", "DCP (ours)")]
    r = t.iloc[0]
    assert (r["n images"], r.PSNR, r.SSIM, r["SSIM (FFA conv.)"], r["hazy input PSNR"]) == (3, 17.0, pytest.approx(0.8), pytest.approx(0.2), 12.0)
    assert r["PSNR ±95%"] == pytest.approx(baselines.bootstrap_half_width([15, 17, 19]))
    assert (r["paper PSNR (quoted)"], r["paper SSIM (quoted)"]) == (16.0, 0.8)
    assert t["paper PSNR (quoted)"][1:].isna().all()  # the ablation and an unquoted set
    assert math.isnan(t["PSNR ±95%"][2])  # one image: no interval


def test_gap_lines_say_ours_and_the_gap_to_the_paper():
    lines = baselines.gap_lines(baselines.dcp_table(_per_image(), {"S": (16.5, 0.75)}))
    assert lines == ["S: ours 17.00 dB / 0.8000 on 3 images (hazy input 12.00 dB); paper (quoted) 16.50 dB / 0.7500, "
                     "gap +0.50 dB / +0.0500",
                     "N: ours 11.00 dB / 0.5000 on 1 images (hazy input 9.00 dB)"]


def test_metrics_key_each_row_by_its_set(offline):
    cfg, _, _ = baselines.start(notebook_defaults("00_data_baselines"))
    cfg.data_used["sots"] = {"source": "x"}
    t = baselines.dcp_table(_per_image(), {"S": (16.0, 0.8)})
    conv = baselines.convention_gap([_item(1)])
    m = baselines.metrics(cfg, t, {"S": (16.0, 0.8)}, conv)
    assert list(m["dcp"]) == ["S", "S / no refinement", "N"] and m["dcp"]["S"]["n"] == 3
    assert m["dcp"]["S"]["psnr"] == 17.0 and m["dcp"]["S"]["psnr_hazy"] == 12.0
    assert m["notebook"] == "00_data_baselines" and m["data"] == {"sots": {"source": "x"}}
    assert m["paper_quoted"] == {"CR Table 1, DCP": {"S": (16.0, 0.8)}}
    assert m["ssim_conventions"]["SSIM"]["difference"] == pytest.approx(conv.difference[1])
    json.dumps(m, default=float)  # JSON-ready


def test_scattering_figure_lays_out_the_model():
    J, d = _img(1), _img(2)[..., 0]
    hazy = [(J * 0.5, d), (J * 0.4, d * 0.9), (J * 0.3, d * 0.8)]
    fig = baselines.scattering_figure(J, d, hazy, [0.6, 1.2, 1.8], 0.85)
    titles = [ax.get_title() for ax in fig.axes if ax.get_title()]
    assert len(fig.axes) == 8 and titles == ["clear J", "depth d (normalised)", "t, beta=1.2", "hazy I, beta=1.2, A=0.85"]
    np.testing.assert_allclose(fig.axes[2].images[0].get_array(), d * 0.9)  # t at the beta shown
    with pytest.raises(ValueError, match="betas"):
        baselines.scattering_figure(J, d, hazy[:2], [0.6, 1.2, 1.8], 0.85)


def test_dcp_real_figure_shows_each_photo_and_its_dcp(tmp_path):
    empty = baselines.dcp_real_figure([])
    assert "No real hazy photographs" in empty.axes[0].texts[0].get_text()
    files = [write_image(tmp_path / "p1.png", _img(1)), write_image(tmp_path / "p2.png", _img(2))]
    fig = baselines.dcp_real_figure(files)
    assert len(fig.axes) == 4 and [fig.axes[0].get_title(), fig.axes[1].get_title()] == ["p1", "p2"]
    J = dehaze_dcp(fig.axes[0].images[0].get_array().data.astype(np.float32))[0]
    np.testing.assert_allclose(fig.axes[2].images[0].get_array(), np.clip(J, 0, 1), atol=1e-5)
