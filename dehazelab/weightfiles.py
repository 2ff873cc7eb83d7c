"""Where pretrained weight files come from: a path the user names, an environment variable, or the torch
hub cache, and whether the library may download into that cache (``DEHAZELAB_DOWNLOAD=0``: never).

Shared by the VGG-19 of CR / IICL (:mod:`dehazelab.models.vgg`) and FID's Inception (:mod:`dehazelab.fid`)."""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["DOWNLOAD_ENV", "downloads_allowed", "named_file"]

DOWNLOAD_ENV = "DEHAZELAB_DOWNLOAD"


def downloads_allowed() -> bool:
    """False when ``$DEHAZELAB_DOWNLOAD`` is 0 / false / no / off (the test suite sets it)."""
    return os.environ.get(DOWNLOAD_ENV, "1").strip().lower() not in ("0", "false", "no", "off")


def named_file(path: str | os.PathLike | None, env_var: str, what: str) -> Path | None:
    """The weight file the user named: ``path`` if given, else ``$env_var`` if set, else ``None``.
    A named file that does not exist is an error (``FileNotFoundError``), never a silent fallback."""
    if path is not None:
        p = Path(path).expanduser()
        if not p.is_file():
            raise FileNotFoundError(f"{what} weights not found at {str(path)!r}")
        return p
    env = os.environ.get(env_var, "").strip()
    if env:
        p = Path(env).expanduser()
        if not p.is_file():
            raise FileNotFoundError(f"${env_var}={env!r} is not a file ({what} weights)")
        return p
    return None
