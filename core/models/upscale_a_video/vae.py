"""Upscale-A-Video's video VAE (`AutoencoderKLVideo`): the SD x4-upscaler autoencoder run on clips.

Public API (used by the pipeline / loader):

    params = VAE_PRESETS["vae_3d"]            # or "vae_video"; VideoVAEParams dataclass
    vae = AutoencoderKLVideo(params)          # or build_vae("vae_3d") on the meta device
    vae = loader.load_vae(path, "vae_video", device="cuda", dtype=torch.float32)   # strict, from vae_*.bin
    x   = vae.decode(z, lr, w_lr=1.0)         # z = latents / params.scaling_factor, (b,4,t,h,w)
    x   = vae.decode_chunked(z, lr, w_lr=1.0, chunk_frames=3)   # what the upstream pipeline does
    mean, logvar = vae.encode(x)

    vae_key_to_upstream(our_key) -> upstream key        (the key map; also feeds the weight rule)
    vae_state_dict_from_upstream(upstream_sd) -> our sd (a pure rename; load_strict checks it)

    FrameGroupNorm, FrameConv2d, ResnetBlock3D             building blocks on (b,c,t,h,w) tensors.

Layout is (b, c, t, h, w) throughout. Two facts decide whether outputs match upstream:

* every GroupNorm outside the mid-block attention normalises a 5-D tensor, so its statistics are
  pooled over ALL frames of the call; decoding 3-frame chunks therefore differs from decoding the
  whole clip at once (the pipeline decodes in chunks of 3: use `decode_chunked` to match it);
* GroupNorm runs in float32 when the activations are half precision (fp16 overflows there).

Presets: `vae_3d` (default VAE: 2-D convs per frame, LR frames ignored) and `vae_video`
(`--use_video_vae`: every decoder resnet adds a 3x3x3 temporal conv branch, and the LR frames are
injected after the decoder's input conv through an SFT fusion weighted by `w_lr`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Mapping, Optional

import torch
import torch.nn.functional as F
from torch import nn



# ---------------------------------------------------------------------------------------------
# parameters
# ---------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class VideoVAEParams:
    in_channels: int = 3
    out_channels: int = 3
    latent_channels: int = 4
    block_out_channels: tuple[int, ...] = (128, 256, 512)
    layers_per_block: int = 2
    norm_num_groups: int = 32
    norm_eps: float = 1e-6
    # latents seen by the diffusion model are `z * scaling_factor`
    scaling_factor: float = 0.08333
    # decoder resnets carry an extra 3x3x3 temporal conv branch ("UpDecoderBlock3D_plus")
    temporal_decoder: bool = False
    # LR frames are fused into the decoder ("condition_img")
    lr_condition: bool = False
    lr_condition_channels: int = 128

    def __post_init__(self):
        if any(c % self.norm_num_groups for c in self.block_out_channels):
            raise ValueError(f"block_out_channels {self.block_out_channels} must be divisible by "
                             f"norm_num_groups {self.norm_num_groups}")

    @property
    def spatial_factor(self) -> int:
        return 2 ** (len(self.block_out_channels) - 1)


VAE_PRESETS: dict[str, VideoVAEParams] = {
    # configs/vae_3d_config.json
    "vae_3d": VideoVAEParams(),
    # configs/vae_video_config.json
    "vae_video": VideoVAEParams(temporal_decoder=True, lr_condition=True, lr_condition_channels=128),
}


# ---------------------------------------------------------------------------------------------
# building blocks (also usable by the video UNet)
# ---------------------------------------------------------------------------------------------

class FrameGroupNorm(nn.GroupNorm):
    """GroupNorm over whatever trailing dims the input has, computed in float32.

    On a (b, c, t, h, w) tensor the statistics span all t frames (upstream behaviour). fp16/bf16
    inputs are normalised in float32 and cast back.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dtype in (torch.float16, torch.bfloat16):
            w = self.weight.float() if self.weight is not None else None
            b = self.bias.float() if self.bias is not None else None
            return F.group_norm(x.float(), self.num_groups, w, b, self.eps).to(x.dtype)
        return super().forward(x)


class FrameConv2d(nn.Conv2d):
    """A 2-D convolution applied to every frame of a (b, c, t, h, w) tensor.

    The weight keeps the Conv2d shape (c_out, c_in, k, k) of the checkpoint; running it as a
    depth-1 Conv3d avoids copying the clip into a (b*t) batch and back.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() == 4:
            return super().forward(x)
        return F.conv3d(x, self.weight.unsqueeze(2), self.bias, (1, *self.stride), (0, *self.padding),
                        (1, *self.dilation), self.groups)


class ResnetBlock3D(nn.Module):
    """Pre-norm residual block: GN-SiLU-conv3x3 twice, 1x1 shortcut when channels change.

    With `temporal=True` ("ResnetBlock3D_plus") the output gets a second residual branch
    GN-SiLU-Conv3d(3x3x3) that mixes neighbouring frames.

    x: (b, c_in, t, h, w) -> (b, c_out, t, h, w).
    """

    def __init__(self, in_channels: int, out_channels: Optional[int] = None, *, groups: int = 32,
                 groups_out: Optional[int] = None, eps: float = 1e-6, temporal: bool = False):
        super().__init__()
        out_channels = out_channels or in_channels
        groups_out = groups_out or groups
        self.norm1 = FrameGroupNorm(groups, in_channels, eps=eps)
        self.conv1 = FrameConv2d(in_channels, out_channels, 3, padding=1)
        self.norm2 = FrameGroupNorm(groups_out, out_channels, eps=eps)
        self.conv2 = FrameConv2d(out_channels, out_channels, 3, padding=1)
        self.conv_shortcut = FrameConv2d(in_channels, out_channels, 1) if in_channels != out_channels else None
        self.temporal = temporal
        if temporal:
            self.norm_3d = FrameGroupNorm(groups_out, out_channels, eps=eps)
            self.conv_3d = nn.Conv3d(out_channels, out_channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x), inplace=True))
        h = self.conv2(F.silu(self.norm2(h), inplace=True))
        out = (x if self.conv_shortcut is None else self.conv_shortcut(x)) + h
        if self.temporal:
            out = out + self.conv_3d(F.silu(self.norm_3d(out), inplace=True))
        return out


# Largest score matrix (elements) one attention call may need if SDPA falls back to its math
# kernel: a 320x320 latent tile has 102,400 tokens per frame, i.e. 10^10 scores.
_MAX_SCORES = 1 << 28


def _attention_in_blocks(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """SDPA over (n, heads, L, d), split into frames and query blocks when the full score matrix
    would be huge (bounded memory whichever SDPA kernel runs; same result)."""
    n, heads, length, _ = q.shape
    if n * heads * length * k.shape[-2] <= _MAX_SCORES:
        return F.scaled_dot_product_attention(q, k, v)
    block = max(1, _MAX_SCORES // (heads * k.shape[-2]))
    out = torch.empty_like(q[..., : v.shape[-1]])
    for i in range(n):
        for s in range(0, length, block):
            out[i : i + 1, :, s : s + block] = F.scaled_dot_product_attention(
                q[i : i + 1, :, s : s + block], k[i : i + 1], v[i : i + 1])
    return out


class FrameSelfAttention(nn.Module):
    """Single-head self-attention over the h*w positions of each frame separately (VAE mid block).

    The GroupNorm here is per frame (upstream folds frames into the batch for this block).
    """

    def __init__(self, channels: int, groups: int = 32, eps: float = 1e-6):
        super().__init__()
        self.norm = FrameGroupNorm(groups, channels, eps=eps)
        self.to_q = nn.Linear(channels, channels)
        self.to_k = nn.Linear(channels, channels)
        self.to_v = nn.Linear(channels, channels)
        self.to_out = nn.Linear(channels, channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, t, h, w = x.shape
        frames = x.transpose(1, 2).reshape(b * t, c, h * w)
        tokens = self.norm(frames).transpose(1, 2)  # (b t, h w, c)
        q, k, v = (proj(tokens).unsqueeze(1) for proj in (self.to_q, self.to_k, self.to_v))
        attn = _attention_in_blocks(q, k, v).squeeze(1)
        out = self.to_out(attn).transpose(1, 2).reshape(b, t, c, h, w).transpose(1, 2)
        return x + out


class MidBlock(nn.Module):
    """resnet -> per-frame self-attention -> resnet, at the lowest resolution."""

    def __init__(self, channels: int, groups: int, eps: float, temporal: bool):
        super().__init__()
        # registration order (attentions before resnets) matches the checkpoint's key order
        self.attentions = nn.ModuleList([FrameSelfAttention(channels, groups, eps)])
        self.resnets = nn.ModuleList([
            ResnetBlock3D(channels, channels, groups=groups, eps=eps, temporal=temporal) for _ in range(2)
        ])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.resnets[0](x)
        x = self.attentions[0](x)
        return self.resnets[1](x)


class Downsample(nn.Module):
    """Stride-2 3x3 conv per frame after a one-pixel zero pad on the right and bottom."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv = FrameConv2d(channels, channels, 3, stride=2, padding=0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.pad(x, (0, 1, 0, 1)))


class Upsample(nn.Module):
    """Nearest x2 on (h, w) (frames untouched), then a 3x3 conv per frame."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv = FrameConv2d(channels, channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.interpolate(x, scale_factor=(1.0, 2.0, 2.0), mode="nearest"))


class EncoderBlock(nn.Module):
    def __init__(self, in_channels: int, out_channels: int, num_layers: int, downsample: bool,
                 groups: int, eps: float):
        super().__init__()
        self.resnets = nn.ModuleList([
            ResnetBlock3D(in_channels if i == 0 else out_channels, out_channels, groups=groups, eps=eps)
            for i in range(num_layers)
        ])
        self.downsamplers = nn.ModuleList([Downsample(out_channels)]) if downsample else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for resnet in self.resnets:
            x = resnet(x)
        if self.downsamplers is not None:
            x = self.downsamplers[0](x)
        return x


class DecoderBlock(nn.Module):
    def __init__(self, in_channels: int, out_channels: int, num_layers: int, upsample: bool,
                 groups: int, eps: float, temporal: bool):
        super().__init__()
        self.resnets = nn.ModuleList([
            ResnetBlock3D(in_channels if i == 0 else out_channels, out_channels, groups=groups, eps=eps,
                          temporal=temporal)
            for i in range(num_layers)
        ])
        self.upsamplers = nn.ModuleList([Upsample(out_channels)]) if upsample else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for resnet in self.resnets:
            x = resnet(x)
        if self.upsamplers is not None:
            x = self.upsamplers[0](x)
        return x


class SFTFusion(nn.Module):
    """Spatial feature transform of decoder features by LR features ("Fuse_sft_block").

    f = resnet(resnet(cat[lr_feat, dec])); out = dec + w_lr * (dec * scale(f) + shift(f)).
    """

    def __init__(self, lr_channels: int, channels: int, groups: int, eps: float):
        super().__init__()
        self.shared = nn.Sequential(
            ResnetBlock3D(lr_channels + channels, channels, groups=groups, eps=eps),
            ResnetBlock3D(channels, channels, groups=groups, eps=eps),
        )
        self.scale = FrameConv2d(channels, channels, 3, padding=1)
        self.shift = FrameConv2d(channels, channels, 3, padding=1)

    def forward(self, lr_feat: torch.Tensor, dec: torch.Tensor, w_lr: float) -> torch.Tensor:
        f = self.shared(torch.cat([lr_feat, dec], dim=1))
        return dec + w_lr * (dec * self.scale(f) + self.shift(f))


class Encoder(nn.Module):
    def __init__(self, p: VideoVAEParams):
        super().__init__()
        ch = p.block_out_channels
        self.conv_in = FrameConv2d(p.in_channels, ch[0], 3, padding=1)
        self.down_blocks = nn.ModuleList([
            EncoderBlock(ch[max(i - 1, 0)], ch[i], p.layers_per_block, i < len(ch) - 1, p.norm_num_groups,
                         p.norm_eps)
            for i in range(len(ch))
        ])
        self.mid_block = MidBlock(ch[-1], p.norm_num_groups, p.norm_eps, temporal=False)
        self.conv_norm_out = FrameGroupNorm(p.norm_num_groups, ch[-1], eps=p.norm_eps)
        self.conv_out = FrameConv2d(ch[-1], 2 * p.latent_channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv_in(x)
        for block in self.down_blocks:
            x = block(x)
        x = self.mid_block(x)
        return self.conv_out(F.silu(self.conv_norm_out(x), inplace=True))


class Decoder(nn.Module):
    def __init__(self, p: VideoVAEParams):
        super().__init__()
        ch = tuple(reversed(p.block_out_channels))
        g, eps = p.norm_num_groups, p.norm_eps
        self.conv_in = FrameConv2d(p.latent_channels, ch[0], 3, padding=1)
        self.lr_condition = p.lr_condition
        if p.lr_condition:
            lc = p.lr_condition_channels
            # the 3-channel LR frames are normalised in 3 groups (one per colour channel)
            self.condition_in = nn.Sequential(
                ResnetBlock3D(p.out_channels, lc, groups=p.out_channels, groups_out=g, eps=eps, temporal=True),
                ResnetBlock3D(lc, lc, groups=g, eps=eps, temporal=True),
            )
            self.condition_fuse = SFTFusion(lc, ch[0], g, eps)
        self.up_blocks = nn.ModuleList([
            DecoderBlock(ch[max(i - 1, 0)], ch[i], p.layers_per_block + 1, i < len(ch) - 1, g, eps,
                         p.temporal_decoder)
            for i in range(len(ch))
        ])
        self.mid_block = MidBlock(ch[0], g, eps, temporal=p.temporal_decoder)
        self.conv_norm_out = FrameGroupNorm(g, ch[-1], eps=eps)
        self.conv_out = FrameConv2d(ch[-1], p.out_channels, 3, padding=1)

    def forward(self, z: torch.Tensor, lr: Optional[torch.Tensor], w_lr: float) -> torch.Tensor:
        x = self.conv_in(z)
        if self.lr_condition:
            x = self.condition_fuse(self.condition_in(lr.to(x.dtype)), x, w_lr)
        x = self.mid_block(x)
        for block in self.up_blocks:
            x = block(x)
        return self.conv_out(F.silu(self.conv_norm_out(x), inplace=True))


class AutoencoderKLVideo(nn.Module):
    """KL autoencoder with a spatial factor of 4 (three levels) applied to video clips."""

    def __init__(self, params: VideoVAEParams):
        super().__init__()
        self.params = params
        self.encoder = Encoder(params)
        self.decoder = Decoder(params)
        self.quant_conv = FrameConv2d(2 * params.latent_channels, 2 * params.latent_channels, 1)
        self.post_quant_conv = FrameConv2d(params.latent_channels, params.latent_channels, 1)

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """x: (b, 3, t, H, W) in [-1, 1] -> posterior (mean, logvar), each (b, 4, t, H/4, W/4).

        Multiply the mean by `params.scaling_factor` to get diffusion latents.
        """
        moments = self.quant_conv(self.encoder(x))
        mean, logvar = moments.chunk(2, dim=1)
        return mean, logvar.clamp(-30.0, 20.0)

    def decode(self, z: torch.Tensor, lr: Optional[torch.Tensor] = None, w_lr: float = 1.0) -> torch.Tensor:
        """Decode one window of frames.

        z: (b, 4, t, h, w), the diffusion latents divided by `params.scaling_factor`.
        lr: (b, 3, t, h, w) LR frames in [-1, 1] at latent resolution; required by presets with
            `lr_condition` (vae_video), ignored otherwise.
        w_lr: weight of the LR residual (vae_video only; 1 = upstream default, 0 = no LR fusion).
        Returns (b, 3, t, 4h, 4w), nominally in [-1, 1] (not clamped).
        GroupNorm statistics span the t frames of this call.
        """
        if z.dim() != 5 or z.shape[1] != self.params.latent_channels:
            raise ValueError(f"expected latents (b, {self.params.latent_channels}, t, h, w), got {tuple(z.shape)}")
        if self.params.lr_condition:
            if lr is None:
                raise ValueError("this VAE preset fuses the LR frames: pass lr (b, 3, t, h, w)")
            if lr.shape[0] != z.shape[0] or lr.shape[2:] != z.shape[2:]:
                raise ValueError(f"lr frames {tuple(lr.shape)} do not match latents {tuple(z.shape)}")
        return self.decoder(self.post_quant_conv(z), lr, w_lr)

    def decode_chunked(self, z: torch.Tensor, lr: Optional[torch.Tensor] = None, w_lr: float = 1.0,
                       chunk_frames: int = 3) -> torch.Tensor:
        """`decode` on consecutive windows of `chunk_frames` frames, concatenated along t.

        The upstream pipeline decodes in windows of 3; since GroupNorm pools over the frames of
        a call, this is NOT the same as one `decode` of the whole clip.
        """
        if chunk_frames < 1:
            raise ValueError("chunk_frames must be >= 1")
        t = z.shape[2]
        outs = []
        for s in range(0, t, chunk_frames):
            e = min(t, s + chunk_frames)
            outs.append(self.decode(z[:, :, s:e], None if lr is None else lr[:, :, s:e], w_lr))
        return torch.cat(outs, dim=2)


# ---------------------------------------------------------------------------------------------
# checkpoint format: diffusers-0.16 names (vae_3d.bin, vae_video.bin)
# ---------------------------------------------------------------------------------------------

# Our mid-block attention names -> diffusers-0.16 `AttentionBlock` names.
_ATTN_TO_UPSTREAM = {"norm": "group_norm", "to_q": "query", "to_k": "key", "to_v": "value", "to_out": "proj_attn"}
_ATTN_FROM_UPSTREAM = {v: k for k, v in _ATTN_TO_UPSTREAM.items()}
_ATTN_RE = re.compile(r"^((?:encoder|decoder)\.mid_block\.attentions\.\d+\.)([a-z_]+)(\.(?:weight|bias))$")


def vae_key_to_upstream(key: str) -> str:
    """Our state-dict key -> the released file's key. Only the mid-block attention is renamed."""
    m = _ATTN_RE.match(key)
    if m and m.group(2) in _ATTN_TO_UPSTREAM:
        return m.group(1) + _ATTN_TO_UPSTREAM[m.group(2)] + m.group(3)
    return key


def vae_key_from_upstream(key: str) -> str:
    m = _ATTN_RE.match(key)
    if m and m.group(2) in _ATTN_FROM_UPSTREAM:
        return m.group(1) + _ATTN_FROM_UPSTREAM[m.group(2)] + m.group(3)
    return key


def vae_state_dict_from_upstream(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Rename a released VAE state dict to our keys (no tensor is changed)."""
    return {vae_key_from_upstream(k): v for k, v in state.items()}


def build_vae(preset: str | VideoVAEParams, device: torch.device | str = "meta") -> AutoencoderKLVideo:
    """Construct a VAE (on the meta device by default: no memory until weights are assigned)."""
    params = VAE_PRESETS[preset] if isinstance(preset, str) else preset
    with torch.device(device):
        return AutoencoderKLVideo(params).eval()
