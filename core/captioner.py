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
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
import re
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Mapping

import numpy as np
import torch

from .errors import CheckpointError, ConfigError, InputError, Unavailable, WeightsMissing
from .manager import module_bytes, module_dtype
from .progress import Progress, ProgressFn, as_progress
from .registry import FETCH_COMMAND, Registry
# which captioner runs here, and the default instructions: torch-free (the dashboard shows both at start-up)
from .captioner_select import (DEFAULT_MAX_NEW_TOKENS, DEFAULT_PROMPT, MIN_PIXELS, QUANTIZATIONS, VARIANT,
                               CaptionerOptions, select_captioner)

if TYPE_CHECKING:  # pragma: no cover
    from PIL import Image

MODEL_ROLE = "model"

DEFAULT_MAX_WORDS = 30
MAX_PROMPT_CHARS = 2000

# Image budget (pixels after Qwen's resize, in multiples of 28x28 patches). On CPU the number of
# vision tokens dominates the run time; on a GPU more detail is cheap.
CPU_MAX_PIXELS = 448 * 448
GPU_MAX_PIXELS = 1024 * 28 * 28

VISION_TOWER_MODULES = ("model.visual", "visual")

# model_type in config.json -> (model class, processor class) in transformers.
_ARCHITECTURES = {
    "qwen2_vl": ("Qwen2VLForConditionalGeneration", "Qwen2VLProcessor"),
    "qwen2_5_vl": ("Qwen2_5_VLForConditionalGeneration", "Qwen2_5_VLProcessor"),
}


# -- device and dtype ----------------------------------------------------------------------------

def default_device() -> torch.device:
    return torch.device("cuda") if torch.cuda.is_available() else torch.device("cpu")


def cpu_supports_bf16() -> bool:
    """True when the CPU has native bf16 arithmetic (AVX512-BF16 or AMX); otherwise bf16 matmuls
    are emulated and slower than fp32."""
    try:
        text = Path("/proc/cpuinfo").read_text(encoding="ascii", errors="ignore")
    except OSError:
        return False
    flags: set[str] = set()
    for line in text.splitlines():
        if line.startswith("flags"):
            flags.update(line.split(":", 1)[-1].split())
            break
    return bool(flags & {"avx512_bf16", "amx_bf16"})


def pick_dtype(device: torch.device | str, quantization: str | None = None) -> torch.dtype:
    """The compute dtype for a device: AWQ kernels want fp16; otherwise bf16 where native."""
    device = torch.device(device)
    if device.type == "cuda":
        if quantization == "awq":
            return torch.float16
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.bfloat16 if cpu_supports_bf16() else torch.float32


# -- the vision-tower skip-list fix --------------------------------------------------------------

def vision_safe_skip_list(existing: Iterable[str] | None, *, bnb: bool = False) -> list[str]:
    """`existing` plus both spellings of the vision tower (and `lm_head` for bitsandbytes, whose
    own default skip list is replaced as soon as one is given)."""
    out = list(existing or [])
    needed = VISION_TOWER_MODULES + (("lm_head",) if bnb else ())
    out.extend(m for m in needed if m not in out)
    return out


def protect_vision_tower(config: Any) -> bool:
    """Make `config.quantization_config` leave the vision tower unquantized; True if it had one.

    Works on the raw dict that `AutoConfig.from_pretrained` keeps for a quantized checkpoint
    (AWQ: `modules_to_not_convert`; bitsandbytes: `llm_int8_skip_modules`) and on quantization
    config objects. Only the config is changed, never the library.
    """
    qc = getattr(config, "quantization_config", None)
    if qc is None:
        return False
    patch_quantization_config(qc)
    return True


def patch_quantization_config(qc: Any) -> Any:
    """Add the vision tower to the skip list of one quantization config (dict or object), in place."""
    if isinstance(qc, Mapping):
        bnb = qc.get("quant_method") == "bitsandbytes"
        key = "llm_int8_skip_modules" if bnb else "modules_to_not_convert"
        qc[key] = vision_safe_skip_list(qc.get(key), bnb=bnb)  # type: ignore[index]
        return qc
    bnb = getattr(qc, "quant_method", None) == "bitsandbytes"
    if bnb:
        qc.llm_int8_skip_modules = vision_safe_skip_list(qc.llm_int8_skip_modules, bnb=True)
    else:
        qc.modules_to_not_convert = vision_safe_skip_list(qc.modules_to_not_convert)
    return qc


def nf4_config() -> Any:
    """bitsandbytes 4-bit NF4 with bf16 compute, vision tower and lm_head kept in bf16."""
    from transformers import BitsAndBytesConfig

    return BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_quant_type="nf4",
        bnb_4bit_compute_dtype=torch.bfloat16,
        llm_int8_skip_modules=vision_safe_skip_list(None, bnb=True),
    )


def check_vision_tower(model: torch.nn.Module, label: str = "the captioner") -> None:
    """Refuse a model whose vision tower holds anything but plain layers (a quantized tower has
    no weights in Qwen's checkpoints, so it would caption noise)."""
    visual = _vision_tower(model)
    for pname, p in visual.named_parameters():
        if not p.dtype.is_floating_point:
            raise CheckpointError(
                f"{label}: the vision tower parameter 'visual.{pname}' is stored as {p.dtype}, so the tower "
                f"was quantized although its checkpoint weights are not; captions would be noise. Keep "
                f"'model.visual' in the quantization skip list."
            )
    for name, mod in visual.named_modules():
        if list(mod.children()):
            continue
        where = type(mod).__module__
        # Plain torch layers and transformers' own building blocks (rotary embedding, norms,
        # activations) are fine; quantized replacements come from gptqmodel, bitsandbytes or
        # transformers' quantization integrations.
        if where.startswith("torch.nn.") or (where.startswith("transformers.") and ".integrations." not in where):
            continue
        raise CheckpointError(
            f"{label}: the vision tower layer 'visual.{name}' was converted to {type(mod).__name__}; its "
            f"weights are not in the checkpoint, so captions would be noise. Keep 'model.visual' in the "
            f"quantization skip list."
        )


def _vision_tower(model: torch.nn.Module) -> torch.nn.Module:
    # transformers 5.x nests it as model.visual; 4.x kept it at the top level.
    try:
        return model.get_submodule("model.visual")
    except AttributeError:
        return model.get_submodule("visual")


# -- processor ------------------------------------------------------------------------------------

def _image_only(processor_cls: type) -> type:
    """A subclass of a Qwen-VL processor that accepts `video_processor=None`.

    The base class checks every component's type, and the video processor's type can only be
    resolved with torchvision installed. Captions never pass videos, so the check is skipped
    for that one missing component; everything else is the library's own code.
    """

    class ImageOnlyProcessor(processor_cls):  # type: ignore[misc, valid-type]
        def check_argument_for_proper_class(self, argument_name, argument):
            if argument is None:
                return None
            return super().check_argument_for_proper_class(argument_name, argument)

    ImageOnlyProcessor.__name__ = ImageOnlyProcessor.__qualname__ = f"ImageOnly{processor_cls.__name__}"
    return ImageOnlyProcessor


def read_chat_template(folder: Path, tokenizer: Any) -> str | None:
    """The chat template shipped with a snapshot: chat_template.jinja, chat_template.json, or the
    tokenizer's own."""
    jinja = folder / "chat_template.jinja"
    if jinja.is_file():
        return jinja.read_text(encoding="utf-8")
    js = folder / "chat_template.json"
    if js.is_file():
        try:
            return json.loads(js.read_text(encoding="utf-8"))["chat_template"]
        except (ValueError, KeyError, TypeError) as exc:
            raise CheckpointError(f"{js}: not a chat template file ({exc}).") from None
    return tokenizer.chat_template


def build_processor(folder: str | Path, *, max_pixels: int, min_pixels: int = MIN_PIXELS,
                    model_type: str = "qwen2_vl") -> Any:
    """Tokenizer + pure-PIL image processor (no torchvision) + chat template, as one processor.

    `max_pixels` bounds the resized image (so the number of vision tokens, about
    max_pixels / 784).
    """
    import transformers
    from transformers import AutoTokenizer
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil

    folder = Path(folder)
    if model_type not in _ARCHITECTURES:
        raise CheckpointError(f"{folder}: model type {model_type!r} is not a Qwen2-VL family model.")
    tokenizer = AutoTokenizer.from_pretrained(folder)
    image_processor = Qwen2VLImageProcessorPil.from_pretrained(folder, min_pixels=min_pixels, max_pixels=max_pixels)
    template = read_chat_template(folder, tokenizer)
    if not template:
        raise CheckpointError(f"{folder}: no chat template (chat_template.jinja or chat_template.json) in the model folder.")
    processor_cls = _image_only(getattr(transformers, _ARCHITECTURES[model_type][1]))
    return processor_cls(image_processor=image_processor, tokenizer=tokenizer, video_processor=None,
                         chat_template=template)


# -- caption post-processing and cache ------------------------------------------------------------

_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")
_LEAD_IN = re.compile(r"^(caption|description|answer)\s*:\s*", re.IGNORECASE)


def clean_caption(text: str, max_words: int = DEFAULT_MAX_WORDS) -> str:
    """One line, no surrounding quotes or "Caption:" lead-in, at most `max_words` words."""
    text = _CONTROL.sub(" ", text)
    text = " ".join(text.split())
    text = _LEAD_IN.sub("", text)
    if len(text) >= 2 and text[0] == text[-1] and text[0] in "\"'":
        text = text[1:-1].strip()
    words = text.split(" ")
    if max_words > 0 and len(words) > max_words:
        text = " ".join(words[:max_words]).rstrip(",;:-") + "."
    return text


def image_array(image: "Image.Image | np.ndarray | str | Path") -> np.ndarray:
    """(H, W, 3) uint8 RGB from a PIL image, an array or an image file."""
    from PIL import Image, ImageOps, UnidentifiedImageError

    if isinstance(image, (str, Path)):
        try:
            with Image.open(image) as im:
                image = ImageOps.exif_transpose(im).convert("RGB")
        except FileNotFoundError:
            raise InputError(f"{image}: image file not found.") from None
        except (UnidentifiedImageError, OSError) as exc:
            raise InputError(f"{image}: not a readable image ({exc}).") from None
    if isinstance(image, Image.Image):
        image = np.asarray(image.convert("RGB"))
    arr = np.asarray(image)
    if arr.ndim == 2:
        arr = np.repeat(arr[..., None], 3, axis=2)
    if arr.ndim != 3 or arr.shape[2] not in (3, 4):
        raise InputError(f"Expected an RGB image of shape (H, W, 3), got an array of shape {arr.shape}.")
    arr = arr[..., :3]
    if arr.dtype != np.uint8:
        if np.issubdtype(arr.dtype, np.floating) and arr.size and float(arr.max()) <= 1.0:
            arr = arr * 255.0
        arr = np.clip(np.rint(arr), 0, 255).astype(np.uint8)
    if min(arr.shape[:2]) < 1:
        raise InputError("The image is empty.")
    return np.ascontiguousarray(arr)


def caption_key(pixels: np.ndarray, prompt: str, model_name: str, *, max_new_tokens: int, max_words: int) -> str:
    """sha256 over the pixels (with their shape), the prompt, the model and the generation budget."""
    h = hashlib.sha256()
    h.update(b"caption-v1\0")
    h.update(json.dumps([model_name, prompt, list(pixels.shape), max_new_tokens, max_words]).encode())
    h.update(b"\0")
    h.update(np.ascontiguousarray(pixels, dtype=np.uint8).tobytes())
    return h.hexdigest()


class CaptionCache:
    """Captions by key, in memory and in `folder/captions.json` (written atomically).

    A missing or unreadable file starts an empty cache; the oldest entries are dropped beyond
    `max_entries`. Thread-safe.
    """

    FILENAME = "captions.json"

    def __init__(self, folder: str | Path | None = None, max_entries: int = 5000):
        self.path = Path(folder) / self.FILENAME if folder is not None else None
        self.max_entries = max_entries
        self._entries: dict[str, dict[str, Any]] | None = None
        self._lock = threading.Lock()

    def _load(self) -> dict[str, dict[str, Any]]:
        if self._entries is None:
            self._entries = {}
            if self.path is not None and self.path.is_file():
                try:
                    data = json.loads(self.path.read_text(encoding="utf-8"))
                    entries = data.get("entries", {}) if isinstance(data, dict) else {}
                    self._entries = {k: v for k, v in entries.items()
                                     if isinstance(v, dict) and isinstance(v.get("caption"), str)}
                except (OSError, ValueError):
                    self._entries = {}
        return self._entries

    def get(self, key: str) -> str | None:
        with self._lock:
            hit = self._load().get(key)
            return hit["caption"] if hit else None

    def put(self, key: str, caption: str, **info: Any) -> None:
        with self._lock:
            entries = self._load()
            entries.pop(key, None)
            entries[key] = {"caption": caption, "time": time.time(), **info}
            while len(entries) > self.max_entries:
                entries.pop(next(iter(entries)))
            self._save(entries)

    def __len__(self) -> int:
        with self._lock:
            return len(self._load())

    def _save(self, entries: dict[str, dict[str, Any]]) -> None:
        if self.path is None:
            return
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
            tmp.write_text(json.dumps({"version": 1, "entries": entries}, indent=1), encoding="utf-8")
            os.replace(tmp, self.path)
        except OSError:
            # A read-only or full disk only costs the on-disk copy; captions still work.
            pass


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


def load_model(folder: str | Path, *, device: torch.device | str, dtype: torch.dtype | None = None,
               quantization: str | None = None, label: str = "the captioner") -> torch.nn.Module:
    """Load the Qwen2-VL model of a snapshot folder onto `device` with SDPA attention."""
    import transformers
    from transformers import AutoConfig

    folder = Path(folder)
    device = torch.device(device)
    try:
        config = AutoConfig.from_pretrained(folder)
    except (OSError, ValueError) as exc:
        raise CheckpointError(f"{label}: {folder / 'config.json'} is not a valid model config ({exc}).") from None
    arch = _ARCHITECTURES.get(config.model_type)
    if arch is None:
        raise CheckpointError(f"{label}: {folder} holds a {config.model_type!r} model, not Qwen2-VL.")
    prequantized = quant_method(config)
    if prequantized is not None:
        if prequantized not in ("awq", "bitsandbytes"):
            raise Unavailable(f"{label}: {prequantized!r} checkpoints are not supported (use AWQ, bitsandbytes or unquantized weights).")
        quantization = "awq" if prequantized == "awq" else "nf4"
    if quantization not in QUANTIZATIONS:
        raise Unavailable(f"{label}: {quantization!r} quantization is not supported (use \"awq\", \"nf4\" or none).")
    if quantization == "awq" and prequantized is None:
        raise CheckpointError(f"{label}: AWQ was requested, but {folder} holds an unquantized checkpoint (no quantization_config in config.json).")
    if quantization is not None and device.type != "cuda":
        raise Unavailable(f"{label}: {quantization.upper()} weights need a CUDA GPU; use an unquantized Qwen2-VL-2B on CPU.")
    if quantization == "awq" and not _importable("gptqmodel"):
        raise Unavailable(f"{label}: AWQ weights need the 'gptqmodel' package (transformers loads AWQ through it): pip install gptqmodel==7.6.0 -c constraints.txt")
    if quantization == "nf4" and not _importable("bitsandbytes"):
        raise Unavailable(f"{label}: 4-bit loading needs the 'bitsandbytes' package: pip install bitsandbytes==0.50.2 -c constraints.txt")

    kwargs: dict[str, Any] = {"attn_implementation": "sdpa", "dtype": dtype or pick_dtype(device, quantization)}
    if prequantized is not None:
        protect_vision_tower(config)
    elif quantization == "nf4":
        kwargs["quantization_config"] = nf4_config()
    if device.type == "cuda":
        kwargs["device_map"] = str(device if device.index is not None else torch.device("cuda", torch.cuda.current_device()))
    model_cls = getattr(transformers, arch[0])
    try:
        model = model_cls.from_pretrained(folder, config=config, **kwargs)
    except OSError as exc:
        raise CheckpointError(f"{label}: cannot load the weights in {folder} ({exc}).") from None
    if device.type != "cuda":
        model.to(device)
    model.eval()
    check_vision_tower(model, label)
    return model


def quant_method(config: Any) -> str | None:
    """The quantization method a checkpoint's config declares ("awq", "bitsandbytes", ...), or None."""
    qc = getattr(config, "quantization_config", None)
    if qc is None:
        return None
    method = qc.get("quant_method") if isinstance(qc, Mapping) else qc.quant_method
    return str(getattr(method, "value", method)).lower()


def _importable(module: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(module) is not None
