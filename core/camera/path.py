"""`CameraPath`: one world-to-camera pose and one set of normalised intrinsics per output frame,
validated on construction, with its JSON (run.json) and RealEstate10K text forms.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from ..errors import InputError
from . import realestate10k
from .geometry import (MAX_FRAMES, MAX_TRANSLATION, MIN_FRAMES, ROTATION_TOLERANCE, _interpolate_poses, _to44,
                       check_distance, check_num_frames, rotation_angle_deg)


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

    # -- RealEstate10K text (core.camera.realestate10k) ------------------------------------------

    def to_realestate10k(self, fps: float = 10.0, url: str | None = None) -> str:
        """RealEstate10K text (see `realestate10k.format_text`); reads back bit for bit."""
        return realestate10k.format_text(self.w2c, self.intrinsics, self.name, fps, url)

    @classmethod
    def from_realestate10k(cls, text: str, name: str | None = None, source: str = "camera file") -> "CameraPath":
        """Parse RealEstate10K text (also CamI2V demo files; see `realestate10k.parse_text`)."""
        poses, intr, name, relative = realestate10k.parse_text(text, name, source)
        return cls.from_c2w(poses, intr, name) if relative else cls(poses, intr, name)

    def save_realestate10k(self, path: str | Path, fps: float = 10.0) -> None:
        """Write the RealEstate10K text atomically: a full disk is `OutOfDiskSpace` and leaves
        neither a partial nor an empty file."""
        from ..fileio import atomic_write_bytes

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
