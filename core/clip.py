"""The unit of exchange between generators, post-processing stages, metrics and video I/O."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Clip:
    """A short video held in memory.

    frames: (T, H, W, 3) uint8 RGB, C-contiguous.
    fps:    playback rate in frames per second (> 0).
    """

    frames: np.ndarray
    fps: float

    def __post_init__(self) -> None:
        f = self.frames
        if not isinstance(f, np.ndarray) or f.dtype != np.uint8 or f.ndim != 4 or f.shape[-1] != 3:
            raise ValueError(
                f"Clip.frames must be a (T, H, W, 3) uint8 array, got "
                f"{getattr(f, 'dtype', type(f))} {getattr(f, 'shape', '')}"
            )
        if f.shape[0] < 1 or f.shape[1] < 1 or f.shape[2] < 1:
            raise ValueError(f"Clip.frames has an empty axis: {f.shape}")
        if not (self.fps > 0):
            raise ValueError(f"Clip.fps must be > 0, got {self.fps}")

    @property
    def num_frames(self) -> int:
        return int(self.frames.shape[0])

    @property
    def height(self) -> int:
        return int(self.frames.shape[1])

    @property
    def width(self) -> int:
        return int(self.frames.shape[2])

    @property
    def duration(self) -> float:
        """Seconds of playback."""
        return self.num_frames / self.fps

    def with_frames(self, frames: np.ndarray) -> "Clip":
        """Same fps, new frames."""
        return Clip(np.ascontiguousarray(frames), self.fps)
