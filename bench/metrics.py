"""Metric speed on CPU: core.metrics vs scikit-image on a 16-frame 512x320 clip, then the cost of
the full metric set (every measure the dashboard stores, flow included) at 512x320 and 2048x1280.

Run from the repository root:  python -m bench.metrics [--frames 16] [--repeats 3] [--no-large]
Prints both timings (best of the repeats), the ratio, the largest difference of the values, and
the full set's cost split into its parts.
"""

from __future__ import annotations

import argparse
import time

import cv2
import numpy as np

from core import metrics as M


def make_clip(frames: int, height: int, width: int, seed: int = 0) -> np.ndarray:
    """A panning textured scene with mild noise, like a generated walkthrough."""
    rng = np.random.default_rng(seed)
    scene = cv2.GaussianBlur(rng.integers(0, 256, (height + 64, width + 64 + 4 * frames, 3), dtype=np.uint8), (0, 0), 3)
    out = [scene[32 : 32 + height, 4 * i : 4 * i + width] for i in range(frames)]
    noisy = np.stack(out).astype(np.float64) + rng.normal(0, 3, (frames, height, width, 3))
    return np.clip(noisy, 0, 255).astype(np.uint8)


def best_of(fn, repeats: int) -> tuple[float, object]:
    best, value = float("inf"), None
    for _ in range(repeats):
        t0 = time.perf_counter()
        value = fn()
        best = min(best, time.perf_counter() - t0)
    return best, value


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=16)
    ap.add_argument("--width", type=int, default=512)
    ap.add_argument("--height", type=int, default=320)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--no-large", action="store_true", help="skip the 2048x1280 full set")
    args = ap.parse_args()

    from skimage.metrics import peak_signal_noise_ratio, structural_similarity

    f = make_clip(args.frames, args.height, args.width)
    pairs = range(len(f) - 1)

    def ref_rgb():
        psnr = [peak_signal_noise_ratio(f[i], f[i + 1]) for i in pairs]
        ssim = [
            structural_similarity(f[i], f[i + 1], gaussian_weights=True, sigma=1.5, use_sample_covariance=False,
                                  data_range=255, channel_axis=-1)
            for i in pairs
        ]
        return np.array(psnr), np.array(ssim)

    def ours_rgb():
        return M.temporal_psnr(f), M.temporal_ssim(f)

    def ref_study():
        grey = [cv2.cvtColor(x, cv2.COLOR_RGB2GRAY) for x in f]
        return np.array([
            structural_similarity(grey[i], grey[i + 1], data_range=float(grey[i].max()) - float(grey[i].min()))
            for i in pairs
        ])

    def ours_study():
        return M.study_ssim(f)

    ours_rgb(), ours_study()  # warm-up (first OpenCV calls allocate thread pools)
    print(f"clip: {len(f)} frames {args.width}x{args.height}, {len(f) - 1} pairs; "
          f"OpenCV threads {cv2.getNumThreads()}; best of {args.repeats}")
    t_ref, (p_ref, s_ref) = best_of(ref_rgb, args.repeats)
    t_ours, (p_ours, s_ours) = best_of(ours_rgb, args.repeats)
    print(f"tPSNR + tSSIM (RGB, Gaussian 11/1.5): scikit-image {t_ref:.3f} s, core.metrics {t_ours:.3f} s, "
          f"ratio {t_ref / t_ours:.1f}x; max |dSSIM| {np.abs(s_ref - s_ours).max():.2e}, "
          f"max |dPSNR| {np.abs(p_ref - p_ours).max():.2e} dB")
    t_ref2, st_ref = best_of(ref_study, args.repeats)
    t_ours2, st_ours = best_of(ours_study, args.repeats)
    print(f"study tSSIM (grey, 7x7 uniform):      scikit-image {t_ref2:.3f} s, core.metrics {t_ours2:.3f} s, "
          f"ratio {t_ref2 / t_ours2:.1f}x; max |dSSIM| {np.abs(st_ref - st_ours).max():.2e}")
    t_all, _ = best_of(lambda: M.measure(f, common_size=(256, 160), study=True, reference_image=f[0]), args.repeats)
    print(f"measure() with common size, fidelity and study mode: {t_all:.3f} s")
    full_set(args.frames, 320, 512, args.repeats)
    if not args.no_large:
        full_set(args.frames, 1280, 2048, 1)


def full_set(frames: int, height: int, width: int, repeats: int) -> None:
    """The dashboard's full set for one chain: measure() at the clip's size and at the
    generator's 512x320 (computed once when equal), fidelity, study mode, flow measures."""
    from core import consistency as C

    f = make_clip(frames, height, width)
    ref = f[0]
    common = (512, 320)
    M.measure(f[:3], common_size=common)  # warm-up
    cpu0 = time.process_time()
    t_full, _ = best_of(lambda: M.measure(f, common_size=common, study=True, reference_image=ref), repeats)
    cpu_full = (time.process_time() - cpu0) / repeats
    t_old, _ = best_of(lambda: M.measure(f, common_size=common, study=True, reference_image=ref, flow=None), repeats)
    t_flow, fps = best_of(lambda: [C.scaled_flow_pair(f[i], f[i + 1]) for i in range(len(f) - 1)], repeats)
    t_pair, _ = best_of(lambda: [C.pair_consistency(f[i], f[i + 1], fps[i]) for i in range(len(f) - 1)], repeats)
    t_nr, _ = best_of(lambda: (C.laplacian_variance(f), C.gradient_energy(f), C.noise_sigma(f)), repeats)
    print(f"full metric set, {len(f)} frames {width}x{height} (+ common 512x320): {t_full:.3f} s wall, "
          f"{cpu_full:.3f} s CPU (all threads, mean per run) [without flow measures {t_old:.3f} s; at own size: "
          f"{C.DEFAULT_FLOW} flow both ways {t_flow:.3f} s, "
          f"warped measures {t_pair:.3f} s, sharpness+noise {t_nr:.3f} s]")


if __name__ == "__main__":
    main()
