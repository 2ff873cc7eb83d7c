"""Torch datasets, pair selection, the synthetic fallback set, and load_benchmark."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from dehazelab.data import DataError, Pair, find_pairs, read_image
from dehazelab.data.datasets import Benchmark, PairedDataset, UnpairedDataset, load_benchmark, sots_pairs
from dehazelab.data.haze import motorcycle_depth, synthesize
from dehazelab.data.synthetic import SCENES, SPLIT, haze_levels, synthetic_pairs
from dehazelab.paths import DATA_ENV, data_root


def _arr(seed, h=24, w=24):
    return np.random.default_rng(seed).random((h, w, 3)).astype(np.float32)


def _channel_swapped_pairs(n=4, h=24, w=24):
    # clear = hazy with its channels reversed: any spatial transform applied identically to both
    # keeps that relation exactly; a transform applied differently breaks it (random content).
    out = []
    for i in range(n):
        hazy = _arr(i, h, w)
        out.append((hazy, np.ascontiguousarray(hazy[..., ::-1]), f"s{i}"))
    return out


def _dihedral(x):
    """The 8 flips/rotations of an HxWxC array."""
    for flip in (False, True):
        y = x[:, ::-1] if flip else x
        for k in range(4):
            yield np.rot90(y, k, axes=(0, 1))


def _as_hwc(t: torch.Tensor) -> np.ndarray:
    return t.permute(1, 2, 0).numpy()


# ----------------------------------------------------------------------------- PairedDataset


def test_no_crop_no_augment_returns_the_images():
    pairs = _channel_swapped_pairs(2, 10, 14)
    ds = PairedDataset(pairs)
    s = ds[1]
    assert s["hazy"].shape == (3, 10, 14) and s["hazy"].dtype == torch.float32 and s["name"] == "s1"
    np.testing.assert_array_equal(_as_hwc(s["hazy"]), pairs[1][0])
    np.testing.assert_array_equal(_as_hwc(s["clear"]), pairs[1][1])
    s["hazy"].zero_()  # the tensor does not share memory with the caller's array
    assert pairs[1][0].max() > 0


def test_crop_flip_rotation_identical_for_hazy_and_clear():
    pairs = _channel_swapped_pairs(3)
    ds = PairedDataset(pairs, crop=16, augment=True, seed=3)
    seen = set()
    for epoch in range(12):
        ds.set_epoch(epoch)
        for i in range(len(ds)):
            s = ds[i]
            hazy, clear = _as_hwc(s["hazy"]), _as_hwc(s["clear"])
            assert hazy.shape == (16, 16, 3)
            np.testing.assert_array_equal(clear, hazy[..., ::-1])
            # the output is one of the 8 flips/rotations of a 16x16 window of the input
            src = pairs[i][0]
            matches = [
                (top, left, j)
                for top in range(9) for left in range(9)
                for j, v in enumerate(_dihedral(src[top : top + 16, left : left + 16]))
                if np.array_equal(v, hazy)
            ]
            assert len(matches) == 1
            seen.add(matches[0][2])
    assert seen == set(range(8))  # every flip/rotation combination occurs


def test_non_square_crop_keeps_its_shape_under_augment():
    ds = PairedDataset(_channel_swapped_pairs(2, 20, 30), crop=(8, 12), augment=True)
    for epoch in range(10):
        ds.set_epoch(epoch)
        assert all(ds[i]["hazy"].shape == (3, 8, 12) for i in range(2))


def test_crop_without_augment_is_a_plain_window():
    pairs = _channel_swapped_pairs(2)
    ds = PairedDataset(pairs, crop=10, augment=False, seed=1)
    for i in range(2):
        hazy = _as_hwc(ds[i]["hazy"])
        found = [(t, l) for t in range(15) for l in range(15) if np.array_equal(pairs[i][0][t : t + 10, l : l + 10], hazy)]
        assert len(found) == 1


def test_deterministic_by_seed_epoch_and_index():
    pairs = _channel_swapped_pairs(4)
    a = PairedDataset(pairs, crop=12, augment=True, seed=5)
    b = PairedDataset(pairs, crop=12, augment=True, seed=5)
    forward = [a[i]["hazy"] for i in range(4)]
    backward = [b[i]["hazy"] for i in reversed(range(4))][::-1]  # access order does not matter
    assert all(torch.equal(x, y) for x, y in zip(forward, backward))
    c = PairedDataset(pairs, crop=12, augment=True, seed=6)
    assert not all(torch.equal(x, c[i]["hazy"]) for i, x in enumerate(forward))
    a.set_epoch(1)
    assert not all(torch.equal(x, a[i]["hazy"]) for i, x in enumerate(forward))
    a.set_epoch(0)
    assert all(torch.equal(x, a[i]["hazy"]) for i, x in enumerate(forward))


def test_crop_larger_than_image_is_an_error():
    ds = PairedDataset(_channel_swapped_pairs(1, 8, 8), crop=9)
    with pytest.raises(DataError, match="s0: 8x8 is smaller than the crop 9x9"):
        ds[0]


def _write(path: Path, a: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(a).save(path)
    return path


def _sots_tmp(tmp_path: Path, scenes=(1400, 1401, 1430), levels=(1, 3), gt_size=(30, 32)) -> Path:
    root = tmp_path / "sots-indoor"
    rng = np.random.default_rng(0)
    for s in scenes:
        _write(root / "gt" / f"{s}.png", rng.integers(0, 256, (*gt_size, 3), dtype=np.uint8))
        for lv in levels:
            _write(root / "hazy" / f"{s}_{lv}.png", rng.integers(0, 256, (10, 12, 3), dtype=np.uint8))
    return root


def test_paired_dataset_on_files_caches_and_aligns(tmp_path):
    root = _sots_tmp(tmp_path)  # GT 30x32 = hazy 10x12 + RESIDE's 20-pixel border: centre-cropped
    pairs = find_pairs(root)
    ds = PairedDataset(pairs)
    s = ds[1]
    assert s["name"] == "1400_3"
    np.testing.assert_array_equal(_as_hwc(s["hazy"]), read_image(pairs[1].hazy))
    np.testing.assert_array_equal(_as_hwc(s["clear"]), read_image(pairs[1].clear)[10:20, 10:22])
    for i in range(len(ds)):
        ds[i]
    assert len(ds._cache) == 6 + 3  # each shared ground truth decoded once
    assert all(v.dtype == np.uint8 for v in ds._cache._store.values())  # 8-bit files stored compactly
    hazy, clear, name = ds.arrays(0)
    assert hazy.dtype == np.float32 and name == "1400_1"


def test_hazy_only_pairs_are_refused(tmp_path):
    p = _write(tmp_path / "a.png", np.zeros((4, 4, 3), np.uint8))
    with pytest.raises(DataError, match="a.png: has no ground truth"):
        PairedDataset([Pair(p, None, "a", None, "hazy-only")])


def test_dataset_pickles_and_works_with_dataloader_workers(tmp_path):
    ds = PairedDataset(find_pairs(_sots_tmp(tmp_path)), crop=8, augment=True, seed=2)
    clone = pickle.loads(pickle.dumps(ds))
    assert torch.equal(clone[3]["clear"], ds[3]["clear"])
    loader = torch.utils.data.DataLoader(ds, batch_size=3, num_workers=1, shuffle=False)
    batch = next(iter(loader))
    assert batch["hazy"].shape == (3, 3, 8, 8)
    assert torch.equal(batch["hazy"][2], ds[2]["hazy"])  # same sample in a worker process


# ----------------------------------------------------------------------------- UnpairedDataset


def test_unpaired_draws_clear_independently_and_deterministically():
    hazy = [_arr(i, 16, 16) for i in range(3)]
    clear = [_arr(100 + i, 16, 16) for i in range(7)]
    ds = UnpairedDataset(hazy, clear, crop=None, seed=0)
    assert len(ds) == 7
    picked = []
    for i in range(len(ds)):
        s = ds[i]
        assert set(s) == {"hazy", "clear", "hazy_name", "clear_name"}
        np.testing.assert_array_equal(_as_hwc(s["hazy"]), hazy[i % 3])
        j = [k for k, c in enumerate(clear) if np.array_equal(_as_hwc(s["clear"]), c)]
        assert len(j) == 1
        picked.append(j[0])
    assert len(set(picked)) > 1  # not simply aligned with the hazy index
    again = UnpairedDataset(hazy, clear, seed=0)
    assert all(torch.equal(ds[i]["clear"], again[i]["clear"]) for i in range(7))


def test_unpaired_from_pairs_uses_each_side_and_crops(tmp_path):
    pairs = find_pairs(_sots_tmp(tmp_path))
    ds = UnpairedDataset(pairs[:2], pairs[4:], crop=6, augment=True, seed=1)
    s = ds[0]
    assert s["hazy"].shape == s["clear"].shape == (3, 6, 6)
    assert s["hazy_name"] == "1400_1" and s["clear_name"] in {"1430_1", "1430_3"}
    pickle.loads(pickle.dumps(ds))


# ----------------------------------------------------------------------------- synthetic set


def test_synthetic_pairs_follow_the_model_and_are_deterministic():
    pairs = synthetic_pairs(seed=0, size=32, levels=3)
    assert len(pairs) == 3 * len(SCENES)
    assert [p.level for p in pairs[:3]] == ["1", "2", "3"]
    for p in pairs:
        assert p.hazy.shape == p.clear.shape == (32, 32, 3) and p.hazy.dtype == np.float32
        assert 0.6 <= p.beta <= 1.8 and 0.7 <= p.A <= 1.0
        expected, _ = synthesize(p.clear, p.depth, p.beta, p.A)
        np.testing.assert_allclose(p.hazy, expected, atol=1e-6)
    first = pairs[0]
    hazy, clear, scene, level = first  # unpacks as (hazy, clear, scene, level)
    assert hazy is first.hazy and first["clear"] is clear and (scene, level) == (first["scene"], "1")
    assert {p["split"] for p in pairs if p.scene in SPLIT["test"]} == {"test"}
    assert {p.split for p in pairs if p.scene in SPLIT["train"]} == {"train"}
    with pytest.raises(KeyError):
        first["nope"]
    betas = [p.beta for p in pairs if p.scene == "coffee"]
    assert betas == sorted(betas)  # light to dense
    again = synthetic_pairs(seed=0, size=32, levels=3)
    assert all(np.array_equal(a.hazy, b.hazy) for a, b in zip(pairs, again))
    assert haze_levels("coffee", 1, 3) != haze_levels("coffee", 0, 3)
    # a scene's haze does not depend on which other scenes are generated
    [moto] = [p for p in synthetic_pairs(seed=0, size=32, levels=3, scenes=["motorcycle"]) if p.level == "2"]
    np.testing.assert_array_equal(moto.hazy, [p for p in pairs if p.name == "motorcycle_2"][0].hazy)


def test_synthetic_motorcycle_uses_the_real_depth_and_split_is_disjoint():
    from skimage.transform import resize

    [p] = synthetic_pairs(size=64, levels=1, scenes=["motorcycle"])
    _, full = motorcycle_depth()  # 500 x 741: resized to 64 x 95, then the centre 64 columns
    assert p.depth.shape == (64, 64)
    expected = resize(full, (64, 95), order=1, anti_aliasing=True)[:, 15:79]
    np.testing.assert_allclose(p.depth, expected, atol=1e-5)
    # far wall (top rows) deeper than the ground in front (bottom rows)
    assert p.depth[:8].mean() > p.depth[-8:].mean()
    assert not set(SPLIT["train"]) & set(SPLIT["test"]) and set(SPLIT["train"]) | set(SPLIT["test"]) == set(SCENES)


# ----------------------------------------------------------------------------- selection


def test_sots_pairs_selects_scenes(tmp_path):
    root = _sots_tmp(tmp_path)
    sel = sots_pairs(tmp_path, [1430, "1400"])  # data root or sots folder, ints or strings
    assert [p.name for p in sel] == ["1400_1", "1400_3", "1430_1", "1430_3"]
    assert sots_pairs(root, ["1401"])[0].scene == "1401"
    with pytest.raises(DataError, match="no images for scene"):
        sots_pairs(root, ["1499"])


def test_load_benchmark_falls_back_to_synthetic_without_data(monkeypatch):
    monkeypatch.setenv(DATA_ENV, "")
    train = load_benchmark("sots", "train", size=32, levels=2)
    test = load_benchmark("sots", "test", size=32, levels=2)
    assert train.source == test.source == "synthetic-skimage"
    assert train.describe()["fallback_reason"] == "no data root configured"
    assert set(train.scenes) == set(SPLIT["train"]) and not set(train.scenes) & set(test.scenes)
    assert {p.scene for p in train.pairs} == set(train.scenes) and len(train.pairs) == 2 * len(train.scenes)
    sample = train.dataset(crop=16, augment=True)[0]
    assert sample["hazy"].shape == (3, 16, 16)
    assert load_benchmark("synthetic", "test", size=32, levels=1).describe()["fallback_reason"] == "requested"


def test_load_benchmark_on_a_given_root(tmp_path):
    _sots_tmp(tmp_path)
    b = load_benchmark("sots", "train", root=tmp_path, train=(1400, 1401), test=(1430, 1430))
    assert isinstance(b, Benchmark) and b.source == "sots-indoor"
    assert {p.scene for p in b.pairs} == {"1400", "1401"}
    with pytest.raises(DataError):
        load_benchmark("sots", "train", root=tmp_path)  # default range asks for scenes this folder lacks
    with pytest.raises(ValueError, match="split"):
        load_benchmark("sots", "val", root=tmp_path)
    with pytest.raises(ValueError, match="no train split"):
        load_benchmark("nh-haze", "train", root=tmp_path)


def test_load_benchmark_on_the_real_data():
    root = data_root()
    if root is None or not (root / "sots-indoor").is_dir() or not (root / "nh-haze").is_dir():
        pytest.skip("benchmark data not available")
    train, test = load_benchmark("sots", "train"), load_benchmark("sots", "test")
    assert train.source == "sots-indoor" and len(train.pairs) == 150 and len(test.pairs) == 50
    assert not {p.scene for p in train.pairs} & {p.scene for p in test.pairs}
    assert {p.clear for p in train.pairs}.isdisjoint({p.clear for p in test.pairs})
    nh = load_benchmark("nh-haze", "test")
    assert nh.source == "nh-haze" and [p.scene for p in nh.pairs] == ["51", "52", "53"]
    s = test.dataset(crop=64, augment=True, seed=0)[7]
    assert s["hazy"].shape == (3, 64, 64) and s["name"] == "1431_5"
