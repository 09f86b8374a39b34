"""The interface every video generator implements."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping, Optional, Sequence

import numpy as np

from ..clip import Clip
from ..params import ParamSpec
from ..progress import Progress

if TYPE_CHECKING:  # pragma: no cover
    from ..camera import CameraPath


@dataclass(frozen=True)
class SegmentOptions:
    """How a fixed-length model makes a longer shot (core.generators.segments).

    overlap: frames shared by consecutive segments (>= 1). Segment k+1 is conditioned on the
    first shared frame of segment k (with overlap 1: its last frame); the shared frames are
    cross-faded, so the shot has no duplicated frame.
    """

    overlap: int = 1


@dataclass(frozen=True)
class GenerateRequest:
    """What the user asked for.

    image:  (H, W, 3) uint8 RGB, already EXIF-oriented; any size (the generator crops/resizes
            to its native size and reports what it did).
    camera: the camera path, one pose per output frame; pose 0 is the photo's camera.
    params: model-specific values, already resolved against `Generator.param_specs()`.
    num_frames: None: the model's own frame count (the path is resampled to it). N: exactly N
            frames; `camera` then has N poses, and fixed-length models (CamI2V family, SVD)
            chain autoregressive segments of their native length (see `segments`).
    run_dir: where finished segments are saved losslessly as they finish, so a cancelled or
            failed long shot can be resumed from the last finished segment; None keeps nothing.
    """

    image: np.ndarray
    camera: "CameraPath"
    prompt: str = ""
    negative_prompt: str = ""
    seed: int = 0
    params: Mapping[str, Any] = field(default_factory=dict)
    # -- long shots (issue 11) --
    num_frames: Optional[int] = None
    segments: SegmentOptions = SegmentOptions()
    run_dir: Optional[Path] = None


@dataclass(frozen=True)
class PeakMemory:
    """Peak memory of one `generate` call.

    device: where it was measured ("cuda:0", "cpu", ...).
    bytes:  on an accelerator, torch's peak allocated bytes during the call; on "cpu", the
            process's peak resident set so far (what the OS reports; an upper bound).
    """

    device: str
    bytes: int


CropBox = tuple[int, int, int, int]


@dataclass
class GenerateResult:
    """What a generator returns: the clip plus the typed facts the service relies on.

    clip:        the frames at the generator's native size.
    info:        everything else worth recording in run.json (model-specific details, exact
                 prompt used, warnings, weight hashes); free-form on purpose.
    crop_box:    (x0, y0, x1, y1), x1/y1 exclusive, in PHOTO pixels (the request's image): the
                 region of the photo the clip's first frame shows. It is the fidelity reference;
                 None means the whole photo.
    timings:     phase -> seconds (e.g. "sampling", "decode", "total").
    peak_memory: None when not measured.
    params:      the effective parameters (after defaults and clamping).
    """

    clip: Clip
    info: dict[str, Any] = field(default_factory=dict)
    crop_box: Optional[CropBox] = field(default=None, kw_only=True)
    timings: dict[str, float] = field(default_factory=dict, kw_only=True)
    peak_memory: Optional[PeakMemory] = field(default=None, kw_only=True)
    params: Mapping[str, Any] = field(default_factory=dict, kw_only=True)

    def __post_init__(self) -> None:
        if self.crop_box is not None:
            box = tuple(int(v) for v in self.crop_box)
            if len(box) != 4 or box[2] <= box[0] or box[3] <= box[1]:
                raise ValueError(f"crop_box must be (x0, y0, x1, y1) with x1 > x0 and y1 > y0, got {self.crop_box}")
            self.crop_box = box  # type: ignore[assignment]

    def record(self) -> dict[str, Any]:
        """run.json's `generator_info`: `info` plus the typed fields under fixed names."""
        out = dict(self.info)
        out["crop_box"] = None if self.crop_box is None else list(self.crop_box)
        out["timings"] = dict(self.timings)
        out["peak_memory"] = None if self.peak_memory is None else {
            "device": self.peak_memory.device, "bytes": int(self.peak_memory.bytes)}
        out["params"] = dict(self.params)
        return out


def resized_box_to_photo(box: Sequence[float], resized_size: Sequence[int], photo_size: Sequence[int]) -> CropBox:
    """A box in the pixels of a resized photo -> the same region in the photo's own pixels.

    box: (x0, y0, x1, y1) in an image of `resized_size` (W, H) that is the photo of
    `photo_size` (W, H) resized (each axis scaled on its own); rounded to whole pixels and
    clipped to the photo.
    """
    (rw, rh), (pw, ph) = resized_size, photo_size
    sx, sy = pw / rw, ph / rh
    x0, y0, x1, y1 = box
    return (max(0, int(round(x0 * sx))), max(0, int(round(y0 * sy))),
            min(pw, int(round(x1 * sx))), min(ph, int(round(y1 * sy))))


class Generator(ABC):
    """A model that turns one photo and a camera path into a clip.

    Subclasses set the class attributes and implement `generate`. Construction must be cheap
    (no weights loaded); heavy state is loaded lazily or by the model manager.
    """

    name: str = ""  # registry name, e.g. "kenburns", "cami2v-512"
    label: str = ""  # what the UI shows
    width: int = 512  # native output size in pixels
    height: int = 320
    num_frames: int = 16  # native frame count
    fps: float = 10.0  # native playback rate
    camera_control: bool = True  # False: the camera path is ignored (the UI says so)
    is_ai: bool = True  # False for the no-AI preview (labelled honestly in the UI)
    any_length: bool = False  # True: renders any frame count at any fps natively (no segments)

    def param_specs(self) -> Sequence[ParamSpec]:
        return ()

    @abstractmethod
    def generate(self, request: GenerateRequest, progress: Progress) -> GenerateResult:
        """Produce `request.camera.num_frames` frames (or the model's fixed count); with
        `request.num_frames` set, exactly that many (fixed-length models chain segments)."""
