"""CameraCtrl's camera pose encoder (used by CamI2V and CameraCtrl).

Plücker map (B, 6, T, H, W) -> PixelUnshuffle(8) -> conv_in -> per level: 2 x [ResnetBlock,
temporal self-attention block with sinusoidal frame positions] -> one feature map per level,
matching the UNet's channels and resolutions.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from .attention import FeedForward, attend
from .config import PoseEncoderParams


def sinusoidal_table(length: int, dim: int, device=None) -> Tensor:
    """(1, length, dim) float32 table: sin on even channels, cos on odd, base 10000."""
    position = torch.arange(length, dtype=torch.float32, device=device)[:, None]
    div = torch.exp(torch.arange(0, dim, 2, dtype=torch.float32, device=device) * (-math.log(10000.0) / dim))
    table = torch.zeros(1, length, dim, device=device)
    table[0, :, 0::2] = torch.sin(position * div)
    table[0, :, 1::2] = torch.cos(position * div)
    return table


class PositionalEncoding(nn.Module):
    """Holds the persistent `pe` table (it is in the checkpoints; ours is always recomputed)."""

    def __init__(self, dim: int, max_len: int):
        super().__init__()
        self.register_buffer("pe", sinusoidal_table(max_len, dim))

    def reset(self, device=None) -> None:
        """Recompute `pe` (float32) on `device`, e.g. after building on the meta device."""
        self.pe = sinusoidal_table(self.pe.shape[1], self.pe.shape[2], device=device)


class FramePositionAttention(nn.Module):
    """Self-attention over frames whose input first gets the sinusoidal frame position added.

    Stored upstream as `attention_blocks.0` (a diffusers Attention); `pos_encoder` is a child so
    `pe` keeps its place in the state-dict order.
    """

    def __init__(self, dim: int, heads: int, max_len: int):
        super().__init__()
        self.heads = heads
        self.to_q = nn.Linear(dim, dim, bias=False)
        self.to_k = nn.Linear(dim, dim, bias=False)
        self.to_v = nn.Linear(dim, dim, bias=False)
        self.to_out = nn.Sequential(nn.Linear(dim, dim))
        self.pos_encoder = PositionalEncoding(dim, max_len)

    def forward(self, x: Tensor) -> Tensor:
        """x: (N, T, C) normed tokens -> (N, T, C)."""
        x = x + self.pos_encoder.pe[:, : x.shape[1]].to(x.dtype)
        return self.to_out(attend(self.to_q(x), self.to_k(x), self.to_v(x), self.heads))


class PoseTemporalBlock(nn.Module):
    """x <- x + attn(norm(x)); x <- x + ff(ff_norm(x)), over (N, T, C) frame sequences."""

    def __init__(self, dim: int, heads: int, max_len: int):
        super().__init__()
        self.attn = FramePositionAttention(dim, heads, max_len)
        self.norm = nn.LayerNorm(dim)
        self.ff = FeedForward(dim)
        self.ff_norm = nn.LayerNorm(dim)

    def forward(self, x: Tensor) -> Tensor:
        x = self.attn(self.norm(x)) + x
        return self.ff(self.ff_norm(x)) + x


class PoseResBlock(nn.Module):
    """[AvgPool 2x2 if `down`] -> [1x1 `in_conv` if channels change] -> x + conv1x1(relu(conv3x3 x))."""

    def __init__(self, in_channels: int, out_channels: int, down: bool):
        super().__init__()
        self.down = nn.AvgPool2d(2) if down else nn.Identity()
        self.in_conv = nn.Conv2d(in_channels, out_channels, 1) if in_channels != out_channels else None
        self.block1 = nn.Conv2d(out_channels, out_channels, 3, padding=1)
        self.act = nn.ReLU()
        self.block2 = nn.Conv2d(out_channels, out_channels, 1)

    def forward(self, x: Tensor) -> Tensor:
        x = self.down(x)
        if self.in_conv is not None:
            x = self.in_conv(x)
        return x + self.block2(self.act(self.block1(x)))


class PoseEncoder(nn.Module):
    """Camera pose encoder: (B, 6, T, H, W) Plücker map -> list of (B*T, C_l, H/8/2**l, W/8/2**l)."""

    def __init__(self, p: PoseEncoderParams):
        super().__init__()
        self.params = p
        self.unshuffle = nn.PixelUnshuffle(p.downscale_factor)
        self.encoder_down_conv_blocks = nn.ModuleList()
        self.encoder_down_attention_blocks = nn.ModuleList()
        prev = p.channels[0]
        for level, ch in enumerate(p.channels):
            convs, attns = nn.ModuleList(), nn.ModuleList()
            for j in range(p.blocks_per_level):
                convs.append(PoseResBlock(prev if j == 0 else ch, ch, down=(j == 0 and level > 0)))
                attns.append(PoseTemporalBlock(ch, p.num_heads, p.max_frames))
            prev = ch
            self.encoder_down_conv_blocks.append(convs)
            self.encoder_down_attention_blocks.append(attns)
        # Last, as in the checkpoint's state-dict order.
        self.encoder_conv_in = nn.Conv2d(p.in_channels, p.channels[0], 3, padding=1)

    def reset_buffers(self, device=None) -> None:
        """Recompute the position tables on `device` (they are derived, never loaded)."""
        for module in self.modules():
            if isinstance(module, PositionalEncoding):
                module.reset(device)

    def forward(self, plucker: Tensor) -> list[Tensor]:
        b, c, frames, h, w = plucker.shape
        x = plucker.transpose(1, 2).reshape(b * frames, c, h, w)
        x = self.encoder_conv_in(self.unshuffle(x))
        features = []
        for convs, attns in zip(self.encoder_down_conv_blocks, self.encoder_down_attention_blocks):
            for conv, attn in zip(convs, attns):
                x = conv(x)
                _, ch, fh, fw = x.shape
                tokens = x.view(b, frames, ch, fh, fw).permute(0, 3, 4, 1, 2).reshape(b * fh * fw, frames, ch)
                tokens = attn(tokens)
                x = tokens.view(b, fh, fw, frames, ch).permute(0, 3, 4, 1, 2).reshape(b * frames, ch, fh, fw)
            features.append(x)
        return features
