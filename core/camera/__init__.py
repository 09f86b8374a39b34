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

The package, by seam: `geometry` (validation, rotations, quaternions, poses, intrinsics, the
spline machinery), `path` (`CameraPath` with its JSON form), `realestate10k` (the text format),
`presets` (named moves, CamI2V's demo trajectories in closed form) and `keyframes` (keyframed and
waypoint paths, extending and re-basing for long shots). Every name is importable from
`core.camera` as before.

Everything here is float64 numpy and free of side effects; no torch.
"""

from __future__ import annotations

from .geometry import (  # noqa: F401
    DEFAULT_ASPECT, DEFAULT_FOV_DEG, MAX_FRAMES, MAX_TRANSLATION, MIN_FRAMES, ROTATION_TOLERANCE,
    check_amount, check_aspect, check_distance, check_fov, check_num_frames, check_points, default_intrinsics,
    look_direction_ypr, matrix_from_quat, pose_matrix, quat_from_matrix, quat_slerp, rot_x, rot_y, rot_z,
    rotation_angle_deg, rotation_from_ypr, rotation_slerp, ypr_from_rotation,
)
from .realestate10k import (  # noqa: F401
    URL_PREFIX,
)
from .path import (  # noqa: F401
    CameraPath,
)
from .presets import (  # noqa: F401
    CAMI2V_TO_PRESET, EASINGS, PRESETS, cami2v_ratio_to_amount, preset_path, PresetSpec, Trajectory,
)
from .keyframes import (  # noqa: F401
    extend_path, Keyframe, keyframe_path, keyframes_from_path, rebase_path, waypoint_path,
)
