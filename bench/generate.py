"""Time one CamI2V-family generation with weights from the deterministic rule (no download).

Builds a preset straight onto the chosen device and dtype, runs the full pipeline (VAE, CLIP,
camera condition, DDIM with batched CFG, decode) on a synthetic photo and a preset camera path,
and prints seconds per stage and peak memory. Timings are printed, never asserted.

Run from the repository root:

    python -m bench.generate                          # cami2v-512, 25 steps, CUDA bf16 if available
    python -m bench.generate --preset cami2v-256 --steps 50 --dtype fp16
    python -m bench.generate --tiny --steps 3         # CPU smoke test with the tiny config
"""

from __future__ import annotations

import argparse
import resource
import time

import numpy as np
import torch

from core.camera import preset_path
from core.models.cami2v import keymap
from core.models.cami2v.config import PRESETS, get_preset, tiny_params
from core.models.cami2v.model import LatentVideoDiffusion
from core.models.cami2v.pipeline import CamI2VPipeline, CamI2VRequest, SamplingOptions
from core.models.weight_rule import fill_with_rule

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


def synthetic_photo(width: int, height: int) -> np.ndarray:
    y, x = np.mgrid[0:height, 0:width]
    img = np.stack([x * 255 // max(width - 1, 1), y * 255 // max(height - 1, 1),
                    ((x // 32 + y // 32) % 2) * 255], -1)
    return img.astype(np.uint8)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--preset", default="cami2v-512", choices=sorted(PRESETS))
    ap.add_argument("--tiny", action="store_true", help="tiny test config of the preset's camera variant")
    ap.add_argument("--steps", type=int, default=25)
    ap.add_argument("--cfg", type=float, default=5.5)
    ap.add_argument("--camera-cfg", type=float, default=1.0)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--dtype", choices=sorted(DTYPES), default=None,
                    help="default: bf16 on CUDA (fp16 where bf16 is unsupported), fp32 on CPU")
    ap.add_argument("--decode-chunk", type=int, default=4)
    ap.add_argument("--unbatched-cfg", action="store_true")
    ap.add_argument("--repeat", type=int, default=1, help="runs after the first (warm-up) one")
    args = ap.parse_args(argv)

    device = torch.device(args.device)
    if args.dtype is None:
        if device.type == "cuda":
            dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        else:
            dtype = torch.float32
    else:
        dtype = DTYPES[args.dtype]

    full = get_preset(args.preset)
    params = tiny_params(full.camera) if args.tiny else full
    t0 = time.perf_counter()
    with torch.device("meta"):
        model = LatentVideoDiffusion(params, component_presets="tiny" if args.tiny else "full")
    fill_with_rule(model, keymap.to_upstream, device=device, dtype=dtype)
    model.reset_buffers(device)
    model.eval()
    build_s = time.perf_counter() - t0
    n_params = sum(p.numel() for p in model.parameters())
    print(f"{params.name}: {n_params / 1e9:.3f} B parameters, {params.width}x{params.height}, "
          f"{params.num_frames} frames, {device} {str(dtype).removeprefix('torch.')}; built in {build_s:.1f} s")
    if device.type == "cuda":
        print(f"weights on GPU: {torch.cuda.memory_allocated(device) / 2**30:.2f} GiB ({torch.cuda.get_device_name(device)})")

    pipe = CamI2VPipeline(model)
    path = preset_path("orbit-left", num_frames=params.num_frames, aspect=params.width / params.height)
    options = SamplingOptions(steps=args.steps, cfg_scale=args.cfg, camera_cfg=args.camera_cfg,
                              decode_chunk=args.decode_chunk, batched_cfg=not args.unbatched_cfg)
    request = CamI2VRequest(synthetic_photo(params.width, params.height), path, "a bright living room",
                            seed=123, options=options)
    for run in range(1 + args.repeat):
        result = pipe.generate(request)
        t = result.info["timings_s"]
        label = "warm-up" if run == 0 and args.repeat else f"run {run}"
        mem = (f"peak GPU {result.info['peak_gpu_gib']:.2f} GiB (torch.cuda.max_memory_allocated)"
               if device.type == "cuda" else
               f"peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20:.2f} GiB")
        print(f"{label}: total {t['total']:.2f} s = conditioning {t['conditioning']:.2f} + sampling {t['sampling']:.2f} "
              f"({t['sampling'] / args.steps:.3f} s/step) + decode {t['decode']:.2f}; {mem}")


if __name__ == "__main__":
    main()
