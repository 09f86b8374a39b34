"""Shot length and output frame rate for a walkthrough job, and resuming a partial long shot.

The service turns the Create tab's "Length (seconds)" and "Output fps" into a `LengthPlan`:

* a generator that renders any length natively (Ken Burns, `Generator.any_length`) renders
  round(seconds * output fps) frames at the output fps directly;
* a fixed-length AI generator makes round(seconds * its native fps) frames, in autoregressive
  segments (core.generators.segments), and the clip is then retimed to the output fps by frame
  interpolation (`core.postprocess.interpolate.retime`, method "dis").

A long shot's finished segments live in its run folder, so a cancelled or failed run is kept as
"partial" and `Studio.resume(run_id)` rebuilds the same request from run.json (`resume_request`)
and continues it in the same folder.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Optional

from .clip import Clip
from .errors import InputError, StudioError, Unavailable

MIN_SECONDS = 0.2
MAX_SECONDS = 120.0
SHOT_CAMERA = "camera.json"  # under <run>/segments/: the shot's N-pose path, for resume


@dataclass(frozen=True)
class LengthPlan:
    """num_frames: frames the generator makes; native_fps: their rate; output_fps: the delivered
    rate (equal to native_fps unless the clip is retimed); overlap: segment overlap in frames."""

    seconds: float
    num_frames: int
    native_fps: float
    output_fps: float
    overlap: int = 1

    @property
    def retime(self) -> bool:
        return abs(self.output_fps - self.native_fps) > 1e-6

    def to_dict(self) -> dict[str, Any]:
        return {"seconds": self.seconds, "num_frames": self.num_frames, "native_fps": self.native_fps,
                "output_fps": self.output_fps, "overlap": self.overlap, "retimed": self.retime}


def _check_number(value: Any, what: str, low: float, high: float) -> float:
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise InputError(f"{what} must be a number, got {value!r}.") from None
    if not low <= v <= high:
        raise InputError(f"{what} must be between {low:g} and {high:g}, got {v:g}.")
    return v


def plan_length(generator: Any, params: Mapping[str, Any], seconds: Optional[float],
                output_fps: Optional[float] = None, overlap: int = 1) -> Optional[LengthPlan]:
    """The frame count and rates of a `seconds`-long shot; None when no length was asked for
    (the generator's own frame count, as before). `params` are the resolved generator params."""
    if seconds is None:
        if output_fps is not None:
            raise InputError("An output frame rate needs a length in seconds too.")
        return None
    seconds = _check_number(seconds, "Length (seconds)", MIN_SECONDS, MAX_SECONDS)
    try:
        overlap = int(overlap)
    except (TypeError, ValueError):
        raise InputError(f"Segment overlap must be a whole number of frames, got {overlap!r}.") from None
    native = float(params.get("fps", generator.fps)) if isinstance(params, Mapping) else float(generator.fps)
    out = native if output_fps is None else _check_number(output_fps, "Output fps", 1.0, 120.0)
    if getattr(generator, "any_length", False):
        native = out  # renders at the output rate itself
    n = max(2, int(round(seconds * native)))
    return LengthPlan(seconds, n, native, out, overlap)


def generator_params(generator: Any, params: Mapping[str, Any], plan: Optional[LengthPlan]) -> dict[str, Any]:
    """`params` with the frame rate a natively any-length generator must render at."""
    out = dict(params)
    if plan is not None and getattr(generator, "any_length", False) and "fps" in out:
        out["fps"] = plan.output_fps
    return out


def to_output_fps(clip: Clip, plan: Optional[LengthPlan]) -> Clip:
    """The clip retimed to the plan's output fps by frame interpolation (unchanged when equal)."""
    if plan is None or abs(clip.fps - plan.output_fps) <= 1e-6:
        return clip
    try:
        from .postprocess.interpolate import retime
    except ImportError:
        raise Unavailable(f"Output fps {plan.output_fps:g} needs frame interpolation "
                          "(core.postprocess.interpolate), which this installation lacks; set Output fps "
                          f"to the model's {clip.fps:g}.") from None
    out = retime(clip, plan.output_fps, method="dis")
    if not isinstance(out, Clip):
        raise StudioError("Frame interpolation returned no clip.")
    return out


def save_shot_camera(run_dir: Path, path: Any) -> None:
    """Keep the shot's N-pose camera path beside its segments (camera.json of the run may be
    rewritten for the retimed clip; resume needs the path the segments were made from)."""
    from .fileio import atomic_write_json
    from .generators.segments import SEGMENTS_DIR

    d = Path(run_dir) / SEGMENTS_DIR
    d.mkdir(parents=True, exist_ok=True)
    atomic_write_json(d / SHOT_CAMERA, path.to_dict())


def resume_fields(run: Any) -> dict[str, Any]:
    """JobRequest fields (besides the image) that continue partial run `run` exactly as it started.

    Raises InputError when the run is complete or has no finished segment to continue from.
    """
    from .camera import CameraPath
    from .generators.segments import SEGMENTS_DIR, finished_segments

    data = run.data
    if data.get("status") == "complete":
        raise InputError(f"Run {run.id} is complete; there is nothing to resume.")
    params = data.get("params") or {}
    length = params.get("length")
    cam_file = Path(run.dir) / SEGMENTS_DIR / SHOT_CAMERA
    if not length or not cam_file.is_file() or finished_segments(run.dir) == 0:
        raise InputError(f"Run {run.id} has no finished segment to resume from; start it again instead.")
    path = CameraPath.from_json(cam_file.read_text(encoding="utf-8"))
    return dict(
        camera=path, model=params["model"], prompt=params.get("prompt", ""),
        negative_prompt=params.get("negative_prompt", ""), seed=int((data.get("seeds") or {}).get("generator", 0)),
        params=dict(params.get("generator_params") or {}), chains=tuple(params.get("chains") or ("none",)),
        roles=dict(params.get("roles") or {}), stage_params=dict(params.get("stage_params") or {}),
        seconds=float(length["seconds"]),
        output_fps=float(length["output_fps"]) if length.get("retimed") else None,
        overlap=int(length.get("overlap", 1)), resume_run=run.id,
        save_frames=bool(length.get("save_frames", False)), save_gif=bool(length.get("save_gif", False)),
    )
