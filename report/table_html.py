"""Render one results table (a notebook's full-precision ``<name>.csv``) as a small self-contained HTML
page, the form `snakemake --report` shows inline (it offers a CSV only as a download).

    python report/table_html.py results/small/90_tables_figures/claims_all.csv out.html \\
        --title "90 · claims_all" --shows "Every claim of the four papers ..."

Numbers are shown with 4 decimals (the ``.md`` beside each CSV uses the same default); the CSV keeps
full precision. The Snakefile's ``table_html`` rule calls this for every table it marks for the
report; nothing here computes or changes a value.
"""

from __future__ import annotations

import argparse
import html
import sys
from pathlib import Path

import pandas as pd

from dehazelab.io import atomic_write_text

STYLE = """
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; margin: 1.2em; color: #1f2937; }
h1 { font-size: 1.15em; margin: 0 0 .3em; }
p { margin: 0 0 .8em; color: #4b5563; }
table { border-collapse: collapse; }
th, td { border-bottom: 1px solid #e5e7eb; padding: .3em .7em; vertical-align: top; }
th { background: #f3f4f6; text-align: left; position: sticky; top: 0; }
td.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
tr:hover td { background: #f9fafb; }
""".strip()


def render(df: pd.DataFrame, title: str, shows: str = "", source: str = "") -> str:
    """The page: title, one-line description, the table (numbers right-aligned, 4 decimals), its source."""
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in df.columns)
    numeric = [pd.api.types.is_numeric_dtype(df[c]) and not pd.api.types.is_bool_dtype(df[c]) for c in df.columns]
    rows = []
    for rec in df.itertuples(index=False, name=None):
        cells = []
        for v, is_num in zip(rec, numeric):
            if pd.isna(v):
                cells.append('<td class="num"></td>' if is_num else "<td></td>")
            elif is_num:  # whole numbers (counts, #params in a float column) without decimals
                cells.append(f'<td class="num">{int(v) if float(v).is_integer() else format(v, ".4f")}</td>')
            else:
                cells.append(f"<td>{html.escape(str(v))}</td>")
        rows.append("<tr>" + "".join(cells) + "</tr>")
    intro = f"<p>{html.escape(shows)}</p>" if shows else ""
    foot = f"<p>Full precision: <code>{html.escape(source)}</code>.</p>" if source else ""
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>'
            f"<style>{STYLE}</style></head>\n<body><h1>{html.escape(title)}</h1>{intro}\n<table><thead><tr>{head}"
            f"</tr></thead>\n<tbody>\n" + "\n".join(rows) + f"\n</tbody></table>{foot}</body></html>\n")


def convert(csv: Path, out: Path, title: str, shows: str = "") -> Path:
    """Read ``csv`` (an error names the file), write the page to ``out`` atomically."""
    try:
        df = pd.read_csv(csv)
    except FileNotFoundError:
        raise SystemExit(f"error: {csv}: no such table (run the notebook that writes it)") from None
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as e:
        raise SystemExit(f"error: {csv}: not a readable CSV table: {e}") from None
    return atomic_write_text(out, render(df, title, shows, source=csv.name))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("csv", type=Path)
    ap.add_argument("html", type=Path)
    ap.add_argument("--title", default=None, help="page title (default: the CSV's file name)")
    ap.add_argument("--shows", default="", help="one line saying what the table shows")
    args = ap.parse_args(argv)
    convert(args.csv, args.html, args.title or args.csv.stem, args.shows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
