"""find_pairs / detect_layout / load_pair on temporary folders of every layout, and on the real data."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from dehazelab.data import DataError, IMAGE_EXTS, LAYOUTS, Pair, detect_layout, find_pairs, load_pair, read_image
from dehazelab.paths import data_root


def img(path: Path, h: int = 8, w: int = 10, value: int | None = None, seed: int = 0) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if value is None:
        a = np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)
    else:
        a = np.full((h, w, 3), value, dtype=np.uint8)
    Image.fromarray(a).save(path)
    return path


def make_sots(root: Path, scenes=(1, 2, 10), levels=(1, 3), gt_dir="gt") -> Path:
    for s in scenes:
        img(root / gt_dir / f"{s}.png", seed=s)
        for lv in levels:
            img(root / "hazy" / f"{s}_{lv}.png", seed=100 * s + lv)
    return root


# ----------------------------------------------------------------------------- layouts


@pytest.mark.parametrize("gt_dir", ["gt", "GT", "clear"])
def test_sots_layout(tmp_path, gt_dir):
    root = make_sots(tmp_path / "sots", gt_dir=gt_dir)
    assert detect_layout(root) == "sots"
    pairs = find_pairs(root)
    assert [(p.scene, p.level) for p in pairs] == [
        ("1", "1"), ("1", "3"), ("2", "1"), ("2", "3"), ("10", "1"), ("10", "3")]  # numeric order
    for p in pairs:
        assert p.layout == "sots" and p.hazy.parent.name == "hazy"
        assert p.clear == root / gt_dir / f"{p.scene}.png"
        assert p.name == f"{p.scene}_{p.level}"


def test_sots_gt_extension_may_differ_and_hidden_files_ignored(tmp_path):
    root = tmp_path / "s"
    img(root / "hazy" / "5_1.jpg")
    img(root / "gt" / "5.png")
    (root / "hazy" / ".DS_Store").write_bytes(b"\0")
    (root / "README.txt").write_text("the root may hold notes")
    [p] = find_pairs(root)
    assert p.hazy.name == "5_1.jpg" and p.clear.name == "5.png"


def test_reside_its_layout(tmp_path):
    root = tmp_path / "its"
    for name in ["1_1_0.90179", "1_2_0.8", "2_1_0.7", "12_1_0.75"]:
        img(root / "hazy" / f"{name}.png")
    for s in (1, 2, 12):
        img(root / "clear" / f"{s}.png")
    assert detect_layout(root) == "reside-its"
    pairs = find_pairs(root)
    assert [(p.scene, p.level) for p in pairs] == [("1", "1_0.90179"), ("1", "2_0.8"), ("2", "1_0.7"), ("12", "1_0.75")]
    assert all(p.clear.name == f"{p.scene}.png" for p in pairs)


@pytest.mark.parametrize("folder,expected", [("NH-HAZE", "nh-haze"), ("Dense_Haze", "dense-haze")])
def test_one_folder_hazy_gt_layout(tmp_path, folder, expected):
    root = tmp_path / folder
    for i in ("01", "02", "10"):
        img(root / f"{i}_hazy.png")
        img(root / f"{i}_GT.png")
    assert detect_layout(root) == expected
    pairs = find_pairs(root)
    assert [p.scene for p in pairs] == ["01", "02", "10"]
    assert all(p.level is None and p.clear.name == f"{p.scene}_GT.png" and p.layout == expected for p in pairs)


def test_nh_and_dense_labels_interchangeable_but_others_rejected(tmp_path):
    root = tmp_path / "nh"
    img(root / "51_hazy.png")
    img(root / "51_GT.png")
    assert find_pairs(root, layout="dense-haze")[0].layout == "dense-haze"
    with pytest.raises(DataError, match="not the requested sots"):
        find_pairs(root, layout="sots")
    with pytest.raises(ValueError, match="unknown layout"):
        find_pairs(root, layout="bogus")


@pytest.mark.parametrize("kind,expected", [("outdoor", "o-haze"), ("indoor", "i-haze")])
def test_o_haze_and_i_haze(tmp_path, kind, expected):
    root = tmp_path / expected
    for i in ("01", "02", "45"):
        img(root / "hazy" / f"{i}_{kind}_hazy.jpg")
        img(root / "GT" / f"{i}_{kind}_GT.jpg")
    assert detect_layout(root) == expected
    pairs = find_pairs(root)
    assert [p.scene for p in pairs] == ["01", "02", "45"]
    assert all(p.clear.name == f"{p.scene}_{kind}_GT.jpg" for p in pairs)


def test_hazy_only_flat(tmp_path):
    root = tmp_path / "rtts"
    img(root / "b.jpg")
    img(root / "a.png")
    assert detect_layout(root) == "hazy-only"
    pairs = find_pairs(root)
    assert [p.scene for p in pairs] == ["a", "b"]
    assert all(p.clear is None and p.level is None for p in pairs)
    hazy, clear = load_pair(pairs[0])
    assert clear is None and hazy.shape == (8, 10, 3)


def test_hazy_only_one_level_of_subfolders(tmp_path):
    root = tmp_path / "real"
    img(root / "fattal" / "forest_input.png")
    img(root / "classic" / "canyon.bmp")
    (root / "params").mkdir()
    (root / "params" / "forest_params.txt").write_text("A = 0.8\n")  # a side folder without images: skipped
    (root / "README.md").write_text("notes")
    pairs = find_pairs(root)
    assert [p.scene for p in pairs] == ["classic/canyon", "fattal/forest_input"]
    assert pairs[1].name == "fattal_forest_input"


# ----------------------------------------------------------------------------- errors


def test_missing_and_empty_folders(tmp_path):
    with pytest.raises(DataError, match="nothere.*no such folder"):
        find_pairs(tmp_path / "nothere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="empty.*empty folder"):
        find_pairs(tmp_path / "empty")
    root = make_sots(tmp_path / "s")
    for f in (root / "hazy").iterdir():
        f.unlink()
    with pytest.raises(DataError, match="hazy.*empty folder"):
        find_pairs(root)


def test_unknown_layout_lists_the_expected_ones(tmp_path):
    root = tmp_path / "odd"
    root.mkdir()
    (root / "a.txt").write_text("x")
    with pytest.raises(DataError) as err:
        detect_layout(root)
    msg = str(err.value)
    assert str(root) in msg and "unknown dataset layout" in msg
    assert all(name in msg for name in LAYOUTS)


def test_collection_of_datasets_is_not_hazy_only(tmp_path):
    make_sots(tmp_path / "data" / "sots-indoor")
    img(tmp_path / "data" / "nh" / "1_hazy.png")
    img(tmp_path / "data" / "nh" / "1_GT.png")
    with pytest.raises(DataError, match="unknown dataset layout"):
        find_pairs(tmp_path / "data")


def test_sots_hazy_without_gt(tmp_path):
    root = make_sots(tmp_path / "s")
    img(root / "hazy" / "3_1.png")
    with pytest.raises(DataError, match=r"3_1\.png: hazy image has no ground truth.*gt/3"):
        find_pairs(root)


def test_sots_gt_without_hazy(tmp_path):
    root = make_sots(tmp_path / "s")
    img(root / "gt" / "4.png")
    with pytest.raises(DataError, match=r"gt/4\.png: ground truth has no hazy image"):
        find_pairs(root)


def test_one_folder_hazy_without_gt_and_gt_without_hazy(tmp_path):
    root = tmp_path / "nh"
    img(root / "1_hazy.png")
    img(root / "1_GT.png")
    img(root / "2_hazy.png")
    with pytest.raises(DataError, match=r"2_hazy\.png: hazy image has no ground truth"):
        find_pairs(root)
    (root / "2_hazy.png").unlink()
    img(root / "3_GT.png")
    with pytest.raises(DataError, match=r"3_GT\.png: ground truth has no hazy image"):
        find_pairs(root)


def test_o_haze_gt_without_hazy(tmp_path):
    root = tmp_path / "o"
    img(root / "hazy" / "01_outdoor_hazy.jpg")
    img(root / "GT" / "01_outdoor_GT.jpg")
    img(root / "GT" / "02_outdoor_GT.jpg")
    with pytest.raises(DataError, match=r"02_outdoor_GT\.jpg: ground truth has no hazy image"):
        find_pairs(root)


def test_non_image_file_in_an_image_folder(tmp_path):
    root = make_sots(tmp_path / "s")
    (root / "hazy" / "notes.txt").write_text("x")
    with pytest.raises(DataError, match=r"notes\.txt: not an image file inside the image folder"):
        find_pairs(root)
    flat = tmp_path / "flat"
    img(flat / "a.png")
    (flat / "list.csv").write_text("a")
    with pytest.raises(DataError, match=r"list\.csv: not an image file"):
        find_pairs(flat)


def test_file_breaking_the_naming(tmp_path):
    root = make_sots(tmp_path / "s")
    img(root / "hazy" / "weird.png")
    with pytest.raises(DataError, match=r"weird\.png: does not follow the sots naming"):
        find_pairs(root)
    nh = tmp_path / "nh"
    img(nh / "1_hazy.png")
    img(nh / "1_GT.png")
    img(nh / "extra.png")
    with pytest.raises(DataError, match=r"extra\.png: neither <id>_hazy nor <id>_GT"):
        find_pairs(nh)


def test_hazy_folder_without_gt_folder(tmp_path):
    img(tmp_path / "s" / "hazy" / "1_1.png")
    with pytest.raises(DataError, match="no ground-truth folder"):
        find_pairs(tmp_path / "s")


# ----------------------------------------------------------------------------- load_pair


def test_load_pair_same_size_returns_the_files(tmp_path):
    root = make_sots(tmp_path / "s", scenes=(1,), levels=(1,))
    [p] = find_pairs(root)
    hazy, clear = load_pair(p)
    np.testing.assert_array_equal(hazy, read_image(p.hazy))
    np.testing.assert_array_equal(clear, read_image(p.clear))


def test_load_pair_centre_crops_reside_s_20_pixel_border(tmp_path):
    hazy_p = img(tmp_path / "s" / "hazy" / "1_1.png", h=8, w=10)
    clear_p = img(tmp_path / "s" / "gt" / "1.png", h=28, w=30, seed=7)
    hazy, clear = load_pair(Pair(hazy_p, clear_p, "1", "1", "sots"))
    assert clear.shape == hazy.shape == (8, 10, 3)
    np.testing.assert_array_equal(clear, read_image(clear_p)[10:18, 10:20])


@pytest.mark.parametrize("ch,cw", [(7, 10), (8, 9), (6, 20), (12, 14), (9, 13), (8, 16), (28, 10), (1000, 1000)])
def test_load_pair_any_other_size_is_an_error_naming_both(tmp_path, ch, cw):
    """Smaller, or larger by anything but RESIDE's border (a 1000x1000 GT for an 8x10 hazy image):
    never cropped silently."""
    hazy_p = img(tmp_path / "hazy" / "1_1.png", h=8, w=10)
    clear_p = img(tmp_path / "gt" / "1.png", h=ch, w=cw)
    with pytest.raises(DataError) as err:
        load_pair(Pair(hazy_p, clear_p, "1", "1", "sots"))
    assert str(hazy_p) in str(err.value) and str(clear_p) in str(err.value)


def test_a_hazy_image_twice_by_stem_is_refused(tmp_path):
    root = make_sots(tmp_path / "s", scenes=(1,), levels=(1,))
    img(root / "hazy" / "1_1.jpg", h=8, w=10)  # 1_1.png is there too: it would be scored twice
    with pytest.raises(DataError, match=r"1_1\.(png|jpg).*same name up to case/extension"):
        find_pairs(root)


def test_hazy_only_duplicates_by_stem_are_refused(tmp_path):
    for ext in ("png", "jpg"):
        img(tmp_path / "photos" / f"x.{ext}", h=8, w=10)
    with pytest.raises(DataError, match="same name up to case/extension"):
        find_pairs(tmp_path / "photos")


# ----------------------------------------------------------------------------- real data


def _real(sub: str) -> Path:
    root = data_root()
    if root is None or not (root / sub).is_dir():
        pytest.skip(f"benchmark data folder {sub}/ not available")
    return root / sub


def test_real_sots_indoor():
    root = _real("sots-indoor")
    pairs = find_pairs(root)
    assert detect_layout(root) == "sots"
    assert len(pairs) == 200 and len({p.hazy for p in pairs}) == 200 and len({p.clear for p in pairs}) == 40
    assert {p.level for p in pairs} == {"1", "3", "5", "7", "9"}
    assert [p.scene for p in pairs[::5]] == [str(s) for s in range(1400, 1440)]
    hazy, clear = load_pair(pairs[0])
    assert hazy.shape == clear.shape == (460, 620, 3)  # this copy's GT is already 620x460


def test_real_nh_haze():
    root = _real("nh-haze")
    pairs = find_pairs(root)
    assert detect_layout(root) == "nh-haze"
    assert [p.scene for p in pairs] == ["51", "52", "53"]
    assert all(p.clear.name == f"{p.scene}_GT.png" for p in pairs)


def test_real_hazy_photos_and_the_data_root():
    root = _real("real-hazy")
    expected = sorted(f for f in root.rglob("*") if f.is_file() and f.suffix.lower() in IMAGE_EXTS)
    pairs = find_pairs(root)
    assert detect_layout(root) == "hazy-only"
    assert sorted(p.hazy for p in pairs) == expected
    with pytest.raises(DataError, match="unknown dataset layout"):
        find_pairs(root.parent)  # the data root is a collection, not one dataset
