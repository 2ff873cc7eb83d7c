"""Find hazy / clear image pairs in the folder layouts the dehazing benchmarks ship with.

Supported layouts (the name is what :func:`detect_layout` returns and what ``Pair.layout`` holds):

``sots``
    ``hazy/<scene>_<level>.<ext>`` with ``gt/<scene>.<ext>`` -- RESIDE SOTS-indoor's official naming
    (``hazy/1400_1.png`` ↔ ``gt/1400.png``). The ground-truth folder may be called ``gt``, ``GT`` or
    ``clear``; the extension of the two files may differ.
``reside-its``
    ``hazy/<id>_<a>_<b>.<ext>`` with ``clear/<id>.<ext>`` (or ``gt/``) -- RESIDE ITS / OTS and
    SOTS-outdoor naming (``1_1_0.90179.png``, ``0001_0.8_0.2.jpg``). ``level`` is ``"<a>_<b>"``
    (in ITS the haze index and atmospheric light, in OTS the light and β -- as we recall RESIDE's
    naming; the code only relies on the id before the first underscore).
``nh-haze`` / ``dense-haze``
    ``<id>_hazy.<ext>`` and ``<id>_GT.<ext>`` side by side in one folder (NTIRE 2019/2020 naming).
    The two are named alike; the layout is reported as ``dense-haze`` when the folder's name
    contains "dense", else ``nh-haze``. The same naming split into ``hazy/`` and ``GT/`` folders is
    accepted too.
``o-haze`` / ``i-haze``
    ``hazy/NN_outdoor_hazy.<ext>`` with ``GT/NN_outdoor_GT.<ext>`` (``_indoor_`` for I-HAZE). The
    scene is ``NN``. Also accepted as one folder, like NH-HAZE.
``hazy-only``
    Images without ground truth (RTTS, real photographs): either a flat folder of images, or a folder
    whose subfolders (one level, as in ``real-hazy/``) hold the images. ``clear`` is ``None`` and the
    scene is the path relative to the root without extension (``fattal/forest_input``). Subfolders
    with no image in them (``fattal-params/``) are skipped.

Rules common to all layouts: names starting with ``.`` are ignored (``.DS_Store``); suffix, ``hazy``
and ``GT`` matching is case-insensitive; subfolders inside ``hazy/`` and ``gt/`` are ignored; a
folder that holds images must hold only images (:data:`~dehazelab.data.images.IMAGE_EXTS`), so a
stray ``notes.txt`` there is an error rather than silently skipped. Every error is a
:class:`~dehazelab.data.errors.DataError` naming the file or folder: missing or empty folder,
unknown layout (the message lists these layouts), a hazy image with no ground truth, a ground truth
with no hazy image, a file not following its layout's naming, non-image files.

Pairs are returned sorted by (scene, level, hazy path) with numbers compared as numbers
(``2 < 10``), so the order does not depend on the file system.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .errors import DataError, data_error
from .images import IMAGE_EXTS, is_image_path, read_image

LAYOUTS: dict[str, str] = {
    "sots": "hazy/<scene>_<level>.png with gt/<scene>.png (gt folder named gt, GT or clear)",
    "reside-its": "hazy/<id>_<level>_<beta>.png with clear/<id>.png (RESIDE ITS/OTS naming)",
    "nh-haze": "<id>_hazy.png with <id>_GT.png in one folder (NH-HAZE naming)",
    "dense-haze": "<id>_hazy.png with <id>_GT.png in one folder whose name contains 'dense'",
    "o-haze": "hazy/NN_outdoor_hazy.jpg with GT/NN_outdoor_GT.jpg",
    "i-haze": "hazy/NN_indoor_hazy.jpg with GT/NN_indoor_GT.jpg",
    "hazy-only": "a folder of images without ground truth (flat, or one level of subfolders)",
}

_GT_DIR_NAMES = ("gt", "clear")
# Hazy-name patterns for the hazy/ + gt/ layouts, tried in this order (the first that matches every
# hazy file wins; "51_hazy" would also match the sots pattern, hence the order).
_IO_HAZE = re.compile(r"^(?P<scene>.+?)_(?P<kind>indoor|outdoor)_hazy$", re.IGNORECASE)
_SUFFIX_HAZY = re.compile(r"^(?P<id>.+)_hazy$", re.IGNORECASE)
_SUFFIX_GT = re.compile(r"^(?P<id>.+)_gt$", re.IGNORECASE)
_ITS = re.compile(r"^(?P<scene>[^_]+)_(?P<level>[^_]+_[^_]+)$")
_SOTS = re.compile(r"^(?P<scene>[^_]+)_(?P<level>[^_]+)$")


@dataclass(frozen=True)
class Pair:
    """One hazy image and its ground truth (``clear`` is ``None`` for hazy-only data).

    ``scene`` identifies the clear scene (the unit a scene-disjoint split works on); ``level`` the
    haze setting of this hazy version (``None`` when the layout has one hazy image per scene).
    """

    hazy: Path
    clear: Path | None
    scene: str
    level: str | None
    layout: str

    @property
    def name(self) -> str:
        """A file-name-safe identifier: ``<scene>_<level>`` (or ``<scene>``), ``/`` replaced by ``_``."""
        base = self.scene if self.level is None else f"{self.scene}_{self.level}"
        return base.replace("/", "_")


def natural_key(text: str) -> tuple:
    """Sort key comparing runs of digits as numbers: ``"2" < "10"``, ``"1400_3" < "1400_10"``."""
    return tuple((0, int(tok), "") if tok.isdigit() else (1, 0, tok) for tok in re.split(r"(\d+)", text) if tok)


def _pair_key(pair: Pair) -> tuple:
    return (natural_key(pair.scene), natural_key(pair.level or ""), str(pair.hazy))


@dataclass
class _Listing:
    images: list[Path]
    others: list[Path]
    dirs: list[Path]


def _list(folder: Path) -> _Listing:
    images, others, dirs = [], [], []
    for entry in sorted(folder.iterdir()):
        if entry.name.startswith("."):
            continue
        if entry.is_dir():
            dirs.append(entry)
        elif is_image_path(entry):
            images.append(entry)
        else:
            others.append(entry)
    return _Listing(images, others, dirs)


def _image_folder(folder: Path, listing: _Listing | None = None) -> list[Path]:
    """The images of a folder that must hold only images (errors for non-images and emptiness)."""
    listing = listing or _list(folder)
    if listing.others:
        bad = listing.others[0]
        more = f" (and {len(listing.others) - 1} more)" if len(listing.others) > 1 else ""
        raise data_error(bad, f"not an image file inside the image folder {folder}{more}; "
                              f"expected only {', '.join(IMAGE_EXTS)}")
    if not listing.images:
        raise data_error(folder, "empty folder: no image files")
    return listing.images


def _check_root(root: Path) -> _Listing:
    if not root.exists():
        raise data_error(root, "no such folder")
    if not root.is_dir():
        raise data_error(root, "is not a folder")
    listing = _list(root)
    if not (listing.images or listing.others or listing.dirs):
        raise data_error(root, "empty folder")
    return listing


def _unknown(root: Path, why: str) -> DataError:
    expected = "; ".join(f"{k}: {v}" for k, v in LAYOUTS.items())
    return data_error(root, f"unknown dataset layout ({why}). Expected one of -- {expected}")


def _stems_by_lower(files: list[Path]) -> dict[str, Path]:
    out: dict[str, Path] = {}
    for f in files:
        key = f.stem.lower()
        if key in out:
            raise data_error(f, f"two files with the same name up to case/extension: {out[key].name} and {f.name}")
        out[key] = f
    return out


def _suffix_layout(ids: list[str], folder: Path) -> str:
    if ids and all(i.lower().endswith("_outdoor") for i in ids):
        return "o-haze"
    if ids and all(i.lower().endswith("_indoor") for i in ids):
        return "i-haze"
    return "dense-haze" if "dense" in folder.name.lower() else "nh-haze"


def _scene_from_id(ident: str, layout: str) -> str:
    if layout in ("o-haze", "i-haze"):
        return re.sub(r"_(indoor|outdoor)$", "", ident, flags=re.IGNORECASE)
    return ident


# --------------------------------------------------------------------------------------------- #
# hazy/ + gt/ layouts


def _find_dirs(root: Path, listing: _Listing) -> tuple[Path | None, Path | None]:
    hazy = [d for d in listing.dirs if d.name.lower() == "hazy"]
    gts = [d for d in listing.dirs if d.name.lower() in _GT_DIR_NAMES]
    if len(hazy) > 1:
        raise data_error(root, f"more than one hazy folder: {', '.join(d.name for d in hazy)}")
    if len(gts) > 1:
        raise data_error(root, f"more than one ground-truth folder: {', '.join(d.name for d in gts)}")
    return (hazy[0] if hazy else None), (gts[0] if gts else None)


def _classify_two_folder(hazy_files: list[Path], hazy_dir: Path, root: Path) -> str:
    stems = [f.stem for f in hazy_files]
    candidates = [("io", _IO_HAZE), ("suffix", _SUFFIX_HAZY), ("reside-its", _ITS), ("sots", _SOTS)]
    counts = []
    for name, pattern in candidates:
        n = sum(1 for s in stems if pattern.match(s))
        if n == len(stems):
            if name in ("io", "suffix"):
                return _suffix_layout([_SUFFIX_HAZY.match(s).group("id") for s in stems], root)
            return name
        counts.append((n, name, pattern))
    n, name, pattern = max(counts, key=lambda c: c[0])
    if n == 0:
        raise _unknown(hazy_dir, f"hazy file names like {hazy_files[0].name} follow none of the known namings")
    bad = next(f for f in hazy_files if not pattern.match(f.stem))
    label = {"io": "o-haze/i-haze", "suffix": "nh-haze"}.get(name, name)
    raise data_error(bad, f"does not follow the {label} naming of the other files in {hazy_dir} "
                          f"({LAYOUTS['o-haze' if name == 'io' else 'nh-haze' if name == 'suffix' else name]})")


def _pairs_two_folder(root: Path, hazy_dir: Path, gt_dir: Path) -> list[Pair]:
    hazy_files = _image_folder(hazy_dir)
    gt_files = _image_folder(gt_dir)
    layout = _classify_two_folder(hazy_files, hazy_dir, root)
    _stems_by_lower(hazy_files)  # 1400_1.png beside 1400_1.jpg would be scored twice against one GT
    gt_by_stem = _stems_by_lower(gt_files)
    used: set[str] = set()
    pairs = []
    for h in hazy_files:
        if layout in ("sots", "reside-its"):
            m = (_ITS if layout == "reside-its" else _SOTS).match(h.stem)
            scene, level, gt_stem = m.group("scene"), m.group("level"), m.group("scene")
        else:
            ident = _SUFFIX_HAZY.match(h.stem).group("id")
            scene, level, gt_stem = _scene_from_id(ident, layout), None, f"{ident}_GT"
        gt = gt_by_stem.get(gt_stem.lower())
        if gt is None:
            raise data_error(h, f"hazy image has no ground truth: expected {gt_dir / gt_stem}.<ext>")
        used.add(gt_stem.lower())
        pairs.append(Pair(hazy=h, clear=gt, scene=scene, level=level, layout=layout))
    unused = [p for k, p in gt_by_stem.items() if k not in used]
    if unused:
        more = f" (and {len(unused) - 1} more)" if len(unused) > 1 else ""
        raise data_error(sorted(unused)[0], f"ground truth has no hazy image in {hazy_dir}{more}")
    return pairs


# --------------------------------------------------------------------------------------------- #
# one-folder layouts


def _is_suffix_named(files: list[Path]) -> bool:
    return any(_SUFFIX_HAZY.match(f.stem) or _SUFFIX_GT.match(f.stem) for f in files)


def _pairs_one_folder(root: Path, files: list[Path]) -> list[Pair]:
    hazy, gts = [], []
    for f in files:
        if _SUFFIX_HAZY.match(f.stem):
            hazy.append(f)
        elif _SUFFIX_GT.match(f.stem):
            gts.append(f)
        else:
            raise data_error(f, f"neither <id>_hazy nor <id>_GT, unlike the other files in {root} ({LAYOUTS['nh-haze']})")
    ids = [_SUFFIX_HAZY.match(h.stem).group("id") for h in hazy]
    layout = _suffix_layout(ids, root)
    gt_by_id = {}
    for g in gts:
        key = _SUFFIX_GT.match(g.stem).group("id").lower()
        if key in gt_by_id:
            raise data_error(g, f"two ground truths for the same id: {gt_by_id[key].name} and {g.name}")
        gt_by_id[key] = g
    pairs, used, seen = [], set(), {}
    for h, ident in zip(hazy, ids):
        key = ident.lower()
        if key in seen:
            raise data_error(h, f"two hazy images for the same id: {seen[key].name} and {h.name}")
        seen[key] = h
        gt = gt_by_id.get(key)
        if gt is None:
            raise data_error(h, f"hazy image has no ground truth: expected {root / (ident + '_GT')}.<ext>")
        used.add(key)
        pairs.append(Pair(hazy=h, clear=gt, scene=_scene_from_id(ident, layout), level=None, layout=layout))
    unused = [g for k, g in gt_by_id.items() if k not in used]
    if unused:
        raise data_error(sorted(unused)[0], f"ground truth has no hazy image (expected <id>_hazy.<ext> in {root})")
    return pairs


def _hazy_only(root: Path, files: list[Path]) -> list[Pair]:
    seen: dict[str, Path] = {}
    for f in files:
        key = f.relative_to(root).with_suffix("").as_posix().lower()
        if key in seen:
            raise data_error(f, f"two files with the same name up to case/extension: {seen[key].name} and {f.name}")
        seen[key] = f
    return [
        Pair(hazy=f, clear=None, scene=f.relative_to(root).with_suffix("").as_posix(), level=None, layout="hazy-only")
        for f in files
    ]


def _hazy_only_subfolders(root: Path, listing: _Listing) -> tuple[list[Path], str]:
    """Images of a root whose subfolders hold the images, or ``([], why not)``."""
    files: list[Path] = []
    for sub in listing.dirs:
        sl = _list(sub)
        if sl.dirs and (sl.images or any(_list(d).images or _list(d).dirs for d in sl.dirs)):
            return [], f"subfolder {sub.name}/ has subfolders of its own (a collection of datasets? point at one of them)"
        if not sl.images:
            continue  # a side folder without images (parameters, notes): skipped
        if _is_suffix_named(sl.images):
            return [], f"subfolder {sub.name}/ holds paired <id>_hazy/<id>_GT images (point at it)"
        files.extend(_image_folder(sub, sl))
    return files, ("" if files else "no images in the folder or its subfolders")


# --------------------------------------------------------------------------------------------- #
# public API


def _scan(root: Path) -> tuple[str, object]:
    listing = _check_root(root)
    hazy_dir, gt_dir = _find_dirs(root, listing)
    if hazy_dir is not None:
        if gt_dir is None:
            raise data_error(root, "has a hazy/ folder but no ground-truth folder next to it (gt/, GT/ or clear/)")
        return "two-folder", (hazy_dir, gt_dir)
    if gt_dir is not None and not listing.images:
        raise data_error(root, f"has a ground-truth folder {gt_dir.name}/ but no hazy/ folder next to it")
    if listing.images:
        files = _image_folder(root, listing)
        return ("one-folder" if _is_suffix_named(files) else "flat"), files
    sub_files, why = _hazy_only_subfolders(root, listing)
    if sub_files:
        return "subfolders", sub_files
    if listing.others and not listing.dirs:
        why = f"no image files, only e.g. {listing.others[0].name}"
    raise _unknown(root, why)


def detect_layout(root: str | Path) -> str:
    """Name of the layout of ``root`` (a key of :data:`LAYOUTS`); ``DataError`` if none fits.

    Only file names are looked at, not pixels. The pairing itself is checked by :func:`find_pairs`.
    """
    root = Path(root)
    kind, info = _scan(root)
    if kind == "two-folder":
        hazy_dir, _ = info
        return _classify_two_folder(_image_folder(hazy_dir), hazy_dir, root)
    if kind == "one-folder":
        ids = [m.group("id") for f in info if (m := _SUFFIX_HAZY.match(f.stem))]
        return _suffix_layout(ids, root)
    return "hazy-only"


def find_pairs(root: str | Path, layout: str | None = None) -> list[Pair]:
    """All hazy/clear pairs under ``root``, sorted by (scene, level, path) with natural number order.

    ``layout`` (optional) asserts the expected layout; ``"nh-haze"`` and ``"dense-haze"`` are
    interchangeable (same naming) and the requested name is then used as the label. A mismatch
    with what the folder holds is a ``DataError``.
    """
    root = Path(root)
    if layout is not None and layout not in LAYOUTS:
        raise ValueError(f"unknown layout {layout!r}; known: {', '.join(LAYOUTS)}")
    kind, info = _scan(root)
    if kind == "two-folder":
        pairs = _pairs_two_folder(root, *info)
    elif kind == "one-folder":
        pairs = _pairs_one_folder(root, info)
    else:
        pairs = _hazy_only(root, info)
    found = pairs[0].layout
    if layout is not None and layout != found:
        if {layout, found} == {"nh-haze", "dense-haze"}:
            pairs = [Pair(p.hazy, p.clear, p.scene, p.level, layout) for p in pairs]
        else:
            raise data_error(root, f"holds the {found} layout, not the requested {layout} ({LAYOUTS[layout]})")
    return sorted(pairs, key=_pair_key)


#: RESIDE's hazy images drop 10 pixels on every side of their NYU ground truths (640x480 -> 620x460).
RESIDE_BORDER = 20


def center_crop(image: np.ndarray, height: int, width: int) -> np.ndarray:
    """The centred ``height x width`` window of ``image`` (offsets rounded down when odd)."""
    h, w = image.shape[:2]
    if height > h or width > w:
        raise ValueError(f"cannot crop {h}x{w} to a larger {height}x{width}")
    top, left = (h - height) // 2, (w - width) // 2
    return image[top : top + height, left : left + width]


def load_pair(pair: Pair) -> tuple[np.ndarray, np.ndarray | None]:
    """Read a pair as float32 ``HxWx3`` arrays ``(hazy, clear)``; ``clear`` is ``None`` for hazy-only.

    When the clear image is exactly :data:`RESIDE_BORDER` pixels larger in both dimensions, it is
    centre-cropped to the hazy size. This is RESIDE's original distribution, where the NYU ground
    truths are 640x480 and the hazy images 620x460 (the hazy images drop a 10-pixel border), so the
    centred window is the aligned one. (The SOTS-indoor copy in the shared data folder already has
    620x460 ground truths: nothing is cropped there.) Any other size difference raises
    ``DataError`` naming both files: a silent crop of an unrelated size would score misaligned
    images.
    """
    hazy = read_image(pair.hazy)
    if pair.clear is None:
        return hazy, None
    return hazy, align_clear(hazy, read_image(pair.clear), pair.hazy, pair.clear)


def align_clear(hazy: np.ndarray, clear: np.ndarray, hazy_path: str | Path = "<hazy>",
                clear_path: str | Path = "<clear>") -> np.ndarray:
    """The clear image brought to the hazy image's size, by the rule of :func:`load_pair`.

    Returns ``clear`` itself when the sizes agree, its centred window when it is RESIDE's
    :data:`RESIDE_BORDER` pixels larger in both dimensions, and raises ``DataError`` naming both
    paths otherwise.
    """
    (hh, hw), (ch, cw) = hazy.shape[:2], clear.shape[:2]
    if (ch, cw) == (hh, hw):
        return clear
    if (ch - hh, cw - hw) == (RESIDE_BORDER, RESIDE_BORDER):
        return np.ascontiguousarray(center_crop(clear, hh, hw))
    raise DataError(
        f"{clear_path}: ground truth is {ch}x{cw} (HxW) but its hazy image {hazy_path} is {hh}x{hw}; only "
        f"RESIDE's {RESIDE_BORDER}-pixel border (e.g. 640x480 ground truth, 620x460 hazy) is cropped "
        "automatically, other sizes would be scored misaligned (resize or crop one of them first)"
    )
