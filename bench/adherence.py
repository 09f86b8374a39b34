"""Camera adherence: wall time and scores of each pose estimator on Ken Burns clips.

    python -m bench.adherence [--frames 16] [--size 512x320] [--presets push-in,pan-left,...]

The clips are Ken Burns renders of a procedural texture (a plane seen through the requested
camera), so the requested path is the true one and every score measures the estimator alone.
Prints figures only; never asserts.
"""

from __future__ import annotations

import argparse
import time

import cv2
import numpy as np

from core.adherence import measure_adherence, pycolmap_available
from core.camera import preset_path
from core.clip import Clip
from core.generators.kenburns import render_kenburns


def textured_photo(width: int = 1536, height: int = 960, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    img = np.zeros((height, width, 3), np.float32)
    for cell in (3, 12, 48):
        noise = rng.random((height // cell + 2, width // cell + 2, 3)).astype(np.float32)
        img += cv2.resize(noise, (width, height), interpolation=cv2.INTER_CUBIC)[:height, :width] / 3
    img = np.clip(img * 255, 0, 255).astype(np.uint8)
    for _ in range(400):
        colour = tuple(int(v) for v in rng.integers(0, 256, 3))
        x, y, r = int(rng.integers(0, width)), int(rng.integers(0, height)), int(rng.integers(3, 40))
        cv2.circle(img, (x, y), r, colour, -1) if rng.random() < 0.5 else \
            cv2.rectangle(img, (x, y), (x + r, y + int(rng.integers(3, 40))), colour, -1)
    return img


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=16)
    parser.add_argument("--size", default="512x320")
    parser.add_argument("--presets", default="push-in,slide-left,orbit-left,pan-left,tilt-up")
    args = parser.parse_args()
    width, height = (int(v) for v in args.size.lower().split("x"))
    methods = ["opencv"] + (["pycolmap", "auto"] if pycolmap_available() else [])
    if "pycolmap" not in methods:
        print("pycolmap is not installed: only the OpenCV estimator is measured")
    photo = textured_photo()
    print(f"{args.frames} frames at {width}x{height}; RotErr in radians (summed), TransErr and CamMC relative")
    print(f"{'preset':<12} {'method':<8} {'used':<9} {'seconds':>8} {'RotErr':>8} {'TransErr':>9} {'CamMC':>8}  note")
    for preset in args.presets.split(","):
        path = preset_path(preset, args.frames, aspect=width / height)
        frames, _ = render_kenburns(photo, path, width, height)
        clip = Clip(frames, 10.0)
        for method in methods:
            t0 = time.perf_counter()
            out = measure_adherence(clip, path, method=method)
            seconds = time.perf_counter() - t0
            if not out["available"]:
                print(f"{preset:<12} {method:<8} {'-':<9} {seconds:8.2f} {'-':>8} {'-':>9} {'-':>8}  {out['reason']}")
                continue
            note = "; ".join(out["notes"] + ([out["fallback_reason"]] if "fallback_reason" in out else []))
            print(f"{preset:<12} {method:<8} {out['estimator']:<9} {seconds:8.2f} {out['RotErr']:8.4f} "
                  f"{out['TransErr']:9.4f} {out['CamMC']:8.4f}  {note}")


if __name__ == "__main__":
    main()
