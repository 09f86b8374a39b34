"""Layers shared by the model families: float32 GroupNorm and the sinusoidal timestep embedding."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class GroupNorm32(nn.GroupNorm):
    """GroupNorm computed in float32 whatever the input dtype (half-precision statistics drift),
    cast back to the input dtype."""

    def forward(self, x: Tensor) -> Tensor:
        weight = None if self.weight is None else self.weight.float()
        bias = None if self.bias is None else self.bias.float()
        return F.group_norm(x.float(), self.num_groups, weight, bias, self.eps).to(x.dtype)


def timestep_embedding(t: Tensor, dim: int, flip_sin_to_cos: bool = True, shift: float = 0.0,
                       max_period: float = 10000.0) -> Tensor:
    """Sinusoidal embedding of (N,) timesteps (or fps / frame stride) -> (N, dim) float32.

    Frequencies exp(-ln(max_period) * i / (dim/2 - shift)); layout [cos | sin] (the LDM /
    DynamiCrafter one), or [sin | cos] with `flip_sin_to_cos=False` (diffusers `Timesteps`
    defaults). An odd `dim` gets a zero last column.
    """
    half = dim // 2
    exponent = -math.log(max_period) * torch.arange(half, dtype=torch.float32, device=t.device)
    freqs = torch.exp(exponent / (half - shift))
    args = t.float()[:, None] * freqs[None]
    parts = [torch.cos(args), torch.sin(args)] if flip_sin_to_cos else [torch.sin(args), torch.cos(args)]
    emb = torch.cat(parts, dim=-1)
    if dim % 2:
        emb = torch.cat([emb, torch.zeros_like(emb[:, :1])], dim=-1)
    return emb
