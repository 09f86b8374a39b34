"""The pre-LN transformer block shared by the CLIP text and image towers.

Status: READY. Parameter names follow OpenCLIP (`ln_1`, `attn`, `ln_2`, `mlp.c_fc`, `mlp.c_proj`).
The attention projections come in two layouts so one module serves both checkpoint families:
`"fused"` holds `attn.in_proj_weight`/`attn.in_proj_bias` (OpenCLIP, `nn.MultiheadAttention`), and
`"separate"` holds `attn.q_proj`/`attn.k_proj`/`attn.v_proj` (Hugging Face `CLIPTextModel`).
Both have `attn.out_proj`.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

ACTIVATIONS = ("gelu", "quick_gelu")
QKV_LAYOUTS = ("fused", "separate")


class LayerNorm32(nn.LayerNorm):
    """LayerNorm computed in float32 and cast back to the input dtype."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = self.weight.float() if self.weight is not None else None
        b = self.bias.float() if self.bias is not None else None
        return F.layer_norm(x.float(), self.normalized_shape, w, b, self.eps).to(x.dtype)


def activate(x: torch.Tensor, kind: str) -> torch.Tensor:
    if kind == "gelu":
        return F.gelu(x)
    if kind == "quick_gelu":
        return x * torch.sigmoid(1.702 * x)
    raise ValueError(f"unknown activation {kind!r}; expected one of {ACTIVATIONS}")


class SelfAttention(nn.Module):
    """Multi-head self-attention with biased projections, computed with SDPA."""

    def __init__(self, width: int, heads: int, qkv_layout: str = "fused"):
        super().__init__()
        if width % heads:
            raise ValueError(f"width {width} is not divisible by {heads} heads")
        if qkv_layout not in QKV_LAYOUTS:
            raise ValueError(f"unknown qkv layout {qkv_layout!r}; expected one of {QKV_LAYOUTS}")
        self.heads = heads
        self.qkv_layout = qkv_layout
        if qkv_layout == "fused":
            self.in_proj_weight = nn.Parameter(torch.empty(3 * width, width))
            self.in_proj_bias = nn.Parameter(torch.empty(3 * width))
        else:
            self.q_proj = nn.Linear(width, width)
            self.k_proj = nn.Linear(width, width)
            self.v_proj = nn.Linear(width, width)
        self.out_proj = nn.Linear(width, width)

    def forward(self, x: torch.Tensor, causal: bool = False) -> torch.Tensor:
        """x: (B, L, width) -> (B, L, width)."""
        b, n, c = x.shape
        if self.qkv_layout == "fused":
            q, k, v = F.linear(x, self.in_proj_weight, self.in_proj_bias).chunk(3, dim=-1)
        else:
            q, k, v = self.q_proj(x), self.k_proj(x), self.v_proj(x)
        q, k, v = (t.reshape(b, n, self.heads, c // self.heads).transpose(1, 2) for t in (q, k, v))
        out = F.scaled_dot_product_attention(q, k, v, is_causal=causal)
        return self.out_proj(out.transpose(1, 2).reshape(b, n, c))


class Mlp(nn.Module):
    def __init__(self, width: int, hidden: int, activation: str):
        super().__init__()
        if activation not in ACTIVATIONS:
            raise ValueError(f"unknown activation {activation!r}; expected one of {ACTIVATIONS}")
        self.activation = activation
        self.c_fc = nn.Linear(width, hidden)
        self.c_proj = nn.Linear(hidden, width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.c_proj(activate(self.c_fc(x), self.activation))


class ResidualAttentionBlock(nn.Module):
    """x + attn(ln_1 x), then x + mlp(ln_2 x)."""

    def __init__(self, width: int, heads: int, mlp_ratio: float, activation: str, qkv_layout: str,
                 ln_eps: float = 1e-5):
        super().__init__()
        self.ln_1 = LayerNorm32(width, eps=ln_eps)
        self.attn = SelfAttention(width, heads, qkv_layout)
        self.ln_2 = LayerNorm32(width, eps=ln_eps)
        self.mlp = Mlp(width, int(width * mlp_ratio), activation)

    def forward(self, x: torch.Tensor, causal: bool = False) -> torch.Tensor:
        x = x + self.attn(self.ln_1(x), causal=causal)
        return x + self.mlp(self.ln_2(x))


class Transformer(nn.Module):
    """A stack of `ResidualAttentionBlock`s under the name `resblocks`."""

    def __init__(self, width: int, layers: int, heads: int, mlp_ratio: float, activation: str,
                 qkv_layout: str, ln_eps: float = 1e-5):
        super().__init__()
        self.resblocks = nn.ModuleList(
            ResidualAttentionBlock(width, heads, mlp_ratio, activation, qkv_layout, ln_eps) for _ in range(layers)
        )

    def forward(self, x: torch.Tensor, num_layers: int | None = None, causal: bool = False) -> torch.Tensor:
        """Run the first `num_layers` blocks (all when None). x: (B, L, width)."""
        for block in self.resblocks[: len(self.resblocks) if num_layers is None else num_layers]:
            x = block(x, causal=causal)
        return x
