"""DDIM sampling (Song et al. 2021) as a plain function over a denoiser.

The update from timestep t to the previous visited timestep p (ā_p := ā_0 after the last step):
    σ = η·√((1 − ā_p)/(1 − ā_t)·(1 − ā_t/ā_p))
    x_p = √ā_p·x̂₀ + √max(0, 1 − ā_p − σ²)·ε̂ + σ·z,   z ~ N(0, I)
With DynamiCrafter's dynamic rescale, x̂₀ is first multiplied by s(p)/s(t) (s(p) := s(t) at the
last step). One z is drawn at every step, even when σ = 0, so the random stream is the same for
every η (as upstream).
"""

from __future__ import annotations

import math
from typing import Callable, Optional, Protocol

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


@torch.no_grad()
def sample_ddim(
    denoiser: Callable[[torch.Tensor, int], Denoised],
    x_T: torch.Tensor,
    schedule: NoiseSchedule,
    timesteps: torch.Tensor,
    *,
    eta: float = 1.0,
    noise: Optional[NoiseSource] = None,
    generator: Optional[torch.Generator] = None,
    callback: Optional[StepCallback] = None,
) -> torch.Tensor:
    """Run DDIM from x_T (float32) down the ascending `timesteps`; returns x̂ at the end (float32).

    Per-step noise comes from `noise` if given, else from `generator` (else the global RNG).
    `callback(step, total, x, x0)` runs after each step with the new latent and the x̂₀ used.
    """
    if noise is None:
        noise = GeneratorNoise(generator) if generator is not None else (
            lambda shape, device: torch.randn(shape, device=device))
    steps = [int(t) for t in timesteps]
    # The step coefficients are rounded to float32 as upstream computes them. It matters in one
    # place: at a zero-terminal-SNR first step √(1 − ā_p − σ²) is 0 in exact arithmetic but
    # ~2e-4 in float32, which moves x by ~1e-3; keeping it lets runs reproduce upstream's.
    ac = schedule.alphas_cumprod.float()
    x = x_T.float()
    total = len(steps)
    for i, k in enumerate(reversed(range(total))):
        t = steps[k]
        p = steps[k - 1] if k > 0 else None
        a_t = ac[t]
        a_p = ac[p] if p is not None else ac[0]
        d = denoiser(x, t)
        x0 = d.x0
        if schedule.scale_table is not None:
            x0 = x0 * (schedule.scale(p if p is not None else t) / schedule.scale(t))
        at64, ap64 = float(a_t), float(a_p)
        sigma = torch.tensor(eta * math.sqrt((1.0 - ap64) / (1.0 - at64) * (1.0 - at64 / ap64)), dtype=torch.float32)
        c_dir = (1.0 - a_p - sigma**2).clamp(min=0.0).sqrt()
        z = noise(tuple(x.shape), x.device)
        x = a_p.sqrt().to(x.device) * x0 + c_dir.to(x.device) * d.eps + sigma.to(x.device) * z
        if callback is not None:
            callback(i, total, x, x0)
    return x
