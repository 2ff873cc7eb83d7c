"""read_image / write_image: every documented conversion and every bad-file case, on files made here."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageFile

from dehazelab.data import DataError, IMAGE_EXTS, read_image, write_image


def _rng(seed=0):
    return np.random.default_rng(seed)


def _check_float_rgb(arr, shape_hw):
    assert arr.dtype == np.float32
    assert arr.shape == (*shape_hw, 3)
    assert arr.min() >= 0.0 and arr.max() <= 1.0


def _png16_rgb(path: Path, a: np.ndarray) -> None:
    """A 16-bit-per-channel RGB PNG written byte by byte (PIL cannot write one)."""
    h, w, _ = a.shape
    raw = b"".join(b"\x00" + a[y].astype(">u2").tobytes() for y in range(h))

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", w, h, 16, 2, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))


# ----------------------------------------------------------------------------- conversions


def test_rgb_png_values_are_bytes_over_255(tmp_path):
    a = _rng().integers(0, 256, (7, 9, 3), dtype=np.uint8)
    Image.fromarray(a).save(tmp_path / "x.png")
    out = read_image(tmp_path / "x.png")
    _check_float_rgb(out, (7, 9))
    np.testing.assert_array_equal(out, a.astype(np.float32) / 255.0)


def test_grayscale_l_is_copied_to_three_channels(tmp_path):
    g = _rng().integers(0, 256, (5, 6), dtype=np.uint8)
    Image.fromarray(g, mode="L").save(tmp_path / "g.png")
    out = read_image(tmp_path / "g.png")
    _check_float_rgb(out, (5, 6))
    for c in range(3):
        np.testing.assert_array_equal(out[..., c], g / np.float32(255.0))


def test_bilevel_mode_1_gives_zero_and_one(tmp_path):
    bits = np.zeros((4, 8), dtype=bool)
    bits[:, ::2] = True
    Image.fromarray(bits).convert("1").save(tmp_path / "b.png")
    out = read_image(tmp_path / "b.png")
    np.testing.assert_array_equal(out[..., 0], bits.astype(np.float32))


def test_16bit_grey_png_scaled_by_65535(tmp_path):
    g = np.array([[0, 1, 256, 65535], [12345, 32768, 40000, 65534]], dtype=np.uint16)
    Image.fromarray(g).save(tmp_path / "g16.png")
    assert Image.open(tmp_path / "g16.png").mode.startswith("I")  # really a 16-bit grey file
    out = read_image(tmp_path / "g16.png")
    _check_float_rgb(out, (2, 4))
    np.testing.assert_array_equal(out[..., 1], g.astype(np.float32) / np.float32(65535.0))


def test_int32_mode_i_in_16bit_range_and_out_of_range(tmp_path):
    ok = np.array([[0, 65535], [1000, 30000]], dtype=np.int32)
    Image.fromarray(ok, mode="I").save(tmp_path / "i.tif")
    np.testing.assert_allclose(read_image(tmp_path / "i.tif")[..., 2], ok / 65535.0, rtol=0, atol=1e-7)
    bad = np.array([[0, 70000]], dtype=np.int32)
    Image.fromarray(bad, mode="I").save(tmp_path / "big.tif")
    with pytest.raises(DataError, match="big.tif"):
        read_image(tmp_path / "big.tif")


def test_float_mode_f_is_clipped(tmp_path):
    f = np.array([[-0.5, 0.25], [0.75, 2.0]], dtype=np.float32)
    Image.fromarray(f, mode="F").save(tmp_path / "f.tif")
    np.testing.assert_array_equal(read_image(tmp_path / "f.tif")[..., 0], np.clip(f, 0, 1))


def test_16bit_rgb_png_read_with_8bit_precision(tmp_path):
    a = np.array([[[0, 255, 256], [65535, 65280, 32768]], [[1, 513, 40000], [100, 200, 300]]], dtype=np.uint16)
    _png16_rgb(tmp_path / "rgb16.png", a)
    out = read_image(tmp_path / "rgb16.png")
    _check_float_rgb(out, (2, 2))
    # documented: PIL keeps the high byte, so the value is (v >> 8) / 255, within 1/255 of v / 65535
    np.testing.assert_array_equal(out, (a >> 8).astype(np.float32) / np.float32(255.0))
    assert np.abs(out - a / 65535.0).max() <= 1 / 255 + 1e-6


def test_rgba_alpha_dropped_without_compositing(tmp_path):
    rgba = _rng().integers(0, 256, (4, 5, 4), dtype=np.uint8)
    rgba[0, 0, 3] = 0  # fully transparent pixel keeps its stored colour
    Image.fromarray(rgba, mode="RGBA").save(tmp_path / "a.png")
    out = read_image(tmp_path / "a.png")
    _check_float_rgb(out, (4, 5))
    np.testing.assert_array_equal(out, rgba[..., :3] / np.float32(255.0))


def test_la_grey_with_alpha(tmp_path):
    la = np.stack([np.full((3, 3), 51, np.uint8), np.zeros((3, 3), np.uint8)], axis=2)
    Image.fromarray(la, mode="LA").save(tmp_path / "la.png")
    np.testing.assert_allclose(read_image(tmp_path / "la.png"), 0.2, atol=1e-7)


def test_palette_looked_up_with_transparency_ignored(tmp_path):
    palette = np.array([[255, 0, 0], [0, 255, 0], [0, 0, 255], [10, 20, 30]], dtype=np.uint8)
    idx = np.array([[0, 1, 2, 3], [3, 2, 1, 0]], dtype=np.uint8)
    im = Image.fromarray(idx, mode="P")
    im.putpalette(palette.flatten().tolist())
    im.info["transparency"] = 3
    im.save(tmp_path / "p.png", transparency=3)
    assert Image.open(tmp_path / "p.png").mode == "P"
    out = read_image(tmp_path / "p.png")
    np.testing.assert_array_equal(out, palette[idx] / np.float32(255.0))


def test_cmyk_primaries(tmp_path):
    cmyk = np.array([[[255, 0, 0, 0], [0, 0, 0, 0], [0, 0, 0, 255], [0, 255, 255, 0]]], dtype=np.uint8)
    Image.fromarray(cmyk, mode="CMYK").save(tmp_path / "c.tif")
    out = read_image(tmp_path / "c.tif")
    expected = np.array([[[0, 1, 1], [1, 1, 1], [0, 0, 0], [1, 0, 0]]], dtype=np.float32)
    np.testing.assert_array_equal(out, expected)


def test_exif_orientation_6_rotates_and_swaps_shape(tmp_path):
    # stored 20 rows x 40 columns: left half red, right half blue
    a = np.zeros((20, 40, 3), dtype=np.uint8)
    a[:, :20, 0] = 255
    a[:, 20:, 2] = 255
    im = Image.fromarray(a)
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 CW to display"
    im.save(tmp_path / "phone.jpg", exif=exif, quality=95)
    assert Image.open(tmp_path / "phone.jpg").size == (40, 20)  # stored sideways
    out = read_image(tmp_path / "phone.jpg")
    assert out.shape == (40, 20, 3)
    # rotating clockwise brings the stored left (red) half to the top
    assert out[:18, :, 0].mean() > 0.9 and out[:18, :, 2].mean() < 0.1
    assert out[22:, :, 2].mean() > 0.9 and out[22:, :, 0].mean() < 0.1


# ----------------------------------------------------------------------------- bad files


def test_missing_file(tmp_path):
    with pytest.raises(DataError, match="nope.png.*no such file"):
        read_image(tmp_path / "nope.png")


def test_folder_is_not_an_image(tmp_path):
    with pytest.raises(DataError, match="not a file"):
        read_image(tmp_path)


def test_text_file_renamed_png(tmp_path):
    p = tmp_path / "notes.png"
    p.write_text("this is not an image\n")
    with pytest.raises(DataError, match="notes.png.*not an image"):
        read_image(p)


@pytest.mark.parametrize("ext", ["png", "jpg"])
def test_truncated_image(tmp_path, ext):
    a = _rng(1).integers(0, 256, (64, 64, 3), dtype=np.uint8)  # noise: compresses badly, big file
    full = tmp_path / f"full.{ext}"
    Image.fromarray(a).save(full)
    data = full.read_bytes()
    cut = tmp_path / f"cut.{ext}"
    cut.write_bytes(data[: len(data) // 2])
    Image.open(cut)  # the header alone still opens: only a full decode finds the damage
    with pytest.raises(DataError, match=f"cut.{ext}.*truncated or corrupt"):
        read_image(cut)
    assert ImageFile.LOAD_TRUNCATED_IMAGES is False
    _check_float_rgb(read_image(full), (64, 64))


def test_is_image_extension_list():
    assert ".png" in IMAGE_EXTS and ".jpg" in IMAGE_EXTS and ".txt" not in IMAGE_EXTS


# ----------------------------------------------------------------------------- write_image


def test_write_then_read_round_trips_8bit_values(tmp_path):
    a = _rng(2).integers(0, 256, (6, 5, 3)).astype(np.float32) / 255.0
    p = write_image(tmp_path / "sub" / "o.png", a)
    assert p.is_file()
    np.testing.assert_array_equal(read_image(p), a)
    assert [f.name for f in p.parent.iterdir()] == ["o.png"]  # no temporary file left behind


def test_written_files_get_the_usual_permissions(tmp_path):
    # the atomic write goes through a mkstemp file (mode 0600); the result must follow the umask like
    # any file a user writes (dehazed photos were unreadable to the user's group before)
    import os

    old = os.umask(0o022)
    try:
        p = write_image(tmp_path / "o.png", np.zeros((2, 2, 3), np.float32))
    finally:
        os.umask(old)
    assert p.stat().st_mode & 0o777 == 0o644


def test_write_clips_and_rounds(tmp_path):
    a = np.array([[[-0.5, 0.5, 1.5]]], dtype=np.float32)
    write_image(tmp_path / "c.png", a)
    np.testing.assert_array_equal(np.asarray(Image.open(tmp_path / "c.png")), [[[0, 128, 255]]])


def test_write_grey_and_bad_inputs(tmp_path):
    write_image(tmp_path / "g.png", np.full((3, 4), 0.2, np.float32))
    np.testing.assert_allclose(read_image(tmp_path / "g.png"), 51 / 255)
    with pytest.raises(ValueError, match="PNG"):
        write_image(tmp_path / "x.jpg", np.zeros((2, 2, 3)))
    with pytest.raises(ValueError, match="NaN"):
        write_image(tmp_path / "n.png", np.full((2, 2, 3), np.nan))
    with pytest.raises(ValueError, match="shape"):
        write_image(tmp_path / "s.png", np.zeros((3, 2, 2)))
    assert sorted(f.name for f in tmp_path.iterdir()) == ["g.png"]


def test_write_is_atomic_when_saving_fails(tmp_path, monkeypatch):
    target = tmp_path / "keep.png"
    write_image(target, np.zeros((2, 2, 3), np.float32))
    before = target.read_bytes()

    def boom(self, *args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(Image.Image, "save", boom)
    with pytest.raises(OSError, match="disk full"):
        write_image(target, np.ones((2, 2, 3), np.float32))
    assert target.read_bytes() == before
    assert [f.name for f in tmp_path.iterdir()] == ["keep.png"]
