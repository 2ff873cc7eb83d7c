"""Atomic file writes: results, configs and checkpoints never exist half-written.

Every writer here goes through :func:`atomic_open`: the data are written to a temporary file in the
*same* folder as the target (so the final ``os.replace`` is a same-filesystem rename, atomic on
POSIX and Windows), flushed and fsynced, and only then renamed over the target. If anything raises
before the rename — a full disk, a pickling error, a ``KeyboardInterrupt`` — the temporary file is
removed and the previous version of the target (if any) is left untouched.

Public API
----------
* :func:`atomic_open` — context manager yielding a file object; the target appears on clean exit.
* :func:`atomic_write_bytes`, :func:`atomic_write_text`
* :func:`write_json` / :func:`read_json` — sorted keys, indent 2, numpy/Path/tensor-safe.
* :func:`write_table` — a DataFrame as ``<stem>.md`` (human) + ``<stem>.csv`` (full precision).
* :func:`save_torch` — ``torch.save`` made atomic.

Importing this module imports neither torch nor pandas.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import os
import tempfile
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import IO, Any

__all__ = [
    "atomic_open",
    "atomic_write_bytes",
    "atomic_write_text",
    "json_default",
    "write_json",
    "read_json",
    "format_table",
    "write_table",
    "save_torch",
    "TMP_PREFIX",
    "remove_stale_tmp",
]

#: Temporary files are named ``.<target name>.<random>.tmp`` next to the target.
TMP_PREFIX = "."
_TMP_SUFFIX = ".tmp"


@contextlib.contextmanager
def atomic_open(path: str | os.PathLike, mode: str = "w", encoding: str | None = "utf-8", newline: str | None = None) -> Iterator[IO]:
    """Open a temporary sibling of ``path`` for writing; rename it over ``path`` on clean exit.

    ``mode`` must be ``"w"`` (text) or ``"wb"`` (binary). Parent folders are created. On an
    exception inside the ``with`` block the temporary file is deleted, the exception propagates
    and ``path`` keeps its previous content (or keeps not existing).
    """
    if mode not in ("w", "wb"):
        raise ValueError(f"atomic_open supports mode 'w' or 'wb', got {mode!r}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f"{TMP_PREFIX}{path.name}.", suffix=_TMP_SUFFIX)
    try:
        if mode == "wb":
            f = os.fdopen(fd, "wb")
        else:
            f = os.fdopen(fd, "w", encoding=encoding, newline=newline)
        with f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        # mkstemp creates 0600 files; give the result the usual permissions (respecting umask).
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def remove_stale_tmp(folder: str | os.PathLike, name_glob: str) -> list[Path]:
    """Delete the temporary files that a killed :func:`atomic_open` left for targets in ``folder``
    matching ``name_glob`` (``.<name>.<random>.tmp``; nothing else matches); return them."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    gone = sorted(folder.glob(f"{TMP_PREFIX}{name_glob}.*{_TMP_SUFFIX}"))
    for p in gone:
        p.unlink(missing_ok=True)
    return gone


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically; return the path."""
    with atomic_open(path, "wb") as f:
        f.write(data)
    return Path(path)


def atomic_write_text(path: str | os.PathLike, text: str, encoding: str = "utf-8") -> Path:
    """Write ``text`` to ``path`` atomically (no newline translation); return the path."""
    with atomic_open(path, "w", encoding=encoding, newline="") as f:
        f.write(text)
    return Path(path)


def json_default(obj: Any) -> Any:
    """``json.dumps(default=...)`` hook: numpy scalars/arrays, tensors, paths, sets, dataclasses."""
    if isinstance(obj, os.PathLike):
        return os.fspath(obj)
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return dataclasses.asdict(obj)
    if isinstance(obj, (set, frozenset)):
        return sorted(obj, key=repr)
    # numpy / torch without importing them: scalars have .item(), arrays/tensors have .tolist().
    mod = type(obj).__module__.split(".")[0]
    if mod in ("numpy", "torch"):
        if hasattr(obj, "tolist"):
            return obj.tolist()
        if hasattr(obj, "item"):
            return obj.item()
    if mod == "pandas" and hasattr(obj, "isoformat"):
        return obj.isoformat()
    if hasattr(obj, "isoformat"):  # datetime, date
        return obj.isoformat()
    raise TypeError(f"write_json: object of type {type(obj).__name__} is not JSON serialisable")


def write_json(path: str | os.PathLike, obj: Any) -> Path:
    """Write ``obj`` as JSON (sorted keys, indent 2, trailing newline) atomically; return the path.

    numpy scalars/arrays, torch tensors, ``Path`` objects, sets and dataclasses are converted.
    Non-finite floats are written as ``NaN``/``Infinity`` (Python's json convention).
    """
    text = json.dumps(obj, sort_keys=True, indent=2, default=json_default) + "\n"
    return atomic_write_text(path, text)


def read_json(path: str | os.PathLike) -> Any:
    """Read a JSON file; a missing or malformed file raises an error that names the file."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise FileNotFoundError(f"JSON file not found: {path}") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise ValueError(f"malformed JSON in {path}: {e}") from e


def _fmt_cell(value: Any, floatfmt: str, na: str) -> str:
    if value is None:
        return na
    if isinstance(value, bool) or type(value).__name__ == "bool_":
        return str(bool(value))
    if isinstance(value, int) or (type(value).__module__ == "numpy" and "int" in type(value).__name__):
        return str(int(value))
    if isinstance(value, float) or (type(value).__module__ == "numpy" and "float" in type(value).__name__):
        v = float(value)
        return na if math.isnan(v) else format(v, floatfmt)
    try:  # pandas.NA / NaT
        import pandas as pd

        if pd.isna(value):
            return na
    except (ImportError, TypeError, ValueError):
        pass
    return str(value)


def format_table(df, floatfmt: str = ".4f", floatfmts: Mapping[str, str] | None = None, na: str = "", index: bool = False) -> str:
    """Render a DataFrame as a GitHub-markdown table (needs ``tabulate``).

    Each column is formatted by its own dtype, not by the frame's common dtype: integer and bool
    columns print as integers/booleans, float columns with ``floatfmts.get(col, floatfmt)``,
    object columns cell by cell. Missing values print as ``na``. Numeric columns are right-aligned.
    (``DataFrame.to_markdown(floatfmt=...)`` alone goes through ``df.values``, which turns an int
    column of a mixed frame into floats — hence ``3.0000`` for a count.)
    """
    import numpy as np
    import pandas as pd

    try:
        import tabulate  # noqa: F401
    except ImportError as e:
        raise ImportError(
            "write_table/format_table need the 'tabulate' package for markdown tables "
            "(pip install tabulate); the CSV alone can be written with DataFrame.to_csv"
        ) from e
    if index:
        df = df.reset_index()
    floatfmts = dict(floatfmts or {})
    unknown = set(floatfmts) - set(map(str, df.columns))
    if unknown:
        raise KeyError(f"floatfmts names columns not in the table: {sorted(unknown)}")
    cols: dict[str, list[str]] = {}
    align: list[str] = []
    for col in df.columns:
        s = df[col]
        fmt = floatfmts.get(str(col), floatfmt)
        if pd.api.types.is_bool_dtype(s.dtype):
            cells = [_fmt_cell(v, fmt, na) for v in s.tolist()]
            align.append("left")
        elif pd.api.types.is_integer_dtype(s.dtype):
            cells = [na if pd.isna(v) else str(int(v)) for v in s.tolist()]
            align.append("right")
        elif pd.api.types.is_float_dtype(s.dtype):
            cells = [na if pd.isna(v) else format(float(v), fmt) for v in s.tolist()]
            align.append("right")
        else:
            vals = s.tolist()
            cells = [_fmt_cell(v, fmt, na) for v in vals]
            numeric = len(vals) > 0 and all(
                v is None or (isinstance(v, (int, float, np.number)) and not isinstance(v, (bool, np.bool_)))
                for v in vals
            )
            align.append("right" if numeric else "left")
        cols[str(col)] = cells
    text_df = pd.DataFrame(cols, columns=[str(c) for c in df.columns])
    return text_df.to_markdown(index=False, disable_numparse=True, colalign=align or None)


def write_table(
    df,
    stem: str | os.PathLike,
    floatfmt: str = ".4f",
    floatfmts: Mapping[str, str] | None = None,
    na: str = "",
    index: bool = False,
) -> tuple[Path, Path]:
    """Write ``df`` as ``<stem>.md`` (formatted markdown) and ``<stem>.csv`` (full precision).

    ``stem`` is a path without extension (``results/tables/sots``); both files are written
    atomically, the markdown first rendered in memory so a missing ``tabulate`` fails before any
    file is touched. Returns ``(md_path, csv_path)``.
    """
    stem = Path(stem)
    md_path = stem.with_name(stem.name + ".md")
    csv_path = stem.with_name(stem.name + ".csv")
    md = format_table(df, floatfmt=floatfmt, floatfmts=floatfmts, na=na, index=index)
    csv_text = (df.reset_index() if index else df).to_csv(index=False)
    atomic_write_text(csv_path, csv_text)
    atomic_write_text(md_path, md + "\n")
    return md_path, csv_path


def save_torch(obj: Any, path: str | os.PathLike) -> Path:
    """``torch.save(obj, path)`` through a temporary file + ``os.replace``; return the path.

    A failed write keeps the previous file and raises ``OSError`` naming ``path`` and, when the
    disk is (nearly) full, saying so — torch's own message for that is "unexpected pos ... vs ..."."""
    import errno
    import shutil

    import torch

    try:
        with atomic_open(path, "wb") as f:
            torch.save(obj, f)
    except (OSError, RuntimeError) as exc:
        target = Path(path)
        try:
            free = shutil.disk_usage(target.parent if target.parent.exists() else ".").free
        except OSError:
            free = None
        full = (isinstance(exc, OSError) and exc.errno == errno.ENOSPC) or (free is not None and free < 64 * 2**20)
        why = "the disk is full" if full else (exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc))
        left = f" ({free / 2**20:.0f} MB free)" if free is not None else ""
        raise OSError(errno.ENOSPC if full else getattr(exc, "errno", None) or errno.EIO,
                      f"cannot write {target}: {why}{left}; the previous file, if any, is unchanged") from None
    return Path(path)
