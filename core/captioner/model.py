"""`Qwen2VLCaptioner`: a loaded model and its processor; `caption(image)` gives one cleaned line."""

from __future__ import annotations

import copy
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from ..errors import CheckpointError, ConfigError, InputError, Unavailable, WeightsMissing
from ..manager import module_bytes, module_dtype
from ..progress import Progress, ProgressFn, as_progress
from ..registry import FETCH_COMMAND, Registry
from .defaults import (CPU_MAX_PIXELS, DEFAULT_MAX_NEW_TOKENS, DEFAULT_MAX_WORDS, DEFAULT_PROMPT,
                       GPU_MAX_PIXELS, MAX_PROMPT_CHARS, MIN_PIXELS, MODEL_ROLE, VARIANT)
from .cache import CaptionCache, caption_key, clean_caption, image_array
from .loading import build_processor, default_device, load_model
from .options import CaptionerOptions, select_captioner

if TYPE_CHECKING:  # pragma: no cover
    from PIL import Image

# -- the captioner --------------------------------------------------------------------------------

def _stop_on_cancel(progress: Progress, max_new_tokens: int, prompt_len: int) -> Any:
    """A stopping criterion that reports progress per token and raises Cancelled when asked."""
    from transformers import StoppingCriteria

    class ReportAndCancel(StoppingCriteria):
        def __call__(self, input_ids, scores, **kwargs):
            done = input_ids.shape[-1] - prompt_len
            progress(0.1 + 0.9 * min(done / max_new_tokens, 1.0), f"caption: token {done}")
            return torch.zeros(input_ids.shape[0], dtype=torch.bool, device=input_ids.device)

    return ReportAndCancel()


class Qwen2VLCaptioner:
    """A loaded Qwen2-VL model plus its processor; `caption(image)` returns one cleaned line.

    Also satisfies the model manager's protocol (`to(device)`, `nbytes`, `device`, `dtype`), so
    the service can keep it resident on the GPU or offload it.
    """

    def __init__(self, model: torch.nn.Module, processor: Any, *, name: str, label: str | None = None,
                 cache: CaptionCache | None = None, max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS,
                 default_prompt: str = DEFAULT_PROMPT):
        self.model = model
        self.processor = processor
        self.name = name
        self.label = label or name
        self.cache = cache if cache is not None else CaptionCache(None)
        self.max_new_tokens = max_new_tokens
        self.default_prompt = default_prompt
        self._lock = threading.Lock()

    # -- loading -----------------------------------------------------------------------------
    @classmethod
    def from_folder(cls, folder: str | Path, *, name: str, label: str | None = None,
                    device: torch.device | str | None = None, dtype: torch.dtype | None = None,
                    quantization: str | None = None, max_pixels: int | None = None,
                    min_pixels: int = MIN_PIXELS, max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS,
                    cache_dir: str | Path | None = None, fetch_name: str | None = None) -> "Qwen2VLCaptioner":
        """Load a snapshot folder of a Qwen2-VL (or Qwen2.5-VL) Instruct repo.

        quantization: None (the folder's own dtype/quantization), "awq" (a pre-quantized AWQ
        folder, needs gptqmodel and CUDA) or "nf4" (quantize on load with bitsandbytes, CUDA).
        A quantized folder is detected from its config even when `quantization` is None.
        """
        folder = Path(folder)
        label = label or name
        cmd = FETCH_COMMAND.format(name=fetch_name or name)
        if not (folder / "config.json").is_file():
            raise WeightsMissing(f"{label} needs its model folder, which is missing or incomplete at {folder}; run `{cmd}`.")
        device = torch.device(device) if device is not None else default_device()
        model = load_model(folder, device=device, dtype=dtype, quantization=quantization, label=label)
        model_type = model.config.model_type
        if max_pixels is None:
            max_pixels = GPU_MAX_PIXELS if device.type == "cuda" else CPU_MAX_PIXELS
        try:
            processor = build_processor(folder, max_pixels=max_pixels, min_pixels=min_pixels, model_type=model_type)
        except OSError as exc:
            raise CheckpointError(f"{label}: cannot read the tokenizer or image processor in {folder} ({exc}); run `{cmd}` again.") from None
        return cls(model, processor, name=name, label=label, cache=CaptionCache(cache_dir),
                   max_new_tokens=max_new_tokens)

    @classmethod
    def from_registry(cls, registry: Registry, name: str | None = None, *,
                      device: torch.device | str | None = None, cache_dir: str | Path | None = None) -> "Qwen2VLCaptioner":
        """Load the named captioner entry, or the best one for `device` when `name` is None."""
        device = torch.device(device) if device is not None else default_device()
        entry = registry.get(name) if name else select_captioner(registry, device)
        if entry.kind != "captioner" or entry.variant != VARIANT:
            raise ConfigError(f"{registry.source}: entry {entry.name!r} is not a Qwen2-VL captioner (kind {entry.kind!r}, variant {entry.variant!r}).")
        opts = CaptionerOptions.from_entry(entry)
        if (entry.needs_gpu or opts.quantization) and device.type != "cuda":
            raise Unavailable(f"{entry.label} needs a CUDA GPU; on this machine use a CPU captioner such as Qwen2-VL-2B.")
        registry.require_files(entry)
        return cls.from_folder(registry.path(entry, MODEL_ROLE), name=entry.name, label=entry.label,
                               device=device, quantization=opts.quantization, max_pixels=opts.max_pixels,
                               min_pixels=opts.min_pixels, max_new_tokens=opts.max_new_tokens,
                               cache_dir=cache_dir, fetch_name=entry.name)

    # -- manager protocol ----------------------------------------------------------------------
    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        return module_dtype(self.model)

    @property
    def nbytes(self) -> int:
        return module_bytes(self.model)

    def to(self, device: torch.device | str) -> "Qwen2VLCaptioner":
        with self._lock:
            self.model.to(device)
        return self

    # -- captioning ----------------------------------------------------------------------------
    def caption(self, image: "Image.Image | np.ndarray | str | Path", prompt: str | None = None, *,
                max_words: int = DEFAULT_MAX_WORDS, max_new_tokens: int | None = None,
                use_cache: bool = True, progress: Progress | ProgressFn | None = None) -> str:
        """One cleaned caption line for `image` ((H, W, 3) uint8 RGB, PIL image or file path).

        `prompt` defaults to DEFAULT_PROMPT (interiors); `max_words` caps the output (0: no cap).
        A cache hit (same pixels, prompt, model and budget) returns without running the model.
        """
        progress = as_progress(progress)
        prompt = (prompt or "").strip() or self.default_prompt
        if len(prompt) > MAX_PROMPT_CHARS:
            raise InputError(f"The caption prompt is {len(prompt)} characters long; keep it under {MAX_PROMPT_CHARS}.")
        max_new_tokens = int(max_new_tokens or self.max_new_tokens)
        if max_new_tokens <= 0:
            raise InputError("max_new_tokens must be positive.")
        pixels = image_array(image)
        key = caption_key(pixels, prompt, self.name, max_new_tokens=max_new_tokens, max_words=max_words)
        if use_cache:
            hit = self.cache.get(key)
            if hit is not None:
                progress(1.0, "caption: from cache")
                return hit
        progress(0.0, "caption: preparing")
        raw = self.generate_raw(pixels, prompt, max_new_tokens=max_new_tokens, progress=progress)
        text = clean_caption(raw, max_words)
        if use_cache:
            self.cache.put(key, text, model=self.name, prompt=prompt)
        progress(1.0, "caption: done")
        return text

    def generate_raw(self, pixels: np.ndarray, prompt: str, *, max_new_tokens: int,
                     progress: Progress | None = None) -> str:
        """The model's decoded answer for one (H, W, 3) uint8 image, before any clean-up."""
        from PIL import Image

        progress = as_progress(progress)
        messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": prompt}]}]
        text = self.processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
        try:
            inputs = self.processor(text=[text], images=[Image.fromarray(pixels)], return_tensors="pt")
        except ValueError as exc:
            raise InputError(f"The image cannot be captioned ({exc}).") from None
        with self._lock:
            device = self.device
            inputs = inputs.to(device)
            if "pixel_values" in inputs:
                inputs["pixel_values"] = inputs["pixel_values"].to(self.dtype)
            prompt_len = inputs["input_ids"].shape[-1]
            gen = copy.deepcopy(self.model.generation_config)
            # Greedy decoding: a caption should not change between two clicks.
            gen.do_sample = False
            gen.temperature = None
            gen.top_p = None
            gen.top_k = None
            gen.max_new_tokens = max_new_tokens
            with torch.inference_mode():
                out = self.model.generate(**inputs, generation_config=gen,
                                          stopping_criteria=[_stop_on_cancel(progress, max_new_tokens, prompt_len)])
        new_tokens = out[:, prompt_len:]
        return self.processor.batch_decode(new_tokens, skip_special_tokens=True)[0]
