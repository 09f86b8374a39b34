"""Which files are photos: the extensions a folder of photos is read by, and the extension a
copy of an uploaded photo is saved with (from the format PIL detects, never from the upload's name).
"""

from __future__ import annotations

import os
from pathlib import Path

from .errors import InputError

# Read from folders (CLI batches, studies).
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff")
# PIL format -> extension of a saved input copy (runs, tours).
FORMAT_EXTENSIONS = {"PNG": ".png", "JPEG": ".jpg", "WEBP": ".webp", "BMP": ".bmp", "TIFF": ".tif", "GIF": ".gif"}


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
