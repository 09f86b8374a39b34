"""The OpenCV fallback pose estimator of `core.adherence`: ORB matches between consecutive frames,
a two-view model per pair (essential matrix, or a pure rotation when that explains the matches as
well), and step lengths carried from pair to pair through points seen in three frames.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from .progress import Progress

# OpenCV estimator. Matches per pair below this count make the pair (and the clip) unusable.
_MIN_MATCHES = 20
_RATIO = 0.8  # Lowe's ratio test
_RANSAC_PX = 1.0  # epipolar / reprojection tolerance of the two-view models, pixels
# A pair counts as a pure rotation when the rotation-only model keeps this fraction of the
# essential matrix's inliers: a camera that does not translate gives no parallax, and the
# essential matrix's translation is then arbitrary.
_ROTATION_ONLY_SHARE = 0.95
_MIN_SHARED_POINTS = 8  # points seen in 3 consecutive frames needed to carry the step length over


@dataclass
class _Step:
    """Frame i -> i+1: x_{i+1} = R x_i + scale * t (camera coordinates), t unit or zero."""

    R: np.ndarray
    t: np.ndarray
    rotation_only: bool
    inliers: int
    # Triangulated points of this pair, keyed by the keypoint index in each frame:
    # depth in frame i+1 (for the next step) and in frame i (for the previous one), unit baseline.
    depth_next: dict[int, float] = field(default_factory=dict)
    depth_this: dict[int, float] = field(default_factory=dict)


@dataclass
class _TwoViewResult:
    c2w: np.ndarray | None
    reason: str = ""
    notes: list[str] = field(default_factory=list)
    rotation_only: bool = False  # no pair, consecutive or wide, shows parallax


def estimate_opencv(frames: np.ndarray, K: np.ndarray, progress: Progress) -> _TwoViewResult:
    import cv2

    t = frames.shape[0]
    # OpenCV puts pixel centres at integers.
    Kcv = K.copy()
    Kcv[0, 2] -= 0.5
    Kcv[1, 2] -= 0.5
    sift = cv2.SIFT_create(nfeatures=4000)
    feats = []
    for i, frame in enumerate(frames):
        kp, desc = sift.detectAndCompute(cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY), None)
        if desc is None or len(kp) < _MIN_MATCHES:
            return _TwoViewResult(None, f"frame {i} has too few features ({len(kp)}) to match")
        feats.append((np.array([k.pt for k in kp], dtype=np.float64), desc))
        progress(0.5 * (i + 1) / t, "features")
    matcher = cv2.BFMatcher(cv2.NORM_L2)

    def pair(i: int, j: int) -> tuple[_Step | None, int]:
        (pts1, d1), (pts2, d2) = feats[i], feats[j]
        good = [m[0] for m in matcher.knnMatch(d1, d2, k=2) if len(m) == 2 and m[0].distance < _RATIO * m[1].distance]
        if len(good) < _MIN_MATCHES:
            return None, len(good)
        idx1 = np.array([m.queryIdx for m in good])
        idx2 = np.array([m.trainIdx for m in good])
        return _two_view(pts1[idx1], pts2[idx2], idx1, idx2, K=Kcv), len(good)

    steps: list[_Step] = []
    for i in range(t - 1):
        step, matches = pair(i, i + 1)
        if step is None:
            why = (f"frames {i} and {i + 1} share only {matches} feature matches" if matches < _MIN_MATCHES
                   else f"no consistent two-view geometry between frames {i} and {i + 1}")
            return _TwoViewResult(None, why)
        steps.append(step)
        progress(0.5 + 0.45 * (i + 1) / (t - 1), "two-view geometry")

    notes = []
    rotation_pairs = sum(s.rotation_only for s in steps)
    rotation_only = rotation_pairs == len(steps)
    if rotation_only:
        # Consecutive frames can be too close for parallax to show; look across wider gaps too.
        gap = max(2, (t - 1) // 3)
        for i in range(0, t - gap, gap):
            wide, _ = pair(i, i + gap)
            if wide is not None and not wide.rotation_only:
                rotation_only = False
                notes.append(f"frames {i} and {i + gap} show parallax that consecutive frames do not: "
                             "the translation is underestimated")
                break
    if rotation_pairs:
        notes.append(f"{rotation_pairs} of {t - 1} frame pairs showed no parallax (taken as pure rotation)")
    progress(1.0, "two-view geometry")
    scales = _chain_scales(steps)
    w2c = np.zeros((t, 4, 4))
    w2c[0] = np.eye(4)
    for i, (s, k) in enumerate(zip(steps, scales)):
        rel = np.eye(4)
        rel[:3, :3] = s.R
        rel[:3, 3] = k * s.t
        w2c[i + 1] = rel @ w2c[i]
    return _TwoViewResult(np.linalg.inv(w2c), "", notes, rotation_only)


def _two_view(p1: np.ndarray, p2: np.ndarray, idx1: np.ndarray, idx2: np.ndarray, *, K: np.ndarray) -> _Step | None:
    """The relative pose of one frame pair from matched pixels (OpenCV convention)."""
    import cv2

    E, mask = cv2.findEssentialMat(p1, p2, K, method=cv2.RANSAC, prob=0.999, threshold=_RANSAC_PX)
    if E is None or mask is None:
        return None
    E = E[:3]  # several solutions may be stacked; RANSAC ranks the first best
    inl_e = mask.ravel().astype(bool)
    n, R, tvec, pose_mask, X = cv2.recoverPose(E, p1, p2, K, distanceThresh=1e4, mask=mask.copy())
    R_rot, inl_r = _fit_rotation(p1, p2, K)
    n_e = int(inl_e.sum())
    if R_rot is not None and inl_r.sum() >= _ROTATION_ONLY_SHARE * n_e:
        return _Step(R_rot, np.zeros(3), True, int(inl_r.sum()))
    if n < _MIN_MATCHES:
        return None
    good = pose_mask.ravel().astype(bool)
    X = X[:3] / X[3:]
    depth_this = X[2]
    depth_next = (R @ X + tvec.reshape(3, 1))[2]
    ok = good & np.isfinite(depth_this) & np.isfinite(depth_next) & (depth_this > 0) & (depth_next > 0)
    return _Step(R, tvec.ravel() / np.linalg.norm(tvec), False, int(n),
                 depth_next={int(k): float(z) for k, z in zip(idx2[ok], depth_next[ok])},
                 depth_this={int(k): float(z) for k, z in zip(idx1[ok], depth_this[ok])})


def _fit_rotation(p1: np.ndarray, p2: np.ndarray, K: np.ndarray) -> tuple[np.ndarray | None, np.ndarray]:
    """Best pure rotation x2 ~ K R K^-1 x1 (homography seed, then Procrustes on its inliers)."""
    import cv2

    H, _ = cv2.findHomography(p1, p2, cv2.RANSAC, _RANSAC_PX)
    if H is None:
        return None, np.zeros(len(p1), bool)
    Kinv = np.linalg.inv(K)
    R = _nearest_rotation(Kinv @ H @ K)
    b1 = np.c_[p1, np.ones(len(p1))] @ Kinv.T
    b1 /= np.linalg.norm(b1, axis=1, keepdims=True)
    b2 = np.c_[p2, np.ones(len(p2))] @ Kinv.T
    b2 /= np.linalg.norm(b2, axis=1, keepdims=True)
    inl = np.zeros(len(p1), bool)
    for _ in range(2):
        proj = b1 @ R.T @ K.T
        err = np.linalg.norm(proj[:, :2] / proj[:, 2:] - p2, axis=1)
        inl = (err < _RANSAC_PX) & (proj[:, 2] > 0)
        if inl.sum() < 3:
            return None, inl
        # Orthogonal Procrustes: the rotation taking the frame-1 rays onto the frame-2 rays.
        u, _, vt = np.linalg.svd(b2[inl].T @ b1[inl])
        R = u @ np.diag([1.0, 1.0, np.linalg.det(u @ vt)]) @ vt
    proj = b1 @ R.T @ K.T
    err = np.linalg.norm(proj[:, :2] / proj[:, 2:] - p2, axis=1)
    return R, (err < _RANSAC_PX) & (proj[:, 2] > 0)


def _nearest_rotation(m: np.ndarray) -> np.ndarray:
    u, _, vt = np.linalg.svd(m)
    d = np.sign(np.linalg.det(u @ vt))
    return u @ np.diag([1.0, 1.0, d]) @ vt


def _chain_scales(steps: Sequence[_Step]) -> list[float]:
    """Length of every step's translation, relative to the first translating step (length 1).

    A point triangulated by step i-1 (unit baseline) and by step i has one true depth in their
    shared frame, so the depth ratio carries the length over. Without shared points the previous
    length is kept; pure rotations have length 0 and leave the carried length unchanged.
    """
    scales: list[float] = []
    last: _Step | None = None
    last_scale = 1.0
    for step in steps:
        if step.rotation_only:
            scales.append(0.0)
            continue
        scale = last_scale
        if last is not None:
            shared = [k for k in step.depth_this if k in last.depth_next]
            if len(shared) >= _MIN_SHARED_POINTS:
                ratio = np.median([last.depth_next[k] / step.depth_this[k] for k in shared])
                if np.isfinite(ratio) and ratio > 0:
                    scale = last_scale * float(ratio)
        scales.append(scale)
        last, last_scale = step, scale
    return scales
