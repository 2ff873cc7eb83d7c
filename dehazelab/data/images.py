"""Reading and writing images as float32 ``HxWx3`` arrays in ``[0, 1]``.

Everything in dehazelab that touches an image file goes through :func:`read_image` and
:func:`write_image`, so that the same conversions (documented in ``read_image``) apply to every
benchmark, and a broken file fails with a :class:`~dehazelab.data.errors.DataError` that names it.

Decoding is PIL's. PIL's ``ImageFile.LOAD_TRUNCATED_IMAGES`` is left at its default ``False``
(this module never sets it), so a truncated file raises instead of being padded with grey.
"""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from ..io import atomic_open
from .errors import data_error

#: File extensions (lower case) treated as images when listing folders.
IMAGE_EXTS: tuple[str, ...] = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")

_EIGHT_BIT_VIA_RGB = {"RGB", "RGBX", "CMYK", "YCbCr", "LAB", "HSV"}


def is_image_path(path: str | Path) -> bool:
    """True when ``path`` has one of :data:`IMAGE_EXTS` (case-insensitive); the file is not opened."""
    return Path(path).suffix.lower() in IMAGE_EXTS


def read_image(path: str | Path, max_pixels: int | None = None) -> np.ndarray:
    """Read an image file as a float32 ``HxWx3`` array in ``[0, 1]``.

    ``max_pixels``: refuse (``DataError``) an image with more pixels, checked from its header
    before it is decoded (a 97 KB PNG can hold 10000x10000 pixels, 1.2 GB as float32); ``0`` lifts
    every limit, PIL's decompression-bomb guard included; ``None`` keeps PIL's guard only.

    Steps, in order:

    1. The file is opened and fully decoded (``Image.load()``), so a truncated or corrupt file fails
       here rather than later; PIL's ``LOAD_TRUNCATED_IMAGES`` stays ``False``.
    2. The EXIF orientation tag is applied (``ImageOps.exif_transpose``): a phone photo stored
       sideways with orientation 6 comes back upright, with height and width swapped.
    3. The pixel mode is converted to RGB:

       * ``1`` (bilevel) and ``L`` (8-bit grey): value / 255, copied to the three channels.
       * ``I;16`` / ``I;16B`` / ``I;16L`` (16-bit grey, e.g. a 16-bit greyscale PNG) and ``I``
         (32-bit integer, what older PIL versions return for 16-bit PNGs): value / 65535, copied to
         three channels. Values outside ``0..65535`` (a true 32-bit image) raise ``DataError``
         instead of being guessed at.
       * ``F`` (32-bit float grey): taken as already in ``[0, 1]``, clipped to it, copied to three
         channels; NaN raises ``DataError``.
       * ``RGBA``, ``LA``, ``PA``: the alpha channel is dropped. The colour is *not* composited on
         any background; the stored colour values are returned as they are (alpha ignored).
       * ``P`` (palette): looked up in the palette (via RGBA, so a transparent palette entry does
         not warn); any transparency is ignored as above.
       * ``CMYK``, ``YCbCr``, ``LAB``, ``HSV``: PIL's own ``convert("RGB")`` formula, then / 255.
         No colour management: embedded ICC profiles are ignored for every mode.
       * 16-bit *RGB* PNGs: PIL decodes them to 8-bit ``RGB`` (it keeps the high byte), so they are
         read with 8-bit precision (value // 256 / 255, within 1/255 of value / 65535). Only 16-bit
         *grey* PNGs keep their full precision.

    Raises:
        DataError: naming the file, when it is missing, is a folder, is not an image PIL can
            identify (for example a text file renamed ``.png``), cannot be fully decoded
            (truncated or corrupt), or has a pixel mode listed above as unsupported.
    """
    path = Path(path)
    if not path.exists():
        raise data_error(path, "no such file")
    if not path.is_file():
        raise data_error(path, "is not a file (expected an image file)")
    old_limit = Image.MAX_IMAGE_PIXELS
    too_big = None
    try:
        if max_pixels == 0:
            Image.MAX_IMAGE_PIXELS = None
        with Image.open(path) as opened:
            if max_pixels and opened.width * opened.height > max_pixels:
                too_big = opened.size  # from the header: nothing decoded
            else:
                opened.load()
                im = ImageOps.exif_transpose(opened)
                im.load()
    except UnidentifiedImageError:
        raise data_error(path, "not an image file PIL can identify (wrong extension or not an image)") from None
    except Image.DecompressionBombError as exc:
        raise data_error(path, f"refused by PIL as a decompression bomb ({exc}); pass --max-pixels 0 to allow it") from None
    except (OSError, SyntaxError, ValueError, EOFError, struct.error) as exc:
        if isinstance(exc, PermissionError):
            raise data_error(path, f"cannot be read: {exc.strerror}") from None
        raise data_error(path, f"truncated or corrupt image, cannot be fully decoded ({exc})") from None
    finally:
        Image.MAX_IMAGE_PIXELS = old_limit
    if too_big is not None:
        w, h = too_big
        raise data_error(path, f"{w}x{h} is {w * h / 1e6:.1f} megapixels, above the limit of {max_pixels / 1e6:.1f} "
                               f"(dehazing it would need about {w * h * 41 / 1e9:.1f} GB); pass --max-pixels 0 "
                               "to allow any size")
    return _to_rgb_float(im, path)


def _to_rgb_float(im: Image.Image, path: Path) -> np.ndarray:
    mode = im.mode
    if mode in ("1", "L"):
        grey = np.asarray(im.convert("L"), dtype=np.float32) / 255.0
        return _grey_to_rgb(grey)
    if mode.startswith("I;16") or mode == "I":
        arr = np.asarray(im)
        if arr.size and (arr.min() < 0 or arr.max() > 65535):
            raise data_error(
                path,
                f"integer image (mode {mode}) with values {arr.min()}..{arr.max()} outside 0..65535; "
                "only 8- and 16-bit images are supported",
            )
        return _grey_to_rgb(arr.astype(np.float32) / 65535.0)
    if mode == "F":
        arr = np.asarray(im, dtype=np.float32)
        if np.isnan(arr).any():
            raise data_error(path, "float image (mode F) contains NaN")
        return _grey_to_rgb(np.clip(arr, 0.0, 1.0))
    if mode in ("LA", "La"):
        grey = np.asarray(im, dtype=np.float32)[..., 0] / 255.0
        return _grey_to_rgb(grey)
    if mode in ("RGBA", "RGBa", "PA", "P"):
        rgba = im if mode == "RGBA" else im.convert("RGBA")
        return np.ascontiguousarray(np.asarray(rgba, dtype=np.float32)[..., :3] / 255.0)
    if mode in _EIGHT_BIT_VIA_RGB:
        rgb = im if mode == "RGB" else im.convert("RGB")
        return np.ascontiguousarray(np.asarray(rgb, dtype=np.float32) / 255.0)
    raise data_error(path, f"unsupported pixel mode {mode!r}")


def _grey_to_rgb(grey: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(np.repeat(grey[..., None], 3, axis=2).astype(np.float32, copy=False))


def to_uint8(array: np.ndarray) -> np.ndarray:
    """Float ``[0, 1]`` → uint8 by clipping and rounding (``round(x * 255)``); uint8 passes through."""
    array = np.asarray(array)
    if array.dtype == np.uint8:
        return array
    if not np.issubdtype(array.dtype, np.floating):
        raise ValueError(f"expected a float array in [0, 1] or uint8, got dtype {array.dtype}")
    if np.isnan(array).any():
        raise ValueError("image array contains NaN")
    return np.round(np.clip(array, 0.0, 1.0) * 255.0).astype(np.uint8)


def write_image(path: str | Path, array: np.ndarray) -> Path:
    """Write ``array`` (``HxWx3`` or ``HxW``; float in ``[0, 1]`` or uint8) as an 8-bit PNG.

    Floats are clipped to ``[0, 1]`` and rounded to the nearest of 256 levels, so a float image read
    from an 8-bit file round-trips exactly. The write is atomic: the PNG goes to a temporary file in
    the destination folder, which then replaces ``path`` (``os.replace``), so a reader never sees a
    half-written file. Parent folders are created. Returns ``path``.
    """
    path = Path(path)
    if path.suffix.lower() != ".png":
        raise ValueError(f"{path}: write_image writes PNG only; use a .png file name")
    arr = to_uint8(array)
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[..., 0]
    if not (arr.ndim == 2 or (arr.ndim == 3 and arr.shape[2] == 3)):
        raise ValueError(f"{path}: expected an HxWx3 or HxW array, got shape {arr.shape}")
    with atomic_open(path, "wb") as fh:  # usual permissions (umask), not mkstemp's 0600
        Image.fromarray(np.ascontiguousarray(arr)).save(fh, format="PNG")
    return path
