"""The Upscale-A-Video video UNet: the SD x4-upscaler UNet run per frame, plus temporal layers.

Layout inside the network: frames are folded into the batch, `(b*t, C, h, w)` in channels-last
memory, so 2-D convolutions, temporal convolutions and spatial attention all run on views of
the same tensor without layout copies.
Three things mix frames:

* GroupNorm in every residual block (and the final norm) pools its statistics over all frames of
  the call, as the upstream model applies `nn.GroupNorm` to a 5-D tensor. Results therefore depend
  on the window of frames a call sees; the pipeline always uses the same 8-frame windows.
* temporal convolutions (kernel k x 1 x 1) in the temporal residual blocks;
* temporal self-attention in every transformer block (RoPE on the first 32 channels of each head,
  interleaved pairs, plus a T5-style relative position bias).

The building blocks are in `unet_blocks.py`. The released checkpoint (`unet/unet_video.bin`) uses
diffusers-0.16 names; `to_upstream_key` is the one key map between our parameter names and that
layout.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..layers import timestep_embedding
from .unet_blocks import (GroupNorm, NoTemporalModule, ResnetBlock, SpatioTemporalTransformer, TemporalModule,
                          TemporalRope, fold_frames, unfold_frames)

@dataclass(frozen=True)
class UNetVideoParams:
    """Architecture of the video UNet (values of the release's `unet_video_config.json`)."""

    in_channels: int = 7  # 4 latent + 3 low-res RGB channels
    out_channels: int = 4
    block_channels: tuple[int, ...] = (256, 512, 512, 1024)
    layers_per_block: int = 2
    # down block i has transformers; the up blocks mirror this list.
    attention: tuple[bool, ...] = (False, True, True, True)
    # in down block i (and its mirror up block) attn1 attends to the text instead of the image,
    # so those blocks have no spatial self-attention.
    only_cross_attention: tuple[bool, ...] = (True, True, True, False)
    num_heads: int = 8
    cross_attention_dim: int = 1024
    num_class_embeds: int = 1000  # one embedding per low-res noise level
    max_noise_level: int = 350
    norm_groups: int = 32
    norm_eps: float = 1e-5
    flip_sin_to_cos: bool = True
    freq_shift: float = 0.0
    temporal_down: tuple[int, ...] = (0, 1, 2, 3)
    temporal_mid: bool = True
    temporal_up: tuple[int, ...] = (0, 1, 2, 3)
    rope_dim: int = 32
    rope_theta: float = 10000.0
    rel_pos_buckets: int = 32
    rel_pos_max_distance: int = 32

    def __post_init__(self) -> None:
        n = len(self.block_channels)
        if len(self.attention) != n or len(self.only_cross_attention) != n:
            raise ValueError("attention and only_cross_attention need one entry per block")
        for c in self.block_channels:
            if c % self.norm_groups:
                raise ValueError(f"block channels {c} not divisible by {self.norm_groups} norm groups")
            if c % self.num_heads:
                raise ValueError(f"block channels {c} not divisible by {self.num_heads} heads")
        head_dims = [c // self.num_heads for c, a in zip(self.block_channels, self.attention) if a]
        if head_dims and min(head_dims) < self.rope_dim:
            raise ValueError(f"rotary dim {self.rope_dim} exceeds the smallest head dim {min(head_dims)}")
        if self.rope_dim % 2:
            raise ValueError("rotary dim must be even")

    @property
    def time_embed_dim(self) -> int:
        return 4 * self.block_channels[0]


PRESETS: dict[str, UNetVideoParams] = {
    "upscale-a-video": UNetVideoParams(),
    # For CPU tests: same topology (4 levels, cross-only and self attention, every temporal
    # module), 2 heads of 32 channels so RoPE still covers a whole head.
    "tiny": UNetVideoParams(
        block_channels=(32, 64, 64, 64),
        layers_per_block=1,
        num_heads=2,
        cross_attention_dim=32,
        norm_groups=8,
    ),
}


# -- UNet blocks ---------------------------------------------------------------------------------

class Downsample(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, stride=2, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


class Upsample(nn.Module):
    """Nearest x2 (or to an explicit size, for odd skip sizes) over h, w, then conv3x3."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        return self.conv(F.interpolate(x, size=size, mode="nearest"))


class DownBlock(nn.Module):
    """`layers` residual blocks (each followed by a transformer when `attention`), then an optional
    stride-2 downsample. Returns the output and the skip tensors for the up path."""

    def __init__(self, p: UNetVideoParams, in_ch: int, out_ch: int, attention: bool, only_cross: bool,
                 downsample: bool, rope: TemporalRope):
        super().__init__()
        if attention:
            self.attentions = nn.ModuleList(
                SpatioTemporalTransformer(out_ch, p.num_heads, p.cross_attention_dim, only_cross, p.norm_groups,
                                          rope, p.rel_pos_buckets, p.rel_pos_max_distance)
                for _ in range(p.layers_per_block))
        else:
            self.attentions = None
        self.resnets = nn.ModuleList(
            ResnetBlock(in_ch if i == 0 else out_ch, out_ch, p.time_embed_dim, p.norm_groups, p.norm_eps)
            for i in range(p.layers_per_block))
        self.downsample = Downsample(out_ch) if downsample else None

    def forward(self, x, temb, context, frames):
        skips = []
        for i, resnet in enumerate(self.resnets):
            x = resnet(x, temb, frames)
            if self.attentions is not None:
                x = self.attentions[i](x, context, frames)
            skips.append(x)
        if self.downsample is not None:
            x = self.downsample(x)
            skips.append(x)
        return x, skips


class UpBlock(nn.Module):
    """`layers + 1` residual blocks on [x, skip] concatenations (each followed by a transformer when
    `attention`), then an optional upsample to the next skip's size."""

    def __init__(self, p: UNetVideoParams, in_ch: int, prev_ch: int, out_ch: int, attention: bool,
                 only_cross: bool, upsample: bool, rope: TemporalRope):
        super().__init__()
        layers = p.layers_per_block + 1
        if attention:
            self.attentions = nn.ModuleList(
                SpatioTemporalTransformer(out_ch, p.num_heads, p.cross_attention_dim, only_cross, p.norm_groups,
                                          rope, p.rel_pos_buckets, p.rel_pos_max_distance)
                for _ in range(layers))
        else:
            self.attentions = None
        self.resnets = nn.ModuleList(
            ResnetBlock((prev_ch if i == 0 else out_ch) + (in_ch if i == layers - 1 else out_ch), out_ch,
                        p.time_embed_dim, p.norm_groups, p.norm_eps)
            for i in range(layers))
        self.upsample = Upsample(out_ch) if upsample else None

    def forward(self, x, skips, temb, context, frames, upsample_size):
        for i, resnet in enumerate(self.resnets):
            x = resnet(torch.cat([x, skips.pop()], dim=1), temb, frames)
            if self.attentions is not None:
                x = self.attentions[i](x, context, frames)
        if self.upsample is not None:
            x = self.upsample(x, upsample_size)
        return x


class MidBlock(nn.Module):
    """resnet, transformer (spatial self-attention), resnet."""

    def __init__(self, p: UNetVideoParams, channels: int, rope: TemporalRope):
        super().__init__()
        self.attentions = nn.ModuleList([
            SpatioTemporalTransformer(channels, p.num_heads, p.cross_attention_dim, False, p.norm_groups, rope,
                                      p.rel_pos_buckets, p.rel_pos_max_distance)])
        self.resnets = nn.ModuleList(
            ResnetBlock(channels, channels, p.time_embed_dim, p.norm_groups, p.norm_eps) for _ in range(2))

    def forward(self, x, temb, context, frames):
        x = self.resnets[0](x, temb, frames)
        x = self.attentions[0](x, context, frames)
        return self.resnets[1](x, temb, frames)


class TimestepEmbedding(nn.Module):
    def __init__(self, in_dim: int, dim: int):
        super().__init__()
        self.linear_1 = nn.Linear(in_dim, dim)
        self.linear_2 = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear_2(F.silu(self.linear_1(x)))


class UNetVideo(nn.Module):
    """The Upscale-A-Video denoiser.

    forward(sample, timestep, low_res, context, noise_level):
        sample:      (b, 4, t, h, w) noisy latents
        timestep:    (b,) or scalar diffusion timestep in [0, 1000)
        low_res:     (b, 3, t, h, w) noise-augmented low-res frames in about [-1, 1] (latent size = LR size)
        context:     (b, S, cross_attention_dim) text embeddings
        noise_level: (b,) or scalar int low-res noise level in [0, max_noise_level]
    returns (b, out_channels, t, h, w) in the scheduler's prediction type (v for the release).
    """

    def __init__(self, params: UNetVideoParams = PRESETS["upscale-a-video"]):
        super().__init__()
        p = self.params = params
        ch = p.block_channels
        n = len(ch)
        # Registration order follows the release's state-dict order.
        self.conv_in = nn.Conv2d(p.in_channels, ch[0], 3, padding=1)
        self.time_embedding = TimestepEmbedding(ch[0], p.time_embed_dim)
        self.class_embedding = nn.Embedding(p.num_class_embeds, p.time_embed_dim)
        rope = TemporalRope(p.rope_dim, p.rope_theta)
        self.down_blocks = nn.ModuleList(
            DownBlock(p, ch[max(i - 1, 0)], ch[i], p.attention[i], p.only_cross_attention[i], i < n - 1, rope)
            for i in range(n))
        rev = list(reversed(ch))
        self.up_blocks = nn.ModuleList(
            UpBlock(p, rev[min(i + 1, n - 1)], rev[max(i - 1, 0)], rev[i], p.attention[n - 1 - i],
                    p.only_cross_attention[n - 1 - i], i < n - 1, rope)
            for i in range(n))
        self.down_temp_blocks = nn.ModuleList(
            TemporalModule(ch[i], p.time_embed_dim, p.norm_groups) if i in p.temporal_down else NoTemporalModule()
            for i in range(n))
        self.up_temp_blocks = nn.ModuleList(
            TemporalModule(rev[i], p.time_embed_dim, p.norm_groups) if i in p.temporal_up else NoTemporalModule()
            for i in range(n))
        self.rope = rope
        self.mid_block = MidBlock(p, ch[-1], rope)
        self.mid_temp_block = (TemporalModule(ch[-1], p.time_embed_dim, p.norm_groups) if p.temporal_mid
                               else NoTemporalModule())
        self.conv_norm_out = GroupNorm(p.norm_groups, ch[0], p.norm_eps)
        self.conv_out = nn.Conv2d(ch[0], p.out_channels, 3, padding=1)

    @property
    def dtype(self) -> torch.dtype:
        return self.conv_in.weight.dtype

    def forward(self, sample: torch.Tensor, timestep, low_res: torch.Tensor, context: torch.Tensor,
                noise_level: torch.Tensor) -> torch.Tensor:
        p = self.params
        b, _, frames, h, w = sample.shape
        dtype = self.dtype
        device = sample.device
        # pass noise levels as ints or a CPU tensor to check them without a device sync
        noise_level = torch.as_tensor(noise_level).long().reshape(-1)
        if int(noise_level.max()) > p.max_noise_level or int(noise_level.min()) < 0:
            raise ValueError(f"noise level must be in [0, {p.max_noise_level}], got {noise_level.tolist()}")
        noise_level = noise_level.to(device).expand(b)
        timestep = torch.as_tensor(timestep, device=device).reshape(-1).expand(b)

        temb = self.time_embedding(timestep_embedding(timestep, p.block_channels[0], p.flip_sin_to_cos,
                                                      p.freq_shift).to(dtype))
        temb = temb + self.class_embedding(noise_level).to(dtype)
        temb = temb.repeat_interleave(frames, dim=0)  # one row per folded frame
        context = context.to(dtype)

        x = fold_frames(torch.cat([sample, low_res.to(sample.dtype)], dim=1).to(dtype))
        x = self.conv_in(x)
        skips = [x]
        for block, temporal in zip(self.down_blocks, self.down_temp_blocks):
            x, block_skips = block(x, temb, context, frames)
            skips.extend(block_skips)
            # the skips keep the pre-temporal-module tensors, as upstream
            x = temporal(x, temb, frames)
        x = self.mid_block(x, temb, context, frames)
        x = self.mid_temp_block(x, temb, frames)
        for block, temporal in zip(self.up_blocks, self.up_temp_blocks):
            block_skips = skips[-len(block.resnets):]
            del skips[-len(block.resnets):]
            size = tuple(skips[-1].shape[-2:]) if skips else None
            x = block(x, block_skips, temb, context, frames, size)
            x = temporal(x, temb, frames)
        x = self.conv_out(F.silu(self.conv_norm_out(x, frames)))
        return unfold_frames(x, frames)

    def to_channels_last(self) -> "UNetVideo":
        """Store the 2-D convolution weights channels-last, like the activations (saves a layout
        conversion per call on GPUs). Returns self."""
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                m.weight.data = m.weight.data.contiguous(memory_format=torch.channels_last)
        return self

    def reset_buffers(self, device=None) -> None:
        """Compute the constant buffers (RoPE frequencies) after building on the meta device."""
        self.rope.reset_freqs(device)


def build_unet(params: UNetVideoParams | str = "upscale-a-video", device: str | torch.device = "meta") -> UNetVideo:
    """Construct the UNet (by default on the meta device: no memory until weights are assigned)."""
    if isinstance(params, str):
        try:
            params = PRESETS[params]
        except KeyError:
            raise ValueError(f"unknown UNet preset {params!r}; known: {', '.join(PRESETS)}") from None
    with torch.device(device):
        return UNetVideo(params)


# -- the key map to the released checkpoint ------------------------------------------------------

# (our name pattern, upstream replacement), applied in order to each our-side key.
_KEY_RULES: list[tuple[str, str]] = [
    (r"^rope\.freqs$", "temporal_rotary_emb.freqs"),
    (r"\.block\.", ".transformer_blocks.0."),
    (r"\.attn_temporal\.rope\.freqs$", ".attn_temporal.rotary_emb.freqs"),
    (r"\.attn_temporal\.rel_pos_bias\.weight$", ".attn_temporal.time_rel_pos_bias.relative_attention_bias.weight"),
    (r"\.(attn1|attn2|attn_temporal)\.to_out\.", r".\1.to_out.0."),
    (r"\.ff\.proj_in\.", ".ff.net.0.proj."),
    (r"\.ff\.proj_out\.", ".ff.net.2."),
    (r"\.downsample\.conv\.", ".downsamplers.0.conv."),
    (r"\.upsample\.conv\.", ".upsamplers.0.conv."),
    (r"\.temporal_res\.", ".resblocks_3d_temporal."),
    (r"\.spatial_res\.", ".resblocks_3d_spatial."),
]
_KEY_RULES_COMPILED = [(re.compile(a), b) for a, b in _KEY_RULES]


def to_upstream_key(key: str) -> str:
    """Our state-dict key -> the key in the released `unet_video.bin` (diffusers-0.16 names)."""
    for pattern, repl in _KEY_RULES_COMPILED:
        key = pattern.sub(repl, key)
    return key


def upstream_state_dict_keys(model: UNetVideo) -> list[str]:
    """Our state dict's keys mapped to the release layout, in order (17 of them alias the RoPE freqs)."""
    return [to_upstream_key(k) for k in model.state_dict(keep_vars=True).keys()]
