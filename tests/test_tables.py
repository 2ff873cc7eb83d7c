"""dehazelab.tables.tagged_assumptions: the assumptions table a reconstruction notebook reads from its modules."""

import types

import pytest

from dehazelab import tables as T


def test_tagged_bullets_become_rows_with_their_source():
    mod = types.ModuleType("m", """Title.

* [abstract] the PRM comes first,
  over two lines.
* [§4.3.2] (rec 2) physics-based.
* [our choice] width 16.
* [CUT code] the head.

Not a bullet.
""")
    rows = T.tagged_assumptions(mod, "PRM")
    assert rows == [("PRM", "abstract", "the PRM comes first, over two lines."),
                    ("PRM", "methods.md §4.3 rec. 2", "(rec 2) physics-based."),
                    ("PRM", "our choice", "width 16."),
                    ("PRM", "CUT code", "the head.")]


def test_the_iicl_modules_are_tagged_and_an_untagged_module_is_an_error():
    import dehazelab.losses.iicl as losses
    import dehazelab.models.iicl as framework
    import dehazelab.models.prm as prm

    for mod in (prm, framework, losses):
        sources = {s for _, s, _ in T.tagged_assumptions(mod, "x")}
        assert "our choice" in sources and any(s.startswith("methods.md §4.3 rec. ") for s in sources), mod.__name__
    with pytest.raises(ValueError, match="no '\\* \\[tag\\] text' bullet"):
        T.tagged_assumptions(types.ModuleType("empty", "No tags here."), "x")
