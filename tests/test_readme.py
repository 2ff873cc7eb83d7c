"""The README's results section is the committed results, not a hand-typed copy."""

import importlib.util

import pytest

from dehazelab import paths

_spec = importlib.util.spec_from_file_location("readme_results", paths.ROOT / "tools" / "readme_results.py")
readme_results = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(readme_results)


def test_render_replaces_only_the_blocks(tmp_path):
    (tmp_path / "t.md").write_text("| a |\n|---|\n| 1 |\n")
    text = "intro\n<!-- results:t -->\nstale\n<!-- /results -->\noutro\n"
    assert readme_results.render(text, tmp_path) == "intro\n<!-- results:t -->\n| a |\n|---|\n| 1 |\n<!-- /results -->\noutro\n"
    with pytest.raises(FileNotFoundError, match="results:nope"):
        readme_results.render("<!-- results:nope -->\n<!-- /results -->", tmp_path)


def test_readme_results_match_the_committed_results():
    readme = (paths.ROOT / "README.md").read_text(encoding="utf-8")
    names = readme_results.block_names(readme)
    assert {"claims_counts", "figures"} <= set(names), names
    if not (readme_results.TABLES / "metrics.json").is_file():
        pytest.skip("no committed small-size results of notebook 90 in this checkout")
    assert readme_results.render(readme) == readme, "README results are stale: run python tools/readme_results.py"


def test_every_linked_figure_exists():
    readme = (paths.ROOT / "README.md").read_text(encoding="utf-8")
    import re

    links = re.findall(r"\]\((results/[^)]+\.png)\)", readme)
    if not (readme_results.TABLES / "metrics.json").is_file():
        pytest.skip("no committed small-size results of notebook 90 in this checkout")
    assert links, "the README links no figure"
    missing = [p for p in links if not (paths.ROOT / p).is_file()]
    assert not missing, missing
