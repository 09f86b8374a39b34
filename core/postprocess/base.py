"""The interface every post-processing stage implements."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, Mapping, Sequence

from ..clip import Clip
from ..params import ParamSpec
from ..progress import Progress


class Stage(ABC):
    """One post-processing step: takes a clip, returns a new clip (never mutates its input).

    role is "denoise", "upscale" or "interpolate" (more frames per second: the output clip has
    another fps and frame count); chains like "denoise+upscale" resolve each role to the stage
    the user picked for it.
    """

    name: str = ""  # registry name, e.g. "nlmeans", "lanczos", "fastdvdnet", "upscale-a-video"
    label: str = ""
    role: str = ""  # "denoise" | "upscale" | "interpolate"

    def param_specs(self) -> Sequence[ParamSpec]:
        return ()

    def output_size(self, width: int, height: int, params: Mapping[str, Any]) -> tuple[int, int]:
        """(width, height) of the clip `process` returns for a width x height input (for time
        estimates before the stage runs); same size unless the stage rescales."""
        return width, height

    def output_frames(self, num_frames: int, fps: float, params: Mapping[str, Any]) -> tuple[int, float]:
        """(frame count, fps) of the clip `process` returns for `num_frames` frames at `fps` (for
        memory and time estimates before the stage runs); unchanged unless the stage retimes."""
        return num_frames, fps

    @abstractmethod
    def process(self, clip: Clip, params: Mapping[str, Any], progress: Progress) -> Clip:
        """Return the processed clip. `params` are resolved against `param_specs()`."""
