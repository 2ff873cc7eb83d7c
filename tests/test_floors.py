"""The quality floors (dehazelab.floors): each kind's bounds, missing numbers, and the reason given."""

import math

import pytest

from dehazelab.floors import KINDS, check

HAZY = {"psnr": 12.5, "ssim": 0.675, "delta_e": 18.0}
DCP = {"psnr": 20.0, "ssim": 0.835, "delta_e": 7.0}


def test_headline_needs_dcp_plus_one_db_and_its_ssim():
    assert check("headline", {"psnr": 21.0, "ssim": 0.835, "delta_e": 6.0}, HAZY, DCP) == ("met", "")
    v, why = check("headline", {"psnr": 20.9, "ssim": 0.84, "delta_e": 6.0}, HAZY, DCP)
    assert v == "not met" and why.startswith("PSNR vs DCP + 1 dB: 20.9 vs 21")
    v, why = check("headline", {"psnr": 22.0, "ssim": 0.83, "delta_e": 6.0}, HAZY, DCP)
    assert v == "not met" and "SSIM vs DCP" in why


def test_aodnet_and_unpaired_bounds():
    assert check("aodnet", {"psnr": 19.5, "ssim": 0.80, "delta_e": 9.0}, HAZY)[0] == "met"
    assert check("aodnet", {"psnr": 19.49, "ssim": 0.9, "delta_e": 9.0}, HAZY)[0] == "not met"
    assert check("unpaired", {"psnr": 14.5, "ssim": 0.676, "delta_e": 15.0}, HAZY)[0] == "met"
    assert check("unpaired", {"psnr": 14.5, "ssim": 0.675, "delta_e": 15.0}, HAZY)[0] == "not met"  # SSIM must exceed
    assert check("unpaired", {"psnr": 14.4, "ssim": 0.7, "delta_e": 15.0}, HAZY)[0] == "not met"


def test_every_learned_model_keeps_ssim_and_colour_error_of_the_hazy_input():
    for kind in KINDS:
        v, why = check(kind, {"psnr": 30.0, "ssim": 0.99, "delta_e": 18.5}, HAZY, DCP)
        assert v == "not met" and why == "ΔE vs hazy: 18.5 vs 18", kind
    assert check("learned", {"psnr": 5.0, "ssim": 0.7, "delta_e": 17.0}, HAZY) == ("met", "")


def test_missing_numbers_give_na_unless_something_already_fails():
    assert check("learned", {"psnr": 15.0, "ssim": 0.7, "delta_e": None}, HAZY) == ("n/a", "not recorded: ΔE vs hazy")
    assert check("learned", {"psnr": 15.0, "ssim": 0.6, "delta_e": math.nan}, HAZY)[0] == "not met"
    assert check("headline", {"psnr": 25.0, "ssim": 0.9, "delta_e": 5.0}, HAZY, None)[0] == "n/a"
    with pytest.raises(ValueError, match="unknown floor kind"):
        check("paired", {}, HAZY)


def test_quality_rows_use_the_tables_own_reference_rows():
    import pandas as pd

    from dehazelab.floors import quality_rows

    df = pd.DataFrame({"row": ["hazy input", "DCP", "CUT", "X"], "seeds": [0, 0, 3, 3], "PSNR": [12.5, 20.0, 15.0, 21.5],
                       "SSIM": [0.675, 0.835, 0.70, 0.84], "ΔE": [18.0, 7.0, 15.0, 6.0]})
    rows = quality_rows("02_x", df, "row", {"CUT": ("CUT", "unpaired"), "ours": ("X", "headline"), "gone": ("Y", "learned")})
    assert [r["model"] for r in rows] == ["CUT", "ours"] and [r["met"] for r in rows] == ["met", "met"]
    assert rows[0]["notebook"] == "02" and rows[0]["hazy PSNR / SSIM / ΔE"] == "12.50 / 0.675 / 18.0"
    no_de = quality_rows("03_y", df.drop(columns="ΔE"), "row", {"CUT": ("CUT", "unpaired")})
    assert no_de[0]["met"] == "n/a"
    no_ref = quality_rows("01_z", df[df.row != "hazy input"], "row", {"X": ("X", "headline"), "CUT": ("CUT", "unpaired")})
    # without a hazy-input row the parts that need it are unknown: n/a, and the row says why
    assert [r["met"] for r in no_ref] == ["n/a", "n/a"] and no_ref[0]["hazy PSNR / SSIM / ΔE"] == "— (no hazy-input row)"
    low = quality_rows("01_z", df[df.row != "hazy input"].replace({"PSNR": {21.5: 20.5}}), "row", {"X": ("X", "headline")})
    assert low[0]["met"] == "not met"  # a part that can be judged fails: not met, whatever is unknown


def test_met_sentence_counts_and_names_the_models_that_miss():
    import pandas as pd

    from dehazelab.floors import met_sentence

    q = pd.DataFrame({"model": ["A", "B", "C"], "met": ["met", "not met", "n/a"], "why not": ["", "PSNR low", "not recorded: ΔE"]})
    assert met_sentence(q) == ("**1 of 3 trained models meet their floor**; not met: B (PSNR low); "
                               "C (not recorded: ΔE).")
    assert met_sentence(q.iloc[:1]) == "**1 of 1 trained models meet their floor**."
    with pytest.raises(KeyError, match="why not"):
        met_sentence(q.drop(columns="why not"))
