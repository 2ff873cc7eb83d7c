"""dehazelab.references.read_reference: another notebook's row, read (never retrained), with why not."""

import json

import pandas as pd

from dehazelab.references import read_reference

IMAGES = ["1430_1", "1431_5"]


def _write(root, runs=True, images=IMAGES, row_name="CUT"):
    d = root / "small" / "02_x"
    d.mkdir(parents=True)
    m = {"notebook": "02_x", "size": "small", "seeds": [0, 1], "steps": 30, "method_kwargs": {"cut": {"ngf": 16}},
         "data": {"test": {"images": images}},
         "tables": {"cut_table": [{"method": row_name, "PSNR": 17.5, "SSIM": 0.76}, {"method": "FastCUT", "PSNR": 15.0}]}}
    (d / "metrics.json").write_text(json.dumps(m))
    if runs:
        pd.DataFrame({"method": ["cut", "cut", "fastcut"], "seed": [0, 1, 0], "psnr": [17.0, 18.0, 15.0]}).to_csv(
            d / "runs_per_seed.csv", index=False)


def _read(root, images=IMAGES):
    return read_reference(root, "small", "02_x", table="cut_table", key="method", name="CUT", run_name="cut",
                          test_images=images)


def test_a_present_row_is_read_with_its_per_seed_scores(tmp_path):
    _write(tmp_path)
    ref = _read(tmp_path)
    assert ref.status == "read" and ref.row["PSNR"] == 17.5 and ref.same_test_images and ref.paired
    assert list(ref.per_seed.index) == [0, 1] and list(ref.per_seed.psnr) == [17.0, 18.0]
    rec = ref.record()
    assert rec["seeds"] == [0, 1] and rec["steps"] == 30 and rec["method_kwargs"] == {"ngf": 16}
    json.dumps(rec)  # JSON-ready


def test_other_test_images_or_no_per_seed_file_are_not_paired(tmp_path):
    _write(tmp_path)
    ref = _read(tmp_path, images=["1430_1"])
    assert ref.status == "read" and not ref.same_test_images and not ref.paired
    _write(tmp_path / "b", runs=False)
    ref = _read(tmp_path / "b")
    assert ref.row is not None and ref.per_seed is None and not ref.paired


def test_absent_results_or_a_missing_row_say_why(tmp_path):
    ref = _read(tmp_path)
    assert ref.row is None and ref.status.startswith("absent") and "metrics.json" in ref.status
    assert ref.record() == {"status": ref.status, "path": ref.path}
    _write(tmp_path, row_name="Other")
    ref = _read(tmp_path)
    assert ref.row is None and ref.status == "no CUT row in 02_x's metrics.json (table 'cut_table')"
