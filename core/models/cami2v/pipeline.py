"""Photo + camera path -> video with a DynamiCrafter-family model (CamI2V, CameraCtrl, MotionCtrl).

One entry point, `CamI2VPipeline(model).generate(request)`, doing what the upstream demo does:

1. Cover-resize the photo (aspect kept, antialiased bilinear on uint8) and centre-crop it to the
   model size. Portrait photos are handled the same way: a centred band with the model's
   landscape aspect is cropped. (Upstream swaps the target height and width for portraits while
   the latent size stays landscape, which does not work; we do not reproduce that.)
2. Conditioning: text = prompt + suffix (both visible in the request and in the result's info;
   upstream appends a fixed suffix about "detailed fur"); CLIP image tokens through the
   resampler; the VAE latent of the photo (a posterior *sample*, as upstream) repeated over
   the frames; fps (512 model: 29.97 // stride) or frame stride (256 models) as `fs`; the
   camera condition built once per video from the path's poses relative to frame 0 and its
   intrinsics at the model size.
3. DDIM with classifier-free guidance; the unconditional branch is the negative prompt, a grey
   image's CLIP tokens, the same image latent and the same camera.
4. VAE decode in chunks, clamp to [-1, 1], uint8 by truncation of (x + 1) / 2 * 255 (upstream's).

Randomness comes from one source in upstream's order: the VAE posterior (one draw per frame, of
which the conditioning frame's is used), CamI2V's zero-translation perturbation, x_T, then one
draw per DDIM step. By default that is a CPU `torch.Generator` seeded by the request, so a seed
gives the same video on any device (up to kernel differences); `noise=RecordedNoise(...)`
replays another implementation's draws.
"""

from __future__ import annotations

import resource
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Literal, Mapping, Optional

import numpy as np
import torch
import torch.nn.functional as F

from ...errors import InputError
from ...photo import check_photo
from ...progress import Progress, as_progress
from .. import cami2v_options
from ...sampling import (Conditioning, GeneratorNoise, GuidedDenoiser, Guidance, NoiseSource, ddim_timesteps,
                         make_schedule, sample_ddim)

# The sampling controls and the prompt strings live in a torch-free module (listing generators
# shows them as defaults); every name stays importable from here.
UPSTREAM_PROMPT_SUFFIX = cami2v_options.CAMI2V_UPSTREAM_PROMPT_SUFFIX
UPSTREAM_NEGATIVE_PROMPT = cami2v_options.CAMI2V_UPSTREAM_NEGATIVE_PROMPT
DEFAULT_PROMPT_SUFFIX = cami2v_options.CAMI2V_PROMPT_SUFFIX  # ours, written for interiors
DEFAULT_NEGATIVE_PROMPT = cami2v_options.CAMI2V_NEGATIVE_PROMPT
NTSC_FPS = cami2v_options.NTSC_FPS  # upstream's nominal source frame rate for the 512 model's fps input
_STRIDE_HELP = cami2v_options._STRIDE_HELP
SAMPLING_PARAMS = cami2v_options.SAMPLING_PARAMS  # THE ranges and defaults of SamplingOptions
_SAMPLING = {s.name: s for s in SAMPLING_PARAMS}


@dataclass(frozen=True)
class SamplingOptions:
    """How to sample. Defaults are the upstream demo's (CFG 5.5, 25 steps, stride 2, η 1, φ 0.7);
    the fields named in `SAMPLING_PARAMS` take their defaults and limits from there."""

    steps: int = _SAMPLING["steps"].default
    cfg_scale: float = _SAMPLING["cfg_scale"].default
    eta: float = _SAMPLING["eta"].default
    guidance_rescale: float = _SAMPLING["guidance_rescale"].default
    frame_stride: int = _SAMPLING["frame_stride"].default
    enable_camera: bool = _SAMPLING["enable_camera"].default
    camera_cfg: float = _SAMPLING["camera_cfg"].default
    camera_cfg_schedule: Literal["constant", "cosine"] = _SAMPLING["camera_cfg_schedule"].default
    timestep_spacing: Literal["uniform", "uniform_trailing"] = "uniform_trailing"
    batched_cfg: bool = True  # cond and uncond branches in one UNet call
    decode_chunk: int = _SAMPLING["decode_chunk"].default  # frames per VAE decode call (memory vs speed)

    @classmethod
    def from_params(cls, params: Mapping[str, Any]) -> "SamplingOptions":
        """The options among a generator's resolved parameters (other keys are not sampling's)."""
        return cls(**{name: params[name] for name in _SAMPLING if name in params})

    def check(self) -> None:
        """InputError naming the control when a value is outside its `SAMPLING_PARAMS` range."""
        for spec in SAMPLING_PARAMS:
            spec.coerce(getattr(self, spec.name))


@dataclass(frozen=True)
class CamI2VRequest:
    """image: (H, W, 3) uint8 RGB, any size. camera: a `core.camera.CameraPath` (resampled to
    the model's frame count if it has another), or None for no camera conditioning.
    prompt_suffix / negative_prompt: None means our interior defaults; "" means none."""

    image: np.ndarray
    camera: Optional[Any] = None
    prompt: str = ""
    prompt_suffix: Optional[str] = None
    negative_prompt: Optional[str] = None
    seed: int = 0
    options: SamplingOptions = SamplingOptions()


@dataclass
class CamI2VResult:
    """frames: (T, H, W, 3) uint8. latents: (1, 4, T, h, w) float32 final latent.
    info: prompts used, crop, fs, timesteps, timings (s), peak memory (GiB), device, dtype."""

    frames: np.ndarray
    latents: torch.Tensor
    info: dict[str, Any] = field(default_factory=dict)


StepCallback = Callable[[int, int, torch.Tensor, torch.Tensor], None]


# -- preprocessing ---------------------------------------------------------------------------


def cover_crop(image: np.ndarray, width: int, height: int) -> tuple[torch.Tensor, dict[str, Any]]:
    """Resize `image` (H, W, 3) uint8 so it covers width x height, keeping its aspect, then crop
    the centre. Returns (1, 3, height, width) float32 in [-1, 1] and what was done.

    Resize target sizes are truncated to ints and the crop offsets floored, as upstream; the
    resize is antialiased bilinear on uint8 (rounded), as torchvision's on a uint8 tensor.
    """
    image = check_photo(image)  # the service's one photo rule, not limits of its own
    h0, w0 = image.shape[:2]
    if w0 / h0 > width / height:
        rh, rw = height, int(w0 * height / h0)
    else:
        rh, rw = int(h0 * width / w0), width
    x = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1)[None]
    if (rh, rw) != (h0, w0):
        x = F.interpolate(x, size=(rh, rw), mode="bilinear", antialias=True, align_corners=False)
    top, left = (rh - height) // 2, (rw - width) // 2
    x = x[:, :, top:top + height, left:left + width]
    info = {"input_size": [w0, h0], "resized_size": [rw, rh], "crop_box": [left, top, left + width, top + height],
            "portrait": h0 > w0}
    return (x.float() / 255.0 - 0.5) * 2.0, info


def fs_value(kind: str, frame_stride: int) -> int:
    """The UNet's `fs` input: fps = 29.97 // stride (512 model, 'fps') or the stride (256, 'fs')."""
    if kind == "fps":
        return int(NTSC_FPS // frame_stride)
    if kind == "fs":
        return int(frame_stride)
    raise ValueError(f"unknown fps condition kind {kind!r}")


def to_uint8_frames(video: torch.Tensor) -> np.ndarray:
    """(1, 3, T, H, W) in roughly [-1, 1] -> (T, H, W, 3) uint8, clamped, truncated like upstream."""
    v = ((video[0].float().clamp(-1.0, 1.0) + 1.0) / 2.0 * 255.0).to(torch.uint8)
    return np.ascontiguousarray(v.permute(1, 2, 3, 0).cpu().numpy())


def _peak_memory_gib(device: torch.device) -> dict[str, float]:
    if device.type == "cuda":
        return {"peak_gpu_gib": torch.cuda.max_memory_allocated(device) / 2**30}
    return {"peak_rss_gib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20}  # KiB on Linux


# -- the pipeline ----------------------------------------------------------------------------


class CamI2VPipeline:
    """Runs a `LatentVideoDiffusion` model (all parts loaded) end to end; see the module docstring."""

    def __init__(self, model: Any, *, unet: Optional[Callable[..., torch.Tensor]] = None,
                 decode_video: Optional[Callable[..., torch.Tensor]] = None):
        """`unet` / `decode_video` replace `model.unet` / `model.vae.decode_video` with callables of
        the same signature (another backend, e.g. core.models.openvino_backend); the model's
        other parts (encoders, camera geometry) still run as they are."""
        self.model = model
        self.unet = unet if unet is not None else model.unet
        self.decode_video = decode_video if decode_video is not None else model.vae.decode_video
        p = model.params
        d = p.diffusion
        self.schedule = make_schedule(
            d.num_timesteps, d.linear_start, d.linear_end, zero_terminal_snr=d.zero_terminal_snr,
            parameterization=d.parameterization, dynamic_rescale=d.dynamic_rescale,
            base_scale=d.base_scale, turning_step=d.turning_step)

    @property
    def device(self) -> torch.device:
        return next(self.model.unet.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        return next(self.model.unet.parameters()).dtype

    def _sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    # -- conditioning pieces -------------------------------------------------------------
    @torch.no_grad()
    def encode_prompts(self, prompts: list[str]) -> torch.Tensor:
        """(len(prompts), text_tokens, context_dim) in the model dtype."""
        return self.model.text_encoder.encode(prompts).to(self.dtype)

    @torch.no_grad()
    def encode_images(self, images: torch.Tensor) -> torch.Tensor:
        """(N, 3, H, W) in [-1, 1] -> resampled image tokens (N, 16*T, context_dim)."""
        enc = self.model.image_encoder
        tokens = enc(images.to(next(enc.parameters()).device))
        proj = self.model.image_proj
        return proj(tokens.to(next(proj.parameters()).dtype)).to(self.dtype)

    def camera_inputs(self, path: Any, frames: int) -> tuple[torch.Tensor, torch.Tensor, dict[str, Any]]:
        """(rel_c2w (1, T, 4, 4), per-frame K (1, T, 3, 3)) float32 from a CameraPath at the model size."""
        p = self.model.params
        info: dict[str, Any] = {"camera_name": getattr(path, "name", "custom"), "camera_frames_in": path.num_frames}
        if path.num_frames != frames:
            path = path.resampled(frames)
            info["camera_resampled_to"] = frames
        rel = torch.from_numpy(np.asarray(path.relative_c2w(0), dtype=np.float64)).float()[None]
        K = torch.from_numpy(np.asarray(path.K(p.width, p.height), dtype=np.float64)).float()[None]
        return rel, K, info

    # -- generate ------------------------------------------------------------------------
    @torch.no_grad()
    def generate(
        self,
        request: CamI2VRequest,
        *,
        progress: Optional[Progress | Callable[[float, str], None]] = None,
        callback: Optional[StepCallback] = None,
        noise: Optional[NoiseSource] = None,
        on_unet: Optional[Callable[..., None]] = None,
    ) -> CamI2VResult:
        """Make one video. `progress(frac, msg)` is called between units of work (it may raise
        Cancelled); `callback(step, total, x, x0)` after each DDIM step; `noise` replaces the
        seeded generator; `on_unet` sees every UNet call (inputs and output)."""
        opts = request.options
        opts.check()
        prog = as_progress(progress)
        m, p = self.model, self.model.params
        device, dtype = self.device, self.dtype
        frames, (lh, lw) = p.num_frames, p.latent_size
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        t_start = time.perf_counter()
        timings: dict[str, float] = {}

        prog(0.0, "preparing the photo")
        image, crop = cover_crop(request.image, p.width, p.height)
        image = image.to(device)
        suffix = DEFAULT_PROMPT_SUFFIX if request.prompt_suffix is None else request.prompt_suffix
        negative = DEFAULT_NEGATIVE_PROMPT if request.negative_prompt is None else request.negative_prompt
        prompt = request.prompt + suffix
        if noise is None:
            noise = GeneratorNoise(torch.Generator(device="cpu").manual_seed(int(request.seed)))
        use_cfg = opts.cfg_scale != 1.0

        # Random draws, in upstream's order: VAE posterior per frame, then the camera's.
        vae_noise = [noise((1, m.vae.params.embed_dim, lh, lw), device) for _ in range(frames)]
        t0 = time.perf_counter()
        z = m.vae.encode_video(image[:, :, None].to(next(m.vae.parameters()).dtype),
                               noise=vae_noise[0][:, :, None])
        concat = z.float().expand(-1, -1, frames, -1, -1)
        prog(0.03, "encoding the prompt")
        text = self.encode_prompts([prompt, negative] if use_cfg else [prompt])
        prog(0.05, "encoding the photo")
        images = torch.cat([image, torch.zeros_like(image)]) if use_cfg else image
        img_tokens = self.encode_images(images)
        context = torch.cat([text, img_tokens], dim=1)
        fs = torch.tensor([fs_value(p.diffusion.fps_condition, opts.frame_stride)], device=device)

        camera, cam_info = None, {}
        if opts.enable_camera and p.camera != "none":
            if request.camera is None:
                raise InputError(f"{p.name} needs a camera path (or turn the camera condition off).")
            rel, K, cam_info = self.camera_inputs(request.camera, frames)
            epi = p.unet.epipolar
            t_noise = (noise((1, frames, frames, 3, 1), device)
                       if epi is not None and epi.perturb_zero_translation else None)
            prog(0.07, "encoding the camera path")
            camera = m.camera_condition(rel.to(device), K.to(device), translation_noise=t_noise)
        self._sync()
        timings["conditioning"] = time.perf_counter() - t0

        cond = Conditioning(context[:1], concat, fs, camera)
        uncond = Conditioning(context[1:], concat, fs, camera) if use_cfg else None
        guidance = Guidance(scale=opts.cfg_scale, camera_scale=opts.camera_cfg,
                            camera_schedule=opts.camera_cfg_schedule, rescale=opts.guidance_rescale,
                            batched=opts.batched_cfg)
        denoiser = GuidedDenoiser(self.unet, self.schedule, cond, uncond, guidance, dtype=dtype, on_unet=on_unet)
        timesteps = ddim_timesteps(opts.steps, self.schedule.num_timesteps, opts.timestep_spacing)
        x_T = noise((1, p.diffusion.latent_channels, frames, lh, lw), device)
        sample_prog = prog.sub(0.1, 0.9)

        def on_step(i: int, total: int, x: torch.Tensor, x0: torch.Tensor) -> None:
            if callback is not None:
                callback(i, total, x, x0)
            sample_prog((i + 1) / total, f"denoising step {i + 1}/{total}")

        sample_prog(0.0, f"denoising step 0/{len(timesteps)}")
        t0 = time.perf_counter()
        # The prompt and image tokens are fixed for the whole call: their cross-attention
        # keys/values are computed at the first step and reused at the others.
        with m.unet.context_cache():
            latents = sample_ddim(denoiser, x_T, self.schedule, timesteps, eta=opts.eta, noise=noise,
                                  callback=on_step)
        self._sync()
        timings["sampling"] = time.perf_counter() - t0

        t0 = time.perf_counter()
        dec_prog = prog.sub(0.9, 1.0)
        vae_dtype = next(m.vae.parameters()).dtype
        video = self.decode_video(latents.to(vae_dtype), chunk=opts.decode_chunk,
                                  on_chunk=lambda done, total: dec_prog(done / total, f"decoding frame {done}/{total}"))
        out = to_uint8_frames(video)
        self._sync()
        timings["decode"] = time.perf_counter() - t0
        timings["total"] = time.perf_counter() - t_start

        info: dict[str, Any] = {
            "model": p.name, "width": p.width, "height": p.height, "num_frames": frames,
            "prompt": prompt, "prompt_suffix": suffix, "negative_prompt": negative if use_cfg else None,
            "seed": int(request.seed), "fs": int(fs.item()), "fs_kind": p.diffusion.fps_condition,
            "timesteps": timesteps.tolist(), "camera_conditioned": camera is not None,
            "options": asdict(opts), "crop": crop, "timings_s": timings,
            "device": str(device), "dtype": str(dtype).removeprefix("torch."),
            **cam_info, **_peak_memory_gib(device),
        }
        return CamI2VResult(frames=out, latents=latents, info=info)
