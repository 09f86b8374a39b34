"""Camera presets: named real-estate moves, each one of CamI2V's demo trajectories in closed form.

Move vocabulary. Presets use real-estate names; each maps to one of CamI2V's demo trajectories
(whose naming differs: CamI2V's "pan" is a sideways translation, its "look" is a rotation):

    preset id              CamI2V name            full trajectory (amount 1): last frame vs frame 0
    push-in                zoom in                centre moves to (0, 0, +1)
    pull-out               zoom out               centre moves to (0, 0, -1)
    slide-left             pan left               centre moves to (-2, 0, 0)
    slide-right            pan right              centre moves to (+1, 0, 0)
    pan-left               look left              yaw 90 degrees, forward ends at -x
    pan-right              look right             yaw 90 degrees, forward ends at +x
    tilt-up                look up                pitch 90 degrees, forward ends at -y
    tilt-down              look down              pitch 90 degrees, forward ends at +y
    orbit-left             orbit left             90 degree arc around (0, 0, 3): ends at (-3, 0, 3) facing +x
    orbit-right            orbit right            the mirror image: ends at (+3, 0, 3) facing -x
    crane-up               pan up                 rises to (0, -1, 0) aiming at (0, 0, 10) (5.7 deg down)
    crane-down             pan down               sinks to (0, +1, 0) aiming at (0, 0, 10)
    arc-up                 orbit up               45 degree arc upwards around (0, 0, 2), facing it
    roll-clockwise         rotate clockwise       roll 90 degrees; the picture turns clockwise
    roll-counterclockwise  rotate anti-clockwise  roll 90 degrees the other way
    static                 stationary             no motion

CamI2V's demo files are keyframe lists; these are the same curves in closed form (within 1e-6 of
the files over the whole trajectory). One deliberate difference: CamI2V's "look up/down" files
end with a keyframe that jumps by 180 degrees; ours continue smoothly to 90 degrees.

"Move amount" is the fraction of that full trajectory reached at the last frame (CamI2V's
"trace extract ratio"; see `cami2v_ratio_to_amount` for the exact relation) and "distance"
multiplies every translation (CamI2V's "trace scale factor").
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from ..errors import InputError
from .geometry import (DEFAULT_ASPECT, DEFAULT_FOV_DEG, _check_float, check_amount, check_distance, check_num_frames,
                       pose_matrix, resolve_intrinsics, rot_x, rot_y, rot_z)
from .path import CameraPath


def cami2v_ratio_to_amount(ratio: float, num_frames: int = 16) -> float:
    """The move amount equivalent to CamI2V's "trace extract ratio".

    The CamI2V demo resamples the full trajectory to round(T / ratio) frames and keeps the first
    T, so its last frame sits at (T - 1) / (round(T / ratio) - 1) of the trajectory (0.094 for
    the UI default 0.1 and 16 frames).
    """
    ratio = _check_float(ratio, "Trace extract ratio", 1e-3, 1.0)
    n = check_num_frames(num_frames)
    total = max(int(round(n / ratio)), n)
    return (n - 1) / (total - 1)


# ---------------------------------------------------------------------------------------------
# Presets


Trajectory = Callable[[np.ndarray], np.ndarray]  # fractions s (N,) -> relative c2w (N, 4, 4)


def _translate(direction: tuple[float, float, float]) -> Trajectory:
    d = np.asarray(direction, dtype=np.float64)

    def trajectory(s: np.ndarray) -> np.ndarray:
        return pose_matrix(np.broadcast_to(np.eye(3), s.shape + (3, 3)), s[:, None] * d)

    return trajectory


def _rotate(axis_fn: Callable[[np.ndarray], np.ndarray], full_deg: float) -> Trajectory:
    def trajectory(s: np.ndarray) -> np.ndarray:
        return pose_matrix(axis_fn(full_deg * s), np.zeros(s.shape + (3,)))

    return trajectory


def _orbit_sideways(sign: float) -> Trajectory:
    # 90 degree arc of radius 3 around (0, 0, 3); the camera keeps facing the centre.
    def trajectory(s: np.ndarray) -> np.ndarray:
        phi = np.radians(90.0 * s)
        centre = np.stack([sign * 3.0 * np.sin(phi), np.zeros_like(s), 3.0 - 3.0 * np.cos(phi)], -1)
        return pose_matrix(rot_y(-sign * 90.0 * s), centre)

    return trajectory


def _orbit_up(s: np.ndarray) -> np.ndarray:
    # 45 degree arc of radius 2 upwards around (0, 0, 2), pitching down to keep facing it.
    phi = np.radians(45.0 * s)
    centre = np.stack([np.zeros_like(s), -2.0 * np.sin(phi), 2.0 - 2.0 * np.cos(phi)], -1)
    return pose_matrix(rot_x(-45.0 * s), centre)


def _crane(sign: float) -> Trajectory:
    # Rise (sign -1) or sink by 1 unit, aiming at the point 10 units ahead of the start.
    def trajectory(s: np.ndarray) -> np.ndarray:
        centre = np.stack([np.zeros_like(s), sign * s, np.zeros_like(s)], -1)
        return pose_matrix(rot_x(np.degrees(np.arctan2(sign * s, 10.0))), centre)

    return trajectory


def _static(s: np.ndarray) -> np.ndarray:
    return pose_matrix(np.broadcast_to(np.eye(3), s.shape + (3, 3)), np.zeros(s.shape + (3,)))


@dataclass(frozen=True)
class PresetSpec:
    """A named camera move.

    trajectory(s) gives relative c2w poses (N, 4, 4) at fractions s (N,) of the full CamI2V
    trajectory (s = 1 is its last keyframe).
    """

    id: str
    label: str
    description: str
    cami2v_name: str
    default_amount: float
    trajectory: Trajectory = field(repr=False, compare=False)
    default_distance: float = 1.0

    def to_dict(self) -> dict[str, Any]:
        """What the UI needs to list the preset (JSON-ready)."""
        return {"id": self.id, "label": self.label, "description": self.description,
                "cami2v_name": self.cami2v_name, "default_amount": self.default_amount,
                "default_distance": self.default_distance}


PRESETS: dict[str, PresetSpec] = {
    p.id: p
    for p in (
        PresetSpec("push-in", "Push in", "The camera glides straight forward into the room.",
                   "zoom in", 0.2, _translate((0.0, 0.0, 1.0))),
        PresetSpec("pull-out", "Pull out", "The camera backs away to reveal more of the room.",
                   "zoom out", 0.2, _translate((0.0, 0.0, -1.0))),
        PresetSpec("slide-left", "Slide left",
                   "The camera slides sideways to the left (truck), showing depth parallax.",
                   "pan left", 0.1, _translate((-2.0, 0.0, 0.0))),
        PresetSpec("slide-right", "Slide right",
                   "The camera slides sideways to the right (truck), showing depth parallax.",
                   "pan right", 0.2, _translate((1.0, 0.0, 0.0))),
        PresetSpec("pan-left", "Pan left", "The camera stays in place and turns to the left.",
                   "look left", 0.3, _rotate(rot_y, -90.0)),
        PresetSpec("pan-right", "Pan right", "The camera stays in place and turns to the right.",
                   "look right", 0.3, _rotate(rot_y, 90.0)),
        PresetSpec("tilt-up", "Tilt up", "The camera stays in place and tilts up towards the ceiling.",
                   "look up", 0.2, _rotate(rot_x, 90.0)),
        PresetSpec("tilt-down", "Tilt down", "The camera stays in place and tilts down towards the floor.",
                   "look down", 0.2, _rotate(rot_x, -90.0)),
        PresetSpec("orbit-left", "Orbit left",
                   "The camera arcs to the left around a point ahead, turning to keep it in view.",
                   "orbit left", 0.1, _orbit_sideways(-1.0)),
        PresetSpec("orbit-right", "Orbit right",
                   "The camera arcs to the right around a point ahead, turning to keep it in view.",
                   "orbit right", 0.1, _orbit_sideways(1.0)),
        PresetSpec("crane-up", "Crane up", "The camera rises (boom up) with a slight downward tilt.",
                   "pan up", 0.2, _crane(-1.0)),
        PresetSpec("static", "Static", "A locked-off tripod shot: the camera does not move.",
                   "stationary", 0.0, _static),
        PresetSpec("crane-down", "Crane down", "The camera sinks (boom down) with a slight upward tilt.",
                   "pan down", 0.2, _crane(1.0)),
        PresetSpec("arc-up", "Arc up",
                   "The camera rises over a point ahead while tilting down to keep it in view.",
                   "orbit up", 0.2, _orbit_up),
        PresetSpec("roll-clockwise", "Roll clockwise",
                   "The camera rolls about its axis; the picture turns clockwise.",
                   "rotate clockwise", 0.1, _rotate(rot_z, -90.0)),
        PresetSpec("roll-counterclockwise", "Roll counter-clockwise",
                   "The camera rolls about its axis; the picture turns counter-clockwise.",
                   "rotate anti-clockwise", 0.1, _rotate(rot_z, 90.0)),
    )
}

CAMI2V_TO_PRESET: dict[str, str] = {p.cami2v_name: p.id for p in PRESETS.values()}

EASINGS = ("linear", "ease-in-out")


def _ease(t: np.ndarray, easing: str) -> np.ndarray:
    if easing == "linear":
        return t
    if easing == "ease-in-out":
        return t * t * (3.0 - 2.0 * t)
    raise InputError(f"Easing must be one of {', '.join(EASINGS)}; got {easing!r}.")


def preset_path(
    preset_id: str,
    num_frames: int = 16,
    amount: float | None = None,
    distance: float | None = None,
    aspect: float = DEFAULT_ASPECT,
    fov_deg: float = DEFAULT_FOV_DEG,
    easing: str = "linear",
    intrinsics: Any = None,
) -> CameraPath:
    """The preset's move over `num_frames` frames.

    Frame j sits at fraction amount * e(j / (T - 1)) of the full CamI2V trajectory (e is the
    identity for "linear", like CamI2V's uniform resampling, or smoothstep for "ease-in-out"),
    with translations multiplied by `distance`. amount/distance default to the preset's values.
    Intrinsics: `default_intrinsics(aspect, fov_deg)` unless given (normalised (4,)).
    """
    spec = PRESETS.get(preset_id)
    if spec is None:
        raise InputError(f"Unknown camera preset {preset_id!r}; choose one of {', '.join(PRESETS)}.")
    n = check_num_frames(num_frames)
    amount = check_amount(spec.default_amount if amount is None else amount)
    distance = check_distance(spec.default_distance if distance is None else distance)
    intr = resolve_intrinsics(intrinsics, aspect, fov_deg)
    s = amount * _ease(np.linspace(0.0, 1.0, n), easing)
    c2w = np.array(spec.trajectory(s), dtype=np.float64)
    c2w[:, :3, 3] *= distance
    return CameraPath.from_c2w(c2w, intr, preset_id)
