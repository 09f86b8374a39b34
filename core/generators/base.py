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


@dataclass
class GenerateResult:
    clip: Clip
    # Everything worth recording in run.json: effective parameters, the exact prompt used,
    # crop box, timings in seconds, peak memory, weight hashes.
    info: dict[str, Any] = field(default_factory=dict)


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
