"""Camera geometry: validation of user numbers, rotations (axis, yaw/pitch/roll, quaternions,
SLERP), 4x4 poses, default intrinsics, and the spline machinery paths are interpolated with.

Conventions as in `core.camera`: OpenCV axes, w2c 3x4 poses, intrinsics normalised by the image
size. float64 numpy, no side effects, no torch.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from ..errors import InputError

MIN_FRAMES = 2
MAX_FRAMES = 1024
MAX_TRANSLATION = 1e3  # scene units; RealEstate10K / CamI2V paths are O(1)
ROTATION_TOLERANCE = 2e-3  # max |R^T R - I|; allows rotations written with ~4 decimals
DEFAULT_FOV_DEG = 90.0  # across the longer image side: f = 0.5 * max(W, H), the CamI2V demo's K
DEFAULT_ASPECT = 512 / 320


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


def resolve_intrinsics(intrinsics: Any, aspect: float, fov_deg: float) -> np.ndarray:
    """`intrinsics` as a checked (4,) row, or `default_intrinsics(aspect, fov_deg)` when None."""
    if intrinsics is None:
        return default_intrinsics(aspect, fov_deg)
    arr = np.asarray(intrinsics, dtype=np.float64)
    if arr.shape != (4,) or not np.isfinite(arr).all() or arr[0] <= 0 or arr[1] <= 0:
        raise InputError(
            "Intrinsics must be 4 finite numbers (fx/W, fy/H, cx/W, cy/H) with positive focal lengths."
        )
    return arr


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
