"""Data layer: image I/O, benchmark layouts, pinned subsets, haze synthesis, torch datasets.

Importing this package loads numpy and PIL only. The manifest check (``sots_split``, ``verify``), the torch datasets (``PairedDataset``,
``UnpairedDataset``, ``load_benchmark``, ``sots_pairs``) and the scikit-image synthetic set are
imported on first use, as are ``real_hazy_photos`` / ``REAL_HAZY_EXAMPLES`` (they need torch).

* :mod:`.images`    ``read_image`` / ``write_image`` (float32 HxWx3 in [0, 1]; conversions documented)
* :mod:`.layouts`   ``find_pairs`` / ``detect_layout`` / ``load_pair`` for SOTS, RESIDE, NH/Dense-HAZE,
  O/I-HAZE and hazy-only folders
* :mod:`.subsets`   ``sots_split``, ``verify`` against the committed ``sots_small.json``
* :mod:`.haze`      the atmospheric scattering model: ``synthesize``, ``invert``, ``transmission_from_pair``
* :mod:`.synthetic` an offline paired set from scikit-image's photographs
* :mod:`.datasets`  torch ``Dataset`` classes and ``load_benchmark``
* :mod:`.real`      ``real_hazy_photos``: named real hazy photographs from ``real-hazy/``, shrunk for figures
"""

from __future__ import annotations

from .errors import DataError
from .haze import invert, synthesize, transmission_from_pair
from .images import IMAGE_EXTS, read_image, write_image
from .layouts import LAYOUTS, Pair, detect_layout, find_pairs, load_pair

_LAZY = {
    "sots_split": "subsets",
    "verify": "subsets",
    "PairedDataset": "datasets",
    "UnpairedDataset": "datasets",
    "Benchmark": "datasets",
    "load_benchmark": "datasets",
    "sots_pairs": "datasets",
    "synthetic_pairs": "synthetic",
    "SyntheticPair": "synthetic",
    "real_hazy_photos": "real",
    "REAL_HAZY_EXAMPLES": "real",
}

__all__ = [
    "DataError", "IMAGE_EXTS", "read_image", "write_image",
    "LAYOUTS", "Pair", "detect_layout", "find_pairs", "load_pair",
    "synthesize", "invert", "transmission_from_pair",
    *_LAZY,
]


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        module = importlib.import_module(f".{_LAZY[name]}", __name__)
        return getattr(module, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
