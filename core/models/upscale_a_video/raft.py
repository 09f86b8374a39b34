"""RAFT-large optical flow and Upscale-A-Video's bidirectional wrapper (flows for propagation).

Public API (used by the pipeline / loader):

    raft = loader.load_raft(path, device="cuda")              # strict, from raft-things.pth; float32
    flow = raft(image1, image2, iters=20)             # (n,3,H,W) in [-1,1], H,W % 8 == 0 -> (n,2,H,W)
    bi = BidirectionalRAFT(raft)                       # upstream_flow_rescale_bug=True by default
    flows_forward, flows_backward = bi(frames)         # frames (b,3,t,h,w) in [-1,1]; clips sliced
                                                       # like upstream's forward_slicing
    bi.forward_window(frames, iters)                   # one window, no slicing (upstream forward)

    build_raft(device="meta") -> RAFT                  (build on "cpu" to get real BatchNorm buffers)
    resize_flow(flow, h, w, upstream_rescale_bug=True), window_length_for_width(w)
    raft_key_to_upstream(our_key) -> "module." + key   (the key map; also feeds the weight rule)
    raft_state_dict_from_upstream(upstream_sd) -> our sd
    MIN_FLOW_SIZE = 121                                # smallest h and w the wrapper accepts

Flow convention: channel 0 = x (width) displacement, channel 1 = y, in pixels of the input grid;
`flows_forward[:, :, i]` maps frame i to frame i+1, `flows_backward[:, :, i]` frame i+1 to i.

Run RAFT in float32 (upstream does; the 20-step recurrence amplifies rounding). The correlation
lookup is plain `grid_sample` (no custom CUDA kernel).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Mapping

import torch
import torch.nn.functional as F
from torch import nn

from ...errors import InputError


@dataclass(frozen=True)
class RAFTParams:
    hidden_dim: int = 128
    context_dim: int = 128
    feature_dim: int = 256
    corr_levels: int = 4
    corr_radius: int = 4

    @property
    def corr_channels(self) -> int:
        return self.corr_levels * (2 * self.corr_radius + 1) ** 2


RAFT_PRESETS: dict[str, RAFTParams] = {"raft-large": RAFTParams()}

# Padded sizes below 128 leave the coarsest correlation level one pixel wide, where upstream's
# normalisation divides by zero and every flow becomes NaN. 121 is the smallest size whose
# multiple-of-8 resize reaches 128.
MIN_FLOW_SIZE = 121


# ---------------------------------------------------------------------------------------------
# feature / context encoders
# ---------------------------------------------------------------------------------------------

class FrozenBatchNorm2d(nn.BatchNorm2d):
    """BatchNorm that always normalises with its running statistics (RAFT is inference-only here)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.batch_norm(x, self.running_mean, self.running_var, self.weight, self.bias, False, 0.0, self.eps)


def _norm(kind: str, channels: int) -> nn.Module:
    if kind == "batch":
        return FrozenBatchNorm2d(channels)
    if kind == "instance":
        return nn.InstanceNorm2d(channels)  # no affine, no running stats: nothing in the checkpoint
    raise ValueError(f"unknown norm {kind!r}")


class ResidualBlock(nn.Module):
    def __init__(self, in_planes: int, planes: int, norm: str, stride: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 3, padding=1, stride=stride)
        self.conv2 = nn.Conv2d(planes, planes, 3, padding=1)
        self.norm1 = _norm(norm, planes)
        self.norm2 = _norm(norm, planes)
        if stride != 1:
            # The shortcut's norm is registered twice (as norm3 and inside downsample), so the
            # checkpoint carries both key sets for one tensor; we keep that aliasing.
            self.norm3 = _norm(norm, planes)
            self.downsample = nn.Sequential(nn.Conv2d(in_planes, planes, 1, stride=stride), self.norm3)
        else:
            self.downsample = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.relu(self.norm1(self.conv1(x)))
        y = F.relu(self.norm2(self.conv2(y)))
        if self.downsample is not None:
            x = self.downsample(x)
        return F.relu(x + y)


class BasicEncoder(nn.Module):
    """Conv7x7/2 + three residual stages (64, 96/2, 128/2) + 1x1: (n,3,H,W) -> (n,out,H/8,W/8)."""

    def __init__(self, output_dim: int, norm: str):
        super().__init__()
        self.norm1 = _norm(norm, 64)
        self.conv1 = nn.Conv2d(3, 64, 7, stride=2, padding=3)
        self.layer1 = nn.Sequential(ResidualBlock(64, 64, norm), ResidualBlock(64, 64, norm))
        self.layer2 = nn.Sequential(ResidualBlock(64, 96, norm, 2), ResidualBlock(96, 96, norm))
        self.layer3 = nn.Sequential(ResidualBlock(96, 128, norm, 2), ResidualBlock(128, 128, norm))
        self.conv2 = nn.Conv2d(128, output_dim, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.norm1(self.conv1(x)))
        x = self.layer3(self.layer2(self.layer1(x)))
        return self.conv2(x)


# ---------------------------------------------------------------------------------------------
# update operator
# ---------------------------------------------------------------------------------------------

class MotionEncoder(nn.Module):
    def __init__(self, corr_channels: int):
        super().__init__()
        self.convc1 = nn.Conv2d(corr_channels, 256, 1)
        self.convc2 = nn.Conv2d(256, 192, 3, padding=1)
        self.convf1 = nn.Conv2d(2, 128, 7, padding=3)
        self.convf2 = nn.Conv2d(128, 64, 3, padding=1)
        self.conv = nn.Conv2d(64 + 192, 128 - 2, 3, padding=1)

    def forward(self, flow: torch.Tensor, corr: torch.Tensor) -> torch.Tensor:
        c = F.relu(self.convc2(F.relu(self.convc1(corr))))
        f = F.relu(self.convf2(F.relu(self.convf1(flow))))
        return torch.cat([F.relu(self.conv(torch.cat([c, f], dim=1))), flow], dim=1)


class SepConvGRU(nn.Module):
    """A ConvGRU step with 1x5 kernels followed by one with 5x1 kernels."""

    def __init__(self, hidden_dim: int, input_dim: int):
        super().__init__()
        cat = hidden_dim + input_dim
        self.convz1 = nn.Conv2d(cat, hidden_dim, (1, 5), padding=(0, 2))
        self.convr1 = nn.Conv2d(cat, hidden_dim, (1, 5), padding=(0, 2))
        self.convq1 = nn.Conv2d(cat, hidden_dim, (1, 5), padding=(0, 2))
        self.convz2 = nn.Conv2d(cat, hidden_dim, (5, 1), padding=(2, 0))
        self.convr2 = nn.Conv2d(cat, hidden_dim, (5, 1), padding=(2, 0))
        self.convq2 = nn.Conv2d(cat, hidden_dim, (5, 1), padding=(2, 0))

    @staticmethod
    def _step(h, x, convz, convr, convq):
        hx = torch.cat([h, x], dim=1)
        z = torch.sigmoid(convz(hx))
        r = torch.sigmoid(convr(hx))
        q = torch.tanh(convq(torch.cat([r * h, x], dim=1)))
        return (1 - z) * h + z * q

    def forward(self, h: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        h = self._step(h, x, self.convz1, self.convr1, self.convq1)
        return self._step(h, x, self.convz2, self.convr2, self.convq2)


class FlowHead(nn.Module):
    def __init__(self, input_dim: int, hidden_dim: int):
        super().__init__()
        self.conv1 = nn.Conv2d(input_dim, hidden_dim, 3, padding=1)
        self.conv2 = nn.Conv2d(hidden_dim, 2, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv2(F.relu(self.conv1(x)))


class UpdateBlock(nn.Module):
    def __init__(self, p: RAFTParams):
        super().__init__()
        self.encoder = MotionEncoder(p.corr_channels)
        self.gru = SepConvGRU(p.hidden_dim, 128 + p.context_dim)
        self.flow_head = FlowHead(p.hidden_dim, 256)
        # logits of the 3x3 convex-combination weights for each of the 8x8 sub-pixels
        self.mask = nn.Sequential(nn.Conv2d(p.hidden_dim, 256, 3, padding=1), nn.ReLU(inplace=True),
                                  nn.Conv2d(256, 64 * 9, 1))

    def forward(self, net, inp, corr, flow):
        net = self.gru(net, torch.cat([inp, self.encoder(flow, corr)], dim=1))
        return net, self.flow_head(net)

    def upsample_mask(self, net: torch.Tensor) -> torch.Tensor:
        # upstream scales the logits by 0.25 (a training-time gradient balance)
        return 0.25 * self.mask(net)


# ---------------------------------------------------------------------------------------------
# correlation pyramid
# ---------------------------------------------------------------------------------------------

def _sample_pixels(img: torch.Tensor, xy: torch.Tensor) -> torch.Tensor:
    """Bilinear sample `img` (n,c,H,W) at pixel coordinates `xy` (n,h,w,2), zeros outside."""
    h, w = img.shape[-2:]
    grid = torch.stack([2 * xy[..., 0] / (w - 1) - 1, 2 * xy[..., 1] / (h - 1) - 1], dim=-1)
    return F.grid_sample(img, grid, align_corners=True)


class CorrelationPyramid:
    """All-pairs feature correlation, average-pooled into `levels` scales, looked up in a window.

    fmap1, fmap2: (n, d, h, w) -> lookups of (n, levels*(2r+1)^2, h, w).
    """

    def __init__(self, fmap1: torch.Tensor, fmap2: torch.Tensor, levels: int, radius: int):
        n, d, h, w = fmap1.shape
        corr = torch.matmul(fmap1.reshape(n, d, h * w).transpose(1, 2), fmap2.reshape(n, d, h * w))
        corr = (corr / math.sqrt(d)).reshape(n * h * w, 1, h, w)
        self.pyramid = [corr]
        for _ in range(levels - 1):
            corr = F.avg_pool2d(corr, 2, stride=2)
            self.pyramid.append(corr)
        self.radius = radius
        r = radius
        offsets = torch.linspace(-r, r, 2 * r + 1, device=fmap1.device, dtype=fmap1.dtype)
        # Window offsets as upstream builds them: the FIRST window axis moves x and the second y
        # (a transposed window). The released weights were trained with this channel order.
        self.window = torch.stack(torch.meshgrid(offsets, offsets, indexing="ij"), dim=-1)  # (2r+1, 2r+1, 2)

    def __call__(self, coords: torch.Tensor) -> torch.Tensor:
        n, _, h, w = coords.shape
        centre = coords.permute(0, 2, 3, 1).reshape(n * h * w, 1, 1, 2)
        out = []
        for i, corr in enumerate(self.pyramid):
            sampled = _sample_pixels(corr, centre / 2 ** i + self.window)  # (n h w, 1, 2r+1, 2r+1)
            out.append(sampled.reshape(n, h, w, -1))
        return torch.cat(out, dim=-1).permute(0, 3, 1, 2).contiguous()


def _coords_grid(n: int, h: int, w: int, device, dtype) -> torch.Tensor:
    ys, xs = torch.meshgrid(torch.arange(h, device=device, dtype=dtype),
                            torch.arange(w, device=device, dtype=dtype), indexing="ij")
    return torch.stack([xs, ys], dim=0)[None].expand(n, 2, h, w).contiguous()


# ---------------------------------------------------------------------------------------------
# RAFT
# ---------------------------------------------------------------------------------------------

class RAFT(nn.Module):
    """RAFT-large (Teed & Deng, 2020), inference only."""

    def __init__(self, params: RAFTParams = RAFTParams()):
        super().__init__()
        self.params = params
        self.fnet = BasicEncoder(params.feature_dim, "instance")
        self.cnet = BasicEncoder(params.hidden_dim + params.context_dim, "batch")
        self.update_block = UpdateBlock(params)

    @staticmethod
    def _upsample_flow(flow: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Convex upsampling: each full-res pixel is a softmax-weighted mix of a 3x3 coarse patch."""
        n, _, h, w = flow.shape
        mask = torch.softmax(mask.view(n, 1, 9, 8, 8, h, w), dim=2)
        patches = F.unfold(8 * flow, (3, 3), padding=1).view(n, 2, 9, 1, 1, h, w)
        up = (mask * patches).sum(dim=2)  # (n, 2, 8, 8, h, w)
        return up.permute(0, 1, 4, 2, 5, 3).reshape(n, 2, 8 * h, 8 * w)

    def forward(self, image1: torch.Tensor, image2: torch.Tensor, iters: int = 20) -> torch.Tensor:
        """Flow from image1 to image2.

        image1, image2: (n, 3, H, W) in [-1, 1] (no /255 scaling), H and W multiples of 8.
        Returns the final upsampled flow (n, 2, H, W) in pixels (x then y).
        """
        if iters < 1:
            raise ValueError("iters must be >= 1")
        n, _, h, w = image1.shape
        if h % 8 or w % 8:
            raise ValueError(f"RAFT needs H and W divisible by 8, got {h}x{w}")
        p = self.params
        fmap1, fmap2 = self.fnet(torch.cat([image1, image2], dim=0)).float().chunk(2, dim=0)
        corr_fn = CorrelationPyramid(fmap1, fmap2, p.corr_levels, p.corr_radius)
        net, inp = self.cnet(image1).split([p.hidden_dim, p.context_dim], dim=1)
        net, inp = torch.tanh(net), torch.relu(inp)

        coords0 = _coords_grid(n, h // 8, w // 8, image1.device, fmap1.dtype)
        coords1 = coords0.clone()
        for _ in range(iters):
            flow = coords1 - coords0
            net, delta = self.update_block(net, inp, corr_fn(coords1), flow)
            coords1 = coords1 + delta
        # upstream upsamples after every iteration but only returns the last one
        return self._upsample_flow(coords1 - coords0, self.update_block.upsample_mask(net))


# ---------------------------------------------------------------------------------------------
# bidirectional wrapper (Upscale-A-Video's RAFT_bi)
# ---------------------------------------------------------------------------------------------

def resize_flow(flow: torch.Tensor, height: int, width: int, upstream_rescale_bug: bool = True) -> torch.Tensor:
    """Bilinearly resize flows (n, 2, h, w) to (height, width) and rescale their values.

    Correct rescaling multiplies channel 0 (x) by width/w and channel 1 (y) by height/h.
    Upstream instead multiplies image ROWS 0 and 1 (of both channels) by height/h and width/w,
    leaving every other row unscaled; `upstream_rescale_bug=True` reproduces that.
    """
    h, w = flow.shape[-2:]
    out = F.interpolate(flow, (height, width), mode="bilinear", align_corners=False)
    if upstream_rescale_bug:
        out[:, :, 0] *= height / h
        out[:, :, 1] *= width / w
    else:
        out[:, 0] *= width / w
        out[:, 1] *= height / h
    return out


def window_length_for_width(width: int) -> int:
    """Frames per RAFT window, by input width (upstream's memory heuristic)."""
    if width <= 640:
        return 12
    if width <= 720:
        return 8
    if width <= 1280:
        return 4
    return 2


class BidirectionalRAFT(nn.Module):
    """Forward and backward flows between consecutive frames of a clip.

    Frames are resized (trilinear, not padded) to the next multiples of 8, flows are computed
    there and resized back to the input grid with `resize_flow`.

    upstream_flow_rescale_bug: True (default) reproduces upstream's resize-back exactly, including
        its row-scaling bug (see `resize_flow`); False rescales the x/y channels correctly. With
        the bug, flows stay in the units of the resized grid (off by h8/h and w8/w, e.g. 3% for
        124 -> 128) except rows 0 and 1, which get odd factors; when h and w are already
        multiples of 8 (512x320, say) nothing is resized and both settings agree exactly.
    """

    def __init__(self, raft: RAFT, upstream_flow_rescale_bug: bool = True):
        super().__init__()
        self.raft = raft
        self.upstream_flow_rescale_bug = upstream_flow_rescale_bug

    @torch.no_grad()
    def forward_window(self, frames: torch.Tensor, iters: int = 20) -> tuple[torch.Tensor, torch.Tensor]:
        """One window, all frame pairs batched (upstream `RAFT_bi.forward`).

        frames: (b, 3, t, h, w) in [-1, 1], t >= 2, h and w >= MIN_FLOW_SIZE.
        Returns (flows_forward, flows_backward), each (b, 2, t-1, h, w) float32.
        """
        if frames.dim() != 5 or frames.shape[1] != 3:
            raise ValueError(f"expected frames (b, 3, t, h, w), got {tuple(frames.shape)}")
        b, _, t, h, w = frames.shape
        if t < 2:
            raise InputError("optical flow needs at least 2 frames.")
        if h < MIN_FLOW_SIZE or w < MIN_FLOW_SIZE:
            raise InputError(f"Upscale-A-Video's flow propagation needs frames of at least {MIN_FLOW_SIZE}x"
                             f"{MIN_FLOW_SIZE} pixels, got {w}x{h}; turn propagation off for this clip.")
        h8, w8 = 8 * math.ceil(h / 8), 8 * math.ceil(w / 8)
        dtype = next(self.raft.parameters()).dtype
        x = F.interpolate(frames.to(dtype), (t, h8, w8), mode="trilinear", align_corners=False)
        first = x[:, :, :-1].transpose(1, 2).reshape(b * (t - 1), 3, h8, w8)
        second = x[:, :, 1:].transpose(1, 2).reshape(b * (t - 1), 3, h8, w8)
        fwd = self.raft(first, second, iters=iters)
        bwd = self.raft(second, first, iters=iters)

        def back(flow):
            flow = resize_flow(flow.float(), h, w, self.upstream_flow_rescale_bug)
            return flow.reshape(b, t - 1, 2, h, w).transpose(1, 2).contiguous()

        return back(fwd), back(bwd)

    @torch.no_grad()
    def forward(self, frames: torch.Tensor, iters: int = 20) -> tuple[torch.Tensor, torch.Tensor]:
        """Flows for a whole clip (upstream `forward_slicing`): windows of
        `window_length_for_width(w)` frames that share one frame, so no pair is skipped.

        frames: (b, 3, t, h, w) in [-1, 1] -> (flows_forward, flows_backward), each (b, 2, t-1, h, w).
        """
        t = frames.shape[2]
        n = window_length_for_width(frames.shape[-1])
        if t <= n:
            return self.forward_window(frames, iters)
        fwd, bwd = [], []
        for s in range(0, t, n):
            e = min(t, s + n)
            f, bk = self.forward_window(frames[:, :, max(s - 1, 0):e], iters)
            fwd.append(f)
            bwd.append(bk)
        return torch.cat(fwd, dim=2), torch.cat(bwd, dim=2)


# ---------------------------------------------------------------------------------------------
# checkpoint format: raft-things.pth (saved from nn.DataParallel: every key has "module.")
# ---------------------------------------------------------------------------------------------

_PREFIX = "module."


def raft_key_to_upstream(key: str) -> str:
    return _PREFIX + key


def raft_state_dict_from_upstream(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Strip the DataParallel prefix (keys without it are accepted as well).

    BatchNorm `num_batches_tracked` counters are not used at inference; when a file lacks them
    they are filled with 0 so the strict check only concerns tensors that matter.
    """
    out = {k[len(_PREFIX):] if k.startswith(_PREFIX) else k: v for k, v in state.items()}
    for k in list(out):
        if k.endswith(".running_mean"):
            counter = k[: -len("running_mean")] + "num_batches_tracked"
            out.setdefault(counter, torch.zeros((), dtype=torch.long))
    return out


def build_raft(device: torch.device | str = "meta", params: RAFTParams = RAFTParams()) -> RAFT:
    with torch.device(device):
        return RAFT(params).eval()
