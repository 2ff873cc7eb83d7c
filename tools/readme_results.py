"""Refresh the README's results section from what notebook 90 wrote (never by hand).

The README holds blocks

    <!-- results:cr_table1 -->
    ...
    <!-- /results -->

whose body is ``results/small/90_tables_figures/<name>.md`` verbatim; the block ``figures`` is a
table of links to every figure the workbook wrote, one row per notebook (from ``figures.csv``).
``tests/test_readme.py`` fails when a block differs from the committed results, so the README cannot
drift from them.

    python tools/readme_results.py            # rewrite README.md in place
    python tools/readme_results.py --check    # exit 1 if it would change
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
TABLES = ROOT / "results" / "small" / "90_tables_figures"
BLOCK = re.compile(r"(<!-- results:(?P<name>[a-z0-9_]+) -->\n)(?P<body>.*?)(<!-- /results -->)", re.DOTALL)


def figures_block(tables: Path) -> str:
    figs = pd.read_csv(tables / "figures.csv")
    lines = ["| notebook | figures |", "|---|---|"]  # a table: one row per notebook, however many links
    for nb, g in figs.groupby("notebook", sort=True):
        links = ", ".join(f"[{Path(p).stem.removeprefix('fig_')}]({p})" for p in g["path"])
        lines.append(f"| `{nb}` | {links} |")
    summary = tables / "fig_summary.png"
    if summary.is_file():
        lines.append(f"| `90_tables_figures` | [summary]({summary.relative_to(ROOT).as_posix()}) |")
    return "\n".join(lines) + "\n"


def body(name: str, tables: Path) -> str:
    if name == "figures":
        return figures_block(tables)
    md = tables / f"{name}.md"
    if not md.is_file():
        raise FileNotFoundError(f"README block 'results:{name}' needs {md}: run notebook 90 (snakemake) first")
    return md.read_text(encoding="utf-8")


def render(readme: str, tables: Path = TABLES) -> str:
    """``readme`` with every results block's body replaced by the committed results."""
    return BLOCK.sub(lambda m: m.group(1) + body(m.group("name"), tables) + m.group(4), readme)


def block_names(readme: str) -> list[str]:
    return [m.group("name") for m in BLOCK.finditer(readme)]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--check", action="store_true", help="only report whether README.md is up to date")
    args = ap.parse_args(argv)
    path = ROOT / "README.md"
    old = path.read_text(encoding="utf-8")
    new = render(old)
    if args.check:
        print("README.md results are up to date" if new == old else "README.md results differ from results/small")
        return 0 if new == old else 1
    if new != old:
        tmp = path.with_suffix(".md.tmp")
        tmp.write_text(new, encoding="utf-8")
        tmp.replace(path)
    print(f"README.md: {len(block_names(new))} results blocks refreshed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
