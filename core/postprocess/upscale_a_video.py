"""Upscale-A-Video as a post-processing stage (role "upscale", x4, CUDA only).

The prompt is the clip's caption (the dashboard passes the Qwen2-VL caption) or the user's text;
the LLaVA captioner of the upstream script is not used. The stage downscales inputs of at least
1280 x 1280 by 4 first (as upstream), so its output is always x4 of what the diffusion model saw.
Licence of the code and weights: NTU S-Lab License 1.0 (non-commercial use only).
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any, Callable, Mapping, Optional, Sequence

import numpy as np

from ..clip import Clip
from ..errors import ConfigError, InputError, OutOfMemory, Unavailable, WeightsMissing
from ..params import ParamSpec, resolve_params
from ..progress import Progress, as_progress
from ..registry import ModelEntry, Registry
from .base import Stage

LICENSE = "NTU S-Lab License 1.0 (non-commercial)"
_PRECISIONS = ("fp16", "bf16")


def parse_steps(text: str, steps: int) -> tuple[int, ...]:
    """"24, 26,28" -> (24, 26, 28): sorted, unique step indices in [0, steps)."""
    out = set()
    for word in str(text).replace(";", ",").split(","):
        word = word.strip()
        if not word:
            continue
        try:
            value = int(word)
        except ValueError:
            raise InputError(f"Propagation steps must be whole numbers separated by commas, got {word!r}.") from None
        if not 0 <= value < steps:
            raise InputError(f"Propagation step {value} is outside 0..{steps - 1} (the step indices of "
                             f"{steps} steps).")
        out.add(value)
    return tuple(sorted(out))


def clip_to_tensor(frames: np.ndarray):
    """(T, H, W, 3) uint8 -> (1, 3, T, H, W) float32 in [-1, 1]."""
    import torch

    x = torch.from_numpy(np.ascontiguousarray(frames)).permute(3, 0, 1, 2)[None].float()
    return x / 127.5 - 1.0


def tensor_to_frames(video) -> np.ndarray:
    """(1, 3, T, H, W) float in [-1, 1] -> (T, H, W, 3) uint8 (rounded)."""
    import torch

    x = ((video[0].float() + 1.0) * 127.5).round_().clamp_(0, 255).to(torch.uint8)
    return np.ascontiguousarray(x.permute(1, 2, 3, 0).numpy())


class UpscaleAVideoStage(Stage):
    """Upscale-A-Video (Zhou et al., CVPR 2024): temporally consistent diffusion video x4 upscaling.

    Input: Clip (T, H, W, 3) uint8. Output: Clip (T, 4H, 4W, 3) uint8, same fps.
    Needs a CUDA GPU; on a machine without one it raises Unavailable (the registry entry's
    `needs_gpu` lists it as unavailable beforehand). `allow_cpu=True` lets tests run it on the
    CPU in float32 (with a tiny pipeline: the real one takes hours there).

    Weights come from the registry entry (default "upscale-a-video"); `options.vae` picks
    "vae_3d" (default) or "vae_video", `options.precision` "fp16" (default) or "bf16",
    `options.unet_preset` the UNet architecture (default "upscale-a-video"). Pass
    `pipeline=` to use an assembled `UpscaleAVideo` instead, or `pipeline_loader=` to replace
    `loader.load_pipeline` (tests with tiny architectures). The loaded pipeline stays resident
    until `unload()`.
    """

    name = "upscale-a-video"
    label = "Upscale-A-Video (x4)"
    role = "upscale"
    license = LICENSE

    def __init__(self, registry: Optional[Registry] = None, entry: str = "upscale-a-video", *,
                 pipeline=None, pipeline_loader=None, allow_cpu: bool = False,
                 load_model: Optional[Callable[[], "ResidentPipeline"]] = None):
        if registry is None and pipeline is None and load_model is None:
            raise ValueError("UpscaleAVideoStage needs a registry, an assembled pipeline or a model loader")
        self._load_model = load_model
        self.registry = registry
        self.entry_name = entry
        self.allow_cpu = allow_cpu
        self._given = pipeline
        self._pipeline_loader = pipeline_loader
        self._lock = threading.Lock()
        self._loaded: Optional[tuple[tuple, Any]] = None

    @classmethod
    def from_entry(cls, entry: ModelEntry, load_model: Callable[[], "ResidentPipeline"]) -> "UpscaleAVideoStage":
        """The stage for a registry entry whose pipeline the service's model manager keeps
        resident: `load_model()` returns it (see the module-level `load_model`)."""
        return cls(entry=entry.name, load_model=load_model)

    def output_size(self, width: int, height: int, params: Mapping[str, Any]) -> tuple[int, int]:
        # inputs of 1280 px or more are downscaled by 4 first (see the module docstring)
        return (width, height) if max(width, height) >= 1280 else (width * 4, height * 4)

    # -- parameters --------------------------------------------------------------------------
    def param_specs(self) -> Sequence[ParamSpec]:
        return (
            ParamSpec("noise_level", "int", 120, label="Noise level", minimum=0, maximum=350, step=10,
                      help="Noise added to the low-res frames before diffusion (0-350; the authors suggest "
                           "0-200). Higher gives more generated detail and less fidelity to the input."),
            ParamSpec("guidance_scale", "float", 6.0, label="Guidance scale", minimum=1.0, maximum=20.0, step=0.5,
                      help="Classifier-free guidance towards the prompt; 1 turns guidance off."),
            ParamSpec("steps", "int", 30, label="Denoising steps", minimum=1, maximum=200, step=1,
                      help="DDIM steps. More steps usually add detail at proportional cost."),
            ParamSpec("propagation_steps", "str", "", label="Propagation steps",
                      help="Step indices (0-based, comma separated), e.g. 24,26,28, at which the predicted "
                           "clean latents are warped along RAFT optical flow between neighbouring frames for "
                           "temporal consistency. Empty: no propagation (RAFT is not loaded)."),
            ParamSpec("tile_size", "int", 256, label="Tile size", minimum=128, maximum=1024, step=32,
                      help="Low-res tile size (plus 64 px of context per side). Clips of 384x384 low-res "
                           "pixels or more are always tiled; smaller tiles need less GPU memory."),
            ParamSpec("prompt", "str", "", label="Prompt",
                      help="What the clip shows (the caption); 'best quality, extremely detailed' is appended."),
            ParamSpec("color_fix", "choice", "none", label="Colour correction", choices=("none", "adain", "wavelet"),
                      help="Match the output's colours to the input: per-frame statistics (adain) or low "
                           "frequencies (wavelet). Off by default, as upstream."),
            ParamSpec("seed", "int", 10, label="Seed", minimum=0, maximum=2**63 - 1, step=1,
                      help="Seed of the noise; the same seed gives the same result on the same GPU."),
        )

    # -- pipeline ----------------------------------------------------------------------------
    def _device(self):
        import torch

        if torch.cuda.is_available():
            return torch.device("cuda")
        if self.allow_cpu:
            return torch.device("cpu")
        raise Unavailable("Upscale-A-Video needs a CUDA GPU, and none is available on this machine.")

    def pipeline(self, device, with_propagation: bool = False):
        """The assembled pipeline on `device` (loaded once, kept resident)."""
        if self._given is not None:
            pipe = self._given
        elif self._load_model is not None:
            pipe = self._load_model().pipe
        else:
            with self._lock:
                key = (str(device),)
                if self._loaded is None or self._loaded[0] != key:
                    self._loaded = None  # release the old copy before loading the new one
                    entry = self.registry.get(self.entry_name)
                    self._loaded = (key, assemble(self.registry, entry, device, self._pipeline_loader,
                                                  with_raft=with_propagation))
                pipe = self._loaded[1]
                if with_propagation and not pipe.supports_propagation:
                    from ..models.upscale_a_video.loader import attach_propagation

                    entry = self.registry.get(self.entry_name)
                    attach_propagation(pipe, _require(self.registry, entry, "raft"))
        if with_propagation and not pipe.supports_propagation:
            raise ConfigError("Propagation steps need RAFT (raft-things.pth, see models.json); "
                              "clear the propagation steps or add the file.")
        return pipe

    def unload(self) -> None:
        with self._lock:
            self._loaded = None

    # -- processing --------------------------------------------------------------------------
    def process(self, clip: Clip, params: Mapping[str, Any], progress: Progress | None = None) -> Clip:
        import torch
        import torch.nn.functional as F

        from ..models.upscale_a_video.pipeline import UpscaleSettings

        progress = as_progress(progress)
        p = resolve_params(self.param_specs(), params)
        propagation = parse_steps(p["propagation_steps"], p["steps"])
        if propagation and clip.num_frames < 2:
            propagation = ()
        progress(0.0, "Upscale-A-Video: loading the models")
        if self._load_model is not None:  # the service's manager chose the device when loading
            pipe = self.pipeline(None, with_propagation=bool(propagation))
            device = pipe.device
        else:
            device = self._device()
            pipe = self.pipeline(device, with_propagation=bool(propagation))

        video = clip_to_tensor(clip.frames)
        if clip.height >= 1280 and clip.width >= 1280:
            # upstream works on a quarter-size copy of very large inputs
            small = F.interpolate(video[0].transpose(0, 1), (clip.height // 4, clip.width // 4), mode="area")
            video = small.transpose(0, 1)[None]
        settings = UpscaleSettings(
            noise_level=p["noise_level"], guidance_scale=p["guidance_scale"], steps=p["steps"],
            propagation_steps=propagation, prompt=p["prompt"], tile_size=p["tile_size"], color_fix=p["color_fix"],
        )
        generator = torch.Generator(device).manual_seed(p["seed"])
        try:
            out = pipe(video, settings, generator, progress)
        except torch.cuda.OutOfMemoryError:
            torch.cuda.empty_cache()
            raise OutOfMemory(f"Upscale-A-Video ran out of GPU memory on {clip.num_frames} frames of "
                              f"{clip.width}x{clip.height}; lower the tile size.") from None
        return clip.with_frames(tensor_to_frames(out))


class ResidentPipeline:
    """The assembled pipeline as the model manager holds it: its size, device and dtype.

    Its parts are closures over GPU modules, so it is not moved between devices: when the
    manager evicts it, `to` refuses and the manager drops it; it is reloaded on demand.
    """

    def __init__(self, pipe, dtype):
        import torch

        self.pipe = pipe
        self.dtype = dtype
        self.device = pipe.device
        seen, total = set(), 0
        for value in vars(pipe).values():
            owner = getattr(value, "__self__", value)
            modules = [owner] if isinstance(owner, torch.nn.Module) else [
                v for v in vars(owner).values() if isinstance(v, torch.nn.Module)] if hasattr(owner, "__dict__") else []
            for m in modules:
                for t in list(m.parameters()) + list(m.buffers()):
                    if id(t) not in seen:
                        seen.add(id(t))
                        total += t.numel() * t.element_size()
        self.nbytes = total

    def to(self, device):
        import torch

        if torch.device(device) == torch.device(self.device):
            return self
        raise RuntimeError("the Upscale-A-Video pipeline is not moved between devices")


def _require(registry: Registry, entry: ModelEntry, role: str) -> Path:
    wf = entry.file(role)
    path = wf.resolve(registry.root)
    if not path.exists():
        how = wf.manual or "see models.json"
        raise WeightsMissing(f"{entry.label} needs {Path(wf.path).name}, which is missing at {path}; "
                             f"obtain it manually: {how}.")
    return path


def assemble(registry: Registry, entry: ModelEntry, device, pipeline_loader=None, with_raft: bool = False):
    """Load every released part of `entry` and assemble the pipeline on `device`.

    options.vae picks "vae_3d" (default) or "vae_video"; options.precision "fp16" (default) or
    "bf16" for the UNet and text encoder on CUDA (float32 on the CPU); RAFT is attached when
    `with_raft` and its file is present.
    """
    import torch

    from ..models.upscale_a_video.loader import VAE_VARIANTS, ReleaseFiles, attach_propagation, load_pipeline
    from ..models.upscale_a_video.unet import PRESETS as UNET_PRESETS

    registry.require_files(entry)
    options = {"vae": ("vae_3d", VAE_VARIANTS), "precision": ("fp16", _PRECISIONS),
               "unet_preset": ("upscale-a-video", tuple(UNET_PRESETS))}
    chosen = {}
    for name, (default, allowed) in options.items():
        chosen[name] = entry.options.get(name, default)
        if chosen[name] not in allowed:
            raise ConfigError(f"{registry.source}: entry {entry.name!r}, field 'options.{name}': "
                              f"must be one of {', '.join(allowed)}, got {chosen[name]!r}.")
    device = torch.device(device)
    vae_variant, precision = chosen["vae"], chosen["precision"]
    dtype = {"fp16": torch.float16, "bf16": torch.bfloat16}[precision] if device.type == "cuda" else torch.float32

    def optional(role: str) -> Optional[Path]:
        return _existing(registry.path(entry, role)) if entry.has_file(role) else None

    tokenizer = optional("tokenizer_vocab")
    files = ReleaseFiles(
        unet=_require(registry, entry, "unet"),
        vae=_require(registry, entry, vae_variant),
        text_encoder=_require(registry, entry, "text_encoder").parent,
        vae_variant=vae_variant,
        tokenizer=tokenizer.parent if tokenizer is not None else None,
        unet_config=optional("unet_config"),
        scheduler_config=optional("scheduler_config"),
        low_res_scheduler_config=optional("low_res_scheduler_config"),
    )
    pipe = (pipeline_loader or load_pipeline)(files, device=device, dtype=dtype, unet_params=chosen["unet_preset"])
    raft = optional("raft")
    if with_raft and raft is not None and not pipe.supports_propagation:
        attach_propagation(pipe, raft)
    return pipe


def load_model(registry: Registry, entry: ModelEntry | str, *, device: Any = "cuda", dtype: Any = "auto"):
    """The service's loader: the assembled pipeline (with RAFT when its file is present) wrapped
    for the model manager. `dtype` is ignored in favour of the entry's `options.precision`."""
    import torch

    entry = registry.get(entry) if isinstance(entry, str) else entry
    if torch.device(device).type != "cuda":
        raise Unavailable("Upscale-A-Video needs a CUDA GPU, and none is available on this machine.")
    pipe = assemble(registry, entry, device, with_raft=True)
    return ResidentPipeline(pipe, next(pipe.unet.parameters()).dtype)


def _existing(path: Optional[Path]) -> Optional[Path]:
    return path if path is not None and path.exists() else None


__all__ = ["UpscaleAVideoStage", "LICENSE", "parse_steps"]
