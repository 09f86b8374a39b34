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
from typing import TYPE_CHECKING, Any

import numpy as np

from .adherence_metrics import (  # noqa: F401  (re-exported: the metrics' home is adherence_metrics)
    NORM_EPS, cam_mc, cam_mc_errors, relative_to_first, rot_err, rotation_errors, score, trans_err,
    translation_errors)
from .clip import Clip
from .errors import InputError
from .adherence_opencv import estimate_opencv as _estimate_opencv
from .progress import Progress, as_progress

if TYPE_CHECKING:  # pragma: no cover
    from .camera import CameraPath

METHODS = ("auto", "pycolmap", "opencv")
MIN_FRAMES = 3
_NO_PYCOLMAP = "pycolmap is not installed (pip install pycolmap)"
_SFM_MAX_IMAGE_SIZE = 768



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
