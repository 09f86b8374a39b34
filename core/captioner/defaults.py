"""The captioner's defaults: prompt, word and token budgets, image budgets, supported quantizations."""

from __future__ import annotations

VARIANT = "qwen2-vl"
MODEL_ROLE = "model"

DEFAULT_PROMPT = (
    "Describe this interior photo in one sentence of at most 30 words: the room type, the key "
    "furniture, the main materials and colours, and the light."
)
DEFAULT_MAX_WORDS = 30
# The CamI2V demo's captioner budget; one sentence of 30 words needs far fewer tokens, and
# generation stops at the end-of-turn token anyway.
DEFAULT_MAX_NEW_TOKENS = 128
MAX_PROMPT_CHARS = 2000

# Image budget (pixels after Qwen's resize, in multiples of 28x28 patches). On CPU the number of
# vision tokens dominates the run time; on a GPU more detail is cheap.
CPU_MAX_PIXELS = 448 * 448
GPU_MAX_PIXELS = 1024 * 28 * 28
MIN_PIXELS = 56 * 56

VISION_TOWER_MODULES = ("model.visual", "visual")
QUANTIZATIONS = (None, "awq", "nf4")

# model_type in config.json -> (model class, processor class) in transformers.
_ARCHITECTURES = {
    "qwen2_vl": ("Qwen2VLForConditionalGeneration", "Qwen2VLProcessor"),
    "qwen2_5_vl": ("Qwen2_5_VLForConditionalGeneration", "Qwen2_5_VLProcessor"),
}
