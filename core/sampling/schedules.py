"""Discrete diffusion noise schedules and DDIM timestep selection.

Everything is computed in float64 from the model's numbers (checkpoint schedule buffers are
never read). Index t runs over 0..num_timesteps-1; `alphas_cumprod[t]` is the signal fraction
ā_t of x_t = √ā_t·x_0 + √(1-ā_t)·ε.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Optional

import torch

Parameterization = Literal["eps", "v", "x0"]  # what the model predicts
Spacing = Literal["uniform", "uniform_trailing"]


def scaled_linear_betas(num_timesteps: int = 1000, linear_start: float = 0.00085,
                        linear_end: float = 0.012) -> torch.Tensor:
    """β_t = (linspace(√start, √end, T))², float64 (the LDM "linear" schedule)."""
    return torch.linspace(linear_start**0.5, linear_end**0.5, num_timesteps, dtype=torch.float64) ** 2


def rescale_zero_terminal_snr(betas: torch.Tensor) -> torch.Tensor:
    """Shift and scale √ā so that ā_T = 0 exactly while ā_0 is unchanged (Lin et al. 2023, Alg. 1)."""
    s = torch.cumprod(1.0 - betas.double(), dim=0).sqrt()
    s0, st = s[0].clone(), s[-1].clone()
    s = (s - st) * s0 / (s0 - st)
    abar = s**2
    alphas = torch.cat([abar[:1], abar[1:] / abar[:-1]])
    return 1.0 - alphas


def dynamic_rescale_table(num_timesteps: int = 1000, base_scale: float = 0.7, turning_step: int = 400) -> torch.Tensor:
    """DynamiCrafter-512's x̂₀ scale s(t): linspace(1, base, turning_step) then `base`, float64.

    Length turning_step + num_timesteps (as upstream's `scale_arr`); only t < num_timesteps is read.
    """
    return torch.cat([torch.linspace(1.0, base_scale, turning_step, dtype=torch.float64),
                      torch.full((num_timesteps,), base_scale, dtype=torch.float64)])


@dataclass(frozen=True)
class NoiseSchedule:
    """A discrete schedule plus what the model predicts.

    betas, alphas_cumprod: (T,) float64.
    scale_table: DynamiCrafter's dynamic x̂₀ rescale table s(t) (float64), or None.
    """

    betas: torch.Tensor
    alphas_cumprod: torch.Tensor
    parameterization: Parameterization = "eps"
    scale_table: Optional[torch.Tensor] = None

    @property
    def num_timesteps(self) -> int:
        return int(self.betas.shape[0])

    def alpha_bar(self, t: int) -> float:
        return float(self.alphas_cumprod[t])

    def scale(self, t: int) -> float:
        return 1.0 if self.scale_table is None else float(self.scale_table[t])


def make_schedule(
    num_timesteps: int = 1000,
    linear_start: float = 0.00085,
    linear_end: float = 0.012,
    *,
    zero_terminal_snr: bool = False,
    parameterization: Parameterization = "eps",
    dynamic_rescale: bool = False,
    base_scale: float = 0.7,
    turning_step: int = 400,
) -> NoiseSchedule:
    """The DynamiCrafter/CamI2V schedule from its config numbers."""
    if parameterization not in ("eps", "v"):
        raise ValueError(f"parameterization must be 'eps' or 'v', got {parameterization!r}")
    if zero_terminal_snr and parameterization == "eps":
        raise ValueError("a zero-terminal-SNR schedule needs v-prediction (x0 is undefined from eps at t = T)")
    betas = scaled_linear_betas(num_timesteps, linear_start, linear_end)
    if zero_terminal_snr:
        betas = rescale_zero_terminal_snr(betas)
    alphas_cumprod = torch.cumprod(1.0 - betas, dim=0)
    table = dynamic_rescale_table(num_timesteps, base_scale, turning_step) if dynamic_rescale else None
    return NoiseSchedule(betas, alphas_cumprod, parameterization, table)


def ddim_timesteps(num_steps: int, num_timesteps: int = 1000, spacing: Spacing = "uniform_trailing") -> torch.Tensor:
    """The timesteps a DDIM run visits, ascending, int64 (the sampler walks them backwards).

    uniform_trailing: flip(round(arange(T, 0, -T/S))) - 1, always ending at T-1
        (25 steps: 39, 79, ..., 999; 2 steps: 499, 999).
    uniform: arange(0, T, T//S) + 1 (the older LDM spacing).
    """
    if not 1 <= num_steps <= num_timesteps:
        raise ValueError(f"num_steps must be in [1, {num_timesteps}], got {num_steps}")
    if spacing == "uniform_trailing":
        c = num_timesteps / num_steps
        steps = torch.arange(num_timesteps, 0, -c, dtype=torch.float64).round().flip(0).long() - 1
    elif spacing == "uniform":
        steps = torch.arange(0, num_timesteps, num_timesteps // num_steps, dtype=torch.long) + 1
    else:
        raise ValueError(f"unknown timestep spacing {spacing!r}; expected 'uniform' or 'uniform_trailing'")
    return steps
