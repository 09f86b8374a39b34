"""Frame interpolation speed: x3 of a 16-frame 512x320 clip (10 -> 30 fps, 46 frames out).

    python -m bench.interpolate                       # classical DIS (+ blend baseline), CPU
    python -m bench.interpolate --rife --device cuda  # also RIFE 4.25 (weight-rule weights)

Prints seconds per run (best of --repeat) and per output frame. The clip is an example room
photo moved as a plane 3.3 px left and 1.2 px up per frame, with a disc moving faster on top
(so occlusions exist); the PSNR of the synthesised frames against the true in-between frames is printed too.
RIFE weights follow the deterministic weight rule (speed does not depend on the values; its
PSNR here is meaningless and not printed).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import cv2
import numpy as np

from core.clip import Clip
from core.postprocess.interpolate import interpolate


_PHOTO = Path(__file__).resolve().parents[1] / "assets" / "examples" / "living_room.jpg"
_cache: dict = {}


def scene(t: float, h: int, w: int) -> np.ndarray:
    """(H, W, 3) uint8 frame at time t (in source frames): an example room photo as a plane moving
    3.3 px left and 1.2 px up per frame (bicubic resampling), with a disc moving 9 px per frame
    over it (so some background is covered and uncovered)."""
    if "photo" not in _cache:
        img = cv2.cvtColor(cv2.imread(str(_PHOTO)), cv2.COLOR_BGR2RGB)
        _cache["photo"] = cv2.resize(img, (w + 160, h + 100), interpolation=cv2.INTER_AREA)
    m = np.float32([[1, 0, -40 + 3.3 * t], [0, 1, -30 + 1.2 * t]])  # output x -> source x - shift
    img = cv2.warpAffine(_cache["photo"], m, (w, h), flags=cv2.INTER_CUBIC | cv2.WARP_INVERSE_MAP)
    yy, xx = np.mgrid[0:h, 0:w]
    cx, cy = w / 3 + 9.0 * t, h / 2
    img[(xx - cx) ** 2 + (yy - cy) ** 2 < (h / 7) ** 2] = (220, 90, 40)
    return img


def psnr(a: np.ndarray, b: np.ndarray, m: int = 8) -> float:
    d = a[m:-m, m:-m].astype(np.float64) - b[m:-m, m:-m]
    return float(10 * np.log10(255.0**2 / max(np.mean(d * d), 1e-12)))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--frames", type=int, default=16)
    ap.add_argument("--width", type=int, default=512)
    ap.add_argument("--height", type=int, default=320)
    ap.add_argument("--factor", type=int, default=3)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--rife", action="store_true", help="also time RIFE 4.25")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--precision", default="fp32", choices=("fp32", "fp16", "bf16"))
    args = ap.parse_args()

    n, f = args.frames, args.factor
    clip = Clip(np.stack([scene(i, args.height, args.width) for i in range(n)]), 10.0)
    truth = {(i, j): scene(i + j / f, args.height, args.width) for i in range(n - 1) for j in range(1, f)}
    print(f"x{f} of {n} frames {args.width}x{args.height} ({(n - 1) * f + 1} frames out), "
          f"OpenCV threads {cv2.getNumThreads()}")

    def run(label: str, fn, quality: bool = True) -> None:
        best, out = float("inf"), None
        for _ in range(args.repeat):
            t0 = time.perf_counter()
            out = fn()
            best = min(best, time.perf_counter() - t0)
        made = (n - 1) * (f - 1)
        line = f"{label:>14}: {best:7.3f} s  ({1000 * best / made:6.1f} ms per new frame)"
        if quality:
            p = [psnr(out.frames[f * i + j], truth[(i, j)]) for (i, j) in truth]
            line += f"  PSNR vs true in-betweens {np.mean(p):5.2f} dB (min {np.min(p):5.2f})"
        print(line, flush=True)

    run("blend", lambda: interpolate(clip, f, "blend"))
    run("dis (medium)", lambda: interpolate(clip, f, "dis"))
    run("dis-fast", lambda: interpolate(clip, f, "dis-fast"))

    if args.rife:
        import torch

        from core.models.rife import build_model, get_preset, rule_state_dict
        from core.postprocess.rife import RIFEStage

        dtype = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}[args.precision]
        cfg = get_preset("4.25")
        net = build_model(rule_state_dict(cfg), cfg, device=args.device, dtype=dtype)
        stage = RIFEStage(network=net)
        with torch.inference_mode():
            stage.process(Clip(clip.frames[:2], 10.0), {"factor": f}, None)  # warm-up

            def go():
                out = stage.process(clip, {"factor": f}, None)
                if args.device.startswith("cuda"):
                    torch.cuda.synchronize()
                return out

            run(f"rife 4.25 {args.precision}", go, quality=False)
            print(f"(torch threads {torch.get_num_threads()}, device {args.device})")


if __name__ == "__main__":
    main()
