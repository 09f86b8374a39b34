"""What the service can build: the built-in entries, and one table from a models.json variant
to the code that makes its generator or stage and the code that loads its weights.

`VARIANTS` is read top to bottom like a menu: each row names a real function (imports happen
inside those small functions, so listing models does not import torch-heavy modules). Nothing
here is resolved from a module-path string.
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple, Sequence

from .devices import cuda_available
from .errors import ConfigError, InputError, StudioError, Unavailable
from .params import ParamSpec, resolve_params
from .postprocess import chains as chainlib
from .registry import ModelEntry, Registry

# Entries that must exist even when models.json is missing or broken: the embedded default
# does the whole job with no weights and no GPU.
_OPENCV_LICENSE = "https://github.com/opencv/opencv/blob/4.x/LICENSE"
BUILTIN_MODELS: dict[str, Any] = {
    "kenburns": {
        "kind": "generator", "variant": "kenburns", "label": "Ken Burns preview (no AI)",
        "description": "Moves a virtual camera over the photo as if it were a flat picture. Instant, "
                       "needs no weights or GPU; no parallax and nothing new is imagined.",
        "license": "MIT (this project)", "commercial_use": "yes",
    },
    "nlmeans": {
        "kind": "denoiser", "variant": "nlmeans", "label": "OpenCV temporal NL-means",
        "description": "Non-local means over a 5-frame window (OpenCV). No weights.",
        "license": "Apache-2.0 (OpenCV)", "commercial_use": "yes", "license_url": _OPENCV_LICENSE,
    },
    "lanczos": {
        "kind": "upscaler", "variant": "lanczos", "label": "Lanczos x2/x4",
        "description": "Classical Lanczos resampling (OpenCV). No weights.",
        "license": "Apache-2.0 (OpenCV)", "commercial_use": "yes", "license_url": _OPENCV_LICENSE,
    },
    # -- frame interpolation (role "interpolate") --
    "dis-interp": {
        "kind": "interpolator", "variant": "dis-interp", "label": "Optical-flow interpolation (DIS)",
        "description": "New frames between frames (x2/x3/x4 or a target fps) from OpenCV DIS optical flow in "
                       "both directions, blended where the flow is consistent (occlusion-aware). No weights.",
        "license": "Apache-2.0 (OpenCV)", "commercial_use": "yes", "license_url": _OPENCV_LICENSE,
    },
}

ROLE_KIND = {"denoise": "denoiser", "upscale": "upscaler", "interpolate": "interpolator"}
STAGE_KINDS = tuple(ROLE_KIND.values())

# factory(entry, load_model) -> Generator | Stage, where load_model() returns the resident model
Factory = Callable[[ModelEntry, Callable[[], Any]], Any]
# loader(registry, entry, *, device, dtype) -> the model the manager keeps resident
Loader = Callable[..., Any]


class Variant(NamedTuple):
    kind: str  # "generator" | "stage"
    factory: Factory
    loader: Loader | None  # None: no weights (nothing for the manager to hold)


# -- the code of each variant (imports inside: listing models must not import torch) ------------
# A weight-bearing variant's module gives its class (with `from_entry(entry, load_model)`) and its
# `load_model(registry, entry, *, device, dtype)`; one small importer per variant names both.

def _cami2v():
    from .generators.cami2v import CamI2VGenerator, load_model

    return CamI2VGenerator, load_model


def _svd():
    from .generators.svd import SVDGenerator, load_model

    return SVDGenerator, load_model


def _sv3d():
    from .generators.sv3d import SV3DGenerator, load_model

    return SV3DGenerator, load_model


def _fastdvdnet():
    from .postprocess.fastdvdnet import FastDVDnetStage, load_model

    return FastDVDnetStage, load_model


def _upscale_a_video():
    from .postprocess.upscale_a_video import UpscaleAVideoStage, load_model

    return UpscaleAVideoStage, load_model


def _rife():
    from .postprocess.rife import RIFEStage, load_model

    return RIFEStage, load_model


def _realesrgan():
    from .postprocess.realesrgan import RealESRGANStage, load_model

    return RealESRGANStage, load_model


Importer = Callable[[], tuple[Any, Loader]]


def _with_weights(kind: str, importer: Importer) -> Variant:
    """The row of a weight-bearing variant: its class built from the entry around the manager's
    `load_model`, and its module's loader."""

    def factory(entry: ModelEntry, load_model: Callable[[], Any]):
        cls, _ = importer()
        return cls.from_entry(entry, load_model)

    def loader(registry: Registry, entry: ModelEntry, *, device: Any, dtype: str):
        _, load = importer()
        return load(registry, entry, device=device, dtype=dtype)

    return Variant(kind, factory, loader)


def _kenburns(entry: ModelEntry, load_model: Callable[[], Any]):
    from .generators.kenburns import KenBurnsGenerator

    return KenBurnsGenerator()


def _classical(entry: ModelEntry, load_model: Callable[[], Any]):
    return chainlib.create_stage(entry.variant)


VARIANTS: dict[str, Variant] = {
    "kenburns": Variant("generator", _kenburns, None),
    "cami2v": _with_weights("generator", _cami2v),
    "svd": _with_weights("generator", _svd),
    "sv3d": _with_weights("generator", _sv3d),
    "nlmeans": Variant("stage", _classical, None),
    "lanczos": Variant("stage", _classical, None),
    "dis-interp": Variant("stage", _classical, None),
    "fastdvdnet": _with_weights("stage", _fastdvdnet),
    "upscale-a-video": _with_weights("stage", _upscale_a_video),
    "rife": _with_weights("stage", _rife),
    "realesrgan": _with_weights("stage", _realesrgan),
}


def build(registry: Registry, entry: ModelEntry, what: str, load_model: Callable[[], Any]):
    """The generator or stage (`what`) of `entry`; ConfigError naming the entry for a variant
    that is not a `what`."""
    variant = VARIANTS.get(entry.variant)
    if variant is None or variant.kind != what:
        raise ConfigError(f"{registry.source}: entry {entry.name!r}, field 'variant': "
                          f"unknown {what} variant {entry.variant!r}.")
    return variant.factory(entry, load_model)


def model_loader(registry: Registry, entry: ModelEntry, dtype: str, backend: str = "torch",
                 openvino_cache: Any = None) -> Callable[[Any], Any]:
    """`loader(device)` building the resident model of a weight-bearing variant; with an OpenVINO
    `backend`, CamI2V and SVD load in float32 on the CPU and their networks are compiled
    (core.models.openvino_backend, IR cached under `openvino_cache`)."""
    variant = VARIANTS.get(entry.variant)
    if variant is None or variant.loader is None:
        raise ConfigError(f"{registry.source}: entry {entry.name!r} has no loadable model (variant {entry.variant!r}).")
    load = variant.loader
    if backend != "torch" and entry.variant in ("cami2v", "svd"):
        from .models.openvino_backend import OpenVINOOptions, with_backend

        options = OpenVINOOptions.for_backend(backend, openvino_cache)
        return lambda device: with_backend(load(registry, entry, device="cpu", dtype="fp32"), entry.variant, options)
    return lambda device: load(registry, entry, device=device, dtype=dtype)


# -- set-up checks -------------------------------------------------------------------------------

def load_registry(path, root, messages: list[str]) -> Registry:
    """models.json plus the built-in entries it lacks; only the built-ins (with a line appended
    to `messages`) when it is missing, broken or has out-of-range defaults."""
    builtin = Registry.from_dict({"models": BUILTIN_MODELS}, root=root, source="built-in")
    try:
        reg = Registry.load(path, root=root)
    except ConfigError as exc:
        messages.append(f"{exc} Only the built-in models (no weights needed) are offered.")
        return builtin
    try:
        check_builtin_defaults(reg)
    except ConfigError as exc:
        messages.append(f"{exc} Only the built-in models (no weights needed) are offered.")
        return builtin
    missing = [e for e in builtin if e.name not in reg]
    return Registry(list(reg) + missing, root=reg.root, source=reg.source) if missing else reg


def check_builtin_defaults(reg: Registry) -> None:
    """ConfigError naming the entry when the defaults of a weight-free entry (kenburns,
    nlmeans, lanczos: cheap to build) are out of range, e.g. a width of 99999."""
    for e in reg:
        if e.variant not in ("kenburns", "nlmeans", "lanczos") or not e.defaults:
            continue
        if e.variant == "kenburns":
            from .generators.kenburns import KenBurnsGenerator

            specs = KenBurnsGenerator().param_specs()
        else:
            specs = chainlib.create_stage(e.variant).param_specs()
        check_defaults(reg, e, specs)


def check_defaults(reg: Registry, e: ModelEntry, specs: Sequence[ParamSpec]) -> None:
    """ConfigError naming the entry when its models.json defaults do not fit its parameters."""
    try:
        resolve_params(specs, None, e.defaults)
    except StudioError as exc:
        raise ConfigError(f"{reg.source}: entry {e.name!r}, field 'defaults': {exc}") from None


def pick_device(device: str) -> str:
    # torch-free (core.devices): the dashboard picks its device at start-up, torch loads with a model
    if device in ("", "auto"):
        return "cuda" if cuda_available() else "cpu"
    if device == "cpu" or device.startswith("cuda"):
        if device.startswith("cuda"):
            if not cuda_available():
                raise Unavailable(f"--device {device}: no CUDA GPU is available on this machine; use --device cpu.")
        return device
    raise InputError(f"Unknown device {device!r}; use auto, cpu, cuda or cuda:N.")


def offered_backends(device: str) -> tuple[str, ...]:
    """The backends worth offering: OpenVINO only on machines without CUDA (it runs on the CPU)."""
    return ("torch",) if device.startswith("cuda") else ("torch", "openvino", "openvino-int8")


def backend_hint(device: str, backend: str) -> str | None:
    """One line suggesting the OpenVINO backend on a machine without CUDA where it is installed."""
    import importlib.util

    if backend == "torch" and "openvino" in offered_backends(device) and importlib.util.find_spec("openvino"):
        return ("no CUDA GPU: --backend openvino-int8 runs CamI2V and SVD about 3x faster on this CPU "
                "(--backend openvino: float32, matches PyTorch).")
    return None


def pick_backend(backend: str, device: str) -> str:
    """A valid backend for `device`; OpenVINO must be installed (one clear line otherwise)."""
    backend = backend or "torch"
    if backend == "torch":
        return backend
    if backend not in ("openvino", "openvino-int8"):
        raise InputError(f"Unknown backend {backend!r}; use torch, openvino or openvino-int8.")
    if device.startswith("cuda"):
        raise InputError(f"--backend {backend} runs on the CPU; use --device cpu with it (or --backend torch).")
    from .models.openvino_backend import require_openvino

    require_openvino()
    return backend


def pick_dtype(dtype: str, device: str) -> str:
    if dtype in ("", "auto"):
        return "bf16" if device.startswith("cuda") else "fp32"
    if dtype not in ("fp32", "bf16", "fp16"):
        raise InputError(f"Unknown dtype {dtype!r}; use auto, fp32, bf16 or fp16.")
    return dtype
