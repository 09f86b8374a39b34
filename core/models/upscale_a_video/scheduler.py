"""Upscale-A-Video's noise schedules and DDIM settings, run by `core.sampling` (no diffusers import).

Two schedules are involved, both the SD x4 upscaler's "scaled linear" betas over 1000 steps:

* the DDIM sampling schedule (`SAMPLING_SCHEDULE`, v-prediction, "leading" timesteps + offset 1,
  last step uses alpha_bar[0] as the previous alpha);
* the DDPM schedule that noise-augments the low-res frames (`LOW_RES_SCHEDULE`); the noise level
  (0..350) is an index into it and is also the UNet's class label.

`NoiseSchedule` is the diffusers config; `NoiseSchedule.diffusion()` is the same schedule as a
`core.sampling.NoiseSchedule`. The sampler is `core.sampling.sample_ddim` with eta = 0 (as
k-diffusion wraps a model): `DDIMSampler.denoised` is the adapter that turns the UNet's output
into (eps, x0), and the pipeline's flow propagation of the clean estimate is the x0 hook, so
x_prev = sqrt(a_prev) * hook(x0) + sqrt(1 - a_prev) * eps.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Callable, Optional, Sequence

import torch

from ... import sampling
from ...errors import ConfigError

# diffusers' prediction types -> core.sampling's parameterizations
PARAMETERIZATIONS = {"epsilon": "eps", "v_prediction": "v", "sample": "x0"}
PREDICTION_TYPES = tuple(PARAMETERIZATIONS)


@dataclass(frozen=True)
class NoiseSchedule:
    """A discrete diffusion schedule (the fields of a diffusers scheduler config that matter here)."""

    num_train_timesteps: int = 1000
    beta_start: float = 0.0001
    beta_end: float = 0.02
    beta_schedule: str = "scaled_linear"  # "linear" | "scaled_linear"
    prediction_type: str = "v_prediction"
    set_alpha_to_one: bool = False
    steps_offset: int = 1
    clip_sample: bool = False
    clip_sample_range: float = 1.0

    def __post_init__(self) -> None:
        if self.prediction_type not in PREDICTION_TYPES:
            raise ValueError(f"prediction_type must be one of {PREDICTION_TYPES}, got {self.prediction_type!r}")
        if self.beta_schedule not in ("linear", "scaled_linear"):
            raise ValueError(f"unsupported beta_schedule {self.beta_schedule!r}")

    def betas(self) -> torch.Tensor:
        """(num_train_timesteps,) float32, computed as the upstream schedulers do (in float32)."""
        n = self.num_train_timesteps
        if self.beta_schedule == "linear":
            return torch.linspace(self.beta_start, self.beta_end, n, dtype=torch.float32)
        return torch.linspace(self.beta_start ** 0.5, self.beta_end ** 0.5, n, dtype=torch.float32) ** 2

    def alphas_cumprod(self) -> torch.Tensor:
        """(num_train_timesteps,) float32, computed as the upstream schedulers do (in float32)."""
        return torch.cumprod(1.0 - self.betas(), dim=0)

    def diffusion(self) -> sampling.NoiseSchedule:
        """This schedule for `core.sampling`: the float32 values above, held exactly in float64."""
        return sampling.NoiseSchedule(self.betas().double(), self.alphas_cumprod().double(),
                                      PARAMETERIZATIONS[self.prediction_type])

    @classmethod
    def from_config_file(cls, path: str | Path, base: Optional["NoiseSchedule"] = None) -> "NoiseSchedule":
        """Read a diffusers `scheduler_config.json`; fields we do not model are ignored."""
        path = Path(path)
        try:
            raw = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as exc:
            raise ConfigError(f"{path}: cannot read the scheduler config ({exc}).") from None
        known = {f.name for f in fields(cls)}
        values = {k: v for k, v in raw.items() if k in known}
        try:
            return replace(base or cls(), **values)
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"{path}: {exc}.") from None


# The x4 upscaler's sampling schedule (v-prediction) and its low-res augmentation schedule.
SAMPLING_SCHEDULE = NoiseSchedule()
LOW_RES_SCHEDULE = NoiseSchedule(prediction_type="epsilon", steps_offset=0)


def ddim_timesteps(schedule: NoiseSchedule, steps: int) -> list[int]:
    """Descending "leading" DDIM timesteps, e.g. 30 steps -> [958, 925, ..., 25, 1]."""
    n = schedule.num_train_timesteps
    if not 1 <= steps <= n:
        raise ValueError(f"steps must be in [1, {n}], got {steps}")
    ratio = n // steps
    return [i * ratio + schedule.steps_offset for i in reversed(range(steps))]


def add_noise(schedule: NoiseSchedule, x: torch.Tensor, noise: torch.Tensor, level: int) -> torch.Tensor:
    """Forward diffusion to timestep `level`: sqrt(a) x + sqrt(1 - a) noise (in float32)."""
    a = schedule.alphas_cumprod()[int(level)].item()
    return (a ** 0.5) * x.float() + ((1.0 - a) ** 0.5) * noise.float()


# Our Upscale-A-Video sampler has always computed its step coefficients in float64, rounded once;
# keeping that keeps its results bit-identical (see `core.sampling.ddim_update`).
PRECISION = torch.float64


@dataclass(frozen=True)
class DDIMSampler:
    """DDIM over one schedule with eta = 0 (deterministic): the timesteps, the model-output adapter
    and the arguments `core.sampling.sample_ddim` runs with."""

    schedule: NoiseSchedule
    steps: int
    diffusion: sampling.NoiseSchedule = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "diffusion", self.schedule.diffusion())

    @property
    def timesteps(self) -> list[int]:
        return ddim_timesteps(self.schedule, self.steps)

    def alpha_bar(self, t: int) -> float:
        if t < 0:
            return 1.0 if self.schedule.set_alpha_to_one else self.diffusion.alpha_bar(0)
        return self.diffusion.alpha_bar(t)

    def previous(self, t: int) -> int:
        return t - self.schedule.num_train_timesteps // self.steps

    def denoised(self, model_output: torch.Tensor, x_t: torch.Tensor, t: int) -> sampling.Denoised:
        """The adapter: the model's output at timestep t -> `Denoised` (eps, x0 clipped if the
        schedule says so; eps stays the unclipped model's), float32."""
        d = sampling.to_eps_x0(model_output.float(), x_t.float(), self.diffusion, t)
        if self.schedule.clip_sample:
            r = self.schedule.clip_sample_range
            d = sampling.Denoised(d.output, d.eps, d.x0.clamp(-r, r))
        return d

    def split(self, model_output: torch.Tensor, x_t: torch.Tensor, t: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Model output at timestep t -> (predicted x0, predicted eps), both float32."""
        d = self.denoised(model_output, x_t, t)
        return d.x0, d.eps

    def renoise(self, x0: torch.Tensor, eps: torch.Tensor, t: int) -> torch.Tensor:
        """(x0, eps) at timestep t -> x at the previous DDIM timestep (one step of `sample_ddim`)."""
        return sampling.ddim_update(x0, eps, self.alpha_bar(t), self.alpha_bar(self.previous(t)),
                                    precision=PRECISION)


Denoiser = Callable[[torch.Tensor, int], torch.Tensor]
StepCallback = Callable[[int, int], None]


def sample_ddim(denoiser: Denoiser, x: torch.Tensor, sampler: DDIMSampler, x0_hook: Optional[sampling.X0Hook] = None,
                callback: Optional[StepCallback] = None) -> torch.Tensor:
    """Run DDIM from the noise `x` (float32) to the clean latents, with `core.sampling.sample_ddim`.

    denoiser(x_t, t) returns the (guided) model output in the schedule's prediction type.
    x0_hook(step_index, x0) may replace the predicted x0 before re-noising (eps stays the model's).
    callback(step_index, num_steps) is called after each step.
    """
    timesteps = sampler.timesteps

    def adapter(x_t: torch.Tensor, t: int) -> sampling.Denoised:
        return sampler.denoised(denoiser(x_t, t), x_t, t)

    on_step = None if callback is None else (lambda i, n, x_i, x0: callback(i, n))
    return sampling.sample_ddim(adapter, x, sampler.diffusion, timesteps[::-1], eta=0.0, callback=on_step,
                                x0_hook=x0_hook, final_alpha_bar=sampler.alpha_bar(sampler.previous(timesteps[-1])),
                                precision=PRECISION)


def temporal_windows(frames: int, size: int, stride: int) -> list[tuple[int, int]]:
    """The UNet's frame windows [start, end) over a clip, in the upstream order.

    Windows of `size` start every `stride` frames; one that would run past the end is shifted back
    to end at the last frame (so it may repeat the previous window). Clips of at most `size`
    frames are one window.
    """
    if frames <= size:
        return [(0, frames)]
    out = []
    for start in range(0, frames, stride):
        end = min(frames, start + size)
        out.append((end - size, end))
    return out


def blend_windows(frames: int, windows: Sequence[tuple[int, int]],
                  predict: Callable[[int, int], torch.Tensor]) -> torch.Tensor:
    """Stitch per-window predictions (b, c, end-start, h, w) into (b, c, frames, h, w).

    A frame's first prediction is taken as is; each later one is averaged in 0.5/0.5 with the
    running value (upstream's overlap rule). A window equal to the previous one is not recomputed.
    """
    out: Optional[torch.Tensor] = None
    seen = [False] * frames
    last_window, last_pred = None, None
    for s, e in windows:
        pred = last_pred if (s, e) == last_window else predict(s, e)
        last_window, last_pred = (s, e), pred
        if out is None:
            out = pred.new_zeros(pred.shape[:2] + (frames,) + pred.shape[3:])
        for k, f in enumerate(range(s, e)):
            out[:, :, f] = 0.5 * out[:, :, f] + 0.5 * pred[:, :, k] if seen[f] else pred[:, :, k]
            seen[f] = True
    if out is None or not all(seen):
        raise ValueError("windows do not cover every frame")
    return out
