"""What a captioner entry may set, the defaults, and which entry runs on this machine.

Torch-free: the dashboard shows whether Caption works (and the default instructions) while it
builds the page, which must not import torch or transformers (core.devices answers "is there a
CUDA GPU?" without torch).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..devices import cuda_available
from ..errors import ConfigError, Unavailable
from ..registry import ModelEntry, Registry
from .defaults import DEFAULT_MAX_NEW_TOKENS, MIN_PIXELS, QUANTIZATIONS, VARIANT

# -- options from the registry ------------------------------------------------------------------

@dataclass(frozen=True)
class CaptionerOptions:
    """Implementation options of a captioner entry (models.json `options`)."""

    quantization: str | None = None  # None | "awq" | "nf4"
    max_pixels: int | None = None  # None: CPU_MAX_PIXELS on CPU, GPU_MAX_PIXELS on CUDA
    min_pixels: int = MIN_PIXELS
    max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS

    @classmethod
    def from_entry(cls, entry: ModelEntry) -> "CaptionerOptions":
        opts = dict(entry.options)
        unknown = set(opts) - {"quantization", "max_pixels", "min_pixels", "max_new_tokens"}
        if unknown:
            raise ConfigError(f"models.json: entry {entry.name!r}, field 'options.{sorted(unknown)[0]}': is not a captioner option.")
        q = opts.get("quantization")
        if q not in QUANTIZATIONS:
            raise ConfigError(f"models.json: entry {entry.name!r}, field 'options.quantization': must be \"awq\", \"nf4\" or null, got {q!r}.")
        for fld in ("max_pixels", "min_pixels", "max_new_tokens"):
            v = opts.get(fld)
            if v is not None and (not isinstance(v, int) or isinstance(v, bool) or v <= 0):
                raise ConfigError(f"models.json: entry {entry.name!r}, field 'options.{fld}': must be a positive integer.")
        return cls(
            quantization=q,
            max_pixels=opts.get("max_pixels"),
            min_pixels=opts.get("min_pixels") or MIN_PIXELS,
            max_new_tokens=opts.get("max_new_tokens") or DEFAULT_MAX_NEW_TOKENS,
        )


def select_captioner(registry: Registry, device: Any = None) -> ModelEntry:
    """The first Qwen2-VL captioner entry (in models.json order, which is the preference order)
    that can run on `device`. Raises WeightsMissing for the first one that only lacks weights,
    else Unavailable with every entry's reason. `device`: "cpu", "cuda", "cuda:N" or a torch.device;
    None: a CUDA GPU when one is available."""
    has_gpu = cuda_available() if device is None else str(device).split(":")[0] == "cuda"
    candidates = [e for e in registry.of_kind("captioner") if e.variant == VARIANT]
    if not candidates:
        raise Unavailable(f"{registry.source} lists no Qwen2-VL captioner (kind \"captioner\", variant \"{VARIANT}\").")
    reasons = []
    only_missing = None
    for e in candidates:
        if CaptionerOptions.from_entry(e).quantization and not has_gpu:
            reasons.append(f"{e.name}: quantized, needs a CUDA GPU")
            continue
        av = registry.availability(e, has_gpu=has_gpu)
        if av.available:
            return e
        reasons.append(f"{e.name}: {av.reason}")
        if only_missing is None and av.reason.startswith("weights missing"):
            only_missing = e
    if only_missing is not None:
        registry.require_files(only_missing)
    raise Unavailable("No captioner can run here: " + "; ".join(reasons) + ".")
