"""Checking a run spec's values: every error a :class:`LaunchError` naming the spec file and the key
(and the ``--set`` override the value came from)."""

from __future__ import annotations

import difflib
import re
from collections.abc import Mapping, Sequence
from typing import Any

__all__ = ["LaunchError"]


class LaunchError(ValueError):
    """An invalid run spec or data selection; the message names the spec file and the key."""


class _Ctx:
    """Where a value came from, for error messages: the file, and ``--set`` when overridden."""

    def __init__(self, source: str, overrides: Sequence[str] = ()):
        self.source = source
        self.overridden = [o.partition("=")[0].strip() for o in overrides]

    def err(self, key: str, msg: str) -> LaunchError:
        via = next((o for o in self.overridden if key == o or key.startswith(o + ".") or o.startswith(key + ".")), None)
        where = self.source + (f" (--set {via})" if via else "")
        return LaunchError(f"{where}: {key}: {msg}" if key else f"{where}: {msg}")


def _show(v: Any) -> str:
    return f"{v!r} ({type(v).__name__})"


def _check_keys(ctx: _Ctx, key: str, d: Any, allowed: Sequence[str], required: Sequence[str] = (),
                note: Mapping[str, str] | None = None) -> None:
    if not isinstance(d, Mapping):
        raise ctx.err(key, f"must be a mapping, got {_show(d)}")
    for k in d:
        if k not in allowed:
            full = f"{key}.{k}" if key else str(k)
            hint = difflib.get_close_matches(str(k), list(allowed), 1)
            extra = (note or {}).get(k) or (f"did you mean {hint[0]!r}? " if hint else "")
            raise ctx.err(full, f"unknown key; {extra}valid keys here: {', '.join(allowed)}")
    for k in required:
        if k not in d:
            raise ctx.err(f"{key}.{k}" if key else k, "missing (required)")


def _int(ctx: _Ctx, key: str, v: Any, minimum: int) -> int:
    if isinstance(v, float) and v.is_integer():
        v = int(v)
    if isinstance(v, bool) or not isinstance(v, int) or v < minimum:
        raise ctx.err(key, f"must be an integer >= {minimum}, got {_show(v)}")
    return v


def _bool(ctx: _Ctx, key: str, v: Any) -> bool:
    if not isinstance(v, bool):
        raise ctx.err(key, f"must be true or false, got {_show(v)}")
    return v


def _ids(ctx: _Ctx, key: str, v: Any) -> tuple[str, ...] | None:
    if v is None:
        return None
    if isinstance(v, (str, int)) and not isinstance(v, bool):
        v = [v]
    if not isinstance(v, (list, tuple)) or not v or any(isinstance(x, bool) or not isinstance(x, (str, int)) for x in v):
        raise ctx.err(key, f"must be a non-empty list of ids or 'lo-hi' ranges, got {_show(v)}")
    out = []
    for x in v:
        s = str(x).strip()
        m = re.fullmatch(r"(\d+)\s*-\s*(\d+)", s)
        if m and int(m.group(1)) > int(m.group(2)):
            raise ctx.err(key, f"range {s!r} is reversed")
        out.append(f"{m.group(1)}-{m.group(2)}" if m else s)
    return tuple(out)


def _expand_ids(ids: Sequence[str]) -> list[str]:
    out: list[str] = []
    for s in ids:
        m = re.fullmatch(r"(\d+)-(\d+)", s)
        out.extend([str(i) for i in range(int(m.group(1)), int(m.group(2)) + 1)] if m else [s])
    return out
