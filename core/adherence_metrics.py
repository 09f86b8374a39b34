"""CamI2V's camera metrics between a requested and an estimated trajectory.

Every pose is first made relative to frame 0 (camera-to-world, ``inv(c2w_0) @ c2w_i``), so the
estimate's world frame does not matter; sums run over all frames, frame 0 included (it
contributes 0):

    RotErr   = sum_i arccos((tr(R_gt_i^T R_est_i) - 1) / 2)                  radians
    TransErr = sum_i || t_est_i / m_est - t_gt_i / m_gt ||_2                 m = max_i ||t_i|| + 1e-9
    CamMC    = sum_i || [R_est_i | t_est_i / m_est] - [R_gt_i | t_gt_i / m_gt] ||_F   (3x4)

Dividing each trajectory by its own largest translation removes the unknown SfM scale, so
TransErr and CamMC compare trajectory shapes, not distances. A consequence (shared with CamI2V's
evaluation): for a path without translation (pan, tilt, static) the requested translations stay
0 while any estimated translation, however small, is stretched to unit length; read TransErr and
CamMC of such paths as "how much the camera moved that should not have".

Poses come as a CameraPath or (T, 4, 4) / (T, 3, 4) camera-to-world arrays; bad shapes or
non-finite values raise InputError. The estimation itself is in `core.adherence`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from .errors import InputError

if TYPE_CHECKING:  # pragma: no cover
    from .camera import CameraPath

NORM_EPS = 1e-9  # CamI2V adds this to the max translation norm before dividing


def _as_c2w(poses: Any, what: str) -> np.ndarray:
    """(T, 4, 4) float64 camera-to-world from a CameraPath or a (T, 4, 4) / (T, 3, 4) array."""
    c2w_fn = getattr(poses, "c2w", None)
    if callable(c2w_fn):
        return np.asarray(c2w_fn(), dtype=np.float64)
    arr = np.asarray(poses, dtype=np.float64)
    if arr.ndim == 3 and arr.shape[1:] == (3, 4):
        full = np.zeros((arr.shape[0], 4, 4))
        full[:, :3] = arr
        full[:, 3, 3] = 1.0
        arr = full
    if arr.ndim != 3 or arr.shape[1:] != (4, 4) or arr.shape[0] < 1:
        raise InputError(f"{what} must be camera-to-world poses of shape (frames, 4, 4), got {arr.shape}.")
    if not np.isfinite(arr).all():
        raise InputError(f"{what} contain a non-finite number.")
    return arr


def relative_to_first(c2w: np.ndarray) -> np.ndarray:
    """(T, 4, 4) inv(c2w_0) @ c2w_i: the poses in frame 0's camera coordinates."""
    c2w = _as_c2w(c2w, "Poses")
    return np.linalg.inv(c2w[0]) @ c2w


def _pair(gt: Any, est: Any) -> tuple[np.ndarray, np.ndarray]:
    g = relative_to_first(_as_c2w(gt, "Requested poses"))
    e = relative_to_first(_as_c2w(est, "Estimated poses"))
    if g.shape != e.shape:
        raise InputError(f"The requested path has {g.shape[0]} frames but {e.shape[0]} poses were estimated.")
    return g, e


def _normalised_translations(rel: np.ndarray) -> np.ndarray:
    """(T, 3) translations divided by the trajectory's own largest one (+1e-9)."""
    t = rel[:, :3, 3]
    return t / (np.linalg.norm(t, axis=1).max() + NORM_EPS)


def rotation_errors(gt_c2w: Any, est_c2w: Any) -> np.ndarray:
    """(T,) geodesic angle in radians between requested and estimated relative rotations."""
    g, e = _pair(gt_c2w, est_c2w)
    m = np.swapaxes(g[:, :3, :3], 1, 2) @ e[:, :3, :3]
    cos = (np.trace(m, axis1=1, axis2=2) - 1.0) / 2.0
    return np.arccos(np.clip(cos, -1.0, 1.0))


def translation_errors(gt_c2w: Any, est_c2w: Any) -> np.ndarray:
    """(T,) distance between the max-normalised relative translations (unitless)."""
    g, e = _pair(gt_c2w, est_c2w)
    return np.linalg.norm(_normalised_translations(e) - _normalised_translations(g), axis=1)


def cam_mc_errors(gt_c2w: Any, est_c2w: Any) -> np.ndarray:
    """(T,) Frobenius norm of the 3x4 [R | t/max|t|] difference per frame."""
    g, e = _pair(gt_c2w, est_c2w)
    gm = np.concatenate([g[:, :3, :3], _normalised_translations(g)[:, :, None]], axis=2)
    em = np.concatenate([e[:, :3, :3], _normalised_translations(e)[:, :, None]], axis=2)
    return np.linalg.norm((em - gm).reshape(len(gm), -1), axis=1)


def rot_err(gt_c2w: Any, est_c2w: Any) -> float:
    """CamI2V's RotErr: summed rotation error in radians (see the module docstring)."""
    return float(rotation_errors(gt_c2w, est_c2w).sum())


def trans_err(gt_c2w: Any, est_c2w: Any) -> float:
    """CamI2V's TransErr (relative): summed error of the max-normalised translations."""
    return float(translation_errors(gt_c2w, est_c2w).sum())


def cam_mc(gt_c2w: Any, est_c2w: Any) -> float:
    """CamI2V's CamMC (relative): summed Frobenius error of the normalised 3x4 poses."""
    return float(cam_mc_errors(gt_c2w, est_c2w).sum())


def score(gt_path: "CameraPath | np.ndarray", est_c2w: np.ndarray) -> dict[str, Any]:
    """All three metrics plus per-frame errors, JSON-ready.

    gt_path: the requested CameraPath (or its (T, 4, 4) c2w); est_c2w: (T, 4, 4) estimated c2w in
    any world frame and scale. Keys: RotErr (rad), RotErr_deg, TransErr, CamMC, per_frame
    {rot_err_deg, trans_err, cam_mc}, and both trajectories relative to frame 0 with translations
    max-normalised (requested_relative_c2w, estimated_relative_c2w) for plotting.
    """
    rot = rotation_errors(gt_path, est_c2w)
    tr = translation_errors(gt_path, est_c2w)
    mc = cam_mc_errors(gt_path, est_c2w)
    g, e = _pair(gt_path, est_c2w)
    g[:, :3, 3] = _normalised_translations(g)
    e[:, :3, 3] = _normalised_translations(e)
    return {
        "RotErr": float(rot.sum()),
        "RotErr_deg": float(np.degrees(rot).sum()),
        "TransErr": float(tr.sum()),
        "CamMC": float(mc.sum()),
        "per_frame": {
            "rot_err_deg": [float(v) for v in np.degrees(rot)],
            "trans_err": [float(v) for v in tr],
            "cam_mc": [float(v) for v in mc],
        },
        "requested_relative_c2w": np.round(g, 6).tolist(),
        "estimated_relative_c2w": np.round(e, 6).tolist(),
    }
