"""Camera adherence: how closely a generated clip's camera follows the path that was asked for.

The clip's camera poses are estimated by structure from motion with the path's intrinsics, then
scored against the path with CamI2V's metrics (RotErr, TransErr, CamMC: defined, with their
scale caveat, in `core.adherence_metrics`, whose names this module re-exports).

Estimators (``estimate_poses``), named in every result:

* ``"pycolmap"``: COLMAP SIFT features, sequential matching with geometric verification
  (RANSAC max error 4 px), then the global mapper (GLOMAP's, shipped in COLMAP 4) with the
  intrinsics fixed. This is CamI2V's protocol except that SIFT's affine-shape and
  domain-size-pooling options are off (they cost several times the whole run on a CPU). Needs
  the optional package pycolmap. On a camera that only rotates it fails (nothing can be
  triangulated) or, worse, returns wrong poses, which is why "auto" does not ask it then.
* ``"opencv"``: two-view geometry of consecutive frames (OpenCV SIFT, essential matrix with the
  known intrinsics, or a pure rotation when that model explains the matches as well: no
  parallax means no measurable translation), chained; the length of each step is carried over
  from the previous one through the depths of points seen in three consecutive frames. Cheap and
  dependency-free, exact for pure rotations, but it drifts over long clips, is only as good as
  its weakest pair, and on a flat scene (a wall, a Ken Burns render) the essential matrix can
  take the wrong one of its two planar solutions: a rougher estimate than the global SfM.
* ``"auto"`` (default): the OpenCV estimate first (a few seconds); when it finds no parallax
  anywhere (checked across wide frame gaps too) the camera only rotates, SfM cannot triangulate
  and that estimate is the answer; otherwise pycolmap, falling back to the OpenCV estimate when
  pycolmap is missing or fails (the result says why, in "fallback_reason").
"""

from __future__ import annotations

import importlib.util
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np

from .adherence_metrics import (  # noqa: F401  (re-exported: the metrics' home is adherence_metrics)
    NORM_EPS, cam_mc, cam_mc_errors, relative_to_first, rot_err, rotation_errors, score, trans_err,
    translation_errors)
from .clip import Clip
from .errors import InputError
from .progress import Progress, as_progress

if TYPE_CHECKING:  # pragma: no cover
    from .camera import CameraPath

METHODS = ("auto", "pycolmap", "opencv")
MIN_FRAMES = 3
_NO_PYCOLMAP = "pycolmap is not installed (pip install pycolmap)"
_SFM_MAX_IMAGE_SIZE = 768

# OpenCV estimator. Matches per pair below this count make the pair (and the clip) unusable.
_MIN_MATCHES = 20
_RATIO = 0.8  # Lowe's ratio test
_RANSAC_PX = 1.0  # epipolar / reprojection tolerance of the two-view models, pixels
# A pair counts as a pure rotation when the rotation-only model keeps this fraction of the
# essential matrix's inliers: a camera that does not translate gives no parallax, and the
# essential matrix's translation is then arbitrary.
_ROTATION_ONLY_SHARE = 0.95
_MIN_SHARED_POINTS = 8  # points seen in 3 consecutive frames needed to carry the step length over


# ---------------------------------------------------------------------------------------------
# Pose estimation


@dataclass(frozen=True)
class PoseEstimate:
    """What `estimate_poses` found.

    c2w: (T, 4, 4) float64 camera-to-world poses (arbitrary world frame and scale), or None.
    estimator: "pycolmap" | "opencv" when c2w is given. reason: one line saying why not (or, with
    "auto", why the first choice was not used). notes: details worth recording.
    """

    c2w: np.ndarray | None
    estimator: str | None
    reason: str = ""
    seconds: float = 0.0
    notes: tuple[str, ...] = field(default_factory=tuple)

    @property
    def ok(self) -> bool:
        return self.c2w is not None


def pycolmap_available() -> bool:
    return importlib.util.find_spec("pycolmap") is not None


def estimate_poses(clip: Clip | np.ndarray, K: np.ndarray, method: str = "auto",
                   progress: Progress | None = None, num_threads: int = -1) -> PoseEstimate:
    """Estimate the camera of every frame of `clip` by structure from motion.

    clip: a Clip or (T, H, W, 3) uint8 RGB frames. K: (3, 3) pixel intrinsics (or (T, 3, 3), of
    which frame 0's is used) in the CameraPath convention: continuous pixel coordinates with
    pixel centres at i + 0.5, as `CameraPath.K(width, height)` gives. method: "auto" |
    "pycolmap" | "opencv" (see the module docstring). num_threads: COLMAP's threads (-1: all
    cores). Never raises for a clip SfM cannot handle: returns c2w None with a one-line reason
    instead (Cancelled from `progress` does propagate).
    """
    if method not in METHODS:
        raise InputError(f"Unknown pose estimator {method!r}; use one of {', '.join(METHODS)}.")
    progress = as_progress(progress)
    frames = clip.frames if isinstance(clip, Clip) else np.asarray(clip)
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
        raise InputError(f"Frames must be a (T, H, W, 3) uint8 array, got {frames.dtype} {frames.shape}.")
    K = np.asarray(K, dtype=np.float64)
    if K.ndim == 3:
        K = K[0]
    if K.shape != (3, 3) or not np.isfinite(K).all() or K[0, 0] <= 0 or K[1, 1] <= 0:
        raise InputError(f"Intrinsics must be a (3, 3) pixel matrix with positive focal lengths, got {K.shape}.")
    t0 = time.perf_counter()
    if frames.shape[0] < MIN_FRAMES:
        return PoseEstimate(None, None, f"needs at least {MIN_FRAMES} frames, the clip has {frames.shape[0]}")

    if method == "pycolmap":
        if not pycolmap_available():
            return PoseEstimate(None, None, _NO_PYCOLMAP, seconds=time.perf_counter() - t0)
        c2w, reason = _estimate_pycolmap(frames, K, progress, num_threads)
        if c2w is None:
            return PoseEstimate(None, None, f"pycolmap: {reason}", seconds=time.perf_counter() - t0)
        return PoseEstimate(c2w, "pycolmap", seconds=time.perf_counter() - t0)

    use_sfm = method == "auto" and pycolmap_available()
    two_view = _estimate_opencv(frames, K, progress.sub(0.0, 0.15) if use_sfm else progress)
    notes = list(two_view.notes)
    if method == "opencv":
        if two_view.c2w is None:
            return PoseEstimate(None, None, f"opencv: {two_view.reason}", time.perf_counter() - t0, tuple(notes))
        return PoseEstimate(two_view.c2w, "opencv", "", time.perf_counter() - t0, tuple(notes))

    # auto
    if not use_sfm:
        first_reason = _NO_PYCOLMAP
    elif two_view.c2w is not None and two_view.rotation_only:
        # SfM needs parallax to triangulate; on a camera that only turns the global mapper fails or,
        # worse, returns confident nonsense (seen on Ken Burns pans), so it is not asked.
        first_reason = "pycolmap: not used, the camera only rotates (no parallax to triangulate)"
    else:
        c2w, reason = _estimate_pycolmap(frames, K, progress.sub(0.15, 1.0), num_threads)
        if c2w is not None:
            return PoseEstimate(c2w, "pycolmap", "", time.perf_counter() - t0, tuple(notes))
        first_reason = f"pycolmap: {reason}"
    seconds = time.perf_counter() - t0
    progress(1.0, "poses estimated")
    if two_view.c2w is None:
        return PoseEstimate(None, None, f"{first_reason}; opencv: {two_view.reason}", seconds, tuple(notes))
    return PoseEstimate(two_view.c2w, "opencv", first_reason, seconds, tuple(notes))


# -- pycolmap ---------------------------------------------------------------------------------

def _estimate_pycolmap(frames: np.ndarray, K: np.ndarray, progress: Progress,
                       num_threads: int) -> tuple[np.ndarray | None, str]:
    import cv2
    import pycolmap

    t = frames.shape[0]
    fx, fy, cx, cy = K[0, 0], K[1, 1], K[0, 2], K[1, 2]
    reader = pycolmap.ImageReaderOptions()
    # COLMAP's pixel convention is ours (centres at i + 0.5), so K goes in unchanged.
    if abs(fx / fy - 1.0) < 1e-3:
        reader.camera_model = "SIMPLE_PINHOLE"
        reader.camera_params = f"{(fx + fy) / 2:.9g},{cx:.9g},{cy:.9g}"
    else:
        reader.camera_model = "PINHOLE"
        reader.camera_params = f"{fx:.9g},{fy:.9g},{cx:.9g},{cy:.9g}"
    extraction = pycolmap.FeatureExtractionOptions()
    extraction.num_threads = num_threads
    # Features of SVD's 1024x576 frames are found on a 768-pixel copy (coordinates are scaled
    # back): half the extraction and matching time, no measurable loss at these motions.
    extraction.max_image_size = _SFM_MAX_IMAGE_SIZE
    matching = pycolmap.FeatureMatchingOptions()
    matching.num_threads = num_threads
    pairing = pycolmap.SequentialPairingOptions()
    verification = pycolmap.TwoViewGeometryOptions()
    verification.ransac.max_error = 4.0
    verification.ransac.random_seed = 0
    mapping = pycolmap.GlobalPipelineOptions()
    mapping.num_threads = num_threads
    mapping.random_seed = 0  # same clip, same poses
    ba = mapping.mapper.bundle_adjustment
    ba.refine_focal_length = False
    ba.refine_principal_point = False
    ba.refine_extra_params = False

    saved_level = pycolmap.logging.minloglevel
    pycolmap.logging.minloglevel = 3  # failures are reported by the return value, not glog
    try:
        with tempfile.TemporaryDirectory(prefix="adherence-") as tmp:
            root = Path(tmp)
            images = root / "images"
            images.mkdir()
            names = [f"frame_{i:05d}.png" for i in range(t)]
            for name, frame in zip(names, frames):
                cv2.imwrite(str(images / name), cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
            database = root / "database.db"
            progress(0.05, "SfM: features")
            pycolmap.extract_features(database, images, image_names=names, camera_mode=pycolmap.CameraMode.SINGLE,
                                      reader_options=reader, extraction_options=extraction)
            progress(0.35, "SfM: matching")
            pycolmap.match_sequential(database, matching_options=matching, pairing_options=pairing,
                                      verification_options=verification)
            progress(0.65, "SfM: global mapping")
            out = root / "sparse"
            out.mkdir()
            models = pycolmap.global_mapping(database, images, out, mapping)
            progress(1.0, "SfM: done")
            if not models:
                return None, ("no reconstruction (too little parallax, e.g. a camera that only rotates, "
                              "or too little texture)")
            best = max(models.values(), key=lambda r: r.num_reg_images())
            w2c: dict[int, np.ndarray] = {}
            for image in best.images.values():
                if image.has_pose and image.name in names:
                    w2c[names.index(image.name)] = image.cam_from_world().matrix()
    except (RuntimeError, ValueError) as exc:
        return None, f"failed ({str(exc).splitlines()[0] if str(exc) else type(exc).__name__})"
    finally:
        pycolmap.logging.minloglevel = saved_level
    if len(w2c) < t:
        missing = [i for i in range(t) if i not in w2c]
        return None, f"registered {len(w2c)} of {t} frames (first missing: frame {missing[0]})"
    full = np.zeros((t, 4, 4))
    full[:, 3, 3] = 1.0
    for i, m in w2c.items():
        full[i, :3] = m
    return np.linalg.inv(full), ""


# -- OpenCV two-view chaining -------------------------------------------------------------------

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


def _estimate_opencv(frames: np.ndarray, K: np.ndarray, progress: Progress) -> _TwoViewResult:
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


# ---------------------------------------------------------------------------------------------
# The one call the service makes


def measure_adherence(clip: Clip, path: "CameraPath", method: str = "auto",
                      progress: Progress | None = None, num_threads: int = -1) -> dict[str, Any]:
    """Estimate `clip`'s camera and score it against the requested `path`; JSON-ready.

    The path is resampled to the clip's frame count when they differ (a model that makes its own
    number of frames). Returns {"available": True, "estimator", "RotErr", "RotErr_deg",
    "TransErr", "CamMC", "per_frame", "frames", "seconds", "notes", "requested_relative_c2w",
    "estimated_relative_c2w"} (plus "fallback_reason" when "auto" had to use the OpenCV
    estimator), or {"available": False, "reason", "seconds"} when no pose estimate was possible.
    """
    t0 = time.perf_counter()
    notes: list[str] = []
    if path.num_frames != clip.num_frames:
        if clip.num_frames < 2:
            return {"available": False, "reason": "the clip has a single frame", "seconds": 0.0}
        notes.append(f"the {path.num_frames}-frame path was resampled to the clip's {clip.num_frames} frames")
        path = path.resampled(clip.num_frames)
    K = path.K(clip.width, clip.height)[0]
    est = estimate_poses(clip, K, method=method, progress=progress, num_threads=num_threads)
    if est.c2w is None:
        return {"available": False, "reason": est.reason, "seconds": round(time.perf_counter() - t0, 3)}
    out: dict[str, Any] = {"available": True, "estimator": est.estimator, "frames": clip.num_frames}
    out.update(score(path, est.c2w))
    if est.reason:
        out["fallback_reason"] = est.reason
    out["notes"] = notes + list(est.notes)
    out["seconds"] = round(time.perf_counter() - t0, 3)
    return out
