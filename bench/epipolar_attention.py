"""Dense vs gathered epipolar attention in one full CamI2V UNet forward, paired in one run.

Weight-rule CamI2V (no download), `--frames` frames at the preset's size, one orbit camera (its
straight epipolar lines are where the gathered form should win), fp32 on the CPU:

* per masked level: the mask's share of allowed scores, the time to prepare each form once per
  video, and the form the automatic rule picks;
* full UNet forwards (batch 1, or 2 with `--cfg`) alternating dense / gathered, `--repeat` each,
  after one untimed warm-up forward (a process's first forward costs ~25 % more: allocation and
  page faults), with the mask preparation outside the timed calls (once per video, not per step);
* the largest difference between the two outputs (the same math, another summation order).

    python -m bench.epipolar_attention                     # cami2v-512, 16 frames (9 GiB)
    python -m bench.epipolar_attention --preset cami2v-256 --frames 8
    python -m bench.epipolar_attention --tiny --repeat 1   # smoke test

Prints figures only; never asserts.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import time

import numpy as np
import torch


def build(args):
    from core.models.cami2v import keymap
    from core.models.cami2v.config import get_preset, tiny_params
    from core.models.cami2v.model import LatentVideoDiffusion
    from core.models.weight_rule import fill_with_rule

    full = get_preset(args.preset)
    params = tiny_params(full.camera) if args.tiny else full
    with torch.device("meta"):
        model = LatentVideoDiffusion(params, parts=("unet", "pose_encoder"),
                                     component_presets="tiny" if args.tiny else "full")
    fill_with_rule(model, keymap.to_upstream, device="cpu", dtype=torch.float32)
    model.reset_buffers("cpu")
    return model.eval().requires_grad_(False)


def camera(model, frames: int, seed: int):
    from core.camera import preset_path

    p = model.params
    g = torch.Generator().manual_seed(seed)
    path = preset_path("orbit-left", num_frames=frames, aspect=p.width / p.height)
    rel = torch.from_numpy(np.asarray(path.relative_c2w(0), dtype=np.float64)).float()[None]
    K = torch.from_numpy(np.asarray(path.K(p.width, p.height), dtype=np.float64)).float()[None]
    return model.camera_condition(rel, K, translation_noise=torch.randn(1, frames, frames, 3, 1, generator=g))


def level_report(cond, model, frames: int) -> list[dict]:
    """Per masked level: density, preparation time of each form, what the automatic rule picks."""
    from core.models.cami2v.masked_attention import EpipolarMask

    p = model.params
    lh, lw = p.latent_size
    rows = []
    for level, mask in sorted(cond.epipolar_masks.items()):
        grid = (lh // level, lw // level)
        row = {"level": level, "grid": grid, "tokens": frames * grid[0] * grid[1],
               "allowed": float(mask.float().mean())}
        for name, gather in (("dense", False), ("gathered", True), ("auto", None)):
            t0 = time.perf_counter()
            em = EpipolarMask.prepare(mask, frames, grid, torch.float32, gather=gather)
            row[f"prepare_{name}_s"] = time.perf_counter() - t0
            if name != "dense":
                row[f"{name}_form"] = "gathered" if em.gathered else "dense"
                row[f"{name}_scores"] = em.density
        rows.append(row)
    return rows


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--preset", default="cami2v-512")
    ap.add_argument("--tiny", action="store_true")
    ap.add_argument("--frames", type=int, default=None, help="default: the preset's")
    ap.add_argument("--cfg", action="store_true", help="batch 2 (both CFG branches share one mask)")
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--threads", type=int, default=torch.get_num_threads())
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)

    model = build(args)
    p = model.params
    frames = args.frames or p.num_frames
    cond = camera(model, frames, args.seed)
    model.pose_encoder = None
    levels = level_report(cond, model, frames)
    for row in levels:
        print(json.dumps(row))

    g = torch.Generator().manual_seed(args.seed + 1)
    batch = 2 if args.cfg else 1
    lh, lw = p.latent_size
    x = torch.randn(batch, p.unet.in_channels, frames, lh, lw, generator=g)
    t = torch.full((batch,), 500, dtype=torch.long)
    ctx = torch.randn(batch, p.unet.text_tokens + frames * p.unet.image_tokens_per_frame, p.unet.context_dim,
                      generator=g)
    fs = torch.full((batch,), 10, dtype=torch.long)
    forms = {"dense": dataclasses.replace(cond, gather=False), "gathered": dataclasses.replace(cond, gather=True)}
    out, times = {}, {k: [] for k in forms}
    with torch.no_grad():
        for name, c in forms.items():  # prepare once per video, outside the timed calls
            for level in c.epipolar_masks:
                c.attention_mask(level, (lh // level, lw // level), torch.float32)
        model.unet(x, t, ctx, fs, forms["dense"])  # warm-up, untimed
        for r in range(args.repeat):
            for name in (("dense", "gathered") if r % 2 == 0 else ("gathered", "dense")):
                t0 = time.perf_counter()
                out[name] = model.unet(x, t, ctx, fs, forms[name])
                times[name].append(time.perf_counter() - t0)
                print(f"{name}: {times[name][-1]:.1f} s", flush=True)
    d, gth = statistics.median(times["dense"]), statistics.median(times["gathered"])
    diff = float((out["dense"] - out["gathered"]).abs().max())
    scale = float(out["dense"].abs().max())
    print(json.dumps({"preset": args.preset + (" (tiny)" if args.tiny else ""), "frames": frames, "batch": batch,
                      "threads": args.threads, "dense_s": times["dense"], "gathered_s": times["gathered"],
                      "ratio_dense_over_gathered": d / gth, "max_abs_diff": diff, "max_abs_out": scale}))


if __name__ == "__main__":
    main()
