"""OpenVINO CPU backend: our denoiser networks compiled by OpenVINO, called like the torch ones.

What runs through OpenVINO: the CamI2V-family UNet (with its camera inputs), the CamI2V VAE
decoder and the SVD UNet. Everything else (text/image encoders, camera geometry, the samplers,
the VAE encoder) stays in PyTorch: it runs once per video, while the UNet runs 2x per step.

How: each network is converted with `openvino.convert_model` from our own nn.Module, once per
input signature (static shapes: batch, frames, latent size, which camera tensors are present),
optionally with int8 weight compression (nncf, activations stay float), and saved on disk as
OpenVINO IR under a key of (weight hash, signature, options, OpenVINO version), so a second run
or a restart only compiles. The compiled model is wrapped to take and return torch tensors with
the same call as the torch module, so the samplers and the denoiser adapter (core.sampling)
cannot tell the backends apart.

Precision: OpenVINO's CPU plugin would run bf16 on CPUs with AMX / AVX512-BF16 by default; the
"f32" precision forces float32 compute, which is what reproduces PyTorch: `--backend openvino`
uses it. `--backend openvino-int8` is the fast, approximate one: int8 weights and "auto" compute
(bf16 where the CPU has it, else f32). At 256x256 x 16 frames on a 2-core AMX Xeon that was 3.1x
PyTorch fp32 for a 4-step CFG generation at 37.4 dB against it, where int8 weights with f32
compute gave 1.24x (bench/openvino.py; README).

`openvino` (and `nncf` for int8) are optional dependencies: without them `require_openvino`
raises `Unavailable` with one line saying what to install.
"""

from __future__ import annotations

import hashlib
import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Literal, Optional, Sequence

import torch
from torch import Tensor, nn

from .. import model_memory
from ..errors import OutOfMemory, Unavailable

BACKENDS = ("torch", "openvino", "openvino-int8")
MISSING_MESSAGE = ("The OpenVINO backend needs the optional package openvino: "
                   "pip install openvino (nncf too for int8 weights), or use --backend torch.")
MISSING_NNCF = ("int8 weights need the optional package nncf: pip install nncf, "
                "or use --backend openvino (float32 weights).")
DEFAULT_CACHE = Path("ckpts") / "openvino-cache"
# Converting needs this many times the network's weight bytes of free memory on top of the loaded
# model (the trace, TorchScript's frozen graph and OpenVINO's graph): measured at 256x256 x 16
# frames with CFG (bench/openvino.py), the 5.6 GiB CamI2V UNet took a process from 6.2 to
# 18.7 GiB (2.2x); batch 1 took 1.6x. Checked before converting, so a machine short of memory
# gets one line instead of the kernel killing the server.
CONVERT_MEMORY_FACTOR = 2.3


def require_openvino():
    """The `openvino` module, or Unavailable with the one-line install hint."""
    try:
        import openvino
    except ImportError:
        raise Unavailable(MISSING_MESSAGE) from None
    return openvino


def openvino_available() -> bool:
    try:
        require_openvino()
    except Unavailable:
        return False
    return True


@dataclass(frozen=True)
class OpenVINOOptions:
    """weights: "fp32" or "int8" (nncf weight compression; activations stay float).
    precision: OpenVINO CPU compute precision: "f32" (reproduces PyTorch), "bf16", or "auto"
    (bf16 where the CPU reports BF16 support, else f32).
    threads: CPU threads (None: torch's). cache_dir: where converted IR is kept."""

    weights: Literal["fp32", "int8"] = "fp32"
    precision: Literal["f32", "bf16", "auto"] = "f32"
    threads: Optional[int] = None
    cache_dir: Path = DEFAULT_CACHE

    def __post_init__(self) -> None:
        if self.weights not in ("fp32", "int8"):
            raise ValueError(f"weights must be 'fp32' or 'int8', got {self.weights!r}")
        if self.precision not in ("f32", "bf16", "auto"):
            raise ValueError(f"precision must be 'f32', 'bf16' or 'auto', got {self.precision!r}")

    @classmethod
    def for_backend(cls, backend: str, cache_dir: Path | str = DEFAULT_CACHE, **kw) -> "OpenVINOOptions":
        """The options of a `--backend` value: "openvino" (fp32 weights, f32 compute) or
        "openvino-int8" (int8 weights, "auto" compute); keywords override."""
        if backend not in BACKENDS[1:]:
            raise ValueError(f"not an OpenVINO backend: {backend!r}")
        int8 = backend == "openvino-int8"
        kw = {"weights": "int8" if int8 else "fp32", "precision": "auto" if int8 else "f32", **kw}
        return cls(cache_dir=Path(cache_dir), **kw)

    def compute_precision(self) -> str:
        """"f32" or "bf16": what the CPU plugin is asked to compute in ("auto" resolved)."""
        if self.precision != "auto":
            return self.precision
        caps = require_openvino().Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES")
        return "bf16" if "BF16" in caps else "f32"

    def compile_config(self) -> dict[str, Any]:
        return {"INFERENCE_PRECISION_HINT": self.compute_precision(), "PERFORMANCE_HINT": "LATENCY",
                "INFERENCE_NUM_THREADS": int(self.threads or torch.get_num_threads())}


def weights_hash(module: nn.Module) -> str:
    """sha256 over the module's state dict (names, dtypes, shapes, bytes): the cache key's weight part."""
    h = hashlib.sha256()
    for name, t in module.state_dict().items():
        t = t.detach().cpu().contiguous()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


def _signature(inputs: Sequence[Tensor]) -> tuple:
    return tuple((str(t.dtype).removeprefix("torch."), tuple(t.shape)) for t in inputs)


class CompiledNetwork:
    """One torch network compiled by OpenVINO per input signature, cached on disk.

    `make_graph(layout)` returns the nn.Module to convert for a `layout` (a hashable description
    of which inputs are present beyond their shapes); it takes the inputs as flat tensors and
    returns one tensor. Calling `run(layout, inputs)` converts (or reads from the cache) and
    compiles on first use of a signature, then runs. `weights_id` names the weights (default:
    the hash of `source`'s state dict, computed once).
    """

    def __init__(self, name: str, source: nn.Module, make_graph: Callable[[Any], nn.Module],
                 options: OpenVINOOptions, weights_id: Optional[str] = None):
        self.name = name
        self.source = source
        self.make_graph = make_graph
        self.options = options
        self._weights_id = weights_id
        self._compiled: dict[tuple, Any] = {}
        self._lock = threading.Lock()
        self.conversions = 0  # graphs converted by this object (not read from the cache)

    @property
    def weights_id(self) -> str:
        if self._weights_id is None:
            self._weights_id = weights_hash(self.source)
        return self._weights_id

    def cache_path(self, layout: Any, inputs: Sequence[Tensor], weights: Optional[str] = None) -> Path:
        """The IR file of one signature: keyed by weights, layout, shapes, weight format and
        the OpenVINO version (a new converter may produce another graph)."""
        ov = require_openvino()
        weights = weights or self.options.weights
        key = repr((self.name, self.weights_id, layout, _signature(inputs), weights, ov.get_version()))
        digest = hashlib.sha256(key.encode()).hexdigest()[:24]
        return Path(self.options.cache_dir) / f"{self.name}-{weights}-{digest}.xml"

    def _convert(self, layout: Any, inputs: Sequence[Tensor], path: Path) -> None:
        ov = require_openvino()
        fp32_path = self.cache_path(layout, inputs, weights="fp32") if self.options.weights == "int8" else None
        if fp32_path is not None and fp32_path.is_file() and fp32_path.with_suffix(".bin").is_file():
            model = ov.Core().read_model(fp32_path)  # compress the cached float graph: no second trace
        else:
            self._check_memory()
            graph = self.make_graph(layout).eval()
            with torch.no_grad():
                model = ov.convert_model(graph, example_input=tuple(inputs))
            model.reshape({port: ov.PartialShape(list(t.shape)) for port, t in zip(model.inputs, inputs)})  # static
        if self.options.weights == "int8":
            try:
                import nncf
            except ImportError:
                raise Unavailable(MISSING_NNCF) from None
            model = nncf.compress_weights(model)  # int8 per-channel weights, float activations
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.stem + f".tmp{os.getpid()}.xml")
        ov.save_model(model, tmp, compress_to_fp16=False)
        # A finished pair only: readers never see a half-written model.
        tmp.with_suffix(".bin").replace(path.with_suffix(".bin"))
        tmp.replace(path)
        self.conversions += 1

    def _check_memory(self) -> None:
        """OutOfMemory (one line) when converting would not fit in the free memory now."""
        need = CONVERT_MEMORY_FACTOR * model_memory.module_bytes(self.source)
        free = model_memory.available_ram()
        if free < need:
            raise OutOfMemory(
                f"Converting {self.name} for OpenVINO needs about {need / 2**30:.1f} GiB of free memory "
                f"(once; the result is cached), but {free / 2**30:.1f} GiB are free. Close other programs "
                "and try again, or use --backend torch.")

    def prepare(self, layout: Any, inputs: Sequence[Tensor]) -> Path:
        """Convert (if not cached) without compiling; returns the IR path (benchmarks convert
        while the torch weights are loaded, then compile in a process without them)."""
        inputs = [t.detach().cpu().contiguous() for t in inputs]
        with self._lock:
            path = self.cache_path(layout, inputs)
            if not (path.is_file() and path.with_suffix(".bin").is_file()):
                self._convert(layout, inputs, path)
            return path

    def compiled(self, layout: Any, inputs: Sequence[Tensor]):
        key = (layout, _signature(inputs))
        with self._lock:
            if key not in self._compiled:
                ov = require_openvino()
                path = self.cache_path(layout, inputs)
                if not (path.is_file() and path.with_suffix(".bin").is_file()):
                    self._convert(layout, inputs, path)
                core = ov.Core()
                compiled = core.compile_model(core.read_model(path), "CPU", self.options.compile_config())
                self._compiled[key] = compiled.create_infer_request()
            return self._compiled[key]

    def release(self) -> None:
        """Drop the compiled models (their memory; the IR on disk stays): the next call of a
        signature compiles it again."""
        with self._lock:
            self._compiled.clear()

    def run(self, layout: Any, inputs: Sequence[Tensor]) -> Tensor:
        inputs = [t.detach().cpu().contiguous() for t in inputs]
        request = self.compiled(layout, inputs)
        request.infer([t.numpy() for t in inputs])
        return torch.from_numpy(request.get_output_tensor(0).data.copy())


# ---------------------------------------------------------------------------------------------
# CamI2V-family UNet


@dataclass(frozen=True)
class CameraLayout:
    """Which camera tensors a UNet call carries, in `flatten_camera` order (hashable)."""

    variant: str
    batch: int
    frames: int
    pose_levels: int  # len(pose_features), 0 if None
    mask_levels: tuple[int, ...]  # epipolar mask keys, sorted
    motion_rt: bool


def flatten_camera(camera) -> tuple[Optional[CameraLayout], list[Tensor]]:
    """A `CameraCondition` (or None) -> (layout, tensors): pose features, masks, motion RT."""
    if camera is None:
        return None, []
    pose = list(camera.pose_features or ())
    masks = camera.epipolar_masks or {}
    keys = tuple(sorted(masks))
    rt = [camera.motion_rt] if camera.motion_rt is not None else []
    layout = CameraLayout(camera.variant, camera.batch, camera.frames, len(pose), keys, bool(rt))
    return layout, pose + [masks[k] for k in keys] + rt


def unflatten_camera(layout: Optional[CameraLayout], tensors: Sequence[Tensor]):
    from .cami2v.camera import CameraCondition

    if layout is None:
        return None
    n = layout.pose_levels
    pose = tuple(tensors[:n]) if n else None
    masks = dict(zip(layout.mask_levels, tensors[n:n + len(layout.mask_levels)])) if layout.mask_levels else None
    rt = tensors[-1] if layout.motion_rt else None
    return CameraCondition(layout.variant, layout.batch, layout.frames, pose, masks, rt)


class _CamI2VGraph(nn.Module):
    """The UNet with its camera condition as flat tensor inputs (what convert_model traces)."""

    def __init__(self, unet: nn.Module, layout: Optional[CameraLayout]):
        super().__init__()
        self.unet = unet
        self.layout = layout

    def forward(self, x: Tensor, timesteps: Tensor, context: Tensor, fs: Tensor, *camera: Tensor) -> Tensor:
        return self.unet(x, timesteps, context, fs, unflatten_camera(self.layout, camera))


class OpenVINOUNet:
    """Callable like `UNet3D`: (x (B, 8, T, h, w), timesteps (B,) int64, context (B, L, C),
    fs (B,) int64, camera CameraCondition | None) -> (B, 4, T, h, w) in x's dtype, computed by
    OpenVINO (float32 inputs; see the module docstring for precision)."""

    def __init__(self, unet: nn.Module, options: OpenVINOOptions, weights_id: Optional[str] = None):
        self.unet = unet
        self.network = CompiledNetwork("cami2v-unet", unet, lambda layout: _CamI2VGraph(unet, layout),
                                       options, weights_id)

    def __call__(self, x: Tensor, timesteps: Tensor, context: Tensor, fs: Optional[Tensor] = None,
                 camera=None) -> Tensor:
        if fs is None:
            fs = torch.full((x.shape[0],), self.unet.params.default_fs, dtype=torch.long)
        layout, cam = flatten_camera(camera)
        cam = [t if t.dtype == torch.bool else t.float() for t in cam]
        out = self.network.run(layout, [x.float(), timesteps.long(), context.float(), fs.long(), *cam])
        return out.to(device=x.device, dtype=x.dtype)


class _DecodeGraph(nn.Module):
    def __init__(self, vae: nn.Module):
        super().__init__()
        self.vae = vae

    def forward(self, z: Tensor) -> Tensor:
        return self.vae.decode_image(z)


class OpenVINOVideoDecoder:
    """`AutoencoderKL.decode_video` through OpenVINO: z (B, C, T, h, w) scaled latent ->
    (B, 3, T, H, W) roughly [-1, 1], `chunk` frames per call (one compiled shape per chunk size)."""

    def __init__(self, vae: nn.Module, options: OpenVINOOptions, weights_id: Optional[str] = None):
        self.vae = vae
        self.network = CompiledNetwork("kl-decoder", vae, lambda _layout: _DecodeGraph(vae), options, weights_id)

    def __call__(self, z: Tensor, *, chunk: int = 1, on_chunk: Optional[Callable[[int, int], None]] = None) -> Tensor:
        b, c, t, h, w = z.shape
        frames = z.permute(0, 2, 1, 3, 4).reshape(b * t, c, h, w).float()
        out = []
        for s in range(0, b * t, max(1, chunk)):
            out.append(self.network.run(None, [frames[s:s + chunk] / self.vae.scale_factor]))
            if on_chunk is not None:
                on_chunk(min(s + chunk, b * t), b * t)
        x = torch.cat(out).to(z.dtype)
        return x.reshape(b, t, *x.shape[1:]).permute(0, 2, 1, 3, 4)


class OpenVINOCamI2V:
    """A loaded `LatentVideoDiffusion` whose UNet and VAE decoder run through OpenVINO.

    `model` stays the torch model (encoders, camera geometry, conversion source for shapes not
    compiled yet), so the float32 backend holds the UNet twice (torch + compiled) and int8 about
    1.25 times; `unet` and `decode_video` are what `CamI2VPipeline` calls instead of the torch
    ones. The model manager sees an object with `to`, `nbytes`, `device` and `dtype` (CPU only).
    """

    backend = "openvino"

    def __init__(self, model: nn.Module, options: OpenVINOOptions):
        if any(p.device.type != "cpu" or p.dtype != torch.float32 for p in model.parameters()):
            raise ValueError("the OpenVINO backend converts a float32 CPU model")
        self.model = model
        self.options = options
        self.unet = OpenVINOUNet(model.unet, options)
        self.decode_video = OpenVINOVideoDecoder(model.vae, options)

    @property
    def params(self):
        return self.model.params

    @property
    def nbytes(self) -> int:
        from ..manager import module_bytes

        # the torch model plus the compiled UNet and decoder (int8 weights: a quarter of float32)
        compiled = module_bytes(self.model.unet) + module_bytes(self.model.vae)
        return module_bytes(self.model) + (compiled // 4 if self.options.weights == "int8" else compiled)

    device = torch.device("cpu")
    dtype = torch.float32

    def to(self, device: Any) -> "OpenVINOCamI2V":
        if torch.device(device).type != "cpu":
            raise Unavailable("The OpenVINO backend runs on the CPU only; use --backend torch on a GPU.")
        return self


# ---------------------------------------------------------------------------------------------
# SVD (diffusers' UNetSpatioTemporalConditionModel)


class _SVDGraph(nn.Module):
    def __init__(self, unet: nn.Module):
        super().__init__()
        self.unet = unet

    def forward(self, sample: Tensor, timestep: Tensor, encoder_hidden_states: Tensor, added_time_ids: Tensor) -> Tensor:
        return self.unet(sample, timestep, encoder_hidden_states=encoder_hidden_states,
                         added_time_ids=added_time_ids, return_dict=False)[0]


class OpenVINOSVDUNet(nn.Module):
    """Stands in for diffusers' SVD UNet inside its pipeline: the same `config`, `dtype`,
    `device`, `add_embedding` (read by the pipeline) and call
    `(sample (B, T, 8, h, w), timestep, encoder_hidden_states (B, 1, C), added_time_ids (B, 3),
    return_dict=False) -> ((B, T, 4, h, w),)`, computed by OpenVINO."""

    def __init__(self, unet: nn.Module, options: OpenVINOOptions, weights_id: Optional[str] = None):
        super().__init__()
        self.config = unet.config
        self.add_embedding = unet.add_embedding
        self.network = CompiledNetwork("svd-unet", unet, lambda _layout: _SVDGraph(unet), options, weights_id)

    @property
    def dtype(self) -> torch.dtype:
        return torch.float32

    @property
    def device(self) -> torch.device:
        return torch.device("cpu")

    def forward(self, sample: Tensor, timestep: Any, encoder_hidden_states: Tensor, added_time_ids: Tensor,
                return_dict: bool = False):
        b = sample.shape[0]
        t = torch.as_tensor(timestep, dtype=torch.float32).reshape(-1).expand(b).contiguous()
        out = self.network.run(None, [sample.float(), t, encoder_hidden_states.float(), added_time_ids.float()])
        out = out.to(sample.dtype)
        if return_dict:
            from diffusers.models.unets.unet_spatio_temporal_condition import UNetSpatioTemporalConditionOutput

            return UNetSpatioTemporalConditionOutput(sample=out)
        return (out,)


def svd_pipeline_with_openvino(pipe: Any, options: OpenVINOOptions):
    """A copy of a float32 diffusers SVD pipeline whose UNet runs through OpenVINO (same scheduler
    loop, VAE and image encoder)."""
    from diffusers import StableVideoDiffusionPipeline

    if pipe.unet.dtype != torch.float32:
        raise ValueError("the OpenVINO backend converts a float32 SVD UNet")
    new = StableVideoDiffusionPipeline(vae=pipe.vae, image_encoder=pipe.image_encoder,
                                       unet=OpenVINOSVDUNet(pipe.unet, options), scheduler=pipe.scheduler,
                                       feature_extractor=pipe.feature_extractor)
    new.set_progress_bar_config(disable=True)
    return new


# ---------------------------------------------------------------------------------------------
# The service's entry point


def with_backend(model: Any, variant: str, options: OpenVINOOptions) -> Any:
    """The managed model of registry `variant` ("cami2v" | "svd") on the OpenVINO backend;
    other variants are returned as they are (their stages run in PyTorch)."""
    require_openvino()
    if options.weights == "int8":
        try:
            import nncf  # noqa: F401
        except ImportError:
            raise Unavailable(MISSING_NNCF) from None
    if variant == "cami2v":
        return OpenVINOCamI2V(model, options)
    if variant == "svd":
        from ..generators.svd import SVDModel

        return SVDModel(svd_pipeline_with_openvino(model.pipeline, options), model.dtype_name)
    return model


__all__ = ["BACKENDS", "MISSING_MESSAGE", "OpenVINOOptions", "CompiledNetwork", "OpenVINOUNet",
           "OpenVINOVideoDecoder", "OpenVINOCamI2V", "OpenVINOSVDUNet", "svd_pipeline_with_openvino",
           "with_backend", "require_openvino", "openvino_available", "weights_hash", "flatten_camera",
           "unflatten_camera", "CameraLayout"]
