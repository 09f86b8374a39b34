"""Resource limits checked before work starts, so a small request cannot pin the memory or the
queue: a clip's decoded size (generator output, every post-processing chain's output, a video
uploaded for checking), the stages in one chain and the rows of a keyframe table.

Every check raises `InputError` with one line saying what was asked, the limit and what to
lower; nothing here allocates the data it measures.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Sequence

from .errors import InputError

# Decoded clips are (T, H, W, 3) uint8; stages hold one or two of them plus float work copies.
# 1 GiB is an x4-upscaled 25-frame 1024x576 clip (708 MB) with room to spare; "lanczos+lanczos"
# on 512x320x16 (8192x5120x16x3 = 2 GB) is over it.
MAX_CLIP_BYTES = 1024**3
# Stages in one chain: the standard chains have 2; a longer one is a mistake or an attack.
MAX_STAGES_PER_CHAIN = 4
# Pixels x frames of a video decoded for checking (watermark detection works on all of it in
# float): 64 M covers an x4-upscaled 16-frame 512x320 export (2048x1280x16 = 42 M) and is about
# 190 MB as RGB.
MAX_VIDEO_PIXELS = 64_000_000
# Videos measured from the command line (`python -m core measure`, the user's own files on their
# own machine): 1 G pixels x frames, e.g. 16 s of 1080p at 30 fps, about 3 GB as RGB.
MAX_MEASURE_PIXELS = 1_000_000_000
# Keyframe rows and waypoint clicks: a path has at most 1024 frames, and a hand-written table
# of more than a few dozen rows is not a camera move anyone draws.
MAX_KEYFRAMES = 256
MAX_WAYPOINTS = 256


def _mb(n: float) -> str:
    return f"{n / 1024**2:,.0f} MB"


def clip_bytes(width: int, height: int, num_frames: int) -> int:
    """Bytes of a decoded (T, H, W, 3) uint8 clip."""
    return int(width) * int(height) * int(num_frames) * 3


def check_clip_size(width: int, height: int, num_frames: int, what: str,
                    max_bytes: int = MAX_CLIP_BYTES) -> int:
    """InputError when a `width` x `height` x `num_frames` RGB clip would exceed `max_bytes`."""
    n = clip_bytes(width, height, num_frames)
    if n > max_bytes:
        raise InputError(
            f"{what} would be {width}x{height}x{num_frames} frames ({_mb(n)} in memory); the limit is "
            f"{_mb(max_bytes)}. Lower the size, the frame count or the upscaling."
        )
    return n


def check_video_pixels(width: int, height: int, num_frames: int, what: str,
                       max_pixels: int = MAX_VIDEO_PIXELS) -> None:
    """InputError when decoding `num_frames` frames of `width` x `height` exceeds `max_pixels`."""
    if width <= 0 or height <= 0:
        raise InputError(f"{what} reports no frame size; it is not a readable video.")
    n = int(width) * int(height) * max(1, int(num_frames))
    if n > max_pixels:
        raise InputError(
            f"{what} is {width}x{height} with about {num_frames} frames ({n / 1e6:.0f} M pixels); the limit is "
            f"{max_pixels / 1e6:.0f} M pixels. Check a shorter or smaller video."
        )


def check_chain_length(stages: Sequence[str], text: str, max_stages: int = MAX_STAGES_PER_CHAIN) -> None:
    """InputError for a chain of more than `max_stages` stages (before any is parsed further)."""
    if len(stages) > max_stages:
        raise InputError(f"The chain {text[:60]!r} has {len(stages)} stages; at most {max_stages} are allowed.")


def check_rows(n: int, what: str, max_rows: int) -> None:
    """InputError for a table or list of more than `max_rows` entries."""
    if n > max_rows:
        raise InputError(f"{what}: {n} rows; at most {max_rows} are allowed.")


@dataclass(frozen=True)
class ChainEstimate:
    """Predicted output of one chain: size (width, height) and decoded bytes."""

    name: str
    width: int
    height: int
    num_frames: int

    @property
    def bytes(self) -> int:
        return clip_bytes(self.width, self.height, self.num_frames)


def stage_output_size(stage: Any, width: int, height: int, params: Mapping[str, Any]) -> tuple[int, int]:
    """(width, height) a stage produces from a `width` x `height` clip: a stage may say so with
    `output_size(width, height, params)`; otherwise an upscaler multiplies by its "scale"
    parameter (or its `scale` attribute, else 4) and any other stage keeps the size."""
    fn = getattr(stage, "output_size", None)
    if callable(fn):
        w, h = fn(width, height, params)
        return int(w), int(h)
    if getattr(stage, "role", "") != "upscale":
        return width, height
    factor = params.get("scale") or getattr(stage, "scale", None) or 4
    return int(width * int(factor)), int(height * int(factor))


def check_chain_outputs(width: int, height: int, num_frames: int,
                        chains: Sequence[tuple[str, Sequence[Any], Sequence[Mapping[str, Any]]]],
                        max_bytes: int = MAX_CLIP_BYTES, fps: float = 10.0) -> list[ChainEstimate]:
    """Estimate every chain's output from the input size (and frame count at `fps`: frame
    interpolation multiplies it) and refuse the first one over `max_bytes` (InputError naming
    the chain), before any stage runs.

    chains: (name, stage instances in order, their resolved params in order).
    """
    out = []
    for name, stages, params in chains:
        w, h, n, rate = width, height, num_frames, fps
        for stage, p in zip(stages, params):
            w, h = stage_output_size(stage, w, h, p)
            retimed = getattr(stage, "output_frames", None)
            if callable(retimed):
                n, rate = retimed(n, rate, p)
            check_clip_size(w, h, n, f"Chain {name!r}", max_bytes)
        out.append(ChainEstimate(name, w, h, n))
    return out
