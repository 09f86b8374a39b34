"""Building blocks of the Upscale-A-Video video UNet (assembled in `unet.py`).

Frames are folded into the batch, `(b*t, C, h, w)` in channels-last memory; blocks that mix
frames take the frame count. GroupNorm pools its statistics over all frames of a call (as the
upstream model applies `nn.GroupNorm` to a 5-D tensor); temporal convolutions have kernel
k x 1 x 1; temporal self-attention uses RoPE on the first channels of each head plus a T5-style
relative position bias.
"""

from __future__ import annotations

import math
from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn

# Upstream hard-codes eps 1e-6 in the transformer GroupNorm and in every temporal residual block,
# while the spatial residual blocks use the config's norm_eps (1e-5).
TEMPORAL_EPS = 1e-6


# -- small functional helpers ---------------------------------------------------------------------

def fold_frames(x: torch.Tensor) -> torch.Tensor:
    """(b, c, t, h, w) -> (b*t, c, h, w) in channels-last memory."""
    b, c, t, h, w = x.shape
    return x.permute(0, 2, 3, 4, 1).reshape(b * t, h, w, c).permute(0, 3, 1, 2)


def unfold_frames(x: torch.Tensor, frames: int) -> torch.Tensor:
    """(b*t, c, h, w) -> contiguous (b, c, t, h, w)."""
    n, c, h, w = x.shape
    return x.permute(0, 2, 3, 1).reshape(n // frames, frames, h, w, c).permute(0, 4, 1, 2, 3).contiguous()


def group_norm(x: torch.Tensor, groups: int, weight: torch.Tensor, bias: torch.Tensor, eps: float,
               frames: int = 1) -> torch.Tensor:
    """GroupNorm of folded frames, statistics pooled over `frames` consecutive batch entries.

    x: (b*frames, C, h, w), any memory format. Statistics and the affine map run in float32 (half
    precision loses too much in the variance of large maps); the result has x's dtype and is
    channels-last. frames=1 is the ordinary per-image GroupNorm.
    """
    n, c, h, w = x.shape
    y = x.permute(0, 2, 3, 1).reshape(n // frames, frames * h * w, groups, c // groups)
    # a private float32 copy, normalised in place: peak memory is one float32 copy of x
    y = y.clone() if y.dtype == torch.float32 else y.float()
    var, mean = torch.var_mean(y, dim=(1, 3), correction=0, keepdim=True)
    y.sub_(mean).mul_(torch.rsqrt(var + eps))
    y = y.view(n // frames, frames * h * w, c).mul_(weight.float()).add_(bias.float())
    return y.to(x.dtype).view(n, h, w, c).permute(0, 3, 1, 2)


# -- normalisation and convolutions --------------------------------------------------------------

class GroupNorm(nn.Module):
    """GroupNorm with float32 statistics; `pool_frames` pools them over all frames of a call."""

    def __init__(self, groups: int, channels: int, eps: float, pool_frames: bool = True):
        super().__init__()
        self.groups, self.eps, self.pool_frames = groups, eps, pool_frames
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))

    def forward(self, x: torch.Tensor, frames: int) -> torch.Tensor:
        return group_norm(x, self.groups, self.weight, self.bias, self.eps, frames if self.pool_frames else 1)


class TemporalConv(nn.Module):
    """Convolution over frames only (kernel k x 1 x 1, zero padding), stored as upstream's Conv3d.

    Runs as a 2-D convolution on a (b, C, t, h*w) view of the folded channels-last tensor.
    """

    def __init__(self, channels: int, kernel: int):
        super().__init__()
        self.padding = kernel // 2
        self.weight = nn.Parameter(torch.empty(channels, channels, kernel, 1, 1))
        self.bias = nn.Parameter(torch.zeros(channels))
        nn.init.kaiming_uniform_(self.weight, a=math.sqrt(5))

    def forward(self, x: torch.Tensor, frames: int) -> torch.Tensor:
        n, c, h, w = x.shape
        y = x.permute(0, 2, 3, 1).reshape(n // frames, frames, h * w, c).permute(0, 3, 1, 2)
        y = F.conv2d(y, self.weight.squeeze(-1), self.bias, padding=(self.padding, 0))
        return y.permute(0, 2, 3, 1).reshape(n, h, w, y.shape[1]).permute(0, 3, 1, 2)


# -- residual blocks -----------------------------------------------------------------------------

class ResnetBlock(nn.Module):
    """Spatial residual block (upstream `ResnetBlock3D`): GN-SiLU-conv3x3 (+time) GN-SiLU-conv3x3.

    GroupNorms pool over frames. Input/output (b*t, C, h, w); temb (b*t, temb_dim) or None.
    """

    def __init__(self, in_ch: int, out_ch: int, temb_dim: Optional[int], groups: int, eps: float):
        super().__init__()
        self.norm1 = GroupNorm(groups, in_ch, eps)
        self.conv1 = nn.Conv2d(in_ch, out_ch, 3, padding=1)
        self.time_emb_proj = nn.Linear(temb_dim, out_ch) if temb_dim is not None else None
        self.norm2 = GroupNorm(groups, out_ch, eps)
        self.conv2 = nn.Conv2d(out_ch, out_ch, 3, padding=1)
        self.conv_shortcut = nn.Conv2d(in_ch, out_ch, 1) if in_ch != out_ch else None

    def forward(self, x: torch.Tensor, temb: Optional[torch.Tensor], frames: int) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x, frames)))
        if self.time_emb_proj is not None and temb is not None:
            h = h + self.time_emb_proj(F.silu(temb))[:, :, None, None]
        h = self.conv2(F.silu(self.norm2(h, frames)))
        if self.conv_shortcut is not None:
            x = self.conv_shortcut(x)
        return x + h


class TemporalResnetBlock(nn.Module):
    """Residual block whose convolutions mix frames only (upstream `ResnetBlock3DCNN`).

    conv1 has kernel `kernel` x 1 x 1, conv2 3 x 1 x 1; GroupNorms pool over frames.
    """

    def __init__(self, channels: int, kernel: int, temb_dim: Optional[int], groups: int, eps: float):
        super().__init__()
        self.norm1 = GroupNorm(groups, channels, eps)
        self.conv1 = TemporalConv(channels, kernel)
        self.time_emb_proj = nn.Linear(temb_dim, channels) if temb_dim is not None else None
        self.norm2 = GroupNorm(groups, channels, eps)
        self.conv2 = TemporalConv(channels, 3)

    def forward(self, x: torch.Tensor, temb: Optional[torch.Tensor], frames: int) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x, frames)), frames)
        if self.time_emb_proj is not None and temb is not None:
            h = h + self.time_emb_proj(F.silu(temb))[:, :, None, None]
        h = self.conv2(F.silu(self.norm2(h, frames)), frames)
        return x + h


class TemporalModule(nn.Module):
    """Between UNet blocks (upstream `TemporalModule3D` without attention):
    x + shift_conv(spatial_res(temporal_res(x))), temporal kernel 5 x 1 x 1."""

    def __init__(self, channels: int, temb_dim: int, groups: int):
        super().__init__()
        self.temporal_res = TemporalResnetBlock(channels, 5, temb_dim, groups, TEMPORAL_EPS)
        self.spatial_res = ResnetBlock(channels, channels, temb_dim, groups, TEMPORAL_EPS)
        self.shift_conv = nn.Conv2d(channels, channels, 1)

    def forward(self, x: torch.Tensor, temb: torch.Tensor, frames: int) -> torch.Tensor:
        h = self.spatial_res(self.temporal_res(x, temb, frames), temb, frames)
        return x + self.shift_conv(h)


class NoTemporalModule(nn.Module):
    """Placeholder where a config disables the temporal module (keeps upstream indices)."""

    def forward(self, x: torch.Tensor, temb: torch.Tensor, frames: int) -> torch.Tensor:
        return x


# -- attention -----------------------------------------------------------------------------------

class TemporalRope(nn.Module):
    """Rotary position embedding over frames, one instance shared by every temporal attention.

    Rotates the first `dim` channels of each head in interleaved pairs ((0,1), (2,3), ...) by
    angle position * freqs[pair]; the other channels pass through. `freqs` is a buffer (a constant,
    never randomised by the weight rule); the checkpoint stores it under 17 names.
    """

    def __init__(self, dim: int, theta: float):
        super().__init__()
        self.dim, self.theta = dim, theta
        self.register_buffer("freqs", self.default_freqs(dim, theta))

    @staticmethod
    def default_freqs(dim: int, theta: float, device=None) -> torch.Tensor:
        return 1.0 / theta ** (torch.arange(0, dim, 2, dtype=torch.float32, device=device) / dim)

    def reset_freqs(self, device=None) -> None:
        """Recompute the constant frequencies (after building on the meta device)."""
        self.freqs = self.default_freqs(self.dim, self.theta, device)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (..., frames, head_dim) -> same shape, positions 0..frames-1 along dim -2."""
        frames = x.shape[-2]
        pos = torch.arange(frames, device=x.device, dtype=torch.float32)
        angles = pos[:, None] * self.freqs.float()[None]  # (frames, dim/2)
        cos, sin = angles.cos(), angles.sin()
        rot = x[..., : self.dim].float().unflatten(-1, (self.dim // 2, 2))
        even, odd = rot[..., 0], rot[..., 1]
        rot = torch.stack((even * cos - odd * sin, odd * cos + even * sin), dim=-1).flatten(-2)
        return torch.cat((rot.to(x.dtype), x[..., self.dim:]), dim=-1)


def relative_position_buckets(frames: int, num_buckets: int, max_distance: int, device=None) -> torch.Tensor:
    """T5-style bidirectional buckets of (query i, key j) -> (frames, frames) int64.

    Half the buckets are for keys before the query; within a half, distances below a quarter of the
    buckets are exact and larger ones share log-spaced buckets up to `max_distance`.
    """
    pos = torch.arange(frames, device=device)
    n = pos[:, None] - pos[None, :]  # query minus key
    half = num_buckets // 2
    bucket = (n < 0).long() * half
    n = n.abs()
    exact = half // 2
    large = exact + (torch.log(n.float().clamp(min=1) / exact) / math.log(max_distance / exact)
                     * (half - exact)).long()
    large = large.clamp(max=half - 1)
    return bucket + torch.where(n < exact, n, large)


class Attention(nn.Module):
    """Multi-head attention with SDPA; q/k/v without bias, output projection with bias."""

    def __init__(self, dim: int, heads: int, context_dim: Optional[int] = None):
        super().__init__()
        self.heads = heads
        kv_dim = context_dim if context_dim is not None else dim
        self.to_q = nn.Linear(dim, dim, bias=False)
        self.to_k = nn.Linear(kv_dim, dim, bias=False)
        self.to_v = nn.Linear(kv_dim, dim, bias=False)
        self.to_out = nn.Linear(dim, dim)

    def _heads(self, x: torch.Tensor) -> torch.Tensor:
        return x.unflatten(-1, (self.heads, -1)).transpose(1, 2)

    def forward(self, x: torch.Tensor, context: Optional[torch.Tensor] = None, frames: int = 1) -> torch.Tensor:
        """x: (b*frames, L, dim) tokens; context: (b, S, context_dim) shared by the frames of a clip,
        or None for self-attention. Returns (b*frames, L, dim)."""
        q = self._heads(self.to_q(x))
        if context is None:
            k, v = self._heads(self.to_k(x)), self._heads(self.to_v(x))
        else:
            # project the text once per clip, then share it with every frame
            k = self._heads(self.to_k(context)).repeat_interleave(frames, dim=0)
            v = self._heads(self.to_v(context)).repeat_interleave(frames, dim=0)
        out = F.scaled_dot_product_attention(q, k, v)
        return self.to_out(out.transpose(1, 2).flatten(2))


class TemporalAttention(nn.Module):
    """Self-attention across frames with RoPE and a learned relative-position bias per head."""

    def __init__(self, dim: int, heads: int, rope: TemporalRope, num_buckets: int, max_distance: int):
        super().__init__()
        self.heads, self.num_buckets, self.max_distance = heads, num_buckets, max_distance
        self.to_q = nn.Linear(dim, dim, bias=False)
        self.to_k = nn.Linear(dim, dim, bias=False)
        self.to_v = nn.Linear(dim, dim, bias=False)
        self.to_out = nn.Linear(dim, dim)
        self.rel_pos_bias = nn.Embedding(num_buckets, heads)
        self.rope = rope

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (N, frames, dim), one sequence per pixel -> (N, frames, dim)."""
        frames = x.shape[1]
        q = self.rope(self.to_q(x).unflatten(-1, (self.heads, -1)).transpose(1, 2))
        k = self.rope(self.to_k(x).unflatten(-1, (self.heads, -1)).transpose(1, 2))
        v = self.to_v(x).unflatten(-1, (self.heads, -1)).transpose(1, 2)
        buckets = relative_position_buckets(frames, self.num_buckets, self.max_distance, x.device)
        bias = self.rel_pos_bias(buckets).permute(2, 0, 1)[None].to(q.dtype)  # (1, heads, f, f)
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=bias)
        return self.to_out(out.transpose(1, 2).flatten(2))


class FeedForward(nn.Module):
    """GEGLU feed-forward: proj_in to 2 x 4 dim, value * gelu(gate), proj_out back to dim."""

    def __init__(self, dim: int, mult: int = 4):
        super().__init__()
        self.proj_in = nn.Linear(dim, 2 * mult * dim)
        self.proj_out = nn.Linear(mult * dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        value, gate = self.proj_in(x).chunk(2, dim=-1)
        return self.proj_out(value * F.gelu(gate))


class TransformerBlock(nn.Module):
    """Spatial attention (self, or text-only), text cross-attention, temporal attention, GEGLU FF.

    Each sub-layer is pre-LayerNorm with a residual add.
    """

    def __init__(self, dim: int, heads: int, context_dim: int, only_cross: bool, rope: TemporalRope,
                 num_buckets: int, max_distance: int):
        super().__init__()
        self.only_cross = only_cross
        self.attn1 = Attention(dim, heads, context_dim if only_cross else None)
        self.norm1 = nn.LayerNorm(dim)
        self.attn2 = Attention(dim, heads, context_dim)
        self.norm2 = nn.LayerNorm(dim)
        self.attn_temporal = TemporalAttention(dim, heads, rope, num_buckets, max_distance)
        self.norm_temporal = nn.LayerNorm(dim)
        self.ff = FeedForward(dim)
        self.norm3 = nn.LayerNorm(dim)

    def forward(self, x: torch.Tensor, context: torch.Tensor, frames: int) -> torch.Tensor:
        """x: (b*frames, h*w, dim); context: (b, S, context_dim)."""
        x = x + self.attn1(self.norm1(x), context if self.only_cross else None, frames)
        x = x + self.attn2(self.norm2(x), context, frames)
        n, hw, c = x.shape
        xt = x.reshape(n // frames, frames, hw, c).transpose(1, 2).reshape(-1, frames, c)
        xt = xt + self.attn_temporal(self.norm_temporal(xt))
        x = xt.reshape(n // frames, hw, frames, c).transpose(1, 2).reshape(n, hw, c)
        return x + self.ff(self.norm3(x))


class SpatioTemporalTransformer(nn.Module):
    """Upstream `Transformer3DModel`: temporal residual block, then a per-frame GroupNorm,
    linear projection, one transformer block, projection back, and a residual taken after the
    temporal block."""

    def __init__(self, channels: int, heads: int, context_dim: int, only_cross: bool, groups: int,
                 rope: TemporalRope, num_buckets: int, max_distance: int):
        super().__init__()
        self.resblock_temporal = TemporalResnetBlock(channels, 3, None, groups, TEMPORAL_EPS)
        self.norm = GroupNorm(groups, channels, TEMPORAL_EPS, pool_frames=False)
        self.proj_in = nn.Linear(channels, channels)
        self.block = TransformerBlock(channels, heads, context_dim, only_cross, rope, num_buckets, max_distance)
        self.proj_out = nn.Linear(channels, channels)

    def forward(self, x: torch.Tensor, context: torch.Tensor, frames: int) -> torch.Tensor:
        x = self.resblock_temporal(x, None, frames)
        n, c, h, w = x.shape
        tokens = self.norm(x, frames).permute(0, 2, 3, 1).reshape(n, h * w, c)
        tokens = self.proj_out(self.block(self.proj_in(tokens), context, frames))
        return x + tokens.reshape(n, h, w, c).permute(0, 3, 1, 2)
