"""Weight-free post-processing stages built on OpenCV: always available, CPU only.

* `NLMeansDenoise` ("nlmeans", role "denoise"): temporal non-local means
  (``cv2.fastNlMeansDenoisingColoredMulti``). Each output frame is denoised from a window of
  `temporal_window` frames centred on it; at the clip ends the window is mirrored without
  repeating the edge frame (frame 0 uses 2,1,0,1,2), so every frame gets a full window and the
  output has as many frames as the input. Cost at 512x320 on 2 CPU threads: about 1.5 s per
  frame on an idle machine, 2-3.5 s on a busy one (bench/postprocess.py); a 3-frame window is
  about 1.7x faster than 5. OpenCV's own thread pool is used as configured
  (``cv2.setNumThreads``); this module never changes it.
* `LanczosUpscale` ("lanczos", role "upscale"): x2 or x4 with ``cv2.INTER_LANCZOS4`` per frame;
  OpenCV saturates the uint8 result, so overshoot at edges is clipped to 0-255.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import cv2
import numpy as np

from ..clip import Clip
from ..params import ParamSpec
from ..progress import Progress
from .base import Stage


def mirrored_window(t: int, num_frames: int, size: int) -> list[int]:
    """Frame indices of a `size`-frame window centred on frame t, reflected at the clip ends
    without repeating the edge frame (t=0, size 5 -> [2, 1, 0, 1, 2]). Works for any clip length
    (a 1-frame clip repeats frame 0)."""
    half = size // 2
    if num_frames == 1:
        return [0] * size
    period = 2 * (num_frames - 1)
    out = []
    for k in range(t - half, t + half + 1):
        m = k % period
        out.append(period - m if m > num_frames - 1 else m)
    return out


class NLMeansDenoise(Stage):
    """Temporal non-local means over a mirrored window of frames (OpenCV).

    Input/output: (T, H, W, 3) uint8 RGB, same size. OpenCV works on BGR and denoises
    luminance (strength h) and colour (strength h_color) separately in L*a*b*.
    """

    name = "nlmeans"
    label = "NL-means (OpenCV, temporal)"
    role = "denoise"

    def param_specs(self) -> Sequence[ParamSpec]:
        return (
            ParamSpec("h", "float", 5.0, "Luminance strength", 1.0, 30.0, 0.5,
                      help="Higher removes more noise and more detail; 3-10 suits generated clips."),
            ParamSpec("h_color", "float", 5.0, "Colour strength", 0.0, 30.0, 0.5),
            ParamSpec("template_window", "choice", 7, "Patch size (px)", choices=(3, 5, 7, 9)),
            ParamSpec("search_window", "choice", 21, "Search area (px)", choices=(11, 15, 21, 27, 35),
                      help="Larger finds more similar patches but is slower (time grows with its area)."),
            ParamSpec("temporal_window", "choice", 5, "Frames per window", choices=(1, 3, 5, 7)),
        )

    def process(self, clip: Clip, params: Mapping[str, Any], progress: Progress) -> Clip:
        bgr = np.ascontiguousarray(clip.frames[..., ::-1])
        size = int(params["temporal_window"])
        n = clip.num_frames
        out = np.empty_like(clip.frames)
        for t in range(n):
            window = [bgr[i] for i in mirrored_window(t, n, size)]
            den = cv2.fastNlMeansDenoisingColoredMulti(
                window,
                size // 2,
                size,
                None,
                float(params["h"]),
                float(params["h_color"]),
                int(params["template_window"]),
                int(params["search_window"]),
            )
            out[t] = den[..., ::-1]
            progress((t + 1) / n, f"nlmeans frame {t + 1}/{n}")
        return clip.with_frames(out)


class LanczosUpscale(Stage):
    """x2 / x4 Lanczos (8x8 kernel) resize per frame. (T, H, W, 3) uint8 -> (T, sH, sW, 3) uint8."""

    name = "lanczos"
    label = "Lanczos (OpenCV)"
    role = "upscale"

    def param_specs(self) -> Sequence[ParamSpec]:
        return (ParamSpec("scale", "choice", 4, "Scale factor", choices=(2, 4)),)

    def process(self, clip: Clip, params: Mapping[str, Any], progress: Progress) -> Clip:
        s = int(params["scale"])
        n, h, w = clip.num_frames, clip.height, clip.width
        out = np.empty((n, h * s, w * s, 3), dtype=np.uint8)
        for t in range(n):
            out[t] = cv2.resize(clip.frames[t], (w * s, h * s), interpolation=cv2.INTER_LANCZOS4)
            progress((t + 1) / n, f"lanczos x{s} frame {t + 1}/{n}")
        return clip.with_frames(out)
