"""report/table_html.py: a results CSV as the HTML page `snakemake --report` shows (formatting only)."""

import importlib.util
from html.parser import HTMLParser

import numpy as np
import pandas as pd
import pytest

from dehazelab import paths

_spec = importlib.util.spec_from_file_location("table_html", paths.ROOT / "report" / "table_html.py")
table_html = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(table_html)


class _Cells(HTMLParser):
    """Rows of <th>/<td> texts, read back independently of how the page was written."""

    def __init__(self):
        super().__init__()
        self.rows, self._cell = [], None

    def handle_starttag(self, tag, attrs):
        if tag == "tr":
            self.rows.append([])
        elif tag in ("td", "th"):
            self._cell = ""

    def handle_data(self, data):
        if self._cell is not None:
            self._cell += data

    def handle_endtag(self, tag):
        if tag in ("td", "th"):
            self.rows[-1].append(self._cell)
            self._cell = None


def test_values_survive_with_four_decimals(tmp_path):
    df = pd.DataFrame({"row": ["AOD-Net", "<b>DCP</b> & co"], "PSNR": [19.508312, np.nan], "seeds": [3, 0],
                       "#params": [1761.0, np.nan]})
    csv = tmp_path / "t.csv"
    df.to_csv(csv, index=False)
    out = table_html.convert(csv, tmp_path / "sub" / "t.html", "a title", "what it shows")
    page = out.read_text()
    p = _Cells()
    p.feed(page)
    assert p.rows[0] == ["row", "PSNR", "seeds", "#params"]
    assert p.rows[1] == ["AOD-Net", "19.5083", "3", "1761"]
    assert p.rows[2] == ["<b>DCP</b> & co", "", "0", ""]  # text escaped in the page, NaN empty
    assert "&lt;b&gt;DCP&lt;/b&gt; &amp; co" in page and "<title>a title</title>" in page
    assert "what it shows" in page and "t.csv" in page
    assert "http" not in page.replace("http-equiv", "")  # self-contained: nothing to fetch
    assert not list((tmp_path / "sub").glob("*.tmp"))  # written atomically


def test_every_committed_small_table_round_trips():
    """Each committed small-size table page holds its CSV's values (4-decimal rounding only)."""
    pages = sorted((paths.ROOT / "results" / "small").glob("*/*.html"))
    if not pages:
        pytest.skip("no committed small-size results in this checkout")
    for html in pages:
        df = pd.read_csv(html.with_suffix(".csv"))
        p = _Cells()
        p.feed(html.read_text())
        assert p.rows[0] == [str(c) for c in df.columns], html
        assert len(p.rows) - 1 == len(df), html
        for cells, (_, rec) in zip(p.rows[1:], df.iterrows()):
            for text, v in zip(cells, rec):
                if pd.isna(v):
                    assert text == "", (html, v)
                elif isinstance(v, (float, np.floating)):
                    assert float(text) == pytest.approx(float(v), abs=5.1e-5), (html, text, v)
                else:
                    assert text == str(v), (html, text, v)


def test_bad_csv_names_the_file(tmp_path):
    with pytest.raises(SystemExit, match=r"missing\.csv: no such table"):
        table_html.convert(tmp_path / "missing.csv", tmp_path / "o.html", "t")
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    with pytest.raises(SystemExit, match=r"empty\.csv: not a readable CSV table"):
        table_html.convert(empty, tmp_path / "o.html", "t")
    assert not (tmp_path / "o.html").exists()
