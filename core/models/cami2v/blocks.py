"""Building blocks of the DynamiCrafter 3D UNet and its camera-conditioned temporal blocks.

Layout conventions: outside temporal layers the UNet keeps frames folded into the batch,
(B*T, C, h, w) with the frame index fastest (`(b t)`); temporal layers see
(B*h*w, T, C) token sequences (`(b h w)` order). Parameter names match the upstream
checkpoints, except where `keymap.py` lists a rename.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence, Union

import torch.nn.functional as F
from torch import Tensor, nn

from ..layers import GroupNorm32, timestep_embedding  # noqa: F401 (timestep_embedding re-exported)
from .attention import Attention, CrossKV, DualCrossAttention, EpipolarAttention, FeedForward
from .masked_attention import EpipolarMask


def to_video(x: Tensor, frames: int) -> Tensor:
    """(B*T, C, h, w) -> (B, C, T, h, w) (a view, not contiguous)."""
    bt, c, h, w = x.shape
    return x.view(bt // frames, frames, c, h, w).transpose(1, 2)


def from_video(x: Tensor) -> Tensor:
    """(B, C, T, h, w) -> (B*T, C, h, w), contiguous."""
    b, c, t, h, w = x.shape
    return x.transpose(1, 2).reshape(b * t, c, h, w)


@dataclass(frozen=True)
class LevelCamera:
    """The part of a `CameraCondition` one temporal block needs, at its own resolution.

    pose:      (Bc, h*w, T, C) Plücker features from the pose encoder (CamI2V, CameraCtrl).
    mask:      (Bc, 1, T*h*w, R + T*h*w) bool epipolar mask, or None for unmasked attention (CamI2V).
    motion_rt: (Bc, T, 12) flattened relative world-to-camera [R|t] (MotionCtrl).
    attention: `mask` prepared once per video for the compute dtype (what the UNet passes); when
               set, the epipolar attention uses it instead of `mask`.
    Bc is 1 (shared by every sample, e.g. both CFG branches) or the UNet batch size.
    """

    pose: Optional[Tensor] = None
    mask: Optional[Tensor] = None
    motion_rt: Optional[Tensor] = None
    attention: Optional[EpipolarMask] = None


# ---------------------------------------------------------------------------------------------
# Residual blocks


class TemporalConvBlock(nn.Module):
    """Four GroupNorm-SiLU-Conv3d(3,1,1) stages over the frame axis, residual.

    Stored upstream as `temopral_conv` (sic); see keymap.py. Indices keep the checkpoint names
    (`convK.0` norm, `conv1.2` / `convK.3` conv; the gaps were SiLU / Dropout).
    """

    def __init__(self, channels: int, groups: int = 32):
        super().__init__()

        def stage(dropout_slot: bool) -> nn.Sequential:
            layers = [GroupNorm32(groups, channels), nn.SiLU()]
            if dropout_slot:
                layers.append(nn.Identity())
            layers.append(nn.Conv3d(channels, channels, (3, 1, 1), padding=(1, 0, 0)))
            return nn.Sequential(*layers)

        self.conv1 = stage(False)
        self.conv2 = stage(True)
        self.conv3 = stage(True)
        self.conv4 = stage(True)

    def forward(self, x: Tensor) -> Tensor:
        """x: (B, C, T, h, w) -> same shape."""
        return x + self.conv4(self.conv3(self.conv2(self.conv1(x))))


class ResBlock(nn.Module):
    """Spatial residual block with timestep-embedding bias, then the temporal conv block."""

    def __init__(self, channels: int, emb_channels: int, out_channels: Optional[int] = None, groups: int = 32):
        super().__init__()
        out_channels = out_channels or channels
        self.in_layers = nn.Sequential(GroupNorm32(groups, channels), nn.SiLU(),
                                       nn.Conv2d(channels, out_channels, 3, padding=1))
        self.emb_layers = nn.Sequential(nn.SiLU(), nn.Linear(emb_channels, out_channels))
        self.out_layers = nn.Sequential(GroupNorm32(groups, out_channels), nn.SiLU(), nn.Identity(),
                                        nn.Conv2d(out_channels, out_channels, 3, padding=1))
        self.skip_connection = (nn.Identity() if out_channels == channels
                                else nn.Conv2d(channels, out_channels, 1))
        self.temporal_conv = TemporalConvBlock(out_channels, groups)

    def forward(self, x: Tensor, emb: Tensor, frames: int) -> Tensor:
        """x: (B*T, C, h, w); emb: (B*T, emb_channels) -> (B*T, out_channels, h, w)."""
        h = self.in_layers(x)
        h = h + self.emb_layers(emb)[:, :, None, None].to(h.dtype)
        h = self.skip_connection(x) + self.out_layers(h)
        return from_video(self.temporal_conv(to_video(h, frames).contiguous()))


class Downsample(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.op = nn.Conv2d(channels, channels, 3, stride=2, padding=1)

    def forward(self, x: Tensor) -> Tensor:
        return self.op(x)


class Upsample(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: Tensor) -> Tensor:
        return self.conv(F.interpolate(x, scale_factor=2, mode="nearest"))


# ---------------------------------------------------------------------------------------------
# Spatial transformer


class SpatialBlock(nn.Module):
    """Pre-LN block: self-attention, dual (text + image) cross-attention, GEGLU feed-forward.

    Registration order (attn1, ff, attn2, norms) mirrors the checkpoint's state-dict order.
    """

    def __init__(self, dim: int, heads: int, head_dim: int, context_dim: int, text_tokens: int,
                 learnable_image_scale: bool):
        super().__init__()
        self.attn1 = Attention(dim, heads, head_dim)
        self.ff = FeedForward(dim)
        self.attn2 = DualCrossAttention(dim, heads, head_dim, context_dim, text_tokens, learnable_image_scale)
        self.norm1 = nn.LayerNorm(dim)
        self.norm2 = nn.LayerNorm(dim)
        self.norm3 = nn.LayerNorm(dim)

    def forward(self, x: Tensor, context: Union[Tensor, CrossKV]) -> Tensor:
        x = self.attn1(self.norm1(x)) + x
        x = self.attn2(self.norm2(x), context) + x
        return self.ff(self.norm3(x)) + x


class SpatialTransformer(nn.Module):
    """Per-frame attention over the h*w tokens, with linear in/out projections."""

    def __init__(self, channels: int, heads: int, head_dim: int, context_dim: int, text_tokens: int,
                 learnable_image_scale: bool, groups: int = 32):
        super().__init__()
        inner = heads * head_dim
        self.norm = GroupNorm32(groups, channels, eps=1e-6)
        self.proj_in = nn.Linear(channels, inner)
        self.transformer_blocks = nn.ModuleList(
            [SpatialBlock(inner, heads, head_dim, context_dim, text_tokens, learnable_image_scale)])
        self.proj_out = nn.Linear(inner, channels)

    def keys_values(self, text: Tensor, image: Tensor, frames: int) -> tuple[CrossKV, ...]:
        """Each block's cross-attention keys/values (see `DualCrossAttention.keys_values`)."""
        return tuple(block.attn2.keys_values(text, image, frames) for block in self.transformer_blocks)

    def forward(self, x: Tensor, context: Union[Tensor, Sequence[CrossKV]]) -> Tensor:
        """x: (B*T, C, h, w); context: (B*T, L, context_dim), or one `CrossKV` per block
        (from `keys_values`) -> (B*T, C, h, w)."""
        n, c, h, w = x.shape
        tokens = self.proj_in(self.norm(x).flatten(2).transpose(1, 2))
        for i, block in enumerate(self.transformer_blocks):
            tokens = block(tokens, context if isinstance(context, Tensor) else context[i])
        return self.proj_out(tokens).transpose(1, 2).reshape(n, c, h, w) + x


# ---------------------------------------------------------------------------------------------
# Temporal transformer and its camera-conditioned blocks


class TemporalBlock(nn.Module):
    """Pre-LN block over the frame axis: two self-attentions (no positional encoding) and an FF.

    `attn2` is self-attention too: DynamiCrafter's temporal layers never see the text.
    """

    def __init__(self, dim: int, heads: int, head_dim: int):
        super().__init__()
        self.attn1 = Attention(dim, heads, head_dim)
        self.ff = FeedForward(dim)
        self.attn2 = Attention(dim, heads, head_dim)
        self.norm1 = nn.LayerNorm(dim)
        self.norm2 = nn.LayerNorm(dim)
        self.norm3 = nn.LayerNorm(dim)

    def forward(self, x: Tensor, batch: int, camera: Optional[LevelCamera] = None) -> Tensor:
        """x: (B*h*w, T, dim) with B = `batch` -> same shape. `camera` is ignored here."""
        x = self.attn1(self.norm1(x)) + x
        return self._rest(x)

    def _rest(self, x: Tensor) -> Tensor:
        x = self.attn2(self.norm2(x)) + x
        return self.ff(self.norm3(x)) + x


class CamI2VTemporalBlock(TemporalBlock):
    """CamI2V ('add_to_main_branch'): with n = norm1(x) and p the Plücker features,
    x <- x + attn1(n) + plucker_projection(n + p) + epipolar(n + p); then attn2 and ff.

    Stored upstream as `pluker_projection` (sic) and `epipolar.epipolar_attn.*`; see keymap.py.
    """

    def __init__(self, dim: int, heads: int, head_dim: int, num_register_tokens: int):
        super().__init__(dim, heads, head_dim)
        self.plucker_projection = nn.Linear(dim, dim)
        self.epipolar = EpipolarAttention(dim, heads, num_register_tokens)

    def forward(self, x: Tensor, batch: int, camera: Optional[LevelCamera] = None) -> Tensor:
        if camera is None:
            return super().forward(x, batch)
        n_tokens, frames, dim = x.shape
        hw = n_tokens // batch
        n = self.norm1(x)
        np_ = n.view(batch, hw, frames, dim) + camera.pose  # (B, hw, T, C)
        side = self.plucker_projection(np_)
        # Epipolar attention runs over all T*h*w tokens of a video, frame-major.
        tokens = np_.transpose(1, 2).reshape(batch, frames * hw, dim)
        mask = camera.attention if camera.attention is not None else camera.mask
        epi = self.epipolar(tokens, mask).view(batch, frames, hw, dim).transpose(1, 2)
        x = x + self.attn1(n) + (side + epi).reshape(n_tokens, frames, dim)
        return self._rest(x)


class CameraCtrlTemporalBlock(TemporalBlock):
    """CameraCtrl: x <- x + attn1(n + cc_projection(n + p)); then attn2 and ff."""

    def __init__(self, dim: int, heads: int, head_dim: int):
        super().__init__(dim, heads, head_dim)
        self.cc_projection = nn.Linear(dim, dim)

    def forward(self, x: Tensor, batch: int, camera: Optional[LevelCamera] = None) -> Tensor:
        if camera is None:
            return super().forward(x, batch)
        n_tokens, frames, dim = x.shape
        n = self.norm1(x)
        nv = n.view(batch, n_tokens // batch, frames, dim)
        q_in = (nv + self.cc_projection(nv + camera.pose)).view(n_tokens, frames, dim)
        x = x + self.attn1(q_in)
        return self._rest(x)


class MotionCtrlTemporalBlock(TemporalBlock):
    """MotionCtrl: after self-attention, x <- cc_projection(concat(x, RT)) (replaces x).

    The weight's right-hand `pose_dim` columns act on RT only, so that product is computed once
    per frame, (Bc, T, dim), and broadcast over the h*w positions instead of concatenating.
    """

    def __init__(self, dim: int, heads: int, head_dim: int, pose_dim: int = 12):
        super().__init__(dim, heads, head_dim)
        self.cc_projection = nn.Linear(dim + pose_dim, dim)

    def forward(self, x: Tensor, batch: int, camera: Optional[LevelCamera] = None) -> Tensor:
        x = self.attn1(self.norm1(x)) + x
        if camera is not None:
            n_tokens, frames, dim = x.shape
            w, b = self.cc_projection.weight, self.cc_projection.bias
            pose_term = F.linear(camera.motion_rt.to(x.dtype), w[:, dim:], b)  # (Bc, T, dim)
            x = F.linear(x, w[:, :dim]).view(batch, n_tokens // batch, frames, dim) + pose_term[:, None]
            x = x.view(n_tokens, frames, dim)
        return self._rest(x)


class TokenConv1d(nn.Conv1d):
    """A kernel-1 Conv1d (the checkpoint stores `init_attn`'s projections that way) applied to
    (N, L, C) tokens as the linear map it is."""

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__(in_channels, out_channels, kernel_size=1)

    def forward(self, x: Tensor) -> Tensor:
        return F.linear(x, self.weight[..., 0], self.bias)


class TemporalTransformer(nn.Module):
    """Attention over the T frames at every spatial position.

    GroupNorm statistics span all frames of a video ((B, C, T, h, w) layout), as upstream.
    `block` is the (camera-specific) transformer block; `linear=False` gives Conv1d projections
    (only `init_attn`).
    """

    def __init__(self, channels: int, heads: int, head_dim: int, block: TemporalBlock,
                 linear: bool = True, groups: int = 32):
        super().__init__()
        inner = heads * head_dim
        self.norm = GroupNorm32(groups, channels, eps=1e-6)
        self.proj_in = nn.Linear(channels, inner) if linear else TokenConv1d(channels, inner)
        self.transformer_blocks = nn.ModuleList([block])
        self.proj_out = nn.Linear(inner, channels) if linear else TokenConv1d(inner, channels)

    def forward(self, x: Tensor, frames: int, camera: Optional[LevelCamera] = None) -> Tensor:
        """x: (B*T, C, h, w) -> same shape."""
        bt, c, h, w = x.shape
        batch = bt // frames
        normed = self.norm(to_video(x, frames))  # (B, C, T, h, w)
        tokens = normed.permute(0, 3, 4, 2, 1).reshape(batch * h * w, frames, c)
        tokens = self.proj_in(tokens)
        for block in self.transformer_blocks:
            tokens = block(tokens, batch, camera)
        tokens = self.proj_out(tokens)
        out = tokens.view(batch, h, w, frames, c).permute(0, 3, 4, 1, 2).reshape(bt, c, h, w)
        return out + x
