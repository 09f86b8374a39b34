"""Upscale-A-Video as a post-processing stage (role "upscale", x4, CUDA only).

The prompt is the clip's caption (the dashboard passes the Qwen2-VL caption) or the user's text;
the LLaVA captioner of the upstream script is not used. The stage downscales inputs of at least
1280 x 1280 by 4 first (as upstream), so its output is always x4 of what the diffusion model saw.
Licence of the code and weights: NTU S-Lab License 1.0 (non-commercial use only).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Mapping, Optional, Sequence

import numpy as np

from ..clip import Clip
from ..errors import ConfigError, InputError, OutOfMemory, Unavailable, WeightsMissing
from ..params import ParamSpec, resolve_params
from ..progress import Progress, as_progress
from ..models.upscale_a_video.params import STAGE_PARAMS
from ..registry import ModelEntry, Registry
from .base import Stage

if TYPE_CHECKING:
    from ..manager import ModelManager

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

    The pipeline comes from a model manager (`core.manager.ModelManager`), which loads it once
    and keeps it resident: `from_entry(entry, load_model=get)` is the service's path;
    `UpscaleAVideoStage(registry)` registers the entry's `load_model` with `manager` (default: a
    manager of its own on the default device). Weights come from the registry entry (default
    "upscale-a-video"); `options.vae` picks "vae_3d" (default) or "vae_video",
    `options.precision` "fp16" (default) or "bf16", `options.unet_preset` the UNet architecture
    (default "upscale-a-video"); `pipeline_loader=` replaces `loader.load_pipeline` (tests with
    tiny architectures). `pipeline=` hands over an assembled `UpscaleAVideo` instead.
    """

    name = "upscale-a-video"
    label = "Upscale-A-Video (x4)"
    role = "upscale"
    license = LICENSE

    def __init__(self, registry: Optional[Registry] = None, entry: str = "upscale-a-video", *,
                 pipeline=None, pipeline_loader=None, allow_cpu: bool = False,
                 load_model: Optional[Callable[[], "ResidentPipeline"]] = None,
                 manager: "ModelManager | None" = None):
        self._manager = None
        if load_model is None and pipeline is not None:
            resident = ResidentPipeline(pipeline, _unet_dtype(pipeline))
            load_model = lambda: _require_cuda(resident, allow_cpu)  # noqa: E731
        elif load_model is None and registry is not None:
            from ..manager import ModelManager

            self._manager = manager if manager is not None else ModelManager()
            load_model = managed(registry, registry.get(entry), self._manager, allow_cpu, pipeline_loader)
        elif load_model is None:
            raise ValueError("UpscaleAVideoStage needs a registry, an assembled pipeline or a model loader")
        self.entry_name = entry
        self._load_model = load_model

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
        # the one source of these limits; the pipeline checks its settings against the same specs
        return STAGE_PARAMS

    # -- pipeline ----------------------------------------------------------------------------
    def pipeline(self, device=None, with_propagation: bool = False):
        """The resident pipeline (loaded by the model manager on first use); with RAFT attached
        when `with_propagation`. `device`, when given, must be the one it lives on."""
        resident = self._load_model()
        if device is not None and _torch_device(device) != _torch_device(resident.device):
            raise ValueError(f"the Upscale-A-Video pipeline lives on {resident.device}, not {device}")
        if with_propagation:
            resident.require_propagation()
        return resident.pipe

    def unload(self) -> None:
        """Release the pipeline this stage's own manager holds (the service's manager decides
        for itself; a handed-over pipeline stays)."""
        if self._manager is not None:
            self._manager.unload(self.entry_name)

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
        pipe = self.pipeline(with_propagation=bool(propagation))
        device = pipe.device  # chosen by the model manager when it loaded the pipeline

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
    `raft` is the entry's RAFT file (None: the entry has none); RAFT is attached when it
    exists at load time, or on the first request for propagation after it appears.
    """

    def __init__(self, pipe, dtype, raft: Optional[Path] = None, raft_missing: str = ""):
        self.pipe = pipe
        self.dtype = dtype
        self.device = pipe.device
        self.raft = raft
        self.raft_missing = raft_missing
        self.nbytes = _pipeline_bytes(pipe)

    def to(self, device):
        if _torch_device(device) == _torch_device(self.device):
            return self
        raise RuntimeError("the Upscale-A-Video pipeline is not moved between devices")

    def require_propagation(self) -> None:
        """Make sure RAFT and the propagation module are attached (loading RAFT if needed)."""
        if self.pipe.supports_propagation:
            return
        if self.raft is None:
            raise ConfigError("Propagation steps need RAFT (raft-things.pth, see models.json); "
                              "clear the propagation steps or add the file.")
        if not self.raft.exists():
            raise WeightsMissing(self.raft_missing)
        from ..models.upscale_a_video.loader import attach_propagation

        attach_propagation(self.pipe, self.raft)
        self.nbytes = _pipeline_bytes(self.pipe)


def _pipeline_bytes(pipe) -> int:
    """Bytes of the parameters and buffers of every module the pipeline holds (shared ones once)."""
    import torch

    from ..model_memory import module_bytes

    modules = []
    for value in vars(pipe).values():
        owner = getattr(value, "__self__", value)  # a bound method's module (the prompt encoder)
        if isinstance(owner, torch.nn.Module):
            modules.append(owner)
        elif hasattr(owner, "__dict__"):  # e.g. the propagation wrapper holding RAFT
            modules.extend(v for v in vars(owner).values() if isinstance(v, torch.nn.Module))
    return module_bytes(torch.nn.ModuleList(modules))


def _unet_dtype(pipe):
    return next(pipe.unet.parameters()).dtype


def _torch_device(device):
    import torch

    return torch.device(device)


def _require_cuda(resident: ResidentPipeline, allow_cpu: bool) -> ResidentPipeline:
    if _torch_device(resident.device).type != "cuda" and not allow_cpu:
        raise Unavailable("Upscale-A-Video needs a CUDA GPU, and none is available on this machine.")
    return resident


def _missing_message(registry: Registry, entry: ModelEntry, role: str) -> str:
    wf = entry.file(role)
    how = wf.manual or "see models.json"
    return (f"{entry.label} needs {Path(wf.path).name}, which is missing at {wf.resolve(registry.root)}; "
            f"obtain it manually: {how}.")


def _require(registry: Registry, entry: ModelEntry, role: str) -> Path:
    path = entry.file(role).resolve(registry.root)
    if not path.exists():
        raise WeightsMissing(_missing_message(registry, entry, role))
    return path


def assemble(registry: Registry, entry: ModelEntry, device, pipeline_loader=None):
    """Load every released part of `entry` and assemble the pipeline on `device`.

    options.vae picks "vae_3d" (default) or "vae_video"; options.precision "fp16" (default) or
    "bf16" for the UNet and text encoder on CUDA (float32 on the CPU); RAFT is attached when
    its file is present.
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
    if raft is not None and not pipe.supports_propagation:
        attach_propagation(pipe, raft)
    return pipe


def load_model(registry: Registry, entry: ModelEntry | str, *, device: Any = "cuda", dtype: Any = "auto",
               allow_cpu: bool = False, pipeline_loader=None) -> ResidentPipeline:
    """The model manager's loader: the assembled pipeline (with RAFT when its file is present)
    on `device`, wrapped for the manager. `dtype` is ignored in favour of the entry's
    `options.precision`; a device other than CUDA is refused unless `allow_cpu` (tests)."""
    entry = registry.get(entry) if isinstance(entry, str) else entry
    if _torch_device(device).type != "cuda" and not allow_cpu:
        raise Unavailable("Upscale-A-Video needs a CUDA GPU, and none is available on this machine.")
    pipe = assemble(registry, entry, device, pipeline_loader)
    raft = entry.file("raft").resolve(registry.root) if entry.has_file("raft") else None
    missing = _missing_message(registry, entry, "raft") if raft is not None else ""
    return ResidentPipeline(pipe, _unet_dtype(pipe), raft, missing)


def managed(registry: Registry, entry: ModelEntry, manager: "ModelManager", allow_cpu: bool = False,
            pipeline_loader=None) -> Callable[[], ResidentPipeline]:
    """`get()` returning the entry's pipeline held by `manager` (loaded on the manager's device)."""
    return manager.provider(entry.name, lambda device: load_model(registry, entry, device=device, allow_cpu=allow_cpu,
                                                                  pipeline_loader=pipeline_loader))


def _existing(path: Optional[Path]) -> Optional[Path]:
    return path if path is not None and path.exists() else None


__all__ = ["UpscaleAVideoStage", "LICENSE", "parse_steps"]
