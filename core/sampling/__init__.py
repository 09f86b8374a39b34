"""Diffusion sampling: schedules, the denoiser adapter, and samplers as plain functions."""

from .ddim import GeneratorNoise, NoiseSource, RecordedNoise, X0Hook, ddim_update, sample_ddim
from .denoiser import Conditioning, Denoised, GuidedDenoiser, Guidance, rescale_guidance, to_eps_x0
from .schedules import (NoiseSchedule, ddim_timesteps, dynamic_rescale_table, make_schedule,
                        rescale_zero_terminal_snr, scaled_linear_betas)

__all__ = [
    "GeneratorNoise", "NoiseSource", "RecordedNoise", "X0Hook", "ddim_update", "sample_ddim",
    "Conditioning", "Denoised", "GuidedDenoiser", "Guidance", "rescale_guidance", "to_eps_x0",
    "NoiseSchedule", "ddim_timesteps", "dynamic_rescale_table", "make_schedule",
    "rescale_zero_terminal_snr", "scaled_linear_betas",
]

from .edm import (GuidedVDenoiser, VideoConditioning, edm_sigmas, sample_euler_edm,  # noqa: E402
                  triangle_scales, v_edm_scalings)

__all__ += ["GuidedVDenoiser", "VideoConditioning", "edm_sigmas", "sample_euler_edm", "triangle_scales",
            "v_edm_scalings"]
