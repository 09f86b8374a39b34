"""The typed values that cross the service boundary, and the one place input is parsed.

UI, CLI and API callers describe a job with these plain dataclasses (`JobRequest`,
`CameraSpec`), and `Studio` hands them back typed answers (`ModelInfo`). Free-form input
(chain text, a seed, an uploaded file name, a camera description) is turned into typed values
here, once; the layers below trust what they receive.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from . import camera as cam
from . import limits
from .errors import InputError
from .licences import ALLOWED_FOR_COMMERCIAL
from .params import ParamSpec
from .postprocess import chains as chainlib
from .postprocess.chains import chain_name  # the one chain-text normaliser (re-exported here)

# --------------------------------------------------------------------------------- settings

@dataclass
class StudioSettings:
    """Where things live and how to run. Paths may be relative to `root`."""

    root: Path = Path(__file__).resolve().parents[1]
    models: Path | None = None  # default root/models.json
    outputs: Path | None = None  # default root/outputs
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    dtype: str = "auto"  # auto | fp32 | bf16 | fp16
    # torch | openvino | openvino-int8: how the CPU runs the CamI2V and SVD networks
    # (core.models.openvino_backend; IR cached under openvino_cache, default root/ckpts/openvino-cache)
    backend: str = "torch"
    openvino_cache: Path | None = None
    preload: tuple[str, ...] = ()
    max_image_bytes: int = 50 * 1024**2
    max_megapixels: float = 40.0
    memory_budget_bytes: int | None = None  # None: taken from the device
    min_free_bytes: int = 256 * 1024**2
    # free_space_fn(path) -> free bytes, in place of shutil.disk_usage (tests simulate a full disk)
    free_space_fn: Callable[[Path], int] | None = None
    # Where measured speeds (for time-left estimates) are kept across restarts; None: memory only.
    rates_file: Path | None = None
    # True (the dashboard with --auth, unless --shared-runs): each user's runs go to, and are
    # listed and opened only from, <outputs>/users/<user folder>/ (see Studio.runs_root).
    per_user_runs: bool = False

    def __post_init__(self) -> None:
        self.root = Path(self.root)
        self.models = self._abs(self.models or "models.json")
        self.outputs = self._abs(self.outputs or "outputs")
        self.openvino_cache = self._abs(self.openvino_cache or Path("ckpts") / "openvino-cache")

    def _abs(self, p: str | Path) -> Path:
        p = Path(p).expanduser()
        return p if p.is_absolute() else self.root / p


# --------------------------------------------------------------------------------- requests

@dataclass(frozen=True)
class CameraSpec:
    """How the user described the camera move; `Studio.camera_path` turns it into a CameraPath.

    mode "preset": `preset`, `amount`, `distance`, `easing`.
    mode "keyframes": `keyframes` (list of dicts: time, position [x, y, z], yaw, pitch, roll).
    mode "waypoints": `waypoints` (list of normalised (x, y) clicks on the photo), `depth`, `amount`
    (the share of the clicked walk the clip covers; None: all of it).
    mode "file": `text` of a RealEstate10K camera file (resampled to the clip's frame count,
    then `distance` scales its translations).
    """

    mode: str = "preset"
    preset: str = "push-in"
    amount: float | None = None
    distance: float | None = None
    easing: str = "linear"
    keyframes: tuple[Mapping[str, Any], ...] = ()
    waypoints: tuple[tuple[float, float], ...] = ()
    depth: float = 1.0
    text: str = ""

    def to_dict(self) -> dict[str, Any]:
        d = {"mode": self.mode}
        if self.mode == "preset":
            d.update(preset=self.preset, amount=self.amount, distance=self.distance, easing=self.easing)
        elif self.mode == "keyframes":
            d.update(keyframes=[dict(k) for k in self.keyframes])
        elif self.mode == "waypoints":
            d.update(waypoints=[list(p) for p in self.waypoints], depth=self.depth, amount=self.amount)
        elif self.mode == "file":
            d.update(distance=self.distance)
        return d


@dataclass(frozen=True)
class JobRequest:
    """One walkthrough: a photo, a camera move, a generator and the chains to compare.

    image: (H, W, 3) uint8 RGB as displayed (EXIF applied); image_bytes: the uploaded file, kept
    verbatim in the run folder when given. chains: chain texts ("none", "denoise+upscale", ...).
    roles: which stage plays "denoise" / "upscale". stage_params: stage name -> parameters.
    """

    image: np.ndarray
    camera: CameraSpec | cam.CameraPath = field(default_factory=CameraSpec)
    model: str = "kenburns"
    prompt: str = ""
    negative_prompt: str = ""
    seed: int = 0
    params: Mapping[str, Any] = field(default_factory=dict)
    chains: tuple[str, ...] = ("none",)
    roles: Mapping[str, str] = field(default_factory=lambda: dict(chainlib.DEFAULT_ROLES))
    stage_params: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    image_bytes: bytes | None = None
    image_name: str | None = None
    save_frames: bool = False
    save_gif: bool = False
    # Estimate the clip's camera by structure from motion and score it against the requested
    # path (CamI2V's RotErr / TransErr / CamMC); seconds of CPU per clip.
    measure_adherence: bool = False
    # -- long shots (core.longshot): None keeps the generator's own length and rate. Fixed-length
    # models chain segments sharing `overlap` frames; `resume_run` continues that partial run.
    seconds: float | None = None
    output_fps: float | None = None
    overlap: int = 1
    resume_run: str | None = None
    # Refuse (with the reason) any model whose licence does not allow commercial use (core.licences).
    commercial_only: bool = False


@dataclass(frozen=True)
class ModelInfo:
    """What the UI needs to list a model and show its controls."""

    name: str
    kind: str
    variant: str
    label: str
    description: str
    license: str
    needs_gpu: bool
    available: bool
    reason: str
    is_ai: bool = True
    camera_control: bool = True
    width: int | None = None
    height: int | None = None
    num_frames: int | None = None
    fps: float | None = None
    role: str | None = None
    params: tuple[ParamSpec, ...] = ()
    commercial_use: str = "unknown"  # yes | conditions | no | unknown (core.licences)
    license_url: str = ""

    @property
    def commercial_ok(self) -> bool:
        """Whether "commercial use only" admits this model."""
        return self.commercial_use in ALLOWED_FOR_COMMERCIAL

    @property
    def display(self) -> str:
        return self.label if self.available else f"{self.label} (unavailable: {self.reason})"



# --------------------------------------------------------------------------------- parsing

def normalise_chains(chains: Sequence[str]) -> list[str]:
    """The chains of a request, each as `chain_name` writes it, first occurrence kept. Each item
    may hold several chains separated by commas ("none, denoise+upscale"). At least 1, at most 12."""
    out: list[str] = []
    for c in chains:
        for part in str(c).split(","):
            if not chainlib.chain_words(part):
                continue  # an empty item between commas
            name = chain_name(part)
            if name not in out:
                out.append(name)
    if not out:
        raise InputError("Pick at least one chain (none, denoise, upscale, denoise+upscale, upscale+denoise).")
    if len(out) > 12:
        raise InputError(f"At most 12 chains per run, got {len(out)}.")
    return out


def check_seed(seed: Any) -> int:
    try:
        s = int(seed)
    except (TypeError, ValueError):
        raise InputError(f"Seed must be a whole number, got {seed!r}.") from None
    if not 0 <= s < 2**32:
        raise InputError(f"Seed must be between 0 and {2**32 - 1}, got {s}.")
    return s


def basename(name: str | None) -> str | None:
    """Only the last path component of an uploaded file's name, kept as data (never a path)."""
    if not name:
        return None
    return Path(str(name).replace("\\", "/")).name[:200] or None


def camera_path(spec: CameraSpec | cam.CameraPath, num_frames: int, aspect: float) -> cam.CameraPath:
    """The camera path a `CameraSpec` describes, with `num_frames` poses at the clip's `aspect`
    (width / height); a CameraPath is validated and returned as it is."""
    if isinstance(spec, cam.CameraPath):
        spec.validate()
        return spec
    n = int(num_frames)
    if spec.mode == "preset":
        return cam.preset_path(spec.preset, num_frames=n, amount=spec.amount, distance=spec.distance,
                               aspect=aspect, easing=spec.easing)
    if spec.mode == "keyframes":
        limits.check_rows(len(spec.keyframes), "The keyframe table", limits.MAX_KEYFRAMES)
        kfs = [cam.Keyframe.from_dict(k) for k in spec.keyframes]
        return cam.keyframe_path(kfs, num_frames=n, aspect=aspect)
    if spec.mode == "waypoints":
        limits.check_rows(len(spec.waypoints), "The waypoints", limits.MAX_WAYPOINTS)
        if spec.amount is None or spec.amount >= 1.0:
            return cam.waypoint_path(spec.waypoints, num_frames=n, depth=spec.depth, aspect=aspect)
        # move amount: the clip covers the first part of the clicked walk (as for presets)
        return _leading_part(cam.waypoint_path(spec.waypoints, num_frames=max(64, 16 * n), depth=spec.depth,
                                               aspect=aspect), cam.check_amount(spec.amount), n)
    if spec.mode == "file":
        path = cam.CameraPath.from_realestate10k(spec.text)
        if path.num_frames != n:
            path = path.resampled(n)
        return path.scaled(spec.distance) if spec.distance is not None else path
    raise InputError(f"Unknown camera mode {spec.mode!r}; use preset, keyframes, waypoints or file.")


def _leading_part(path: cam.CameraPath, amount: float, num_frames: int) -> cam.CameraPath:
    """The first `amount` (0..1] of a densely sampled path, resampled to `num_frames` frames."""
    k = max(1, int(round(amount * (path.num_frames - 1))))
    part = cam.CameraPath(path.w2c[:k + 1].copy(), path.intrinsics[:k + 1].copy(), path.name)
    return part.resampled(num_frames)
