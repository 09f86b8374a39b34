"""Camera paths: per-frame poses and intrinsics, presets, keyframes and click-to-add waypoints.

Conventions (the RealEstate10K / CamI2V ones, so that paths can be handed to the camera models
unchanged):

* Camera axes are OpenCV's: x right, y down, z forward (the optical axis).
* A pose is stored as a 3x4 **world-to-camera** matrix ``[R | t]`` (``x_cam = R x_world + t``).
  Its inverse, camera-to-world (c2w), holds the camera's axes as columns and its centre as the
  last column.
* Intrinsics are ``(fx, fy, cx, cy)`` normalised by the image size: ``fx/W, fy/H, cx/W, cy/H``.
  Pixel coordinates are continuous with pixel centres at ``i + 0.5`` (so ``cx = 0.5`` is the
  middle of the image).
* Frame 0 is the photo's camera. The camera models only ever look at poses *relative to frame
  0* (``inv(c2w_0) @ c2w_i``), so a path is free to live in any world frame.

Everything here is float64 numpy and free of side effects; no torch.

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

import json
import math
import urllib.parse
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from .errors import InputError

MIN_FRAMES = 2
MAX_FRAMES = 1024
MAX_TRANSLATION = 1e3  # scene units; RealEstate10K / CamI2V paths are O(1)
ROTATION_TOLERANCE = 2e-3  # max |R^T R - I|; allows rotations written with ~4 decimals
DEFAULT_FOV_DEG = 90.0  # across the longer image side: f = 0.5 * max(W, H), the CamI2V demo's K
DEFAULT_ASPECT = 512 / 320
URL_PREFIX = "https://example.com/camera-path/"  # URL comment line written on export

_RE10K_FIELDS = 19  # timestamp fx fy cx cy k1 k2 + 12 entries of the 3x4 w2c


# ---------------------------------------------------------------------------------------------
# Validation helpers (also used by the service for user-facing parameters)


def check_num_frames(num_frames: Any, what: str = "Number of frames") -> int:
    """Return `num_frames` as an int in [MIN_FRAMES, MAX_FRAMES], or raise InputError."""
    try:
        value = float(num_frames)
    except (TypeError, ValueError):
        raise InputError(f"{what} must be a whole number, got {num_frames!r}.") from None
    if not math.isfinite(value) or value != int(value):
        raise InputError(f"{what} must be a whole number, got {num_frames!r}.")
    n = int(value)
    if not MIN_FRAMES <= n <= MAX_FRAMES:
        raise InputError(f"{what} must be between {MIN_FRAMES} and {MAX_FRAMES}, got {n}.")
    return n


def _check_float(value: Any, what: str, low: float, high: float) -> float:
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise InputError(f"{what} must be a number, got {value!r}.") from None
    if not math.isfinite(v) or not low <= v <= high:
        raise InputError(f"{what} must be between {low:g} and {high:g}, got {value!r}.")
    return v


def check_amount(amount: Any) -> float:
    """Move amount: fraction of the preset's full trajectory, in [0, 1]."""
    return _check_float(amount, "Move amount", 0.0, 1.0)


def check_distance(distance: Any) -> float:
    """Translation scale factor, in [0, 10] (CamI2V's UI offers 0-5)."""
    return _check_float(distance, "Move distance", 0.0, 10.0)


def check_fov(fov_deg: Any) -> float:
    """Field of view across the longer image side, in degrees, in [10, 150]."""
    return _check_float(fov_deg, "Field of view", 10.0, 150.0)


def check_aspect(aspect: Any) -> float:
    """Image width / height, in [0.1, 10]."""
    return _check_float(aspect, "Aspect ratio", 0.1, 10.0)


def check_points(points: Any) -> np.ndarray:
    """Clicked image points as an (N, 2) float64 array of normalised (x, y) in [0, 1]."""
    try:
        arr = np.asarray(points, dtype=np.float64)
    except (TypeError, ValueError):
        raise InputError("Waypoints must be a list of (x, y) pairs.") from None
    if arr.ndim != 2 or arr.shape[1] != 2 or arr.shape[0] < 1:
        raise InputError(f"Waypoints must be a non-empty list of (x, y) pairs, got shape {arr.shape}.")
    for k, (x, y) in enumerate(arr):
        if not (math.isfinite(x) and math.isfinite(y) and 0.0 <= x <= 1.0 and 0.0 <= y <= 1.0):
            raise InputError(
                f"Waypoint {k + 1} is ({x:g}, {y:g}); image points must lie in [0, 1] x [0, 1]."
            )
    return arr


# ---------------------------------------------------------------------------------------------
# Rotations and quaternions (w, x, y, z)


def rot_x(deg: float | np.ndarray) -> np.ndarray:
    """Rotation about +x. Positive angles turn the optical axis up (towards -y). (..., 3, 3)."""
    a = np.radians(np.asarray(deg, dtype=np.float64))
    c, s = np.cos(a), np.sin(a)
    o, z = np.ones_like(a), np.zeros_like(a)
    return np.stack([np.stack([o, z, z], -1), np.stack([z, c, -s], -1), np.stack([z, s, c], -1)], -2)


def rot_y(deg: float | np.ndarray) -> np.ndarray:
    """Rotation about +y. Positive angles turn the optical axis right (towards +x). (..., 3, 3)."""
    a = np.radians(np.asarray(deg, dtype=np.float64))
    c, s = np.cos(a), np.sin(a)
    o, z = np.ones_like(a), np.zeros_like(a)
    return np.stack([np.stack([c, z, s], -1), np.stack([z, o, z], -1), np.stack([-s, z, c], -1)], -2)


def rot_z(deg: float | np.ndarray) -> np.ndarray:
    """Rotation about +z (the optical axis). Positive angles swing the camera's x axis towards
    +y, i.e. the camera rolls clockwise as seen from behind it and the picture turns
    anticlockwise. (..., 3, 3)."""
    a = np.radians(np.asarray(deg, dtype=np.float64))
    c, s = np.cos(a), np.sin(a)
    o, z = np.ones_like(a), np.zeros_like(a)
    return np.stack([np.stack([c, -s, z], -1), np.stack([s, c, z], -1), np.stack([z, z, o], -1)], -2)


def rotation_from_ypr(yaw: float, pitch: float, roll: float) -> np.ndarray:
    """Camera-to-world rotation (3, 3) from yaw, pitch, roll in degrees.

    R = rot_y(yaw) @ rot_x(pitch) @ rot_z(roll): turn about the vertical axis first, then tilt,
    then roll about the optical axis. yaw > 0 turns right, pitch > 0 looks up, roll > 0 rolls the
    camera clockwise (picture turns anticlockwise).
    """
    return rot_y(yaw) @ rot_x(pitch) @ rot_z(roll)


def ypr_from_rotation(R: np.ndarray) -> tuple[float, float, float]:
    """Inverse of `rotation_from_ypr`: (yaw, pitch, roll) in degrees; pitch in [-90, 90]."""
    R = np.asarray(R, dtype=np.float64)
    pitch = math.atan2(-R[1, 2], math.hypot(R[1, 0], R[1, 1]))
    if math.hypot(R[1, 0], R[1, 1]) < 1e-9:  # looking straight up/down: fold roll into yaw
        yaw = math.atan2(-R[2, 0], R[0, 0])
        roll = 0.0
    else:
        yaw = math.atan2(R[0, 2], R[2, 2])
        roll = math.atan2(R[1, 0], R[1, 1])
    return math.degrees(yaw), math.degrees(pitch), math.degrees(roll)


def look_direction_ypr(direction: np.ndarray) -> tuple[float, float]:
    """(yaw, pitch) in degrees that point the optical axis along `direction` (3,)."""
    dx, dy, dz = (float(v) for v in direction)
    return math.degrees(math.atan2(dx, dz)), math.degrees(math.atan2(-dy, math.hypot(dx, dz)))


def rotation_angle_deg(R: np.ndarray) -> np.ndarray:
    """Rotation angle(s) in degrees of (..., 3, 3) rotation matrices."""
    R = np.asarray(R, dtype=np.float64)
    cos = (np.trace(R, axis1=-2, axis2=-1) - 1.0) / 2.0
    return np.degrees(np.arccos(np.clip(cos, -1.0, 1.0)))


def quat_from_matrix(R: np.ndarray) -> np.ndarray:
    """Unit quaternions (..., 4) as (w, x, y, z) with w >= 0 from rotations (..., 3, 3).

    Uses the largest of the four diagonal combinations as the pivot, which stays accurate near
    180 degrees where the trace-only formula loses precision.
    """
    R = np.asarray(R, dtype=np.float64)
    batch = R.shape[:-2]
    m = R.reshape(-1, 3, 3)
    m00, m11, m22 = m[:, 0, 0], m[:, 1, 1], m[:, 2, 2]
    pivot = np.argmax(np.stack([m00 + m11 + m22, m00, m11, m22], -1), -1)
    q = np.empty((m.shape[0], 4))
    for case in range(4):
        sel = pivot == case
        if not sel.any():
            continue
        a = m[sel]
        if case == 0:
            w = 0.5 * np.sqrt(np.maximum(1.0 + a[:, 0, 0] + a[:, 1, 1] + a[:, 2, 2], 1e-300))
            f = 0.25 / w
            q[sel] = np.stack([w, (a[:, 2, 1] - a[:, 1, 2]) * f, (a[:, 0, 2] - a[:, 2, 0]) * f,
                               (a[:, 1, 0] - a[:, 0, 1]) * f], -1)
        elif case == 1:
            x = 0.5 * np.sqrt(np.maximum(1.0 + a[:, 0, 0] - a[:, 1, 1] - a[:, 2, 2], 1e-300))
            f = 0.25 / x
            q[sel] = np.stack([(a[:, 2, 1] - a[:, 1, 2]) * f, x, (a[:, 0, 1] + a[:, 1, 0]) * f,
                               (a[:, 0, 2] + a[:, 2, 0]) * f], -1)
        elif case == 2:
            y = 0.5 * np.sqrt(np.maximum(1.0 - a[:, 0, 0] + a[:, 1, 1] - a[:, 2, 2], 1e-300))
            f = 0.25 / y
            q[sel] = np.stack([(a[:, 0, 2] - a[:, 2, 0]) * f, (a[:, 0, 1] + a[:, 1, 0]) * f, y,
                               (a[:, 1, 2] + a[:, 2, 1]) * f], -1)
        else:
            z = 0.5 * np.sqrt(np.maximum(1.0 - a[:, 0, 0] - a[:, 1, 1] + a[:, 2, 2], 1e-300))
            f = 0.25 / z
            q[sel] = np.stack([(a[:, 1, 0] - a[:, 0, 1]) * f, (a[:, 0, 2] + a[:, 2, 0]) * f,
                               (a[:, 1, 2] + a[:, 2, 1]) * f, z], -1)
    q /= np.linalg.norm(q, axis=-1, keepdims=True)
    q *= np.where(q[:, :1] < 0, -1.0, 1.0)
    return q.reshape(*batch, 4)


def matrix_from_quat(q: np.ndarray) -> np.ndarray:
    """Rotation matrices (..., 3, 3) from quaternions (..., 4) (w, x, y, z); normalises first."""
    q = np.asarray(q, dtype=np.float64)
    q = q / np.linalg.norm(q, axis=-1, keepdims=True)
    w, x, y, z = q[..., 0], q[..., 1], q[..., 2], q[..., 3]
    return np.stack([
        np.stack([1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)], -1),
        np.stack([2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)], -1),
        np.stack([2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)], -1),
    ], -2)


def quat_slerp(q0: np.ndarray, q1: np.ndarray, u: np.ndarray | float) -> np.ndarray:
    """Spherical linear interpolation along the shorter arc.

    q0, q1: (..., 4) unit quaternions (broadcastable); u: (...) in [0, 1]. Returns (..., 4) unit
    quaternions; the angular speed is constant in u.
    """
    q0 = np.asarray(q0, dtype=np.float64)
    q1 = np.asarray(q1, dtype=np.float64)
    u = np.asarray(u, dtype=np.float64)[..., None]
    dot = np.sum(q0 * q1, -1, keepdims=True)
    q1 = np.where(dot < 0, -q1, q1)  # q and -q are the same rotation: take the short way
    dot = np.abs(dot)
    theta = np.arccos(np.clip(dot, -1.0, 1.0))
    sin = np.sin(theta)
    near = sin < 1e-9
    safe = np.where(near, 1.0, sin)
    w0 = np.where(near, 1.0 - u, np.sin((1.0 - u) * theta) / safe)
    w1 = np.where(near, u, np.sin(u * theta) / safe)
    out = w0 * q0 + w1 * q1
    return out / np.linalg.norm(out, axis=-1, keepdims=True)


def rotation_slerp(R0: np.ndarray, R1: np.ndarray, u: np.ndarray | float) -> np.ndarray:
    """SLERP between two rotation matrices (3, 3) at parameters u (N,) -> (N, 3, 3)."""
    q = quat_slerp(quat_from_matrix(R0), quat_from_matrix(R1), np.atleast_1d(u))
    return matrix_from_quat(q)


# ---------------------------------------------------------------------------------------------
# Pose helpers


def _to44(m34: np.ndarray) -> np.ndarray:
    out = np.zeros(m34.shape[:-2] + (4, 4))
    out[..., :3, :4] = m34
    out[..., 3, 3] = 1.0
    return out


def pose_matrix(R: np.ndarray, centre: np.ndarray) -> np.ndarray:
    """c2w 4x4 matrices (..., 4, 4) from rotations (..., 3, 3) and camera centres (..., 3)."""
    R = np.asarray(R, dtype=np.float64)
    centre = np.asarray(centre, dtype=np.float64)
    out = np.zeros(np.broadcast_shapes(R.shape[:-2], centre.shape[:-1]) + (4, 4))
    out[..., :3, :3] = R
    out[..., :3, 3] = centre
    out[..., 3, 3] = 1.0
    return out


def default_intrinsics(aspect: float = DEFAULT_ASPECT, fov_deg: float = DEFAULT_FOV_DEG) -> np.ndarray:
    """Normalised (fx/W, fy/H, cx/W, cy/H) (4,) for square pixels and a centred principal point.

    fov_deg spans the longer image side; 90 degrees gives f = 0.5 * max(W, H) pixels, the K of
    the CamI2V demo.
    """
    aspect = check_aspect(aspect)
    fov_deg = check_fov(fov_deg)
    f_long = 0.5 / math.tan(math.radians(fov_deg) / 2.0)  # focal length / longer side
    # With W = aspect * H: f_px = f_long * max(W, H); fx/W and fy/H follow.
    if aspect >= 1.0:
        fx, fy = f_long, f_long * aspect
    else:
        fx, fy = f_long / aspect, f_long
    return np.array([fx, fy, 0.5, 0.5])


# ---------------------------------------------------------------------------------------------
# Interpolation machinery shared by keyframes, waypoints and resampling
#
# A path through K key poses is split into *shape* and *timing*:
#   shape:  positions follow a uniform Catmull-Rom spline over the key index s in [0, K-1]
#           (ghost end points mirror the end keys, so evenly spaced collinear keys give a
#           straight line at constant speed); rotations are SLERPed key to key.
#   timing: s(t) maps clip time t in [0, 1] to the key index. It is a monotone cubic
#           (Fritsch-Butland slopes, as in PCHIP) through (time_k, k); with easing the slopes at
#           the first and last key are zero (the camera starts and ends at rest, the craft rule
#           for cuttable shots), otherwise they continue the neighbouring secant.


def _timing(key_times: np.ndarray, t: np.ndarray, ease: bool) -> np.ndarray:
    """Monotone map from clip times t (N,) to key index s (N,) through (key_times[k], k)."""
    n = key_times.shape[0]
    if n == 1:
        return np.zeros_like(t)
    h = np.diff(key_times)
    delta = 1.0 / h  # secant slopes of k(t)
    d = np.empty(n)
    if n > 2:
        w1 = 2.0 * h[1:] + h[:-1]
        w2 = h[1:] + 2.0 * h[:-1]
        d[1:-1] = (w1 + w2) / (w1 / delta[:-1] + w2 / delta[1:])
    d[0] = 0.0 if ease else delta[0]
    d[-1] = 0.0 if ease else delta[-1]
    tc = np.clip(t, key_times[0], key_times[-1])
    seg = np.clip(np.searchsorted(key_times, tc, side="right") - 1, 0, n - 2)
    x = (tc - key_times[seg]) / h[seg]
    x2, x3 = x * x, x * x * x
    h00 = 2 * x3 - 3 * x2 + 1
    h10 = x3 - 2 * x2 + x
    h01 = -2 * x3 + 3 * x2
    h11 = x3 - x2
    s = h00 * seg + h10 * h[seg] * d[seg] + h01 * (seg + 1) + h11 * h[seg] * d[seg + 1]
    return np.clip(s, 0.0, n - 1.0)


def _extend(points: np.ndarray, smooth_ends: bool = False) -> np.ndarray:
    """points (K, D) with one ghost point added at each end (K + 2, D).

    By default a ghost mirrors its neighbour (end tangent = the end chord: straight moves stay
    exact and a sharp last turn never makes the camera back up). `smooth_ends` continues the
    parabola through the three nearest keys instead: exact end tangents for densely sampled
    smooth paths (used when resampling).
    """
    if points.shape[0] == 2 or not smooth_ends:
        return np.concatenate([2 * points[:1] - points[1:2], points, 2 * points[-1:] - points[-2:-1]])
    first = 3 * points[0] - 3 * points[1] + points[2]
    last = 3 * points[-1] - 3 * points[-2] + points[-3]
    return np.concatenate([first[None], points, last[None]])


def _catmull_rom(points: np.ndarray, s: np.ndarray, smooth_ends: bool = False) -> np.ndarray:
    """Uniform Catmull-Rom through points (K, D) evaluated at key index s (N,) -> (N, D)."""
    k = points.shape[0]
    if k == 1:
        return np.repeat(points, s.shape[0], 0)
    ext = _extend(points, smooth_ends)
    seg = np.clip(np.floor(s).astype(int), 0, k - 2)
    u = (s - seg)[:, None]
    p0, p1, p2, p3 = ext[seg], ext[seg + 1], ext[seg + 2], ext[seg + 3]
    return 0.5 * (2 * p1 + (p2 - p0) * u + (2 * p0 - 5 * p1 + 4 * p2 - p3) * u**2
                  + (3 * p1 - p0 - 3 * p2 + p3) * u**3)


def _interpolate_poses(c2w_keys: np.ndarray, s: np.ndarray, smooth_ends: bool = False) -> np.ndarray:
    """c2w (N, 4, 4) at key index s (N,) from key poses (K, 4, 4)."""
    k = c2w_keys.shape[0]
    centres = _catmull_rom(c2w_keys[:, :3, 3], s, smooth_ends)
    if k == 1:
        return pose_matrix(np.repeat(c2w_keys[:, :3, :3], s.shape[0], 0), centres)
    q = quat_from_matrix(c2w_keys[:, :3, :3])
    seg = np.clip(np.floor(s).astype(int), 0, k - 2)
    rots = matrix_from_quat(quat_slerp(q[seg], q[seg + 1], s - seg))
    return pose_matrix(rots, centres)


# ---------------------------------------------------------------------------------------------
# The camera path


@dataclass(frozen=True, eq=False)
class CameraPath:
    """One pose per output frame.

    w2c:        (T, 3, 4) float64 world-to-camera [R | t], OpenCV axes (x right, y down,
                z forward). A (T, 4, 4) array is accepted and its last row dropped.
    intrinsics: (T, 4) float64 (fx/W, fy/H, cx/W, cy/H); a single (4,) row is broadcast.
    name:       what the path is called in the UI and in run.json (a preset id, "keyframes", ...).

    The constructor copies, freezes and validates the arrays (`validate`), so a CameraPath that
    exists is always usable by a generator. Compare paths with `allclose` (no `==`).
    """

    w2c: np.ndarray
    intrinsics: np.ndarray
    name: str = "custom"

    def __post_init__(self) -> None:
        try:
            w2c = np.array(self.w2c, dtype=np.float64)
            intr = np.array(self.intrinsics, dtype=np.float64)
        except (TypeError, ValueError):
            raise InputError(
                f"Camera path {self.name!r}: poses and intrinsics must be numeric arrays."
            ) from None
        if w2c.ndim == 3 and w2c.shape[1:] == (4, 4):
            w2c = w2c[:, :3, :]
        if w2c.ndim != 3 or w2c.shape[1:] != (3, 4):
            raise InputError(
                f"Camera path {self.name!r}: poses must have shape (frames, 3, 4), got {w2c.shape}."
            )
        if intr.ndim == 1 and intr.shape == (4,):
            intr = np.repeat(intr[None], w2c.shape[0], 0)
        if intr.shape != (w2c.shape[0], 4):
            raise InputError(
                f"Camera path {self.name!r}: intrinsics must have shape ({w2c.shape[0]}, 4), "
                f"got {intr.shape}."
            )
        w2c = np.ascontiguousarray(w2c)
        intr = np.ascontiguousarray(intr)
        w2c.flags.writeable = False
        intr.flags.writeable = False
        object.__setattr__(self, "w2c", w2c)
        object.__setattr__(self, "intrinsics", intr)
        object.__setattr__(self, "name", str(self.name))
        self.validate()

    # -- checks ---------------------------------------------------------------------------------

    def validate(self) -> None:
        """Raise InputError (one line naming the frame and the problem) unless the path is sane.

        Checks: frame count in [2, 1024]; every number finite; every rotation orthonormal with
        det +1 (a det -1 matrix is a mirror, not a camera; RealEstate10K files that mirror every
        frame, such as CamI2V's demo files, are made proper by `from_realestate10k`, which
        re-expresses them relative to frame 0 exactly as the models do); translations below
        1e3 units; positive focal lengths.
        """
        label = f"Camera path {self.name!r}"
        t = self.w2c.shape[0]
        if not MIN_FRAMES <= t <= MAX_FRAMES:
            raise InputError(f"{label} has {t} frame(s); a path needs between {MIN_FRAMES} and {MAX_FRAMES}.")
        finite = np.isfinite(self.w2c).all(axis=(1, 2)) & np.isfinite(self.intrinsics).all(axis=1)
        if not finite.all():
            i = int(np.flatnonzero(~finite)[0])
            raise InputError(f"{label}, frame {i}: contains a non-finite number (NaN or inf).")
        R = self.w2c[:, :, :3]
        ortho = np.abs(np.swapaxes(R, 1, 2) @ R - np.eye(3)).max(axis=(1, 2))
        det = np.linalg.det(R)
        for i in range(t):
            if ortho[i] > ROTATION_TOLERANCE:
                raise InputError(
                    f"{label}, frame {i}: the 3x3 rotation is not orthonormal "
                    f"(max |R^T R - I| = {ortho[i]:.3g} > {ROTATION_TOLERANCE:g})."
                )
            if det[i] < 0:
                raise InputError(
                    f"{label}, frame {i}: the rotation has determinant {det[i]:.3f} (a mirror, not a "
                    "camera rotation); only det +1 rotations are allowed."
                )
        trans = np.linalg.norm(self.w2c[:, :, 3], axis=1)
        worst = int(np.argmax(trans))
        if trans[worst] > MAX_TRANSLATION:
            raise InputError(
                f"{label}, frame {worst}: translation of {trans[worst]:.4g} units is absurd "
                f"(limit {MAX_TRANSLATION:g})."
            )
        bad = np.flatnonzero((self.intrinsics[:, 0] <= 0) | (self.intrinsics[:, 1] <= 0))
        if bad.size:
            i = int(bad[0])
            raise InputError(
                f"{label}, frame {i}: focal lengths must be positive, got fx={self.intrinsics[i, 0]:g}, "
                f"fy={self.intrinsics[i, 1]:g} (normalised)."
            )

    # -- views ----------------------------------------------------------------------------------

    @property
    def num_frames(self) -> int:
        return int(self.w2c.shape[0])

    def w2c44(self) -> np.ndarray:
        """(T, 4, 4) world-to-camera."""
        return _to44(self.w2c)

    def c2w(self) -> np.ndarray:
        """(T, 4, 4) camera-to-world: columns are the camera axes, then its centre."""
        return np.linalg.inv(self.w2c44())

    def relative_c2w(self, ref: int = 0) -> np.ndarray:
        """(T, 4, 4) inv(c2w_ref) @ c2w_i: poses in frame `ref`'s camera coordinates (ref -> I)."""
        if not -self.num_frames <= ref < self.num_frames:
            raise InputError(f"Reference frame {ref} is outside the path's {self.num_frames} frames.")
        return self.w2c44()[ref] @ self.c2w()

    def relative_w2c(self, ref: int = 0) -> np.ndarray:
        """(T, 4, 4) inverse of `relative_c2w` (MotionCtrl's pose input)."""
        return np.linalg.inv(self.relative_c2w(ref))

    def centres(self) -> np.ndarray:
        """(T, 3) camera centres in world coordinates."""
        return self.c2w()[:, :3, 3]

    def K(self, width: int, height: int) -> np.ndarray:
        """(T, 3, 3) pixel intrinsics for an image of `width` x `height` pixels."""
        k = np.zeros((self.num_frames, 3, 3))
        k[:, 0, 0] = self.intrinsics[:, 0] * width
        k[:, 1, 1] = self.intrinsics[:, 1] * height
        k[:, 0, 2] = self.intrinsics[:, 2] * width
        k[:, 1, 2] = self.intrinsics[:, 3] * height
        k[:, 2, 2] = 1.0
        return k

    def motion_summary(self) -> dict[str, float]:
        """Last frame relative to frame 0: translation (3 numbers, scene units) and rotation (deg)."""
        rel = self.relative_c2w(0)[-1]
        return {
            "tx": float(rel[0, 3]), "ty": float(rel[1, 3]), "tz": float(rel[2, 3]),
            "rotation_deg": float(rotation_angle_deg(rel[:3, :3])),
        }

    def allclose(self, other: "CameraPath", atol: float = 1e-9) -> bool:
        return (
            self.num_frames == other.num_frames
            and np.allclose(self.w2c, other.w2c, rtol=0.0, atol=atol)
            and np.allclose(self.intrinsics, other.intrinsics, rtol=0.0, atol=atol)
        )

    # -- constructors and transforms ------------------------------------------------------------

    @classmethod
    def from_c2w(cls, c2w: np.ndarray, intrinsics: np.ndarray, name: str = "custom") -> "CameraPath":
        """From camera-to-world poses (T, 4, 4) or (T, 3, 4)."""
        c2w = np.asarray(c2w, dtype=np.float64)
        if c2w.ndim == 3 and c2w.shape[1:] == (3, 4):
            c2w = _to44(c2w)
        if c2w.ndim != 3 or c2w.shape[1:] != (4, 4):
            raise InputError(
                f"Camera path {name!r}: c2w poses must have shape (frames, 4, 4), got {c2w.shape}."
            )
        if not np.isfinite(c2w).all():
            raise InputError(f"Camera path {name!r}: contains a non-finite number (NaN or inf).")
        try:
            w2c = np.linalg.inv(c2w)
        except np.linalg.LinAlgError:
            raise InputError(
                f"Camera path {name!r}: a c2w pose is singular (not a rigid transform)."
            ) from None
        return cls(w2c[:, :3, :], intrinsics, name)

    def renamed(self, name: str) -> "CameraPath":
        return CameraPath(self.w2c, self.intrinsics, name)

    def with_intrinsics(self, intrinsics: np.ndarray) -> "CameraPath":
        """Same poses, new normalised intrinsics ((4,) or (T, 4))."""
        return CameraPath(self.w2c, intrinsics, self.name)

    def scaled(self, distance: float) -> "CameraPath":
        """Translations relative to frame 0 multiplied by `distance` (CamI2V's trace scale);
        rotations and frame 0 unchanged."""
        distance = check_distance(distance)
        c2w = self.c2w()
        rel = np.linalg.inv(c2w[0]) @ c2w
        rel[:, :3, 3] *= distance
        return CameraPath.from_c2w(c2w[0] @ rel, self.intrinsics, self.name)

    def zoomed(self, zoom: float) -> "CameraPath":
        """The same poses seen through a lens `zoom` times longer, zoomed about the image centre:
        fx, fy times `zoom`, and the principal point moved away from the centre by `zoom`
        (normalised intrinsics). What the Ken Burns preview's framing zoom does to the camera."""
        z = float(zoom)
        if not (np.isfinite(z) and z > 0):
            raise InputError(f"Zoom must be a positive number, got {zoom!r}.")
        intr = self.intrinsics.copy()
        intr[:, :2] *= z
        intr[:, 2:] = z * (intr[:, 2:] - 0.5) + 0.5
        return CameraPath(self.w2c.copy(), intr, self.name)

    def resampled(self, num_frames: int) -> "CameraPath":
        """The same motion over `num_frames` frames: SLERP for rotations, Catmull-Rom for camera
        centres (exact for straight constant-speed moves), linear for intrinsics."""
        n = check_num_frames(num_frames)
        if n == self.num_frames:
            return self
        s = np.linspace(0.0, self.num_frames - 1.0, n)
        c2w = _interpolate_poses(self.c2w(), s, smooth_ends=True)
        src = np.arange(self.num_frames, dtype=np.float64)
        intr = np.stack([np.interp(s, src, self.intrinsics[:, j]) for j in range(4)], -1)
        return CameraPath.from_c2w(c2w, intr, self.name)

    # -- JSON (run.json) ------------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict; floats survive `json.dumps`/`json.loads` bit for bit."""
        return {
            "name": self.name,
            "convention": "w2c 3x4, OpenCV axes (x right, y down, z forward); "
                          "intrinsics fx/W, fy/H, cx/W, cy/H",
            "num_frames": self.num_frames,
            "w2c": self.w2c.tolist(),
            "intrinsics": self.intrinsics.tolist(),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "CameraPath":
        if not isinstance(data, Mapping):
            raise InputError("Camera path JSON must be an object with 'w2c' and 'intrinsics'.")
        for key in ("w2c", "intrinsics"):
            if key not in data:
                raise InputError(f"Camera path JSON is missing {key!r}.")
        return cls(data["w2c"], data["intrinsics"], str(data.get("name", "custom")))

    def to_json(self) -> str:
        return json.dumps(self.to_dict())

    @classmethod
    def from_json(cls, text: str) -> "CameraPath":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise InputError(f"Camera path JSON is not valid JSON: {exc.msg} (line {exc.lineno}).") from None
        return cls.from_dict(data)

    # -- RealEstate10K text ---------------------------------------------------------------------

    def to_realestate10k(self, fps: float = 10.0, url: str | None = None) -> str:
        """RealEstate10K text: a URL comment line, then per frame
        ``timestamp_us fx fy cx cy k1 k2 r00 r01 r02 t0 r10 r11 r12 t1 r20 r21 r22 t2`` (w2c).

        Numbers are written with `repr`, so `from_realestate10k` reads back identical floats.
        The default URL carries the path name, which the importer recovers.
        """
        fps = _check_float(fps, "Frames per second", 1e-3, 1e4)
        lines = [url or URL_PREFIX + urllib.parse.quote(self.name, safe="")]
        for i in range(self.num_frames):
            stamp = int(round(i * 1e6 / fps))
            nums = [*self.intrinsics[i].tolist(), 0.0, 0.0, *self.w2c[i].reshape(-1).tolist()]
            lines.append(" ".join([str(stamp)] + [repr(float(v)) for v in nums]))
        return "\n".join(lines) + "\n"

    @classmethod
    def from_realestate10k(
        cls, text: str, name: str | None = None, source: str = "camera file"
    ) -> "CameraPath":
        """Parse RealEstate10K text (also CamI2V demo files: dummy timestamps, normalised K).

        Lines starting with ``http`` are URL comments and blank lines are skipped. Distortion
        (k1, k2) and timestamps are read but not used. If every pose is a mirror (det -1, as in
        most CamI2V demo files, whose first frame is diag(-1, 1, 1)), the poses are re-expressed
        relative to frame 0; the mirrors cancel and this is precisely the relative motion the
        camera models compute from such a file.
        """
        rows: list[list[float]] = []
        linenos: list[int] = []
        url = None
        for lineno, raw in enumerate(text.splitlines(), start=1):
            line = raw.strip()
            if not line:
                continue
            if line.lower().startswith("http"):
                url = url or line
                continue
            parts = line.split()
            if len(parts) != _RE10K_FIELDS:
                raise InputError(
                    f"{source}, line {lineno}: expected {_RE10K_FIELDS} numbers (timestamp fx fy cx cy "
                    f"k1 k2 and the 12 entries of the 3x4 world-to-camera matrix), found {len(parts)}."
                )
            row = []
            for col, tok in enumerate(parts, start=1):
                try:
                    v = float(tok)
                except ValueError:
                    raise InputError(
                        f"{source}, line {lineno}, field {col}: {tok!r} is not a number."
                    ) from None
                if not math.isfinite(v):
                    raise InputError(f"{source}, line {lineno}, field {col}: {tok!r} is not a finite number.")
                row.append(v)
            rows.append(row)
            linenos.append(lineno)
        if not rows:
            raise InputError(f"{source}: no camera lines found (expected RealEstate10K text).")
        arr = np.array(rows)
        if name is None:
            name = "imported"
            if url and url.startswith(URL_PREFIX):
                name = urllib.parse.unquote(url[len(URL_PREFIX):]) or name
        w2c = arr[:, 7:].reshape(-1, 3, 4)
        intr = arr[:, 1:5]
        det = np.linalg.det(w2c[:, :, :3])
        if (det < 0).any():
            if not (det < 0).all():
                odd = np.flatnonzero((det < 0) != (det[0] < 0))[0]
                raise InputError(
                    f"{source}, line {linenos[odd]}: rotation determinant {det[odd]:+.3f} differs in sign "
                    f"from the first frame's ({det[0]:+.3f}); mirrored and unmirrored poses cannot be mixed."
                )
            w44 = _to44(w2c)
            rel = w44[0] @ np.linalg.inv(w44)  # inv(c2w_0) @ c2w_i
            return cls.from_c2w(rel, intr, name)
        return cls(w2c, intr, name)

    def save_realestate10k(self, path: str | Path, fps: float = 10.0) -> None:
        """Write the RealEstate10K text atomically: a full disk is `OutOfDiskSpace` and leaves
        neither a partial nor an empty file."""
        from .fileio import atomic_write_bytes

        atomic_write_bytes(path, self.to_realestate10k(fps=fps).encode("utf-8"))

    @classmethod
    def load_realestate10k(cls, path: str | Path, name: str | None = None) -> "CameraPath":
        p = Path(path)
        if not p.is_file():
            raise InputError(f"Camera file not found: {p}")
        try:
            text = p.read_text()
        except UnicodeDecodeError:
            raise InputError(f"{p.name}: not a text file (expected RealEstate10K camera lines).") from None
        return cls.from_realestate10k(text, name=name, source=p.name)


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


def _resolve_intrinsics(intrinsics: Any, aspect: float, fov_deg: float) -> np.ndarray:
    if intrinsics is None:
        return default_intrinsics(aspect, fov_deg)
    arr = np.asarray(intrinsics, dtype=np.float64)
    if arr.shape != (4,) or not np.isfinite(arr).all() or arr[0] <= 0 or arr[1] <= 0:
        raise InputError(
            "Intrinsics must be 4 finite numbers (fx/W, fy/H, cx/W, cy/H) with positive focal lengths."
        )
    return arr


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
    intr = _resolve_intrinsics(intrinsics, aspect, fov_deg)
    s = amount * _ease(np.linspace(0.0, 1.0, n), easing)
    c2w = np.array(spec.trajectory(s), dtype=np.float64)
    c2w[:, :3, 3] *= distance
    return CameraPath.from_c2w(c2w, intr, preset_id)


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
    intr = _resolve_intrinsics(intrinsics, aspect, fov_deg)
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
    intr = _resolve_intrinsics(intrinsics, aspect, fov_deg)
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
