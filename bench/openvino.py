"""PyTorch fp32 against the OpenVINO backends on the CPU, side by side.

Weight-rule CamI2V-256 (no download), 256x256 x 16 frames, an orbit camera path:

* one UNet forward (batch 1, with the camera condition), median of `--repeat` runs;
* one `--steps`-step generation: DDIM with batched CFG through the same denoiser adapter and
  sampler as the studio (`core.sampling`), then the VAE decode, median of `--gen-repeat` runs.

Backends (phases): torch; openvino (fp32 weights, f32 compute: the exact one); openvino-int8 (as
shipped: int8 weights, bf16 compute where the CPU has it); and two overrides from the same IR
that show where the speed comes from, openvino-bf16 (fp32 weights, bf16 compute) and
openvino-int8-f32 (int8 weights, f32 compute).

The conditioning is built once in PyTorch and shared by every backend: the photo's VAE latent
and the camera condition (pose encoder + epipolar masks) from the real modules, the text and
image tokens as fixed random tensors of the right shape (the CLIP towers run once per video and
are not part of what the backends change).

Every step runs in its own process, one after the other: torch, then the conversion to OpenVINO
IR (one process per batch size, 1 for the forward and 2 for CFG), then each OpenVINO backend, so
that peak memory is each step's own. Printed: seconds, ratio to PyTorch, peak RSS, the UNet
output error, PSNR of the decoded frames against PyTorch fp32, and the study's temporal MSE,
sharpness (Laplacian variance) and brightness (mean grey) of each video.

Memory and time on a 2-core AMX Xeon (24 GiB): the PyTorch phase peaks at 9.7 GiB; converting
the UNet at batch 2 took 7.3 min and 18.7 GiB (batch 1: about 3 min, 15 GiB); two conversions
in one process went past 21 GiB. The OpenVINO phases peak at 10-17 GiB (the memory-mapped IR
counts). The whole run took about 50 minutes.

    python -m bench.openvino                  # the full comparison (needs ~20 GiB free)
    python -m bench.openvino --tiny --steps 2 # smoke test with the tiny config
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import torch

# OpenVINO phases are "<backend>[-bf16|-f32]": the backend as shipped ("openvino": f32 compute;
# "openvino-int8": int8 weights, bf16 compute where the CPU has it), or with its compute precision
# overridden, from the same IR.
PHASES = ("torch", "openvino", "openvino-int8", "openvino-bf16", "openvino-int8-f32")
STEPS = ("torch", "convert") + PHASES[1:]  # processes, in order
ROOT = Path(__file__).resolve().parents[1]


class PeakRSS:
    """Peak resident memory of this process while the block runs (sampled every 20 ms)."""

    def __enter__(self) -> "PeakRSS":
        self.peak = self._rss()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self._rss())

    def _poll(self) -> None:
        while not self._stop.wait(0.02):
            self.peak = max(self.peak, self._rss())

    @staticmethod
    def _rss() -> int:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _params(args):
    from core.models.cami2v.config import get_preset, tiny_params

    full = get_preset(args.preset)
    return tiny_params(full.camera) if args.tiny else full


def _build(args, parts, device="cpu"):
    from core.models.cami2v import keymap
    from core.models.cami2v.model import LatentVideoDiffusion
    from core.models.weight_rule import fill_with_rule

    params = _params(args)
    with torch.device("meta"):
        model = LatentVideoDiffusion(params, parts=parts, component_presets="tiny" if args.tiny else "full")
    if device == "cpu":
        fill_with_rule(model, keymap.to_upstream, device="cpu", dtype=torch.float32)
        model.reset_buffers("cpu")
    return model.eval().requires_grad_(False)


def make_inputs(args, model) -> dict:
    """The shared conditioning and noise (deterministic in `args.seed`)."""
    from bench.generate import synthetic_photo
    from core.camera import preset_path
    from core.models.cami2v.pipeline import cover_crop, fs_value

    p = model.params
    g = torch.Generator().manual_seed(args.seed)
    frames, (lh, lw) = p.num_frames, p.latent_size
    image, _ = cover_crop(synthetic_photo(p.width, p.height), p.width, p.height)
    z = model.vae.encode_video(image[:, :, None], noise=torch.randn(1, 4, 1, lh, lw, generator=g))
    tokens = p.unet.text_tokens + frames * p.unet.image_tokens_per_frame
    context = torch.randn(2, tokens, p.unet.context_dim, generator=g)
    path = preset_path("orbit-left", num_frames=frames, aspect=p.width / p.height)
    rel = torch.from_numpy(np.asarray(path.relative_c2w(0), dtype=np.float64)).float()[None]
    K = torch.from_numpy(np.asarray(path.K(p.width, p.height), dtype=np.float64)).float()[None]
    camera = model.camera_condition(rel, K, translation_noise=torch.randn(1, frames, frames, 3, 1, generator=g))
    return {
        "concat": z.float().expand(-1, -1, frames, -1, -1).contiguous(),
        "context": context,
        "fs": torch.tensor([fs_value(p.diffusion.fps_condition, 2)]),
        "camera": camera,
        "x_T": torch.randn(1, 4, frames, lh, lw, generator=g),
        "x_fwd": torch.randn(1, 8, frames, lh, lw, generator=g),
        "step_noise": [torch.randn(1, 4, frames, lh, lw, generator=g) for _ in range(args.steps)],
    }


def generate(args, params, unet, decode_video, inputs) -> np.ndarray:
    """DDIM with batched CFG through the studio's denoiser adapter and sampler, then decode."""
    from core.models.cami2v.pipeline import to_uint8_frames
    from core.sampling import Conditioning, GuidedDenoiser, Guidance, RecordedNoise, ddim_timesteps, make_schedule, sample_ddim

    d = params.diffusion
    schedule = make_schedule(d.num_timesteps, d.linear_start, d.linear_end, zero_terminal_snr=d.zero_terminal_snr,
                             parameterization=d.parameterization, dynamic_rescale=d.dynamic_rescale,
                             base_scale=d.base_scale, turning_step=d.turning_step)
    c = inputs
    cond = Conditioning(c["context"][:1], c["concat"], c["fs"], c["camera"])
    uncond = Conditioning(c["context"][1:], c["concat"], c["fs"], c["camera"]) if args.cfg != 1.0 else None
    denoiser = GuidedDenoiser(unet, schedule, cond, uncond, Guidance(scale=args.cfg, rescale=0.7), dtype=torch.float32)
    steps = ddim_timesteps(args.steps, schedule.num_timesteps, "uniform_trailing")
    latents = sample_ddim(denoiser, c["x_T"], schedule, steps, eta=1.0, noise=RecordedNoise(c["step_noise"]))
    return to_uint8_frames(decode_video(latents, chunk=4))


def run_phase(args) -> None:
    """One backend in this process; writes <out>/<phase>.npz and <phase>.json."""
    from core.models.openvino_backend import OpenVINOOptions, OpenVINOUNet, OpenVINOVideoDecoder

    torch.set_num_threads(args.threads)
    out = Path(args.out)
    t0 = time.perf_counter()
    inputs_file = out / "inputs.pt"
    if args.phase == "torch":
        model = _build(args, ("unet", "vae", "pose_encoder"))
        inputs = make_inputs(args, model)
        model.pose_encoder = None  # only needed for the camera condition (frees 0.8 GB at full size)
        torch.save(inputs, inputs_file)
        unet, decode = model.unet, model.vae.decode_video
    else:
        model = _build(args, ("vae",))
        meta = _build(args, ("unet",), device="meta")  # shapes only: the IR comes from the cache
        model.unet = meta.unet
        inputs = torch.load(inputs_file, weights_only=False)
        precision = next((x for x in ("bf16", "f32") if args.phase.endswith("-" + x)), None)
        backend = args.phase.removesuffix(f"-{precision}") if precision else args.phase
        opts = OpenVINOOptions.for_backend(backend, args.cache, threads=args.threads,
                                           **({"precision": precision} if precision else {}))
        unet = OpenVINOUNet(model.unet, opts, weights_id=args.weights_id)
        decode = OpenVINOVideoDecoder(model.vae, opts)
    build_s = time.perf_counter() - t0
    params = model.params
    p = inputs
    t_fwd = torch.full((1,), 500, dtype=torch.long)
    ctx1 = p["context"][:1]

    def forward():
        with torch.no_grad():
            return unet(p["x_fwd"], t_fwd, ctx1, p["fs"], p["camera"])

    # OpenVINO reads and compiles a shape on its first call: done outside the timed runs and
    # reported apart. The batch-1 graph (forwards) is released before the batch-2 one (CFG
    # generation) is compiled, so the process never holds two compiled 6 GB UNets.
    first_s = []
    if args.phase != "torch":
        t0 = time.perf_counter()
        forward()
        first_s.append(time.perf_counter() - t0)
    times = []
    with PeakRSS() as mem_fwd:
        for _ in range(args.repeat):
            t0 = time.perf_counter()
            y = forward()
            times.append(time.perf_counter() - t0)
    if args.phase != "torch":
        unet.network.release()
        t0 = time.perf_counter()
        with torch.no_grad():
            if args.cfg != 1.0:
                x2 = torch.cat([p["x_fwd"], p["x_fwd"]])
                unet(x2, t_fwd.expand(2), p["context"], p["fs"].expand(2), p["camera"])
            decode(torch.zeros_like(p["x_T"][:, :, :4]), chunk=4)
        first_s.append(time.perf_counter() - t0)
    gen_times = []
    with PeakRSS() as mem_gen:
        for _ in range(args.gen_repeat):
            t0 = time.perf_counter()
            frames = generate(args, params, unet, decode, inputs)
            gen_times.append(time.perf_counter() - t0)
    result = {"phase": args.phase, "build_s": build_s, "first_call_s": first_s or None,
              "forward_s": times, "generate_s": gen_times,
              "peak_rss_forward_gib": mem_fwd.peak / 2**30, "peak_rss_generate_gib": mem_gen.peak / 2**30,
              "max_rss_gib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20}
    np.savez(out / f"{args.phase}.npz", forward=y.numpy(), frames=frames)
    (out / f"{args.phase}.json").write_text(json.dumps(result, indent=1))  # kept if the conversion fails

    (out / f"{args.phase}.json").write_text(json.dumps(result, indent=1))
    print(json.dumps(result))


def convert_phase(args) -> None:
    """Convert the UNet to OpenVINO IR for one batch size (`--batch`: 1 for the forward, 2 for
    CFG) into the cache, in a process of its own: the weights, the trace and the converter's graph
    are all it holds, so its peak is one conversion's own (two conversions in one process went
    past 21 GiB at 256x256 x 16; the int8 phase compresses this float IR, no second trace)."""
    from core.models.openvino_backend import OpenVINOOptions, OpenVINOUNet, flatten_camera

    torch.set_num_threads(args.threads)
    out = Path(args.out)
    p = torch.load(out / "inputs.pt", weights_only=False)
    t0 = time.perf_counter()
    with PeakRSS() as mem:
        model = _build(args, ("unet",))
        build_s = time.perf_counter() - t0
        opts = OpenVINOOptions.for_backend("openvino", args.cache, threads=args.threads)
        ov_unet = OpenVINOUNet(model.unet, opts, weights_id=args.weights_id)
        t_fwd = torch.full((1,), 500, dtype=torch.long)
        layout, cam = flatten_camera(p["camera"])
        cam = [c.float() if c.is_floating_point() else c for c in cam]
        batch = args.batch
        x = p["x_fwd"].expand(batch, -1, -1, -1, -1).contiguous()
        ov_unet.network.prepare(layout, [x, t_fwd.expand(batch).contiguous(), p["context"][:batch],
                                         p["fs"].expand(batch).contiguous(), *cam])
    result = {"phase": "convert", "batch": batch, "build_s": build_s, "convert_s": time.perf_counter() - t0 - build_s,
              "conversions": ov_unet.network.conversions, "peak_rss_gib": mem.peak / 2**30}
    (out / f"convert-b{batch}.json").write_text(json.dumps(result, indent=1))
    print(json.dumps(result))


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return float("inf") if mse == 0 else 10 * np.log10(255.0**2 / mse)


def report(out: Path, steps: int = 4) -> str:
    from core.metrics import brightness, sharpness, temporal_mse

    res = {ph: json.loads((out / f"{ph}.json").read_text()) for ph in PHASES if (out / f"{ph}.json").is_file()}
    arrays = {ph: np.load(out / f"{ph}.npz") for ph in res}
    ref = arrays["torch"]
    base_f = statistics.median(res["torch"]["forward_s"])
    base_g = statistics.median(res["torch"]["generate_s"])
    rows = [f"| backend | UNet forward s (x vs torch) | {steps}-step generation s (x vs torch) | peak RSS GiB | "
            "UNet out max abs err | PSNR vs torch dB | temporal MSE | sharpness | brightness |",
            "|---|---|---|---|---|---|---|---|---|"]
    for ph, r in res.items():
        f, g = statistics.median(r["forward_s"]), statistics.median(r["generate_s"])
        fr = arrays[ph]["frames"]
        err = float(np.abs(arrays[ph]["forward"] - ref["forward"]).max())
        psnr = _psnr(fr, ref["frames"])
        rows.append(f"| {ph} | {f:.1f} ({base_f / f:.2f}x) | {g:.1f} ({base_g / g:.2f}x) | "
                    f"{max(r['peak_rss_forward_gib'], r['peak_rss_generate_gib']):.2f} | {err:.2e} | "
                    f"{'ref' if ph == 'torch' else f'{psnr:.1f}'} | {temporal_mse(fr).mean():.2f} | "
                    f"{sharpness(fr).mean():.1f} | {brightness(fr).mean():.1f} |")
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--preset", default="cami2v-256")
    ap.add_argument("--tiny", action="store_true", help="tiny test config (smoke test)")
    ap.add_argument("--steps", type=int, default=4)
    ap.add_argument("--cfg", type=float, default=5.5)
    ap.add_argument("--repeat", type=int, default=3, help="timed UNet forwards per backend (median)")
    ap.add_argument("--gen-repeat", type=int, default=1, help="timed generations per backend (median)")
    ap.add_argument("--threads", type=int, default=torch.get_num_threads())
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=str(ROOT / "outputs" / "bench-openvino"))
    ap.add_argument("--cache", default=str(ROOT / "ckpts" / "openvino-cache"))
    ap.add_argument("--phase", choices=STEPS, default=None, help=argparse.SUPPRESS)
    ap.add_argument("--batch", type=int, default=1, help=argparse.SUPPRESS)  # of a convert step
    ap.add_argument("--phases", default=",".join(STEPS), help="which steps to run (comma-separated)")
    args = ap.parse_args(argv)
    args.weights_id = f"weight-rule:{args.preset}:{'tiny' if args.tiny else 'full'}"
    Path(args.out).mkdir(parents=True, exist_ok=True)
    if args.phase:
        convert_phase(args) if args.phase == "convert" else run_phase(args)
        return
    from core.models.openvino_backend import require_openvino

    require_openvino()
    common = ["--preset", args.preset, "--steps", str(args.steps), "--cfg", str(args.cfg), "--repeat",
              str(args.repeat), "--gen-repeat", str(args.gen_repeat), "--threads", str(args.threads), "--seed",
              str(args.seed), "--out", args.out, "--cache", args.cache] + (["--tiny"] if args.tiny else [])
    for ph in args.phases.split(","):
        for batch in ((1, 2) if args.cfg != 1.0 else (1,)) if ph == "convert" else (1,):
            print(f"== {ph}" + (f" (batch {batch})" if ph == "convert" else ""), flush=True)
            subprocess.run([sys.executable, "-m", "bench.openvino", *common, "--phase", ph, "--batch", str(batch)],
                           check=True, cwd=ROOT)
    print(f"{args.preset}{' (tiny)' if args.tiny else ''}, {args.steps} steps, CFG {args.cfg}, "
          f"{args.threads} threads; medians of {args.repeat} forwards / {args.gen_repeat} generations")
    print(report(Path(args.out), args.steps))


if __name__ == "__main__":
    main()
