"""Real-ESRGAN as a post-processing stage (role "upscale", x2 or x4), built by spandrel.

Two released models (BSD-3-Clause, github.com/xinntao/Real-ESRGAN), one registry entry each:

* `realesrgan`: realesr-general-x4v3 (SRVGGNetCompact, 1.2 M parameters). Its denoise strength
  s in [0, 1] blends the parameters of the two released files the way upstream does (deep network
  interpolation): s * realesr-general-x4v3 + (1 - s) * realesr-general-wdn-x4v3, so 1 is the
  strong-denoise model alone and 0 the weak-denoise ("wdn") one.
* `realesrgan-x4plus`: RealESRGAN_x4plus (RRDBNet, 23 blocks, 16.7 M parameters).

The architectures come from spandrel (see spandrel_import), not from code of ours. Both models
are x4; x2 is the x4 result reduced by an exact 2x2 box average (upstream resizes with Lanczos
for other scales; for an exact factor 2 the box average has no ringing). Each frame is upscaled
on its own, in tiles with an overlap of context on every side that is cropped away, so seams do
not show and memory is bounded. Per-frame upscaling can flicker: chain a temporal denoiser
after it (e.g. "realesrgan+fastdvdnet").
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any, Callable, Mapping, Sequence

import numpy as np

from ..clip import Clip
from ..devices import cuda_available
from ..errors import ConfigError, OutOfMemory, Unavailable
from ..params import ParamSpec, resolve_params
from ..progress import Progress, as_progress
from ..registry import ModelEntry, Registry
from .base import Stage

WEIGHT_ROLE = "checkpoint"  # realesr-general-x4v3.pth or RealESRGAN_x4plus.pth
WDN_ROLE = "checkpoint_wdn"  # realesr-general-wdn-x4v3.pth: the weak-denoise end of the blend
NET_SCALE = 4  # both released models are x4
ARCHITECTURES = ("Compact", "ESRGAN")  # spandrel's ids for SRVGGNetCompact and RRDBNet
DEFAULT_TILE = 256  # input pixels per tile side (x4: 1024 output pixels)
DEFAULT_OVERLAP = 16  # input pixels of context added on each side of a tile, then cropped
_PRECISIONS = {"fp16": "float16", "bf16": "bfloat16", "fp32": "float32"}

# torch is imported where a network is built or run, never at the top: listing the stages builds
# this one (for its parameters) while the dashboard starts. The network is in realesrgan_net.
if TYPE_CHECKING:  # pragma: no cover
    from .realesrgan_net import RealESRGANNet


def tiled_upscale(net: Callable[[Any], Any], x, scale: int, tile: int = DEFAULT_TILE, overlap: int = DEFAULT_OVERLAP):
    """Run `net` (x`scale`) on (B, C, H, W) `x` in tiles of `tile` x `tile` input pixels, each
    with up to `overlap` pixels of neighbouring context per side that is cropped from its output.
    tile <= 0, or a frame no larger than one tile, runs whole. Output: (B, C, scale*H, scale*W)."""
    b, c, h, w = x.shape
    if tile <= 0 or (h <= tile and w <= tile):
        return net(x)
    s = scale
    out = None
    for y0 in range(0, h, tile):
        for x0 in range(0, w, tile):
            y1, x1 = min(y0 + tile, h), min(x0 + tile, w)
            py0, px0 = max(y0 - overlap, 0), max(x0 - overlap, 0)
            py1, px1 = min(y1 + overlap, h), min(x1 + overlap, w)
            y = net(x[:, :, py0:py1, px0:px1])
            if out is None:
                out = y.new_empty((b, y.shape[1], h * s, w * s))
            oy, ox = (y0 - py0) * s, (x0 - px0) * s
            out[:, :, y0 * s:y1 * s, x0 * s:x1 * s] = y[:, :, oy:oy + (y1 - y0) * s, ox:ox + (x1 - x0) * s]
    return out


class RealESRGANStage(Stage):
    """Real-ESRGAN upscaling of every frame. Input: Clip (T, H, W, 3) uint8; output: Clip
    (T, sH, sW, 3) uint8 (s = 2 or 4), same fps. Progress per frame; cancel between frames.

    `RealESRGANStage.from_entry(entry, load_model=get)`: the service's model manager owns the
    network (`get()` returns the resident RealESRGANNet). `RealESRGANStage(registry, entry)`:
    standalone, loading with `load_model` on `device` ("auto": CUDA when present) until `unload()`.
    """

    name = "realesrgan"
    label = "Real-ESRGAN"
    role = "upscale"

    def __init__(self, registry: Registry | None = None, entry: str | ModelEntry = "realesrgan", *,
                 load_model: Callable[[], RealESRGANNet] | None = None, device: str = "auto", dtype: str = "auto"):
        if registry is None and load_model is None:
            raise ValueError("RealESRGANStage needs a registry or a load_model callable")
        if registry is None and not isinstance(entry, ModelEntry):
            raise ValueError("RealESRGANStage with a load_model callable needs the registry entry itself")
        self.registry = registry
        self.entry = entry if isinstance(entry, ModelEntry) else registry.get(entry)
        self.name = self.entry.name  # chains and parameters address the stage by its registry name
        self.label = self.entry.label
        self.device, self.dtype = device, dtype
        self._given_loader = load_model
        self._lock = threading.Lock()
        self._loaded: tuple[tuple, RealESRGANNet] | None = None

    @classmethod
    def from_entry(cls, entry: ModelEntry, load_model: Callable[[], RealESRGANNet]) -> "RealESRGANStage":
        return cls(entry=entry, load_model=load_model)

    @property
    def blends(self) -> bool:
        """True for general-x4v3 (two files): the denoise-strength blend is offered."""
        return self.entry.has_file(WDN_ROLE)

    def param_specs(self) -> Sequence[ParamSpec]:
        specs = [ParamSpec("scale", "choice", 4, "Scale factor", choices=(2, 4),
                           help="x4 is the network's own scale; x2 is its x4 result box-averaged by 2.")]
        if self.blends:
            specs.append(ParamSpec(
                "denoise_strength", "float", 0.5, "Denoise strength", 0.0, 1.0, 0.05,
                help="Blends the two released models: 1 removes noise strongly (and some fine texture), "
                     "0 keeps the input's grain. Upstream's default is 0.5."))
        specs.append(ParamSpec("tile", "int", DEFAULT_TILE, "Tile size (px)", 0, 2048, 32,
                               help="Input pixels per tile side; smaller uses less memory. 0: whole frames."))
        return tuple(specs)

    def output_size(self, width: int, height: int, params: Mapping[str, Any]) -> tuple[int, int]:
        s = int(params.get("scale", 4))
        return width * s, height * s

    # -- network -----------------------------------------------------------------------------
    def network(self) -> RealESRGANNet:
        if self._given_loader is not None:
            return self._given_loader()
        assert self.registry is not None
        self.registry.require_files(self.entry)
        device = _pick_device(self.device)
        paths = [self.registry.path(self.entry, f.role) for f in self.entry.files]
        key = (tuple((str(p), p.stat().st_mtime_ns) for p in paths), device, self.dtype)
        with self._lock:
            if self._loaded is None or self._loaded[0] != key:
                self._loaded = None
                self._loaded = (key, load_model(self.registry, self.entry, device=device, dtype=self.dtype))
            return self._loaded[1]

    def unload(self) -> None:
        with self._lock:
            self._loaded = None

    # -- processing --------------------------------------------------------------------------
    def process(self, clip: Clip, params: Mapping[str, Any], progress: Progress | None = None) -> Clip:
        import torch

        progress = as_progress(progress)
        p = resolve_params(self.param_specs(), params)
        progress(0.0, f"{self.label}: loading weights")
        net = self.network()
        dev = next(net.net.parameters()).device
        dtype = next(net.net.parameters()).dtype
        n, h, w = clip.num_frames, clip.height, clip.width
        s = int(p["scale"])
        out = np.empty((n, h * s, w * s, 3), dtype=np.uint8)
        try:
            with self._lock, torch.inference_mode():
                if net.blendable:
                    net.set_denoise(float(p["denoise_strength"]))
                for t in range(n):
                    progress.check()
                    x = torch.from_numpy(np.ascontiguousarray(clip.frames[t])).to(dev).permute(2, 0, 1)[None]
                    y = tiled_upscale(net, x.to(dtype) / 255.0, net.scale, int(p["tile"]))
                    if s != net.scale:
                        # exact box average down to the requested scale (x4 -> x2)
                        y = torch.nn.functional.avg_pool2d(y.float(), net.scale // s)
                    out[t] = y[0].float().clamp_(0, 1).mul_(255.0).round_().to(torch.uint8).permute(1, 2, 0).cpu().numpy()
                    progress((t + 1) / n, f"{self.label}: frame {t + 1}/{n}")
        except torch.cuda.OutOfMemoryError:
            torch.cuda.empty_cache()
            raise OutOfMemory(f"{self.label} ran out of GPU memory at {w}x{h}; lower the tile size.") from None
        return clip.with_frames(out)


def load_model(registry: Registry, entry: ModelEntry | str, *, device: Any = "cpu", dtype: Any = "auto") -> RealESRGANNet:
    """Build an entry's network with spandrel from its released file(s), on `device`.

    dtype: on the CPU always float32; on CUDA the entry's `options.precision` ("fp16" default,
    "bf16", "fp32") wins over `dtype` ("auto" = fp16, or a torch dtype).
    """
    import torch

    from ..models.checkpoint import read_state_dict
    from .realesrgan_net import RealESRGANNet

    e = registry.get(entry) if isinstance(entry, str) else entry
    registry.require_files(e)
    arch = e.options.get("architecture")
    if arch not in ARCHITECTURES:
        raise ConfigError(f"{registry.source}: entry {e.name!r}, field 'options.architecture': must be one of "
                          f"{', '.join(ARCHITECTURES)}, got {arch!r}.")
    path = registry.path(e, WEIGHT_ROLE)
    state = read_state_dict(path)
    desc = _build(state, arch, path)
    blend = None
    if e.has_file(WDN_ROLE):
        wdn_path = registry.path(e, WDN_ROLE)
        wdn = read_state_dict(wdn_path)
        _build(wdn, arch, wdn_path)  # the same architecture, or a clear error naming the file
        blend = (state, wdn)
    net = RealESRGANNet(desc, blend)
    dev = torch.device(device)
    net.eval().to(dev)
    if dev.type == "cuda":
        net.net.to(_cuda_dtype(registry, e, dtype))
    return net


def _build(state, arch: str, path):
    from .spandrel_import import build_network

    return build_network(state, architecture=arch, scale=NET_SCALE, source=str(path))


def _cuda_dtype(registry: Registry, e: ModelEntry, dtype: Any):
    import torch

    choice = e.options.get("precision", dtype)
    if isinstance(choice, torch.dtype):
        return choice
    if choice == "auto":
        choice = "fp16"
    if choice not in _PRECISIONS:
        raise ConfigError(f"{registry.source}: entry {e.name!r}, field 'options.precision': must be one of "
                          f"fp16, bf16, fp32, got {choice!r}.")
    return getattr(torch, _PRECISIONS[choice])


def _pick_device(choice: str) -> str:
    has_cuda = cuda_available()  # torch-free (core.devices); the same answer as torch's
    if choice in ("", "auto"):
        return "cuda" if has_cuda else "cpu"
    if choice.startswith("cuda") and not has_cuda:
        raise Unavailable(f"Real-ESRGAN: device {choice!r} was chosen, but no CUDA GPU is available on this machine.")
    return choice


def __getattr__(name: str) -> Any:
    """`RealESRGANNet` stays importable from here; it is looked up on first use (it imports torch)."""
    if name == "RealESRGANNet":
        from .realesrgan_net import RealESRGANNet

        return RealESRGANNet
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["RealESRGANStage", "RealESRGANNet", "load_model", "tiled_upscale", "NET_SCALE"]
