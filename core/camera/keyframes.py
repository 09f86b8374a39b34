"""Keyframed and click-to-add (waypoint) camera paths, and the path surgery long shots need
(extending a path past its end, re-basing a window of it on another frame).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import numpy as np

from ..errors import InputError
from .geometry import (DEFAULT_ASPECT, DEFAULT_FOV_DEG, MAX_TRANSLATION, MIN_FRAMES, _check_float, _extend,
                       _interpolate_poses, _timing, check_num_frames, check_points, look_direction_ypr, pose_matrix,
                       resolve_intrinsics, rotation_angle_deg, rotation_from_ypr, ypr_from_rotation)
from .path import CameraPath


# ---------------------------------------------------------------------------------------------
# Keyframes


@dataclass(frozen=True)
class Keyframe:
    """A key pose of the camera relative to the photo's camera (frame 0).

    time:     in [0, 1] over the clip.
    position: camera centre (3,) in the photo camera's axes (x right, y down, z forward).
    yaw, pitch, roll: degrees, see `rotation_from_ypr` (yaw > 0 turns right, pitch > 0 looks up,
              roll > 0 rolls the camera clockwise).
    """

    time: float
    position: tuple[float, float, float] = (0.0, 0.0, 0.0)
    yaw: float = 0.0
    pitch: float = 0.0
    roll: float = 0.0

    def c2w(self) -> np.ndarray:
        """(4, 4) camera-to-world (frame 0 coordinates)."""
        rotation = rotation_from_ypr(self.yaw, self.pitch, self.roll)
        return pose_matrix(rotation, np.asarray(self.position, dtype=np.float64))

    @classmethod
    def from_c2w(cls, time: float, c2w: np.ndarray) -> "Keyframe":
        """From a full pose (4, 4) or (3, 4) camera-to-world in frame 0 coordinates."""
        c2w = np.asarray(c2w, dtype=np.float64)
        yaw, pitch, roll = ypr_from_rotation(c2w[:3, :3])
        x, y, z = (float(v) for v in c2w[:3, 3])
        return cls(float(time), (x, y, z), yaw, pitch, roll)

    def to_dict(self) -> dict[str, Any]:
        return {"time": self.time, "position": list(self.position), "yaw": self.yaw,
                "pitch": self.pitch, "roll": self.roll}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "Keyframe":
        try:
            x, y, z = (float(v) for v in data.get("position", (0.0, 0.0, 0.0)))
            return cls(float(data["time"]), (x, y, z), float(data.get("yaw", 0.0)),
                       float(data.get("pitch", 0.0)), float(data.get("roll", 0.0)))
        except (KeyError, TypeError, ValueError) as exc:
            raise InputError(f"Keyframe {dict(data)!r} is malformed ({exc}).") from None


def _check_keyframes(keyframes: Sequence[Keyframe]) -> list[Keyframe]:
    kfs = list(keyframes)
    if not kfs:
        raise InputError("A keyframe path needs at least one keyframe.")
    for k, kf in enumerate(kfs, start=1):
        try:
            nums = [float(v) for v in (kf.time, *kf.position, kf.yaw, kf.pitch, kf.roll)]
            ok = len(kf.position) == 3 and all(math.isfinite(v) for v in nums)
        except (TypeError, ValueError):
            ok = False
        if not ok:
            raise InputError(f"Keyframe {k}: time, position (x, y, z) and angles must be finite numbers.")
        if not 0.0 <= kf.time <= 1.0:
            raise InputError(f"Keyframe {k}: time must be in [0, 1], got {kf.time:g}.")
        if np.linalg.norm(kf.position) > MAX_TRANSLATION:
            raise InputError(f"Keyframe {k}: position is more than {MAX_TRANSLATION:g} units away.")
    kfs.sort(key=lambda kf: kf.time)
    for a, b in zip(kfs, kfs[1:]):
        if b.time - a.time < 1e-6:
            raise InputError(f"Two keyframes share the time {a.time:g}; times must differ.")
    return kfs


def keyframe_path(
    keyframes: Sequence[Keyframe],
    num_frames: int = 16,
    aspect: float = DEFAULT_ASPECT,
    fov_deg: float = DEFAULT_FOV_DEG,
    ease: bool = True,
    name: str = "keyframes",
    intrinsics: Any = None,
) -> CameraPath:
    """Interpolate keyframes (any order; sorted by time) into a path.

    Shape: Catmull-Rom through the positions, SLERP between successive rotations (the shorter
    arc, so successive keyframes must differ by less than 180 degrees). Timing: a monotone cubic
    through the keyframe times, at rest at the first and last keyframe when `ease` (otherwise
    constant speed there). Before the first / after the last keyframe the pose is held.
    Frame 0 is the pose at time 0: keep the first keyframe at time 0 with the identity pose for
    a path that starts at the photo.
    """
    kfs = _check_keyframes(keyframes)
    n = check_num_frames(num_frames)
    intr = resolve_intrinsics(intrinsics, aspect, fov_deg)
    c2w_keys = np.stack([kf.c2w() for kf in kfs])
    for k in range(len(kfs) - 1):
        step = float(rotation_angle_deg(c2w_keys[k, :3, :3].T @ c2w_keys[k + 1, :3, :3]))
        if step > 179.0:
            raise InputError(
                f"Keyframes at times {kfs[k].time:g} and {kfs[k + 1].time:g} differ by {step:.0f} degrees "
                "of rotation; add a keyframe in between (turns take the shorter way)."
            )
    times = np.array([kf.time for kf in kfs])
    s = _timing(times, np.linspace(0.0, 1.0, n), ease)
    return CameraPath.from_c2w(_interpolate_poses(c2w_keys, s), intr, name)


def keyframes_from_path(path: CameraPath, n: int = 5) -> list[Keyframe]:
    """`n` keyframes (2 <= n <= T) sampled evenly from a path, relative to its frame 0; used to
    pre-fill the keyframe table from a preset. With `ease=False`, `keyframe_path` of these
    reproduces straight constant-speed moves and pure rotations exactly."""
    n = int(n)
    if not 2 <= n <= path.num_frames:
        raise InputError(f"Number of keyframes must be between 2 and {path.num_frames}, got {n}.")
    idx = np.round(np.linspace(0, path.num_frames - 1, n)).astype(int)
    rel = path.relative_c2w(0)
    return [Keyframe.from_c2w(i / (path.num_frames - 1), rel[i]) for i in idx]


# ---------------------------------------------------------------------------------------------
# Click-to-add waypoints


def waypoint_path(
    points: Sequence[Sequence[float]],
    num_frames: int = 16,
    depth: float = 1.0,
    aspect: float = DEFAULT_ASPECT,
    fov_deg: float = DEFAULT_FOV_DEG,
    ease: bool = True,
    name: str = "waypoints",
    intrinsics: Any = None,
) -> CameraPath:
    """A walk through points clicked on the photo.

    Model: each click (x, y) (normalised image coordinates, origin top-left) is back-projected
    through the photo camera's intrinsics to the 3D point that pixel sees at `depth` units along
    the optical axis: P = depth * ((x - cx) / fx, (y - cy) / fy, 1). The camera starts at the
    photo's pose and travels through P_1 ... P_N in click order. Each waypoint becomes a
    keyframe whose time is proportional to the distance travelled (constant speed between
    waypoints) and whose orientation faces the direction of travel there (the tangent of the
    Catmull-Rom spline through the points) with no roll. `keyframe_path`
    then interpolates: the camera starts at rest looking along the photo's view and turns
    smoothly to look where it goes.
    """
    pts = check_points(points)
    n = check_num_frames(num_frames)
    depth = _check_float(depth, "Waypoint depth", 1e-3, MAX_TRANSLATION)
    intr = resolve_intrinsics(intrinsics, aspect, fov_deg)
    fx, fy, cx, cy = intr
    rays = np.stack([(pts[:, 0] - cx) / fx, (pts[:, 1] - cy) / fy, np.ones(len(pts))], -1)
    positions = np.concatenate([np.zeros((1, 3)), depth * rays])
    legs = np.linalg.norm(np.diff(positions, axis=0), axis=1)
    for k, leg in enumerate(legs):
        if leg < 1e-9:
            raise InputError(f"Waypoints {k} and {k + 1} are the same point; remove one.")
    times = np.concatenate([[0.0], np.cumsum(legs) / legs.sum()])
    times[-1] = 1.0
    ext = _extend(positions)  # ext[k + 1] is positions[k]
    keyframes = [Keyframe(0.0)]
    for k in range(1, len(positions)):
        # The spline's own tangent at the waypoint: the heading is the direction of travel.
        yaw, pitch = look_direction_ypr(ext[k + 2] - ext[k])
        x, y, z = positions[k].tolist()
        keyframes.append(Keyframe(float(times[k]), (x, y, z), yaw, pitch, 0.0))
    return keyframe_path(keyframes, n, ease=ease, name=name, intrinsics=intr)


# ---------------------------------------------------------------------------------------------
# Long shots: the path of one autoregressive segment


def extend_path(path: CameraPath, num_frames: int) -> CameraPath:
    """`path` continued at constant velocity to `num_frames` frames (the first frames unchanged).

    Each added pose repeats the last frame-to-frame motion D = inv(c2w[-2]) @ c2w[-1] in the
    camera's own frame: c2w[T-1+j] = c2w[T-1] @ D^j (rigid, so rotations stay orthonormal);
    intrinsics repeat the last row. Used to give a final segment its model-native frame count
    when the shot ends inside it (those extra frames are generated and then dropped).
    """
    n = check_num_frames(num_frames)
    t = path.num_frames
    if n <= t:
        if n < t:
            raise InputError(f"Cannot extend a {t}-frame camera path to fewer frames ({n}).")
        return path
    c2w = path.c2w()
    step = np.linalg.inv(c2w[-2]) @ c2w[-1]
    out = [c2w]
    cur = c2w[-1]
    for _ in range(n - t):
        cur = cur @ step
        out.append(cur[None])
    intr = np.concatenate([path.intrinsics, np.repeat(path.intrinsics[-1:], n - t, 0)])
    return CameraPath.from_c2w(np.concatenate(out), intr, path.name)


def rebase_path(path: CameraPath, ref: int, start: int, stop: int, name: str | None = None) -> CameraPath:
    """Frames [start, stop) of `path` re-expressed in frame `ref`'s camera coordinates.

    c2w'_i = inv(c2w_ref) @ c2w_i, intrinsics of frames [start, stop). With ref == start the new
    frame 0 is the identity pose: the segment's conditioning image is its camera, which is what
    the camera models were trained on. Translations keep the path's units (no renormalisation):
    the CamI2V-family pipeline hands `relative_c2w(0)` to the model unscaled (the path's
    "distance" is already applied when it is built), so a segment moves exactly as far per
    frame as the same frames of the uninterrupted path.
    """
    n = path.num_frames
    if not (0 <= start < stop <= n) or stop - start < MIN_FRAMES:
        raise InputError(f"Frames [{start}, {stop}) are not a range of at least {MIN_FRAMES} frames of "
                         f"the {n}-frame camera path.")
    rel = path.relative_c2w(ref)[start:stop]
    return CameraPath.from_c2w(rel, path.intrinsics[start:stop], name or path.name)
