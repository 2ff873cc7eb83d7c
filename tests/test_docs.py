"""Every reference to the project's own ``docs/`` — a path, and a section number after it
(``docs/methods.md §2.4``) — resolves in a fresh clone: the file exists and has a heading that
starts with that number (``### 2.4 ...``)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from dehazelab import paths

ROOT = paths.ROOT
SOURCES = ["README.md", "Snakefile", *(f"{d}/**/*{ext}" for d in ("dehazelab", "notebooks", "config", "benchmarks",
                                                                 "report", "tools", "docs", "profiles")
                                      for ext in (".py", ".yaml", ".md", ".ipynb", ".smk"))]
REF = re.compile(r"docs/([\w./-]*\w\.md)`?\)?\s*(?:§\s*(\d+(?:\.\d+)*[a-z]?))?")
HEADING = re.compile(r"^#{1,6}\s+(\d+(?:\.\d+)*[a-z]?)[.\s]", re.MULTILINE)


def _files() -> list[Path]:
    out: set[Path] = set()
    for pattern in SOURCES:
        out.update(p for p in ROOT.glob(pattern) if p.is_file() and ".venv" not in p.parts)
    return sorted(out)


def references() -> list[tuple[Path, int, str, str | None]]:
    refs = []
    for f in _files():
        for n, line in enumerate(f.read_text(encoding="utf-8", errors="replace").splitlines(), 1):
            for m in REF.finditer(line):
                refs.append((f, n, m.group(1), m.group(2)))
    return refs


def sections(doc: Path) -> set[str]:
    return set(HEADING.findall(doc.read_text(encoding="utf-8")))


def test_the_reference_pattern_reads_the_forms_the_project_uses():
    line = "see `docs/methods.md` §2.4. and (docs/methods.md §7, quoted) and docs/input-handling.md"
    assert [(m.group(1), m.group(2)) for m in REF.finditer(line)] == [
        ("methods.md", "2.4"), ("methods.md", "7"), ("input-handling.md", None)]
    assert HEADING.findall("## 1. AECR-Net\n### 1.2 Architecture\n#### 4.3.1 PRM\n### 3.6b Lineage\n") == [
        "1", "1.2", "4.3.1", "3.6b"]


def test_there_are_references_to_check():
    assert len(references()) >= 20


@pytest.mark.parametrize("doc", sorted({r[2] for r in references()}))
def test_every_docs_reference_resolves(doc):
    target = ROOT / "docs" / doc
    refs = [r for r in references() if r[2] == doc]
    where = ", ".join(f"{f.relative_to(ROOT)}:{n}" for f, n, _, _ in refs[:3])
    assert target.is_file(), f"docs/{doc} does not exist but is cited ({where})"
    have = sections(target)
    missing = sorted({(s, f"{f.relative_to(ROOT)}:{n}") for f, n, _, s in refs if s and s not in have})
    assert not missing, f"docs/{doc} has no section for: " + "; ".join(f"§{s} ({w})" for s, w in missing[:10])
