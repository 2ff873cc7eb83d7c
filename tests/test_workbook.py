"""dehazelab.workbook: the set-up every paper notebook shares (on the synthetic data, no data folder)."""

import json

import pytest
import torch

from dehazelab import workbook
from dehazelab.runs.grids import notebook_defaults


@pytest.fixture
def offline(tmp_path, monkeypatch):
    monkeypatch.setenv("DEHAZELAB_RESULTS", str(tmp_path))
    monkeypatch.setenv("DEHAZELAB_DATA", "")
    return tmp_path


def test_start_reads_the_parameters_cell_names_and_sets_up(offline):
    params = {**notebook_defaults("01_cr_aecrnet"), "seeds": [3, 4], "max_test_images": 3, "unrelated": 1}
    nb = workbook.start("01_cr_aecrnet", params)
    assert "unrelated" not in nb.params and nb.seeds == [3, 4]
    assert nb.out == offline / "smoke" / "01_cr_aecrnet" and nb.out.is_dir()
    assert torch.get_num_threads() == params["threads"]
    assert torch.initial_seed() == 3  # the first seed
    assert len(nb.test_pairs) == 3 and len(nb.test_set) == 3
    assert {g.seed for g in nb.grid} == {3, 4} and all(g.spec["data"]["train"] == "synthetic-train" for g in nb.grid)
    cfg = json.loads(nb.write_config(extra_note="x").read_text())
    assert cfg["extra_note"] == "x" and cfg["seeds"] == [3, 4]
    assert cfg["data_used"]["test"]["images"] == [p.name for p in nb.test_pairs]
    assert set(cfg["runs"].values()) == {g.id for g in nb.grid}


def test_the_test_pairs_are_the_ones_the_runs_score(offline):
    """The notebook's pictures show the images its runs' numbers come from."""
    params = {**notebook_defaults("01_cr_aecrnet"), "steps": 2, "ablation_steps": 1, "aod_steps": 1}
    nb = workbook.start("01_cr_aecrnet", params)
    from dehazelab.runs import ensure

    g = nb.grid[0]
    r = ensure(g.spec, offline / "runs", progress=False)
    assert list(r.per_image["name"].astype(str)) == [p.name for p in nb.test_pairs]


def test_unpaired_notebooks_get_the_runs_training_split(offline):
    nb = workbook.start("02_cut_fastcut", notebook_defaults("02_cut_fastcut"))
    tr = nb.data_used["train"]
    assert nb.hazy_items and nb.clear_items and (tr["n_hazy"], tr["n_clear"]) == (len(nb.hazy_items), len(nb.clear_items))
    assert not {p.scene for p in nb.hazy_items} & {getattr(c, "scene", None) for c in nb.clear_items}


def test_a_missing_parameter_is_named(offline):
    params = notebook_defaults("04_iicl")
    del params["warmup_steps"]
    with pytest.raises(ValueError, match="warmup_steps"):
        workbook.start("04_iicl", params)


def test_shown_pairs_are_distinct_labelled_test_images(offline):
    params = {**notebook_defaults("01_cr_aecrnet"), "max_test_images": 4}
    nb = workbook.start("01_cr_aecrnet", params)
    shown = nb.shown_pairs(3)
    labels = [f"{p.scene}, haze level {p.level}" if p.level not in (None, "") else str(p.scene) for p in nb.test_pairs]
    assert 1 <= len(shown) <= 3
    for hazy, clear, label in shown:
        assert hazy.shape == clear.shape and hazy.shape[0] == 3
        assert torch.equal(hazy, nb.test_set[labels.index(label)]["hazy"])  # the image the label names
    scenes = [label.split(",")[0] for _, _, label in shown]
    assert len(set(scenes)) == len(scenes)  # no scene twice


def test_scores_of_the_identity_are_the_hazy_inputs_own(offline):
    """Notebook.scores(lambda im: im) scores the hazy inputs against their clear images, image by image."""
    import numpy as np

    from dehazelab import metrics as M

    nb = workbook.start("01_cr_aecrnet", notebook_defaults("01_cr_aecrnet"))
    got = nb.scores(lambda im: im)
    ds = nb.test_set
    items = [ds[i] for i in range(len(ds))]
    hw = [(it["hazy"].permute(1, 2, 0).numpy(), it["clear"].permute(1, 2, 0).numpy()) for it in items]
    assert got["psnr"] == pytest.approx(np.mean([M.psnr(h, c) for h, c in hw]))
    assert got["ssim"] == pytest.approx(np.mean([M.ssim(h, c) for h, c in hw]))
    assert got["delta_e"] == pytest.approx(np.mean([M.delta_e(h, c) for h, c in hw]))
    assert nb.scores(lambda im: items_clear_of(im, hw))["psnr"] == float("inf")


def items_clear_of(im, hw):
    """The clear image of the hazy image ``im`` (a perfect dehazer)."""
    import numpy as np

    return next(c for h, c in hw if np.array_equal(h, im))


def test_held_summary_groups_claims_by_verdict():
    import pandas as pd

    claims = pd.DataFrame({"claim": ["a", "b", "c"], "ours (PSNR difference, 95% CI)": ["+1", "-1", "+0.1"],
                           "at this size": ["held", "not held (the opposite, beyond seed noise)",
                                            "not shown at this size (same direction, within seed noise)"],
                           "detectable with these seeds": ["≥ 0.5 dB", "—", "≥ 0.9 dB"]})
    table = pd.DataFrame({"row": ["X", "DCP"], "PSNR": [21.5, 20.0], "SSIM": [0.85, 0.83]})
    text = workbook.held_summary(claims, table, "random(seed=0)", ours="X", floor_ref="DCP")
    lines = text.splitlines()
    assert lines[0] == "* **Held**: a (+1; detectable with these seeds: ≥ 0.5 dB)."
    assert lines[1].startswith("* **Not held**") and "b (-1)" in lines[1]
    assert lines[2].startswith("* **Not shown at this size**") and "≥ 0.9 dB" in lines[2]
    assert "+1.50 dB, SSIM +0.020" in lines[3] and "random VGG-19" in lines[4]


def test_shown_psnr_scores_each_cell_against_the_rows_ground_truth():
    import numpy as np

    from dehazelab import metrics as M, plotting

    gt = np.full((8, 8, 3), 0.5, dtype=np.float32)
    off = gt + 0.1
    text = plotting.shown_psnr([[off, gt, gt], [off, gt, None]], ["a", "b"], ["hazy", "net"])
    assert text.split("\n") == [f"* a: hazy {M.psnr(off, gt):.1f} dB, net inf dB",
                                 "* b, mean brightness: hazy 0.60, net 0.50"]  # no ground truth: brightness
    assert plotting.shown_psnr([], [], ["hazy"]) == "(no images shown)"


def test_parameters_are_the_cells_names_in_order_and_a_missing_one_is_named():
    declared = notebook_defaults("90_tables_figures")
    got = workbook.parameters("90_tables_figures", {**declared, "read_size": "smoke", "R": object()})
    assert list(got) == list(declared) and got["read_size"] == "smoke"
    with pytest.raises(ValueError, match="read_root"):
        workbook.parameters("90_tables_figures", {k: v for k, v in declared.items() if k != "read_root"})


def test_prepare_seeds_and_makes_the_output_folder(offline):
    import random

    out = workbook.prepare("00_data_baselines", {"size": "small", "out_dir": "", "threads": 1}, seed=5)
    assert out == offline / "small" / "00_data_baselines" and out.is_dir()
    assert torch.initial_seed() == 5 and torch.get_num_threads() == 1
    first = random.random()
    workbook.prepare("00_data_baselines", {"size": "small", "out_dir": "elsewhere/x"}, seed=5)
    assert random.random() == first  # the same seed, the same stream
    assert (offline / "elsewhere" / "x").is_dir()
