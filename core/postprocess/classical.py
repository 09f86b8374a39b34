"""Weight-free post-processing stages built on OpenCV: always available, CPU only.

* `NLMeansDenoise` ("nlmeans", role "denoise"): temporal non-local means
  (``cv2.fastNlMeansDenoisingColoredMulti``). Each output frame is denoised from a window of
  `temporal_window` frames centred on it; at the clip ends the window is mirrored without
  repeating the edge frame (frame 0 uses 2,1,0,1,2), so every frame gets a full window and the
  output has as many frames as the input. Cost grows with pixels x window x search area: at
  512x320 on 2 CPU threads the quick default (3 frames, 11 px search) takes about 0.3-0.7 s per
  frame, the study's setting (5 frames, 21 px) 1.5-4 s (bench/postprocess.py). A clip larger
  than `max_megapixels` (an x4-upscaled 2048x1280 clip is 2.6 MP: 16x the work, ~20 min) is
  denoised at a working size reached by an integer box downscale, and the removed noise
  (denoised - downscaled, a smooth residual) is upsampled and subtracted at full size. An x4
  Lanczos clip holds no detail above its source's resolution, so the noise lives at that scale
  too; set max_megapixels to 0 to denoise every pixel at full size (and wait).
  OpenCV's own thread pool is used as configured (``cv2.setNumThreads``); this module never
  changes it.
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
            ParamSpec("search_window", "choice", 11, "Search area (px)", choices=(11, 15, 21, 27, 35),
                      help="Larger finds more similar patches but is slower (time grows with its area; "
                           "21 is the study's setting, about 4x slower than 11)."),
            ParamSpec("temporal_window", "choice", 3, "Frames per window", choices=(1, 3, 5, 7),
                      help="5 is the study's setting, about 1.7x slower than 3."),
            ParamSpec("max_megapixels", "float", 0.25, "Working size cap (megapixels)", 0.0, 16.0, 0.05,
                      help="Larger clips (e.g. after x4 upscaling) are denoised at a box-downscaled size and "
                           "the removed noise is upsampled back; 0 denoises at full size (minutes per clip)."),
        )

    @staticmethod
    def working_factor(width: int, height: int, max_megapixels: float) -> int:
        """Smallest integer downscale s with (width/s) x (height/s) <= max_megapixels (1 = full size)."""
        if max_megapixels <= 0:
            return 1
        s = 1
        while (width // s) * (height // s) > max_megapixels * 1e6 and min(width // (s + 1), height // (s + 1)) >= 16:
            s += 1
        return s

    def process(self, clip: Clip, params: Mapping[str, Any], progress: Progress) -> Clip:
        size = int(params["temporal_window"])
        n = clip.num_frames
        s = self.working_factor(clip.width, clip.height, float(params.get("max_megapixels", 0.0)))
        if s > 1:
            ws, hs = clip.width // s, clip.height // s
            # INTER_AREA at an integer factor is an exact box average: a noise-preserving downscale.
            small = np.stack([cv2.resize(f, (ws, hs), interpolation=cv2.INTER_AREA) for f in clip.frames])
            den = self._denoise(small, params, size, progress, f" at {ws}x{hs} (1/{s} size)")
            out = np.empty_like(clip.frames)
            for t in range(n):
                residual = den[t].astype(np.float32) - small[t].astype(np.float32)
                up = cv2.resize(residual, (clip.width, clip.height), interpolation=cv2.INTER_CUBIC)
                out[t] = np.clip(clip.frames[t].astype(np.float32) + up + 0.5, 0, 255).astype(np.uint8)
            return clip.with_frames(out)
        return clip.with_frames(self._denoise(clip.frames, params, size, progress, ""))

    @staticmethod
    def _denoise(frames: np.ndarray, params: Mapping[str, Any], size: int, progress: Progress, where: str) -> np.ndarray:
        """(T, H, W, 3) uint8 RGB -> denoised, same shape; progress per frame."""
        bgr = np.ascontiguousarray(frames[..., ::-1])
        n = frames.shape[0]
        out = np.empty_like(frames)
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
            progress((t + 1) / n, f"nlmeans frame {t + 1}/{n}{where}")
        return out


class LanczosUpscale(Stage):
    """x2 / x4 Lanczos (8x8 kernel) resize per frame. (T, H, W, 3) uint8 -> (T, sH, sW, 3) uint8."""

    name = "lanczos"
    label = "Lanczos (OpenCV)"
    role = "upscale"

    def param_specs(self) -> Sequence[ParamSpec]:
        return (ParamSpec("scale", "choice", 4, "Scale factor", choices=(2, 4)),)

    def output_size(self, width: int, height: int, params: Mapping[str, Any]) -> tuple[int, int]:
        s = int(params.get("scale", 4))
        return width * s, height * s

    def process(self, clip: Clip, params: Mapping[str, Any], progress: Progress) -> Clip:
        s = int(params["scale"])
        n, h, w = clip.num_frames, clip.height, clip.width
        out = np.empty((n, h * s, w * s, 3), dtype=np.uint8)
        for t in range(n):
            out[t] = cv2.resize(clip.frames[t], (w * s, h * s), interpolation=cv2.INTER_LANCZOS4)
            progress((t + 1) / n, f"lanczos x{s} frame {t + 1}/{n}")
        return clip.with_frames(out)
