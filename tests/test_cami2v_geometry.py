"""Camera geometry of CamI2V: relative poses, pair transforms, zero-translation perturbation,
fundamental matrices, epipolar masks, Plücker rays, MotionCtrl RT — synthetic checks and the
upstream golden values (512x320 fixture). The golden pose-encoder features are checked in
test_cami2v_unet.py, which builds the 512x320 pose encoder anyway."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from core.models.cami2v import camera as C
from core.models.cami2v.config import EpipolarParams, PoseEncoderParams
from core.models.cami2v.pose_encoder import PoseEncoder, sinusoidal_table


def _golden(golden_dir, name):
    return torch.load(golden_dir / "cami2v512" / name, weights_only=False)


def _slide_c2w(frames: int = 4, step: float = 0.5) -> torch.Tensor:
    c2w = torch.eye(4).repeat(1, frames, 1, 1)
    c2w[0, :, 0, 3] = torch.arange(frames) * step
    return c2w


def _K(f=32.0, cx=32.0, cy=24.0):
    return torch.tensor([[[f, 0.0, cx], [0.0, f, cy], [0.0, 0.0, 1.0]]])


# -- synthetic ------------------------------------------------------------------------------------


def test_relative_poses_reference_is_identity_and_translation_scales():
    c2w = _slide_c2w()
    c2w[0, :, :3, :3] = torch.linalg.matrix_exp(torch.tensor([[0.0, -0.3, 0], [0.3, 0, 0], [0, 0, 0]]))
    rel = C.relative_poses(c2w, ref_index=1, translation_scale=2.0)
    torch.testing.assert_close(rel[0, 1], torch.eye(4))
    unscaled = torch.linalg.inv(c2w[0, 1]) @ c2w[0, 3]
    torch.testing.assert_close(rel[0, 3, :3, :3], unscaled[:3, :3])
    torch.testing.assert_close(rel[0, 3, :3, 3], 2.0 * unscaled[:3, 3])


def test_pairwise_transforms_map_camera_i_to_camera_j():
    rel = C.relative_poses(_slide_c2w(3, 1.0))
    pairs = C.pairwise_transforms(rel)
    assert pairs.shape == (1, 3, 3, 4, 4)
    # a world point seen from camera 0 at x=0, expressed in camera 2 (which sits at x=2)
    p_cam0 = torch.tensor([0.0, 0.0, 5.0, 1.0])
    torch.testing.assert_close(pairs[0, 0, 2] @ p_cam0, torch.tensor([-2.0, 0.0, 5.0, 1.0]))
    torch.testing.assert_close(pairs[0, 1, 1], torch.eye(4))


def test_perturbation_only_touches_zero_translations_and_is_injectable():
    t = torch.tensor([[[0.0], [0.0], [0.0]], [[1.0], [0.0], [0.0]], [[0.0], [5e-7], [0.0]]])
    noise = torch.full_like(t, 3.0)
    out = C.perturb_zero_translations(t, noise, eps=1e-6)
    torch.testing.assert_close(out[0], torch.full((3, 1), 3e-6))
    torch.testing.assert_close(out[1], t[1])
    torch.testing.assert_close(out[2], torch.full((3, 1), 3e-6))
    g1, g2 = torch.Generator().manual_seed(5), torch.Generator().manual_seed(5)
    torch.testing.assert_close(C.perturb_zero_translations(t, generator=g1), C.perturb_zero_translations(t, generator=g2))
    assert not torch.equal(C.perturb_zero_translations(t, generator=torch.Generator().manual_seed(6)),
                           C.perturb_zero_translations(t, generator=torch.Generator().manual_seed(5)))


def test_fundamental_matrix_satisfies_epipolar_constraint():
    torch.manual_seed(0)
    K = _K()
    angle = torch.tensor([[0.0, -0.2, 0.1], [0.2, 0.0, -0.05], [-0.1, 0.05, 0.0]])
    c2w = torch.eye(4).repeat(1, 2, 1, 1)
    c2w[0, 1, :3, :3] = torch.linalg.matrix_exp(angle)
    c2w[0, 1, :3, 3] = torch.tensor([0.7, -0.2, 0.3])
    pairs = C.pairwise_transforms(c2w)
    F = C.fundamental_matrices(K, pairs[..., :3, :3], pairs[..., :3, 3:4])
    pts = torch.cat([torch.rand(20, 2) * 4 - 2, torch.rand(20, 1) * 5 + 3], dim=1)  # camera-0 coords
    def project(p):
        q = (K[0] @ p.T).T
        return torch.cat([q[:, :2] / q[:, 2:], torch.ones(len(p), 1)], dim=1)
    x0 = project(pts)
    x1 = project((pairs[0, 0, 1, :3, :3] @ pts.T).T + pairs[0, 0, 1, :3, 3])
    residual = torch.einsum("ni,ij,nj->n", x1, F[0, 0, 1], x0)
    line_norm = (F[0, 0, 1] @ x0.T)[:2].norm(dim=0)
    assert (residual.abs() / line_norm).max() < 1e-3  # pixels from the line


def test_fundamental_matrix_with_per_frame_intrinsics_holds_for_a_zoom():
    """Each frame its own focal length (a zoom): x_j^T F_ij x_i = 0 with x_i projected by K_i."""
    torch.manual_seed(1)
    Ks = torch.cat([_K(f=f) for f in (30.0, 36.0, 45.0)])[None]  # (1, 3, 3, 3)
    c2w = torch.eye(4).repeat(1, 3, 1, 1)
    for i, (yaw, tx) in enumerate([(0.0, 0.0), (0.1, 0.4), (-0.15, 0.9)]):
        c2w[0, i, :3, :3] = torch.linalg.matrix_exp(torch.tensor([[0.0, 0, yaw], [0, 0, 0], [-yaw, 0, 0]]))
        c2w[0, i, :3, 3] = torch.tensor([tx, 0.1 * i, 0.2 * i])
    pairs = C.pairwise_transforms(c2w)
    F = C.fundamental_matrices(Ks, pairs[..., :3, :3], pairs[..., :3, 3:4])
    world = torch.cat([torch.rand(10, 2) * 4 - 2, torch.rand(10, 1) * 5 + 4, torch.ones(10, 1)], dim=1)
    def pixels(i):
        cam = (torch.linalg.inv(c2w[0, i]) @ world.T)[:3]
        q = Ks[0, i] @ cam
        return (q / q[2:]).T  # (10, 3) homogeneous
    for i in range(3):
        for j in range(3):
            if i != j:
                residual = (pixels(j) * (F[0, i, j] @ pixels(i).T).T).sum(-1)
                line_norm = (F[0, i, j] @ pixels(i).T)[:2].norm(dim=0)
                assert (residual.abs() / line_norm).max() < 1e-3, (i, j)


def test_per_frame_intrinsics_equal_shared_ones_bit_for_bit():
    """Constant per-frame K (B, T, 3, 3) gives exactly what one shared K (B, 3, 3) gives."""
    rel = C.relative_poses(_slide_c2w(4, 0.3))
    pairs = C.pairwise_transforms(rel)
    t = C.perturb_zero_translations(pairs[..., :3, 3:4], torch.randn(1, 4, 4, 3, 1))
    shared, per_frame = _K(), _K()[:, None].repeat(1, 4, 1, 1)
    F1 = C.fundamental_matrices(shared, pairs[..., :3, :3], t)
    F2 = C.fundamental_matrices(per_frame, pairs[..., :3, :3], t)
    assert torch.equal(F1, F2)
    pose = PoseEncoderParams(channels=(32, 64), blocks_per_level=1, num_heads=2, max_frames=16)
    enc = PoseEncoder(pose).eval()
    kw = dict(pose_encoder=enc, epipolar=EpipolarParams(mask_levels=(1, 2)), translation_noise=torch.randn(1, 4, 4, 3, 1))
    a = C.build_camera_condition("cami2v", rel, _K(cx=32, cy=32), 64, 64, **kw)
    b = C.build_camera_condition("cami2v", rel, _K(cx=32, cy=32)[:, None].repeat(1, 4, 1, 1), 64, 64, **kw)
    assert all(torch.equal(x, y) for x, y in zip(a.pose_features, b.pose_features))
    assert all(torch.equal(a.epipolar_masks[k], b.epipolar_masks[k]) for k in a.epipolar_masks)
    # a zoom changes the Plücker rays of the zoomed frames only
    zoom = _K(cx=32, cy=32)[:, None].repeat(1, 4, 1, 1)
    zoom[:, 3, 0, 0] = zoom[:, 3, 1, 1] = 40.0
    pl_a = C.plucker_embedding(_K(cx=32, cy=32), rel, 64, 64)
    pl_z = C.plucker_embedding(zoom, rel, 64, 64)
    assert torch.equal(pl_a[:, :, :3], pl_z[:, :, :3]) and not torch.allclose(pl_a[:, :, 3], pl_z[:, :, 3])
    with pytest.raises(ValueError, match="intrinsics"):
        C.build_camera_condition("cami2v", rel, zoom[:, :3], 64, 64, **kw)


def test_perturbation_replays_recorded_values():
    """The perturbed translations themselves can be injected (replay) and give the same masks."""
    rel = C.relative_poses(_slide_c2w(3, 0.3))
    pairs = C.pairwise_transforms(rel)
    t = pairs[..., :3, 3:4]
    noise = torch.randn(1, 3, 3, 3, 1)
    drawn = C.perturb_zero_translations(t, noise)
    assert torch.equal(C.perturb_zero_translations(t, values=drawn), drawn)
    # values only land on the zero translations
    other = torch.full_like(t, 7.0)
    replay = C.perturb_zero_translations(t, values=other)
    assert torch.equal(replay[0, 0, 1], t[0, 0, 1]) and torch.equal(replay[0, 1, 1], other[0, 1, 1])
    pose = PoseEncoderParams(channels=(32, 64), blocks_per_level=1, num_heads=2, max_frames=16)
    enc = PoseEncoder(pose).eval()
    kw = dict(pose_encoder=enc, epipolar=EpipolarParams(mask_levels=(2,)))
    a = C.build_camera_condition("cami2v", rel, _K(cx=32, cy=32), 64, 64, translation_noise=noise, **kw)
    b = C.build_camera_condition("cami2v", rel, _K(cx=32, cy=32), 64, 64, translation_values=drawn, **kw)
    assert torch.equal(a.epipolar_masks[2], b.epipolar_masks[2])


def test_epipolar_mask_contains_true_correspondence_and_registers():
    K = _K(f=32.0, cx=32.0, cy=32.0)
    rel = C.relative_poses(_slide_c2w(2, 1.0))
    pairs = C.pairwise_transforms(rel)
    t = C.perturb_zero_translations(pairs[..., :3, 3:4], torch.randn(1, 2, 2, 3, 1))
    F = C.fundamental_matrices(K, pairs[..., :3, :3], t)
    mask = C.epipolar_mask(F, 64, 64, stride=16, num_register_tokens=3)
    hw = 16
    assert mask.shape == (1, 1, 2 * hw, 3 + 2 * hw) and mask.dtype == torch.bool
    assert mask[..., :3].all()
    body = mask[0, 0, :, 3:].view(2, 4, 4, 2, 4, 4)  # (i, y, x, j, y', x')
    # a sideways camera move: epipolar lines are horizontal, so cell (y, x) of frame 0 sees the
    # whole row y of frame 1 and nothing else
    for y in range(4):
        assert body[0, y, 1, 1, y].all() and not body[0, y, 1, 1].sum() - body[0, y, 1, 1, y].sum()
    # the same frame: a random line through the point itself always contains the point
    for i in range(2):
        assert torch.diagonal(body[i, :, :, i].reshape(hw, hw)).all()


def test_epipolar_mask_degenerate_pair_is_false():
    F = torch.zeros(1, 1, 1, 3, 3)
    mask = C.epipolar_mask(F, 32, 32, 16, num_register_tokens=1)
    assert mask[..., 0].all() and not mask[..., 1:].any()


def test_plucker_is_unit_direction_and_moment_orthogonal():
    c2w = _slide_c2w(3, 0.4)
    c2w[0, 2, :3, :3] = torch.linalg.matrix_exp(torch.tensor([[0.0, 0, 0.3], [0, 0, 0], [-0.3, 0, 0]]))
    pl = C.plucker_embedding(_K(), C.relative_poses(c2w), 48, 64)
    assert pl.shape == (1, 6, 3, 48, 64) and pl.dtype == torch.float32
    moment, d = pl[:, :3], pl[:, 3:]
    torch.testing.assert_close(d.norm(dim=1), torch.ones(1, 3, 48, 64))
    assert (moment * d).sum(dim=1).abs().max() < 1e-5
    assert pl[:, :3, 0].abs().max() == 0  # the reference camera sits at the origin
    # the ray through the principal point of the reference camera is the optical axis
    torch.testing.assert_close(pl[0, 3:, 0, 23:25, 31:33].mean(dim=(1, 2)), torch.tensor([0.0, 0.0, 1.0]), atol=1e-2, rtol=0)


def test_motion_rt_is_relative_w2c():
    rel = C.relative_poses(_slide_c2w(3, 0.5))
    rt = C.motion_rt(rel)
    assert rt.shape == (1, 3, 12)
    torch.testing.assert_close(rt[0, 2].view(3, 4), torch.tensor([[1.0, 0, 0, -1.0], [0, 1, 0, 0], [0, 0, 1, 0]]))


def test_build_camera_condition_layouts():
    pose = PoseEncoderParams(channels=(32, 64), blocks_per_level=1, num_heads=2, max_frames=16)
    enc = PoseEncoder(pose).eval()
    rel = C.relative_poses(_slide_c2w(4, 0.3))
    cond = C.build_camera_condition("cami2v", rel, _K(cx=32, cy=32), 64, 64, pose_encoder=enc,
                                    epipolar=EpipolarParams(mask_levels=(2,)), generator=torch.Generator().manual_seed(0),
                                    dtype=torch.bfloat16)
    assert cond.batch == 1 and cond.frames == 4
    assert [tuple(f.shape) for f in cond.pose_features] == [(1, 64, 4, 32), (1, 16, 4, 64)]
    assert all(f.dtype == torch.bfloat16 for f in cond.pose_features)
    assert set(cond.epipolar_masks) == {2} and cond.epipolar_masks[2].shape == (1, 1, 64, 4 + 64)
    # the token layout is (b h w) t c: feature map (B*T, C, h, w) position (y, x) of frame t
    raw = enc(C.plucker_embedding(_K(cx=32, cy=32), rel, 64, 64))
    torch.testing.assert_close(cond.pose_features[1][0, 2 * 4 + 1, 3].float(), raw[1][3, :, 2, 1], atol=0.05, rtol=0.02)
    mc = C.build_camera_condition("motionctrl", rel, _K(), 64, 64)
    assert mc.pose_features is None and mc.motion_rt.shape == (1, 4, 12)
    with pytest.raises(ValueError):
        C.build_camera_condition("cameractrl", rel, _K(), 64, 64)
    with pytest.raises(ValueError, match="batch"):
        C.CameraCondition("motionctrl", 2, 4).check_for("motionctrl", 3, 4)
    with pytest.raises(ValueError, match="cameractrl"):
        mc.check_for("cameractrl", 1, 4)


# -- golden (512x320, upstream CPU float32) --------------------------------------------------------


def test_golden_relative_pairs_fundamental(golden_dir):
    g = _golden(golden_dir, "camera_inputs_and_geometry.pt")
    c2w = torch.linalg.inv(g["RT_w2c"])
    rel = C.relative_poses(c2w, int(g["cond_frame_index"][0]), float(g["trace_scale_factor"]))
    torch.testing.assert_close(rel, g["relative_c2w"], atol=1e-6, rtol=0)
    pairs = C.pairwise_transforms(rel)
    torch.testing.assert_close(pairs, g["relative_c2w_pairs"], atol=1e-6, rtol=0)
    torch.testing.assert_close(pairs[..., :3, 3:4], g["t_before_perturb"], atol=1e-6, rtol=0)
    # upstream drew the perturbation with torch.randn_like right after manual_seed(1234)
    noise = torch.randn(1, 16, 16, 3, 1, generator=torch.Generator().manual_seed(1234))
    torch.testing.assert_close(C.perturb_zero_translations(g["t_before_perturb"], noise), g["t_after_perturb"],
                               atol=1e-12, rtol=0)
    K = g["camera_intrinsics"][:, 0]
    F = C.fundamental_matrices(K, pairs[..., :3, :3], g["t_after_perturb"])
    torch.testing.assert_close(F, g["fundamental"], atol=1e-6 * float(g["fundamental"].abs().max()), rtol=0)


def test_golden_epipolar_masks_exact(golden_dir):
    g = _golden(golden_dir, "camera_inputs_and_geometry.pt")
    packed = np.load(golden_dir / "cami2v512" / "epipolar_masks_packed.npz")
    pairs = C.pairwise_transforms(g["relative_c2w"])
    F = C.fundamental_matrices(g["camera_intrinsics"][:, 0], pairs[..., :3, :3], g["t_after_perturb"])
    for d in (64, 32, 16):
        shape = tuple(int(s) for s in packed[f"d{d}_shape"])
        ref = torch.from_numpy(np.unpackbits(packed[f"d{d}"])[: math.prod(shape)].reshape(shape).astype(bool))
        mask = C.epipolar_mask(F, 320, 512, d, num_register_tokens=4)
        assert mask.shape == (1, 1, shape[1], 4 + shape[2])
        assert mask[..., :4].all()
        mismatched = int((mask[:, 0, :, 4:] != ref).sum())
        assert mismatched == 0, f"stride {d}: {mismatched} cells differ"


def test_golden_plucker(golden_dir):
    g = _golden(golden_dir, "camera_inputs_and_geometry.pt")
    ref = _golden(golden_dir, "plucker_embedding_stride8.pt")["plucker_stride8"]
    pl = C.plucker_embedding(g["camera_intrinsics"][:, 0], g["relative_c2w"], 320, 512)
    assert pl.shape == (1, 6, 16, 320, 512)
    torch.testing.assert_close(pl[..., ::8, ::8], ref, atol=1e-6, rtol=0)
    # per-frame intrinsics give the same map
    torch.testing.assert_close(C.plucker_embedding(g["camera_intrinsics"], g["relative_c2w"], 320, 512), pl)


def test_golden_position_tables(golden_dir):
    buffers = _golden(golden_dir, "buffers.pt")["buffers"]
    for key, ref in buffers.items():
        if key.endswith("pos_encoder.pe"):
            torch.testing.assert_close(sinusoidal_table(ref.shape[1], ref.shape[2]), ref, atol=2e-6, rtol=0)


# -- upstream masks for a turning camera (tests/fixtures, see its README) ---------------------------


def test_turning_trajectory_masks_match_upstream_exactly():
    import lzma
    from pathlib import Path

    z = np.load(Path(__file__).parent / "fixtures" / "cami2v_turning_epipolar.npz")
    rel = C.relative_poses(torch.linalg.inv(torch.from_numpy(z["RT_w2c"])), 0, 1.0)
    pairs = C.pairwise_transforms(rel)
    noise = torch.randn(1, 16, 16, 3, 1, generator=torch.Generator().manual_seed(1234))
    t = C.perturb_zero_translations(pairs[..., :3, 3:4], noise)
    assert torch.equal(t, torch.from_numpy(z["t_after_perturb"]))
    F = C.fundamental_matrices(torch.from_numpy(z["camera_intrinsics"]), pairs[..., :3, :3], t)
    assert torch.equal(F, torch.from_numpy(z["fundamental"]))
    for d in (64, 32, 16):
        shape = tuple(int(s) for s in z[f"d{d}_shape"])
        bits = np.frombuffer(lzma.decompress(z[f"d{d}_xz"].tobytes()), dtype=np.uint8)
        ref = torch.from_numpy(np.unpackbits(bits)[: math.prod(shape)].reshape(shape).astype(bool))
        mask = C.epipolar_mask(F, 320, 512, d)
        mismatched = int((mask[:, 0] != ref).sum())
        assert mismatched == 0, f"stride {d}: {mismatched} cells differ from upstream"
