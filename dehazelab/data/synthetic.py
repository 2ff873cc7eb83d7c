"""An offline paired hazy/clear set made from scikit-image's bundled photographs.

Used when no benchmark data is configured (CI, first runs, smoke tests): everything comes from
files inside the scikit-image wheel, nothing is downloaded. The photographs used are
:data:`SCENES` (``skin`` and ``lily`` are not bundled and would need the network).

For each scene the clear image is resized (anti-aliased) so its shorter side is ``size`` and
centre-cropped to ``size x size``. Depth:

* ``motorcycle``: the real depth of the Middlebury 2014 scene from its ground-truth disparity
  (:func:`~dehazelab.data.haze.motorcycle_depth`), normalised to ``[0, 1]``.
* every other scene: a **pseudo-depth** -- ``0.5 · (1 − y / (H − 1)) + 0.5 · L_s`` then min-max
  scaled to ``[0, 1]``, where ``L_s`` is the luminance blurred with a Gaussian of σ = size / 16 and
  scaled to ``[0, 1]``. It encodes two weak priors (higher in the frame is farther; bright, smooth
  regions such as sky and walls are farther). It is not a depth estimate; the haze it makes is
  plausible-looking, not physical.

Each scene gets ``levels`` haze settings, drawn from a generator seeded by ``(seed, crc32(scene))``,
so a scene's levels depend only on the seed and the scene, not on which other scenes are asked for.
β is stratified over the RESIDE ITS range (level ``k`` of ``n`` is uniform in the ``k``-th of ``n``
equal slices of ``[0.6, 1.8]``, so levels go from light to dense) and ``A`` is a grey value uniform
in ``[0.7, 1.0]`` (see :mod:`dehazelab.data.haze` for the source of the ranges and the depth-scale
assumption). No noise or 8-bit quantisation is added.

:data:`SPLIT` is the scene-disjoint train/test split: the test scenes include ``motorcycle``, the only
scene whose haze follows real depth.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass

import numpy as np

from .haze import RESIDE_ITS_A, RESIDE_ITS_BETA, motorcycle_depth, synthesize

SCENES: tuple[str, ...] = ("astronaut", "chelsea", "coffee", "rocket", "motorcycle")
SPLIT: dict[str, tuple[str, ...]] = {
    "train": ("astronaut", "coffee", "rocket"),
    "test": ("chelsea", "motorcycle"),
}
SOURCE = "synthetic-skimage"


@dataclass(frozen=True, eq=False)
class SyntheticPair:
    """One synthetic hazy/clear pair held in memory (float32 ``HxWx3`` in ``[0, 1]``).

    A record readable three ways: attributes (``p.hazy``), keys (``p["hazy"]``, for code that
    handles records as dicts), or unpacking the four core fields
    (``hazy, clear, scene, level = p``). ``split`` is the scene's side of :data:`SPLIT`.
    """

    hazy: np.ndarray
    clear: np.ndarray
    scene: str
    level: str
    beta: float
    A: float
    depth: np.ndarray
    split: str

    @property
    def name(self) -> str:
        return f"{self.scene}_{self.level}"

    def __iter__(self):
        return iter((self.hazy, self.clear, self.scene, self.level))

    def __getitem__(self, key: str):
        if key not in self.__dataclass_fields__ and key != "name":
            raise KeyError(key)
        return getattr(self, key)

    def keys(self) -> tuple[str, ...]:
        return (*self.__dataclass_fields__, "name")


def _resize_square(image: np.ndarray, size: int) -> np.ndarray:
    from skimage.transform import resize

    h, w = image.shape[:2]
    scale = size / min(h, w)
    nh, nw = max(size, round(h * scale)), max(size, round(w * scale))
    out = resize(image, (nh, nw) + image.shape[2:], order=1, anti_aliasing=True, preserve_range=True)
    top, left = (nh - size) // 2, (nw - size) // 2
    return np.ascontiguousarray(out[top : top + size, left : left + size]).astype(np.float32)


def pseudo_depth(clear: np.ndarray) -> np.ndarray:
    """The documented pseudo-depth of a clear ``HxWx3`` image (see the module docstring), in ``[0, 1]``."""
    from skimage.color import rgb2gray
    from skimage.filters import gaussian

    h, w = clear.shape[:2]
    lum = gaussian(rgb2gray(clear), sigma=min(h, w) / 16.0, preserve_range=True)
    lum = (lum - lum.min()) / max(lum.max() - lum.min(), 1e-8)
    rows = 1.0 - np.arange(h, dtype=np.float64) / max(h - 1, 1)
    d = 0.5 * rows[:, None] + 0.5 * lum
    d = (d - d.min()) / max(d.max() - d.min(), 1e-8)
    return d.astype(np.float32)


def scene_image_and_depth(scene: str, size: int) -> tuple[np.ndarray, np.ndarray]:
    """``(clear HxWx3, depth HxW)`` of one of :data:`SCENES`, at ``size x size``."""
    from skimage import data

    if scene == "motorcycle":
        rgb, depth = motorcycle_depth(normalise=True)
        clear = np.clip(_resize_square(rgb, size), 0.0, 1.0)
        depth = np.clip(_resize_square(depth, size), 0.0, 1.0)
        return clear, depth
    if scene not in SCENES:
        raise ValueError(f"unknown synthetic scene {scene!r}; known: {', '.join(SCENES)}")
    rgb = np.asarray(getattr(data, scene)(), dtype=np.float32)[..., :3] / 255.0
    clear = np.clip(_resize_square(rgb, size), 0.0, 1.0)
    return clear, pseudo_depth(clear)


def _split_of(scene: str) -> str:
    return next(side for side, names in SPLIT.items() if scene in names)


def haze_levels(scene: str, seed: int, levels: int) -> list[tuple[float, float]]:
    """The ``(β, A)`` settings of a scene: deterministic in ``(seed, scene)``, β increasing with level."""
    rng = np.random.default_rng([int(seed), zlib.crc32(scene.encode())])
    lo, hi = RESIDE_ITS_BETA
    a_lo, a_hi = RESIDE_ITS_A
    out = []
    for k in range(levels):
        u, v = rng.random(2)
        beta = lo + (k + u) / levels * (hi - lo)
        out.append((float(beta), float(a_lo + v * (a_hi - a_lo))))
    return out


def synthetic_pairs(
    seed: int = 0,
    size: int = 128,
    levels: int = 3,
    scenes: tuple[str, ...] | list[str] | None = None,
) -> list[SyntheticPair]:
    """Hazy/clear pairs for ``scenes`` (default all of :data:`SCENES`), ``levels`` per scene.

    Sorted by scene (in the order given) then level ``"1"..str(levels)``. Deterministic given the
    arguments. Use ``scenes=SPLIT["train"]`` / ``SPLIT["test"]`` for the scene-disjoint split.
    """
    if levels < 1 or size < 8:
        raise ValueError("need levels >= 1 and size >= 8")
    scenes = SCENES if scenes is None else tuple(scenes)
    pairs = []
    for scene in scenes:
        clear, depth = scene_image_and_depth(scene, size)
        for k, (beta, a) in enumerate(haze_levels(scene, seed, levels), start=1):
            hazy, _ = synthesize(clear, depth, beta, a)
            pairs.append(SyntheticPair(hazy.astype(np.float32), clear, scene, str(k), beta, a, depth, _split_of(scene)))
    return pairs
