"""FastDVDnet as a post-processing stage (role "denoise"), plus a noise-level estimator.

The stage denoises the frames exactly as they are. It never adds noise first. (The upstream test
script adds fresh Gaussian noise of the chosen sigma before denoising, which is how the UvA
CamI2V post-processing study ran its "denoise" step; that measures the network on synthetic
noise, not on the generated video.)
"""

from __future__ import annotations

import warnings
from typing import TYPE_CHECKING, Any, Callable, Mapping, Sequence

import numpy as np

from ..clip import Clip
from ..errors import ConfigError, OutOfMemory
from ..params import ParamSpec, resolve_params
from ..progress import Progress, as_progress
from ..registry import ModelEntry, Registry
from .base import Stage

if TYPE_CHECKING:
    from ..manager import ModelManager

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

    The network comes from a model manager (`core.manager.ModelManager`), which loads it once and
    keeps it resident: `FastDVDnetStage.from_entry(entry, load_model=get)` is the service's path
    (`get()` returns the network its manager holds, on the device and dtype the studio chose);
    `FastDVDnetStage(registry)` registers the entry's `load_model` with `manager` (default: a
    manager of its own on the default device: CUDA when present, else the CPU).
    `options.batch_size` (frames per network call; default automatic) comes from the entry.
    """

    name = "fastdvdnet"
    label = "FastDVDnet"
    role = "denoise"

    def __init__(self, registry: Registry | None = None, entry: str = "fastdvdnet", *,
                 load_model: Callable[[], Any] | None = None, options: Mapping[str, Any] | None = None,
                 manager: "ModelManager | None" = None):
        if load_model is None:
            if registry is None:
                raise ValueError("FastDVDnetStage needs a registry or a load_model callable")
            e = registry.get(entry)
            load_model = managed(registry, e, manager)
            options = e.options if options is None else options
        self.entry_name = entry
        self._load_model = load_model
        self._options = dict(options or {})

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
    def network(self):
        """The resident network (loaded by the model manager on first use)."""
        return self._load_model()

    # -- processing --------------------------------------------------------------------------
    def process(self, clip: Clip, params: Mapping[str, Any], progress: Progress | None = None) -> Clip:
        import torch

        from ..models.fastdvdnet.sequence import iter_denoise_sequence

        progress = as_progress(progress)
        p = resolve_params(self.param_specs(), params)
        batch_size = _batch_size_option(self._options, self.entry_name)
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


def managed(registry: Registry, entry: ModelEntry, manager: "ModelManager | None" = None) -> Callable[[], Any]:
    """`get()` returning the entry's network held by `manager` (a new `ModelManager` when None)."""
    from ..manager import ModelManager

    manager = manager if manager is not None else ModelManager()
    return manager.provider(entry.name, lambda device: load_model(registry, entry, device=device))


def load_model(registry: Registry, entry: ModelEntry | str, *, device: Any = "cpu", dtype: Any = "auto"):
    """Load an entry's FastDVDnet weights, inference-optimised, on `device`.

    dtype: "fp32" | "fp16" | "bf16" | "auto" or a torch dtype. On the CPU it is always float32
    (half-precision convolutions there are slower and less exact). On CUDA the entry's
    `options.precision`, when set, wins over the caller's choice; "auto" means fp16 (its finer
    mantissa keeps the residual output within half a grey level, and the activations of this
    small network stay far below the fp16 range).
    """
    import torch

    from ..models.fastdvdnet.loader import load_fastdvdnet
    from ..models.fastdvdnet.model import PRESETS

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


__all__ = ["FastDVDnetStage", "estimate_noise_sigma", "load_model", "SIGMA_MIN", "SIGMA_MAX"]
