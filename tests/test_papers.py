"""The papers' quoted numbers live in one data file, dehazelab/papers.json: its structure, that the
loader gives exactly the values the notebooks used to hold as literals (so their tables and
metrics.json do not change), and that no notebook holds such a literal any more."""

from __future__ import annotations

import ast
import copy
import json
import re

import pytest

from dehazelab import papers, paths

NOTEBOOKS = sorted((paths.ROOT / "notebooks").glob("*.py"))
HEADING = re.compile(r"^#{1,6}\s+(\d+(?:\.\d+)*)[.\s]", re.MULTILINE)


def test_the_file_is_well_formed_and_every_number_says_where_it_comes_from():
    data = json.loads(papers.FILE.read_text(encoding="utf-8"))
    assert papers.validate(data) == []
    assert set(papers.tables()) >= {"cr-table1", "cut-table1"}
    for t in papers.tables():
        nums = papers.numbers(t)
        assert nums and all(isinstance(n.verified, bool) and n.evidence.strip() for n in nums)
        assert all(not n.verified or "recalled" not in n.evidence for n in nums), t
        src = papers.paper(t)
        assert src["citation"] and src["table"].startswith("Table")
        doc, sec = re.fullmatch(r"docs/([\w.-]+\.md) §(\d+(?:\.\d+)*)", src["docs"]).groups()
        assert sec in HEADING.findall((paths.ROOT / "docs" / doc).read_text(encoding="utf-8")), src["docs"]
    # the package ships the file (pyproject's package data)
    text = (paths.ROOT / "pyproject.toml").read_text(encoding="utf-8")
    assert '"papers.json"' in text


@pytest.mark.parametrize("breakage, message", [
    (lambda d: d.update(format="x"), "format"),
    (lambda d: d["tables"]["cr-table1"].update(paper="nope"), "paper 'nope'"),
    (lambda d: d["tables"]["cr-table1"]["numbers"][0].pop("verified"), "'verified' must be true or false"),
    (lambda d: d["tables"]["cr-table1"]["numbers"][0].update(evidence=""), "'evidence' must be"),
    (lambda d: d["tables"]["cr-table1"]["numbers"][0].update(value=None), "'value' must be"),
    (lambda d: d["tables"]["cr-table1"]["numbers"].append(dict(d["tables"]["cr-table1"]["numbers"][0])),
     "appears twice"),
])
def test_validate_names_what_is_wrong(breakage, message):
    data = copy.deepcopy(papers.load())
    breakage(data)
    assert any(message in p for p in papers.validate(data)), papers.validate(data)


def test_a_broken_file_is_refused_with_its_name(tmp_path):
    bad = tmp_path / "papers.json"
    bad.write_text(json.dumps({"format": papers.FORMAT, "papers": {}, "tables": {}}), encoding="utf-8")
    with pytest.raises(ValueError, match="papers.json"):
        papers.load(bad)
    with pytest.raises(KeyError, match="known: cr-table1"):
        papers.quoted("nope")


def test_the_loader_gives_the_values_the_notebooks_held_as_literals():
    # notebook 00, the DCP row (as the notebook builds it now; before: a literal dict)
    row = papers.quoted("cr-table1")["DCP"]
    dcp = {s: (row[f"{s} PSNR"], row[f"{s} SSIM"]) for s in ("SOTS-indoor", "NH-HAZE")}
    assert dcp == {"SOTS-indoor": (15.09, 0.7649), "NH-HAZE": (10.57, 0.5196)}
    assert list(dcp) == ["SOTS-indoor", "NH-HAZE"]
    # notebook 01, Table 1
    t1 = papers.quoted("cr-table1")
    cr = {r: (t1[r]["SOTS-indoor PSNR"], t1[r]["SOTS-indoor SSIM"], t1[r]["#params"]) for r in ("DCP", "AOD-Net", "AECR-Net")}
    assert cr == {"DCP": (15.09, 0.7649, "–"), "AOD-Net": (19.82, 0.8178, "0.002M"), "AECR-Net": (37.17, 0.9901, "2.61M")}
    # notebook 02, Table 1: the same values in the same column order (the table's columns follow it)
    label = {"cut": "CUT", "fastcut": "FastCUT", "cyclegan": "CycleGAN"}
    ct = papers.quoted("cut-table1")
    cut = {name: dict(ct[label[name]]) for name in ("cut", "fastcut", "cyclegan")}
    old = {
        "cut": {"H→Z FID": 45.5, "Cat→Dog FID": 76.2, "Cityscapes FID": 56.4, "sec/iter": 0.24, "Mem GB": 3.33},
        "fastcut": {"H→Z FID": 73.4, "Cat→Dog FID": 94.0, "Cityscapes FID": 68.8, "sec/iter": 0.15, "Mem GB": 2.25},
        "cyclegan": {"H→Z FID": 77.2, "Cat→Dog FID": 85.9, "Cityscapes FID": 76.3, "sec/iter": 0.40, "Mem GB": 4.81},
    }
    assert cut == old and all(list(cut[m]) == list(old[m]) for m in old)
    assert json.dumps(cut) == json.dumps(old)  # metrics.json's "paper_quoted" is written byte for byte as before
    # notebook 02's cost claims, once string literals
    src = f"Table 1, {papers.status('cut-table1', columns=['sec/iter', 'Mem GB'])}"
    assert f"{cut['cut']['sec/iter']:.2f} vs {cut['cyclegan']['sec/iter']:.2f} s/iter ({src})" == \
        "0.24 vs 0.40 s/iter (Table 1, recalled)"
    assert f"{cut['cut']['Mem GB']:.2f} vs {cut['cyclegan']['Mem GB']:.2f} GB ({src})" == "3.33 vs 4.81 GB (Table 1, recalled)"
    assert f"{cut['fastcut']['sec/iter']:.2f} vs {cut['cut']['sec/iter']:.2f} s/iter ({src})" == \
        "0.15 vs 0.24 s/iter (Table 1, recalled)"
    assert papers.status("cut-table1", rows=["CUT", "FastCUT"], columns=["H→Z FID"]) == "verified"


def _quoted_values():
    out = []
    for t in papers.tables():
        for n in papers.numbers(t):
            if isinstance(n.value, str) and len(n.value) < 2:  # "–" (no number) is no literal to look for
                continue
            out.append(n)
    return out


@pytest.mark.parametrize("nb", NOTEBOOKS, ids=lambda p: p.stem)
def test_no_notebook_holds_a_quoted_number_as_a_literal(nb):
    """Code only (the markdown may discuss numbers); numbers as constants, and inside string constants
    in their printed forms (e.g. "0.24 vs 0.40 s/iter")."""
    tree = ast.parse(nb.read_text(encoding="utf-8"))
    consts = [c for c in ast.walk(tree) if isinstance(c, ast.Constant) and not isinstance(c.value, bool)]
    found = []
    for n in _quoted_values():
        if isinstance(n.value, str):
            found += [(c.lineno, n.value) for c in consts if isinstance(c.value, str) and n.value in c.value]
            continue
        forms = {f for f in (repr(float(n.value)), f"{n.value:.2f}", f"{n.value:.4f}") if len(f) >= 4}
        pattern = re.compile(r"(?<![\d.])(" + "|".join(map(re.escape, sorted(forms))) + r")(?![\d])")
        for c in consts:
            if isinstance(c.value, (int, float)) and c.value == n.value:
                found.append((c.lineno, n.value))
            elif isinstance(c.value, str) and forms and pattern.search(c.value):
                found.append((c.lineno, n.value))
    assert not found, f"{nb.name}: quoted numbers written as literals (read them with dehazelab.papers): {found[:5]}"
