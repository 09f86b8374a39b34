"""Multi-room tours: an ordered list of shots, joined by transitions, as one H.264 MP4.

A `Shot` is one photo with a camera move (a preset name or a `CameraPath`), a length in seconds
and a prompt. A `Tour` is the ordered shots plus how to join and deliver them. `iter_tour` (what
`Studio.run_tour` runs) renders shot by shot into the tour's run folder and yields a `TourEvent`
after each finished shot, so a player can fill in while later shots still render. Each finished
shot also goes straight into the encoder of ``tour.mp4`` (and ``tour-vertical.mp4`` when asked),
so the tour is ready as soon as its last shot is; nothing holds more than one shot in memory.

Defaults are what a real-estate videographer would pick for a listing:

* 4 s per shot: long enough to read a room, short enough that a 5-room tour stays under 30 s.
* Moves alternate push-in and pan (right, then left, ...), so consecutive rooms do not swing the
  same way; a move keeps its preset amount over the whole shot, i.e. it is slow and steady.
* 0.5 s cross-fades: a soft join between rooms without the tour feeling like a slideshow.
* 30 fps, 1280x720 (16:9 HD): what listing sites, YouTube and phones play full-screen. Ken Burns
  renders straight at 1280x720 from the photo's own pixels; AI clips (512x320 at 10 fps for
  CamI2V) are centre-cropped to 16:9 (a cover crop: no letterbox bars, which look amateurish in a
  listing) and resized, after the chain ran at the model's size and frame interpolation brought
  them to the tour's rate. Any even 16:9 size (e.g. 1920x1080, 640x360) may be asked for.
* The optional vertical cut for Reels/Shorts/TikTok is the centre 9:16 column of every frame at
  the master's pixels (nothing invented or resampled): 404x720 for a 1280x720 master.

Timing is exact: shot i covers round(seconds_i * fps) frames of the tour and the tour is the sum
of them, whatever the transition (a 3-room tour of 4 s shots is 12.000 s). A cross-fade of k
frames therefore needs k more frames of the outgoing shot (a "handle", as editors call it): that
shot is rendered k frames longer and the camera keeps moving through the fade; the incoming
shot's first k frames are mixed with the handle, weight (j + 1) / (k + 1) for the incoming frame j.
A dip to black fades the last m frames of a shot to black and the next shot's first m frames in
from black, m = round(duration * fps / 2), with the incoming shot's first frame exactly black.
A cut joins the shots as they are.

Resuming: every finished shot is saved as ``shot-NN.mp4`` (H.264, crf 14) in the run folder
together with a fingerprint of everything that decided its frames (photo bytes, move, length,
prompt, model, parameters, seed, chain, size, fps, handle). `iter_tour(..., resume=run_id)` skips
shots whose file and fingerprint are there (joining them from that file) and renders only the
rest. The photos are copied into the run folder, so a resume needs nothing from the upload.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator, Mapping, Sequence

import cv2
import numpy as np

from . import camera as cam
from .clip import Clip
from .errors import InputError, StudioError
from .imagefiles import FORMAT_EXTENSIONS
from .progress import Progress, as_progress

if TYPE_CHECKING:  # pragma: no cover
    from .runs import Run
    from .service import Studio

TRANSITIONS = ("cut", "crossfade", "dip")
TRANSITION_LABELS = {"cut": "Cut", "crossfade": "Cross-fade", "dip": "Dip to black"}
FPS_CHOICES = (24, 30)
DEFAULT_SECONDS = 4.0
DEFAULT_FPS = 30
DEFAULT_SIZE = (1280, 720)
DEFAULT_MOVES = ("push-in", "pan-right", "push-in", "pan-left")
DEFAULT_TRANSITION_SECONDS = 0.5
MIN_SHOT_SECONDS = 1.0
MAX_SHOT_SECONDS = 30.0
MAX_TRANSITION_SECONDS = 2.0
MAX_SHOTS = 40
MIN_SIZE, MAX_SIZE = (64, 36), (3840, 2160)

TOUR_FILE = "tour.json"
TOUR_MP4 = "tour.mp4"
TOUR_VERTICAL_MP4 = "tour-vertical.mp4"
SHOT_MP4 = "shot-{index:02d}.mp4"
PHOTO_FILE = "photo-{index:02d}{ext}"
# Shot files feed the player and a resume (re-encoded once into the tour then): a low crf keeps
# that second generation invisible; "ultrafast" keeps the preview quick (files ~5x larger).
SHOT_CRF, SHOT_PRESET = 14, "ultrafast"
# "veryfast" encodes 720p about 4x faster than "medium" for a file ~10-20% larger at the same crf.
TOUR_CRF, TOUR_PRESET = 18, "veryfast"


# --------------------------------------------------------------------------------- the model

@dataclass(frozen=True)
class Transition:
    """How consecutive shots are joined. kind: cut | crossfade | dip; seconds: its length (ignored
    for a cut)."""

    kind: str = "crossfade"
    seconds: float = DEFAULT_TRANSITION_SECONDS

    def __post_init__(self) -> None:
        kind = str(self.kind).strip().lower().replace("-", "").replace(" ", "").replace("_", "")
        kind = {"crossfade": "crossfade", "fade": "crossfade", "dissolve": "crossfade", "cut": "cut",
                "dip": "dip", "diptoblack": "dip", "black": "dip"}.get(kind, kind)
        if kind not in TRANSITIONS:
            raise InputError(f"Unknown transition {self.kind!r}; use cut, crossfade or dip.")
        secs = _number(self.seconds, "Transition length")
        if not 0.0 <= secs <= MAX_TRANSITION_SECONDS:
            raise InputError(f"Transition length must be between 0 and {MAX_TRANSITION_SECONDS:g} s, got {secs:g}.")
        object.__setattr__(self, "kind", kind)
        object.__setattr__(self, "seconds", 0.0 if kind == "cut" else secs)

    def frames(self, fps: float) -> int:
        """Cross-fade: frames mixed (k); dip: frames faded on each side (m); cut: 0."""
        if self.kind == "cut" or self.seconds <= 0:
            return 0
        if self.kind == "crossfade":
            return int(round(self.seconds * fps))
        return int(round(self.seconds * fps / 2))


@dataclass(frozen=True)
class Shot:
    """One room of a tour.

    photo: path of the photo. move: a camera preset id (`core.camera.PRESETS`), used unless
    `path` is given; `path` is a CameraPath resampled to the shot's frame count. seconds: the
    shot's length in the tour. prompt: text for AI models. amount/distance: the preset's move
    amount and translation scale (None: the preset's defaults).
    """

    photo: Path
    move: str = DEFAULT_MOVES[0]
    seconds: float = DEFAULT_SECONDS
    prompt: str = ""
    path: cam.CameraPath | None = None
    amount: float | None = None
    distance: float | None = None

    def __post_init__(self) -> None:
        if not str(self.photo or "").strip():
            raise InputError("Every shot needs a photo.")
        object.__setattr__(self, "photo", Path(self.photo))
        move = str(self.move or "").strip().lower()
        if self.path is None and move not in cam.PRESETS:
            raise InputError(f"Unknown camera move {self.move!r} for {self.photo.name}; "
                             f"choose one of {', '.join(cam.PRESETS)}.")
        object.__setattr__(self, "move", move if self.path is None else (move or self.path.name))
        secs = _number(self.seconds, f"Length of the shot of {self.photo.name}")
        if not MIN_SHOT_SECONDS <= secs <= MAX_SHOT_SECONDS:
            raise InputError(f"Length of the shot of {self.photo.name} must be between {MIN_SHOT_SECONDS:g} and "
                             f"{MAX_SHOT_SECONDS:g} seconds, got {secs:g}.")
        object.__setattr__(self, "seconds", secs)
        object.__setattr__(self, "prompt", str(self.prompt or ""))
        if self.amount is not None:
            object.__setattr__(self, "amount", cam.check_amount(self.amount))
        if self.distance is not None:
            object.__setattr__(self, "distance", cam.check_distance(self.distance))

    def camera(self, num_frames: int, aspect: float) -> cam.CameraPath:
        """The shot's camera path with `num_frames` poses for an image of `aspect` (W / H)."""
        if self.path is not None:
            p = self.path if self.path.num_frames == num_frames else self.path.resampled(num_frames)
            return p
        return cam.preset_path(self.move, num_frames=num_frames, amount=self.amount, distance=self.distance,
                               aspect=aspect)

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"photo": str(self.photo), "move": self.move, "seconds": self.seconds,
                             "prompt": self.prompt, "amount": self.amount, "distance": self.distance}
        if self.path is not None:
            d["path"] = self.path.to_dict()
        return d

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], base: Path | None = None, index: int = 0) -> "Shot":
        """A shot from JSON ({"photo", "move", "seconds", "prompt", "amount", "distance", "path"});
        a relative photo is taken relative to `base`. Missing fields take the defaults."""
        if not isinstance(data, Mapping):
            raise InputError(f"Shot {index + 1} must be an object with at least a \"photo\", got {data!r}.")
        known = {"photo", "move", "seconds", "prompt", "amount", "distance", "path"}
        unknown = sorted(set(data) - known)
        if unknown:
            raise InputError(f"Shot {index + 1}: unknown field(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}.")
        if not data.get("photo"):
            raise InputError(f"Shot {index + 1} has no \"photo\".")
        photo = Path(str(data["photo"])).expanduser()
        if base is not None and not photo.is_absolute():
            photo = base / photo
        path = cam.CameraPath.from_dict(data["path"]) if data.get("path") else None
        return cls(photo=photo, move=data.get("move") or default_move(index), path=path,
                   seconds=data.get("seconds", DEFAULT_SECONDS), prompt=data.get("prompt") or "",
                   amount=data.get("amount"), distance=data.get("distance"))


@dataclass(frozen=True)
class Tour:
    """An ordered list of shots and how to join and deliver them.

    fps: 24 or 30. width x height: the 16:9 master (even numbers). vertical: also write the
    centre 9:16 crop. model: the generator of every shot (kenburns previews in seconds). chain:
    a post-processing chain applied to every shot ("none", "denoise", "denoise+upscale", ...),
    with `roles` naming the stage of each role. params: generator parameters. seed: shot i
    uses seed + i.
    """

    shots: tuple[Shot, ...]
    transition: Transition = field(default_factory=Transition)
    fps: int = DEFAULT_FPS
    width: int = DEFAULT_SIZE[0]
    height: int = DEFAULT_SIZE[1]
    vertical: bool = False
    model: str = "kenburns"
    chain: str = "none"
    roles: Mapping[str, str] = field(default_factory=dict)
    params: Mapping[str, Any] = field(default_factory=dict)
    negative_prompt: str = ""
    seed: int = 0

    def __post_init__(self) -> None:
        shots = tuple(self.shots or ())
        if not shots:
            raise InputError("A tour needs at least one shot: add a photo.")
        if len(shots) > MAX_SHOTS:
            raise InputError(f"A tour has at most {MAX_SHOTS} shots, got {len(shots)}.")
        if not all(isinstance(s, Shot) for s in shots):
            raise InputError("Every shot of a tour must be a Shot.")
        object.__setattr__(self, "shots", shots)
        if not isinstance(self.transition, Transition):
            raise InputError("The tour's transition must be a Transition.")
        fps = _number(self.fps, "Tour fps")
        if fps not in FPS_CHOICES:
            raise InputError(f"Tour fps must be {' or '.join(map(str, FPS_CHOICES))}, got {self.fps!r}.")
        object.__setattr__(self, "fps", int(fps))
        w, h = int(_number(self.width, "Tour width")), int(_number(self.height, "Tour height"))
        if w % 2 or h % 2 or abs(w * 9 - h * 16) > 16 or not (MIN_SIZE[0] <= w <= MAX_SIZE[0]):
            raise InputError(f"Tour size must be an even 16:9 size from {MIN_SIZE[0]}x{MIN_SIZE[1]} to "
                             f"{MAX_SIZE[0]}x{MAX_SIZE[1]} (e.g. 1280x720), got {self.width}x{self.height}.")
        object.__setattr__(self, "width", w)
        object.__setattr__(self, "height", h)
        object.__setattr__(self, "chain", "+".join(p.strip().lower() for p in str(self.chain or "none").split("+")
                                                   if p.strip()) or "none")
        object.__setattr__(self, "roles", dict(self.roles or {}))
        object.__setattr__(self, "params", dict(self.params or {}))
        seed = _number(self.seed, "Seed")
        if seed != int(seed) or not 0 <= seed < 2**32:
            raise InputError(f"Seed must be a whole number between 0 and {2**32 - 1}, got {self.seed!r}.")
        object.__setattr__(self, "seed", int(seed))
        # Each shot must be seen unmixed for at least half its length.
        need = 2 * self.transition.seconds if len(shots) > 1 else 0.0
        for i, s in enumerate(shots):
            if s.seconds < need:
                raise InputError(f"Shot {i + 1} ({s.photo.name}) lasts {s.seconds:g} s; with a "
                                 f"{self.transition.seconds:g} s {TRANSITION_LABELS[self.transition.kind].lower()} "
                                 f"each shot must last at least {need:g} s.")

    # -- timing ------------------------------------------------------------------------------
    def shot_frames(self, index: int) -> int:
        """Frames shot `index` occupies in the tour: round(seconds * fps)."""
        return int(round(self.shots[index].seconds * self.fps))

    def handle_frames(self, index: int) -> int:
        """Extra frames rendered after shot `index` for a cross-fade into the next shot."""
        if self.transition.kind != "crossfade" or index >= len(self.shots) - 1:
            return 0
        return self.transition.frames(self.fps)

    def render_frames(self, index: int) -> int:
        """Frames to render for shot `index` (its own plus the cross-fade handle)."""
        return self.shot_frames(index) + self.handle_frames(index)

    @property
    def num_frames(self) -> int:
        return sum(self.shot_frames(i) for i in range(len(self.shots)))

    @property
    def duration(self) -> float:
        """Seconds of the tour: num_frames / fps."""
        return self.num_frames / self.fps

    @property
    def vertical_size(self) -> tuple[int, int]:
        return vertical_size(self.width, self.height)

    # -- (de)serialisation -------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return {"shots": [s.to_dict() for s in self.shots],
                "transition": {"kind": self.transition.kind, "seconds": self.transition.seconds},
                "fps": self.fps, "width": self.width, "height": self.height, "vertical": self.vertical,
                "model": self.model, "chain": self.chain, "roles": dict(self.roles), "params": dict(self.params),
                "negative_prompt": self.negative_prompt, "seed": self.seed}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], base: Path | None = None) -> "Tour":
        if not isinstance(data, Mapping):
            raise InputError("A tour file must hold a JSON object with \"shots\" (or a list of shots).")
        shots = data.get("shots")
        if not isinstance(shots, list):
            raise InputError("A tour file needs \"shots\": a list of {\"photo\": ..., \"move\": ..., \"seconds\": ...}.")
        tr = data.get("transition") or {}
        if isinstance(tr, str):
            tr = {"kind": tr}
        return cls(shots=tuple(Shot.from_dict(s, base, i) for i, s in enumerate(shots)),
                   transition=Transition(tr.get("kind", "crossfade"), tr.get("seconds", DEFAULT_TRANSITION_SECONDS)),
                   **{k: data[k] for k in ("fps", "width", "height", "vertical", "model", "chain", "roles", "params",
                                           "negative_prompt", "seed") if k in data})


def default_move(index: int) -> str:
    """The videographer's default move for the shot at `index`: push-in, pan-right, push-in, pan-left, ..."""
    return DEFAULT_MOVES[index % len(DEFAULT_MOVES)]


def make_tour(photos: Sequence[str | Path], moves: Sequence[str] | None = None,
              seconds: float | Sequence[float] | None = None, prompts: Sequence[str] | None = None,
              **options: Any) -> Tour:
    """A tour over `photos` in order. moves: one per shot, or fewer (the rest take the
    defaults); a single move is used for every shot. seconds: one value or one per shot.
    options: the other `Tour` fields (transition, fps, width, height, vertical, model, ...)."""
    photos = [p for p in (photos or []) if str(p).strip()]
    if not photos:
        raise InputError("A tour needs at least one shot: add a photo.")
    moves = [m.strip() for m in (moves or []) if m and m.strip()]
    if len(moves) > len(photos):
        raise InputError(f"{len(moves)} moves for {len(photos)} photos; give at most one move per photo.")
    if len(moves) == 1 and len(photos) > 1:
        moves = moves * len(photos)
    if seconds is None or isinstance(seconds, (int, float, str)):
        secs = [DEFAULT_SECONDS if seconds is None else seconds] * len(photos)
    else:
        secs = list(seconds)
        if len(secs) != len(photos):
            raise InputError(f"{len(secs)} lengths for {len(photos)} photos; give one, or one per photo.")
    prompts = list(prompts or [])
    shots = tuple(Shot(photo=Path(p), move=moves[i] if i < len(moves) else default_move(i), seconds=secs[i],
                       prompt=prompts[i] if i < len(prompts) else "") for i, p in enumerate(photos))
    return Tour(shots=shots, **options)


def parse_size(text: str) -> tuple[int, int]:
    """"1280x720" -> (1280, 720); also "720p" and "1080p"."""
    t = str(text).strip().lower()
    named = {"360p": (640, 360), "540p": (960, 540), "720p": (1280, 720), "1080p": (1920, 1080), "4k": (3840, 2160)}
    if t in named:
        return named[t]
    parts = t.replace("×", "x").split("x")
    try:
        w, h = (int(p) for p in parts)
    except ValueError:
        raise InputError(f"Size must look like 1280x720 (or 720p, 1080p), got {text!r}.") from None
    return w, h


def load_shots_file(path: str | Path) -> Tour:
    """A tour from a JSON file: a list of shots, or an object with "shots" and tour fields.
    Relative photo paths are relative to the file's folder."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise InputError(f"No such shot list: {path}.")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputError(f"{path.name} is not valid JSON: {exc}.") from None
    if isinstance(data, list):
        data = {"shots": data}
    return Tour.from_dict(data, base=path.parent)


def _number(value: Any, what: str) -> float:
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise InputError(f"{what} must be a number, got {value!r}.") from None
    if not math.isfinite(v):
        raise InputError(f"{what} must be a finite number, got {value!r}.")
    return v


# --------------------------------------------------------------------------------- pictures

def vertical_size(width: int, height: int) -> tuple[int, int]:
    """The 9:16 column cut from a width x height master: (the largest even width not above
    9/16 of the height, height). 1280x720 -> 404x720; 1920x1080 -> 606x1080."""
    w = 2 * int(height * 9 / 32)
    if w > width:
        raise InputError(f"A {width}x{height} frame is too narrow for a 9:16 crop.")
    return w, height


def vertical_crop(frame: np.ndarray) -> np.ndarray:
    """The centre 9:16 column of an (H, W, 3) frame (a view, no copy)."""
    h, w = frame.shape[:2]
    vw, _ = vertical_size(w, h)
    x0 = (w - vw) // 2
    return frame[:, x0:x0 + vw]


def fit_frames(frames: np.ndarray, width: int, height: int) -> np.ndarray:
    """(T, H, W, 3) uint8 -> (T, height, width, 3): the centred crop of the target's aspect
    (cover: no bars), then resized (area filter when shrinking, Lanczos when enlarging)."""
    t, h, w = frames.shape[:3]
    if (w, h) == (width, height):
        return frames
    target = width / height
    if w / h > target:  # too wide: crop columns
        cw, ch = max(2, int(round(h * target))), h
    else:
        cw, ch = w, max(2, int(round(w / target)))
    x0, y0 = (w - cw) // 2, (h - ch) // 2
    interp = cv2.INTER_AREA if cw >= width else cv2.INTER_LANCZOS4
    out = np.empty((t, height, width, 3), np.uint8)
    for i in range(t):
        crop = frames[i, y0:y0 + ch, x0:x0 + cw]
        out[i] = crop if (cw, ch) == (width, height) else cv2.resize(crop, (width, height), interpolation=interp)
    return out


def fit_count(frames: np.ndarray, n: int) -> np.ndarray:
    """Exactly `n` frames: unchanged when the count matches, else the nearest frame in time
    (used only to absorb an off-by-a-few count after retiming)."""
    t = frames.shape[0]
    if t == n:
        return frames
    idx = np.rint(np.linspace(0, t - 1, n)).astype(int)
    return frames[idx]


def crossfade(outgoing: np.ndarray, incoming: np.ndarray) -> np.ndarray:
    """Mix k frames: out_j = (1 - a_j) * outgoing_j + a_j * incoming_j, a_j = (j + 1) / (k + 1),
    rounded to the nearest uint8. Both (k, H, W, 3) uint8. The first and last mixed frames are already
    partly the other shot, so the fade has no repeated frame at either end."""
    k = incoming.shape[0]
    if outgoing.shape != incoming.shape:
        raise ValueError(f"cross-fade of {outgoing.shape} into {incoming.shape}")
    out = np.empty_like(incoming)
    for j in range(k):  # per frame in OpenCV (rounds to nearest, saturates): no float copy of the clip
        a = (j + 1) / (k + 1)
        cv2.addWeighted(outgoing[j], 1.0 - a, incoming[j], a, 0.0, dst=out[j])
    return out


def dip_gains(m: int) -> tuple[np.ndarray, np.ndarray]:
    """Brightness gains of a dip to black: (gains of the outgoing shot's last m frames, gains of
    the incoming shot's first m frames) = ((m - j) / m, j / m) for j = 0..m-1. Around the join
    the gains run 1, (m-1)/m, ..., 1/m | 0, 1/m, ..., (m-1)/m, 1: a V whose black bottom is the
    incoming shot's first frame."""
    out = (m - np.arange(m, dtype=np.float32)) / m
    return out, np.arange(m, dtype=np.float32) / m


def _gain(frames: np.ndarray, gains: np.ndarray) -> np.ndarray:
    """frames (m, H, W, 3) uint8 times one gain per frame, rounded."""
    out = np.empty_like(frames)
    for j, g in enumerate(gains):
        cv2.convertScaleAbs(frames[j], dst=out[j], alpha=float(g))
    return out


class Assembler:
    """Joins a tour's shots one at a time (so the tour streams into its encoder while later shots
    still render). `add(frames)` takes shot i's rendered frames, (tour.render_frames(i), H, W, 3)
    uint8 (its own frames then the cross-fade handle), and returns the tour frames it completes:
    shot i's own frames with the transitions applied. Holds only the pending handle between calls.
    """

    def __init__(self, tour: Tour):
        self.tour = tour
        self.next_index = 0
        self._handle: np.ndarray | None = None

    def add(self, frames: np.ndarray) -> np.ndarray:
        tour, i = self.tour, self.next_index
        n_shots = len(tour.shots)
        if i >= n_shots:
            raise ValueError("more shots than the tour has")
        kind, k = tour.transition.kind, tour.transition.frames(tour.fps)
        own_n, want = tour.shot_frames(i), tour.render_frames(i)
        if frames.shape[0] != want:
            raise StudioError(f"Shot {i + 1} has {frames.shape[0]} frames, the tour needs {want}.")
        own = frames[:own_n].copy()
        if kind == "crossfade" and i > 0 and k:
            own[:k] = crossfade(self._handle, own[:k])
        if kind == "dip" and k:
            fade_out, fade_in = dip_gains(k)
            if i > 0:
                own[:k] = _gain(own[:k], fade_in)
            if i < n_shots - 1:
                own[own_n - k:] = _gain(own[own_n - k:], fade_out)
        self._handle = frames[own_n:].copy() if tour.handle_frames(i) else None
        self.next_index += 1
        return own


def assemble(tour: Tour, shots: Iterator[np.ndarray]) -> Iterator[np.ndarray]:
    """Yield the tour's frames in order, exactly tour.num_frames of (H, W, 3) uint8, from each
    shot's rendered frames (see `Assembler`)."""
    asm = Assembler(tour)
    for frames in shots:
        yield from asm.add(frames)
    if asm.next_index != len(tour.shots):
        raise ValueError(f"{asm.next_index} shots for a tour of {len(tour.shots)}")


# --------------------------------------------------------------------------------- running

@dataclass
class TourEvent:
    """Something a tour job finished. kind: "started" | "shot" | "tour" | "done".

    "shot": `index` (0-based) of `total`, `video` its shot-NN.mp4 (tour fps and size, with the
    handle), `skipped` True when a resume found it already done. "tour": `video` tour.mp4 and
    `vertical` tour-vertical.mp4 (or None), `seconds`, `num_frames`. "done": the run is complete.
    """

    kind: str
    run_id: str
    index: int | None = None
    total: int = 0
    video: Path | None = None
    vertical: Path | None = None
    skipped: bool = False
    seconds: float | None = None
    num_frames: int | None = None
    message: str = ""


def _fingerprint(tour: Tour, index: int, photo_sha: str) -> str:
    """sha256 of everything that decides shot `index`'s frames."""
    shot = tour.shots[index].to_dict()
    shot.pop("photo")
    key = {"shot": shot, "photo": photo_sha, "fps": tour.fps, "size": [tour.width, tour.height],
           "frames": tour.render_frames(index), "model": tour.model, "chain": tour.chain,
           "roles": dict(tour.roles), "params": dict(tour.params), "negative_prompt": tour.negative_prompt,
           "seed": tour.seed + index}
    return hashlib.sha256(json.dumps(key, sort_keys=True, default=str).encode()).hexdigest()


def _load_photos(studio: "Studio", tour: Tour) -> list[tuple[bytes, str]]:
    """(file bytes, PIL format) of every shot's photo, each decoded once to check it (one clear
    line for a bad one); the pixels are decoded again when the shot renders, so a long tour of
    big photos never holds them all."""
    from PIL import Image

    out = []
    for i, s in enumerate(tour.shots):
        if not s.photo.is_file():
            raise InputError(f"Shot {i + 1}: no such photo {s.photo}.")
        try:
            studio.load_image(s.photo)
        except InputError as exc:
            raise InputError(f"Shot {i + 1}: {exc}") from None
        data = s.photo.read_bytes()
        try:
            with Image.open(s.photo) as im:
                fmt = im.format or "PNG"
        except Exception:  # load_image accepted it; keep it under a neutral name
            fmt = ""
        out.append((data, fmt))
    return out


def iter_tour(studio: "Studio", tour: Tour | None = None, progress: Progress | None = None, *,
              resume: str | None = None, user: str | None = None) -> Iterator[TourEvent]:
    """Render `tour` shot by shot into a new run folder (or finish the run `resume`, whose
    tour.json gives the tour when `tour` is None), yielding a TourEvent after each step.

    Stops between frames when `progress` is cancelled; the run is then marked cancelled and
    keeps every finished shot, so `resume=run_id` completes it. Bad input raises InputError
    before any run folder is made.
    """
    from .runs import Run, atomic_write_bytes, sha256_bytes  # noqa: F811 (the run-time import)

    prog = as_progress(progress)
    if resume:
        run = Run.open(studio.runs_root(user), resume, min_free_bytes=studio.settings.min_free_bytes,
                       free_space_fn=studio.settings.free_space_fn)
        if run.data.get("kind") != "tour" or not (run.dir / TOUR_FILE).is_file():
            raise InputError(f"Run {resume} is not a tour.")
        saved = Tour.from_dict(json.loads((run.dir / TOUR_FILE).read_text(encoding="utf-8")), base=run.dir)
        tour = saved if tour is None else tour
    elif tour is None:
        raise InputError("No tour to run.")
    generator = studio.generator(tour.model)
    studio._require_available(tour.model)
    roles = {**_default_roles(), **dict(tour.roles)}
    stages = studio._stages_for([tour.chain], roles) if tour.chain != "none" else {}
    photos = _load_photos(studio, tour)

    if not resume:
        run = Run.create(studio.runs_root(user), kind="tour", min_free_bytes=studio.settings.min_free_bytes,
                         free_space_fn=studio.settings.free_space_fn,
                         params={"model": tour.model, "chain": tour.chain, "fps": tour.fps,
                                 "size": [tour.width, tour.height], "transition": tour.transition.kind,
                                 "shots": len(tour.shots), "device": studio.device},
                         seeds={"generator": tour.seed})
    n = len(tour.shots)
    with run:
        if run.status != "running":
            run.update(status="running", error=None)
        yield TourEvent("started", run.id, total=n, message=f"tour {run.id}: {n} shot(s), "
                                                           f"{tour.duration:.2f} s at {tour.fps} fps")
        # The photos travel with the run, so a resume never depends on an upload's temp file.
        local_shots = []
        shas = []
        for i, ((data, fmt), shot) in enumerate(zip(photos, tour.shots)):
            dest = run.dir / PHOTO_FILE.format(index=i, ext=FORMAT_EXTENSIONS.get(fmt.upper(), ".img"))
            if not (dest.is_file() and dest.read_bytes() == data):
                atomic_write_bytes(dest, data)
            shas.append(sha256_bytes(data))
            local_shots.append(replace(shot, photo=Path(dest.name)))
        local = replace(tour, shots=tuple(local_shots))
        atomic_write_bytes(run.dir / TOUR_FILE, json.dumps(local.to_dict(), indent=2).encode("utf-8"))
        state = run.data.get("tour") or {}
        done = dict(state.get("shots") or {})
        run.update(tour={"duration": tour.duration, "num_frames": tour.num_frames, "shots": done})

        from .video import Mp4Stream, estimate_bytes, write_mp4

        est = estimate_bytes(Clip(np.zeros((1, tour.height, tour.width, 3), np.uint8), tour.fps), "mp4")
        run.check_space((est - 1024**2) * 3 * tour.num_frames // 2 + est, "the tour's shots and video")
        video, vpath = run.dir / TOUR_MP4, run.dir / TOUR_VERTICAL_MP4
        asm = Assembler(tour)
        t_join = 0.0
        # tour.mp4 is encoded while the shots render: each finished shot's frames go straight in.
        with contextlib.ExitStack() as stack:
            main = stack.enter_context(Mp4Stream(video, tour.fps, crf=TOUR_CRF, preset=TOUR_PRESET))
            vert = stack.enter_context(Mp4Stream(vpath, tour.fps, crf=TOUR_CRF, preset=TOUR_PRESET)) \
                if tour.vertical else None
            for i, shot in enumerate(tour.shots):
                sub = prog.sub(i / n, (i + 1) / n)
                fp = _fingerprint(tour, i, shas[i])
                path = run.dir / SHOT_MP4.format(index=i)
                rec = done.get(str(i)) or {}
                if rec.get("fingerprint") == fp and path.is_file():
                    # Kept from an earlier, interrupted run of this tour: joined from its file.
                    frames = _read_shot(path, tour.render_frames(i))
                    event = TourEvent("shot", run.id, i, n, path, skipped=True, seconds=shot.seconds,
                                      num_frames=frames.shape[0], message=f"shot {i + 1}/{n} kept from before")
                else:
                    t0 = time.perf_counter()
                    image = studio.load_image(run.dir / local_shots[i].photo)
                    clip, info = _render_shot(studio, generator, tour, i, image, stages, roles, sub.sub(0.0, 0.7))
                    del image
                    written = write_mp4(clip, path, crf=SHOT_CRF, preset=SHOT_PRESET, progress=sub.sub(0.7, 0.8))
                    frames = clip.frames
                    done[str(i)] = {"file": path.name, "fingerprint": fp, "frames": written.num_frames,
                                    "seconds": shot.seconds, "move": shot.move, "seed": tour.seed + i,
                                    "render_s": time.perf_counter() - t0, "info": _jsonable(info)}
                    with run._lock:
                        run._record_file(path)
                    run.update(tour={"shots": done})
                    event = TourEvent("shot", run.id, i, n, path, seconds=shot.seconds,
                                      num_frames=written.num_frames, message=f"shot {i + 1}/{n} ready")
                t0 = time.perf_counter()
                out = asm.add(frames)
                del frames
                join = sub.sub(0.8, 1.0)
                for j, frame in enumerate(out):
                    main.append(frame)
                    if vert is not None:
                        vert.append(np.ascontiguousarray(vertical_crop(frame)))
                    if j % 10 == 9:
                        join((j + 1) / len(out), f"shot {i + 1}/{n}: encoding the tour")
                t_join += time.perf_counter() - t0
                yield event
        t0 = time.perf_counter()
        with run._lock:
            run._record_file(video)
            if tour.vertical:
                run._record_file(vpath)
        if not tour.vertical and vpath.exists():
            vpath.unlink()  # an earlier run of this tour asked for it; this one did not
        run.add_timing("encode_tour", t_join + time.perf_counter() - t0)
        vertical = vpath if tour.vertical else None
        run.update(tour={"file": video.name, "vertical_file": vertical.name if vertical else None})
        prog(1.0, "tour ready")
        yield TourEvent("tour", run.id, total=n, video=video, vertical=vertical, seconds=tour.duration,
                        num_frames=tour.num_frames, message=f"tour ready: {tour.duration:.2f} s")
        run.finish()
        yield TourEvent("done", run.id, total=n, video=video, vertical=vertical, seconds=tour.duration,
                        num_frames=tour.num_frames, message="done")


def _default_roles() -> dict[str, str]:
    from .postprocess.chains import DEFAULT_ROLES

    return dict(DEFAULT_ROLES)


def _render_shot(studio: "Studio", generator: Any, tour: Tour, index: int, image: np.ndarray,
                 stages: Mapping[str, Any], roles: Mapping[str, str], prog: Progress) -> tuple[Clip, dict[str, Any]]:
    """Shot `index` as a Clip of tour.render_frames(index) frames at the tour's fps and size.

    Ken Burns renders natively at the tour's size, fps and frame count. An AI generator gets a
    camera path of round(render seconds * its fps) frames at its own size (a long shot, made of
    chained segments by the generator), then the chain runs at the model's size, frame
    interpolation brings the clip to the tour's fps, and it is cropped/resized to 16:9.
    """
    from .generators.base import GenerateRequest
    from .params import resolve_params
    from .postprocess import chains as chainlib

    shot = tour.shots[index]
    want = tour.render_frames(index)
    native = not generator.is_ai and generator.name == "kenburns"
    entry = studio.registry.get(tour.model)
    if native:
        given = {**dict(tour.params), "width": tour.width, "height": tour.height, "fps": float(tour.fps),
                 "num_frames": 0}
        n_frames, aspect = want, tour.width / tour.height
    else:
        given = dict(tour.params)
        n_frames = max(2, int(round(want / tour.fps * generator.fps)))
        aspect = generator.width / generator.height
    params = resolve_params(generator.param_specs(), given, entry.defaults)
    path = shot.camera(n_frames, aspect)
    request = GenerateRequest(image, path, shot.prompt, tour.negative_prompt, tour.seed + index, params)
    gen_prog = prog.sub(0.0, 0.6 if tour.chain != "none" else 0.9)
    with studio._device_lock:
        gen_prog(0.0, f"shot {index + 1}: {entry.label}")
        result = studio._with_oom(lambda: generator.generate(request, gen_prog),
                                  task=f"generating shot {index + 1} with {entry.label}")
    clip = result.clip
    info: dict[str, Any] = {"generator": dict(result.info), "requested_frames": n_frames,
                            "native_frames": clip.num_frames, "native_fps": clip.fps,
                            "native_size": [clip.width, clip.height], "warnings": []}
    if clip.num_frames != n_frames:
        # A generator without segment chaining returns its fixed clip: the shot is then that clip
        # spread over the shot's length, and the run says so.
        info["warnings"].append(f"{entry.label} made {clip.num_frames} frames of the {n_frames} asked for; "
                                f"the shot stretches them over {want / tour.fps:g} s.")
    if tour.chain != "none":
        chain_prog = prog.sub(0.6, 0.9)
        with studio._device_lock:
            res = studio._with_oom(lambda: chainlib.run_chain(
                clip, chainlib.parse_chain(tour.chain, roles, extra=tuple(stages)), None, chain_prog,
                stages_by_name=stages), task=f"post-processing shot {index + 1}")
        clip = res.clip
        info["chain"] = [r.to_dict() for r in res.records]
    if abs(clip.fps - tour.fps) > 1e-6:
        clip, how = _retime(clip, tour.fps)
        info["retime"] = how
    frames = fit_count(clip.frames, want)
    frames = fit_frames(frames, tour.width, tour.height)
    prog(1.0, f"shot {index + 1} rendered")
    return Clip(np.ascontiguousarray(frames), float(tour.fps)), info


def _retime(clip: Clip, fps: float) -> tuple[Clip, str]:
    """The clip at `fps` by optical-flow frame interpolation (core.postprocess.interpolate).

    Where that stage is not part of this installation, frames are repeated to the new rate
    instead and the run records it, since a tour must still come out at its own frame rate."""
    try:
        from .postprocess.interpolate import retime
    except ImportError:
        n = max(2, int(round(clip.num_frames * fps / clip.fps)))
        idx = np.minimum((np.arange(n) * clip.fps / fps).astype(int), clip.num_frames - 1)
        return Clip(np.ascontiguousarray(clip.frames[idx]), float(fps)), "repeat (no interpolation stage installed)"
    return retime(clip, fps, method="dis"), "dis"


def _read_shot(path: Path, n: int) -> np.ndarray:
    from .video import read_video

    clip = read_video(path, max_pixels=None)  # our own shot file, bounded when it was made
    if clip.num_frames != n:
        raise StudioError(f"{path.name} holds {clip.num_frames} frames, {n} expected; render the tour again.")
    return clip.frames


def _jsonable(obj: Any) -> Any:
    """JSON-ready copy of a generator's info (the service's one conversion)."""
    from .service import _jsonable as to_json

    return to_json(obj)
