"""The pinned SOTS subset: split, manifest building, and verification (passing and failing)."""

from __future__ import annotations

import hashlib
import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from dehazelab.data import DataError
from dehazelab.data.subsets import (
    MANIFEST_PATH,
    build_manifest,
    load_manifest,
    sha256_file,
    sots_split,
    verify,
)
from dehazelab.paths import data_root


def _img(path: Path, seed: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.random.default_rng(seed).integers(0, 256, (6, 7, 3), dtype=np.uint8)).save(path)


def _small_root(tmp_path: Path) -> Path:
    root = tmp_path / "data"
    for s in (1400, 1401):
        _img(root / "sots-indoor" / "gt" / f"{s}.png", s)
        for lv in (1, 3):
            _img(root / "sots-indoor" / "hazy" / f"{s}_{lv}.png", s * 10 + lv)
    _img(root / "nh-haze" / "51_hazy.png", 1)
    _img(root / "nh-haze" / "51_GT.png", 2)
    return root


def _flip_one_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))


def test_sots_split_default_is_scene_disjoint():
    split = sots_split()
    assert split["train"][0] == "1400" and split["train"][-1] == "1429" and len(split["train"]) == 30
    assert split["test"] == [str(s) for s in range(1430, 1440)]
    assert not set(split["train"]) & set(split["test"])


def test_sots_split_rejects_overlap_and_reversed_ranges():
    with pytest.raises(ValueError, match="overlap"):
        sots_split(train=(1400, 1431), test=(1430, 1439))
    with pytest.raises(ValueError, match="reversed"):
        sots_split(train=(1429, 1400))
    assert sots_split(train=(1400, 1401), test=(1402, 1402)) == {"train": ["1400", "1401"], "test": ["1402"]}


def test_sha256_file_matches_hashlib(tmp_path):
    p = tmp_path / "b.bin"
    p.write_bytes(bytes(range(256)) * 5000)
    assert sha256_file(p, chunk=1000) == hashlib.sha256(p.read_bytes()).hexdigest()


def test_build_manifest_lists_every_paired_file_with_its_hash(tmp_path):
    root = _small_root(tmp_path)
    m = build_manifest(root)
    expected = sorted(f.relative_to(root).as_posix() for f in root.rglob("*.png"))
    assert sorted(m["files"]) == expected
    for rel, digest in m["files"].items():
        assert digest == hashlib.sha256((root / rel).read_bytes()).hexdigest()
    assert m["folders"]["sots-indoor"] == {"pairs": 4, "hazy": 4, "clear": 2, "layout": "sots"}
    assert m["folders"]["nh-haze"]["layout"] == "nh-haze"


def test_build_manifest_refuses_a_broken_layout(tmp_path):
    root = _small_root(tmp_path)
    (root / "sots-indoor" / "gt" / "1401.png").unlink()
    with pytest.raises(DataError, match="1401_1.png: hazy image has no ground truth"):
        build_manifest(root)


def test_verify_passes_then_reports_changed_and_missing_files(tmp_path):
    root = _small_root(tmp_path)
    manifest = build_manifest(root)
    report = verify(root, manifest=manifest)
    assert report.ok and report.checked == 8 and "all 8 files" in report.summary()
    _flip_one_byte(root / "sots-indoor" / "hazy" / "1401_3.png")
    (root / "nh-haze" / "51_GT.png").unlink()
    report = verify(root, manifest=manifest)
    assert not report.ok
    assert report.mismatched == ["sots-indoor/hazy/1401_3.png"]
    assert report.missing == ["nh-haze/51_GT.png"]
    with pytest.raises(DataError, match=r"1 missing, 1 with a different sha256[\s\S]*1401_3\.png"):
        verify(root, manifest=manifest, strict=True)


def test_verify_reads_a_manifest_file_and_names_a_bad_one(tmp_path):
    root = _small_root(tmp_path)
    path = tmp_path / "m.json"
    path.write_text(json.dumps(build_manifest(root)))
    assert verify(root, manifest=path).ok
    path.write_text("{not json")
    with pytest.raises(DataError, match="m.json: cannot read the manifest"):
        verify(root, manifest=path)


def test_committed_manifest_is_small_and_holds_only_hashes():
    m = load_manifest()
    assert MANIFEST_PATH.stat().st_size < 100_000  # paths and hashes, no image data
    assert len(m["files"]) == 246
    assert sum(k.startswith("sots-indoor/hazy/") for k in m["files"]) == 200
    assert sum(k.startswith("sots-indoor/gt/") for k in m["files"]) == 40
    assert sum(k.startswith("nh-haze/") for k in m["files"]) == 6
    assert all(re.fullmatch(r"[0-9a-f]{64}", v) for v in m["files"].values())
    assert m["split"]["sots-indoor"]["train"] == [1400, 1429]


def _real_root() -> Path:
    root = data_root()
    if root is None or not (root / "sots-indoor").is_dir() or not (root / "nh-haze").is_dir():
        pytest.skip("benchmark data not available")
    return root


def test_verify_passes_on_the_real_data():
    root = _real_root()
    report = verify(root)
    assert report.ok, report.summary()
    assert report.checked == 246


def test_committed_manifest_agrees_with_the_data_folders_own_checksums():
    root = _real_root()
    sums_file = root / "SHA256SUMS"
    if not sums_file.is_file():
        pytest.skip("no SHA256SUMS in the data folder")
    sums = {}
    for line in sums_file.read_text().splitlines():
        digest, name = line.split(maxsplit=1)
        sums[name.strip().removeprefix("./")] = digest
    for rel, digest in load_manifest()["files"].items():
        assert sums[rel] == digest, rel


def test_verify_reports_a_one_byte_change_in_a_copy_of_real_files(tmp_path):
    root = _real_root()
    full = load_manifest()
    chosen = ["sots-indoor/hazy/1400_1.png", "sots-indoor/gt/1400.png"]
    for rel in chosen:
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(root / rel, tmp_path / rel)
    manifest = {"files": {rel: full["files"][rel] for rel in chosen}}
    assert verify(tmp_path, manifest=manifest).ok
    _flip_one_byte(tmp_path / chosen[0])
    report = verify(tmp_path, manifest=manifest)
    assert report.mismatched == [chosen[0]] and report.missing == []
    # against the whole manifest, everything else is missing from the copy
    assert len(verify(tmp_path).missing) == 244


def test_distinct_scenes_gives_one_image_per_scene_with_varied_haze():
    from collections import namedtuple

    from dehazelab.data.selection import distinct_scenes

    P = namedtuple("P", "scene level")
    pairs = [P(str(s), str(lv)) for s in range(1430, 1440) for lv in (1, 7)]
    idx = distinct_scenes(pairs, 4)
    chosen = [pairs[i] for i in idx]
    assert len({p.scene for p in chosen}) == 4  # four different scenes
    assert chosen[0].scene == "1430" and chosen[-1].scene == "1439"  # spread over the list
    assert {p.level for p in chosen} == {"1", "7"}  # light and dense haze both shown
    assert distinct_scenes(pairs[:4], 5) == [0, 3]  # only two scenes there
    assert distinct_scenes(pairs, 0) == []
