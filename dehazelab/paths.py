"""Paths anchored on the repository, never on the working directory.

* ``ROOT``      the repository (the folder holding ``pyproject.toml`` and ``Snakefile``).
* ``RESULTS``   where notebooks write; ``$DEHAZELAB_RESULTS`` overrides it (tests use a temp dir).
* ``data_root()`` the benchmark data folder: ``$DEHAZELAB_DATA`` if set, else ``ROOT/../shared/data``
  when that exists, else ``None`` (then smoke/small runs fall back to synthetic haze).
"""

from __future__ import annotations

import os
from pathlib import Path

DATA_ENV = "DEHAZELAB_DATA"
RESULTS_ENV = "DEHAZELAB_RESULTS"


def _find_root() -> Path:
    here = Path(__file__).resolve().parent
    for cand in (here, *here.parents):
        if (cand / "pyproject.toml").is_file() and (cand / "Snakefile").is_file():
            return cand
    # Installed non-editable: fall back to the package's parent.
    return here.parent


ROOT: Path = _find_root()
PACKAGE: Path = Path(__file__).resolve().parent


def results_dir() -> Path:
    """The results folder (``$DEHAZELAB_RESULTS`` or ``ROOT/results``), read at call time."""
    env = os.environ.get(RESULTS_ENV)
    return Path(env).expanduser().resolve() if env else ROOT / "results"


RESULTS: Path = results_dir()


def data_root(required: bool = False) -> Path | None:
    """The benchmark data root, or ``None`` when there is none.

    ``$DEHAZELAB_DATA`` wins; an empty value means "no benchmark data" (useful to test the synthetic
    fallback). A set but missing folder is an error, not a silent fallback.
    """
    env = os.environ.get(DATA_ENV)
    if env is not None:
        if env.strip() == "":
            root = None
        else:
            root = Path(env).expanduser().resolve()
            if not root.is_dir():
                raise FileNotFoundError(f"{DATA_ENV}={env!r} is not a folder")
    else:
        cand = (ROOT / ".." / "shared" / "data").resolve()
        root = cand if cand.is_dir() else None
    if root is None and required:
        raise FileNotFoundError(
            f"no benchmark data: set {DATA_ENV} to a folder holding e.g. sots-indoor/ (see README)"
        )
    return root
