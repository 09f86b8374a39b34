"""The DynamiCrafter-family camera models as `Generator`s: cami2v-512, cami2v-256, cameractrl-256,
motionctrl-256.

The generator does not load weights itself: it is given `load_model`, a callable returning the
resident `LatentVideoDiffusion` (the model manager owns loading, placement and eviction). Its
parameters follow the upstream demo's controls, ranges and defaults; the prompt suffix and the
negative prompt are ordinary, visible parameters (defaults written for interiors; the upstream
strings are `UPSTREAM_PROMPT_SUFFIX` / `UPSTREAM_NEGATIVE_PROMPT` in the pipeline module).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Sequence

from ..clip import Clip
from ..errors import OutOfMemory
# torch-free: listing generators (their parameters and defaults) must not import torch
from ..models.cami2v_options import CAMI2V_NEGATIVE_PROMPT, CAMI2V_PROMPT_SUFFIX, SAMPLING_PARAMS
from ..params import ParamSpec, resolve_params
from ..progress import Progress, as_progress
from ..registry import ModelEntry, Registry
from .base import GenerateRequest, GenerateResult, Generator, PeakMemory, resized_box_to_photo

DTYPES = ("fp32", "bf16", "fp16")


@dataclass(frozen=True)
class CamI2VVariant:
    name: str
    preset: str  # core.models.cami2v.config.PRESETS key
    label: str
    width: int
    height: int


VARIANTS: dict[str, CamI2VVariant] = {
    v.name: v for v in (
        CamI2VVariant("cami2v-512", "cami2v-512", "CamI2V 512x320", 512, 320),
        CamI2VVariant("cami2v-256", "cami2v-256", "CamI2V 256x256", 256, 256),
        CamI2VVariant("cameractrl-256", "cameractrl-256", "CameraCtrl 256x256", 256, 256),
        CamI2VVariant("motionctrl-256", "motionctrl-256", "MotionCtrl 256x256", 256, 256),
    )
}


def param_specs_for(variant: CamI2VVariant) -> tuple[ParamSpec, ...]:
    """The sampling controls (`SAMPLING_PARAMS`: one source for their ranges, shared with the
    pipeline's `SamplingOptions`), with the two prompt texts before the last one, frames per VAE decode."""
    *sampling, decode_chunk = SAMPLING_PARAMS
    return (
        *sampling,
        ParamSpec("prompt_suffix", "str", CAMI2V_PROMPT_SUFFIX, "Prompt suffix",
                  help="Appended to the prompt. The upstream demo appends a fixed suffix; set it here to reproduce it."),
        ParamSpec("negative_prompt", "str", CAMI2V_NEGATIVE_PROMPT, "Negative prompt",
                  help="Text of the unconditional CFG branch (a non-empty request negative prompt wins)."),
        decode_chunk,
    )


class CamI2VGenerator(Generator):
    """One camera-controlled DynamiCrafter variant; see the module docstring."""

    num_frames = 16
    fps = 10.0
    camera_control = True
    is_ai = True

    def __init__(self, name: str, load_model: Callable[[], Any]):
        try:
            variant = VARIANTS[name]
        except KeyError:
            raise ValueError(f"unknown CamI2V-family generator {name!r}; known: {', '.join(VARIANTS)}") from None
        self.variant = variant
        self.name = variant.name
        self.label = variant.label
        self.width = variant.width
        self.height = variant.height
        self._load_model = load_model
        self._pipeline = None
        self._pipeline_model = None

    @classmethod
    def from_entry(cls, entry: ModelEntry, load_model: Callable[[], Any]) -> "CamI2VGenerator":
        """The generator of a models.json entry (options.variant defaults to the entry's name)."""
        return cls(entry.options.get("variant", entry.name), load_model)

    def param_specs(self) -> Sequence[ParamSpec]:
        return param_specs_for(self.variant)

    def _pipeline_for(self, model: Any):
        from ..models.cami2v.pipeline import CamI2VPipeline

        from ..models.cami2v.config import get_preset

        if self._pipeline is None or self._pipeline_model is not model:
            expected = get_preset(self.variant.preset)
            if model.params.camera != expected.camera:
                raise ValueError(f"{self.name} needs a {expected.camera!r} model, got {model.params.name}")
            if getattr(model, "backend", "torch") != "torch":  # e.g. OpenVINOCamI2V: its own UNet and decoder
                pipe = CamI2VPipeline(model.model, unet=model.unet, decode_video=model.decode_video)
            else:
                pipe = CamI2VPipeline(model)
            self._pipeline, self._pipeline_model = pipe, model
        return self._pipeline

    def generate(self, request: GenerateRequest, progress: Progress) -> GenerateResult:
        import torch

        from ..models.cami2v.pipeline import CamI2VRequest, SamplingOptions

        progress = as_progress(progress)
        if request.num_frames is not None:  # a long shot: chained native-length segments
            return self._generate_long(request, progress)
        params = resolve_params(self.param_specs(), request.params)
        progress(0.0, f"loading {self.label}")
        pipe = self._pipeline_for(self._load_model())
        options = SamplingOptions.from_params(params)
        req = CamI2VRequest(
            image=request.image, camera=request.camera, prompt=request.prompt,
            prompt_suffix=params["prompt_suffix"],
            negative_prompt=request.negative_prompt or params["negative_prompt"],
            seed=request.seed, options=options)
        try:
            result = pipe.generate(req, progress=progress)
        except torch.cuda.OutOfMemoryError:
            raise OutOfMemory(f"{self.label} ran out of GPU memory; lower the frames per VAE decode, "
                              "turn camera CFG off, or use a 256x256 model.") from None
        info = dict(result.info)
        info["params"] = dict(params)
        info["fps"] = self.fps
        # the pipeline's crop box is in the resized photo's pixels; the service needs the photo's
        crop = result.info["crop"]
        peak = next(((k, v) for k, v in result.info.items() if k in ("peak_gpu_gib", "peak_rss_gib")), None)
        return GenerateResult(
            Clip(result.frames, self.fps), info,
            crop_box=resized_box_to_photo(crop["crop_box"], crop["resized_size"], crop["input_size"]),
            timings=dict(result.info.get("timings_s", {})), params=dict(params),
            peak_memory=None if peak is None else PeakMemory(
                result.info.get("device", "cpu") if peak[0] == "peak_gpu_gib" else "cpu", int(peak[1] * 2**30)))


    def _generate_long(self, request: GenerateRequest, progress: Progress) -> GenerateResult:
        """`request.num_frames` frames from segments of the model's native length (see
        core.generators.segments); each segment is one ordinary `generate` call."""
        from .segments import generate_segments

        params = resolve_params(self.param_specs(), request.params)
        progress(0.0, f"loading {self.label}")
        native = int(self._load_model().params.num_frames)
        return generate_segments(self, request, progress, native, params, self.generate, camera=True)


def load_model(registry: Registry, entry: ModelEntry | str, *, device: Any = "cpu", dtype: str = "fp32"):
    """The service's loader: the entry's released checkpoint (full, or camera weights laid over its
    optional DynamiCrafter `base` file), strictly loaded straight onto `device` in `dtype`
    ("fp32" | "bf16" | "fp16"; the geometry and GroupNorm stay in fp32 inside the model)."""
    import torch

    from ..models.cami2v.loader import load_checkpoint_files

    entry = registry.get(entry) if isinstance(entry, str) else entry
    registry.require_files(entry)
    variant = VARIANTS[entry.options.get("variant", entry.name)]
    if dtype not in DTYPES:
        dtype = "fp32"
    torch_dtype = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}[dtype]
    base = registry.path(entry, "base") if entry.has_file("base") else None
    return load_checkpoint_files(variant.preset, registry.path(entry, "checkpoint"), base, device=device,
                                 dtype=torch_dtype, fetch_name=entry.name)
