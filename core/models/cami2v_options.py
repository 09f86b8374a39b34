"""CamI2V's user-facing options, torch-free: the sampling controls and the prompt texts.

Listing the generators (the dashboard's Generator settings show these controls and strings as
defaults) must not import torch or a model package; the pipeline (core.models.cami2v.pipeline,
which re-exports every name) and the generator (core.generators.cami2v) import them from here.
"""

from __future__ import annotations

from ..params import ParamSpec

NTSC_FPS = 29.97  # upstream's nominal source frame rate for the 512 model's fps input

_STRIDE_HELP = ("Source-video frame stride the motion should mimic; the 512 model is told "
                "fps = 29.97 // stride, the 256 models the stride itself. Larger means faster motion.")

# The user-facing sampling controls, in the order the dashboard shows them: THE ranges and
# defaults of the pipeline's `SamplingOptions` (its defaults and `check` read them; the generator
# offers them as its parameters), so the controls and the pipeline cannot disagree. Ranges and
# defaults are the upstream demo's.
SAMPLING_PARAMS: tuple[ParamSpec, ...] = (
    ParamSpec("steps", "int", 25, "Sampling steps", 1, 250, 1, help="DDIM steps (trailing spacing)."),
    ParamSpec("cfg_scale", "float", 5.5, "CFG scale", 1.0, 15.0, 0.5,
              help="Text + image classifier-free guidance; 1 turns it off."),
    ParamSpec("frame_stride", "int", 2, "Frame stride", 1, 10, 1, help=_STRIDE_HELP),
    ParamSpec("enable_camera", "bool", True, "Camera condition",
              help="Off: the camera path is ignored and the model moves freely."),
    ParamSpec("camera_cfg", "float", 1.0, "Camera CFG", 1.0, 4.0, 0.1,
              help="Extra guidance towards the camera path (one more UNet pass per step when > 1)."),
    ParamSpec("camera_cfg_schedule", "choice", "constant", "Camera CFG schedule",
              choices=("constant", "cosine"), help="cosine: camera guidance fades in as noise decreases."),
    ParamSpec("eta", "float", 1.0, "Eta", 0.0, 1.0, 0.05, help="DDIM noise: 1 = upstream default, 0 = deterministic."),
    ParamSpec("guidance_rescale", "float", 0.7, "Guidance rescale", 0.0, 1.0, 0.05,
              help="Pulls the guided prediction's spread back towards the conditional one (fights over-saturation)."),
    ParamSpec("decode_chunk", "int", 4, "Frames per VAE decode", 1, 16, 1,
              help="Memory vs speed when decoding the latent video."),
)

# CamI2V / DynamiCrafter family -----------------------------------------------------------------
# The upstream demo's strings, kept for reproduction (the suffix is appended to every caption).
CAMI2V_UPSTREAM_PROMPT_SUFFIX = (" dramatic camera movement, high quality, cinematic shot, photorealistic, "
                                 "detailed fur, smooth motion")
CAMI2V_UPSTREAM_NEGATIVE_PROMPT = ("Fast movement, jittery motion, abrupt transitions, distorted body, missing "
                                   "limbs, unnatural posture, blurry, cropped, extra limbs, bad anatomy, deformed, "
                                   "glitchy motion, artifacts.")
# Our defaults, written for interiors.
CAMI2V_PROMPT_SUFFIX = (", smooth steady camera movement, high quality, photorealistic interior, "
                        "sharp details, natural light")
CAMI2V_NEGATIVE_PROMPT = ("Fast movement, jittery motion, abrupt transitions, warped walls, bent straight lines, "
                          "distorted furniture, flickering, blurry, cropped, deformed, glitchy motion, artifacts, "
                          "people.")
