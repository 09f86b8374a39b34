"""Room captions from one photo with Qwen2-VL (transformers), cached by image hash.

Variants, chosen from the registry entry and the machine:

* `Qwen/Qwen2-VL-7B-Instruct-AWQ` on CUDA when `gptqmodel` is importable (transformers 5.x loads
  AWQ checkpoints through gptqmodel, never autoawq), in fp16;
* `Qwen/Qwen2-VL-7B-Instruct` / `-2B-Instruct` in bf16 on CUDA, optionally 4-bit NF4 through
  bitsandbytes (`"quantization": "nf4"` in the entry's options);
* `Qwen/Qwen2-VL-2B-Instruct` on CPU, in bf16 where the CPU has native bf16 (AVX512-BF16 or
  AMX), else fp32.

Two transformers 5.23 quirks are handled here, each in one small documented function:

* Qwen's quantized checkpoints name the vision tower `visual` in their skip list, but the
  module is `model.visual` in transformers 5.x, so the tower would be replaced by 4-bit layers
  with no weights (random, silently). `protect_vision_tower` fixes the *config* before loading
  and `check_vision_tower` refuses a model whose tower was converted anyway.
* `Qwen2VLProcessor` insists on a video processor, which needs torchvision. Captions only use
  images, so `build_processor` assembles an image-only processor from the tokenizer and the
  pure-PIL image processor.

The registry entry (kind "captioner", variant "qwen2-vl") has one file with role "model": the
snapshot folder of the hub repo. Its `options` may set `quantization` ("awq" | "nf4" | null),
`max_pixels`, `min_pixels` and `max_new_tokens`.

The package: `options` (entry options, defaults, choosing an entry), `loading` (device, dtype,
quirk fixes, processor, model), `cache` (cleaning, hashing, the caption cache) and `model` (the
captioner). Every name stays importable from `core.captioner`. `defaults`, `options` and `cache`
are torch-free and imported at once (the dashboard asks which captioner runs here, and shows the
default instructions, while it builds the page); `loading` and `model` import torch, so their
names are looked up on first use (PEP 562 `__getattr__`).
"""

from __future__ import annotations

import importlib
from typing import Any

from .defaults import (  # noqa: F401
    CPU_MAX_PIXELS, DEFAULT_MAX_NEW_TOKENS, DEFAULT_MAX_WORDS, DEFAULT_PROMPT, GPU_MAX_PIXELS,
    MAX_PROMPT_CHARS, MIN_PIXELS, MODEL_ROLE, QUANTIZATIONS, VARIANT, VISION_TOWER_MODULES,
)
from .cache import (  # noqa: F401
    caption_key, CaptionCache, clean_caption, image_array,
)
from .options import (  # noqa: F401
    CaptionerOptions, select_captioner,
)

# name -> the torch-importing submodule that defines it
_LAZY = {
    **dict.fromkeys((
        "_importable", "build_processor", "check_vision_tower", "cpu_supports_bf16", "default_device",
        "load_model", "nf4_config", "patch_quantization_config", "pick_dtype", "protect_vision_tower",
        "quant_method", "read_chat_template", "vision_safe_skip_list"), "loading"),
    "Qwen2VLCaptioner": "model",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
        globals()[name] = value  # once: later lookups skip this function
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
