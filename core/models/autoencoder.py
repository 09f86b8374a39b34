"""KL-regularised image autoencoder (the Stable Diffusion "KL-f8" VAE) used by DynamiCrafter/CamI2V.

Status: READY. `AutoencoderKL(AUTOENCODER_PRESETS["kl-f8"])` builds on the meta device; its
state-dict keys are exactly the upstream keys after the `first_stage_model.` prefix.

Frames are encoded one at a time as 2D images (the video axis is folded into the batch). The
latent is `scale_factor * sample(N(mean, exp(logvar)))`; decoding divides by the same factor.
GroupNorm always runs in float32 so bf16/fp16 inference stays stable.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .layers import GroupNorm32

# -- building blocks -------------------------------------------------------------------------


def _norm(channels: int) -> GroupNorm32:
    return GroupNorm32(32, channels, eps=1e-6)


class ResnetBlock(nn.Module):
    """norm-SiLU-conv twice with a residual; a 1x1 `nin_shortcut` when the width changes."""

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        self.norm1 = _norm(in_channels)
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, padding=1)
        self.norm2 = _norm(out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1)
        self.nin_shortcut = nn.Conv2d(in_channels, out_channels, 1) if in_channels != out_channels else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        h = self.conv2(F.silu(self.norm2(h)))
        if self.nin_shortcut is not None:
            x = self.nin_shortcut(x)
        return x + h


class AttnBlock(nn.Module):
    """Single-head self-attention over all pixels, with 1x1-conv projections (SD layout)."""

    def __init__(self, channels: int):
        super().__init__()
        self.norm = _norm(channels)
        self.q = nn.Conv2d(channels, channels, 1)
        self.k = nn.Conv2d(channels, channels, 1)
        self.v = nn.Conv2d(channels, channels, 1)
        self.proj_out = nn.Conv2d(channels, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, c, h, w = x.shape
        y = self.norm(x)
        q, k, v = (conv(y).reshape(n, 1, c, h * w).transpose(-1, -2) for conv in (self.q, self.k, self.v))
        out = F.scaled_dot_product_attention(q, k, v)  # (n, 1, hw, c), scale c^-1/2
        out = out.transpose(-1, -2).reshape(n, c, h, w)
        return x + self.proj_out(out)


class Downsample(nn.Module):
    """Stride-2 3x3 conv; the input is padded on the right/bottom only, as the weights expect."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, stride=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.pad(x, (0, 1, 0, 1)))


class Upsample(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # nearest-neighbour upsampling in float32: bf16 `interpolate` is slow or missing on some backends
        return self.conv(F.interpolate(x.float(), scale_factor=2.0, mode="nearest").to(x.dtype))


class _Level(nn.Module):
    """One resolution level: `block` (a list of ResnetBlocks) and an optional resampler."""

    def __init__(self, blocks: Sequence[nn.Module], downsample: Optional[nn.Module] = None,
                 upsample: Optional[nn.Module] = None):
        super().__init__()
        self.block = nn.ModuleList(blocks)
        self.downsample = downsample  # None is a plain attribute: no state-dict keys
        self.upsample = upsample


class _Mid(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.block_1 = ResnetBlock(channels, channels)
        self.attn_1 = AttnBlock(channels)
        self.block_2 = ResnetBlock(channels, channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.block_2(self.attn_1(self.block_1(x)))


# -- params and presets ----------------------------------------------------------------------


@dataclass(frozen=True)
class AutoencoderParams:
    """Architecture of the KL autoencoder.

    `channel_mult` gives the width of each level as a multiple of `base_channels`; every level
    but the last halves the resolution, so the spatial factor is 2**(len(channel_mult)-1).
    """

    in_channels: int = 3
    out_channels: int = 3
    base_channels: int = 128
    channel_mult: tuple[int, ...] = (1, 2, 4, 4)
    num_res_blocks: int = 2
    z_channels: int = 4
    embed_dim: int = 4
    scale_factor: float = 0.18215

    def __post_init__(self) -> None:
        if self.base_channels % 32 or any((self.base_channels * m) % 32 for m in self.channel_mult):
            raise ValueError("every level width must be a multiple of 32 (GroupNorm with 32 groups)")
        if self.num_res_blocks < 1 or not self.channel_mult:
            raise ValueError("need at least one level and one residual block per level")

    @property
    def downscale(self) -> int:
        return 2 ** (len(self.channel_mult) - 1)


AUTOENCODER_PRESETS: dict[str, AutoencoderParams] = {
    # SD / DynamiCrafter / CamI2V first stage (ch 128, mult 1-2-4-4, 2 res blocks, z 4).
    "kl-f8": AutoencoderParams(),
    # For CPU tests only: same 8x downscale, 32 channels everywhere, one block per level.
    "tiny": AutoencoderParams(base_channels=32, channel_mult=(1, 1, 1, 1), num_res_blocks=1),
}


# -- encoder / decoder -----------------------------------------------------------------------


class Encoder(nn.Module):
    """(N, 3, H, W) image -> (N, 2*z, H/f, W/f) posterior moments (before `quant_conv`)."""

    def __init__(self, p: AutoencoderParams):
        super().__init__()
        widths = [p.base_channels * m for m in p.channel_mult]
        self.conv_in = nn.Conv2d(p.in_channels, p.base_channels, 3, padding=1)
        levels = []
        c = p.base_channels
        for i, w in enumerate(widths):
            blocks = []
            for _ in range(p.num_res_blocks):
                blocks.append(ResnetBlock(c, w))
                c = w
            last = i == len(widths) - 1
            levels.append(_Level(blocks, downsample=None if last else Downsample(c)))
        self.down = nn.ModuleList(levels)
        self.mid = _Mid(c)
        self.norm_out = _norm(c)
        self.conv_out = nn.Conv2d(c, 2 * p.z_channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv_in(x)
        for level in self.down:
            for block in level.block:
                h = block(h)
            if level.downsample is not None:
                h = level.downsample(h)
        h = self.mid(h)
        return self.conv_out(F.silu(self.norm_out(h)))


class Decoder(nn.Module):
    """(N, z, h, w) latent (after `post_quant_conv`) -> (N, 3, h*f, w*f) image, roughly [-1, 1]."""

    def __init__(self, p: AutoencoderParams):
        super().__init__()
        widths = [p.base_channels * m for m in p.channel_mult]
        c = widths[-1]
        self.conv_in = nn.Conv2d(p.z_channels, c, 3, padding=1)
        self.mid = _Mid(c)
        # `up[i]` is level i (finest first) so the keys match upstream; it runs coarsest first.
        levels: list[_Level] = []
        for i in reversed(range(len(widths))):
            blocks = []
            for _ in range(p.num_res_blocks + 1):
                blocks.append(ResnetBlock(c, widths[i]))
                c = widths[i]
            levels.insert(0, _Level(blocks, upsample=Upsample(c) if i != 0 else None))
        self.up = nn.ModuleList(levels)
        self.norm_out = _norm(c)
        self.conv_out = nn.Conv2d(c, p.out_channels, 3, padding=1)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        h = self.mid(self.conv_in(z))
        for level in reversed(self.up):
            for block in level.block:
                h = block(h)
            if level.upsample is not None:
                h = level.upsample(h)
        return self.conv_out(F.silu(self.norm_out(h)))


@dataclass
class DiagonalGaussian:
    """Posterior N(mean, exp(logvar)), each (N, embed_dim, h, w); logvar already clamped."""

    mean: torch.Tensor
    logvar: torch.Tensor

    @property
    def std(self) -> torch.Tensor:
        return torch.exp(0.5 * self.logvar)

    def sample(self, noise: torch.Tensor) -> torch.Tensor:
        return self.mean + self.std * noise.to(device=self.mean.device, dtype=self.mean.dtype)

    def mode(self) -> torch.Tensor:
        return self.mean


class AutoencoderKL(nn.Module):
    """The first-stage model: `encoder`, `decoder`, `quant_conv`, `post_quant_conv`.

    Video helpers take and return (B, C, T, H, W) tensors and process frames in chunks of
    `chunk` frames (memory vs speed; results do not depend on the chunk size).
    """

    def __init__(self, params: AutoencoderParams = AutoencoderParams()):
        super().__init__()
        self.params = params
        self.encoder = Encoder(params)
        self.decoder = Decoder(params)
        self.quant_conv = nn.Conv2d(2 * params.z_channels, 2 * params.embed_dim, 1)
        self.post_quant_conv = nn.Conv2d(params.embed_dim, params.z_channels, 1)

    @property
    def scale_factor(self) -> float:
        return self.params.scale_factor

    # -- images (N, C, H, W) ---------------------------------------------------------------
    def encode_posterior(self, x: torch.Tensor) -> DiagonalGaussian:
        """x: (N, 3, H, W) in [-1, 1], H and W multiples of the downscale factor."""
        moments = self.quant_conv(self.encoder(x))
        mean, logvar = moments.chunk(2, dim=1)
        return DiagonalGaussian(mean, logvar.clamp(-30.0, 20.0))

    def decode_image(self, z: torch.Tensor) -> torch.Tensor:
        """z: (N, embed_dim, h, w) unscaled latent -> (N, 3, H, W), roughly [-1, 1], not clamped."""
        return self.decoder(self.post_quant_conv(z))

    # -- videos (B, C, T, H, W); inference helpers, no autograd ------------------------------
    @torch.no_grad()
    def encode_video(
        self,
        video: torch.Tensor,
        *,
        sample: bool = True,
        generator: Optional[torch.Generator] = None,
        noise: Optional[torch.Tensor] = None,
        chunk: int = 1,
    ) -> torch.Tensor:
        """Encode every frame to a scaled latent.

        video: (B, 3, T, H, W) in [-1, 1]. Returns (B, embed_dim, T, H/f, W/f) multiplied by
        `scale_factor`. With `sample` the posterior is sampled with `noise` (same shape as the
        result, standard normal) or, if absent, with noise drawn from `generator` (one draw of
        the whole latent, so the result does not depend on `chunk`). `sample=False` takes the mean.
        """
        b, c, t, hh, ww = video.shape
        f = self.params.downscale
        frames = video.permute(0, 2, 1, 3, 4).reshape(b * t, c, hh, ww)
        if sample and noise is None:
            shape = (b, self.params.embed_dim, t, hh // f, ww // f)
            gen_device = generator.device if generator is not None else video.device
            noise = torch.randn(shape, generator=generator, device=gen_device, dtype=torch.float32)
        if noise is not None:
            noise = noise.permute(0, 2, 1, 3, 4).reshape(b * t, *noise.shape[1:2], *noise.shape[3:])
        out = []
        for s in range(0, b * t, max(1, chunk)):
            post = self.encode_posterior(frames[s:s + chunk])
            z = post.sample(noise[s:s + chunk]) if sample else post.mode()
            out.append(z * self.scale_factor)
        z = torch.cat(out)
        return z.reshape(b, t, *z.shape[1:]).permute(0, 2, 1, 3, 4)

    @torch.no_grad()
    def decode_video(
        self,
        z: torch.Tensor,
        *,
        chunk: int = 1,
        on_chunk: Optional[Callable[[int, int], None]] = None,
    ) -> torch.Tensor:
        """z: (B, embed_dim, T, h, w) scaled latent -> (B, 3, T, h*f, w*f), roughly [-1, 1], not clamped.

        `on_chunk(done_frames, total_frames)` is called after each chunk (progress/cancel hook).
        """
        b, c, t, h, w = z.shape
        frames = z.permute(0, 2, 1, 3, 4).reshape(b * t, c, h, w)
        out = []
        for s in range(0, b * t, max(1, chunk)):
            out.append(self.decode_image(frames[s:s + chunk] / self.scale_factor))
            if on_chunk is not None:
                on_chunk(min(s + chunk, b * t), b * t)
        x = torch.cat(out)
        return x.reshape(b, t, *x.shape[1:]).permute(0, 2, 1, 3, 4)
