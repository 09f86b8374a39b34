"""Camera geometry for CamI2V / CameraCtrl / MotionCtrl, and the per-video `CameraCondition`.

Conventions: OpenCV camera axes (x right, y down, z forward); poses are 4x4 camera-to-world
(c2w) matrices unless named w2c; intrinsics K are 3x3 in pixel units of the model's input
(H x W) image. All geometry runs in float32, without autocast, whatever the model dtype.

Everything that depends only on the camera path (Plücker map, pose-encoder features, epipolar
masks, MotionCtrl's RT) is computed once per video by `build_camera_condition` and reused at
every sampling step and by both classifier-free-guidance branches.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Optional, Sequence

import torch
from torch import Tensor, nn

from .config import EpipolarParams
from .masked_attention import EpipolarMask

_f32 = torch.float32


def relative_poses(c2w: Tensor, ref_index: int = 0, translation_scale: float = 1.0) -> Tensor:
    """Poses relative to frame `ref_index`: rel_i = c2w_ref^-1 @ c2w_i, translations scaled.

    c2w: (B, T, 4, 4) -> (B, T, 4, 4) float32 with rel_ref = I.
    """
    c2w = c2w.to(_f32)
    rel = torch.linalg.inv(c2w[:, ref_index: ref_index + 1]) @ c2w
    rel = rel.clone()
    rel[..., :3, 3] = rel[..., :3, 3] * translation_scale
    return rel


def pairwise_transforms(rel_c2w: Tensor) -> Tensor:
    """P[b, i, j] = rel_j^-1 @ rel_i: camera-i coordinates to camera-j coordinates.

    rel_c2w: (B, T, 4, 4) -> (B, T, T, 4, 4).
    """
    rel = rel_c2w.to(_f32)
    return torch.linalg.inv(rel)[:, None] @ rel[:, :, None]


def perturb_zero_translations(t: Tensor, noise: Optional[Tensor] = None, eps: float = 1e-6,
                              generator: Optional[torch.Generator] = None, *,
                              values: Optional[Tensor] = None) -> Tensor:
    """Replace translations whose 3 entries are all below `eps` in magnitude by eps * noise.

    Pairs without translation (every i == j, static or purely rotating cameras) have no epipolar
    geometry; the noise turns their line into a random-direction line through the point, as the
    released CamI2V models were trained with. t: (..., 3, 1). `noise` is the standard-normal draw
    of t's shape (inject it to reproduce a run); otherwise it is drawn with `generator`.
    `values` (t's shape) injects the perturbed translations themselves instead (replay of a
    recorded run, e.g. upstream's `t_after_perturb`): zero entries of t take them as they are.
    """
    zero = (t.abs() < eps).all(dim=-2, keepdim=True)
    if values is not None:
        return torch.where(zero, values.to(t), t)
    if noise is None:
        device = generator.device if generator is not None else t.device
        noise = torch.randn(t.shape, generator=generator, dtype=t.dtype, device=device)
    return torch.where(zero, noise.to(t) * eps, t)


def per_frame_intrinsics(K: Tensor, frames: int) -> Tensor:
    """K (B, 3, 3) shared by all frames, or (B, T, 3, 3) per frame -> (B, T, 3, 3) float32."""
    K = K.to(_f32)
    if K.dim() == 3:
        return K[:, None].expand(K.shape[0], frames, 3, 3)
    if K.dim() != 4 or K.shape[1] != frames or K.shape[-2:] != (3, 3):
        raise ValueError(f"intrinsics must be (B, 3, 3) or (B, {frames}, 3, 3), got {tuple(K.shape)}")
    return K


def fundamental_matrices(K: Tensor, R: Tensor, t: Tensor) -> Tensor:
    """F_ij = K_j^-T [t_ij]_x R_ij K_i^-1 for every frame pair (i: query frame, j: key frame).

    K: (B, 3, 3) pixels shared by all frames, or (B, T, 3, 3) per frame (a zoom); R: (B, T, T, 3, 3);
    t: (B, T, T, 3, 1). Returns (B, T, T, 3, 3) float32. [t]_x R is the column-wise cross product
    t x R. Upstream broadcasts its per-frame K as K_j on both sides; the two agree whenever the
    intrinsics are constant over the video (all its training data and every golden), and only
    this form keeps x_j^T F_ij x_i = 0 when the focal length changes between frames.
    """
    E = torch.cross(t.to(_f32).expand_as(R), R.to(_f32), dim=-2)
    K_inv = torch.linalg.inv(per_frame_intrinsics(K, R.shape[1]))  # (B, T, 3, 3)
    return K_inv[:, None, :].transpose(-1, -2) @ E @ K_inv[:, :, None]


def feature_grid(height: int, width: int, stride: int, device=None) -> Tensor:
    """Homogeneous pixel coordinates of the cell centres of an (H/stride) x (W/stride) feature map.

    Cell k covers pixels [k*stride, (k+1)*stride); its centre is k*stride + stride/2 - 0.5.
    Returns (h*w, 3) float32, row-major (y slow, x fast).
    """
    h, w = height // stride, width // stride
    y = torch.arange(h, dtype=_f32, device=device) * stride + stride / 2.0 - 0.5
    x = torch.arange(w, dtype=_f32, device=device) * stride + stride / 2.0 - 0.5
    gy, gx = torch.meshgrid(y, x, indexing="ij")
    return torch.stack([gx, gy, torch.ones_like(gx)], dim=-1).reshape(-1, 3)


def epipolar_mask(F: Tensor, height: int, width: int, stride: int, num_register_tokens: int = 0) -> Tensor:
    """Boolean epipolar attention mask at one feature stride.

    Query (frame i, cell p) may attend key (frame j, cell q) iff q's centre lies within half a
    cell diagonal (stride * sqrt(2) / 2 pixels) of the epipolar line F_ij x_p in frame j.
    Degenerate lines (F_ij = 0) give NaN distances and so False.

    F: (B, T, T, 3, 3) -> (B, 1, T*h*w, R + T*h*w) with R = `num_register_tokens` leading
    columns set True (queries may always attend the register tokens).

    The lines of all T*T frame pairs come from ONE product (B*T*T*3 rows, ~2 MB at stride 16 for
    16 frames), as upstream computes them: a per-frame product has another row count, which
    takes another float32 BLAS path, rounds the 3-term sums differently and flips cells that
    sit on the distance threshold. Only the large distance matrix is built frame by frame, so
    peak memory stays at one (B, T, h*w, h*w) slice.
    """
    b, frames = F.shape[:2]
    grid = feature_grid(height, width, stride, device=F.device)  # (hw, 3)
    hw = grid.shape[0]
    threshold = stride * math.sqrt(2) / 2
    mask = torch.empty(b, 1, frames * hw, num_register_tokens + frames * hw, dtype=torch.bool, device=F.device)
    mask[..., :num_register_tokens] = True
    grid_t = grid.transpose(0, 1)  # (3, hw)
    lines = F.to(_f32) @ grid_t  # (B, T, T, 3, hw): line in frame j of query cell p of frame i
    lines = lines / torch.linalg.vector_norm(lines[..., :2, :], dim=-2, keepdim=True)
    for i in range(frames):
        dist = (lines[:, i].transpose(-1, -2) @ grid_t).abs()  # (B, T, hw_p, hw_q)
        rows = mask[:, 0, i * hw:(i + 1) * hw, num_register_tokens:]
        rows.copy_((dist < threshold).permute(0, 2, 1, 3).reshape(b, hw, frames * hw))
    return mask


def plucker_embedding(K: Tensor, c2w: Tensor, height: int, width: int) -> Tensor:
    """Per-pixel Plücker ray coordinates [o x d, d] at full pixel resolution.

    Rays go through pixel centres (u + 0.5, v + 0.5); d is the unit direction rotated to world
    (here: reference-camera) axes, o the camera centre. K: (B, 3, 3) or (B, T, 3, 3) pixels;
    c2w: (B, T, 4, 4). Returns (B, 6, T, H, W) float32, channels (o x d)_xyz, d_xyz.
    """
    c2w = c2w.to(_f32)
    b, frames = c2w.shape[:2]
    K = per_frame_intrinsics(K, frames)
    v, u = torch.meshgrid(torch.arange(height, dtype=_f32, device=c2w.device),
                          torch.arange(width, dtype=_f32, device=c2w.device), indexing="ij")
    u = u.reshape(1, 1, -1) + 0.5
    v = v.reshape(1, 1, -1) + 0.5
    fx, fy = K[..., 0, 0, None], K[..., 1, 1, None]
    cx, cy = K[..., 0, 2, None], K[..., 1, 2, None]
    x = (u - cx) / fx
    y = (v - cy) / fy
    dirs = torch.stack([x, y, torch.ones_like(x)], dim=-1)  # (B, T, HW, 3)
    dirs = dirs / dirs.norm(dim=-1, keepdim=True)
    rays_d = dirs @ c2w[..., :3, :3].transpose(-1, -2)
    rays_o = c2w[..., None, :3, 3].expand_as(rays_d)
    pl = torch.cat([torch.cross(rays_o, rays_d, dim=-1), rays_d], dim=-1)  # (B, T, HW, 6)
    return pl.view(b, frames, height, width, 6).permute(0, 4, 1, 2, 3).contiguous()


def motion_rt(rel_c2w: Tensor) -> Tensor:
    """MotionCtrl's pose input: relative w2c = rel_c2w^-1, top 3x4 flattened row-major.

    rel_c2w: (B, T, 4, 4) -> (B, T, 12) float32.
    """
    return torch.linalg.inv(rel_c2w.to(_f32))[..., :3, :4].reshape(*rel_c2w.shape[:2], 12)


@dataclass(frozen=True)
class CameraCondition:
    """Camera inputs of one batch of videos, ready for the UNet's temporal blocks.

    variant:        "cami2v" | "cameractrl" | "motionctrl" (must match the UNet).
    pose_features:  per UNet level l (latent downsampling 2**l), (Bc, h_l*w_l, T, C_l) in the
                    model dtype, `(b h w) t c` order — what the temporal blocks add.
    epipolar_masks: latent downsampling factor -> (Bc, 1, T*h*w, R + T*h*w) bool; levels not in
                    the dict run unmasked attention (CamI2V only).
    motion_rt:      (Bc, T, 12) relative w2c (MotionCtrl only).
    gather:         how the masked attention runs: None lets `EpipolarMask.prepare` choose (by
                    its rules; the dense additive mask for now), True the gathered tiles, False
                    the dense mask. Outputs agree either way up to float summation order.
    Bc (`batch`) is 1 to share one camera across the whole UNet batch (both CFG branches) or
    equals the UNet batch.

    The masks are prepared for the attention kernels (`attention_mask`) on first use and kept
    with the condition, so every step and branch of the video reuses them; treat the tensors
    as read-only (`to()` gives a new condition with its own preparations).
    """

    variant: str
    batch: int
    frames: int
    pose_features: Optional[tuple[Tensor, ...]] = None
    epipolar_masks: Optional[dict[int, Tensor]] = None
    motion_rt: Optional[Tensor] = None
    gather: Optional[bool] = None
    _prepared: dict = field(default_factory=dict, init=False, repr=False, compare=False)

    def attention_mask(self, level: int, grid: tuple[int, int], dtype: torch.dtype) -> Optional[EpipolarMask]:
        """The epipolar mask of `level` prepared for attention in `dtype` on an (h, w) = `grid`
        token map, built once per (level, grid, dtype, form) and then reused; None if the level
        runs unmasked. Under tracing the dense form is built (see `EpipolarMask.prepare`)."""
        if self.epipolar_masks is None or level not in self.epipolar_masks:
            return None
        key = (level, tuple(grid), dtype, torch.jit.is_tracing())
        if key not in self._prepared:
            self._prepared[key] = EpipolarMask.prepare(self.epipolar_masks[level], self.frames, grid, dtype,
                                                       gather=None if torch.jit.is_tracing() else self.gather)
        return self._prepared[key]

    def check_for(self, variant: str, batch: int, frames: int) -> None:
        """Raise ValueError unless this condition fits a UNet of `variant` run on (batch, frames)."""
        if variant != self.variant:
            raise ValueError(f"camera condition is for {self.variant!r}, the UNet is {variant!r}")
        if self.batch not in (1, batch):
            raise ValueError(f"camera condition has batch {self.batch}, the UNet input has batch {batch}")
        if self.frames != frames:
            raise ValueError(f"camera condition has {self.frames} frames, the UNet input has {frames}")

    def to(self, device=None, dtype: Optional[torch.dtype] = None) -> "CameraCondition":
        """Move to `device`; `dtype` applies to the floating tensors (masks stay bool)."""
        def mv(t: Optional[Tensor]) -> Optional[Tensor]:
            if t is None:
                return None
            return t.to(device=device, dtype=dtype if t.is_floating_point() else None)

        return CameraCondition(
            self.variant, self.batch, self.frames,
            None if self.pose_features is None else tuple(mv(f) for f in self.pose_features),
            None if self.epipolar_masks is None else {k: mv(m) for k, m in self.epipolar_masks.items()},
            mv(self.motion_rt), self.gather,
        )


def pose_features_for_unet(features: Sequence[Tensor], batch: int) -> tuple[Tensor, ...]:
    """Pose-encoder outputs (B*T, C, h, w) -> (B, h*w, T, C), the temporal blocks' token order."""
    out = []
    for f in features:
        bt, c, h, w = f.shape
        out.append(f.view(batch, bt // batch, c, h, w).permute(0, 3, 4, 1, 2).reshape(batch, h * w, bt // batch, c)
                   .contiguous())
    return tuple(out)


@torch.no_grad()
def build_camera_condition(
    variant: str,
    rel_c2w: Tensor,
    K: Tensor,
    height: int,
    width: int,
    *,
    pose_encoder: Optional[nn.Module] = None,
    epipolar: Optional[EpipolarParams] = None,
    latent_factor: int = 8,
    translation_noise: Optional[Tensor] = None,
    translation_values: Optional[Tensor] = None,
    generator: Optional[torch.Generator] = None,
    dtype: Optional[torch.dtype] = None,
) -> CameraCondition:
    """Everything the UNet needs from a camera path, computed once per video.

    variant:   "cami2v" | "cameractrl" | "motionctrl".
    rel_c2w:   (B, T, 4, 4) camera-to-world relative to the conditioning frame (see
               `relative_poses`), translations already scaled.
    K:         (B, T, 3, 3) per-frame intrinsics in pixels of the H x W model input (a zoom or
               per-keyframe field of view), or (B, 3, 3) shared by all frames.
    pose_encoder: CamI2V / CameraCtrl: maps the (B, 6, T, H, W) Plücker map to per-level
               (B*T, C, h, w) features; it runs in its own parameter dtype.
    epipolar:  CamI2V: which levels get masks and whether zero translations are perturbed.
    translation_noise: (B, T, T, 3, 1) standard-normal draw for the zero-translation
               perturbation (reproducible runs); otherwise drawn from `generator`.
    translation_values: (B, T, T, 3, 1) the perturbed pair translations themselves (replay of a
               recorded run); zero translations take these values, others keep theirs.
    dtype:     dtype of the returned features (the UNet's); defaults to the encoder output's.
    """
    rel_c2w = rel_c2w.to(_f32)
    b, frames = rel_c2w.shape[:2]
    K = per_frame_intrinsics(K, frames)
    if variant == "motionctrl":
        rt = motion_rt(rel_c2w)
        return CameraCondition(variant, b, frames, motion_rt=rt if dtype is None else rt.to(dtype))
    if variant not in ("cami2v", "cameractrl"):
        raise ValueError(f"unknown camera variant {variant!r}")
    if pose_encoder is None:
        raise ValueError(f"{variant} needs the pose encoder")

    plucker = plucker_embedding(K, rel_c2w, height, width)
    enc_dtype = next(pose_encoder.parameters()).dtype
    features = pose_encoder(plucker.to(enc_dtype))
    pose = pose_features_for_unet(features, b)
    if dtype is not None:
        pose = tuple(f.to(dtype) for f in pose)

    masks = None
    if variant == "cami2v":
        if epipolar is None:
            raise ValueError("cami2v needs EpipolarParams")
        pairs = pairwise_transforms(rel_c2w)
        R, t = pairs[..., :3, :3], pairs[..., :3, 3:4]
        if epipolar.perturb_zero_translation:
            t = perturb_zero_translations(t, translation_noise, epipolar.zero_translation_eps, generator,
                                          values=translation_values)
        F = fundamental_matrices(K, R, t)
        masks = {level: epipolar_mask(F, height, width, latent_factor * level, epipolar.num_register_tokens)
                 for level in epipolar.mask_levels}
    return CameraCondition(variant, b, frames, pose_features=pose, epipolar_masks=masks)

