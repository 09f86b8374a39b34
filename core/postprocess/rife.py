"""RIFE v4.x as an interpolation stage (role "interpolate"), on our own IFNet implementation.

The network (core.models.rife) predicts each in-between frame directly from the two frames around
it at any time t; the retiming arithmetic (which frames, at which times) is the classical stage's
(`core.postprocess.interpolate.retime`), so both stages give the same frame count and the same
untouched original frames for the same parameters. Frames are fed as RGB in [0, 1] (as upstream's
video script does), zero-padded right and bottom to a multiple of 64 (/ scale), and cropped back.

Two ways to get the network, as for FastDVDnet:
* `RIFEStage.from_entry(entry, load_model=get)`: the service's model manager owns it;
* `RIFEStage(network=net)`: a network the caller built (tests, benchmarks).
"""

from __future__ import annotations

from typing import Any, Callable, Mapping, Sequence

import numpy as np

from ..clip import Clip
from ..errors import ConfigError, OutOfMemory
from ..params import ParamSpec, resolve_params
from ..progress import Progress, as_progress
from ..registry import ModelEntry, Registry
from .base import Stage
from .interpolate import PairFn, interpolation_param_specs, retime, retimed_frames, target_fps

WEIGHT_ROLE = "flownet"  # the entry's file role holding flownet.pkl
DEFAULT_VERSION = "4.25"
MAX_BATCH = 4  # in-between times of one pair per network call


def make_pair_fn(net: Any, scale: float = 1.0) -> PairFn:
    """A pair function (see `core.postprocess.interpolate`) running `net` (an IFNet) where it lives.

    a, b: (H, W, 3) uint8 RGB; returns one (H, W, 3) uint8 frame per time. The encodings of a and b
    are computed once per pair and shared by all its times; up to MAX_BATCH times per call.
    """
    import torch
    import torch.nn.functional as F

    p = next(net.parameters())
    device, dtype = p.device, p.dtype
    m = max(net.cfg.pad_multiple, int(net.cfg.pad_multiple / scale))

    def to_tensor(x: np.ndarray) -> "torch.Tensor":
        t = torch.from_numpy(np.ascontiguousarray(x)).to(device).permute(2, 0, 1)[None]
        return t.to(dtype) / 255.0

    @torch.no_grad()
    def pair(a: np.ndarray, b: np.ndarray, times: Sequence[float]) -> list[np.ndarray]:
        h, w = a.shape[:2]
        ph, pw = -(-h // m) * m, -(-w // m) * m
        i0 = F.pad(to_tensor(a), (0, pw - w, 0, ph - h))
        i1 = F.pad(to_tensor(b), (0, pw - w, 0, ph - h))
        f0, f1 = net.encode(i0), net.encode(i1)
        out: list[np.ndarray] = []
        for s in range(0, len(times), MAX_BATCH):
            ts = torch.tensor(list(times[s:s + MAX_BATCH]), device=device, dtype=dtype).view(-1, 1, 1, 1)
            n = ts.shape[0]
            y = net.forward_full(i0.expand(n, -1, -1, -1), i1.expand(n, -1, -1, -1), ts, scale,
                                 f0.expand(n, -1, -1, -1), f1.expand(n, -1, -1, -1)).merged
            y = (y[:, :, :h, :w].float().clamp(0, 1) * 255.0).round().to(torch.uint8).permute(0, 2, 3, 1)
            out.extend(y.cpu().numpy())
        return out

    return pair


class RIFEStage(Stage):
    """Learned frame interpolation: RIFE v4.x (Huang et al., ECCV 2022; Practical-RIFE, MIT).

    (T, H, W, 3) uint8 at r fps -> (M, H, W, 3) uint8 at factor * r (or the target fps), M as for
    the classical stage. Cancellation is honoured between frame pairs.
    """

    name = "rife"
    label = "RIFE v4 (learned)"
    role = "interpolate"

    def __init__(self, *, load_model: Callable[[], Any] | None = None, network: Any = None,
                 entry: str = "rife", options: Mapping[str, Any] | None = None):
        if load_model is None and network is None:
            raise ValueError("RIFEStage needs a load_model callable or a network")
        self.entry_name = entry
        self._load = load_model
        self._network = network
        self.options = dict(options or {})

    @classmethod
    def from_entry(cls, entry: ModelEntry, load_model: Callable[[], Any]) -> "RIFEStage":
        return cls(load_model=load_model, entry=entry.name, options=entry.options)

    def output_frames(self, num_frames: int, fps: float, params: Mapping[str, Any]) -> tuple[int, float]:
        return retimed_frames(num_frames, fps, params)

    def param_specs(self) -> Sequence[ParamSpec]:
        return interpolation_param_specs() + (
            ParamSpec("scale", "choice", 1.0, "Flow resolution", choices=(1.0, 0.5, 0.25),
                      help="Work at this fraction of the frame size: 0.5 for 4K frames (faster, coarser)."),
        )

    def network(self) -> Any:
        return self._network if self._network is not None else self._load()

    def process(self, clip: Clip, params: Mapping[str, Any], progress: Progress | None = None) -> Clip:
        import torch

        prog = as_progress(progress)
        p = resolve_params(self.param_specs(), params)
        fps = target_fps(clip.fps, p)
        prog(0.0, "RIFE: loading weights")
        net = self.network()
        try:
            return retime(clip, fps, pair=make_pair_fn(net, float(p["scale"])), progress=prog)
        except torch.cuda.OutOfMemoryError:
            torch.cuda.empty_cache()
            raise OutOfMemory(f"RIFE ran out of GPU memory at {clip.width}x{clip.height}; "
                              f"use a flow resolution of 0.5 or the CPU.") from None


def load_model(registry: Registry, entry: ModelEntry | str, *, device: Any = "cpu", dtype: Any = "auto"):
    """Load an entry's RIFE weights (version from `options.version`, default 4.25) on `device`.

    dtype: fp32 on the CPU; on CUDA the entry's `options.precision` or the caller's choice, "auto"
    meaning fp16 (the network is small and its flows stay far inside the fp16 range).
    """
    import torch

    from ..models.rife import PRESETS, load_rife

    e = registry.get(entry) if isinstance(entry, str) else entry
    registry.require_files(e)
    version = str(e.options.get("version", DEFAULT_VERSION))
    if version not in PRESETS:
        raise ConfigError(f"{registry.source}: entry {e.name!r}, field 'options.version': unknown RIFE version "
                          f"{version!r} (known: {', '.join(PRESETS)}).")
    dev = torch.device(device)
    torch_dtype = torch.float32
    if dev.type == "cuda":
        choice = e.options.get("precision", dtype)
        names = {"auto": torch.float16, "fp16": torch.float16, "bf16": torch.bfloat16, "fp32": torch.float32}
        if isinstance(choice, torch.dtype):
            torch_dtype = choice
        elif choice in names:
            torch_dtype = names[choice]
        else:
            raise ConfigError(f"{registry.source}: entry {e.name!r}, field 'options.precision': "
                              f"must be one of fp32, fp16, bf16, got {choice!r}.")
    return load_rife(registry.path(e, WEIGHT_ROLE), version, device=dev, dtype=torch_dtype)


__all__ = ["RIFEStage", "load_model", "make_pair_fn", "WEIGHT_ROLE"]
