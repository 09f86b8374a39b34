"""Upscale-A-Video's DDIM runs on core.sampling: bit-identical to its own split DDIM loop."""

from __future__ import annotations

import pytest
import torch

from core.models.upscale_a_video.scheduler import SAMPLING_SCHEDULE, DDIMSampler, NoiseSchedule, sample_ddim


def _reference_loop(denoiser, x, schedule: NoiseSchedule, steps: int, x0_hook):
    """The loop Upscale-A-Video used before it ran on core.sampling: split the model output into
    (x0, eps) in float64 coefficients, hook x0, re-noise with eta = 0."""
    acp = schedule.alphas_cumprod().double()
    n = schedule.num_train_timesteps
    ratio = n // steps

    def alpha_bar(t):
        if t < 0:
            return 1.0 if schedule.set_alpha_to_one else float(acp[0])
        return float(acp[t])

    for i, t in enumerate([k * ratio + schedule.steps_offset for k in reversed(range(steps))]):
        out = denoiser(x, t).float()
        a = alpha_bar(t)
        sa, sb = a ** 0.5, (1.0 - a) ** 0.5
        kind = schedule.prediction_type
        if kind == "v_prediction":
            x0, eps = sa * x - sb * out, sa * out + sb * x
        elif kind == "epsilon":
            x0, eps = (x - sb * out) / sa, out
        else:
            x0, eps = out, (x - sa * out) / sb
        if schedule.clip_sample:
            x0 = x0.clamp(-schedule.clip_sample_range, schedule.clip_sample_range)
        x0 = x0_hook(i, x0)
        a_prev = alpha_bar(t - ratio)
        x = (a_prev ** 0.5) * x0 + ((1.0 - a_prev) ** 0.5) * eps
    return x


@pytest.mark.parametrize("schedule", [SAMPLING_SCHEDULE, NoiseSchedule(prediction_type="epsilon"),
                                      NoiseSchedule(set_alpha_to_one=True),
                                      NoiseSchedule(prediction_type="sample", clip_sample=True),
                                      NoiseSchedule(beta_schedule="linear", steps_offset=0)],
                         ids=["v", "eps", "alpha-to-one", "sample-clipped", "linear"])
@pytest.mark.parametrize("steps", [1, 7, 30])
def test_sampler_is_bit_identical_to_the_split_loop(schedule, steps):
    g = torch.Generator().manual_seed(steps)
    x = torch.randn(1, 4, 3, 6, 6, generator=g)
    w = torch.randn(1, 4, 3, 6, 6, generator=g)

    def denoiser(x_t, t):
        return torch.tanh(x_t * w) * (t / 1000.0) + 0.1 * w

    def hook(i, x0):
        return x0 * 0.97 + 0.01 if i % 2 else x0

    ours = sample_ddim(denoiser, x, DDIMSampler(schedule, steps), x0_hook=hook)
    ref = _reference_loop(denoiser, x, schedule, steps, hook)
    assert torch.equal(ours.view(torch.int32), ref.view(torch.int32))
