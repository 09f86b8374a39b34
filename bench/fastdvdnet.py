"""FastDVDnet: the plain per-window procedure vs ours (triplet cache + folded BatchNorm +
channels-last), on the same device. Prints figures; asserts nothing.

    python -m bench.fastdvdnet                      # 16 frames of 512x320 on the CPU
    python -m bench.fastdvdnet --frames 25 --device cuda --precision fp16

Weights follow the project's deterministic weight rule (no download needed); speed does not
depend on the values. The clip is smooth synthetic content plus Gaussian noise of sigma 25.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from core.models.fastdvdnet import (
    FastDVDnet,
    checkpoint_key_map,
    count_block_evaluations,
    denoise_sequence,
    denoise_sequence_reference,
    optimize_for_inference,
)
from core.models.weight_rule import fill_with_rule


def make_clip(t: int, h: int, w: int, sigma255: float = 25.0) -> torch.Tensor:
    """(T, 3, H, W) uint8: gradients, a moving disc, AWGN."""
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    rng = np.random.default_rng(0)
    frames = []
    for i in range(t):
        img = np.stack([60 + 100 * xx / w * (c + 1) / 3 + 40 * yy / h for c in range(3)], axis=-1)
        img[(yy - h / 3) ** 2 + (xx - w / 4 - 4 * i) ** 2 < (h / 6) ** 2] = (200, 80, 60)
        frames.append(img + rng.standard_normal(img.shape).astype(np.float32) * sigma255)
    x = np.clip(np.round(np.stack(frames)), 0, 255).astype(np.uint8)
    return torch.from_numpy(x).permute(0, 3, 1, 2).contiguous()


def make_model(device: str, dtype: torch.dtype, optimize: bool) -> FastDVDnet:
    model = FastDVDnet().eval().requires_grad_(False)
    kmap = checkpoint_key_map()
    fill_with_rule(model, lambda k: "module." + kmap[k])
    if optimize:
        optimize_for_inference(model)
    return model.to(device=device, dtype=dtype)


def timed(fn, device: str) -> tuple[float, torch.Tensor]:
    if device == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    out = fn()
    if device == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - start, out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=16)
    ap.add_argument("--width", type=int, default=512)
    ap.add_argument("--height", type=int, default=320)
    ap.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    ap.add_argument("--precision", default="fp32", choices=("fp32", "fp16", "bf16"))
    ap.add_argument("--batch-size", type=int, default=0, help="0: automatic")
    ap.add_argument("--repeat", type=int, default=1, help="runs per variant; the best is reported")
    args = ap.parse_args()

    dtype = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}[args.precision]
    clip = make_clip(args.frames, args.height, args.width)
    sigma = 25 / 255
    plain_model = make_model(args.device, dtype, optimize=False)
    fast_model = make_model(args.device, dtype, optimize=True)
    variants = {
        "plain per-window (upstream procedure, plain network)":
            lambda: denoise_sequence_reference(plain_model, clip, sigma),
        "plain per-window, optimised network":
            lambda: denoise_sequence_reference(fast_model, clip, sigma),
        "ours (triplet cache + optimised network)":
            lambda: denoise_sequence(fast_model, clip, sigma, batch_size=args.batch_size or None),
    }
    # Warm-up: first oneDNN / cuDNN calls for a shape pay for kernel selection.
    warm = clip[:2]
    denoise_sequence_reference(plain_model, warm, sigma)
    denoise_sequence(fast_model, warm, sigma, batch_size=args.batch_size or None)

    print(f"FastDVDnet, {args.frames} frames of {args.width}x{args.height}, device {args.device} "
          f"({torch.get_num_threads()} threads)" if args.device == "cpu" else
          f"FastDVDnet, {args.frames} frames of {args.width}x{args.height}, device "
          f"{torch.cuda.get_device_name()} {args.precision}")
    plain_evals, cached_evals = count_block_evaluations(args.frames)
    print(f"denoising-block evaluations: plain {plain_evals}, cached {cached_evals} "
          f"({plain_evals / cached_evals:.2f}x fewer)")
    best: dict[str, float] = {}
    outputs: dict[str, torch.Tensor] = {}
    for _ in range(args.repeat):
        for name, fn in variants.items():
            seconds, outputs[name] = timed(fn, args.device)
            best[name] = min(best.get(name, float("inf")), seconds)
    names = list(variants)
    base = best[names[0]]
    for name in names:
        print(f"  {name:55s} {best[name]:8.2f} s/clip  {best[name] / args.frames:6.3f} s/frame  "
              f"x{base / best[name]:.2f}")
    diff = (outputs[names[2]] - outputs[names[0]]).abs().max().item()
    print(f"max |ours - plain| = {diff:.2e} (on [0, 1] values)")


if __name__ == "__main__":
    main()
