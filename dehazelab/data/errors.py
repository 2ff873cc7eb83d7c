"""The one exception the data layer raises for bad inputs.

``DataError`` subclasses ``ValueError`` so callers that already catch ``ValueError`` keep working.
Every message starts with the offending file or folder and then says what is wrong with it, so a
failing notebook cell points at the file to fix rather than at a line of library code.
"""

from __future__ import annotations

from pathlib import Path


class DataError(ValueError):
    """A data file or folder is missing, unreadable, or does not follow the expected layout."""


def data_error(path: str | Path, problem: str) -> DataError:
    """Build a ``DataError`` whose message is ``"<path>: <problem>"``."""
    return DataError(f"{path}: {problem}")
