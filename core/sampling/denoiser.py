"""The one denoiser adapter between a DynamiCrafter-style UNet and the samplers.

Samplers only see `denoiser(x_t, t) -> Denoised(eps, x0)`. Everything model-specific lives
here: concatenating the image latent, classifier-free guidance (text+image, optional camera),
guidance rescale, and the v/ε conversion (k-diffusion's "external wrapper" idea).

CFG follows CamI2V: out = u + s·(c − u), where the unconditional branch has the negative-prompt
text, the CLIP tokens of a grey image, and the *same* image latent and camera condition. The
conditional and unconditional branches run as one UNet call with batch 2B. Camera guidance adds
(s_cam − 1)·w(t)·(c − c_nocam) from a third branch without the camera condition. Guidance
rescale (φ) then pulls the per-sample standard deviation of the result towards that of c.
All of this happens in the model's output space (v or ε), as upstream does.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Any, Callable, Literal, Optional, Protocol

import torch

from .schedules import NoiseSchedule


class UNetFn(Protocol):
    """x: (B, 8, T, h, w) [noisy latent ‖ image latent], timesteps (B,) int64, context (B, L, C),
    fs (B,) int64, camera (a camera condition or None) -> (B, 4, T, h, w) in the model's output space."""

    def __call__(self, x: torch.Tensor, timesteps: torch.Tensor, context: torch.Tensor,
                 fs: torch.Tensor, camera: Optional[Any]) -> torch.Tensor: ...


@dataclass(frozen=True)
class Conditioning:
    """One guidance branch.

    context: (B, 77 + 16·T, C) text tokens ‖ per-frame image tokens.
    concat:  (B, 4, T, h, w) scaled image latent (the conditioning frame repeated).
    fs:      (B,) int64 fps or frame-stride value.
    camera:  the camera condition built once per video (shared by the branches), or None.
    """

    context: torch.Tensor
    concat: torch.Tensor
    fs: torch.Tensor
    camera: Optional[Any] = None


@dataclass(frozen=True)
class Guidance:
    """scale: text+image CFG (1 = off). camera_scale: camera CFG (1 = off; needs a camera).
    camera_schedule: weight over time, "constant" or "cosine" (cos((1 − t/(T−1))·π/2)).
    rescale: guidance rescale φ in [0, 1] (0 = off). batched: run cond and uncond as one call."""

    scale: float = 1.0
    camera_scale: float = 1.0
    camera_schedule: Literal["constant", "cosine"] = "constant"
    rescale: float = 0.0
    batched: bool = True

    def __post_init__(self) -> None:
        if self.camera_schedule not in ("constant", "cosine"):
            raise ValueError(f"camera_schedule must be 'constant' or 'cosine', got {self.camera_schedule!r}")
        if not 0.0 <= self.rescale <= 1.0:
            raise ValueError(f"guidance rescale must be in [0, 1], got {self.rescale}")


@dataclass(frozen=True)
class Denoised:
    """What a sampler needs at one step, all float32 like x_t: the guided model output,
    the implied noise ε̂ and clean latent x̂₀."""

    output: torch.Tensor
    eps: torch.Tensor
    x0: torch.Tensor


def rescale_guidance(guided: torch.Tensor, cond: torch.Tensor, phi: float) -> torch.Tensor:
    """φ·guided·std(cond)/std(guided) + (1 − φ)·guided, std per sample over all other axes."""
    dims = list(range(1, guided.ndim))
    ratio = cond.std(dim=dims, keepdim=True) / guided.std(dim=dims, keepdim=True)
    return phi * guided * ratio + (1.0 - phi) * guided


def camera_weight(schedule: Literal["constant", "cosine"], t: int, num_timesteps: int) -> float:
    if schedule == "constant":
        return 1.0
    return math.cos((1.0 - t / (num_timesteps - 1)) * math.pi / 2)


class GuidedDenoiser:
    """Callable `(x_t (B, 4, T, h, w) float32, t int) -> Denoised`.

    `uncond` is the unconditional branch's conditioning (only its context differs from `cond`
    in CamI2V; it may differ entirely). `on_unet(x, t, context, fs, camera, output)` is
    called after every UNet call (tests and reproduction logs use it).
    """

    def __init__(
        self,
        unet: UNetFn,
        schedule: NoiseSchedule,
        cond: Conditioning,
        uncond: Optional[Conditioning] = None,
        guidance: Guidance = Guidance(),
        dtype: Optional[torch.dtype] = None,
        on_unet: Optional[Callable[..., None]] = None,
    ):
        if guidance.scale != 1.0 and uncond is None:
            raise ValueError("classifier-free guidance (scale != 1) needs an unconditional branch")
        self.unet = unet
        self.schedule = schedule
        self.cond = cond
        self.uncond = uncond
        self.guidance = guidance
        self.dtype = dtype or cond.context.dtype
        self.on_unet = on_unet

    # -- UNet calls ------------------------------------------------------------------------
    def _run(self, x: torch.Tensor, t: int, branches: list[Conditioning]) -> list[torch.Tensor]:
        """One UNet call over the given branches stacked on the batch axis; float32 outputs."""
        b = x.shape[0]
        camera = branches[0].camera
        if any(br.camera is not camera for br in branches[1:]):
            raise ValueError("branches batched into one UNet call must share the camera condition")
        n = len(branches)
        x_in = torch.cat([torch.cat([x, br.concat.to(x.dtype)], dim=1) for br in branches]).to(self.dtype)
        context = torch.cat([br.context for br in branches]).to(self.dtype)
        fs = torch.cat([br.fs for br in branches])
        ts = torch.full((n * b,), int(t), dtype=torch.long, device=x.device)
        out = self.unet(x_in, ts, context, fs, camera)
        if self.on_unet is not None:
            self.on_unet(x_in, ts, context, fs, camera, out)
        return list(out.float().split(b))

    def _branches(self, x: torch.Tensor, t: int, branches: list[Conditioning]) -> list[torch.Tensor]:
        if self.guidance.batched:
            return self._run(x, t, branches)
        return [self._run(x, t, [br])[0] for br in branches]

    def model_output(self, x: torch.Tensor, t: int) -> torch.Tensor:
        """The guided prediction in the model's output space (v or ε), float32."""
        g = self.guidance
        use_cfg = g.scale != 1.0
        use_camera_cfg = g.camera_scale != 1.0 and self.cond.camera is not None
        if use_cfg:
            c, u = self._branches(x, t, [self.cond, self.uncond])
            out = u + g.scale * (c - u)
        else:
            (c,) = self._run(x, t, [self.cond])
            out = c
        if use_camera_cfg:
            (c_nocam,) = self._run(x, t, [replace(self.cond, camera=None)])
            w = camera_weight(g.camera_schedule, t, self.schedule.num_timesteps)
            out = out + (g.camera_scale - 1.0) * w * (c - c_nocam)
        if g.rescale > 0.0 and (use_cfg or use_camera_cfg):
            out = rescale_guidance(out, c, g.rescale)
        return out

    def __call__(self, x: torch.Tensor, t: int) -> Denoised:
        out = self.model_output(x, t)
        return to_eps_x0(out, x, self.schedule, t)


def to_eps_x0(output: torch.Tensor, x: torch.Tensor, schedule: NoiseSchedule, t: int) -> Denoised:
    """Convert a v, ε or x₀ prediction at timestep t into (ε̂, x̂₀)."""
    a = schedule.alpha_bar(t)
    sa, s1a = math.sqrt(a), math.sqrt(1.0 - a)
    if schedule.parameterization == "v":
        eps = sa * output + s1a * x
        x0 = sa * x - s1a * output
    elif schedule.parameterization == "x0":
        if a == 1.0:
            raise ValueError(f"eps is undefined for an x0-prediction at t={t}, where alpha_bar is 1")
        x0 = output
        eps = (x - sa * output) / s1a
    else:
        if a == 0.0:
            raise ValueError(f"x0 is undefined for an eps-prediction at t={t}, where alpha_bar is 0")
        eps = output
        x0 = (x - s1a * output) / sa
    return Denoised(output, eps, x0)
