"""Loading Qwen2-VL: the device and dtype, the vision-tower fix for quantized checkpoints, the
image-only processor, and the model itself (two transformers 5.x quirks, see `core.captioner`).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Iterable, Mapping

import torch

from ..errors import CheckpointError, Unavailable
from .defaults import MIN_PIXELS, QUANTIZATIONS, VISION_TOWER_MODULES, _ARCHITECTURES

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
