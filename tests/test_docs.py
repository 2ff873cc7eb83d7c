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


# Relative markdown links in the README and the documentation point to files that exist. The README is an
# index, so a link that breaks (a file moved, a table renamed when results are regenerated) must fail here.
LINKED_DOCS = ["README.md", "benchmarks/README.md", "report/README.md", "docs/*.md"]
FENCE = re.compile(r"^\s*```.*?^\s*```", re.MULTILINE | re.DOTALL)
CODE_SPAN = re.compile(r"`[^`\n]*`")
LINK = re.compile(r"\[[^\]\n]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
EXTERNAL = re.compile(r"^(?:[a-z][a-z0-9+.-]*:|#)", re.IGNORECASE)


def relative_links(text: str) -> list[str]:
    """Targets of the inline markdown links in ``text`` that name a file of this repository (no URL,
    no bare ``#anchor``); links shown as code, in fences or in backticks, are not links."""
    text = CODE_SPAN.sub("code", FENCE.sub("", text))
    return [t for t in LINK.findall(text) if not EXTERNAL.match(t)]


def broken_links(doc: Path) -> list[str]:
    out = []
    for target in relative_links(doc.read_text(encoding="utf-8")):
        path = target.split("#", 1)[0].split("?", 1)[0]
        if not (doc.parent / path).exists():
            out.append(target)
    return out


def _linked_docs() -> list[Path]:
    return sorted({p for pattern in LINKED_DOCS for p in ROOT.glob(pattern) if p.is_file()})


def test_the_link_check_finds_a_broken_link(tmp_path):
    (tmp_path / "there.md").write_text("x")
    (tmp_path / "sub").mkdir()
    doc = tmp_path / "doc.md"
    doc.write_text("[ok](there.md) [`code` text](sub/) [anchor](there.md#part) [gone](missing.md)\n"
                   "[web](https://example.org/x) [top](#top) `[not a link](nowhere.md)`\n"
                   "```\n[not a link either](nowhere.md)\n```\n")
    assert relative_links(doc.read_text()) == ["there.md", "sub/", "there.md#part", "missing.md"]
    assert broken_links(doc) == ["missing.md"]


def test_the_readme_and_the_docs_have_links_to_check():
    docs = [p.relative_to(ROOT).as_posix() for p in _linked_docs()]
    assert {"README.md", "benchmarks/README.md", "report/README.md", "docs/data.md", "docs/cluster.md"} <= set(docs)
    assert len(relative_links((ROOT / "README.md").read_text(encoding="utf-8"))) >= 50


@pytest.mark.parametrize("doc", [p.relative_to(ROOT).as_posix() for p in _linked_docs()])
def test_every_relative_link_resolves(doc):
    missing = broken_links(ROOT / doc)
    assert not missing, f"{doc} links to files that do not exist: {missing}"
