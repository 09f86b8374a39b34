"""Ken Burns preview speed: median wall time of one full render, per configuration.

    python -m bench.kenburns [--runs 15] [--threads N]      (from the repository root)

Target: 16 frames at 512x320 in <= 0.3 s on CPU. Prints figures only; never asserts.
"""

from __future__ import annotations

import argparse
import statistics
import time

import cv2
import numpy as np

from core.camera import preset_path
from core.generators.base import GenerateRequest
from core.generators.kenburns import KenBurnsGenerator
from core.progress import Progress


def photo(width: int, height: int) -> np.ndarray:
    rng = np.random.default_rng(0)
    small = rng.integers(0, 256, (height // 16 + 2, width // 16 + 2, 3), dtype=np.uint8)
    img = cv2.resize(small, (width, height), interpolation=cv2.INTER_CUBIC)
    return cv2.add(img, rng.integers(0, 24, img.shape, dtype=np.uint8))


def median_seconds(fn, runs: int) -> float:
    fn()  # warm-up (first-call allocations, OpenCV dispatch)
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=15)
    parser.add_argument("--threads", type=int, default=None, help="cv2.setNumThreads (default: OpenCV's)")
    args = parser.parse_args()
    if args.threads is not None:
        cv2.setNumThreads(args.threads)

    gen = KenBurnsGenerator()
    cases = [
        # (photo size, output size, frames, preset, quality)
        ((512, 320), (512, 320), 16, "orbit-left", "high"),
        ((512, 320), (512, 320), 16, "orbit-left", "fast"),
        ((1920, 1080), (512, 320), 16, "push-in", "high"),
        ((4000, 3000), (512, 320), 16, "pan-left", "high"),
        ((4000, 3000), (512, 320), 16, "pan-left", "fast"),
        ((4000, 3000), (1024, 640), 16, "slide-left", "high"),
        ((4000, 3000), (1920, 1080), 48, "push-in", "high"),
    ]
    print(f"Ken Burns preview, median of {args.runs} runs, OpenCV {cv2.__version__}, "
          f"{cv2.getNumThreads()} OpenCV threads")
    print(f"{'photo':>10} {'output':>10} {'frames':>6} {'preset':>11} {'quality':>7} {'median s':>9} {'ms/frame':>9}")
    for (pw, ph), (w, h), frames, pid, quality in cases:
        image = photo(pw, ph)
        request = GenerateRequest(image, preset_path(pid, frames, aspect=w / h),
                                  params={"width": w, "height": h, "quality": quality})
        sec = median_seconds(lambda: gen.generate(request, Progress()), args.runs)
        print(f"{pw}x{ph:<5} {w}x{h:<5} {frames:>6} {pid:>11} {quality:>7} {sec:>9.4f} {1000 * sec / frames:>9.2f}")


if __name__ == "__main__":
    main()
