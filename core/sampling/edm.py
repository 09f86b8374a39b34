"""EDM-style sampling for SVD-family video models (SV3D): sigmas, the v-prediction denoiser
adapter with per-frame ("triangle") guidance, and the Euler sampler over it.

Parameterisation (Karras et al. 2022, with v-prediction): x = x0 + sigma * eps and

    D(x, sigma) = c_skip * x + c_out * F(c_in * x, c_noise)
    c_skip = 1 / (sigma^2 + 1),  c_out = -sigma / sqrt(sigma^2 + 1),
    c_in = 1 / sqrt(sigma^2 + 1), c_noise = log(sigma) / 4   (v-scaling with EDM's c_noise)

Guidance is classifier-free per frame: D = D_u + s_t * (D_c - D_u), applied to the denoised
estimate (upstream's "prediction guider"). SV3D's scale s_t is a triangle over the frames:
min at the first and last frame, `max_scale` in the middle (the views furthest from the photo).

The sampler sees only `denoise(x, sigma) -> x0`; everything model-specific lives in the adapter.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional, Protocol

import torch

Denoise = Callable[[torch.Tensor, float], torch.Tensor]


def edm_sigmas(num_steps: int, sigma_min: float = 0.002, sigma_max: float = 80.0, rho: float = 7.0) -> torch.Tensor:
    """Karras sigmas, high to low, with a final 0: (num_steps + 1,) float32."""
    ramp = torch.linspace(0, 1, num_steps)
    lo, hi = sigma_min ** (1 / rho), sigma_max ** (1 / rho)
    sigmas = (hi + ramp * (lo - hi)) ** rho
    return torch.cat([sigmas, sigmas.new_zeros([1])])


def triangle_scales(num_frames: int, max_scale: float, min_scale: float = 1.0, period: float = 1.0) -> torch.Tensor:
    """(num_frames,) float32 guidance scale per frame: a triangle wave over linspace(0, 1, T)
    (period 1: min_scale at both ends, max_scale at the middle)."""
    u = torch.linspace(0, 1, num_frames)
    wave = 2 * (u / period - torch.floor(u / period + 0.5)).abs()
    return wave * (max_scale - min_scale) + min_scale


def v_edm_scalings(sigma: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """c_skip, c_out, c_in, c_noise for v-prediction with EDM's c_noise (shapes of `sigma`)."""
    c_skip = 1.0 / (sigma ** 2 + 1.0)
    c_out = -sigma / (sigma ** 2 + 1.0) ** 0.5
    c_in = 1.0 / (sigma ** 2 + 1.0) ** 0.5
    c_noise = 0.25 * sigma.log()
    return c_skip, c_out, c_in, c_noise


class VideoNetFn(Protocol):
    """x: (B, T, C_in, h, w) noisy latent (scaled by c_in) with the concat latent appended,
    c_noise: (B, T) float, context (B, L, D), vector (B, T, V) -> (B, T, 4, h, w)."""

    def __call__(self, x: torch.Tensor, c_noise: torch.Tensor, context: torch.Tensor,
                 vector: torch.Tensor) -> torch.Tensor: ...


@dataclass(frozen=True)
class VideoConditioning:
    """One guidance branch of an SVD-family model (one video, T frames).

    context: (1, L, D) cross-attention tokens (SV3D: the CLIP image embedding, L = 1).
    concat:  (1, C, h, w) latent concatenated to every frame's noisy latent.
    vector:  (T, V) per-frame vector conditioning.
    """

    context: torch.Tensor
    concat: torch.Tensor
    vector: torch.Tensor


class GuidedVDenoiser:
    """The denoiser adapter: `(x (T, 4, h, w), sigma) -> x0 (T, 4, h, w)` with per-frame CFG.

    scales: (T,) guidance per frame; None or all ones runs the conditional branch only.
    Both branches run as one network call with batch 2 (unconditional first, as upstream).
    """

    def __init__(self, net: VideoNetFn, cond: VideoConditioning, uncond: Optional[VideoConditioning],
                 scales: Optional[torch.Tensor]):
        self.net = net
        self.cond = cond
        self.uncond = uncond
        guided = scales is not None and uncond is not None and bool((scales != 1).any())
        self.scales = scales if guided else None

    def __call__(self, x: torch.Tensor, sigma: float) -> torch.Tensor:
        t = x.shape[0]
        branches = [self.uncond, self.cond] if self.scales is not None else [self.cond]
        s = torch.full((len(branches), t), float(sigma), dtype=torch.float32, device=x.device)
        c_skip, c_out, c_in, c_noise = v_edm_scalings(s)
        xs = torch.stack([x] * len(branches))  # (B, T, 4, h, w)
        inp = torch.cat([xs * c_in[..., None, None, None].to(x.dtype),
                         torch.stack([b.concat.to(x.dtype).expand(t, -1, -1, -1) for b in branches])], dim=2)
        context = torch.cat([b.context for b in branches]).to(x.dtype)
        vector = torch.stack([b.vector for b in branches]).to(x.dtype)
        out = self.net(inp, c_noise, context, vector)
        den = out * c_out[..., None, None, None].to(x.dtype) + xs * c_skip[..., None, None, None].to(x.dtype)
        if self.scales is None:
            return den[0]
        u, c = den[0], den[1]
        return u + self.scales.to(x)[:, None, None, None] * (c - u)


def sample_euler_edm(denoise: Denoise, noise: torch.Tensor, sigmas: torch.Tensor,
                     callback: Optional[Callable[[int, int, torch.Tensor], None]] = None) -> torch.Tensor:
    """Euler's method on the probability-flow ODE (no churn): x0 estimates -> clean latent.

    noise: standard normal (T, 4, h, w); it is scaled to sqrt(1 + sigma_0^2) first (the
    variance-preserving input the v-model was trained on at sigma_0). sigmas: (n + 1,) high to
    low ending in 0. callback(i, n, x) after each step (progress, cancellation).
    """
    x = noise * torch.sqrt(1.0 + sigmas[0] ** 2.0)
    n = len(sigmas) - 1
    for i in range(n):
        sigma, nxt = sigmas[i], sigmas[i + 1]  # 0-d float32, so dt rounds as upstream's does
        denoised = denoise(x, float(sigma))
        d = (x - denoised) / sigma.to(x)
        x = x + (nxt - sigma).to(x) * d
        if callback is not None:
            callback(i, n, x)
    return x
