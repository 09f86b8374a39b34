"""Real-ESRGAN x4 (general-x4v3 and x4plus) vs Lanczos x4 on the CPU: seconds and peak memory.
Prints figures; asserts nothing.

    python -m bench.realesrgan                         # 16 frames of 512x320, x4, on the CPU
    python -m bench.realesrgan --frames 4 --threads 1  # quicker; one intra-op thread

Each upscaler runs in its own process (the stage exactly as a job runs it: weights loaded with
spandrel, tiled, fp32 on the CPU), so its peak resident memory (ru_maxrss) is its own; the
baseline is that process's peak after loading, before upscaling. The weights are random values
in the released files' layouts (no download needed): speed does not depend on the values.
Upscale-A-Video is not run: it needs a CUDA GPU (bench/upscale_a_video.py measures it there); on
a CPU its 30 diffusion steps over a 2.9 GB UNet would take hours for this clip.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
UPSCALERS = ("lanczos", "realesrgan", "realesrgan-x4plus")


def make_clip(t: int, h: int, w: int) -> np.ndarray:
    """(T, H, W, 3) uint8: gradients, fine stripes, a moving disc and mild noise."""
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    rng = np.random.default_rng(0)
    frames = []
    for i in range(t):
        img = np.stack([60 + 100 * xx / w * (c + 1) / 3 + 40 * yy / h for c in range(3)], axis=-1)
        img += 20 * np.sin(xx / 2.5 + i)[..., None]
        img[(yy - h / 3) ** 2 + (xx - w / 4 - 4 * i) ** 2 < (h / 6) ** 2] = (200, 80, 60)
        frames.append(img + rng.standard_normal(img.shape).astype(np.float32) * 4)
    return np.clip(np.round(np.stack(frames)), 0, 255).astype(np.uint8)


def released_files(folder: Path) -> None:
    """Random weights in the layouts of the three released files, under the registry's paths."""
    import torch

    from core.postprocess.spandrel_import import import_spandrel

    import_spandrel()
    from spandrel.architectures.Compact import Compact

    shipped = json.loads((REPO / "models.json").read_text())["models"]
    torch.manual_seed(0)
    for role in ("checkpoint", "checkpoint_wdn"):
        net = Compact(num_in_ch=3, num_out_ch=3, num_feat=64, num_conv=32, upscale=4, act_type="prelu")
        _save(folder, shipped["realesrgan"], role, {"params": net.state_dict()})
    g = torch.Generator().manual_seed(1)
    sd = {}

    def put(name, out_c, in_c, scale=1.0):
        sd[f"{name}.weight"] = torch.randn(out_c, in_c, 3, 3, generator=g) * scale * (2 / (in_c * 9)) ** 0.5
        sd[f"{name}.bias"] = torch.zeros(out_c)

    put("conv_first", 64, 3)
    for i in range(23):  # RRDBNet as released: 23 blocks of 3 residual dense blocks of 5 convs
        for r in (1, 2, 3):
            for j in range(1, 6):
                put(f"body.{i}.rdb{r}.conv{j}", 64 if j == 5 else 32, 64 + 32 * (j - 1), 0.1)
    for name in ("conv_body", "conv_up1", "conv_up2", "conv_hr"):
        put(name, 64, 64)
    put("conv_last", 3, 64)
    _save(folder, shipped["realesrgan-x4plus"], "checkpoint", {"params_ema": sd})


def _save(folder: Path, entry: dict, role: str, obj: dict) -> None:
    import torch

    path = folder / next(f["path"] for f in entry["files"] if f["role"] == role)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(obj, path)


def run_one(name: str, folder: Path, frames: int, height: int, width: int, threads: int, tile: int) -> dict:
    """One upscaler in this process: {"seconds", "baseline_gib", "peak_gib", "out"}."""
    import torch

    from core.clip import Clip
    from core.postprocess.chains import create_stage
    from core.progress import as_progress
    from core.registry import Registry

    if threads:
        torch.set_num_threads(threads)
    clip = Clip(make_clip(frames, height, width), 8.0)
    if name == "lanczos":
        stage, params = create_stage("lanczos"), {"scale": 4}
    else:
        from core.postprocess.realesrgan import RealESRGANStage

        shipped = json.loads((REPO / "models.json").read_text())["models"]
        entry = dict(shipped[name])  # random weights: the released checksums do not apply
        entry["files"] = [{k: v for k, v in f.items() if k not in ("sha256", "size")} for f in entry["files"]]
        stage = RealESRGANStage(Registry.from_dict({"models": {name: entry}}, root=folder), name, device="cpu")
        stage.network()  # load before timing: a resident model is what a job normally finds
        params = {"scale": 4, "tile": tile}
    baseline = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    t0 = time.perf_counter()
    out = stage.process(clip, params, as_progress(None))
    seconds = time.perf_counter() - t0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    return {"seconds": seconds, "baseline_gib": baseline, "peak_gib": peak,
            "out": f"{out.num_frames}x{out.width}x{out.height}", "threads": torch.get_num_threads()}


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=16)
    ap.add_argument("--x4plus-frames", type=int, default=None,
                    help="frames for x4plus (default --frames; it is ~15x slower, so fewer may be wanted on a "
                         "CPU; its time is then also given scaled to --frames)")
    ap.add_argument("--size", default="512x320", help="WxH of the input clip")
    ap.add_argument("--threads", type=int, default=0, help="torch intra-op threads (0: torch's default)")
    ap.add_argument("--tile", type=int, default=256, help="Real-ESRGAN tile size in input pixels (0: whole frames)")
    ap.add_argument("--only", choices=UPSCALERS, default=None, help=argparse.SUPPRESS)
    ap.add_argument("--folder", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    width, height = (int(v) for v in args.size.lower().split("x"))
    if args.only:
        res = run_one(args.only, Path(args.folder), args.frames, height, width, args.threads, args.tile)
        print(json.dumps(res))
        return
    print(f"x4 of {args.frames} frames {width}x{height} on the CPU (tile {args.tile}, threads "
          f"{args.threads or 'default'}); each row in its own process")
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        released_files(Path(tmp))
        for name in UPSCALERS:
            n = args.x4plus_frames if name == "realesrgan-x4plus" and args.x4plus_frames else args.frames
            cmd = [sys.executable, "-m", "bench.realesrgan", "--only", name, "--folder", tmp,
                   "--frames", str(n), "--size", args.size, "--threads", str(args.threads),
                   "--tile", str(args.tile)]
            done = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True)
            if done.returncode != 0:
                print(f"{name:20s} failed: {done.stderr.strip().splitlines()[-1:]}")
                continue
            r = results[name] = json.loads(done.stdout.strip().splitlines()[-1])
            r["per_frame"] = r["seconds"] / n
            scaled = f" (~{r['per_frame'] * args.frames:.0f} s for {args.frames} frames)" if n != args.frames else ""
            print(f"{name:20s} {n:3d} frames {r['seconds']:8.1f} s{scaled}  ({r['per_frame']:6.2f} s/frame)  "
                  f"peak RSS {r['peak_gib']:.2f} GiB (after loading {r['baseline_gib']:.2f} GiB)  "
                  f"-> {r['out']}  threads {r['threads']}")
    base = results.get("lanczos")
    if base:
        for name in UPSCALERS[1:]:
            if name in results:
                print(f"{name} / lanczos time per frame: {results[name]['per_frame'] / base['per_frame']:.0f}x")
    print("upscale-a-video      not run: needs a CUDA GPU (see bench/upscale_a_video.py); far too slow on a CPU")


if __name__ == "__main__":
    main()
