"""Upscale-A-Video's training-free latent propagation (`Propagation(4, learnable=False)`).

Public API (used by the pipeline; no parameters, nothing to load):

    x0 = propagate_latents(x0, flows_forward, flows_backward)          # the pipeline's settings
    x0 = propagate_latents(x0, ff, fb, interpolation="bilinear", fuse_scale=0.5,
                           alpha1=0.001, alpha2=0.05)
    flow_warp(x, flow, interpolation)        # backward warping, (n,c,h,w) by (n,2,h,w)
    consistency_mask(flow, flow_check, alpha1, alpha2)

`x0` is the predicted clean latent (b, c, t, h, w); flows come from `raft.BidirectionalRAFT` at
image resolution (b, 2, t-1, H, W) and are area-resized to the latent grid and scaled by w/W here.

Procedure (upstream order, which matters for the result):
1. backward pass, frames t-1 .. 0: frame i is replaced by a blend of itself and the already
   propagated frame i+1 warped with flows_forward[i] (i -> i+1), where the flows agree;
2. forward pass over the backward-pass outputs, frames 0 .. t-1: frame i blends with the
   propagated frame i-1 warped with flows_backward[i-1] (i -> i-1);
only the forward-pass result is returned. The first frame of each pass is copied unchanged.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

INTERPOLATIONS = ("nearest", "bilinear")


def flow_warp(x: torch.Tensor, flow: torch.Tensor, interpolation: str = "bilinear") -> torch.Tensor:
    """Sample x (n, c, h, w) at pixel + flow; flow (n, 2, h, w) in pixels (x, y). Zeros outside."""
    if interpolation not in INTERPOLATIONS:
        raise ValueError(f"interpolation must be one of {INTERPOLATIONS}, got {interpolation!r}")
    n, _, h, w = x.shape
    ys, xs = torch.meshgrid(torch.arange(h, device=x.device, dtype=flow.dtype),
                            torch.arange(w, device=x.device, dtype=flow.dtype), indexing="ij")
    gx = 2.0 * (xs + flow[:, 0]) / max(w - 1, 1) - 1.0
    gy = 2.0 * (ys + flow[:, 1]) / max(h - 1, 1) - 1.0
    grid = torch.stack([gx, gy], dim=-1).to(x.dtype)
    return F.grid_sample(x, grid, mode=interpolation, padding_mode="zeros", align_corners=True)


def consistency_mask(flow: torch.Tensor, flow_check: torch.Tensor, alpha1: float, alpha2: float) -> torch.Tensor:
    """Forward-backward check: 1 where `flow` (a -> b) and `flow_check` (b -> a) cancel out.

    valid = |f + w(g, f)|^2 < alpha1 * (|f|^2 + |w(g, f)|^2) + alpha2, with w(g, f) the check
    flow bilinearly warped by f. Returns (n, 1, h, w) in {0, 1}, dtype of `flow`.
    """
    back = flow_warp(flow_check, flow, "bilinear")
    diff = (flow + back).square().sum(dim=1, keepdim=True)
    mag = flow.square().sum(dim=1, keepdim=True) + back.square().sum(dim=1, keepdim=True)
    return (diff < alpha1 * mag + alpha2).to(flow.dtype)


def _to_latent_grid(flows: torch.Tensor, t: int, h: int, w: int) -> torch.Tensor:
    # area resize over (t-1, h, w); values scaled by the width ratio only (as upstream)
    return F.interpolate(flows, (t - 1, h, w), mode="area") * (w / flows.shape[-1])


def propagate_latents(
    x: torch.Tensor,
    flows_forward: torch.Tensor,
    flows_backward: torch.Tensor,
    interpolation: str = "nearest",
    fuse_scale: float = 0.5,
    alpha1: float = 0.001,
    alpha2: float = 0.05,
) -> torch.Tensor:
    """Bidirectional flow-guided blending of per-frame latents.

    x: (b, c, t, h, w). flows_forward / flows_backward: (b, 2, t-1, H, W), pixels of the (H, W)
    grid they were computed on (any size; resized here). interpolation: "nearest" (the pipeline's
    choice) or "bilinear". fuse_scale: weight of the warped neighbour where the flows agree
    (upstream "fuse" mode; 1 = copy). Returns a new tensor shaped like x, in x's dtype
    (computed in float32).
    """
    if x.dim() != 5:
        raise ValueError(f"expected x (b, c, t, h, w), got {tuple(x.shape)}")
    b, c, t, h, w = x.shape
    if t < 2:
        return x.clone()
    expected = (b, 2, t - 1)
    for name, f in (("flows_forward", flows_forward), ("flows_backward", flows_backward)):
        if f.dim() != 5 or tuple(f.shape[:3]) != expected:
            raise ValueError(f"{name} must be {expected + ('H', 'W')}, got {tuple(f.shape)}")
    # Computed in float32 whatever x is: in fp16, pixel coordinates of a few hundred are only
    # resolved to 1/4 px, which moves "nearest" samples (upstream ran this in the UNet's dtype).
    out_dtype = x.dtype
    x = x.float()
    ff = _to_latent_grid(flows_forward.float(), t, h, w)
    fb = _to_latent_grid(flows_backward.float(), t, h, w)

    def step(prev, current, flow, flow_check):
        warped = flow_warp(prev, flow, interpolation)
        warped = fuse_scale * warped + (1 - fuse_scale) * current
        mask = consistency_mask(flow, flow_check, alpha1, alpha2)
        return mask * warped + (1 - mask) * current

    frames = [x[:, :, i] for i in range(t)]

    backward = [None] * t
    backward[t - 1] = frames[t - 1]
    for i in range(t - 2, -1, -1):
        backward[i] = step(backward[i + 1], frames[i], ff[:, :, i], fb[:, :, i])

    forward = [backward[0]]
    for i in range(1, t):
        forward.append(step(forward[i - 1], backward[i], fb[:, :, i - 1], ff[:, :, i - 1]))
    return torch.stack(forward, dim=2).to(out_dtype)
