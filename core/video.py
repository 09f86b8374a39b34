"""Video and image files in and out.

Writing (every writer is atomic: a hidden temporary name in the target folder, renamed when
complete; a failure or a cancel leaves no file under the final name):

* `write_mp4`: H.264 (libx264), yuv420p, constant quality (``-crf``), ``+faststart`` so browsers
  can start playing before the download ends. yuv420p needs even width and height: an odd
  dimension is **cropped by one pixel** (the last column and/or row is dropped; nothing is
  invented or resampled) and the crop is reported in the returned `WrittenVideo`. The frame
  rate is the clip's fps unless `fps=` overrides it; fractional rates (e.g. 7.5) are passed to
  ffmpeg as exact rationals. The ffmpeg binary is the one shipped by imageio-ffmpeg.
* `write_gif`: 256-colour palette per frame (lossy), loops forever. GIF stores frame delays in
  1/100 s, so the rate that comes back is 100 / round(100 / fps) (8 fps -> 1/0.12 s = 8.33 fps).
  The encoder merges identical consecutive frames into one longer frame; `read_video` expands
  them again, so the frame count survives a round trip.
* `write_png_frames`: a folder of ``frame-0000.png`` ... (lossless) plus ``frames.json`` with the
  fps; the folder appears in one rename.

Reading: `read_video` (mp4/mov/mkv/webm via ffmpeg, GIF via PIL, a PNG folder) -> `Clip`, and
`load_image` (in `core.imagefiles`, importable from here) for user photos with all the edge cases
users produce (EXIF rotation, CMYK, 16-bit, alpha, palettes, truncated files, decompression bombs).
"""

from __future__ import annotations

import json
import math
import os
import re
from dataclasses import asdict, dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from .clip import Clip
from .errors import InputError
from .limits import MAX_VIDEO_PIXELS, check_video_pixels
from .progress import Progress, ProgressFn, as_progress
from .fileio import atomic_output
# Photos are read in core.imagefiles; the names stay importable from here.
from .imagefiles import (DEFAULT_MAX_IMAGE_BYTES, DEFAULT_MAX_MEGAPIXELS, PHOTO_FORMATS,  # noqa: F401
                         first_line as _first_line, load_image)

DEFAULT_CRF = 18
DEFAULT_PNG_FPS = 8.0
VIDEO_EXTENSIONS = (".mp4", ".mov", ".mkv", ".webm", ".m4v", ".avi")
FRAMES_META = "frames.json"
_FRAME_RE = re.compile(r"^frame-(\d+)\.png$")


@dataclass(frozen=True)
class WrittenVideo:
    """What a writer produced. cropped = (columns, rows) dropped at the right/bottom edge to
    make the size even (mp4 only)."""

    path: str
    format: str
    width: int
    height: int
    num_frames: int
    fps: float
    bytes: int
    cropped: tuple[int, int] = (0, 0)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def estimate_bytes(clip: Clip, fmt: str) -> int:
    """Generous upper estimate of a written file's size, for the free-space check."""
    raw = clip.num_frames * clip.height * clip.width * 3
    if fmt == "mp4":
        return raw // 4 + 1024**2
    if fmt == "gif":
        return int(raw * 0.5) + 1024**2
    return int(raw * 1.1) + 1024**2


def even_crop(frames: np.ndarray) -> tuple[np.ndarray, tuple[int, int]]:
    """Drop the last column/row where width/height is odd. Returns (frames, (dx, dy))."""
    h, w = frames.shape[1:3]
    dx, dy = w % 2, h % 2
    if (dx or dy) and (w - dx < 2 or h - dy < 2):
        raise InputError(f"A {w}x{h} clip is too small to encode as H.264.")
    return (frames[:, : h - dy, : w - dx] if (dx or dy) else frames), (dx, dy)


def _check_clip(clip: Clip) -> Clip:
    if not isinstance(clip, Clip):
        raise TypeError(f"expected a Clip, got {type(clip).__name__}")
    return clip


def write_mp4(
    clip: Clip,
    path: str | os.PathLike,
    *,
    crf: int = DEFAULT_CRF,
    fps: float | None = None,
    preset: str = "medium",
    progress: Progress | ProgressFn | None = None,
) -> WrittenVideo:
    """Encode `clip` as H.264/yuv420p mp4 at `path` (atomic).

    crf: 0 (lossless luma) .. 51 (worst); 18 is visually near-lossless. fps: playback rate,
    default the clip's. Odd sizes are cropped by one pixel (see module docstring). progress is
    called once per frame and may raise Cancelled, which leaves no file behind.
    """
    import imageio.v2 as imageio

    clip = _check_clip(clip)
    if not (isinstance(crf, int) and 0 <= crf <= 51):
        raise InputError(f"crf must be a whole number from 0 to 51, got {crf!r}.")
    rate = float(fps if fps is not None else clip.fps)
    if not (math.isfinite(rate) and 0 < rate <= 240):
        raise InputError(f"fps must be in (0, 240], got {rate}.")
    frames, cropped = even_crop(clip.frames)
    prog = as_progress(progress)
    path = Path(path)
    with atomic_output(path) as tmp:
        writer = imageio.get_writer(
            tmp,
            format="FFMPEG",
            mode="I",
            fps=Fraction(rate).limit_denominator(1001),
            codec="libx264",
            pixelformat="yuv420p",
            quality=None,
            macro_block_size=1,
            ffmpeg_log_level="error",
            output_params=["-crf", str(crf), "-preset", preset, "-movflags", "+faststart"],
        )
        try:
            for i, frame in enumerate(frames):
                writer.append_data(np.ascontiguousarray(frame))
                prog((i + 1) / len(frames), f"encoding frame {i + 1}/{len(frames)}")
        finally:
            writer.close()
    return WrittenVideo(
        str(path), "mp4", frames.shape[2], frames.shape[1], len(frames), rate, path.stat().st_size, cropped
    )


def write_gif(
    clip: Clip,
    path: str | os.PathLike,
    *,
    fps: float | None = None,
    progress: Progress | ProgressFn | None = None,
) -> WrittenVideo:
    """Write an endlessly looping GIF (palette per frame; delays in 1/100 s) at `path` (atomic)."""
    from PIL import Image

    clip = _check_clip(clip)
    rate = float(fps if fps is not None else clip.fps)
    if not (math.isfinite(rate) and rate > 0):
        raise InputError(f"fps must be positive, got {rate}.")
    prog = as_progress(progress)
    images = []
    for i, frame in enumerate(clip.frames):
        images.append(Image.fromarray(frame).quantize(256, method=Image.Quantize.MEDIANCUT))
        prog((i + 1) / clip.num_frames * 0.9, f"quantising frame {i + 1}/{clip.num_frames}")
    # GIF delays are centiseconds; PIL takes milliseconds and truncates, so round here.
    delay_ms = max(2, round(100.0 / rate)) * 10
    path = Path(path)
    with atomic_output(path) as tmp:
        images[0].save(
            tmp,
            format="GIF",
            save_all=True,
            append_images=images[1:],
            duration=delay_ms,
            loop=0,
            optimize=False,
            comment=f"frame_delay_ms={delay_ms}".encode("ascii"),
        )
        prog(1.0, "GIF written")
    return WrittenVideo(
        str(path), "gif", clip.width, clip.height, clip.num_frames, 1000.0 / delay_ms, path.stat().st_size
    )


def write_png_frames(
    clip: Clip,
    folder: str | os.PathLike,
    *,
    compression: int = 1,
    progress: Progress | ProgressFn | None = None,
) -> WrittenVideo:
    """Write ``frame-0000.png`` ... and ``frames.json`` ({"fps", "num_frames"}) into `folder`,
    which must not exist or be empty; the folder appears complete in one rename.
    compression: PNG zlib level 0-9. Level 1 with zlib's run-length strategy (lossless like every
    PNG): on an x4-upscaled 2048x1280 room frame it encodes in 0.12 s against 0.18 s for level 3,
    and the file is 10% smaller (upscaled frames are runs of smooth colour)."""
    clip = _check_clip(clip)
    folder = Path(folder)
    if folder.exists() and (not folder.is_dir() or any(folder.iterdir())):
        raise InputError(f"{folder} already exists and is not an empty folder.")
    prog = as_progress(progress)
    total = 0
    with atomic_output(folder) as tmp:
        tmp.mkdir()
        for i, frame in enumerate(clip.frames):
            ok, buf = cv2.imencode(".png", frame[..., ::-1], [cv2.IMWRITE_PNG_COMPRESSION, int(compression),
                                                              cv2.IMWRITE_PNG_STRATEGY, cv2.IMWRITE_PNG_STRATEGY_RLE])
            if not ok:  # pragma: no cover - OpenCV cannot fail on a valid uint8 image
                raise InputError(f"Could not encode frame {i} as PNG.")
            (tmp / f"frame-{i:04d}.png").write_bytes(buf.tobytes())
            total += buf.size
            prog((i + 1) / clip.num_frames, f"writing frame {i + 1}/{clip.num_frames}")
        (tmp / FRAMES_META).write_text(json.dumps({"fps": clip.fps, "num_frames": clip.num_frames}) + "\n")
    return WrittenVideo(str(folder), "png", clip.width, clip.height, clip.num_frames, clip.fps, total)


# --------------------------------------------------------------------------- reading videos


def read_video(path: str | os.PathLike, *, fps: float | None = None, max_frames: int | None = None,
               max_pixels: int | None = MAX_VIDEO_PIXELS) -> Clip:
    """Decode a video file or a PNG frame folder into a Clip ((T, H, W, 3) uint8 RGB).

    mp4/mov/mkv/webm/m4v/avi: ffmpeg (imageio-ffmpeg), fps from the container. GIF: PIL, fps
    from the shortest frame delay (longer frames are repeated). A folder: ``frame-NNNN.png`` files in numeric order (any
    ``*.png`` if there are none), fps from ``frames.json``, else `DEFAULT_PNG_FPS`. `fps`
    overrides the detected rate; max_frames keeps only the first frames. max_pixels (None: no
    limit) caps width x height x frames: checked from the container header (or the GIF/PNG
    headers) before any frame is decoded, and again while decoding (a header can understate).
    """
    path = Path(path)
    if not path.exists():
        raise InputError(f"Video not found: {path}")
    if path.is_dir():
        frames, detected = _read_png_folder(path, max_frames, max_pixels)
    elif path.suffix.lower() == ".gif":
        frames, detected = _read_gif(path, max_frames, max_pixels)
    elif path.suffix.lower() in VIDEO_EXTENSIONS:
        frames, detected = _read_ffmpeg(path, max_frames, max_pixels)
    else:
        raise InputError(f"Unsupported video type {path.suffix or '(none)'} for {path.name}; use mp4, gif or a PNG folder.")
    if not frames:
        raise InputError(f"{path.name} contains no frames.")
    shapes = {f.shape for f in frames}
    if len(shapes) != 1:
        raise InputError(f"{path.name} has frames of different sizes: {sorted(shapes)}.")
    rate = float(fps) if fps is not None else detected
    if not (rate and math.isfinite(rate) and rate > 0):
        rate = DEFAULT_PNG_FPS
    return Clip(np.ascontiguousarray(np.stack(frames)), rate)


def _header_frames(meta: dict[str, Any], max_frames: int | None) -> int:
    """Frame count announced by a container header (nframes, else duration x fps)."""
    n = meta.get("nframes")
    if not (isinstance(n, (int, float)) and math.isfinite(n) and n > 0):
        duration, rate = float(meta.get("duration") or 0.0), float(meta.get("fps") or 0.0)
        n = math.ceil(duration * rate) if math.isfinite(duration * rate) and duration * rate > 0 else 1
    n = int(n)
    return min(n, max_frames) if max_frames is not None else n


def _read_ffmpeg(path: Path, max_frames: int | None,
                 max_pixels: int | None = None) -> tuple[list[np.ndarray], float]:
    import imageio.v2 as imageio

    try:
        reader = imageio.get_reader(path, format="FFMPEG")
    except Exception as exc:
        raise InputError(f"Cannot decode {path.name} as a video: {_first_line(exc)}") from exc
    frames = []
    try:
        meta = reader.get_meta_data()
        fps = float(meta.get("fps") or 0.0)
        w, h = (int(v) for v in (meta.get("size") or (0, 0)))
        if max_pixels is not None:
            check_video_pixels(w, h, _header_frames(meta, max_frames), path.name, max_pixels)
        for frame in reader:
            frames.append(np.asarray(frame, dtype=np.uint8)[..., :3])
            if max_pixels is not None:
                check_video_pixels(w, h, len(frames), path.name, max_pixels)
            if max_frames is not None and len(frames) >= max_frames:
                break
    except InputError:
        raise
    except Exception as exc:
        raise InputError(f"Cannot decode {path.name} as a video: {_first_line(exc)}") from exc
    finally:
        reader.close()
    return frames, fps


def _read_gif(path: Path, max_frames: int | None,
              max_pixels: int | None = None) -> tuple[list[np.ndarray], float]:
    from PIL import Image, ImageSequence

    frames: list[np.ndarray] = []
    delays: list[float] = []
    try:
        with Image.open(path) as im:
            if max_pixels is not None:
                n = int(getattr(im, "n_frames", 1))
                check_video_pixels(im.size[0], im.size[1], min(n, max_frames or n), path.name, max_pixels)
            comment = im.info.get("comment") or b""
            for frame in ImageSequence.Iterator(im):
                frames.append(np.asarray(frame.convert("RGB"), dtype=np.uint8))
                delays.append(float(frame.info.get("duration") or 0.0))
    except InputError:
        raise
    except Exception as exc:
        raise InputError(f"Cannot decode {path.name} as a GIF: {_first_line(exc)}") from exc
    positive = [d for d in delays if d > 0]
    if not positive:
        return frames[:max_frames], 0.0
    # GIF encoders merge identical consecutive frames into one longer frame; repeating each
    # frame by its delay over the shortest delay restores the original frame count.
    # Our writer records the nominal delay in a comment, which also covers a clip whose frames
    # were all merged into one.
    m = re.search(rb"frame_delay_ms=(\d+)", comment if isinstance(comment, bytes) else b"")
    base = float(m.group(1)) if m and int(m.group(1)) > 0 else min(positive)
    expanded = [f for f, d in zip(frames, delays) for _ in range(max(1, round(d / base)))][:max_frames]
    if max_pixels is not None and expanded:
        # long delays repeat frames: the stacked clip is what must fit
        check_video_pixels(expanded[0].shape[1], expanded[0].shape[0], len(expanded), path.name, max_pixels)
    return expanded, 1000.0 / base


def _read_png_folder(folder: Path, max_frames: int | None,
                     max_pixels: int | None = None) -> tuple[list[np.ndarray], float]:
    numbered = sorted(
        ((int(m.group(1)), p) for p in folder.iterdir() if (m := _FRAME_RE.match(p.name))), key=lambda t: t[0]
    )
    files = [p for _, p in numbered] or sorted(folder.glob("*.png"))
    if max_frames is not None:
        files = files[:max_frames]
    frames = []
    for p in files:
        img = cv2.imread(str(p), cv2.IMREAD_COLOR)
        if img is None:
            raise InputError(f"Cannot read frame {p.name} in {folder}.")
        if max_pixels is not None and not frames:
            check_video_pixels(img.shape[1], img.shape[0], len(files), folder.name, max_pixels)
        frames.append(cv2.cvtColor(img, cv2.COLOR_BGR2RGB))
    fps = 0.0
    meta = folder / FRAMES_META
    if meta.is_file():
        try:
            fps = float(json.loads(meta.read_text()).get("fps") or 0.0)
        except (ValueError, AttributeError, TypeError):
            fps = 0.0
    return frames, fps


class Mp4Stream:
    """Frame-by-frame H.264 writer with `write_mp4`'s encoding (libx264, yuv420p, ``-crf``,
    ``+faststart``, atomic), for outputs too long to hold in memory at once (a tour of several
    720p shots is gigabytes of RGB).

    Use as a context manager: ``with Mp4Stream(path, 30) as out: out.append(frame)``; every
    frame is (H, W, 3) uint8 RGB of one size (odd sizes are cropped by one pixel as in
    `write_mp4`). On an exception (including Cancelled) no file is left under the final name.
    After a normal exit `result` describes the file.
    """

    def __init__(self, path: str | os.PathLike, fps: float, *, crf: int = DEFAULT_CRF, preset: str = "medium"):
        if not (isinstance(crf, int) and 0 <= crf <= 51):
            raise InputError(f"crf must be a whole number from 0 to 51, got {crf!r}.")
        rate = float(fps)
        if not (math.isfinite(rate) and 0 < rate <= 240):
            raise InputError(f"fps must be in (0, 240], got {rate}.")
        self.path = Path(path)
        self.fps = rate
        self.crf = crf
        self.preset = preset
        self.result: WrittenVideo | None = None
        self._count = 0
        self._shape: tuple[int, ...] | None = None
        self._cropped = (0, 0)
        self._writer: Any = None
        self._stack: Any = None

    def __enter__(self) -> "Mp4Stream":
        import contextlib

        import imageio.v2 as imageio

        self._stack = contextlib.ExitStack()
        tmp = self._stack.enter_context(atomic_output(self.path))
        self._writer = imageio.get_writer(
            tmp, format="FFMPEG", mode="I", fps=Fraction(self.fps).limit_denominator(1001), codec="libx264",
            pixelformat="yuv420p", quality=None, macro_block_size=1, ffmpeg_log_level="error",
            output_params=["-crf", str(self.crf), "-preset", self.preset, "-movflags", "+faststart"],
        )
        return self

    def append(self, frame: np.ndarray) -> None:
        """Add one (H, W, 3) uint8 RGB frame."""
        if not isinstance(frame, np.ndarray) or frame.dtype != np.uint8 or frame.ndim != 3 or frame.shape[2] != 3:
            raise TypeError(f"expected an (H, W, 3) uint8 frame, got {getattr(frame, 'dtype', type(frame))} "
                            f"{getattr(frame, 'shape', '')}")
        if self._shape is None:
            self._shape = frame.shape
        elif frame.shape != self._shape:
            raise ValueError(f"frame {self._count} is {frame.shape}, the stream is {self._shape}")
        even, self._cropped = even_crop(frame[None])
        self._writer.append_data(np.ascontiguousarray(even[0]))
        self._count += 1

    def __exit__(self, exc_type, exc, tb) -> bool:
        own: BaseException | None = None
        try:
            self._writer.close()
        except BaseException as close_exc:  # reported below unless the block already failed
            own = close_exc
        if exc is None and own is None and self._count == 0:
            own = InputError(f"No frames were written to {self.path.name}.")
        err = exc if exc is not None else own
        if err is not None:
            # removes the temporary file (a full disk becomes OutOfDiskSpace there)
            self._stack.__exit__(type(err), err, err.__traceback__)
            if exc is None:
                raise own
            return False
        self._stack.__exit__(None, None, None)
        h, w = self._shape[0] - self._cropped[1], self._shape[1] - self._cropped[0]
        self.result = WrittenVideo(str(self.path), "mp4", w, h, self._count, self.fps,
                                   self.path.stat().st_size, self._cropped)
        return False
