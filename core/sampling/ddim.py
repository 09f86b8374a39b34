"""DDIM sampling (Song et al. 2021) as a plain function over a denoiser.

The update from timestep t to the previous visited timestep p (ā_p := ā_0 after the last step,
or a given final ā such as diffusers' `set_alpha_to_one`):
    σ = η·√((1 − ā_p)/(1 − ā_t)·(1 − ā_t/ā_p))
    x_p = √ā_p·x̂₀ + √max(0, 1 − ā_p − σ²)·ε̂ + σ·z,   z ~ N(0, I)
With DynamiCrafter's dynamic rescale, x̂₀ is first multiplied by s(p)/s(t) (s(p) := s(t) at the
last step). An x̂₀ hook may then replace x̂₀ (Upscale-A-Video propagates it along optical flow);
ε̂ stays the model's. When a noise stream is given, one z is drawn at every step, even when
σ = 0, so the stream is the same for every η (as upstream).
"""

from __future__ import annotations

import math
from typing import Callable, Optional, Protocol, Sequence

import torch

from .denoiser import Denoised
from .schedules import NoiseSchedule


class NoiseSource(Protocol):
    """Returns the next standard-normal draw of `shape` on `device` (float32)."""

    def __call__(self, shape: tuple[int, ...], device: torch.device) -> torch.Tensor: ...


class GeneratorNoise:
    """Draws from a `torch.Generator` (on the generator's device, then moved)."""

    def __init__(self, generator: torch.Generator):
        self.generator = generator

    def __call__(self, shape: tuple[int, ...], device: torch.device) -> torch.Tensor:
        return torch.randn(shape, generator=self.generator, device=self.generator.device,
                           dtype=torch.float32).to(device)


class RecordedNoise:
    """Replays recorded draws in order (to reproduce a run of another implementation).

    A request for a shape is served by the next recorded tensor of exactly that shape; a
    mismatch is an error, so a consumer that draws in a different order fails loudly.
    """

    def __init__(self, draws: list[torch.Tensor]):
        self._draws = list(draws)
        self.used = 0

    def __call__(self, shape: tuple[int, ...], device: torch.device) -> torch.Tensor:
        if self.used >= len(self._draws):
            raise RuntimeError(f"recorded noise exhausted after {self.used} draws (asked for {tuple(shape)})")
        d = self._draws[self.used]
        if tuple(d.shape) != tuple(shape):
            raise RuntimeError(f"recorded draw {self.used} has shape {tuple(d.shape)}, asked for {tuple(shape)}")
        self.used += 1
        return d.to(device=device, dtype=torch.float32)

    @property
    def remaining(self) -> int:
        return len(self._draws) - self.used


StepCallback = Callable[[int, int, torch.Tensor, torch.Tensor], None]
X0Hook = Callable[[int, torch.Tensor], torch.Tensor]


def ddim_update(x0: torch.Tensor, eps: torch.Tensor, alpha_bar: float, alpha_bar_prev: float, *, eta: float = 0.0,
                z: Optional[torch.Tensor] = None, precision: torch.dtype = torch.float32) -> torch.Tensor:
    """One DDIM update: (x̂₀, ε̂) at ā_t = `alpha_bar` -> x at ā_p = `alpha_bar_prev` (float32 tensors).

    z: the step's N(0, I) draw, or None for a deterministic step (then σ must be 0).
    precision: how the coefficients √ā_p, √(1 − ā_p − σ²), σ are rounded, which is part of what
    a run reproduces. float32: computed in float32, as LVDM/DynamiCrafter and diffusers do. It
    matters in one place: at a zero-terminal-SNR first step √(1 − ā_p − σ²) is 0 in exact
    arithmetic but ~2e-4 in float32, which moves x by ~1e-3; keeping it lets runs reproduce
    upstream's. float64: computed exactly and rounded once when they scale x̂₀ and ε̂ (what our
    Upscale-A-Video sampler has always done; kept so its results stay bit-identical).
    """
    sigma = eta * math.sqrt((1.0 - alpha_bar_prev) / (1.0 - alpha_bar) * (1.0 - alpha_bar / alpha_bar_prev))
    if z is None and sigma != 0.0:
        raise ValueError(f"a DDIM step with eta = {eta} needs a noise draw")
    device = x0.device
    if precision == torch.float64:
        c_x0, c_eps = math.sqrt(alpha_bar_prev), math.sqrt(max(0.0, 1.0 - alpha_bar_prev - sigma**2))
        x = c_x0 * x0 + c_eps * eps
        return x if z is None else x + sigma * z
    if precision != torch.float32:
        raise ValueError(f"precision must be torch.float32 or torch.float64, got {precision}")
    a_p = torch.tensor(alpha_bar_prev, dtype=torch.float32)
    s = torch.tensor(sigma, dtype=torch.float32)
    c_eps = (1.0 - a_p - s**2).clamp(min=0.0).sqrt()
    x = a_p.sqrt().to(device) * x0 + c_eps.to(device) * eps
    return x if z is None else x + s.to(device) * z


@torch.no_grad()
def sample_ddim(
    denoiser: Callable[[torch.Tensor, int], Denoised],
    x_T: torch.Tensor,
    schedule: NoiseSchedule,
    timesteps: torch.Tensor | Sequence[int],
    *,
    eta: float = 1.0,
    noise: Optional[NoiseSource] = None,
    generator: Optional[torch.Generator] = None,
    callback: Optional[StepCallback] = None,
    x0_hook: Optional[X0Hook] = None,
    final_alpha_bar: Optional[float] = None,
    precision: torch.dtype = torch.float32,
) -> torch.Tensor:
    """Run DDIM from x_T (float32) down the ascending `timesteps`; returns x̂ at the end (float32).

    Per-step noise comes from `noise` if given, else from `generator`, else (η > 0) the global
    RNG; a deterministic run (η = 0) with neither draws nothing.
    `x0_hook(step, x0)` may replace the x̂₀ of each step before the update.
    `callback(step, total, x, x0)` runs after each step with the new latent and the x̂₀ used.
    `final_alpha_bar`: ā after the last step (default ā_0). `precision`: see `ddim_update`.
    """
    if noise is None:
        if generator is not None:
            noise = GeneratorNoise(generator)
        elif eta != 0.0:
            noise = lambda shape, device: torch.randn(shape, device=device)  # noqa: E731
    steps = [int(t) for t in timesteps]
    ac = schedule.alphas_cumprod.float() if precision == torch.float32 else schedule.alphas_cumprod.double()
    final = float(ac[0]) if final_alpha_bar is None else float(final_alpha_bar)
    x = x_T.float()
    total = len(steps)
    for i, k in enumerate(reversed(range(total))):
        t = steps[k]
        p = steps[k - 1] if k > 0 else None
        d = denoiser(x, t)
        x0 = d.x0
        if schedule.scale_table is not None:
            x0 = x0 * (schedule.scale(p if p is not None else t) / schedule.scale(t))
        if x0_hook is not None:
            x0 = x0_hook(i, x0)
        z = noise(tuple(x.shape), x.device) if noise is not None else None
        x = ddim_update(x0, d.eps, float(ac[t]), float(ac[p]) if p is not None else final, eta=eta, z=z,
                        precision=precision)
        if callback is not None:
            callback(i, total, x, x0)
    return x
