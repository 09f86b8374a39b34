"""Camera paths: conventions, round trips, SLERP, presets, keyframes, waypoints, validation."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from core.camera import (
    CAMI2V_TO_PRESET,
    MAX_FRAMES,
    PRESETS,
    CameraPath,
    Keyframe,
    cami2v_ratio_to_amount,
    check_num_frames,
    default_intrinsics,
    keyframe_path,
    keyframes_from_path,
    matrix_from_quat,
    pose_matrix,
    preset_path,
    quat_from_matrix,
    quat_slerp,
    rot_x,
    rot_y,
    rot_z,
    rotation_angle_deg,
    rotation_from_ypr,
    rotation_slerp,
    waypoint_path,
    ypr_from_rotation,
)
from core.errors import InputError


def random_rotations(rng: np.random.Generator, n: int) -> np.ndarray:
    q = rng.normal(size=(n, 4))
    return matrix_from_quat(q / np.linalg.norm(q, axis=1, keepdims=True))


def random_path(rng: np.random.Generator, n: int = 7, name: str = "random") -> CameraPath:
    c2w = pose_matrix(random_rotations(rng, n), rng.normal(size=(n, 3)) * 3)
    intr = np.column_stack([rng.uniform(0.4, 1.2, n), rng.uniform(0.4, 1.2, n),
                            rng.uniform(0.4, 0.6, n), rng.uniform(0.4, 0.6, n)])
    return CameraPath.from_c2w(c2w, intr, name)


def forward(c2w: np.ndarray) -> np.ndarray:
    return c2w[:3, 2]


# ---------------------------------------------------------------------------------------------
# Conventions and round trips


def test_w2c_c2w_round_trip_and_relative_identity():
    rng = np.random.default_rng(0)
    c2w = pose_matrix(random_rotations(rng, 6), rng.normal(size=(6, 3)))
    path = CameraPath.from_c2w(c2w, default_intrinsics(), "p")
    np.testing.assert_allclose(path.c2w(), c2w, atol=1e-12)
    np.testing.assert_allclose(path.w2c44() @ path.c2w(), np.broadcast_to(np.eye(4), (6, 4, 4)), atol=1e-12)
    assert path.w2c.shape == (6, 3, 4) and path.w2c.dtype == np.float64
    for ref in (0, 3):
        rel = path.relative_c2w(ref)
        np.testing.assert_allclose(rel[ref], np.eye(4), atol=1e-12)
        # rel_i = inv(c2w_ref) @ c2w_i
        np.testing.assert_allclose(rel[5], np.linalg.inv(c2w[ref]) @ c2w[5], atol=1e-12)
    np.testing.assert_allclose(path.relative_w2c(0) @ path.relative_c2w(0),
                               np.broadcast_to(np.eye(4), (6, 4, 4)), atol=1e-12)
    # Camera centre is where the w2c maps to the origin.
    centre = path.centres()[2]
    np.testing.assert_allclose(path.w2c[2, :, :3] @ centre + path.w2c[2, :, 3], 0.0, atol=1e-12)


def test_arrays_are_frozen_copies():
    src = np.broadcast_to(np.eye(4)[:3], (3, 3, 4)).copy()
    path = CameraPath(src, default_intrinsics(), "x")
    src[0, 0, 3] = 5.0
    assert path.w2c[0, 0, 3] == 0.0
    with pytest.raises(ValueError):
        path.w2c[0, 0, 0] = 2.0


def test_K_in_pixels_matches_cami2v_demo():
    path = preset_path("push-in", aspect=512 / 320)
    K = path.K(512, 320)
    assert K.shape == (16, 3, 3)
    # fx = fy = 0.5 * max(W, H), principal point at the centre.
    np.testing.assert_allclose(K[0], [[256, 0, 256], [0, 256, 160], [0, 0, 1]])
    np.testing.assert_allclose(default_intrinsics(1.0), [0.5, 0.5, 0.5, 0.5])
    # Portrait: the longer side is the height.
    np.testing.assert_allclose(default_intrinsics(0.5) * [100, 200, 100, 200], [100, 100, 50, 100])
    # 60 degrees across the longer side.
    fx = default_intrinsics(2.0, fov_deg=60.0)[0] * 200
    assert math.isclose(2 * math.degrees(math.atan(100 / fx)), 60.0)


def test_realestate10k_export_import_is_exact():
    path = random_path(np.random.default_rng(1), 9, name="my path/1")
    text = path.to_realestate10k(fps=10)
    lines = text.splitlines()
    assert lines[0].startswith("https://")
    assert len(lines) == 10
    fields = lines[2].split()
    assert len(fields) == 19 and fields[0] == "100000"  # microseconds at 10 fps
    back = CameraPath.from_realestate10k(text)
    assert back.name == "my path/1"
    assert np.array_equal(back.w2c, path.w2c) and np.array_equal(back.intrinsics, path.intrinsics)


def test_realestate10k_file_round_trip(tmp_path):
    path = preset_path("orbit-left", 12)
    f = tmp_path / "orbit.txt"
    path.save_realestate10k(f)
    back = CameraPath.load_realestate10k(f)
    assert back.name == "orbit-left"
    assert np.array_equal(back.w2c, path.w2c)
    with pytest.raises(InputError, match=r"Camera file not found: .*missing\.txt"):
        CameraPath.load_realestate10k(tmp_path / "missing.txt")


def test_json_round_trip_is_exact():
    path = random_path(np.random.default_rng(2), 5, name="j")
    data = json.loads(json.dumps(path.to_dict()))
    back = CameraPath.from_dict(data)
    assert back.name == "j" and data["num_frames"] == 5
    assert np.array_equal(back.w2c, path.w2c) and np.array_equal(back.intrinsics, path.intrinsics)
    assert CameraPath.from_json(path.to_json()).allclose(path, atol=0.0)
    with pytest.raises(InputError, match="missing 'intrinsics'"):
        CameraPath.from_dict({"w2c": path.w2c.tolist()})
    with pytest.raises(InputError, match="not valid JSON"):
        CameraPath.from_json("{nope")


def _mirrored_cami2v_style_text(yaws_deg: list[float]) -> str:
    """A file shaped like the CamI2V demo files: https://xxx header, dummy timestamps,
    normalised 0.5 intrinsics, and a world mirrored by diag(-1, 1, 1) so every w2c has det -1."""
    mirror = np.diag([-1.0, 1.0, 1.0])
    lines = ["https://xxx"]
    for yaw in yaws_deg:
        w2c = np.zeros((3, 4))
        w2c[:, :3] = rot_y(yaw).T @ mirror  # true c2w = rot_y(yaw), world seen through a mirror
        lines.append("114514 0.5 0.5 0.5 0.5 0.0 0.0 " + " ".join(f"{v:.9f}" for v in w2c.ravel()))
    return "\n".join(lines) + "\n"


def test_import_mirrored_cami2v_file_uses_relative_poses():
    yaws = [0.0, -10.0, -20.0, -30.0]
    text = _mirrored_cami2v_style_text(yaws)
    raw = np.array([l.split()[7:] for l in text.splitlines()[1:]], float).reshape(-1, 3, 4)
    assert np.all(np.linalg.det(raw[:, :, :3]) < 0)  # the file itself is all mirrors
    path = CameraPath.from_realestate10k(text, source="look left.txt")
    assert path.name == "imported"
    assert np.all(np.linalg.det(path.w2c[:, :, :3]) > 0)
    np.testing.assert_allclose(path.c2w()[0], np.eye(4), atol=1e-9)
    for i, yaw in enumerate(yaws):
        np.testing.assert_allclose(path.c2w()[i, :3, :3], rot_y(yaw), atol=1e-8)
    assert forward(path.c2w()[-1])[0] < 0  # a look-left turns the view towards -x
    np.testing.assert_allclose(path.intrinsics, 0.5)


def test_import_rejects_mixed_mirror_frames():
    text = _mirrored_cami2v_style_text([0.0, -10.0])
    good = "0 0.5 0.5 0.5 0.5 0 0 1 0 0 0 0 1 0 0 0 0 1 0"
    with pytest.raises(InputError, match=r"cam\.txt, line 4: rotation determinant \+1\.000 differs in sign"):
        CameraPath.from_realestate10k(text + good + "\n", source="cam.txt")


@pytest.mark.parametrize(
    "text, message",
    [
        ("https://x\n0 0.5 0.5 0.5 0.5 0 0 1 0 0 0 0 1 0 0 0 0 1 0\n0 0.5 0.5 0.5 0.5 0 0 1 0 0 0 0 1 0 0 0 0 1\n",
         r"cam\.txt, line 3: expected 19 numbers \(timestamp fx fy cx cy k1 k2 and the 12 entries of the 3x4 "
         r"world-to-camera matrix\), found 18\."),
        ("0 0.5 0.5 0.5 abc 0 0 1 0 0 0 0 1 0 0 0 0 1 0\n",
         r"cam\.txt, line 1, field 5: 'abc' is not a number\."),
        ("0 0.5 0.5 0.5 0.5 0 0 1 0 0 0 0 1 0 0 0 0 1 nan\n",
         r"cam\.txt, line 1, field 19: 'nan' is not a finite number\."),
        ("https://only-a-url\n\n", r"cam\.txt: no camera lines found"),
    ],
)
def test_malformed_realestate10k_lines(text, message):
    with pytest.raises(InputError, match=message):
        CameraPath.from_realestate10k(text, source="cam.txt")


# ---------------------------------------------------------------------------------------------
# Quaternions and SLERP


def test_quaternion_round_trip_including_half_turns():
    rng = np.random.default_rng(3)
    R = np.concatenate([random_rotations(rng, 200), rot_x(180.0)[None], rot_y(180.0)[None],
                        rot_z(180.0)[None], rot_z(179.999)[None], np.eye(3)[None]])
    q = quat_from_matrix(R)
    np.testing.assert_allclose(np.linalg.norm(q, axis=1), 1.0, atol=1e-12)
    assert np.all(q[:, 0] >= 0)
    np.testing.assert_allclose(matrix_from_quat(q), R, atol=1e-12)
    # (w, x, y, z) convention: 90 degrees about z.
    np.testing.assert_allclose(quat_from_matrix(rot_z(90.0)), [math.sqrt(0.5), 0, 0, math.sqrt(0.5)], atol=1e-12)


def test_slerp_midpoint_unit_norm_and_constant_speed():
    mid = rotation_slerp(rot_y(10.0), rot_y(70.0), 0.5)[0]
    np.testing.assert_allclose(mid, rot_y(40.0), atol=1e-12)
    # A generic axis: the midpoint is half the relative rotation.
    rng = np.random.default_rng(4)
    R0, R1 = random_rotations(rng, 2)
    mid = rotation_slerp(R0, R1, 0.5)[0]
    full = rotation_angle_deg(R0.T @ R1)
    assert math.isclose(float(rotation_angle_deg(R0.T @ mid)), full / 2, abs_tol=1e-9)
    assert math.isclose(float(rotation_angle_deg(mid.T @ R1)), full / 2, abs_tol=1e-9)
    u = np.linspace(0, 1, 11)
    q = quat_slerp(quat_from_matrix(R0), quat_from_matrix(R1), u)
    np.testing.assert_allclose(np.linalg.norm(q, axis=1), 1.0, atol=1e-12)
    Rs = matrix_from_quat(q)
    steps = rotation_angle_deg(np.swapaxes(Rs[:-1], 1, 2) @ Rs[1:])
    np.testing.assert_allclose(steps, full / 10, atol=1e-9)
    np.testing.assert_allclose(Rs[0], R0, atol=1e-12)
    np.testing.assert_allclose(Rs[-1], R1, atol=1e-12)


def test_slerp_takes_the_short_way():
    # 170 -> -170 degrees about z is a 20 degree turn through 180, not 340 through 0; the two
    # canonical (w >= 0) quaternions have a negative dot product.
    q0 = quat_from_matrix(rot_z(170.0))
    q1 = quat_from_matrix(rot_z(-170.0))
    assert np.dot(q0, q1) < 0
    for other in (q1, -q1):  # q and -q are the same rotation
        mid = matrix_from_quat(quat_slerp(q0, other, 0.5))
        np.testing.assert_allclose(mid, rot_z(180.0), atol=1e-12)


def test_ypr_round_trip_and_signs():
    for yaw, pitch, roll in [(30, 10, -5), (-120, -40, 170), (0, 0, 0), (179, 89, 1)]:
        got = ypr_from_rotation(rotation_from_ypr(yaw, pitch, roll))
        np.testing.assert_allclose(got, (yaw, pitch, roll), atol=1e-9)
    assert forward(pose_matrix(rotation_from_ypr(30, 0, 0), np.zeros(3)))[0] > 0  # yaw + turns right
    assert forward(pose_matrix(rotation_from_ypr(0, 30, 0), np.zeros(3)))[1] < 0  # pitch + looks up (-y)
    assert (rotation_from_ypr(0, 0, 30) @ [1, 0, 0])[1] > 0  # roll + swings the x axis down


# ---------------------------------------------------------------------------------------------
# Presets


def test_preset_table_maps_to_cami2v_names():
    expected = {
        "push-in": "zoom in", "pull-out": "zoom out", "slide-left": "pan left",
        "slide-right": "pan right", "pan-left": "look left", "pan-right": "look right",
        "tilt-up": "look up", "tilt-down": "look down", "orbit-left": "orbit left",
        "orbit-right": "orbit right", "crane-up": "pan up", "static": "stationary",
        "crane-down": "pan down", "arc-up": "orbit up", "roll-clockwise": "rotate clockwise",
        "roll-counterclockwise": "rotate anti-clockwise",
    }
    assert {k: v.cami2v_name for k, v in PRESETS.items()} == expected
    assert CAMI2V_TO_PRESET["look left"] == "pan-left"
    for pid, spec in PRESETS.items():
        assert spec.id == pid and spec.label and spec.description.endswith(".")
        assert 0.0 <= spec.default_amount <= 1.0 and spec.default_distance > 0
    assert PRESETS["pan-left"].default_amount == pytest.approx(0.3)


# (preset, expected relative c2w translation at amount 1, expected forward direction at amount 1)
FULL_GEOMETRY = [
    ("push-in", (0, 0, 1), (0, 0, 1)),
    ("pull-out", (0, 0, -1), (0, 0, 1)),
    ("slide-left", (-2, 0, 0), (0, 0, 1)),
    ("slide-right", (1, 0, 0), (0, 0, 1)),
    ("pan-left", (0, 0, 0), (-1, 0, 0)),
    ("pan-right", (0, 0, 0), (1, 0, 0)),
    ("tilt-up", (0, 0, 0), (0, -1, 0)),
    ("tilt-down", (0, 0, 0), (0, 1, 0)),
    ("orbit-left", (-3, 0, 3), (1, 0, 0)),
    ("orbit-right", (3, 0, 3), (-1, 0, 0)),
    ("crane-up", (0, -1, 0), (0, 1 / math.sqrt(101), 10 / math.sqrt(101))),
    ("crane-down", (0, 1, 0), (0, -1 / math.sqrt(101), 10 / math.sqrt(101))),
    ("arc-up", (0, -math.sqrt(2), 2 - math.sqrt(2)), (0, math.sqrt(0.5), math.sqrt(0.5))),
    ("static", (0, 0, 0), (0, 0, 1)),
]


@pytest.mark.parametrize("pid, t_end, fwd_end", FULL_GEOMETRY)
def test_full_trajectory_geometry_matches_cami2v_table(pid, t_end, fwd_end):
    path = preset_path(pid, num_frames=50, amount=1.0)
    rel = path.relative_c2w(0)
    np.testing.assert_allclose(rel[0], np.eye(4), atol=1e-12)
    np.testing.assert_allclose(rel[-1, :3, 3], t_end, atol=1e-9)
    np.testing.assert_allclose(forward(rel[-1]), fwd_end, atol=1e-9)


def test_orbit_keeps_looking_at_its_centre():
    rel = preset_path("orbit-left", 20, amount=0.7).relative_c2w(0)
    for pose in rel:
        to_centre = np.array([0.0, 0.0, 3.0]) - pose[:3, 3]
        np.testing.assert_allclose(forward(pose), to_centre / np.linalg.norm(to_centre), atol=1e-9)


def test_roll_presets_turn_the_picture_as_named():
    # A point right of centre, seen by the rolled camera: clockwise on screen (y down) = moves down.
    R = preset_path("roll-clockwise", 2, amount=0.1).relative_c2w(0)[-1, :3, :3]
    seen = R.T @ np.array([1.0, 0.0, 1.0])
    assert seen[1] > 0
    R = preset_path("roll-counterclockwise", 2, amount=0.1).relative_c2w(0)[-1, :3, :3]
    assert (R.T @ np.array([1.0, 0.0, 1.0]))[1] < 0


@pytest.mark.parametrize("pid", [p for p in PRESETS if p != "static"])
def test_default_amount_moves_in_the_named_direction(pid):
    rel = preset_path(pid).relative_c2w(0)
    t, fwd = rel[-1, :3, 3], forward(rel[-1])
    x_axis = rel[-1, :3, 0]
    expectations = {
        "push-in": t[2] > 0.1, "pull-out": t[2] < -0.1,
        "slide-left": t[0] < -0.1, "slide-right": t[0] > 0.1,
        "pan-left": fwd[0] < -0.3, "pan-right": fwd[0] > 0.3,
        "tilt-up": fwd[1] < -0.2, "tilt-down": fwd[1] > 0.2,
        "orbit-left": t[0] < -0.1 and fwd[0] > 0.05, "orbit-right": t[0] > 0.1 and fwd[0] < -0.05,
        "crane-up": t[1] < -0.1 and fwd[1] > 0, "crane-down": t[1] > 0.1 and fwd[1] < 0,
        "arc-up": t[1] < -0.1 and fwd[1] > 0.1,
        "roll-clockwise": x_axis[1] < -0.1, "roll-counterclockwise": x_axis[1] > 0.1,
    }
    assert expectations[pid], (pid, t, fwd)
    assert np.isclose(np.linalg.det(rel[:, :3, :3]), 1.0).all()


def test_amount_and_distance_scaling():
    a = preset_path("slide-left", 16, amount=0.1).motion_summary()
    b = preset_path("slide-left", 16, amount=0.2).motion_summary()
    assert b["tx"] == pytest.approx(2 * a["tx"]) and a["tx"] == pytest.approx(-0.2)
    r1 = preset_path("pan-right", 16, amount=0.1).motion_summary()["rotation_deg"]
    r2 = preset_path("pan-right", 16, amount=0.3).motion_summary()["rotation_deg"]
    assert (r1, r2) == (pytest.approx(9.0), pytest.approx(27.0))
    base = preset_path("orbit-right", 16, amount=0.4)
    far = preset_path("orbit-right", 16, amount=0.4, distance=2.5)
    np.testing.assert_allclose(far.relative_c2w()[:, :3, 3], 2.5 * base.relative_c2w()[:, :3, 3], atol=1e-12)
    np.testing.assert_allclose(far.relative_c2w()[:, :3, :3], base.relative_c2w()[:, :3, :3], atol=1e-12)
    # CameraPath.scaled does the same to an existing path.
    assert base.scaled(2.5).allclose(far)
    # Frames are evenly spaced along a linear preset (CamI2V resamples uniformly).
    tz = preset_path("push-in", 16, amount=0.3).relative_c2w()[:, 2, 3]
    np.testing.assert_allclose(np.diff(tz), 0.3 / 15, atol=1e-12)


def test_cami2v_ratio_and_easing():
    assert cami2v_ratio_to_amount(0.1, 16) == pytest.approx(15 / 159)
    assert cami2v_ratio_to_amount(1.0, 16) == 1.0
    tz = preset_path("push-in", 16, amount=0.3, easing="ease-in-out").relative_c2w()[:, 2, 3]
    steps = np.diff(tz)
    assert tz[-1] == pytest.approx(0.3) and np.all(steps > 0)
    assert steps[0] < 0.3 * steps[7] and steps[-1] < 0.3 * steps[7]  # at rest at both ends


def test_preset_errors():
    with pytest.raises(InputError, match=r"Unknown camera preset 'zoom-in'; choose one of push-in, "):
        preset_path("zoom-in")
    with pytest.raises(InputError, match=r"Move amount must be between 0 and 1, got 1\.5"):
        preset_path("push-in", amount=1.5)
    with pytest.raises(InputError, match=r"Move distance must be between 0 and 10, got -1"):
        preset_path("push-in", distance=-1)
    with pytest.raises(InputError, match=r"Easing must be one of linear, ease-in-out; got 'bouncy'"):
        preset_path("push-in", easing="bouncy")


def test_resampled_keeps_the_motion():
    for pid in ("push-in", "pan-left", "tilt-up"):
        np.testing.assert_allclose(preset_path(pid, 16).resampled(31).w2c, preset_path(pid, 31).w2c, atol=1e-12)
    orbit = preset_path("orbit-left", 16, amount=0.5)
    dense = orbit.resampled(61)
    np.testing.assert_allclose(dense.w2c, preset_path("orbit-left", 61, amount=0.5).w2c, atol=2e-4)
    assert dense.resampled(16).allclose(orbit, atol=2e-4)
    assert orbit.resampled(16) is orbit


# ---------------------------------------------------------------------------------------------
# Keyframes and waypoints


def test_keyframe_path_hits_keys_and_eases():
    kfs = [Keyframe(0.0), Keyframe(1.0, (0.2, 0.0, 0.6), yaw=30.0, pitch=-10.0)]
    path = keyframe_path(kfs, 21)
    rel = path.relative_c2w(0)
    np.testing.assert_allclose(path.c2w()[0], np.eye(4), atol=1e-12)
    np.testing.assert_allclose(rel[-1], kfs[1].c2w(), atol=1e-12)
    speed = np.linalg.norm(np.diff(rel[:, :3, 3], axis=0), axis=1)
    assert speed[0] < 0.2 * speed[10] and speed[-1] < 0.2 * speed[10]
    # Rotation follows the same timing as the position (SLERP at the eased parameter).
    angles = rotation_angle_deg(rel[:, :3, :3])
    dist = np.linalg.norm(rel[:, :3, 3], axis=1)
    np.testing.assert_allclose(angles / angles[-1], dist / dist[-1], atol=1e-9)
    linear = keyframe_path(kfs, 21, ease=False).relative_c2w(0)
    np.testing.assert_allclose(np.linalg.norm(np.diff(linear[:, :3, 3], axis=0), axis=1),
                               np.linalg.norm(kfs[1].position) / 20, atol=1e-12)


def test_keyframe_path_passes_through_interior_keys_in_time_order():
    kfs = [Keyframe(1.0, (1.0, 0.0, 1.0), yaw=20.0), Keyframe(0.0), Keyframe(0.5, (0.0, 0.0, 1.0))]
    path = keyframe_path(kfs, 21)
    rel = path.relative_c2w(0)
    np.testing.assert_allclose(rel[10], Keyframe(0.5, (0.0, 0.0, 1.0)).c2w(), atol=1e-12)
    np.testing.assert_allclose(rel[20], kfs[0].c2w(), atol=1e-12)


@pytest.mark.parametrize("pid", ["push-in", "pan-left", "tilt-down", "slide-right"])
def test_keyframes_from_preset_reproduce_it(pid):
    path = preset_path(pid, 16, amount=0.5)
    kfs = keyframes_from_path(path, 4)
    assert [round(k.time, 6) for k in kfs] == [0.0, round(5 / 15, 6), round(10 / 15, 6), 1.0]
    again = keyframe_path(kfs, 16, ease=False)
    np.testing.assert_allclose(again.w2c, path.w2c, atol=1e-9)
    with pytest.raises(InputError, match="Number of keyframes must be between 2 and 16, got 1"):
        keyframes_from_path(path, 1)


def test_keyframe_dict_round_trip():
    kf = Keyframe(0.25, (0.1, -0.2, 0.3), 12.0, -3.0, 1.5)
    assert Keyframe.from_dict(json.loads(json.dumps(kf.to_dict()))) == kf
    back = Keyframe.from_c2w(0.25, kf.c2w())
    np.testing.assert_allclose([back.yaw, back.pitch, back.roll, *back.position],
                               [12.0, -3.0, 1.5, 0.1, -0.2, 0.3], atol=1e-9)


@pytest.mark.parametrize(
    "kfs, message",
    [
        ([], "A keyframe path needs at least one keyframe."),
        ([Keyframe(0.0), Keyframe(1.2)], r"Keyframe 2: time must be in \[0, 1\], got 1\.2\."),
        ([Keyframe(0.5), Keyframe(0.5, (1, 0, 0))], "Two keyframes share the time 0.5; times must differ."),
        ([Keyframe(0.0), Keyframe(1.0, yaw=float("nan"))], "Keyframe 2: time, position"),
        ([Keyframe(0.0), Keyframe(1.0, yaw=200.0)],
         r"Keyframes at times 0 and 1 differ by 160 degrees"),  # fine: the short way is 160
    ],
)
def test_keyframe_errors(kfs, message):
    if "160 degrees" in message:
        keyframe_path(kfs, 4)  # 200 degrees of yaw is a 160 degree turn the other way: allowed
        with pytest.raises(InputError, match=r"Keyframes at times 0 and 1 differ by 180 degrees of rotation"):
            keyframe_path([Keyframe(0.0), Keyframe(1.0, yaw=180.0)], 4)
        return
    with pytest.raises(InputError, match=message):
        keyframe_path(kfs, 4)


def test_waypoint_centre_click_is_a_push_in():
    path = waypoint_path([(0.5, 0.5)], 11, depth=0.8)
    rel = path.relative_c2w(0)
    np.testing.assert_allclose(rel[:, :3, :3], np.broadcast_to(np.eye(3), (11, 3, 3)), atol=1e-12)
    np.testing.assert_allclose(rel[-1, :3, 3], (0, 0, 0.8), atol=1e-12)
    assert np.all(np.diff(rel[:, 2, 3]) > 0)


def test_waypoints_travel_through_clicked_points_and_look_ahead():
    aspect = 1.6
    intr = default_intrinsics(aspect)
    pts = [(0.75, 0.5), (0.75, 0.25)]  # right of centre, then up
    depth = 1.0
    path = waypoint_path(pts, 41, depth=depth, aspect=aspect)
    rel = path.relative_c2w(0)
    np.testing.assert_allclose(rel[0], np.eye(4), atol=1e-12)
    p1 = depth * np.array([(0.75 - 0.5) / intr[0], 0.0, 1.0])
    p2 = depth * np.array([(0.75 - 0.5) / intr[0], (0.25 - 0.5) / intr[1], 1.0])
    # The first point is reached at the time proportional to its share of the distance.
    share = np.linalg.norm(p1) / (np.linalg.norm(p1) + np.linalg.norm(p2 - p1))
    hits = np.min(np.linalg.norm(rel[:, :3, 3] - p1, axis=1))
    assert hits < 0.05 * np.linalg.norm(p1)
    i_hit = int(np.argmin(np.linalg.norm(rel[:, :3, 3] - p1, axis=1)))
    assert abs(i_hit / 40 - share) <= 1.5 / 40
    np.testing.assert_allclose(rel[-1, :3, 3], p2, atol=1e-12)
    # Turned right towards the first point; at the end looking up (-y) along the last leg.
    assert forward(rel[i_hit])[0] > 0.2
    # Looking where it goes: forward follows the direction of motion at the waypoints.
    motion = rel[-1, :3, 3] - rel[-2, :3, 3]
    assert np.degrees(np.arccos(forward(rel[-1]) @ motion / np.linalg.norm(motion))) < 3.0
    assert forward(rel[-1])[1] < -0.3
    assert abs(ypr_from_rotation(rel[-1, :3, :3])[2]) < 1e-9  # no roll


def test_waypoint_errors():
    with pytest.raises(InputError, match=r"Waypoint 2 is \(1\.2, 0\.5\); image points must lie in \[0, 1\] x \[0, 1\]\."):
        waypoint_path([(0.5, 0.5), (1.2, 0.5)])
    with pytest.raises(InputError, match="Waypoints must be a non-empty list of"):
        waypoint_path([])
    with pytest.raises(InputError, match="Waypoints 1 and 2 are the same point"):
        waypoint_path([(0.3, 0.3), (0.3, 0.3)])


# ---------------------------------------------------------------------------------------------
# Validation


def _identity_path(n: int = 4) -> tuple[np.ndarray, np.ndarray]:
    return np.broadcast_to(np.eye(4)[:3], (n, 3, 4)).copy(), np.tile(default_intrinsics(), (n, 1))


def test_validation_messages():
    w2c, intr = _identity_path()
    bad = w2c.copy()
    bad[2, 1, 3] = np.nan
    with pytest.raises(InputError, match=r"^Camera path 'p', frame 2: contains a non-finite number \(NaN or inf\)\.$"):
        CameraPath(bad, intr, "p")
    bad_intr = intr.copy()
    bad_intr[1, 0] = np.inf
    with pytest.raises(InputError, match=r"frame 1: contains a non-finite number"):
        CameraPath(w2c, bad_intr, "p")
    mirror = w2c.copy()
    mirror[0, :, :3] = np.diag([-1.0, 1.0, 1.0])
    with pytest.raises(InputError, match=r"^Camera path 'p', frame 0: the rotation has determinant -1\.000 "
                                         r"\(a mirror, not a camera rotation\); only det \+1 rotations are allowed\.$"):
        CameraPath(mirror, intr, "p")
    sheared = w2c.copy()
    sheared[3, 0, 1] = 0.3
    with pytest.raises(InputError, match=r"frame 3: the 3x3 rotation is not orthonormal \(max \|R\^T R - I\| = 0\.3 > 0\.002\)"):
        CameraPath(sheared, intr, "p")
    far = w2c.copy()
    far[1, 0, 3] = 2000.0
    with pytest.raises(InputError, match=r"frame 1: translation of 2000 units is absurd \(limit 1000\)\."):
        CameraPath(far, intr, "p")
    flat = intr.copy()
    flat[2, 1] = 0.0
    with pytest.raises(InputError, match=r"frame 2: focal lengths must be positive, got fx=0\.5, fy=0 \(normalised\)\."):
        CameraPath(w2c, flat, "p")
    with pytest.raises(InputError, match=r"poses must have shape \(frames, 3, 4\), got \(4, 3, 3\)"):
        CameraPath(w2c[:, :, :3], intr, "p")
    with pytest.raises(InputError, match=r"intrinsics must have shape \(4, 4\), got \(3, 4\)"):
        CameraPath(w2c, intr[:3], "p")


def test_frame_count_limits():
    w2c, intr = _identity_path(1)
    with pytest.raises(InputError, match=r"Camera path 'p' has 1 frame\(s\); a path needs between 2 and 1024\."):
        CameraPath(w2c, intr, "p")
    w2c, intr = _identity_path(MAX_FRAMES + 1)
    with pytest.raises(InputError, match="has 1025 frame"):
        CameraPath(w2c, intr, "p")
    assert preset_path("push-in", MAX_FRAMES).num_frames == MAX_FRAMES
    assert check_num_frames(16.0) == 16
    with pytest.raises(InputError, match=r"Number of frames must be between 2 and 1024, got 0\."):
        check_num_frames(0)
    with pytest.raises(InputError, match=r"Number of frames must be a whole number, got 2\.5\."):
        check_num_frames(2.5)
    with pytest.raises(InputError, match=r"Number of frames must be a whole number, got 'x'\."):
        check_num_frames("x")
    with pytest.raises(InputError, match="between 2 and 1024"):
        preset_path("push-in", num_frames=1)


def test_tolerates_float32_rounding_of_rotations():
    path = preset_path("orbit-left", 8, amount=0.6)
    rounded = CameraPath(path.w2c.astype(np.float32).astype(np.float64), path.intrinsics, "f32")
    assert rounded.allclose(path, atol=1e-6)
