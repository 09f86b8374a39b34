"""Photo files: the extensions a folder of photos is read by, the extension a copy of an upload
is saved with (from the format PIL detects, never from the upload's name), and `load_image`,
which reads user photos with all the edge cases users produce (EXIF rotation, CMYK, 16-bit,
alpha, palettes, truncated files, decompression bombs).
"""

from __future__ import annotations

import io
import os
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from .errors import InputError

DEFAULT_MAX_MEGAPIXELS = 40.0
DEFAULT_MAX_IMAGE_BYTES = 50 * 1024**2
# Read from folders (CLI batches, studies).
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff")
# PIL format -> extension of a saved input copy (runs, tours).
FORMAT_EXTENSIONS = {"PNG": ".png", "JPEG": ".jpg", "WEBP": ".webp", "BMP": ".bmp", "TIFF": ".tif", "GIF": ".gif"}


def first_line(exc: BaseException) -> str:
    """The first line of an error's message (decoders write whole tracebacks into theirs)."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def images_in(spec: str | os.PathLike) -> list[Path]:
    """A photo file as [it], or a folder's photos sorted by name; InputError when there are none."""
    p = Path(spec).expanduser()
    if p.is_dir():
        found = sorted(q for q in p.iterdir() if q.is_file() and q.suffix.lower() in IMAGE_EXTENSIONS)
        if not found:
            raise InputError(f"No images ({', '.join(IMAGE_EXTENSIONS)}) in {p}.")
        return found
    if not p.is_file():
        raise InputError(f"No such image or folder: {p}.")
    return [p]


# --------------------------------------------------------------------------- reading images


def load_image(
    source: str | os.PathLike | bytes | bytearray,
    *,
    max_megapixels: float = DEFAULT_MAX_MEGAPIXELS,
    max_bytes: int = DEFAULT_MAX_IMAGE_BYTES,
) -> np.ndarray:
    """Decode a user photo (a path or the file's bytes) to (H, W, 3) uint8 RGB as displayed.

    * The EXIF orientation is applied (a phone photo shot in portrait comes out upright).
    * Alpha (RGBA, LA, palette with transparency) is composited on white.
    * CMYK and YCbCr/LAB go through PIL's conversion; grey and palette images are expanded.
    * 16-bit images (I;16 grey PNG/TIFF, 32-bit int) are scaled from 0-65535 to 0-255
      (x / 257, rounded); float images from 0-1 (if their maximum is <= 1) or clipped to 0-255.
    * Limits: more than `max_bytes` bytes or `max_megapixels` million pixels -> InputError,
      checked from the header before any pixel is decoded (so decompression bombs are refused).
    * Empty, truncated and non-image data -> InputError with one line naming the problem.
    Multi-frame files (animated GIF/WebP, TIFF pages) give their first frame.
    """
    from PIL import Image, ImageOps, UnidentifiedImageError

    name, blob = _read_source(source, max_bytes)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            # Only the formats photos come in: never EPS/PS (Ghostscript) or exotic decoders.
            im = Image.open(io.BytesIO(blob), formats=_photo_formats())
            w, h = im.size
            if w * h > max_megapixels * 1e6:
                raise InputError(
                    f"{name} is {w}x{h} ({w * h / 1e6:.1f} MP); the limit is {max_megapixels:g} MP. "
                    "Downscale it first."
                )
            im.load()
            if im.format == "PNG" and not _png_complete(blob, w, h):
                raise InputError(f"{name} is truncated: its pixel data stops before the last row.")
            im = ImageOps.exif_transpose(im)
    except InputError:
        raise
    except UnidentifiedImageError as exc:
        raise InputError(f"{name} is not an image (or a format this app cannot read).") from exc
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise InputError(f"{name} is too large to decode safely ({exc}).") from exc
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        raise InputError(f"{name} is damaged or truncated: {first_line(exc)}") from exc
    try:
        return _to_rgb8(im)
    except (OSError, ValueError) as exc:
        raise InputError(f"{name}: cannot convert mode {im.mode} to RGB: {first_line(exc)}") from exc


PHOTO_FORMATS = ("JPEG", "MPO", "PNG", "WEBP", "TIFF", "BMP", "GIF")


def _photo_formats() -> list[str]:
    """PIL format names accepted for photos; HEIF/HEIC when pillow-heif is installed."""
    formats = list(PHOTO_FORMATS)
    try:  # optional: phones' HEIC photos
        import pillow_heif  # type: ignore

        pillow_heif.register_heif_opener()
        formats.append("HEIF")
    except Exception:
        pass
    from PIL import Image

    Image.init()  # registers every plugin, so each name below resolves
    return [f for f in formats if f in Image.OPEN]


_PNG_CHANNELS = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}
_ADAM7 = ((0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4), (1, 0, 2, 2), (0, 1, 1, 2))


def _png_complete(blob: bytes, width: int, height: int) -> bool:
    """Whether a PNG's image data inflates to every row the header promises. PIL fills rows
    missing from a short (but well-formed) zlib stream with black and reports no error, so the
    count is made here, streaming (no buffer of the image's size)."""
    import struct
    import zlib

    if len(blob) < 33 or blob[12:16] != b"IHDR":
        return True  # not a plain PNG layout; PIL's own checks apply
    depth, ctype, interlace = blob[24], blob[25], blob[28]
    bits = depth * _PNG_CHANNELS.get(ctype, 4)

    def rows_bytes(w: int, h: int) -> int:
        return h * (1 + (w * bits + 7) // 8) if w and h else 0

    if interlace:
        expected = sum(rows_bytes((width - x0 + dx - 1) // dx, (height - y0 + dy - 1) // dy)
                       for x0, y0, dx, dy in _ADAM7)
    else:
        expected = rows_bytes(width, height)
    inflater, got, pos = zlib.decompressobj(), 0, 8
    try:
        while pos + 8 <= len(blob) and got < expected:
            n, kind = struct.unpack(">I4s", blob[pos:pos + 8])
            if kind == b"IDAT":
                data = blob[pos + 8:pos + 8 + n]
                while data and got < expected:
                    got += len(inflater.decompress(data, 1 << 20))
                    data = inflater.unconsumed_tail
            elif kind == b"IEND":
                break
            pos += 12 + n
    except zlib.error:
        return False
    return got >= expected


def _read_source(source: Any, max_bytes: int) -> tuple[str, bytes]:
    if isinstance(source, (bytes, bytearray, memoryview)):
        blob, name = bytes(source), "The uploaded file"
    elif isinstance(source, (str, os.PathLike)):
        path = Path(source)
        name = path.name
        if not path.is_file():
            raise InputError(f"Image not found: {path}")
        size = path.stat().st_size
        if size > max_bytes:
            raise InputError(f"{name} is {size / 1024**2:.1f} MB; the limit is {max_bytes / 1024**2:.0f} MB.")
        blob = path.read_bytes()
    else:
        raise InputError(f"Expected an image path or bytes, got {type(source).__name__}.")
    if not blob:
        raise InputError(f"{name} is empty (0 bytes).")
    if len(blob) > max_bytes:
        raise InputError(f"{name} is {len(blob) / 1024**2:.1f} MB; the limit is {max_bytes / 1024**2:.0f} MB.")
    return name, blob


def _to_rgb8(im: Any) -> np.ndarray:
    from PIL import Image

    mode = im.mode
    if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I"):
        a = np.asarray(im).astype(np.float64)
        return _grey_to_rgb(np.clip(np.rint(a / 257.0), 0, 255).astype(np.uint8))
    if mode == "F":
        a = np.asarray(im).astype(np.float64)
        finite = a[np.isfinite(a)]
        if finite.size and finite.max() <= 1.0:
            a = a * 255.0
        return _grey_to_rgb(np.clip(np.rint(np.nan_to_num(a)), 0, 255).astype(np.uint8))
    has_alpha = mode in ("RGBA", "LA", "PA", "RGBa", "La") or (mode == "P" and "transparency" in im.info)
    if has_alpha:
        rgba = im.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return np.ascontiguousarray(np.asarray(Image.alpha_composite(white, rgba).convert("RGB"), dtype=np.uint8))
    return np.ascontiguousarray(np.asarray(im.convert("RGB"), dtype=np.uint8))


def _grey_to_rgb(a: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(np.repeat(a[..., None], 3, axis=2))
