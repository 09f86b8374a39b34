"""RIFE v4.x's IFNet (Huang et al., "Real-Time Intermediate Flow Estimation for Video Frame
Interpolation", ECCV 2022; Practical-RIFE v4.2x releases, MIT), as plain modules.

Values: frames are RGB float in [0, 1], (N, 3, H, W) with H and W multiples of
``64 / scale`` (the pipeline in `core.postprocess.rife` pads). The timestep t in [0, 1] is the
position of the new frame between img0 (t = 0) and img1 (t = 1): a float, or an (N, 1, 1, 1)
tensor so one batch can hold several in-between times of the same pair.

Network: a shared encoder gives each frame `head_channels` feature maps at full resolution. Five
flow blocks, coarse to fine (inputs downscaled by 16, 8, 4, 2, 1), each predict a residual of the
two flows from the new frame to img0 and to img1 (pixels, (dx, dy) each), a fusion-mask logit and
features for the next block, from both frames (and encodings) warped by the current flow. The
output is ``sigmoid(m) * warp(img0, f_t0) + (1 - sigmoid(m)) * warp(img1, f_t1)``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .config import RIFEConfig

_SLOPE = 0.2  # LeakyReLU slope used throughout


class Encoder(nn.Module):
    """(N, 3, H, W) in [0, 1] -> (N, head_channels, H, W): two strides down and up."""

    def __init__(self, cfg: RIFEConfig):
        super().__init__()
        c = cfg.head_hidden
        self.conv0 = nn.Conv2d(3, c, 3, 2, 1)
        self.conv1 = nn.Conv2d(c, c, 3, 1, 1)
        self.conv2 = nn.Conv2d(c, c, 3, 1, 1)
        self.up = nn.ConvTranspose2d(c, cfg.head_channels, 4, 2, 1)

    def forward(self, x: Tensor) -> Tensor:
        x = x.clamp(0.0, 1.0)
        x = F.leaky_relu(self.conv0(x), _SLOPE)
        x = F.leaky_relu(self.conv1(x), _SLOPE)
        x = F.leaky_relu(self.conv2(x), _SLOPE)
        return self.up(x)


class ResConv(nn.Module):
    """x -> leaky(conv(x) * beta + x), beta a learned per-channel gain (1, C, 1, 1)."""

    def __init__(self, c: int):
        super().__init__()
        self.conv = nn.Conv2d(c, c, 3, 1, 1)
        self.beta = nn.Parameter(torch.ones((1, c, 1, 1)))

    def forward(self, x: Tensor) -> Tensor:
        return F.leaky_relu(self.conv(x) * self.beta + x, _SLOPE)


class FlowBlock(nn.Module):
    """One pyramid level: works at 1/(4 * scale) of the input size, predicts at full size.

    forward(x, flow, scale) -> (flow (N, 4, H, W) pixels, mask logit (N, 1, H, W),
    features (N, block_out - 5, H, W)). `flow`, when given, is the current estimate: it is
    appended (rescaled to the block's resolution) to the input.
    """

    def __init__(self, in_channels: int, c: int, cfg: RIFEConfig):
        super().__init__()
        self.down0 = nn.Conv2d(in_channels, c // 2, 3, 2, 1)
        self.down1 = nn.Conv2d(c // 2, c, 3, 2, 1)
        self.res = nn.ModuleList(ResConv(c) for _ in range(cfg.res_convs))
        self.up = nn.ConvTranspose2d(c, 4 * cfg.block_out, 4, 2, 1)

    def forward(self, x: Tensor, flow: Tensor | None, scale: float) -> tuple[Tensor, Tensor, Tensor]:
        x = F.interpolate(x, scale_factor=1.0 / scale, mode="bilinear", align_corners=False)
        if flow is not None:
            # flows are in pixels: shrinking the image shrinks them
            flow = F.interpolate(flow, scale_factor=1.0 / scale, mode="bilinear", align_corners=False) / scale
            x = torch.cat((x, flow), 1)
        feat = F.leaky_relu(self.down0(x), _SLOPE)
        feat = F.leaky_relu(self.down1(feat), _SLOPE)
        for r in self.res:
            feat = r(feat)
        tmp = F.pixel_shuffle(self.up(feat), 2)
        tmp = F.interpolate(tmp, scale_factor=scale, mode="bilinear", align_corners=False)
        return tmp[:, :4] * scale, tmp[:, 4:5], tmp[:, 5:]


def backward_warp(image: Tensor, flow: Tensor) -> Tensor:
    """Sample image (N, C, H, W) at x + flow(x); flow (N, 2, H, W) in pixels. Bilinear, edges
    replicated, pixel centres at the corners of [-1, 1] (align_corners=True), as RIFE was trained."""
    n, _, h, w = flow.shape
    xs = torch.linspace(-1.0, 1.0, w, device=flow.device, dtype=flow.dtype).view(1, 1, w).expand(n, h, w)
    ys = torch.linspace(-1.0, 1.0, h, device=flow.device, dtype=flow.dtype).view(1, h, 1).expand(n, h, w)
    gx = xs + flow[:, 0] / ((w - 1.0) / 2.0)
    gy = ys + flow[:, 1] / ((h - 1.0) / 2.0)
    grid = torch.stack((gx, gy), -1)
    return F.grid_sample(image, grid, mode="bilinear", padding_mode="border", align_corners=True)


@dataclass
class IFNetOutput:
    """merged: (N, 3, H, W) the new frame; flow: (N, 4, H, W) pixels, new frame -> img0 (0:2) and
    -> img1 (2:4); mask_logit: (N, 1, H, W), sigmoid of it weights the warped img0."""

    merged: Tensor
    flow: Tensor
    mask_logit: Tensor


class IFNet(nn.Module):
    """The interpolation network of one RIFE v4.x release (see the module docstring)."""

    def __init__(self, cfg: RIFEConfig):
        super().__init__()
        self.cfg = cfg
        self.encoder = Encoder(cfg)
        ins = [cfg.first_in] + [cfg.refine_in] * (len(cfg.block_widths) - 1)
        self.blocks = nn.ModuleList(FlowBlock(i, c, cfg) for i, c in zip(ins, cfg.block_widths))

    def encode(self, img: Tensor) -> Tensor:
        return self.encoder(img)

    def forward_full(self, img0: Tensor, img1: Tensor, timestep: float | Tensor = 0.5, scale: float = 1.0,
                     f0: Tensor | None = None, f1: Tensor | None = None) -> IFNetOutput:
        """img0, img1: (N, 3, H, W) in [0, 1]. f0, f1: their encodings when already computed
        (one frame serves several pairs and times). scale: 0.5 for very large frames."""
        img0, img1 = img0.clamp(0.0, 1.0), img1.clamp(0.0, 1.0)
        n, _, h, w = img0.shape
        if torch.is_tensor(timestep):
            t = timestep.to(img0.dtype).reshape(-1, 1, 1, 1).expand(n, 1, h, w)
        else:
            t = img0.new_full((n, 1, h, w), float(timestep))
        f0 = self.encoder(img0) if f0 is None else f0
        f1 = self.encoder(img1) if f1 is None else f1
        flow = mask = feat = None
        warped0, warped1 = img0, img1
        for block, s in zip(self.blocks, self.cfg.block_scales):
            s = s / scale
            if flow is None:
                flow, mask, feat = block(torch.cat((img0, img1, f0, f1, t), 1), None, s)
            else:
                wf0 = backward_warp(f0, flow[:, :2])
                wf1 = backward_warp(f1, flow[:, 2:4])
                delta, mask, feat = block(torch.cat((warped0, warped1, wf0, wf1, t, mask, feat), 1), flow, s)
                flow = flow + delta
            warped0 = backward_warp(img0, flow[:, :2])
            warped1 = backward_warp(img1, flow[:, 2:4])
        m = torch.sigmoid(mask)
        return IFNetOutput(warped0 * m + warped1 * (1 - m), flow, mask)

    def forward(self, img0: Tensor, img1: Tensor, timestep: float | Tensor = 0.5, scale: float = 1.0) -> Tensor:
        """The new frame (N, 3, H, W) in about [0, 1] (not clamped)."""
        return self.forward_full(img0, img1, timestep, scale).merged
