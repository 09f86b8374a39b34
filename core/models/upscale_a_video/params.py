"""The Upscale-A-Video controls as ParamSpecs: the one source of their defaults and limits.

The post-processing stage (core.postprocess.upscale_a_video) shows exactly these controls, and
the pipeline's `UpscaleSettings.validate` checks the same values against these same specs, so a
value the dashboard offers never fails below and a value the pipeline refuses is never offered.
This module imports no torch (listing the stage's controls must stay cheap).
"""

from __future__ import annotations

from ...params import ParamSpec

COLOR_FIXES = ("none", "adain", "wavelet")

STAGE_PARAMS: tuple[ParamSpec, ...] = (
    # 350 is the release UNet's `max_noise_level` (its class-embedding range)
    ParamSpec("noise_level", "int", 120, label="Noise level", minimum=0, maximum=350, step=10,
              help="Noise added to the low-res frames before diffusion (0-350; the authors suggest "
                   "0-200). Higher gives more generated detail and less fidelity to the input."),
    ParamSpec("guidance_scale", "float", 6.0, label="Guidance scale", minimum=1.0, maximum=20.0, step=0.5,
              help="Classifier-free guidance towards the prompt; 1 turns guidance off."),
    ParamSpec("steps", "int", 30, label="Denoising steps", minimum=1, maximum=200, step=1,
              help="DDIM steps. More steps usually add detail at proportional cost."),
    ParamSpec("propagation_steps", "str", "", label="Propagation steps",
              help="Step indices (0-based, comma separated), e.g. 24,26,28, at which the predicted "
                   "clean latents are warped along RAFT optical flow between neighbouring frames for "
                   "temporal consistency. Empty: no propagation (RAFT is not loaded)."),
    ParamSpec("tile_size", "int", 256, label="Tile size", minimum=128, maximum=1024, step=32,
              help="Low-res tile size (plus 64 px of context per side). Clips of 384x384 low-res "
                   "pixels or more are always tiled; smaller tiles need less GPU memory."),
    ParamSpec("prompt", "str", "", label="Prompt",
              help="What the clip shows (the caption); 'best quality, extremely detailed' is appended."),
    ParamSpec("color_fix", "choice", "none", label="Colour correction", choices=COLOR_FIXES,
              help="Match the output's colours to the input: per-frame statistics (adain) or low "
                   "frequencies (wavelet). Off by default, as upstream."),
    ParamSpec("seed", "int", 10, label="Seed", minimum=0, maximum=2**63 - 1, step=1,
              help="Seed of the noise; the same seed gives the same result on the same GPU."),
)
SPECS = {s.name: s for s in STAGE_PARAMS}

# The sampling values `UpscaleSettings.validate` checks against their spec. (The tile size is
# not among them: the pipeline accepts any tile of at least 16 low-res pixels, a wider range
# than the control offers, so that tests and benchmarks can run tiny tiles.)
CHECKED_SETTINGS = ("noise_level", "steps", "color_fix")
