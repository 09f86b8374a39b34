"""FastDVDnet as a post-processing stage (role "denoise"), plus a noise-level estimator.

The stage denoises the frames exactly as they are. It never adds noise first. (The upstream test
script adds fresh Gaussian noise of the chosen sigma before denoising, which is how the UvA
CamI2V post-processing study ran its "denoise" step; that measures the network on synthetic
noise, not on the generated video.)
"""

from __future__ import annotations

import threading
import warnings
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from ..clip import Clip
from ..errors import ConfigError, OutOfMemory, Unavailable
from ..params import ParamSpec, resolve_params
from ..progress import Progress, as_progress
from ..registry import ModelEntry, Registry
from .base import Stage

SIGMA_MIN = 5.0  # the released weights were trained on sigma uniformly in [5, 55] (0-255 scale)
SIGMA_MAX = 55.0
_MAD_TO_STD = 0.6744897501960817  # median of |N(0, 1)|
_ESTIMATE_FRAMES = 8
WEIGHT_ROLE = "checkpoint"  # the entry's file role holding model.pth


def estimate_noise_sigma(frames: np.ndarray, max_frames: int = _ESTIMATE_FRAMES) -> float:
    """Estimate the standard deviation of additive white noise in a clip, on the 0-255 scale.

    frames: (T, H, W, 3) uint8 RGB (or float on the same 0-255 scale).

    Donoho's robust estimator: the finest diagonal Haar detail band HH = (a - b - c + d) / 2 of
    every 2x2 block is orthonormal, so white noise of std s passes into it with std s, while
    smooth image content (gradients, flat areas) cancels. The median absolute value of HH,
    divided by 0.6745, is then s; the median ignores the minority of coefficients on edges and
    texture. Coefficients are pooled over the three channels and up to `max_frames` evenly spaced
    frames. Per channel rather than on luminance because FastDVDnet's sigma is the per-channel
    std: luma would scale independent channel noise by 0.67 but correlated noise by 1.
    Strongly textured content biases the estimate upwards; clipping at 0/255 biases it down.
    """
    x = np.asarray(frames)
    if x.ndim != 4 or x.shape[-1] != 3:
        raise ValueError(f"expected (T, H, W, 3) frames, got {x.shape}")
    t, h, w, _ = x.shape
    h2, w2 = h - h % 2, w - w % 2
    if h2 == 0 or w2 == 0:
        return 0.0
    pick = np.unique(np.linspace(0, t - 1, num=min(t, max_frames)).round().astype(int))
    integer = np.issubdtype(x.dtype, np.integer)
    x = x[pick, :h2, :w2].astype(np.int32 if integer else np.float64)
    twice_hh = np.abs(x[:, 0::2, 0::2] - x[:, 0::2, 1::2] - x[:, 1::2, 0::2] + x[:, 1::2, 1::2]).ravel()
    if not integer:
        return float(np.median(twice_hh) * 0.5 / _MAD_TO_STD)
    # On uint8 input 2*|HH| is an integer, so a plain median moves in steps of 0.74 sigma;
    # interpolate within the median's bin (grouped-data median) instead.
    counts = np.bincount(twice_hh)
    below = np.cumsum(counts) - counts
    half = twice_hh.size / 2.0
    k = int(np.searchsorted(below + counts, half))
    lower = max(k - 0.5, 0.0)
    width = (k + 0.5) - lower
    median = lower + width * (half - below[k]) / counts[k]
    return float(median * 0.5 / _MAD_TO_STD)


class FastDVDnetStage(Stage):
    """FastDVDnet video denoiser (Tassano et al., CVPR 2020), released weights, MIT licence.

    Input and output: `Clip` of (T, H, W, 3) uint8 RGB, any T >= 1 and any H, W; the output is
    the network's [0, 1] result rounded to uint8. Each frame is denoised from a 5-frame window
    mirrored at the clip ends (frame 0 sees 2,1,0,1,2). Short clips keep mirroring: with T = 2
    the windows are 0,1,0,1,0 and 1,0,1,0,1; with T = 1 the frame is repeated five times, so the
    result is a purely spatial denoise. Progress is reported per frame; cancellation is honoured
    between network calls. Frames are denoised as they are: no noise is ever added.

    Two ways to get the network:
    * `FastDVDnetStage.from_entry(entry, load_model=get)`: the service's model manager owns the
      network (`get()` returns the resident model, on the device and dtype the studio chose);
    * `FastDVDnetStage(registry)`: standalone, the stage loads the entry's weights itself with
      `load_model` (device "auto": CUDA when present; dtype "auto": fp32 on the CPU, the entry's
      `options.precision` or fp16 on CUDA) and keeps them until `unload()`.
    `options.batch_size` (frames per network call; default automatic) comes from the entry.
    """

    name = "fastdvdnet"
    label = "FastDVDnet"
    role = "denoise"

    def __init__(self, registry: Registry | None = None, entry: str = "fastdvdnet", *,
                 load_model: Callable[[], Any] | None = None, device: str = "auto", dtype: str = "auto",
                 options: Mapping[str, Any] | None = None):
        if registry is None and load_model is None:
            raise ValueError("FastDVDnetStage needs a registry or a load_model callable")
        self.registry = registry
        self.entry_name = entry
        self.device = device
        self.dtype = dtype
        self._given_loader = load_model
        self._options = dict(options) if options is not None else None
        self._lock = threading.Lock()
        self._loaded: tuple[tuple, Any] | None = None  # (key, model), standalone mode only

    @classmethod
    def from_entry(cls, entry: ModelEntry, load_model: Callable[[], Any]) -> "FastDVDnetStage":
        """The stage for a registry entry whose network is provided (and kept) by `load_model()`."""
        return cls(entry=entry.name, load_model=load_model, options=entry.options)

    # -- parameters --------------------------------------------------------------------------
    def param_specs(self) -> Sequence[ParamSpec]:
        return (
            ParamSpec(
                "sigma", "float", 25.0, label="Noise level (sigma)", minimum=SIGMA_MIN, maximum=SIGMA_MAX, step=1.0,
                help="Standard deviation of the noise to remove, on the 0-255 scale. The model was trained "
                     "for 5-55; higher removes more and smooths more. The frames are denoised as they are: "
                     "no noise is added first (unlike the upstream test script, which the UvA study ran).",
            ),
            ParamSpec(
                "auto_sigma", "bool", False, label="Estimate sigma from the clip",
                help="Measure the noise level from the clip (median absolute deviation of the finest "
                     "diagonal wavelet band) and use it instead of the slider, limited to 5-55.",
            ),
        )

    def resolve_sigma(self, clip: Clip, params: Mapping[str, Any]) -> tuple[float, str]:
        """The sigma (0-255 scale) the stage will use for `clip`, and a one-line note saying how."""
        p = resolve_params(self.param_specs(), params)
        if not p["auto_sigma"]:
            return float(p["sigma"]), f"sigma {p['sigma']:g} (set by the user)"
        measured = estimate_noise_sigma(clip.frames)
        used = min(max(measured, SIGMA_MIN), SIGMA_MAX)
        note = f"sigma {used:.1f} (estimated {measured:.1f} from the clip"
        if used != measured:
            note += f", limited to the model's trained range {SIGMA_MIN:g}-{SIGMA_MAX:g}"
        return used, note + ")"

    # -- network -----------------------------------------------------------------------------
    def options(self) -> Mapping[str, Any]:
        if self._options is not None:
            return self._options
        assert self.registry is not None
        return self.registry.get(self.entry_name).options

    def network(self):
        """The network to run: the provided one, or the standalone copy (loaded once)."""
        if self._given_loader is not None:
            return self._given_loader()
        assert self.registry is not None
        entry = self.registry.get(self.entry_name)
        self.registry.require_files(entry)
        path = self.registry.path(entry, WEIGHT_ROLE)
        stat = path.stat()
        device = _pick_device(self.device)
        key = (str(path), stat.st_size, stat.st_mtime_ns, tuple(sorted(entry.options.items())), device, self.dtype)
        with self._lock:
            if self._loaded is None or self._loaded[0] != key:
                self._loaded = None  # release the old copy before loading the new one
                self._loaded = (key, load_model(self.registry, entry, device=device, dtype=self.dtype))
            return self._loaded[1]

    def unload(self) -> None:
        with self._lock:
            self._loaded = None

    # -- processing --------------------------------------------------------------------------
    def process(self, clip: Clip, params: Mapping[str, Any], progress: Progress | None = None) -> Clip:
        import torch

        from ..models.fastdvdnet import iter_denoise_sequence

        progress = as_progress(progress)
        p = resolve_params(self.param_specs(), params)
        batch_size = _batch_size_option(self.options(), self.entry_name)
        sigma, note = self.resolve_sigma(clip, p)
        progress(0.0, f"FastDVDnet: loading weights; {note}")
        model = self.network()

        n = clip.num_frames
        with warnings.catch_warnings():
            # a read-only array is fine: the frames are only ever read
            warnings.filterwarnings("ignore", message=".*not writable.*")
            frames = torch.from_numpy(clip.frames).permute(0, 3, 1, 2)  # (T, 3, H, W) uint8 view
        out = np.empty_like(clip.frames)
        try:
            for t, y in iter_denoise_sequence(model, frames, sigma / 255.0, batch_size=batch_size,
                                              on_step=progress.check):
                out[t] = y.mul(255.0).round_().to(torch.uint8).permute(1, 2, 0).cpu().numpy()
                progress((t + 1) / n, f"FastDVDnet: frame {t + 1}/{n}")
        except torch.cuda.OutOfMemoryError:
            torch.cuda.empty_cache()
            raise OutOfMemory(f"FastDVDnet ran out of GPU memory at {clip.width}x{clip.height}; "
                              f"lower options.batch_size in models.json or use the CPU.") from None
        return clip.with_frames(out)


def load_model(registry: Registry, entry: ModelEntry | str, *, device: Any = "cpu", dtype: Any = "auto"):
    """Load an entry's FastDVDnet weights, inference-optimised, on `device`.

    dtype: "fp32" | "fp16" | "bf16" | "auto" or a torch dtype. On the CPU it is always float32
    (half-precision convolutions there are slower and less exact). On CUDA the entry's
    `options.precision`, when set, wins over the caller's choice; "auto" means fp16 (its finer
    mantissa keeps the residual output within half a grey level, and the activations of this
    small network stay far below the fp16 range).
    """
    import torch

    from ..models.fastdvdnet import PRESETS
    from ..models.fastdvdnet_loader import load_fastdvdnet

    e = registry.get(entry) if isinstance(entry, str) else entry
    registry.require_files(e)
    preset = e.options.get("preset", "fastdvdnet")
    if preset not in PRESETS:
        raise ConfigError(f"{registry.source}: entry {e.name!r}, field 'options.preset': "
                          f"unknown FastDVDnet preset {preset!r} (known: {', '.join(PRESETS)}).")
    dev = torch.device(device)
    if dev.type != "cuda":
        torch_dtype = torch.float32
    else:
        choice = e.options.get("precision", dtype)
        if isinstance(choice, torch.dtype):
            torch_dtype = choice
        else:
            names = {"auto": torch.float16, "fp16": torch.float16, "bf16": torch.bfloat16, "fp32": torch.float32}
            if choice not in names:
                raise ConfigError(f"{registry.source}: entry {e.name!r}, field 'options.precision': "
                                  f"must be one of fp32, fp16, bf16, got {choice!r}.")
            torch_dtype = names[choice]
    return load_fastdvdnet(registry.path(e, WEIGHT_ROLE), params=PRESETS[preset], device=dev, dtype=torch_dtype,
                           optimize=True)


def _batch_size_option(options: Mapping[str, Any], name: str) -> int | None:
    value = options.get("batch_size")
    if value is None or value == 0:
        return None
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ConfigError(f"model registry: entry {name!r}, field 'options.batch_size': must be a positive "
                          f"whole number (or 0 for automatic), got {value!r}.")
    return value


def _pick_device(choice: str) -> str:
    import torch

    has_cuda = torch.cuda.is_available()
    if choice in ("", "auto"):
        return "cuda" if has_cuda else "cpu"
    if choice.startswith("cuda") and not has_cuda:
        raise Unavailable(f"FastDVDnet: device {choice!r} was chosen, but no CUDA GPU is available on this machine.")
    return choice


__all__ = ["FastDVDnetStage", "estimate_noise_sigma", "load_model", "SIGMA_MIN", "SIGMA_MAX"]
