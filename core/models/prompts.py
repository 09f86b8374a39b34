"""Default text prompts of the text-conditioned models, torch-free.

Listing the generators (the dashboard's Generator settings show these strings as defaults) must
not import torch or a model package; the pipelines import their strings from here.
"""

from __future__ import annotations

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
