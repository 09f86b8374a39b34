"""Per-frame timings of the OpenCV post-processing stages at 512x320 (CPU).

Run from the repository root:  python -m bench.postprocess [--frames 6]
NL-means is timed on a short clip (it costs ~1-2 s per frame); Lanczos on 16 frames.
"""

from __future__ import annotations

import argparse
import time

import cv2
import numpy as np

from core.clip import Clip
from core.params import resolve_params
from core.postprocess.classical import LanczosUpscale, NLMeansDenoise
from core.progress import Progress


def make_clip(frames: int, height: int = 320, width: int = 512, seed: int = 0) -> Clip:
    rng = np.random.default_rng(seed)
    scene = cv2.GaussianBlur(rng.integers(0, 256, (height, width + 4 * frames, 3), dtype=np.uint8), (0, 0), 3)
    clean = np.stack([scene[:, 4 * i : 4 * i + width] for i in range(frames)]).astype(np.float64)
    noisy = clean + rng.normal(0, 6, clean.shape)
    return Clip(np.clip(noisy, 0, 255).astype(np.uint8), 8.0)


def time_stage(stage, clip: Clip, given: dict) -> float:
    params = resolve_params(stage.param_specs(), given)
    t0 = time.perf_counter()
    out = stage.process(clip, params, Progress())
    dt = time.perf_counter() - t0
    print(f"  {stage.name:8s} {given or 'defaults'}: {dt:.3f} s for {clip.num_frames} frames = "
          f"{dt / clip.num_frames:.4f} s/frame -> {out.width}x{out.height}")
    return dt


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=6, help="frames for NL-means (Lanczos uses 16)")
    args = ap.parse_args()
    print(f"512x320 input; OpenCV {cv2.__version__}, {cv2.getNumThreads()} threads")
    short = make_clip(args.frames)
    long = make_clip(16)
    den = NLMeansDenoise()
    time_stage(den, short, {})
    time_stage(den, short, {"h": 10, "h_color": 10})
    time_stage(den, short, {"temporal_window": 3})
    up = LanczosUpscale()
    time_stage(up, long, {"scale": 2})
    time_stage(up, long, {"scale": 4})


if __name__ == "__main__":
    main()
