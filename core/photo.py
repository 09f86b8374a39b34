"""The one rule a photo must pass before any generator sees it.

`check_photo` is applied where a photo enters the service (upload, job request, tour shot).
Generator entry points that may also be called directly (Ken Burns, SVD, the CamI2V pipeline)
apply this same rule rather than limits of their own, so a photo one layer accepts is never
refused by another.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .errors import InputError

MIN_SIDE = 16  # pixels on the shortest side
MAX_ASPECT = 20  # longest photo side / shortest (panoramas are 2:1 to 8:1)


def check_photo(image: Any) -> np.ndarray:
    """`image` if it is an (H, W, 3) uint8 RGB photo of usable size and shape; InputError otherwise."""
    if not isinstance(image, np.ndarray) or image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        got = f"{getattr(image, 'dtype', type(image).__name__)} {getattr(image, 'shape', '')}".strip()
        raise InputError(f"The photo must be an RGB image ((H, W, 3) uint8), got {got}.")
    if min(image.shape[:2]) < MIN_SIDE:
        raise InputError(f"The photo is too small ({image.shape[1]}x{image.shape[0]}); "
                         f"use at least {MIN_SIDE} pixels a side.")
    h, w = image.shape[:2]
    if max(w, h) > MAX_ASPECT * min(w, h):
        # Covering a video frame with such a strip would blow it up to gigabytes.
        raise InputError(f"The photo is {w}x{h}, more than {MAX_ASPECT}:1; crop it to a less extreme shape.")
    return image
