"""The Upscale-A-Video sampling pipeline: low-res clip in, x4 clip out.

Procedure (the upstream inference script's defaults):

1. The prompt is the caption plus "best quality, extremely detailed"; the negative prompt is
   "blur, worst quality"; both are encoded once (classifier-free guidance 6 when guidance > 1).
2. Optical flow (RAFT) on the whole low-res clip, only when propagation steps are requested.
3. Clips with h * w >= 384 * 384 are cut into tiles of 256 with 64 pixels of context on each inner
   side; tiles are pasted without blending (upstream's arithmetic, see `plan_tiles`).
4. Per tile: the low-res frames are noise-augmented to `noise_level` with the DDPM low-res
   schedule (the level is also the UNet's class label); latents start as N(0, 1) at the low-res
   size; 30 DDIM steps of the v-predicting UNet on 8-frame windows with stride 6 (overlaps
   averaged); at the listed step indices the predicted x0 is propagated along the flows before
   re-noising; the latents are decoded by the VAE in 3-frame chunks, with the clean low-res tile.
5. Optional colour correction against the bicubic x4 input (off by default).

Random draws come from one `torch.Generator`, in the upstream order (per tile: the low-res
noise, then the initial latents), so a seed reproduces a result on the same device.
Everything large stays on the compute device only while a tile is processed; results are
collected on the CPU.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable, Optional, Protocol, Sequence

import torch
import torch.nn.functional as F

from ...errors import ConfigError, InputError
from ...progress import Progress, as_progress
from .params import CHECKED_SETTINGS, SPECS
from .scheduler import (LOW_RES_SCHEDULE, SAMPLING_SCHEDULE, DDIMSampler, NoiseSchedule, add_noise, blend_windows,
                        sample_ddim, temporal_windows)
from .unet import UNetVideo

ADDED_PROMPT = "best quality, extremely detailed"
NEGATIVE_PROMPT = "blur, worst quality"
SCALE = 4  # the x4 upscaler's fixed factor


@dataclass(frozen=True)
class UpscaleSettings:
    """Sampling options; the defaults are the upstream script's."""

    noise_level: int = 120  # low-res noise augmentation, 0..max_noise_level (350)
    guidance_scale: float = 6.0
    steps: int = 30
    propagation_steps: tuple[int, ...] = ()  # step indices (0-based) where x0 is flow-propagated
    prompt: str = ""  # the caption (or the user's text)
    added_prompt: str = ADDED_PROMPT
    negative_prompt: str = NEGATIVE_PROMPT
    window: int = 8  # UNet frames per call
    window_stride: int = 6
    decode_chunk: int = 3  # VAE frames per call
    tile_size: int = 256
    tile_overlap: int = 64
    tile_min_pixels: int = 384 * 384  # tiling is forced from this many low-res pixels on
    force_tiling: bool = False
    w_lr: float = 1.0  # weight of the low-res fusion in the video VAE (ignored by vae_3d)
    color_fix: str = "none"  # "none" | "adain" | "wavelet"

    def validate(self, max_noise_level: int) -> None:
        """InputError naming the value: the user-facing ones (noise level, steps, colour fix)
        against the stage's controls (`params.STAGE_PARAMS`, the one source of their limits),
        the noise level also against the UNet's own `max_noise_level`."""
        for name in CHECKED_SETTINGS:
            SPECS[name].coerce(getattr(self, name))
        if self.noise_level > max_noise_level:
            raise InputError(f"Noise level must be between 0 and {max_noise_level}, got {self.noise_level}.")
        bad = [s for s in self.propagation_steps if not 0 <= s < self.steps]
        if bad:
            raise InputError(f"Propagation steps must be step indices 0..{self.steps - 1}; got {list(bad)}.")
        if self.window < 1 or not 1 <= self.window_stride <= self.window:
            raise InputError(f"Window stride must be between 1 and the window ({self.window}).")
        if self.decode_chunk < 1:
            raise InputError("Decode chunk must be at least 1 frame.")
        if self.tile_size < 16 or self.tile_overlap < 0:
            raise InputError(f"Tile size must be at least 16 and the overlap non-negative, got "
                             f"{self.tile_size} / {self.tile_overlap}.")


def build_prompt(caption: str, added: str = ADDED_PROMPT) -> str:
    """Caption followed by the quality phrase. (Upstream glues them without a separator, which fuses
    the caption's last word with "best" in the tokenizer; we put a space between.)"""
    return " ".join(s for s in (caption.strip(), added.strip()) if s)


# -- tiling --------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Tile:
    """One tile in low-res pixel units: `crop` is the region fed to the model (with context),
    `keep` the part of the tile's result pasted into the output (tile coordinates), `dest` where it
    goes (image coordinates). Boxes are (y0, y1, x0, x1); multiply by the scale for the output."""

    crop: tuple[int, int, int, int]
    keep: tuple[int, int, int, int]
    dest: tuple[int, int, int, int]


def _axis_tiles(n: int, tile: int, overlap: int) -> list[tuple[int, int, int, int]]:
    """Per axis: (crop0, crop1, dest0, dest1). A last tile that would only add the overlap's worth
    of pixels is merged into the previous one, which then runs to the edge (upstream rule)."""
    count = max(1, math.ceil(n / tile))
    merge_last = count > 1 and (count - 1) * tile + overlap >= n
    if merge_last:
        count -= 1
    out = []
    for i in range(count):
        start, end = i * tile, min(i * tile + tile, n)
        crop0, crop1 = max(start - overlap, 0), min(end + overlap, n)
        dest1 = n if (i == count - 1) else end
        out.append((crop0, crop1, start, dest1))
    return out


def plan_tiles(height: int, width: int, tile: int, overlap: int) -> list[Tile]:
    """Row-major tiles covering a height x width frame exactly once (in `dest`)."""
    tiles = []
    for cy0, cy1, dy0, dy1 in _axis_tiles(height, tile, overlap):
        for cx0, cx1, dx0, dx1 in _axis_tiles(width, tile, overlap):
            tiles.append(Tile(crop=(cy0, cy1, cx0, cx1),
                              keep=(dy0 - cy0, dy1 - cy0, dx0 - cx0, dx1 - cx0),
                              dest=(dy0, dy1, dx0, dx1)))
    return tiles


# -- colour correction ---------------------------------------------------------------------------

def _adain(content: torch.Tensor, style: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    """Per-frame, per-channel mean/std of `content` replaced by those of `style`; (n, c, H, W)."""
    def stats(x):
        flat = x.flatten(2)
        return flat.mean(-1)[..., None, None], (flat.var(-1) + eps).sqrt()[..., None, None]
    cm, cs = stats(content)
    sm, ss = stats(style)
    return (content - cm) / cs * ss + sm


def _wavelet_split(x: torch.Tensor, levels: int = 5) -> tuple[torch.Tensor, torch.Tensor]:
    """(high, low) frequency parts by repeated dilated 3x3 binomial blurs (dilation 1, 2, 4, ...)."""
    c = x.shape[1]
    k = torch.tensor([1.0, 2.0, 1.0], dtype=x.dtype, device=x.device)
    kernel = (k[:, None] * k[None, :] / 16.0).expand(c, 1, 3, 3)
    high = torch.zeros_like(x)
    for i in range(levels):
        r = 2 ** i
        low = F.conv2d(F.pad(x, (r, r, r, r), mode="replicate"), kernel, groups=c, dilation=r)
        high = high + (x - low)
        x = low
    return high, x


def color_fix(output: torch.Tensor, low_res: torch.Tensor, method: str) -> torch.Tensor:
    """Match the colours of `output` (t, 3, H, W) to `low_res` (t, 3, H/4, W/4), both in [-1, 1].

    "adain": per-frame channel statistics; "wavelet": keep the output's high frequencies over the
    bicubic-upsampled input's low frequencies.
    """
    if method == "none":
        return output
    ref = F.interpolate(low_res.float(), size=output.shape[-2:], mode="bicubic", align_corners=False)
    if method == "adain":
        return _adain(output.float(), ref)
    if method == "wavelet":
        return _wavelet_split(output.float())[0] + _wavelet_split(ref)[1]
    raise ValueError(f"unknown colour fix {method!r}")


# -- components ----------------------------------------------------------------------------------

class PromptEncoder(Protocol):
    def __call__(self, texts: Sequence[str]) -> torch.Tensor:
        """texts -> (len(texts), 77, dim): the text encoder's last hidden state, on any device."""


class LatentDecoder(Protocol):
    def decode(self, z: torch.Tensor, lr: Optional[torch.Tensor] = None, w_lr: float = 1.0) -> torch.Tensor:
        """(b, 4, t, h, w) unscaled latents + (b, 3, t, h, w) clean LR -> (b, 3, t, 4h, 4w) in ~[-1, 1]."""


FlowEstimator = Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor]]
"""(1, 3, T, H, W) frames in [-1, 1] -> (flows_forward, flows_backward), each (1, 2, T-1, H, W) in pixels."""

Propagator = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]
"""(x0 (1, 4, T, h, w), flows_forward, flows_backward) -> propagated x0 of the same shape."""


@dataclass
class UpscaleAVideo:
    """The assembled pipeline. Call it with a low-res clip; see the module docstring.

    unet / vae / encode_prompts live on `device`; flow_estimator and propagator are only needed
    for propagation steps. `latent_scale` is the VAE's scaling factor (latents = z * scale).
    """

    unet: UNetVideo
    vae: LatentDecoder
    encode_prompts: PromptEncoder
    latent_scale: float = 0.08333
    latent_channels: int = 4
    vae_dtype: torch.dtype = torch.float32  # upstream decodes in float32 (fp16 overflows)
    flow_estimator: Optional[FlowEstimator] = None
    propagator: Optional[Propagator] = None
    sampling_schedule: NoiseSchedule = SAMPLING_SCHEDULE
    low_res_schedule: NoiseSchedule = LOW_RES_SCHEDULE
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))

    @property
    def supports_propagation(self) -> bool:
        return self.flow_estimator is not None and self.propagator is not None

    @torch.no_grad()
    def __call__(self, video: torch.Tensor, settings: UpscaleSettings = UpscaleSettings(),
                 generator: Optional[torch.Generator] = None, progress: Progress | None = None) -> torch.Tensor:
        """Upscale a clip by 4.

        video: (1, 3, T, H, W) float in [-1, 1] (any device).
        Returns (1, 3, T, 4H, 4W) float32 on the CPU, clamped to [-1, 1] (before any colour fix).
        """
        progress = as_progress(progress)
        if video.dim() != 5 or video.shape[0] != 1 or video.shape[1] != 3:
            raise InputError(f"Upscale-A-Video expects one RGB clip (1, 3, T, H, W), got {tuple(video.shape)}.")
        settings.validate(self.unet.params.max_noise_level)
        propagate = bool(settings.propagation_steps)
        if propagate and not self.supports_propagation:
            raise ConfigError("Propagation steps were requested, but the pipeline was built without RAFT "
                              "and the propagation module.")
        generator = generator if generator is not None else torch.Generator().manual_seed(10)
        _, _, frames, height, width = video.shape
        video = video.float()

        progress(0.0, "Upscale-A-Video: encoding the prompt")
        prompt = build_prompt(settings.prompt, settings.added_prompt)
        guided = settings.guidance_scale > 1.0
        texts = [settings.negative_prompt, prompt] if guided else [prompt]
        context = self.encode_prompts(texts).to(self.device)

        flows = None
        if propagate and frames > 1:
            progress(0.01, "Upscale-A-Video: optical flow (RAFT)")
            flows = tuple(f.float() for f in self.flow_estimator(video.to(self.device)))

        tiled = settings.force_tiling or height * width >= settings.tile_min_pixels
        tiles = (plan_tiles(height, width, settings.tile_size, settings.tile_overlap) if tiled
                 else [Tile((0, height, 0, width), (0, height, 0, width), (0, height, 0, width))])
        # NaN until pasted, so a gap in the tiling cannot pass unnoticed
        out = torch.full((1, 3, frames, height * SCALE, width * SCALE), float("nan"))
        start = 0.02
        for k, tile in enumerate(tiles):
            sub = progress.sub(start + (1 - start) * k / len(tiles), start + (1 - start) * (k + 1) / len(tiles))
            y0, y1, x0, x1 = tile.crop
            lr = video[:, :, :, y0:y1, x0:x1].to(self.device)
            tile_flows = None if flows is None else tuple(f[..., y0:y1, x0:x1] for f in flows)
            label = f"tile {k + 1}/{len(tiles)}" if len(tiles) > 1 else ""
            result = self._upscale_tile(lr, tile_flows, context, settings, generator, sub, label)
            ky0, ky1, kx0, kx1 = (v * SCALE for v in tile.keep)
            dy0, dy1, dx0, dx1 = (v * SCALE for v in tile.dest)
            out[:, :, :, dy0:dy1, dx0:dx1] = result[:, :, :, ky0:ky1, kx0:kx1]
            del result

        if settings.color_fix != "none":
            for t in range(frames):
                fixed = color_fix(out[:, :, t].to(self.device), video[:, :, t].to(self.device), settings.color_fix)
                out[:, :, t] = fixed.cpu()
        progress(1.0, "Upscale-A-Video: done")
        return out

    # -- one tile ------------------------------------------------------------------------------
    def _upscale_tile(self, lr: torch.Tensor, flows, context: torch.Tensor, settings: UpscaleSettings,
                      generator: torch.Generator, progress: Progress, label: str) -> torch.Tensor:
        """lr: (1, 3, T, h, w) clean low-res tile on the device -> (1, 3, T, 4h, 4w) float32 CPU."""
        _, _, frames, h, w = lr.shape
        device = self.device
        prefix = f"Upscale-A-Video {label}: " if label else "Upscale-A-Video: "

        lr_noise = torch.randn(lr.shape, generator=generator, device=generator.device).to(device)
        lr_noisy = add_noise(self.low_res_schedule, lr, lr_noise, settings.noise_level)
        latents = torch.randn((1, self.latent_channels, frames, h, w), generator=generator,
                              device=generator.device).to(device)

        guided = context.shape[0] == 2
        batch = context.shape[0]
        lr_in = lr_noisy.expand(batch, -1, -1, -1, -1).to(self.unet.dtype)
        levels = torch.full((batch,), settings.noise_level, dtype=torch.long)  # on the CPU: checked without a sync
        windows = temporal_windows(frames, settings.window, settings.window_stride)
        n_calls = sum(1 for i, wdw in enumerate(windows) if i == 0 or wdw != windows[i - 1])  # repeats are reused
        sampler = DDIMSampler(self.sampling_schedule, settings.steps)
        steps = settings.steps
        denoise_share = 0.9
        step_index = [0]

        def denoiser(x: torch.Tensor, t: int) -> torch.Tensor:
            x_in = x.to(self.unet.dtype).expand(batch, -1, -1, -1, -1)
            done = [0]

            def predict(s: int, e: int) -> torch.Tensor:
                y = self.unet(x_in[:, :, s:e], t, lr_in[:, :, s:e], context, levels).float()
                done[0] += 1
                frac = (step_index[0] + done[0] / n_calls) / steps
                progress(denoise_share * frac, f"{prefix}step {step_index[0] + 1}/{steps}"
                         + (f", window {done[0]}/{n_calls}" if n_calls > 1 else ""))
                return y

            pred = blend_windows(frames, windows, predict)
            if guided:
                uncond, cond = pred.chunk(2)
                return uncond + settings.guidance_scale * (cond - uncond)
            return pred

        def x0_hook(i: int, x0: torch.Tensor) -> torch.Tensor:
            if flows is not None and i in settings.propagation_steps:
                x0 = self.propagator(x0, flows[0].to(x0), flows[1].to(x0))
            return x0

        def on_step(i: int, n: int) -> None:
            step_index[0] = i + 1

        latents = sample_ddim(denoiser, latents.float(), sampler, x0_hook, on_step)

        out = torch.empty(1, 3, frames, h * SCALE, w * SCALE, dtype=torch.float32)
        chunks = list(range(0, frames, settings.decode_chunk))
        for j, s in enumerate(chunks):
            e = min(frames, s + settings.decode_chunk)
            z = (latents[:, :, s:e] / self.latent_scale).to(self.vae_dtype)
            img = self.vae.decode(z, lr[:, :, s:e].to(self.vae_dtype), settings.w_lr)
            out[:, :, s:e] = img.clamp(-1, 1).float().cpu()
            progress(denoise_share + (1 - denoise_share) * (j + 1) / len(chunks),
                     f"{prefix}decoding frames {s + 1}-{e}/{frames}")
        return out
