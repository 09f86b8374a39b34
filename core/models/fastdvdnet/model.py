"""FastDVDnet (Tassano, Delon, Veit, CVPR 2020): a two-stage video denoiser without motion compensation.

Two denoising blocks with the same architecture and separate weights. `stage1` denoises each of
the three overlapping frame triplets of a 5-frame window; `stage2` merges the three stage-1
results into the denoised centre frame. Every block is a 3-scale U-Net with additive skips and
pixel-shuffle upsampling whose output is subtracted from the triplet's middle frame (it predicts
the noise). All convolutions are 3x3 without bias, followed by eval-mode BatchNorm and ReLU
except the last one of a block.

Frames are RGB float in [0, 1] (may overshoot slightly when they carry noise). The noise level
`noise_std` is the standard deviation of the noise on that same [0, 1] scale (the usual
"sigma 25" is 25/255); the network sees it as a constant extra channel after every frame.
The released weights were trained for sigma in [5, 55] / 255.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

WINDOW = 5  # frames seen per output frame
TRIPLET = 3  # frames seen by one denoising block
SIZE_MULTIPLE = 4  # two stride-2 scales


# -- parameters ------------------------------------------------------------------------------

@dataclass(frozen=True)
class FastDVDnetParams:
    """Architecture of FastDVDnet.

    frame_channels:  feature channels per frame after the grouped input convolution.
    channels:        feature channels at full, 1/2 and 1/4 resolution.
    image_channels:  3 (RGB); the noise map adds one channel per frame.
    bn_eps:          BatchNorm epsilon (PyTorch default, as trained).
    """

    frame_channels: int = 30
    channels: tuple[int, int, int] = (32, 64, 128)
    image_channels: int = 3
    bn_eps: float = 1e-5


PRESETS: dict[str, FastDVDnetParams] = {
    # the released model (2,483,552 parameters)
    "fastdvdnet": FastDVDnetParams(),
    # same topology, narrow: for fast tests of the procedure and the stage
    "tiny": FastDVDnetParams(frame_channels=4, channels=(8, 16, 32)),
}


# -- network ---------------------------------------------------------------------------------

class ConvNormAct(nn.Module):
    """3x3 convolution (no bias) -> BatchNorm -> optional ReLU, on (N, C, H, W)."""

    def __init__(self, cin: int, cout: int, *, stride: int = 1, groups: int = 1, act: bool = True,
                 eps: float = 1e-5):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, 3, stride=stride, padding=1, groups=groups, bias=False)
        self.norm: nn.Module = nn.BatchNorm2d(cout, eps=eps)
        self.act = act

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.norm(self.conv(x))
        return F.relu(x, inplace=True) if self.act else x

    @torch.no_grad()
    def fold_norm(self) -> None:
        """Fold the eval-mode BatchNorm into the convolution (weight scale + bias); inference only."""
        if not isinstance(self.norm, nn.BatchNorm2d):
            return
        bn = self.norm
        scale = bn.weight.double() / torch.sqrt(bn.running_var.double() + bn.eps)
        weight = self.conv.weight.double() * scale[:, None, None, None]
        bias = bn.bias.double() - bn.running_mean.double() * scale
        dtype = self.conv.weight.dtype
        self.conv.weight = nn.Parameter(weight.to(dtype), requires_grad=False)
        self.conv.bias = nn.Parameter(bias.to(dtype), requires_grad=False)
        self.norm = nn.Identity()


class DoubleConv(nn.Module):
    """Two ConvNormAct at constant width."""

    def __init__(self, ch: int, eps: float):
        super().__init__()
        self.conv1 = ConvNormAct(ch, ch, eps=eps)
        self.conv2 = ConvNormAct(ch, ch, eps=eps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv2(self.conv1(x))


class InputBlock(nn.Module):
    """Per-frame grouped convolution of (frame, noise map) x 3, then a merging convolution."""

    def __init__(self, p: FastDVDnetParams):
        super().__init__()
        cin = TRIPLET * (p.image_channels + 1)
        self.frames = ConvNormAct(cin, TRIPLET * p.frame_channels, groups=TRIPLET, eps=p.bn_eps)
        self.merge = ConvNormAct(TRIPLET * p.frame_channels, p.channels[0], eps=p.bn_eps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.merge(self.frames(x))


class DownBlock(nn.Module):
    """Stride-2 ConvNormAct to `cout` channels, then DoubleConv."""

    def __init__(self, cin: int, cout: int, eps: float):
        super().__init__()
        self.reduce = ConvNormAct(cin, cout, stride=2, eps=eps)
        self.body = DoubleConv(cout, eps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(self.reduce(x))


class UpBlock(nn.Module):
    """DoubleConv, a plain 3x3 convolution to 4*cout channels, then pixel shuffle x2."""

    def __init__(self, cin: int, cout: int, eps: float):
        super().__init__()
        self.body = DoubleConv(cin, eps)
        self.expand = nn.Conv2d(cin, 4 * cout, 3, padding=1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.pixel_shuffle(self.expand(self.body(x)), 2)


class OutputBlock(nn.Module):
    """ConvNormAct then a plain 3x3 convolution to the image channels (the noise estimate)."""

    def __init__(self, ch: int, image_channels: int, eps: float):
        super().__init__()
        self.hidden = ConvNormAct(ch, ch, eps=eps)
        self.project = nn.Conv2d(ch, image_channels, 3, padding=1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.project(self.hidden(x))


class DenoisingBlock(nn.Module):
    """Denoise the middle frame of a triplet.

    forward(prev, mid, next, noise_map): frames (N, 3, H, W), noise_map (N, 1, H, W), H and W
    multiples of 4 -> (N, 3, H, W) = mid - predicted noise (not clamped).
    """

    def __init__(self, p: FastDVDnetParams):
        super().__init__()
        c0, c1, c2 = p.channels
        self.input = InputBlock(p)
        self.down1 = DownBlock(c0, c1, p.bn_eps)
        self.down2 = DownBlock(c1, c2, p.bn_eps)
        self.up2 = UpBlock(c2, c1, p.bn_eps)
        self.up1 = UpBlock(c1, c0, p.bn_eps)
        self.output = OutputBlock(c0, p.image_channels, p.bn_eps)

    def forward(self, prev: torch.Tensor, mid: torch.Tensor, next: torch.Tensor,
                noise_map: torch.Tensor) -> torch.Tensor:
        x0 = self.input(torch.cat((prev, noise_map, mid, noise_map, next, noise_map), dim=1))
        x1 = self.down1(x0)
        x2 = self.down2(x1)
        x1 = self.up1(x1 + self.up2(x2))
        return mid - self.output(x0 + x1)


class FastDVDnet(nn.Module):
    """forward(window, noise_map): window (N, 15, H, W) = 5 RGB frames stacked frame-major
    (f0 R,G,B, f1 R,G,B, ...), noise_map (N, 1, H, W), H and W multiples of 4
    -> (N, 3, H, W) denoised middle frame (not clamped)."""

    def __init__(self, params: FastDVDnetParams = PRESETS["fastdvdnet"]):
        super().__init__()
        self.params = params
        self.stage1 = DenoisingBlock(params)
        self.stage2 = DenoisingBlock(params)

    def forward(self, window: torch.Tensor, noise_map: torch.Tensor) -> torch.Tensor:
        f = window.split(self.params.image_channels, dim=1)
        if len(f) != WINDOW:
            raise ValueError(f"expected {WINDOW} frames stacked on channels, got {len(f)}")
        s = [self.stage1(f[i], f[i + 1], f[i + 2], noise_map) for i in range(TRIPLET)]
        return self.stage2(s[0], s[1], s[2], noise_map)

    def fold_norms(self) -> "FastDVDnet":
        """Fold every BatchNorm into its convolution, in place (inference only; the state dict
        no longer matches the checkpoint layout afterwards). Returns self."""
        for m in self.modules():
            if isinstance(m, ConvNormAct):
                m.fold_norm()
        return self


def optimize_for_inference(model: FastDVDnet) -> FastDVDnet:
    """Fold BatchNorm into the convolutions (in float64) and switch to channels-last weights, in place.

    Outputs agree with the plain network to float rounding (about 2e-7 in float32); on the CPU
    this makes a block evaluation about 1.5x faster (oneDNN prefers channels-last). Call it
    before casting to half precision. The state dict no longer matches the checkpoint layout.
    """
    model.eval().requires_grad_(False)
    model.fold_norms()
    return model.to(memory_format=torch.channels_last)

