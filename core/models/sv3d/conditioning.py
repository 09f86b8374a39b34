"""SV3D's per-frame vector conditioning: sinusoidal embeddings of cond_aug, polar and azimuth.

`sinusoidal(values, dim)` is the DDPM/ADM timestep embedding the upstream conditioner applies
to each scalar: frequencies exp(-ln(10000) * i / (dim/2)), i = 0 .. dim/2 - 1, computed in
float32, the values cast to float32 *before* multiplying (upstream receives the angles as
float64 radians and casts them there), cos half first, then sin half.
"""

from __future__ import annotations

import math
from typing import Sequence

import torch

from ...orbit import ModelAngles

MAX_PERIOD = 10000


def sinusoidal(values: torch.Tensor, dim: int) -> torch.Tensor:
    """values (N,) any real dtype -> (N, dim) float32 [cos(v f_i) | sin(v f_i)] (zero-padded if dim is odd)."""
    half = dim // 2
    freqs = torch.exp(-math.log(MAX_PERIOD) * torch.arange(half, dtype=torch.float32) / half).to(values.device)
    args = values.reshape(-1).float()[:, None] * freqs[None]
    emb = torch.cat([torch.cos(args), torch.sin(args)], dim=-1)
    if dim % 2:
        emb = torch.cat([emb, torch.zeros_like(emb[:, :1])], dim=-1)
    return emb


def vector_conditioning(dims: Sequence[int], num_frames: int, cond_aug: float,
                        angles: ModelAngles | None = None) -> torch.Tensor:
    """The UNet's vector input y: (num_frames, sum(dims)) float32.

    dims: (256,) for SV3D-U, ignoring `angles`; (256, 512, 512) for SV3D-P, which needs
    `angles` (polar and azimuth in radians, one per frame, in the model's frame order).
    """
    parts = [sinusoidal(torch.full((num_frames,), float(cond_aug), dtype=torch.float32), dims[0])]
    if len(dims) == 3:
        if angles is None:
            raise ValueError("SV3D-P needs per-frame polar and azimuth angles")
        if len(angles.polars_rad) != num_frames or len(angles.azimuths_rad) != num_frames:
            raise ValueError(f"need {num_frames} polar and azimuth angles, got "
                             f"{len(angles.polars_rad)} and {len(angles.azimuths_rad)}")
        parts.append(sinusoidal(torch.tensor(angles.polars_rad, dtype=torch.float64), dims[1]))
        parts.append(sinusoidal(torch.tensor(angles.azimuths_rad, dtype=torch.float64), dims[2]))
    elif len(dims) != 1:
        raise ValueError(f"vector dims must be (cond_aug,) or (cond_aug, polar, azimuth), got {tuple(dims)}")
    return torch.cat(parts, dim=1)
