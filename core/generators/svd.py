"""Stable Video Diffusion (SVD, 14 frames; SVD-XT, 25 frames) as a `Generator`, through diffusers.

SVD animates a photo with motion of its own choosing: it has no camera input, so the camera path
is ignored (`camera_control = False`; the result says so in its warnings). It is here as the
strong no-camera baseline of the comparison, and as a fallback generator on a GPU.

Loading (`load_model`) reads the hub snapshot of stabilityai/stable-video-diffusion-img2vid(-xt)
in the diffusers layout (unet/, vae/, image_encoder/, scheduler/, feature_extractor/), component by
component: the fp16 weight files when running in fp16/bf16 and they are present (half the disk
reads), else the fp32 ones. The CLIP preprocessing always uses transformers' PIL image
processor, so nothing needs torchvision (which cannot be imported on CPU-only installs, and whose
processor would only change the backend of the same normalisation).

Running (`SVDGenerator.generate`): the photo is cropped to the output aspect ("cover", centred)
and resized to the output size, then handed to diffusers' `StableVideoDiffusionPipeline` as a
PIL image, exactly as the upstream examples do (the pipeline's own 224x224 antialiased resize
feeds CLIP). The denoising loop reports progress and honours cancellation after every step; the
latents are then decoded chunk by chunk (the VRAM knob) with progress and cancellation between
chunks. Noise comes from a per-call CPU `torch.Generator`, so a seed gives the same video on any
device up to floating-point differences.
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import numpy as np

from ..clip import Clip
from ..errors import CheckpointError, ConfigError, InputError
from ..params import ParamSpec, resolve_params
from ..photo import check_photo
from ..progress import Progress, as_progress
from .base import GenerateRequest, GenerateResult, Generator, PeakMemory

NATIVE_WIDTH, NATIVE_HEIGHT = 1024, 576
SIZE_MULTIPLE = 64  # the VAE downsamples by 8 and the UNet three more times by 2
DTYPES = ("fp32", "bf16", "fp16")
COMPONENTS = ("unet", "vae", "image_encoder", "scheduler", "feature_extractor")

# Progress shares: encoding the photo is quick, the denoising loop is most of the time,
# decoding the latents (temporal VAE) the rest.
_ENCODE_END, _DENOISE_END = 0.03, 0.9


@dataclass(frozen=True)
class SVDVariant:
    name: str
    label: str
    repo: str
    num_frames: int


VARIANTS: dict[str, SVDVariant] = {
    v.name: v for v in (
        SVDVariant("svd", "Stable Video Diffusion (14 frames)", "stabilityai/stable-video-diffusion-img2vid", 14),
        SVDVariant("svd-xt", "Stable Video Diffusion XT (25 frames)",
                   "stabilityai/stable-video-diffusion-img2vid-xt", 25),
    )
}


def param_specs(num_frames: int = 14) -> tuple[ParamSpec, ...]:
    """The user-facing controls; `num_frames` is the default frame count (the entry's)."""
    return (
        ParamSpec("num_frames", "int", num_frames, "Frames", 2, 50, 1,
                  help="Frames to generate. SVD was trained on 14 and SVD-XT on 25; other counts work "
                       "but drift further from the photo."),
        ParamSpec("steps", "int", 25, "Denoising steps", 1, 100, 1,
                  help="Euler (Karras sigmas) steps; quality saturates around 25."),
        ParamSpec("min_guidance", "float", 1.0, "Guidance at the first frame", 0.0, 10.0, 0.1,
                  help="Image guidance rises linearly from this value at the first frame..."),
        ParamSpec("max_guidance", "float", 3.0, "Guidance at the last frame", 0.0, 10.0, 0.1,
                  help="...to this value at the last frame. 1 everywhere turns guidance off (twice as fast)."),
        ParamSpec("motion_bucket_id", "int", 127, "Motion amount", 1, 255, 1,
                  help="SVD's motion conditioning: higher values ask for more motion."),
        ParamSpec("fps_id", "int", 6, "Frame-rate conditioning", 1, 30, 1,
                  help="The frame rate the model is told the clip has (SVD's fps_id); lower means "
                       "larger changes between frames. Independent of the playback rate."),
        ParamSpec("noise_aug_strength", "float", 0.02, "Noise augmentation", 0.0, 1.0, 0.01,
                  help="Noise added to the photo before encoding (cond_aug); more noise frees the model "
                       "to move away from the photo."),
        ParamSpec("decode_chunk_size", "int", 8, "Frames per VAE decode", 1, 50, 1,
                  help="Frames decoded at once by the temporal VAE: lower it if the GPU runs out of "
                       "memory at the end of a run; higher is a little smoother."),
        ParamSpec("width", "int", NATIVE_WIDTH, "Width", 128, NATIVE_WIDTH, SIZE_MULTIPLE,
                  help="Output width, a multiple of 64; 1024 is native, and quality drops quickly below 512."),
        ParamSpec("height", "int", NATIVE_HEIGHT, "Height", 128, NATIVE_WIDTH, SIZE_MULTIPLE,
                  help="Output height, a multiple of 64; 576 is native."),
        ParamSpec("fps", "float", 7.0, "Playback frames per second", 1.0, 60.0, 1.0,
                  help="Frame rate of the written video."),
    )


# ---------------------------------------------------------------------------------------------
# The loaded model, as the model manager sees it


class SVDModel:
    """A loaded `StableVideoDiffusionPipeline` with the size, device and dtype the manager needs."""

    def __init__(self, pipeline: Any, dtype_name: str):
        self.pipeline = pipeline
        self.dtype_name = dtype_name

    def _modules(self) -> list[Any]:
        p = self.pipeline
        return [p.unet, p.vae, p.image_encoder]

    @property
    def nbytes(self) -> int:
        from ..manager import module_bytes

        return sum(module_bytes(m) for m in self._modules())

    @property
    def device(self):
        return self.pipeline.unet.device

    @property
    def dtype(self):
        return self.pipeline.unet.dtype

    def to(self, device: Any) -> "SVDModel":
        self.pipeline.to(device)
        return self


@contextlib.contextmanager
def _quiet_transformers() -> Iterator[None]:
    """Hide transformers' one-time notice that its CLIP image processor falls back to PIL when
    torchvision is absent: the PIL processor is what this module asks for anyway."""
    from transformers.utils import logging as tlog

    level = tlog.get_verbosity()
    tlog.set_verbosity_error()
    try:
        yield
    finally:
        tlog.set_verbosity(level)


def _pipeline_class():
    with _quiet_transformers():
        from diffusers import StableVideoDiffusionPipeline
    return StableVideoDiffusionPipeline


def _torch_dtype(dtype: str):
    import torch

    try:
        return {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}[dtype]
    except KeyError:
        raise ConfigError(f"Unknown dtype {dtype!r} for SVD; use one of {', '.join(DTYPES)}.") from None


def _weights_variant(folder: Path, stem: str, dtype: str) -> str | None:
    """Which weight file to read: "fp16" (`<stem>.fp16.safetensors`) for fp16/bf16 runs when it
    exists, or when it is the only one there (a snapshot fetched without the fp32 files); None
    (`<stem>.safetensors` and the like) otherwise."""
    has_half = (folder / f"{stem}.fp16.safetensors").is_file()
    has_full = any((folder / f"{stem}{ext}").is_file() for ext in (".safetensors", ".bin"))
    if has_half and (dtype != "fp32" or not has_full):
        return "fp16"
    return None


def check_snapshot(root: Path, label: str = "SVD") -> None:
    """Raise CheckpointError naming the first piece of the diffusers layout that is missing."""
    needed = [root / "model_index.json"] + [root / c for c in COMPONENTS]
    for p in needed:
        if not p.exists():
            raise CheckpointError(f"{label}: {p} is missing; the folder is not a complete diffusers snapshot "
                                  "(fetch it again).")


def build_pipeline(root: Path, dtype: str = "fp32", label: str = "SVD"):
    """The diffusers pipeline from a snapshot folder, on the CPU, in `dtype`."""
    from transformers import CLIPImageProcessorPil, CLIPVisionModelWithProjection

    with _quiet_transformers():
        from diffusers import (AutoencoderKLTemporalDecoder, EulerDiscreteScheduler,
                               UNetSpatioTemporalConditionModel)

    root = Path(root)
    check_snapshot(root, label)
    torch_dtype = _torch_dtype(dtype)
    current = "scheduler"
    try:
        scheduler = EulerDiscreteScheduler.from_pretrained(root / "scheduler")
        current = "feature_extractor"
        feature_extractor = CLIPImageProcessorPil.from_pretrained(root / "feature_extractor")
        current = "image_encoder"
        image_encoder = CLIPVisionModelWithProjection.from_pretrained(
            root / "image_encoder", dtype=torch_dtype,
            variant=_weights_variant(root / "image_encoder", "model", dtype))
        current = "vae"
        vae = AutoencoderKLTemporalDecoder.from_pretrained(
            root / "vae", torch_dtype=torch_dtype,
            variant=_weights_variant(root / "vae", "diffusion_pytorch_model", dtype))
        current = "unet"
        unet = UNetSpatioTemporalConditionModel.from_pretrained(
            root / "unet", torch_dtype=torch_dtype,
            variant=_weights_variant(root / "unet", "diffusion_pytorch_model", dtype))
    except (OSError, ValueError, RuntimeError, KeyError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CheckpointError(f"{label}: cannot load {current} from {root / current}: {first[:300]}") from None
    pipe = _pipeline_class()(vae=vae, image_encoder=image_encoder, unet=unet, scheduler=scheduler,
                             feature_extractor=feature_extractor)
    pipe.set_progress_bar_config(disable=True)
    for m in (unet, vae, image_encoder):
        m.eval().requires_grad_(False)
    return pipe


def load_model(registry, entry, *, device, dtype: str) -> SVDModel:
    """Build the SVD pipeline of registry `entry` (its "model" file is the snapshot folder) on
    `device` in `dtype` ("fp32" | "bf16" | "fp16"). Missing weights raise WeightsMissing."""
    registry.require_files(entry)
    root = registry.path(entry, "model")
    pipe = build_pipeline(root, dtype, entry.label)
    return SVDModel(pipe, dtype).to(device)


# ---------------------------------------------------------------------------------------------
# Photo framing


def cover_crop(image: np.ndarray, width: int, height: int) -> tuple[np.ndarray, list[int]]:
    """Centre-crop `image` (H, W, 3) uint8 to the aspect of `width` x `height` and resize it there.

    Returns the (height, width, 3) uint8 frame and the crop box [x0, y0, x1, y1] in the photo's
    pixels (what the service uses as the fidelity reference).
    """
    import cv2

    h, w = image.shape[:2]
    scale = max(width / w, height / h)
    cw = min(w, int(round(width / scale)))
    ch = min(h, int(round(height / scale)))
    x0, y0 = (w - cw) // 2, (h - ch) // 2
    crop = image[y0:y0 + ch, x0:x0 + cw]
    interp = cv2.INTER_AREA if cw > width else cv2.INTER_CUBIC
    out = crop if (cw, ch) == (width, height) else cv2.resize(crop, (width, height), interpolation=interp)
    return np.ascontiguousarray(out), [x0, y0, x0 + cw, y0 + ch]


# ---------------------------------------------------------------------------------------------
# The generator


class SVDGenerator(Generator):
    """SVD / SVD-XT image-to-video; see the module docstring."""

    width = NATIVE_WIDTH
    height = NATIVE_HEIGHT
    fps = 7.0
    camera_control = False
    is_ai = True

    def __init__(self, name: str, load_model: Callable[[], Any], *, label: str | None = None,
                 num_frames: int | None = None):
        variant = VARIANTS.get(name)
        self.name = name
        self.label = label or (variant.label if variant else name)
        self.num_frames = int(num_frames or (variant.num_frames if variant else 14))
        self._load_model = load_model

    @classmethod
    def from_entry(cls, entry, load_model: Callable[[], Any]) -> "SVDGenerator":
        """The generator of a models.json entry; its `defaults.num_frames` sets the frame count."""
        variant = VARIANTS.get(entry.name)
        default = variant.num_frames if variant else 14
        try:
            frames = param_specs(default)[0].coerce(entry.defaults.get("num_frames", default))
        except InputError as exc:
            raise ConfigError(f"models.json: entry {entry.name!r}, field 'defaults.num_frames': {exc}") from None
        return cls(entry.name, load_model, label=entry.label, num_frames=frames)

    def param_specs(self) -> Sequence[ParamSpec]:
        return param_specs(self.num_frames)

    def generate(self, request: GenerateRequest, progress: Progress) -> GenerateResult:
        import torch

        progress = as_progress(progress)
        t_start = time.perf_counter()
        p = resolve_params(self.param_specs(), request.params)
        if request.num_frames is not None:  # a long shot: chained segments of `num_frames` frames each
            from .segments import generate_segments

            return generate_segments(self, request, progress, p["num_frames"], p, self.generate, camera=False)
        width, height = p["width"], p["height"]
        for what, v in (("Width", width), ("Height", height)):
            if v % SIZE_MULTIPLE:
                raise InputError(f"{what} must be a multiple of {SIZE_MULTIPLE} for SVD, got {v}.")
        if p["min_guidance"] > p["max_guidance"]:
            raise InputError(f"Guidance at the first frame ({p['min_guidance']}) must not exceed guidance at the "
                             f"last frame ({p['max_guidance']}).")
        image = check_photo(request.image)

        progress(0.0, f"loading {self.label}")
        model = self._load_model()
        pipe = model.pipeline if isinstance(model, SVDModel) else model
        frame0, crop_box = cover_crop(image, width, height)
        t_loaded = time.perf_counter()

        import PIL.Image

        steps = p["steps"]
        n = p["num_frames"]
        denoise = progress.sub(_ENCODE_END, _DENOISE_END)

        def on_step_end(_pipe, i: int, _t, _kwargs) -> dict:
            # Raising here (Cancelled) leaves diffusers' loop directly; nothing catches it.
            denoise((i + 1) / steps, f"step {i + 1}/{steps}")
            return {}

        progress(_ENCODE_END * 0.5, "encoding the photo")
        generator = torch.Generator("cpu").manual_seed(int(request.seed))
        cuda = str(pipe.device).startswith("cuda")
        if cuda:
            torch.cuda.reset_peak_memory_stats(pipe.device)
        with torch.inference_mode():
            latents = pipe(
                PIL.Image.fromarray(frame0), height=height, width=width, num_frames=n,
                num_inference_steps=steps, min_guidance_scale=p["min_guidance"],
                max_guidance_scale=p["max_guidance"], fps=p["fps_id"] + 1,  # diffusers conditions on fps - 1
                motion_bucket_id=p["motion_bucket_id"], noise_aug_strength=p["noise_aug_strength"],
                decode_chunk_size=p["decode_chunk_size"], generator=generator, output_type="latent",
                callback_on_step_end=on_step_end, return_dict=False,
            )
            if isinstance(latents, (tuple, list)):
                latents = latents[0]
            t_denoised = time.perf_counter()
            frames = self._decode(pipe, latents, p["decode_chunk_size"], progress.sub(_DENOISE_END, 1.0))
        t_end = time.perf_counter()

        info: dict[str, Any] = {
            "renderer": "svd",
            "model": self.name,
            "size": [width, height],
            "num_frames": n,
            "crop_box": crop_box,
            "photo_size": [int(image.shape[1]), int(image.shape[0])],
            "params": dict(p),
            "fps": float(p["fps"]),
            "seed": int(request.seed),
            "dtype": str(model.dtype).removeprefix("torch.") if hasattr(model, "dtype") else None,
            "device": str(pipe.device),
            "camera_ignored": True,
            "warnings": ["Stable Video Diffusion has no camera control: the camera path was not used; "
                         "the model chose its own motion."],
            "timings": {"load_s": t_loaded - t_start, "denoise_s": t_denoised - t_loaded,
                        "decode_s": t_end - t_denoised, "total_s": t_end - t_start},
        }
        peak = None
        if cuda:
            info["peak_memory_bytes"] = int(torch.cuda.max_memory_allocated(pipe.device))
            peak = PeakMemory(str(pipe.device), info["peak_memory_bytes"])
        return GenerateResult(Clip(frames, p["fps"]), info, crop_box=tuple(crop_box), params=dict(p),
                              timings={k.removesuffix("_s"): v for k, v in info["timings"].items()},
                              peak_memory=peak)

    @staticmethod
    def _decode(pipe: Any, latents: Any, chunk: int, progress: Progress) -> np.ndarray:
        """(1, T, 4, h, w) latents -> (T, H, W, 3) uint8, `chunk` frames per VAE call.

        Each chunk is decoded as its own short clip, which is what diffusers does for the same
        chunk size, so the frames are identical to a one-call decode with that chunk size.
        """
        t = latents.shape[1]
        out = []
        progress(0.0, "decoding")
        for start in range(0, t, chunk):
            part = latents[:, start:start + chunk]
            video = pipe.decode_latents(part, num_frames=part.shape[1], decode_chunk_size=part.shape[1])
            arr = pipe.video_processor.postprocess_video(video=video, output_type="np")[0]
            out.append(np.clip(np.round(arr * 255.0), 0, 255).astype(np.uint8))
            done = min(start + chunk, t)
            progress(done / t, f"decoded {done}/{t} frames")
        return np.ascontiguousarray(np.concatenate(out, axis=0))
