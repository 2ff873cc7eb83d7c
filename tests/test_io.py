"""Atomic writers: content, no leftover temp files, old file intact after a crash mid-write."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from dehazelab import io as dio


def _tmp_leftovers(folder: Path) -> list[str]:
    return [p.name for p in folder.iterdir() if p.name.endswith(".tmp")]


def test_atomic_write_bytes_and_text(tmp_path):
    p = dio.atomic_write_bytes(tmp_path / "sub" / "a.bin", b"\x00\x01hello")
    assert p.read_bytes() == b"\x00\x01hello"
    t = dio.atomic_write_text(tmp_path / "b.txt", "line1\r\nline2\n")
    assert t.read_bytes() == b"line1\r\nline2\n"  # no newline translation
    dio.atomic_write_text(t, "new")
    assert t.read_text() == "new"
    assert _tmp_leftovers(tmp_path) == [] and _tmp_leftovers(tmp_path / "sub") == []


@pytest.mark.parametrize("exists", [True, False])
def test_crash_mid_write_keeps_old_file(tmp_path, exists):
    target = tmp_path / "table.csv"
    if exists:
        target.write_text("old content\n")
    with pytest.raises(RuntimeError, match="boom"):
        with dio.atomic_open(target, "w") as f:
            f.write("half of the new ")
            f.flush()
            # the temp file exists while writing, next to the target
            assert len(_tmp_leftovers(tmp_path)) == 1
            raise RuntimeError("boom")
    if exists:
        assert target.read_text() == "old content\n"
    else:
        assert not target.exists()
    assert _tmp_leftovers(tmp_path) == []


def test_atomic_open_rejects_read_modes(tmp_path):
    with pytest.raises(ValueError):
        with dio.atomic_open(tmp_path / "x", "a"):
            pass


def test_write_json_sorted_indented_numpy_path(tmp_path):
    obj = {"b": np.float32(0.5), "a": [np.int64(3), Path("/x/y")], "c": np.arange(3), "d": {"z": 1, "y": None}}
    p = dio.write_json(tmp_path / "r.json", obj)
    text = p.read_text()
    assert text.endswith("\n")
    assert text == json.dumps({"a": [3, "/x/y"], "b": 0.5, "c": [0, 1, 2], "d": {"y": None, "z": 1}},
                              sort_keys=True, indent=2) + "\n"
    assert dio.read_json(p) == {"a": [3, "/x/y"], "b": 0.5, "c": [0, 1, 2], "d": {"y": None, "z": 1}}
    with pytest.raises(TypeError, match="object"):
        dio.write_json(tmp_path / "bad.json", {"x": object()})
    assert not (tmp_path / "bad.json").exists() and _tmp_leftovers(tmp_path) == []


def test_read_json_errors_name_the_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="missing.json"):
        dio.read_json(tmp_path / "missing.json")
    (tmp_path / "broken.json").write_text("{not json")
    with pytest.raises(ValueError, match="broken.json"):
        dio.read_json(tmp_path / "broken.json")


def test_write_table_formats_per_column(tmp_path):
    pytest.importorskip("tabulate")
    df = pd.DataFrame({
        "method": ["dcp", "aecr"],
        "n": [500, 5],
        "psnr": [15.0912345, 37.17],
        "ssim": [0.76490001, np.nan],
        "params_m": [0.0, 2.614229],
    })
    md, csv = dio.write_table(df, tmp_path / "tables" / "sots", floatfmts={"params_m": ".2f"})
    assert md == tmp_path / "tables" / "sots.md" and csv == tmp_path / "tables" / "sots.csv"
    lines = md.read_text().splitlines()
    assert [c.strip() for c in lines[0].strip("|").split("|")] == ["method", "n", "psnr", "ssim", "params_m"]
    body = [[c.strip() for c in line.strip("|").split("|")] for line in lines[2:]]
    assert body[0] == ["dcp", "500", "15.0912", "0.7649", "0.00"]
    assert body[1] == ["aecr", "5", "37.1700", "", "2.61"]
    back = pd.read_csv(csv)
    pd.testing.assert_frame_equal(back, df)  # the csv keeps full precision
    assert _tmp_leftovers(tmp_path / "tables") == []
    with pytest.raises(KeyError, match="nope"):
        dio.write_table(df, tmp_path / "x", floatfmts={"nope": ".1f"})


def test_write_table_without_tabulate_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "tabulate", None)  # makes `import tabulate` raise ImportError
    with pytest.raises(ImportError, match="tabulate"):
        dio.write_table(pd.DataFrame({"a": [1]}), tmp_path / "t")
    assert list(tmp_path.iterdir()) == []  # nothing half-written


def test_save_torch_roundtrip_and_crash(tmp_path):
    torch = pytest.importorskip("torch")
    p = tmp_path / "w.pt"
    dio.save_torch({"w": torch.arange(4.0)}, p)
    assert torch.equal(torch.load(p, weights_only=True)["w"], torch.arange(4.0))
    old = p.read_bytes()
    with pytest.raises(Exception):
        dio.save_torch({"w": torch.ones(2), "f": lambda x: x}, p)  # lambdas cannot be pickled
    assert p.read_bytes() == old
    assert _tmp_leftovers(tmp_path) == []


def test_save_torch_says_the_disk_is_full_and_names_the_file(tmp_path, monkeypatch):
    """torch's own message for a full disk is 'unexpected pos N vs M': ours names the file and the cause."""
    import shutil
    from collections import namedtuple

    import torch

    target = tmp_path / "last.pt"
    target.write_bytes(b"previous")

    def failing_save(obj, f):
        f.write(b"partial")
        raise RuntimeError("[enforce fail at inline_container.cc:664] . unexpected pos 115200 vs 115088")

    Usage = namedtuple("Usage", "total used free")
    monkeypatch.setattr(torch, "save", failing_save)
    monkeypatch.setattr(shutil, "disk_usage", lambda p: Usage(10**9, 10**9, 1024))
    with pytest.raises(OSError, match=r"cannot write .*last\.pt: the disk is full \(0 MB free\)") as err:
        dio.save_torch({"w": 1}, target)
    assert err.value.errno == 28
    assert target.read_bytes() == b"previous" and [p.name for p in tmp_path.iterdir()] == ["last.pt"]


def test_remove_stale_tmp_takes_only_atomic_open_leftovers(tmp_path):
    ours = tmp_path / ".a.png.x1y2z3.tmp"
    for p in (ours, tmp_path / ".b.png.x1y2z3.tmp", tmp_path / "a.png.tmp", tmp_path / ".a.png"):
        p.write_bytes(b"x")
    assert dio.remove_stale_tmp(tmp_path, "a.png") == [ours]
    assert sorted(p.name for p in tmp_path.iterdir()) == [".a.png", ".b.png.x1y2z3.tmp", "a.png.tmp"]
    assert dio.remove_stale_tmp(tmp_path / "missing", "a.png") == []
