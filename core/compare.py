"""Per-frame difference heat maps between two chains' clips ("looking closely").

Two chains of one run show the same scene, possibly at different sizes (x4 upscaled or not).
Both are brought to the smaller clip's size (INTER_AREA, the `common` grid of the metrics), the
per-pixel difference is the mean over RGB of |A - B| (0-255), and a fixed colour scale (0 to
`HEAT_MAX` grey levels, OpenCV's INFERNO colour map, brighter = larger) makes heat maps of
different pairs and runs comparable.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from .clip import Clip
from .errors import InputError
from .metrics import resize_frames

HEAT_MAX = 48.0  # grey levels mapped to the top of the colour scale


@dataclass(frozen=True)
class Difference:
    """heat: (T, h, w, 3) uint8 RGB colour-mapped |A - B|; mean_abs: (T,) mean |A - B| per frame
    (0-255, RGB mean); size: (w, h) of the comparison grid."""

    heat: np.ndarray
    mean_abs: np.ndarray
    size: tuple[int, int]


def difference(a: np.ndarray, b: np.ndarray, heat_max: float = HEAT_MAX) -> Difference:
    """Heat map of (T, H, W, 3) uint8 clips a and b (any sizes of one aspect ratio; the longer
    clip is cut to the shorter's length)."""
    if a.ndim != 4 or b.ndim != 4 or a.shape[-1] != 3 or b.shape[-1] != 3:
        raise InputError(f"Difference needs two (T, H, W, 3) clips, got {a.shape} and {b.shape}.")
    t = min(len(a), len(b))
    if t == 0:
        raise InputError("Difference needs clips with at least one frame.")
    size = min((a.shape[2], a.shape[1]), (b.shape[2], b.shape[1]), key=lambda s: s[0] * s[1])
    ra, rb = resize_frames(a[:t], size), resize_frames(b[:t], size)
    diff = np.abs(ra.astype(np.int16) - rb.astype(np.int16)).mean(axis=-1)  # (T, h, w), 0-255
    scaled = np.clip(diff * (255.0 / heat_max), 0, 255).astype(np.uint8)
    heat = np.stack([cv2.cvtColor(cv2.applyColorMap(f, cv2.COLORMAP_INFERNO), cv2.COLOR_BGR2RGB) for f in scaled])
    return Difference(heat, diff.reshape(t, -1).mean(axis=1), (int(size[0]), int(size[1])))


def difference_video(video_a: str | Path, video_b: str | Path, out: str | Path,
                     heat_max: float = HEAT_MAX) -> Difference:
    """Write the heat map of two video files as an MP4 at `out` (fps of video_a); returns it."""
    from .video import read_video, write_mp4

    ca, cb = read_video(video_a, max_pixels=None), read_video(video_b, max_pixels=None)  # run outputs
    d = difference(ca.frames, cb.frames, heat_max)
    write_mp4(Clip(d.heat, ca.fps), out)
    return d
