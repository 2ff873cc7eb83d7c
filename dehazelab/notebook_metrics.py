"""What a paper notebook writes to ``metrics.json``: every number it reports, in one JSON object.

:func:`collect` fills in what every notebook records the same way — its name, size, the data it
used and its seeds (from the :class:`dehazelab.workbook.Notebook` of ``workbook.start``) — and turns the
tables it passes (``pandas.DataFrame``, also inside dicts and lists) into lists of row records, the form
notebook 90 and :mod:`dehazelab.results` read back. ``dehazelab.io.write_json`` writes it.
"""

from __future__ import annotations

from typing import Any

import pandas as pd

__all__ = ["collect", "as_records"]


def as_records(obj: Any) -> Any:
    """``obj`` with every ``DataFrame`` in it (at any depth of dicts, lists and tuples) replaced by
    ``frame.to_dict("records")``; everything else, ``None`` included, unchanged (tuples become lists)."""
    if isinstance(obj, pd.DataFrame):
        return obj.to_dict("records")
    if isinstance(obj, dict):
        return {k: as_records(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [as_records(v) for v in obj]
    return obj


def collect(nb, **entries: Any) -> dict[str, Any]:
    """``{"notebook", "size", "data", "seeds", **entries}`` for notebook ``nb`` (name, size, data used
    and seeds), the entries passed through :func:`as_records`. An entry named like one of the four
    raises ``ValueError`` (the notebook's own record must not be overwritten by accident)."""
    base = {"notebook": nb.name, "size": nb.size, "data": nb.data_used, "seeds": nb.seeds}
    clash = sorted(set(base) & set(entries))
    if clash:
        raise ValueError(f"collect: {clash} are filled in from the notebook; do not pass them")
    return {**base, **{k: as_records(v) for k, v in entries.items()}}
