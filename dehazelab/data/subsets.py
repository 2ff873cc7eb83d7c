"""The benchmark subset the project's small size uses, pinned by file list and SHA-256.

``sots_small.json`` (next to this module) lists every file of the subset as a path relative to the
data root (``sots-indoor/hazy/1400_1.png``) with its SHA-256: SOTS-indoor scenes 1400-1439 at
haze levels 1, 3, 5, 7, 9 (200 hazy, 40 clear) and the three NH-HAZE pairs 51-53. It also records
the default scene-disjoint SOTS split. It holds no image data; it was made once by
:func:`write_manifest` (``python -m dehazelab.data.subsets build [DATA_ROOT]``) and is committed, so
:func:`verify` can tell whether someone's data folder holds exactly the files our numbers came from.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

from ..io import atomic_write_text
from .errors import DataError, data_error
from .layouts import find_pairs

MANIFEST_PATH: Path = Path(__file__).with_name("sots_small.json")
SOTS_TRAIN: tuple[int, int] = (1400, 1429)
SOTS_TEST: tuple[int, int] = (1430, 1439)
#: Sub-folders of the data root the manifest covers.
MANIFEST_FOLDERS: tuple[str, ...] = ("sots-indoor", "nh-haze")


def sots_split(train: tuple[int, int] = SOTS_TRAIN, test: tuple[int, int] = SOTS_TEST) -> dict[str, list[str]]:
    """Scene-disjoint SOTS split: ``{"train": [...], "test": [...]}`` of scene ids as strings.

    Ranges are inclusive (``(1400, 1429)`` is 30 scenes). Every haze level of a scene goes to the
    same side, so no test scene is seen in training under another haze level. Overlapping or
    reversed ranges raise ``ValueError``.
    """
    for name, (lo, hi) in (("train", train), ("test", test)):
        if lo > hi:
            raise ValueError(f"{name} range {lo}..{hi} is reversed")
    if train[0] <= test[1] and test[0] <= train[1]:
        raise ValueError(f"train {train} and test {test} scene ranges overlap")
    return {
        "train": [str(s) for s in range(train[0], train[1] + 1)],
        "test": [str(s) for s in range(test[0], test[1] + 1)],
    }


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    """Hex SHA-256 of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()


def build_manifest(root: str | Path, folders: tuple[str, ...] = MANIFEST_FOLDERS) -> dict:
    """The manifest of ``root``: the files of the paired ``folders`` found by ``find_pairs``, hashed.

    Going through :func:`~dehazelab.data.layouts.find_pairs` means a folder with a broken layout
    (a hazy image without ground truth, a stray file) cannot make it into the manifest.
    """
    root = Path(root)
    files: dict[str, str] = {}
    counts: dict[str, dict[str, int]] = {}
    for folder in folders:
        pairs = find_pairs(root / folder)
        paths = sorted({p.hazy for p in pairs} | {p.clear for p in pairs if p.clear is not None})
        for path in paths:
            files[path.relative_to(root).as_posix()] = sha256_file(path)
        counts[folder] = {"pairs": len(pairs), "hazy": len({p.hazy for p in pairs}),
                          "clear": len({p.clear for p in pairs if p.clear is not None}),
                          "layout": pairs[0].layout}
    return {
        "name": "sots-small",
        "description": "SOTS-indoor scenes 1400-1439 (levels 1,3,5,7,9) and NH-HAZE 51-53; paths relative "
                       "to the data root; sha256 of the file bytes",
        "folders": counts,
        "split": {"sots-indoor": {"train": list(SOTS_TRAIN), "test": list(SOTS_TEST), "inclusive": True}},
        "files": dict(sorted(files.items())),
    }


def write_manifest(root: str | Path, path: str | Path = MANIFEST_PATH) -> Path:
    """Build the manifest of ``root`` and write it as JSON to ``path`` (atomically). Returns ``path``."""
    path = Path(path)
    text = json.dumps(build_manifest(root), indent=1) + "\n"
    return atomic_write_text(path, text)


def load_manifest(manifest: str | Path | dict | None = None) -> dict:
    """The manifest as a dict: ``None`` means the committed ``sots_small.json``."""
    if isinstance(manifest, dict):
        return manifest
    path = Path(manifest) if manifest is not None else MANIFEST_PATH
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise data_error(path, f"cannot read the manifest ({exc})") from None


@dataclass
class VerifyReport:
    """What :func:`verify` found. ``ok`` is true when every file exists with the listed SHA-256."""

    root: Path
    checked: int
    missing: list[str] = field(default_factory=list)
    mismatched: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.missing and not self.mismatched

    def summary(self, limit: int = 5) -> str:
        """One human line per problem kind (at most ``limit`` names each)."""
        if self.ok:
            return f"{self.root}: all {self.checked} files present with the expected sha256"
        lines = [f"{self.root}: {len(self.missing)} missing, {len(self.mismatched)} with a different sha256 "
                 f"(of {self.checked})"]
        for label, names in (("missing", self.missing), ("sha256 mismatch", self.mismatched)):
            if names:
                more = f" ... (+{len(names) - limit})" if len(names) > limit else ""
                lines.append(f"  {label}: {', '.join(names[:limit])}{more}")
        return "\n".join(lines)


def verify(root: str | Path, manifest: str | Path | dict | None = None, strict: bool = False) -> VerifyReport:
    """Check that every file of the manifest exists under ``root`` with its SHA-256.

    Returns a :class:`VerifyReport` (``missing`` / ``mismatched`` relative paths, sorted). With
    ``strict=True`` a failed check raises ``DataError`` carrying the report's summary instead. Files
    under ``root`` that the manifest does not list are not looked at.
    """
    root = Path(root)
    if not root.is_dir():
        raise data_error(root, "data root is not a folder")
    files = load_manifest(manifest).get("files", {})
    report = VerifyReport(root=root, checked=len(files))
    for rel, digest in sorted(files.items()):
        path = root / rel
        if not path.is_file():
            report.missing.append(rel)
        elif sha256_file(path) != digest:
            report.mismatched.append(rel)
    if strict and not report.ok:
        raise DataError(report.summary())
    return report


def _main(argv: list[str] | None = None) -> int:  # pragma: no cover - thin command line
    import argparse

    from ..paths import data_root

    parser = argparse.ArgumentParser(prog="python -m dehazelab.data.subsets")
    parser.add_argument("command", choices=["build", "verify"])
    parser.add_argument("root", nargs="?", default=None, help="data root (default: dehazelab.paths.data_root())")
    args = parser.parse_args(argv)
    root = Path(args.root) if args.root else data_root(required=True)
    if args.command == "build":
        print(write_manifest(root))
        return 0
    report = verify(root)
    print(report.summary())
    return 0 if report.ok else 1


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(_main())
