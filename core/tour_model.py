"""A property tour's plan: shots (photo, move, length, prompt), transitions and output settings,
validated once; `make_tour`, the size parser and the shots-file reader build it."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence


from . import camera as cam
from .contracts import chain_name
from .errors import InputError


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
        object.__setattr__(self, "chain", chain_name(self.chain or "none"))
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


def vertical_size(width: int, height: int) -> tuple[int, int]:
    """The 9:16 column cut from a width x height master: (the largest even width not above
    9/16 of the height, height). 1280x720 -> 404x720; 1920x1080 -> 606x1080."""
    w = 2 * int(height * 9 / 32)
    if w > width:
        raise InputError(f"A {width}x{height} frame is too narrow for a 9:16 crop.")
    return w, height
