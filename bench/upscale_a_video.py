"""Upscale-A-Video: one full x4 upscale with the upstream defaults. Prints figures; asserts nothing.

    python -m bench.upscale_a_video                  # CUDA: 16 frames of 512x320, fp16, rule weights
    python -m bench.upscale_a_video --propagation 24,26,28 --dtype bf16
    python -m bench.upscale_a_video --tiny           # CPU smoke test with the tiny configs

Weights follow the project's deterministic weight rule (no download; speed does not depend on
the values). The default run is what the dashboard does for a CamI2V clip: 512x320 is tiled
into two 320x320 low-res tiles, 30 DDIM steps with guidance (batch 2) on 8-frame windows with
stride 6 (3 windows for 16 frames), then the VAE decodes 3 frames at a time in float32.
Target on one H100: <= 45 s and <= 40 GiB peak.
"""

from __future__ import annotations

import argparse
import time

import torch

from core.models.clip.text import TextTransformerParams
from core.models.upscale_a_video.loader import build_with_rule
from core.models.upscale_a_video.pipeline import UpscaleSettings, plan_tiles
from core.models.upscale_a_video.scheduler import temporal_windows
from core.models.upscale_a_video.vae import VideoVAEParams


def make_clip(t: int, h: int, w: int) -> torch.Tensor:
    """(1, 3, T, H, W) in [-1, 1]: colour gradients and a disc moving 4 px per frame."""
    yy, xx = torch.meshgrid(torch.arange(h, dtype=torch.float32), torch.arange(w, dtype=torch.float32), indexing="ij")
    frames = []
    for i in range(t):
        img = torch.stack([xx / w * (c + 1) / 3 + 0.3 * yy / h for c in range(3)])
        disc = (yy - h / 3) ** 2 + (xx - w / 4 - 4 * i) ** 2 < (h / 6) ** 2
        img[:, disc] = torch.tensor([0.8, 0.3, 0.2])[:, None]
        frames.append(img)
    return (torch.stack(frames, dim=1)[None] * 2 - 1).clamp(-1, 1)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=16)
    ap.add_argument("--width", type=int, default=512)
    ap.add_argument("--height", type=int, default=320)
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--noise-level", type=int, default=120)
    ap.add_argument("--guidance", type=float, default=6.0)
    ap.add_argument("--propagation", default="", help="step indices, e.g. 24,26,28 (builds RAFT too)")
    ap.add_argument("--tile-size", type=int, default=256)
    ap.add_argument("--vae", default="vae_3d", choices=("vae_3d", "vae_video"))
    ap.add_argument("--dtype", default="fp16", choices=("fp16", "bf16"))
    ap.add_argument("--tiny", action="store_true", help="tiny configs on the CPU (smoke test)")
    args = ap.parse_args()

    propagation = tuple(int(s) for s in args.propagation.split(",") if s.strip())
    if args.tiny:
        device, dtype = torch.device("cpu"), torch.float32
        torch.set_num_threads(1)  # tiny ops: a second thread only adds overhead
        frames, height, width = min(args.frames, 8), 24, 40
        settings = UpscaleSettings(steps=min(args.steps, 2), window=4, window_stride=3, force_tiling=True,
                                   tile_size=16, tile_overlap=4, propagation_steps=(), prompt="a living room")
        build = dict(unet_params="tiny",
                     vae_params=VideoVAEParams(block_out_channels=(32, 32, 32), layers_per_block=1, norm_num_groups=8),
                     text_params=TextTransformerParams(width=32, heads=2, layers=1, qkv_layout="separate",
                                                       skip_last_layers=0, projection_dim=None))
        propagation = ()
    else:
        if not torch.cuda.is_available():
            raise SystemExit("no CUDA GPU here; run with --tiny for the CPU smoke test")
        device = torch.device("cuda")
        dtype = {"fp16": torch.float16, "bf16": torch.bfloat16}[args.dtype]
        frames, height, width = args.frames, args.height, args.width
        settings = UpscaleSettings(noise_level=args.noise_level, guidance_scale=args.guidance, steps=args.steps,
                                   propagation_steps=propagation, tile_size=args.tile_size,
                                   prompt="a bright living room with a sofa and large windows")
        build = {}

    t0 = time.perf_counter()
    pipe = build_with_rule(device=device, dtype=dtype, vae_variant=args.vae,
                           with_propagation=bool(propagation), **build)
    build_s = time.perf_counter() - t0
    video = make_clip(frames, height, width)

    tiled = settings.force_tiling or height * width >= settings.tile_min_pixels
    tiles = plan_tiles(height, width, settings.tile_size, settings.tile_overlap) if tiled else [None]
    windows = temporal_windows(frames, settings.window, settings.window_stride)
    unet_calls = len(tiles) * settings.steps * len(set(windows))
    batch = 2 if settings.guidance_scale > 1 else 1
    print(f"device: {torch.cuda.get_device_name() if device.type == 'cuda' else 'cpu'}, dtype {dtype}, "
          f"torch {torch.__version__}")
    print(f"clip: {frames} frames {width}x{height} -> {4 * width}x{4 * height}; {len(tiles)} tile(s), "
          f"{len(set(windows))} window(s) of {settings.window} frames, {settings.steps} steps, batch {batch}, "
          f"propagation {list(propagation) or 'off'}")
    print(f"build with rule weights: {build_s:.1f} s")

    if device.type == "cuda":  # kernels and cuDNN plans for the shapes of the real run
        warm = UpscaleSettings(**{**settings.__dict__, "steps": 1, "propagation_steps": ()})
        t0 = time.perf_counter()
        pipe(video[:, :, : min(frames, settings.window)], warm, torch.Generator(device).manual_seed(0))
        torch.cuda.synchronize()
        print(f"warm-up (1 step, one window): {time.perf_counter() - t0:.1f} s")
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()

    generator = torch.Generator(device).manual_seed(10)
    t0 = time.perf_counter()
    out = pipe(video, settings, generator)
    if device.type == "cuda":
        torch.cuda.synchronize()
    seconds = time.perf_counter() - t0
    print(f"upscale: {seconds:.1f} s for {frames} frames ({seconds / frames:.2f} s/frame), "
          f"{unet_calls} UNet calls ({seconds / max(unet_calls, 1) * 1000:.0f} ms per call incl. the rest)")
    if device.type == "cuda":
        gib = 1024 ** 3
        print(f"peak GPU memory: {torch.cuda.max_memory_allocated() / gib:.1f} GiB allocated, "
              f"{torch.cuda.max_memory_reserved() / gib:.1f} GiB reserved")
    print(f"output: {tuple(out.shape)} {out.dtype} on {out.device}, finite {bool(torch.isfinite(out).all())}, "
          f"range [{out.min().item():.2f}, {out.max().item():.2f}]")


if __name__ == "__main__":
    main()
