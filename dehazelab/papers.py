"""The papers' quoted numbers, kept in one data file: ``dehazelab/papers.json``.

The notebooks print the papers' reported numbers in columns marked *(quoted)*, beside our own
measurements. Those numbers live only in ``papers.json`` (shipped with the package), never as
literals in a notebook. Each number records its paper and table, whether it was verified, and the
evidence (where it was read, or that it was recalled and not re-checked):

>>> from dehazelab import papers
>>> papers.quoted("cr-table1")["DCP"]["SOTS-indoor PSNR"]
15.09
>>> papers.status("cut-table1", columns=["sec/iter"])
'recalled'

``quoted(table)`` gives ``{row: {column: value}}`` in the file's order. ``numbers(table)`` gives the
full records (:class:`Quoted`). ``validate()`` checks the file's structure (tests/test_papers.py
runs it).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

__all__ = ["FILE", "FORMAT", "Quoted", "load", "tables", "paper", "numbers", "quoted", "status", "validate"]

FILE = Path(__file__).with_name("papers.json")
FORMAT = "dehazelab-papers-1"


@dataclass(frozen=True)
class Quoted:
    """One reported number: ``value`` in ``row``/``column`` of ``table`` of ``paper``."""

    paper: str
    table: str
    row: str
    column: str
    value: float | str
    verified: bool
    evidence: str


def validate(data: Any) -> list[str]:
    """What is wrong with a parsed ``papers.json`` (an empty list when nothing is)."""
    problems: list[str] = []
    if not isinstance(data, dict):
        return ["the file does not hold a JSON object"]
    if data.get("format") != FORMAT:
        problems.append(f"format is {data.get('format')!r}, expected {FORMAT!r}")
    known = data.get("papers")
    if not isinstance(known, dict) or not known:
        problems.append("'papers' must map paper ids to {citation, short, docs}")
        known = {}
    for pid, p in known.items():
        for key in ("citation", "short", "docs"):
            if not isinstance(p, dict) or not isinstance(p.get(key), str) or not p.get(key).strip():
                problems.append(f"papers.{pid}: '{key}' must be a non-empty string")
    tabs = data.get("tables")
    if not isinstance(tabs, dict) or not tabs:
        return problems + ["'tables' must map table ids to {paper, table, what, numbers}"]
    for tid, t in tabs.items():
        where = f"tables.{tid}"
        if not isinstance(t, dict):
            problems.append(f"{where}: not an object")
            continue
        if t.get("paper") not in known:
            problems.append(f"{where}: paper {t.get('paper')!r} is not one of {sorted(known)}")
        for key in ("table", "what"):
            if not isinstance(t.get(key), str) or not t[key].strip():
                problems.append(f"{where}: '{key}' must be a non-empty string")
        nums = t.get("numbers")
        if not isinstance(nums, list) or not nums:
            problems.append(f"{where}: 'numbers' must be a non-empty list")
            continue
        seen: set[tuple[str, str]] = set()
        for i, n in enumerate(nums):
            w = f"{where}.numbers[{i}]"
            if not isinstance(n, dict):
                problems.append(f"{w}: not an object")
                continue
            extra = set(n) - {"row", "column", "value", "verified", "evidence"}
            if extra:
                problems.append(f"{w}: unknown keys {sorted(extra)}")
            for key in ("row", "column", "evidence"):
                if not isinstance(n.get(key), str) or not n[key].strip():
                    problems.append(f"{w}: '{key}' must be a non-empty string")
            v = n.get("value")
            if isinstance(v, bool) or not isinstance(v, (int, float, str)) or (isinstance(v, str) and not v.strip()):
                problems.append(f"{w}: 'value' must be a number or a non-empty string, got {v!r}")
            if not isinstance(n.get("verified"), bool):
                problems.append(f"{w}: 'verified' must be true or false")
            cell = (n.get("row"), n.get("column"))
            if cell in seen:
                problems.append(f"{w}: {cell} appears twice")
            seen.add(cell)  # type: ignore[arg-type]
    return problems


@lru_cache(maxsize=4)
def _load(path: str) -> dict[str, Any]:
    p = Path(path)
    try:
        data = json.loads(p.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ValueError(f"{p}: cannot read the papers' quoted numbers ({exc})") from None
    problems = validate(data)
    if problems:
        raise ValueError(f"{p}: " + "; ".join(problems[:5]))
    return data


def load(path: str | Path | None = None) -> dict[str, Any]:
    """The parsed, validated data file (``papers.json`` beside this module by default)."""
    return _load(str(Path(path) if path is not None else FILE))


def tables(path: str | Path | None = None) -> list[str]:
    """The table ids, e.g. ``["cr-table1", "cut-table1"]``."""
    return list(load(path)["tables"])


def _table(table: str, path: str | Path | None) -> dict[str, Any]:
    tabs = load(path)["tables"]
    if table not in tabs:
        raise KeyError(f"no quoted table {table!r}; known: {', '.join(tabs)}")
    return tabs[table]


def paper(table: str, path: str | Path | None = None) -> dict[str, str]:
    """The paper a table comes from: ``{"citation", "short", "docs"}`` plus ``"table"`` (e.g. "Table 1")."""
    t = _table(table, path)
    return {**load(path)["papers"][t["paper"]], "table": t["table"]}


def numbers(table: str, path: str | Path | None = None) -> list[Quoted]:
    """Every number of ``table`` as a :class:`Quoted` record, in the file's order."""
    t = _table(table, path)
    return [Quoted(t["paper"], t["table"], n["row"], n["column"], n["value"], n["verified"], n["evidence"])
            for n in t["numbers"]]


def quoted(table: str, path: str | Path | None = None) -> dict[str, dict[str, float | str]]:
    """``{row: {column: value}}`` of ``table``, rows and columns in the file's order."""
    out: dict[str, dict[str, float | str]] = {}
    for n in numbers(table, path):
        out.setdefault(n.row, {})[n.column] = n.value
    return out


def status(table: str, rows: Iterable[str] | None = None, columns: Iterable[str] | None = None,
           path: str | Path | None = None) -> str:
    """``"verified"`` when every selected number of ``table`` is verified, else ``"recalled"`` (an
    unverified number in this file is one recalled from the paper and not re-checked)."""
    rows_, cols_ = (set(rows) if rows is not None else None), (set(columns) if columns is not None else None)
    sel = [n for n in numbers(table, path)
           if (rows_ is None or n.row in rows_) and (cols_ is None or n.column in cols_)]
    if not sel:
        raise KeyError(f"{table}: no number in rows {rows} and columns {columns}")
    return "verified" if all(n.verified for n in sel) else "recalled"
