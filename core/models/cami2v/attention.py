"""Attention layers of the DynamiCrafter UNet, all through `F.scaled_dot_product_attention`.

Token tensors are (N, L, C). Heads split the inner dimension head-major ((heads, head_dim)), as
the checkpoints expect. Softmax precision is the kernel's business: SDPA accumulates in float32
for half inputs, so no upcast is needed here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Union

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .masked_attention import EpipolarMask


def _split_heads(x: Tensor, heads: int) -> Tensor:
    n, length, inner = x.shape
    return x.view(n, length, heads, inner // heads).transpose(1, 2)


def _merge_heads(x: Tensor) -> Tensor:
    n, heads, length, dim = x.shape
    return x.transpose(1, 2).reshape(n, length, heads * dim)


def attend(q: Tensor, k: Tensor, v: Tensor, heads: int, mask: Optional[Tensor] = None) -> Tensor:
    """Multi-head attention of (N, Lq, inner) queries over (N, Lk, inner) keys/values.

    `mask` is boolean (True = may attend) or additive float in q's dtype, broadcastable to
    (N, heads, Lq, Lk): pass it with a head axis of size 1 so no per-head copy exists.
    """
    out = F.scaled_dot_product_attention(_split_heads(q, heads), _split_heads(k, heads),
                                         _split_heads(v, heads), attn_mask=mask)
    return _merge_heads(out)


class Attention(nn.Module):
    """Self- or cross-attention: `to_q/to_k/to_v` without bias, `to_out.0` with bias."""

    def __init__(self, query_dim: int, heads: int, head_dim: int, context_dim: Optional[int] = None):
        super().__init__()
        inner = heads * head_dim
        self.heads = heads
        self.to_q = nn.Linear(query_dim, inner, bias=False)
        self.to_k = nn.Linear(context_dim or query_dim, inner, bias=False)
        self.to_v = nn.Linear(context_dim or query_dim, inner, bias=False)
        # A Sequential so the output projection keeps the checkpoint name `to_out.0`.
        self.to_out = nn.Sequential(nn.Linear(inner, query_dim))

    def forward(self, x: Tensor, context: Optional[Tensor] = None) -> Tensor:
        """x: (N, L, query_dim); context: (N, Lc, context_dim) or None for self-attention."""
        context = x if context is None else context
        return self.to_out(attend(self.to_q(x), self.to_k(context), self.to_v(context), self.heads))


@dataclass(frozen=True)
class CrossKV:
    """One `DualCrossAttention` layer's keys and values for B videos of `frames` frames.

    text_k/text_v:   (B, Lt, inner) from the prompt tokens, which every frame attends alike.
    image_k/image_v: (B*T, Li, inner) per-frame image tokens, (B, Li, inner) when all frames
                     share them, or None without image tokens.
    They depend on the conditioning only, not on the noisy latent: computed once per video
    (per frame only where the tokens differ) instead of for every frame at every step.
    """

    text_k: Tensor
    text_v: Tensor
    image_k: Optional[Tensor]
    image_v: Optional[Tensor]
    frames: int

    @property
    def per_frame_image(self) -> bool:
        return self.image_k is not None and self.image_k.shape[0] != self.text_k.shape[0]


def attend_shared(q: Tensor, k: Tensor, v: Tensor, heads: int, frames: int) -> Tensor:
    """Queries (B*T, Lq, inner) of T frames attending keys/values (B, Lk, inner) shared by the
    frames of each video: the frames' queries are one longer query sequence of their video
    (attention rows are independent), so no per-frame copy of k/v is made."""
    bt, lq, inner = q.shape
    return attend(q.reshape(bt // frames, frames * lq, inner), k, v, heads).view(bt, lq, inner)


class DualCrossAttention(Attention):
    """Spatial cross-attention over text tokens plus (per-frame) image tokens.

    out = Attn(q, text) + s * Attn(q, image), where s = tanh(alpha) + 1 when the scale is learnable
    (256 models) and 1 otherwise (512 model). The image branch has its own `to_k_ip/to_v_ip`.
    """

    def __init__(self, query_dim: int, heads: int, head_dim: int, context_dim: int, text_tokens: int,
                 learnable_scale: bool):
        super().__init__(query_dim, heads, head_dim, context_dim)
        inner = heads * head_dim
        self.text_tokens = text_tokens
        self.to_k_ip = nn.Linear(context_dim, inner, bias=False)
        self.to_v_ip = nn.Linear(context_dim, inner, bias=False)
        self.alpha = nn.Parameter(torch.zeros(())) if learnable_scale else None

    def keys_values(self, text: Tensor, image: Tensor, frames: int) -> CrossKV:
        """text: (B, Lt, context_dim); image: (B*T or B, Li, context_dim) -> this layer's `CrossKV`."""
        has_image = image.shape[1] > 0
        return CrossKV(self.to_k(text), self.to_v(text), self.to_k_ip(image) if has_image else None,
                       self.to_v_ip(image) if has_image else None, frames)

    def forward(self, x: Tensor, context: Union[Tensor, CrossKV, None] = None) -> Tensor:
        """x: (N, L, query_dim); context: (N, text_tokens + image tokens, context_dim), or the
        layer's precomputed `CrossKV` (then N = B*T)."""
        if context is None:
            raise ValueError("DualCrossAttention needs a context")
        q = self.to_q(x)
        if isinstance(context, CrossKV):
            out = attend_shared(q, context.text_k, context.text_v, self.heads, context.frames)
            if context.image_k is None:
                out_ip = None
            elif context.per_frame_image:
                out_ip = attend(q, context.image_k, context.image_v, self.heads)
            else:
                out_ip = attend_shared(q, context.image_k, context.image_v, self.heads, context.frames)
        else:
            text, image = context[:, : self.text_tokens], context[:, self.text_tokens:]
            out = attend(q, self.to_k(text), self.to_v(text), self.heads)
            out_ip = attend(q, self.to_k_ip(image), self.to_v_ip(image), self.heads) if image.shape[1] > 0 else None
        if out_ip is not None:
            if self.alpha is not None:
                out_ip = out_ip * (torch.tanh(self.alpha) + 1)
            out = out + out_ip
        return self.to_out(out)


class GEGLU(nn.Module):
    def __init__(self, dim_in: int, dim_out: int):
        super().__init__()
        self.proj = nn.Linear(dim_in, 2 * dim_out)

    def forward(self, x: Tensor) -> Tensor:
        x, gate = self.proj(x).chunk(2, dim=-1)
        return x * F.gelu(gate)


class FeedForward(nn.Module):
    """GEGLU MLP, `net.0.proj` (dim -> 2*mult*dim) and `net.2` (mult*dim -> dim)."""

    def __init__(self, dim: int, mult: int = 4):
        super().__init__()
        inner = dim * mult
        # Index 1 was a Dropout upstream; an Identity keeps `net.2` where the checkpoint has it.
        self.net = nn.Sequential(GEGLU(dim, inner), nn.Identity(), nn.Linear(inner, dim))

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)


class EpipolarAttention(nn.Module):
    """CamI2V's attention across all frames' tokens, restricted to epipolar lines.

    Queries are the (T*h*w) tokens of one video; keys/values are the same tokens with
    `num_register_tokens` learned tokens prepended, so a query whose epipolar line misses every
    cell still has somewhere to attend. The mask (from `CameraCondition`) already carries the
    register columns (always True); None means unmasked attention over everything. It is either
    the boolean mask itself or, as the UNet passes it, the `EpipolarMask` prepared from it once
    per video (additive, possibly gathered: same outputs, less work per call).
    """

    def __init__(self, dim: int, heads: int, num_register_tokens: int):
        super().__init__()
        self.heads = heads
        self.register_tokens = nn.Parameter(torch.zeros(1, num_register_tokens, dim))
        self.to_q = nn.Linear(dim, dim, bias=False)
        self.to_k = nn.Linear(dim, dim, bias=False)
        self.to_v = nn.Linear(dim, dim, bias=False)
        self.to_out = nn.Sequential(nn.Linear(dim, dim))

    def forward(self, x: Tensor, mask: Union[Tensor, EpipolarMask, None]) -> Tensor:
        """x: (B, T*h*w, C); mask: (1 or B, 1, T*h*w, R + T*h*w) bool, its prepared
        `EpipolarMask`, or None -> (B, T*h*w, C)."""
        context = torch.cat([self.register_tokens.expand(x.shape[0], -1, -1), x], dim=1)
        q, k, v = self.to_q(x), self.to_k(context), self.to_v(context)
        if isinstance(mask, EpipolarMask):
            return self.to_out(mask.attend(q, k, v, self.heads))
        return self.to_out(attend(q, k, v, self.heads, mask))
