"""Perceiver resampler that turns CLIP image tokens into per-frame context tokens.

Status: READY. `Resampler(RESAMPLER_PRESETS["dynamicrafter"])` is DynamiCrafter's/CamI2V's
`image_proj_model`: its keys are the upstream keys after `image_proj_model.` (`latents`,
`proj_in`, `proj_out`, `norm_out`, `layers.i.0.{norm1,norm2,to_q,to_kv,to_out}`,
`layers.i.1.{0,1,3}` = FF LayerNorm / Linear / Linear). Builds on the meta device.

The learned queries are `num_queries * video_length` (16 x 16 = 256): frame t of the video
reads the 16 output tokens [16t, 16t + 16).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn

from .clip.transformer import LayerNorm32


@dataclass(frozen=True)
class ResamplerParams:
    dim: int = 1024
    depth: int = 4
    dim_head: int = 64
    heads: int = 12
    num_queries: int = 16  # per frame
    embedding_dim: int = 1280  # CLIP image token width
    output_dim: int = 1024
    ff_mult: int = 4
    video_length: Optional[int] = 16  # None: one set of `num_queries` for a still image

    @property
    def total_queries(self) -> int:
        return self.num_queries * (self.video_length or 1)


RESAMPLER_PRESETS: dict[str, ResamplerParams] = {
    "dynamicrafter": ResamplerParams(),
    # For CPU tests only; matches `core.models.cami2v.config.tiny_params` (4 frames x 2 tokens, width 32)
    # and the tiny image embedder (width 48).
    "tiny": ResamplerParams(dim=32, depth=2, dim_head=16, heads=2, num_queries=2, embedding_dim=48,
                            output_dim=32, video_length=4),
}


class PerceiverAttention(nn.Module):
    """Latents attend to [image tokens ; latents] (no biases)."""

    def __init__(self, dim: int, dim_head: int, heads: int):
        super().__init__()
        inner = dim_head * heads
        self.heads = heads
        self.norm1 = LayerNorm32(dim)
        self.norm2 = LayerNorm32(dim)
        self.to_q = nn.Linear(dim, inner, bias=False)
        self.to_kv = nn.Linear(dim, 2 * inner, bias=False)
        self.to_out = nn.Linear(inner, dim, bias=False)

    def forward(self, x: torch.Tensor, latents: torch.Tensor) -> torch.Tensor:
        """x: (B, N, dim) image features, latents: (B, L, dim) -> (B, L, dim) update."""
        x, latents = self.norm1(x), self.norm2(latents)
        b, n_lat, _ = latents.shape
        q = self.to_q(latents)
        k, v = self.to_kv(torch.cat([x, latents], dim=1)).chunk(2, dim=-1)
        q, k, v = (t.reshape(b, t.shape[1], self.heads, -1).transpose(1, 2) for t in (q, k, v))
        # softmax in float32, as upstream does for fp16 stability
        out = F.scaled_dot_product_attention(q.float(), k.float(), v.float()).to(q.dtype)
        return self.to_out(out.transpose(1, 2).reshape(b, n_lat, -1))


def _feed_forward(dim: int, mult: int) -> nn.Sequential:
    # indices 0..3 are the checkpoint's `layers.i.1.{0,1,3}` keys (2 is the parameter-free GELU)
    return nn.Sequential(LayerNorm32(dim), nn.Linear(dim, dim * mult, bias=False), nn.GELU(),
                         nn.Linear(dim * mult, dim, bias=False))


class Resampler(nn.Module):
    """CLIP image tokens (B, N, embedding_dim) -> context tokens (B, total_queries, output_dim)."""

    def __init__(self, params: ResamplerParams = ResamplerParams()):
        super().__init__()
        p = params
        self.params = p
        self.latents = nn.Parameter(torch.empty(1, p.total_queries, p.dim))
        self.proj_in = nn.Linear(p.embedding_dim, p.dim)
        self.proj_out = nn.Linear(p.dim, p.output_dim)
        self.norm_out = LayerNorm32(p.output_dim)
        self.layers = nn.ModuleList(
            nn.ModuleList([PerceiverAttention(p.dim, p.dim_head, p.heads), _feed_forward(p.dim, p.ff_mult)])
            for _ in range(p.depth)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        latents = self.latents.to(x.dtype).expand(x.shape[0], -1, -1)
        x = self.proj_in(x)
        for attn, ff in self.layers:
            latents = attn(x, latents) + latents
            latents = ff(latents) + latents
        return self.norm_out(self.proj_out(latents))
