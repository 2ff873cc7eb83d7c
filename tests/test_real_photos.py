"""real_hazy_photos: selection, order, the shrinking to max_side and the errors, on files written here."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from dehazelab.data import REAL_HAZY_EXAMPLES, DataError, real_hazy_photos


def _smooth(h: int, w: int, seed: int) -> np.ndarray:
    """A smooth uint8 HxWx3 image (low-frequency gradients and waves), so resampling errors stay small."""
    y, x = np.mgrid[0:h, 0:w].astype(np.float64)
    phase = np.random.default_rng(seed).uniform(0, 2 * np.pi, 3)
    chans = [0.5 + 0.4 * np.sin(x / w * 3.0 + phase[c]) * np.cos(y / h * 2.0 + phase[c]) for c in range(3)]
    return np.round(np.stack(chans, axis=-1) * 255).astype(np.uint8)


def _write(root, name: str, arr: np.ndarray):
    path = root / "real-hazy" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr).save(path)
    return path


def _pil_shrink(arr: np.ndarray, h: int, w: int) -> np.ndarray:
    """PIL's anti-aliased bicubic resize of each channel as a float image: an independent implementation."""
    f = arr.astype(np.float32) / 255.0
    return np.stack([np.asarray(Image.fromarray(f[..., c], mode="F").resize((w, h), Image.BICUBIC))
                     for c in range(3)], axis=-1)


def test_large_photo_is_shrunk_to_max_side_like_pil_bicubic(tmp_path):
    arr = _smooth(90, 120, seed=0)
    _write(tmp_path, "set/wide.png", arr)
    [(name, img)] = real_hazy_photos(tmp_path, ["set/wide.png"], max_images=5, max_side=50)
    assert name == "real-hazy/set/wide.png"
    assert img.dtype == torch.float32 and tuple(img.shape) == (3, round(90 * 50 / 120), 50)  # (3, 38, 50)
    got = img.permute(1, 2, 0).numpy()
    want = _pil_shrink(arr, 38, 50)
    # torch's anti-aliased bicubic is PIL's filter (a = -0.5): equal up to float rounding; plain bicubic,
    # bilinear or area resizing would differ by 1e-3 or more
    assert np.abs(got - want).max() < 1e-5
    assert float(img.min()) >= 0.0 and float(img.max()) <= 1.0
    # a tall photo: the height is the longer side
    _write(tmp_path, "set/tall.png", _smooth(121, 64, seed=1))
    [(_, tall)] = real_hazy_photos(tmp_path, ["set/tall.png"], max_images=1, max_side=40)
    assert tuple(tall.shape) == (3, 40, round(64 * 40 / 121))  # (3, 40, 21)


def test_small_photo_is_returned_as_read(tmp_path):
    arr = _smooth(30, 40, seed=2)
    _write(tmp_path, "small.png", arr)
    for max_side in (40, 1000):  # longer side equal to or below max_side: no resampling at all
        [(_, img)] = real_hazy_photos(tmp_path, ["small.png"], max_images=1, max_side=max_side)
        assert torch.equal(img, torch.from_numpy(arr.astype(np.float32) / 255.0).permute(2, 0, 1))


def test_missing_folder_or_no_data_root_gives_no_photos(tmp_path):
    assert real_hazy_photos(None, REAL_HAZY_EXAMPLES, 3, 320) == []
    assert real_hazy_photos(tmp_path, REAL_HAZY_EXAMPLES, 3, 320) == []  # no real-hazy/ in the root
    assert real_hazy_photos(tmp_path / "absent", REAL_HAZY_EXAMPLES, 3, 320) == []
    (tmp_path / "real-hazy").mkdir()
    assert real_hazy_photos(tmp_path, REAL_HAZY_EXAMPLES, 3, 320) == []  # folder without the named files


def test_order_of_names_missing_files_skipped_and_max_images(tmp_path):
    for i, name in enumerate(["a/one.png", "b/two.jpeg", "a/three.png", "four.png"]):
        _write(tmp_path, name, _smooth(12, 16, seed=i))
    names = ["four.png", "a/missing.png", "a/three.png", "b/two.jpeg", "a/one.png"]
    got = real_hazy_photos(tmp_path, names, max_images=10, max_side=320)
    assert [n for n, _ in got] == ["real-hazy/four.png", "real-hazy/a/three.png", "real-hazy/b/two.jpeg",
                                   "real-hazy/a/one.png"]
    # max_images counts the photographs found, in the order of names
    assert [n for n, _ in real_hazy_photos(tmp_path, names, 2, 320)] == ["real-hazy/four.png", "real-hazy/a/three.png"]
    assert real_hazy_photos(tmp_path, names, 0, 320) == []
    # the images belong to their names
    by_name = dict(got)
    want = torch.from_numpy(_smooth(12, 16, seed=2).astype(np.float32) / 255.0).permute(2, 0, 1)
    assert torch.allclose(by_name["real-hazy/a/three.png"], want)


def test_unreadable_photo_fails_naming_the_file(tmp_path):
    _write(tmp_path, "good.png", _smooth(8, 8, seed=0))
    bad = tmp_path / "real-hazy" / "broken.png"
    bad.write_text("not an image")
    with pytest.raises(DataError, match="broken.png"):
        real_hazy_photos(tmp_path, ["good.png", "broken.png"], max_images=2, max_side=320)
    # beyond max_images the broken file is never opened
    assert len(real_hazy_photos(tmp_path, ["good.png", "broken.png"], max_images=1, max_side=320)) == 1


def test_bad_arguments():
    with pytest.raises(ValueError, match="max_images"):
        real_hazy_photos(None, [], -1, 320)
    with pytest.raises(ValueError, match="max_side"):
        real_hazy_photos(None, [], 1, 0)
