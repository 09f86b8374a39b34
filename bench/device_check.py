"""One prepared command for a CUDA session: correctness against the CPU goldens, half-precision
error, speed and memory of every model, as one JSON report. No downloads: every model is built
with the deterministic weight rule (the golden fixtures' weights).

    python -m bench.device_check                    # on a CUDA machine, < 8 minutes on one H100
    python -m bench.device_check --out report.json  # also write the report to a file
    python -m bench.device_check --tiny             # tiny configs on the CPU: same code paths, same JSON
    python -m bench.device_check --skip generate_compiled,uav_x4

Without CUDA (and without --tiny) it prints one line and exits 0.

What it reports (`sections`), each entry {"ok": bool, ...} or {"error": "..."} / {"skipped": "..."}:

- golden_cami2v512:  fp32-CUDA UNet forward (with and without the camera) against upstream's CPU
                     golden outputs (max |y - ref| / max |ref|; the tests allow 1e-4).
- precision_cami2v512: bf16 and fp16 UNet (weights cast, no autocast) against fp32-CUDA.
- generate_eager / generate_compiled: CamI2V-512, 16 frames, 25 DDIM steps, CFG 5.5 (batched
                     cond+uncond), end to end from a photo: seconds and peak GiB; the compiled run
                     uses `UNet3D.compile_blocks()` and reports its compile (first-run) seconds.
- golden_uav:        the Upscale-A-Video UNet: fp32 against its golden, bf16/fp16 against fp32.
- uav_x4:            Upscale-A-Video x4 of 16 frames 512x320 (fp16, upstream defaults).
- golden_fastdvdnet: the fixture's denoising, fp32 against its golden, bf16/fp16 against fp32.
- fastdvdnet:        16 frames 512x320 (fp32, and fp16 on CUDA): seconds and peak GiB.
- golden_rife:       RIFE IFNet (both released variants) against the recorded outputs.
- sdpa_backends:     the attention kernels one CamI2V UNet forward ran (profiler op names), per dtype.
`device` names the GPU. Sections run in the order golden_cami2v512, precision_cami2v512,
sdpa_backends, generate_eager, golden_fastdvdnet, fastdvdnet, golden_rife, golden_uav, uav_x4,
generate_compiled (compilation last: its duration is the least predictable). Once `--budget`
seconds are spent the rest are skipped (reported as such); with --out the file is rewritten
after every section, and every section's JSON also goes to stderr as it ends.

The tiny mode replaces each full model by its tiny config and each upstream golden by the same
tiny model's CPU fp32 output (FastDVDnet and RIFE keep their real goldens: they are small).
Exit status: 0 when every run section is ok (or CUDA is absent), 1 otherwise.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import sys
import time
import traceback
from pathlib import Path
from typing import Any, Callable, Optional

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
GOLDEN = Path(os.environ.get("CAMI2V_SHARED", REPO.parent / "shared")) / "reference" / "golden"
RIFE_FIXTURE = REPO / "tests" / "fixtures" / "rife" / "rife_ifnet.safetensors"
GOLDEN_REL_TOL = 1e-4  # the golden tests' bound on max |ours - upstream| / max |upstream| (fp32)
HALF_REL_TOL = 0.1  # what the half-precision tests accept against fp32
HALF = {"bf16": torch.bfloat16, "fp16": torch.float16}
GIB = 2**30


# -- measuring and comparing ----------------------------------------------------------------------


def rel_err(y: torch.Tensor, ref: torch.Tensor) -> float:
    """max |y - ref| / max |ref|, in float64 on the CPU (NaN/inf in y give inf)."""
    y, ref = y.detach().double().cpu(), ref.detach().double().cpu()
    if y.shape != ref.shape:
        raise ValueError(f"shape {tuple(y.shape)} != reference {tuple(ref.shape)}")
    if not torch.isfinite(y).all():
        return float("inf")
    return float((y - ref).abs().max() / ref.abs().max().clamp_min(1e-30))


def compare(y: torch.Tensor, ref: torch.Tensor, tol: float, reference: str) -> dict[str, Any]:
    err = rel_err(y, ref)
    return {"rel_err": err, "tol": tol, "ok": err <= tol, "reference": reference}


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def start_measure(device: torch.device) -> float:
    """Synchronize, reset the peak-memory counter and start the clock."""
    sync(device)
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
    return time.perf_counter()


def end_measure(device: torch.device, t0: float) -> dict[str, Any]:
    """Synchronize, then seconds since `t0` and the peak memory (GPU allocated, or process RSS)."""
    sync(device)
    seconds = time.perf_counter() - t0
    if device.type == "cuda":
        return {"seconds": round(seconds, 3), "peak_gib": round(torch.cuda.max_memory_allocated(device) / GIB, 3),
                "peak_reserved_gib": round(torch.cuda.max_memory_reserved(device) / GIB, 3)}
    import resource

    return {"seconds": round(seconds, 3),
            "peak_gib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 3),
            "peak_kind": "process RSS"}


def all_ok(entry: Any) -> bool:
    if isinstance(entry, dict):
        if "error" in entry or entry.get("ok") is False:
            return False
        return all(all_ok(v) for v in entry.values())
    return True


class Check:
    """Runs the sections in order under one time budget and collects the report."""

    def __init__(self, device: torch.device, tiny: bool, budget_s: float, skip: set[str],
                 partial: Optional[Path] = None):
        self.device, self.tiny, self.budget_s, self.skip = device, tiny, budget_s, skip
        self.partial = partial  # rewritten after every section: a killed run keeps its figures
        self.t_start = time.perf_counter()
        self.sections: dict[str, Any] = {}
        self.report: dict[str, Any] = {}

    def run(self, name: str, fn: Callable[[], dict[str, Any]]) -> None:
        elapsed = time.perf_counter() - self.t_start
        if name in self.skip:
            self.sections[name] = {"skipped": "--skip"}
        elif elapsed > self.budget_s:
            self.sections[name] = {"skipped": f"time budget of {self.budget_s:.0f} s spent"}
        else:
            t0 = time.perf_counter()
            try:
                result = fn()
            except Exception as exc:  # one broken section must not lose the others' figures
                result = {"error": f"{type(exc).__name__}: {exc}",
                          "where": traceback.format_exc(limit=-3).strip().splitlines()[-3:]}
            result["section_seconds"] = round(time.perf_counter() - t0, 2)
            self.sections[name] = result
        print(f"[device_check] {name}: {json.dumps(self.sections[name], default=str)}", file=sys.stderr, flush=True)
        if self.partial is not None:
            self.partial.write_text(json.dumps({**self.report, "partial": True}, indent=1, default=str) + "\n")


# -- CamI2V ---------------------------------------------------------------------------------------


class CamI2V:
    """The CamI2V-512 model (tiny config in tiny mode), built once and shared by its sections."""

    def __init__(self, check: Check):
        from core.models.cami2v.config import get_preset, tiny_params
        from core.models.cami2v.model import build_with_weight_rule

        self.check = check
        dev = check.device
        if check.tiny:
            self.params = tiny_params("cami2v", num_frames=4)
            self.model = build_with_weight_rule(self.params, device=dev, component_presets="tiny")
        else:
            self.params = get_preset("cami2v-512")
            self.model = build_with_weight_rule(self.params, device=dev)
        self.inputs, self.camera_inputs, self.golden = self._unet_inputs()

    def _unet_inputs(self):
        """UNet inputs, camera inputs (rel_c2w, K, translation noise) and golden outputs or None."""
        p = self.params
        if not self.check.tiny:
            d = GOLDEN / "cami2v512"
            inputs = torch.load(d / "unet_inputs.pt", weights_only=False)
            g = torch.load(d / "camera_inputs_and_geometry.pt", weights_only=False)
            noise = torch.randn(1, 16, 16, 3, 1, generator=torch.Generator().manual_seed(1234))  # upstream's draw
            golden = {"camera": torch.load(d / "unet_output.pt", weights_only=False)["y"],
                      "no_camera": torch.load(d / "unet_output_no_camera.pt", weights_only=False)["y"]}
            return ({k: inputs[k] for k in ("x", "timesteps", "context", "fs")},
                    (g["relative_c2w"], g["camera_intrinsics"][:, 0], noise), golden)
        frames, (h, w), u = p.num_frames, p.latent_size, p.unet
        g = torch.Generator().manual_seed(0)
        inputs = {"x": torch.randn(1, 8, frames, h, w, generator=g), "timesteps": torch.tensor([499]),
                  "context": torch.randn(1, u.text_tokens + u.image_tokens_per_frame * frames, u.context_dim,
                                         generator=g), "fs": torch.tensor([3])}
        c2w = torch.eye(4).repeat(1, frames, 1, 1)
        c2w[0, :, 0, 3] = torch.arange(frames) * 0.1
        K = torch.tensor([[[p.width / 2, 0.0, p.width / 2], [0.0, p.width / 2, p.height / 2], [0.0, 0.0, 1.0]]])
        return inputs, (c2w, K, torch.randn(1, frames, frames, 3, 1, generator=g)), None

    def forward(self, unet, pose_encoder, dtype: torch.dtype, camera: bool) -> torch.Tensor:
        from core.models.cami2v.camera import build_camera_condition

        p, dev = self.params, self.check.device
        cam = None
        if camera:
            rel, K, noise = self.camera_inputs
            cam = build_camera_condition(p.camera, rel.to(dev), K.to(dev), p.height, p.width,
                                         pose_encoder=pose_encoder, epipolar=p.unet.epipolar,
                                         translation_noise=noise.to(dev), dtype=dtype)
        i = self.inputs
        with torch.no_grad():
            y = unet(i["x"].to(dev), i["timesteps"].to(dev), i["context"].to(dev), i["fs"].to(dev), cam)
        sync(dev)
        return y.float().cpu()

    def golden_section(self) -> dict[str, Any]:
        m = self.model
        out = {}
        self.fp32 = {}
        for case in ("camera", "no_camera"):
            t0 = start_measure(self.check.device)
            y = self.fp32[case] = self.forward(m.unet, m.pose_encoder, torch.float32, case == "camera")
            timing = end_measure(self.check.device, t0)
            if self.golden is not None:
                out[case] = {**compare(y, self.golden[case], GOLDEN_REL_TOL, "upstream CPU fp32 golden"), **timing}
            else:  # tiny: the same model's CPU fp32 output
                ref = self._cpu_reference(case == "camera")
                out[case] = {**compare(y, ref, GOLDEN_REL_TOL, "tiny model, CPU fp32"), **timing}
        return out

    def _cpu_reference(self, camera: bool) -> torch.Tensor:
        m = self.model
        if self.check.device.type == "cpu":
            return self.forward(m.unet, m.pose_encoder, torch.float32, camera)
        unet, pose = copy.deepcopy(m.unet).cpu(), copy.deepcopy(m.pose_encoder).cpu()
        saved, self.check.device = self.check.device, torch.device("cpu")
        try:
            return self.forward(unet, pose, torch.float32, camera)
        finally:
            self.check.device = saved

    def precision_section(self) -> dict[str, Any]:
        if not getattr(self, "fp32", None):
            raise RuntimeError("needs the fp32 outputs of golden_cami2v512")
        m, out = self.model, {}
        for name, dtype in HALF.items():
            unet, pose = copy.deepcopy(m.unet).to(dtype), copy.deepcopy(m.pose_encoder).to(dtype)
            t0 = start_measure(self.check.device)
            y = self.forward(unet, pose, dtype, camera=True)
            out[name] = {**compare(y, self.fp32["camera"], HALF_REL_TOL, "fp32 on this device"),
                         **end_measure(self.check.device, t0)}
            del unet, pose
        return out

    def sdpa_section(self) -> dict[str, Any]:
        """Which attention kernels one camera-conditioned UNet forward ran, per weight dtype."""
        from torch.profiler import ProfilerActivity, profile

        m, out = self.model, {}
        for name, dtype in {"fp32": torch.float32, **HALF}.items():
            unet, pose = (m.unet, m.pose_encoder) if dtype == torch.float32 else \
                (copy.deepcopy(m.unet).to(dtype), copy.deepcopy(m.pose_encoder).to(dtype))
            with profile(activities=[ProfilerActivity.CPU]) as prof:
                self.forward(unet, pose, dtype, camera=True)
            ops = {e.key: e.count for e in prof.key_averages()
                   if "scaled_dot_product" in e.key or "flash" in e.key.lower() or "efficient_attention" in e.key}
            out[name] = ops
            del unet, pose
        fp32_kernels = set(out["fp32"])
        out["ok"] = bool(fp32_kernels)
        return out

    def generate(self, dtype: torch.dtype, compiled: bool, steps: int) -> dict[str, Any]:
        """One full generation (photo -> frames) after a 1-step warm-up of the same shapes."""
        from core.camera import preset_path
        from core.models.cami2v.pipeline import CamI2VPipeline, CamI2VRequest, SamplingOptions

        m, dev = self.model, self.check.device
        if next(m.unet.parameters()).dtype != dtype:
            m.to(dtype)
        p = self.params
        yy, xx = np.mgrid[0:p.height, 0:p.width]
        photo = np.stack([xx * 255 // max(p.width - 1, 1), yy * 255 // max(p.height - 1, 1),
                          ((xx // 32 + yy // 32) % 2) * 255], axis=-1).astype(np.uint8)
        path = preset_path("orbit-left", num_frames=p.num_frames)
        pipe = CamI2VPipeline(m)
        result: dict[str, Any] = {"frames": p.num_frames, "size": f"{p.width}x{p.height}", "steps": steps,
                                  "cfg": 5.5, "dtype": str(dtype).removeprefix("torch.")}
        if compiled:
            import torch._dynamo

            # One compiled graph per block instance and shape: lift the default recompile limit.
            torch._dynamo.config.cache_size_limit = max(torch._dynamo.config.cache_size_limit, 256)
            # Tiny mode traces with dynamo but skips inductor's code generation (seconds, not minutes).
            kwargs = {"backend": "eager"} if self.check.tiny else {}
            result["compile"] = kwargs or {"backend": "inductor"}
            try:
                m.unet.compile_blocks(**kwargs)
            except Exception as exc:
                return {**result, "error": f"torch.compile unavailable ({type(exc).__name__}: {exc}); "
                                           "eager figures are in generate_eager"}
        warm = SamplingOptions(steps=1)
        t0 = start_measure(dev)
        try:
            pipe.generate(CamI2VRequest(photo, path, "a bright living room", seed=1, options=warm))
        except Exception as exc:
            if not compiled:
                raise
            self._uncompile()
            return {**result, "error": f"compiled run failed ({type(exc).__name__}: {exc}); "
                                       "the model was set back to eager"}
        result["warmup_1_step"] = end_measure(dev, t0)  # includes the compilation when compiled
        t0 = start_measure(dev)
        res = pipe.generate(CamI2VRequest(photo, path, "a bright living room", seed=2,
                                          options=SamplingOptions(steps=steps)))
        result.update(end_measure(dev, t0))
        result["timings_s"] = {k: round(v, 3) for k, v in res.info["timings_s"].items()}
        result["seconds_per_step"] = round(res.info["timings_s"]["sampling"] / steps, 4)
        result["ok"] = bool(np.isfinite(res.latents.float().cpu().numpy()).all())
        if compiled:
            self._uncompile()
        return result

    def _uncompile(self) -> None:
        """Drop the compiled wrappers (nn.Module.compile stores them per module)."""
        for module in self.model.unet.modules():
            if getattr(module, "_compiled_call_impl", None) is not None:
                module._compiled_call_impl = None


# -- Upscale-A-Video ------------------------------------------------------------------------------


def uav_unet_section(check: Check) -> dict[str, Any]:
    """The video UNet: fp32 against the golden (tiny: against its CPU fp32 run), then bf16/fp16."""
    from core.models.upscale_a_video.unet import build_unet, to_upstream_key
    from core.models.weight_rule import fill_with_rule

    dev = check.device
    if check.tiny:
        model = build_unet("tiny", device="cpu").eval()
        fill_with_rule(model, to_upstream_key, device="cpu", dtype=torch.float32)
        model.reset_buffers("cpu")
        g = torch.Generator().manual_seed(1)
        frames = 4
        inputs = (torch.randn(1, 4, frames, 12, 20, generator=g), torch.tensor([500]),
                  torch.randn(1, 3, frames, 12, 20, generator=g), torch.randn(1, 77, 32, generator=g),
                  torch.tensor([120]))
        with torch.no_grad():
            ref, reference = model(*inputs).float(), "tiny model, CPU fp32"
        model = model.to(dev)
    else:
        d = GOLDEN / "upscale_a_video"
        load = lambda name: torch.from_numpy(np.load(d / name))  # noqa: E731
        model = build_unet().eval()
        fill_with_rule(model, to_upstream_key, device=dev, dtype=torch.float32)
        model.reset_buffers(dev)
        inputs = (load("unet_in_sample.npy"), load("unet_in_timestep.npy"), load("unet_in_low_res.npy"),
                  load("unet_in_encoder_hidden_states.npy"), load("unet_in_class_labels.npy"))
        ref, reference = load("unet_out.npy"), "upstream CPU fp32 golden"

    def run(net, dtype):
        args = [a.to(dev, dtype) if a.is_floating_point() else a.to(dev) for a in inputs]
        t0 = start_measure(dev)
        with torch.no_grad():
            y = net(*args)
        return y.float().cpu(), end_measure(dev, t0)

    y32, timing = run(model, torch.float32)
    out: dict[str, Any] = {"fp32": {**compare(y32, ref, GOLDEN_REL_TOL, reference), **timing}}
    for name, dtype in HALF.items():
        half = copy.deepcopy(model).to(dtype)
        y, timing = run(half, dtype)
        out[name] = {**compare(y, y32, HALF_REL_TOL, "fp32 on this device"), **timing}
        del half
    return out


def uav_x4_section(check: Check) -> dict[str, Any]:
    """x4 of 16 frames 512x320 with the upstream defaults (tiny: a tiny clip and configs)."""
    from bench.upscale_a_video import make_clip
    from core.models.clip.text import TextTransformerParams
    from core.models.upscale_a_video.loader import build_with_rule
    from core.models.upscale_a_video.pipeline import UpscaleSettings
    from core.models.upscale_a_video.vae import VideoVAEParams

    dev = check.device
    if check.tiny:
        dtype, (frames, height, width) = torch.float32, (4, 24, 40)
        settings = UpscaleSettings(steps=2, window=4, window_stride=3, force_tiling=True, tile_size=16,
                                   tile_overlap=4, propagation_steps=(), prompt="a living room")
        build = dict(unet_params="tiny",
                     vae_params=VideoVAEParams(block_out_channels=(32, 32, 32), layers_per_block=1, norm_num_groups=8),
                     text_params=TextTransformerParams(width=32, heads=2, layers=1, qkv_layout="separate",
                                                       skip_last_layers=0, projection_dim=None))
    else:
        dtype, (frames, height, width) = torch.float16, (16, 320, 512)
        settings = UpscaleSettings(prompt="a bright living room with a sofa and large windows")
        build = {}
    pipe = build_with_rule(device=dev, dtype=dtype, **build)
    video = make_clip(frames, height, width)
    warm = UpscaleSettings(**{**settings.__dict__, "steps": 1, "propagation_steps": ()})
    pipe(video[:, :, : min(frames, settings.window)], warm, torch.Generator(dev).manual_seed(0))  # kernels, plans
    t0 = start_measure(dev)
    out = pipe(video, settings, torch.Generator(dev).manual_seed(10))
    result = {"frames": frames, "size_in": f"{width}x{height}", "size_out": f"{4 * width}x{4 * height}",
              "steps": settings.steps, "dtype": str(dtype).removeprefix("torch."), **end_measure(dev, t0)}
    result["ok"] = bool(torch.isfinite(out).all()) and tuple(out.shape[-2:]) == (4 * height, 4 * width)
    return result


# -- FastDVDnet and RIFE ---------------------------------------------------------------------------


def fastdvdnet_golden_section(check: Check) -> dict[str, Any]:
    from core.models.fastdvdnet import denoise_sequence
    from core.models.fastdvdnet import load_fastdvdnet

    d, dev = GOLDEN / "fastdvdnet", check.device
    noisy = np.load(d / "noisy_f32_THWC.npy")
    expected = torch.from_numpy(np.load(d / "denoised_f32_THWC.npy"))
    if check.tiny:  # the fixture's first 5 frames (one window), top-left corner
        noisy, expected = noisy[:5, :32, :48], None
    frames = torch.from_numpy(np.ascontiguousarray(noisy.transpose(0, 3, 1, 2)))
    out = {}
    y32 = None
    for name, dtype in {"fp32": torch.float32, **HALF}.items():
        model = load_fastdvdnet(d / "synthetic_weights_module_prefixed.pth", device=dev, dtype=dtype)
        t0 = start_measure(dev)
        y = denoise_sequence(model, frames.to(dev, dtype), 25 / 255).permute(0, 2, 3, 1)
        timing = end_measure(dev, t0)
        if dtype == torch.float32:
            y32 = y
            if expected is None:  # tiny: the same network on the CPU in fp32
                cpu = load_fastdvdnet(d / "synthetic_weights_module_prefixed.pth")
                ref, reference = denoise_sequence(cpu, frames, 25 / 255).permute(0, 2, 3, 1), "CPU fp32"
            else:
                ref, reference = expected, "upstream CPU fp32 golden"
            out[name] = {**compare(y, ref, GOLDEN_REL_TOL, reference), **timing}
        else:
            out[name] = {**compare(y, y32, HALF_REL_TOL, "fp32 on this device"), **timing}
    return out


def fastdvdnet_speed_section(check: Check) -> dict[str, Any]:
    from bench.fastdvdnet import make_clip, make_model
    from core.models.fastdvdnet import denoise_sequence

    dev = check.device
    frames, height, width = (5, 32, 48) if check.tiny else (16, 320, 512)
    clip = make_clip(frames, height, width)
    out = {"frames": frames, "size": f"{width}x{height}"}
    for name, dtype in ({"fp32": torch.float32} if dev.type == "cpu" else {"fp32": torch.float32, "fp16": torch.float16}).items():
        model = make_model(dev.type, dtype, optimize=True)
        denoise_sequence(model, clip[:5], 25 / 255)  # warm-up
        t0 = start_measure(dev)
        y = denoise_sequence(model, clip, 25 / 255)
        out[name] = {**end_measure(dev, t0), "ok": bool(torch.isfinite(y).all())}
    return out


def rife_golden_section(check: Check) -> dict[str, Any]:
    from safetensors.torch import load_file

    from core.models.rife import build_model, get_preset, rule_state_dict

    dev = check.device
    golden = load_file(str(RIFE_FIXTURE))
    out = {}
    for tag, version in {"heavy": "4.26.heavy", "v425": "4.25"}.items():
        cfg = get_preset(version)
        net = build_model(rule_state_dict(cfg), cfg, device=dev)
        t0 = start_measure(dev)
        with torch.no_grad():
            y = net.forward_full(golden["img0"].to(dev), golden["img1"].to(dev), 0.5).merged
        out[tag] = {**compare(y.float().cpu(), golden[f"{tag}_t0.5_merged"], GOLDEN_REL_TOL,
                              "upstream CPU fp32 golden"), **end_measure(dev, t0)}
    return out


# -- main -----------------------------------------------------------------------------------------


def device_info(device: torch.device) -> dict[str, Any]:
    info: dict[str, Any] = {"type": device.type, "torch": torch.__version__}
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        info.update(name=torch.cuda.get_device_name(device), total_gib=round(props.total_memory / GIB, 1),
                    capability=f"{props.major}.{props.minor}", cuda=torch.version.cuda,
                    cudnn=torch.backends.cudnn.version())
    else:
        info.update(name="cpu", threads=torch.get_num_threads())
    return info


def main(argv: Optional[list[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tiny", action="store_true", help="tiny configs on the CPU (test of the code paths)")
    ap.add_argument("--out", type=Path, help="also write the JSON report here")
    ap.add_argument("--steps", type=int, default=25, help="DDIM steps of the timed CamI2V generation")
    ap.add_argument("--budget", type=float, default=450.0, help="seconds; later sections are skipped after it")
    ap.add_argument("--skip", default="", help="comma-separated section names to skip")
    args = ap.parse_args(argv)

    if args.tiny:
        device = torch.device("cpu")
        torch.set_num_threads(1)  # tiny ops: more threads only add overhead
        steps = min(args.steps, 2)
    elif not torch.cuda.is_available():
        print("device_check: no CUDA device here; nothing to check (use --tiny for the CPU code-path test)")
        return 0
    else:
        device = torch.device("cuda")
        steps = args.steps
        # fp32 means fp32: TF32 would add ~1e-3 relative error to the golden comparison.
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False
        torch.backends.cudnn.benchmark = True

    check = Check(device, args.tiny, args.budget, {s.strip() for s in args.skip.split(",") if s.strip()},
                  partial=args.out)
    report: dict[str, Any] = {"device": device_info(device), "tiny": args.tiny, "sections": check.sections}
    check.report = report

    cami2v: dict[str, CamI2V] = {}

    def cami2v_model() -> CamI2V:
        if "model" not in cami2v:
            cami2v["model"] = CamI2V(check)
        return cami2v["model"]

    check.run("golden_cami2v512", lambda: cami2v_model().golden_section())
    check.run("precision_cami2v512", lambda: cami2v_model().precision_section())
    check.run("sdpa_backends", lambda: cami2v_model().sdpa_section())
    gen_dtype = torch.float32 if args.tiny else torch.bfloat16
    check.run("generate_eager", lambda: cami2v_model().generate(gen_dtype, compiled=False, steps=steps))
    check.run("golden_fastdvdnet", lambda: fastdvdnet_golden_section(check))
    check.run("fastdvdnet", lambda: fastdvdnet_speed_section(check))
    check.run("golden_rife", lambda: rife_golden_section(check))
    check.run("golden_uav", lambda: uav_unet_section(check))
    if device.type == "cuda":
        torch.cuda.empty_cache()
    check.run("uav_x4", lambda: uav_x4_section(check))
    # Last: compilation time is the least predictable part; everything else is reported already.
    check.run("generate_compiled", lambda: cami2v_model().generate(gen_dtype, compiled=True, steps=steps))
    cami2v.clear()

    report["seconds_total"] = round(time.perf_counter() - check.t_start, 1)
    report["ok"] = all(all_ok(v) for v in check.sections.values() if "skipped" not in v)
    text = json.dumps(report, indent=1, default=str)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")
    return 0 if report["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
