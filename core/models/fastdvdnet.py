"""FastDVDnet (Tassano, Delon, Veit, CVPR 2020): a two-stage video denoiser without motion compensation.

Network
    Two denoising blocks with the same architecture and separate weights. `stage1` denoises each of
    the three overlapping frame triplets of a 5-frame window; `stage2` merges the three stage-1
    results into the denoised centre frame. Every block is a 3-scale U-Net with additive skips
    and pixel-shuffle upsampling whose output is subtracted from the triplet's middle frame
    (it predicts the noise). All convolutions are 3x3 without bias, followed by eval-mode
    BatchNorm and ReLU except the last one of a block.

Values
    Frames are RGB float in [0, 1] (may overshoot slightly when they carry noise). The noise level
    `noise_std` is the standard deviation of the noise on that same [0, 1] scale (the usual
    "sigma 25" is 25/255); the network sees it as a constant extra channel after every frame.
    The released weights were trained for sigma in [5, 55] / 255.

Weights
    The released `model.pth` is a plain state dict saved from an `nn.DataParallel` model, so every
    key starts with `module.`. `checkpoint_key_map()` is the one explicit map from our parameter
    names to those keys; `core.models.fastdvdnet_loader.load_fastdvdnet()` reads the file and
    loads it strictly (through the shared `core.models.checkpoint`).

Sequence procedure
    `denoise_sequence_reference` is the plain per-window procedure (one full network call per
    output frame). `iter_denoise_sequence` gives the same result with each stage-1 triplet
    computed once and frames batched through the network.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterator, Sequence

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


# -- checkpoint key map ----------------------------------------------------------------------

# Our module path inside one DenoisingBlock -> the upstream one (`nn.Sequential` indices:
# in upstream's sequences a ReLU sits at every third position, hence 0/1 then 3/4).
_BLOCK_CONV_NORM: tuple[tuple[str, str, str], ...] = (
    # (ours, upstream conv, upstream BatchNorm)
    ("input.frames", "inc.convblock.0", "inc.convblock.1"),
    ("input.merge", "inc.convblock.3", "inc.convblock.4"),
    ("down1.reduce", "downc0.convblock.0", "downc0.convblock.1"),
    ("down1.body.conv1", "downc0.convblock.3.convblock.0", "downc0.convblock.3.convblock.1"),
    ("down1.body.conv2", "downc0.convblock.3.convblock.3", "downc0.convblock.3.convblock.4"),
    ("down2.reduce", "downc1.convblock.0", "downc1.convblock.1"),
    ("down2.body.conv1", "downc1.convblock.3.convblock.0", "downc1.convblock.3.convblock.1"),
    ("down2.body.conv2", "downc1.convblock.3.convblock.3", "downc1.convblock.3.convblock.4"),
    ("up2.body.conv1", "upc2.convblock.0.convblock.0", "upc2.convblock.0.convblock.1"),
    ("up2.body.conv2", "upc2.convblock.0.convblock.3", "upc2.convblock.0.convblock.4"),
    ("up1.body.conv1", "upc1.convblock.0.convblock.0", "upc1.convblock.0.convblock.1"),
    ("up1.body.conv2", "upc1.convblock.0.convblock.3", "upc1.convblock.0.convblock.4"),
    ("output.hidden", "outc.convblock.0", "outc.convblock.1"),
)
_BLOCK_PLAIN_CONV: tuple[tuple[str, str], ...] = (
    ("up2.expand", "upc2.convblock.1"),
    ("up1.expand", "upc1.convblock.1"),
    ("output.project", "outc.convblock.3"),
)
_BLOCKS: tuple[tuple[str, str], ...] = (("stage1", "temp1"), ("stage2", "temp2"))
_BN_ENTRIES = ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")
_OPTIONAL_SUFFIX = ".num_batches_tracked"  # a training counter; unused in eval mode
WRAPPER_PREFIX = "module."  # nn.DataParallel


def checkpoint_key_map() -> dict[str, str]:
    """Our state-dict key -> the released file's key without the `module.` prefix (162 keys)."""
    out: dict[str, str] = {}
    for ours_block, up_block in _BLOCKS:
        for ours, up_conv, up_bn in _BLOCK_CONV_NORM:
            out[f"{ours_block}.{ours}.conv.weight"] = f"{up_block}.{up_conv}.weight"
            for entry in _BN_ENTRIES:
                out[f"{ours_block}.{ours}.norm.{entry}"] = f"{up_block}.{up_bn}.{entry}"
        for ours, up_conv in _BLOCK_PLAIN_CONV:
            out[f"{ours_block}.{ours}.weight"] = f"{up_block}.{up_conv}.weight"
    return out


def optimize_for_inference(model: FastDVDnet) -> FastDVDnet:
    """Fold BatchNorm into the convolutions (in float64) and switch to channels-last weights, in place.

    Outputs agree with the plain network to float rounding (about 2e-7 in float32); on the CPU
    this makes a block evaluation about 1.5x faster (oneDNN prefers channels-last). Call it
    before casting to half precision. The state dict no longer matches the checkpoint layout.
    """
    model.eval().requires_grad_(False)
    model.fold_norms()
    return model.to(memory_format=torch.channels_last)


# -- sequence procedure ----------------------------------------------------------------------

def mirror_index(i: int, n: int) -> int:
    """Index `i` reflected into [0, n) without repeating the edge (..., 2, 1, 0, 1, 2, ...).

    For n >= 3 and |offset| <= 2 this is FastDVDnet's border rule (frame 0's window is 2,1,0,1,2);
    it keeps reflecting for shorter sequences (n = 2: 0,1,0,1,0; n = 1: always 0).
    """
    if n == 1:
        return 0
    period = 2 * (n - 1)
    i %= period
    return i if i < n else period - i


def window_indices(t: int, n: int) -> tuple[int, ...]:
    """Source frames of the 5-frame window centred on frame t of an n-frame clip."""
    half = WINDOW // 2
    return tuple(mirror_index(t + d, n) for d in range(-half, half + 1))


def _pad_indices(n: int, multiple: int, device: torch.device) -> torch.Tensor:
    """Gather indices that pad a length-n axis at its end to a multiple, by reflection."""
    size = -(-n // multiple) * multiple
    return torch.tensor([mirror_index(i, n) for i in range(size)], device=device)


class _Padder:
    """Reflect-pads (..., H, W) at the bottom/right up to multiples of 4 (upstream's rule; unlike
    F.pad it also works when the image is smaller than the padding) and crops back."""

    def __init__(self, h: int, w: int, device: torch.device):
        self.h, self.w = h, w
        self.rows = _pad_indices(h, SIZE_MULTIPLE, device)
        self.cols = _pad_indices(w, SIZE_MULTIPLE, device)

    @property
    def padded_size(self) -> tuple[int, int]:
        return len(self.rows), len(self.cols)

    def pad(self, x: torch.Tensor) -> torch.Tensor:
        if len(self.rows) != self.h:
            x = x.index_select(-2, self.rows)
        if len(self.cols) != self.w:
            x = x.index_select(-1, self.cols)
        return x

    def crop(self, x: torch.Tensor) -> torch.Tensor:
        return x[..., : self.h, : self.w]


def _model_device_dtype(model: nn.Module) -> tuple[torch.device, torch.dtype]:
    p = next(model.parameters())
    return p.device, p.dtype


def _as_unit(frames: torch.Tensor, idx: Sequence[int], device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """frames[idx] as float on `device`/`dtype`; uint8 input is scaled to [0, 1]."""
    x = frames[list(idx)]
    if x.dtype == torch.uint8:
        return x.to(device=device, dtype=torch.float32).div_(255.0).to(dtype)
    return x.to(device=device, dtype=dtype)


@torch.inference_mode()
def denoise_sequence_reference(model: FastDVDnet, frames: torch.Tensor, noise_std: float) -> torch.Tensor:
    """The plain per-window procedure: one full network call per output frame.

    frames: (T, 3, H, W) float in [0, 1] (noisy values outside are fine) or uint8 in [0, 255];
    noise_std: noise standard deviation on the [0, 1] scale.
    Returns (T, 3, H, W) float32 in [0, 1] on the CPU. Each window is reflect-padded to a
    multiple of 4, denoised, clamped to [0, 1] and cropped.
    """
    device, dtype = _model_device_dtype(model)
    n, _, h, w = frames.shape
    padder = _Padder(h, w, device)
    ph, pw = padder.padded_size
    noise_map = torch.full((1, 1, ph, pw), float(noise_std), device=device, dtype=torch.float32).to(dtype)
    out = torch.empty((n, 3, h, w), dtype=torch.float32)
    for t in range(n):
        window = padder.pad(_as_unit(frames, window_indices(t, n), device, dtype)).reshape(1, -1, ph, pw)
        y = model(window, noise_map).clamp_(0.0, 1.0)
        out[t] = padder.crop(y)[0].float().cpu()
    return out


def auto_batch_size(height: int, width: int, device: torch.device | str) -> int:
    """Frames per network call for a (padded) frame size.

    CPU: 1 (measured here: batching makes oneDNN slower per frame, and memory stays minimal).
    CUDA: about 1.3 megapixels per call (8 frames at 512x320), which keeps the GPU busy while
    the activations stay near 1 GB in float32.
    """
    if torch.device(device).type != "cuda":
        return 1
    return int(min(16, max(1, (8 * 512 * 320) // max(1, height * width))))


def iter_denoise_sequence(
    model: FastDVDnet,
    frames: torch.Tensor,
    noise_std: float,
    batch_size: int | None = None,
    on_step: Callable[[], None] | None = None,
) -> Iterator[tuple[int, torch.Tensor]]:
    """Denoise a clip, yielding (t, frame) in order; same result as `denoise_sequence_reference`.

    frames: (T, 3, H, W) float in [0, 1] or uint8 (any device; read a few frames at a time).
    noise_std: on the [0, 1] scale. batch_size: frames per network call (None: `auto_batch_size`).
    Yields (t, (3, H, W) float32 in [0, 1] on the model's device); inference mode is active
    only while computing, never across a yield. `on_step` is called before every network call
    (a cancellation hook).

    Why it is faster: the window of frame t needs stage-1 results for the triplets centred on
    t-1, t and t+1, so consecutive windows share two of their three triplets. Each triplet is
    computed once (cached, keyed by its mirrored source indices: the centre alone is ambiguous
    at the borders, where the triplet centred on -1 is (2, 1, 0), not (0, 1, 2)) and dropped
    after its last use; the per-frame cost falls from 4 block evaluations to about 2.
    Stage-1 results stay padded and unclamped, exactly as inside one full network call.
    """
    device, dtype = _model_device_dtype(model)
    n, _, h, w = frames.shape
    padder = _Padder(h, w, device)
    ph, pw = padder.padded_size
    bs = int(batch_size) if batch_size else auto_batch_size(ph, pw, device)
    if bs < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")

    def triplet(t: int, centre: int) -> tuple[int, int, int]:
        return window_indices(t, n)[centre - 1: centre + 2]  # type: ignore[return-value]

    # The three triplets of every window, and the last frame that uses each.
    needs = [tuple(triplet(t, c) for c in (1, 2, 3)) for t in range(n)]
    last_use: dict[tuple[int, int, int], int] = {}
    for t, keys in enumerate(needs):
        for k in keys:
            last_use[k] = t
    cache: dict[tuple[int, int, int], torch.Tensor] = {}

    def step() -> None:
        if on_step is not None:
            on_step()

    for start in range(0, n, bs):
        stop = min(n, start + bs)
        todo = list(dict.fromkeys(k for t in range(start, stop) for k in needs[t] if k not in cache))
        for i in range(0, len(todo), bs):
            group = todo[i: i + bs]
            step()
            with torch.inference_mode():
                src = sorted({j for k in group for j in k})
                pos = {j: p for p, j in enumerate(src)}
                x = padder.pad(_as_unit(frames, src, device, dtype))
                nmap = torch.full((len(group), 1, ph, pw), float(noise_std), device=device,
                                  dtype=torch.float32).to(dtype)
                a, b, c = (x[[pos[k[m]] for k in group]] for m in range(TRIPLET))
                y = model.stage1(a, b, c, nmap)
                for m, k in enumerate(group):
                    cache[k] = y[m: m + 1]
        step()
        with torch.inference_mode():
            count = stop - start
            a, b, c = (torch.cat([cache[needs[t][m]] for t in range(start, stop)]) for m in range(TRIPLET))
            nmap = torch.full((count, 1, ph, pw), float(noise_std), device=device, dtype=torch.float32).to(dtype)
            y = padder.crop(model.stage2(a, b, c, nmap).clamp_(0.0, 1.0)).float()
            for k in [k for k, last in last_use.items() if last < stop and k in cache]:
                del cache[k]
        for m in range(count):
            yield start + m, y[m]


def denoise_sequence(model: FastDVDnet, frames: torch.Tensor, noise_std: float,
                     batch_size: int | None = None) -> torch.Tensor:
    """`iter_denoise_sequence` collected into (T, 3, H, W) float32 in [0, 1] on the CPU."""
    n, _, h, w = frames.shape
    out = torch.empty((n, 3, h, w), dtype=torch.float32)
    for t, y in iter_denoise_sequence(model, frames, noise_std, batch_size):
        out[t] = y.cpu()
    return out


def count_block_evaluations(num_frames: int) -> tuple[int, int]:
    """(plain, cached) denoising-block evaluations for a clip: 4 per frame vs unique triplets + 1
    per frame. For documentation and the benchmark."""
    unique = {window_indices(t, num_frames)[c - 1: c + 2] for t in range(num_frames) for c in (1, 2, 3)}
    return 4 * num_frames, len(unique) + num_frames


__all__ = [
    "FastDVDnet", "FastDVDnetParams", "PRESETS", "DenoisingBlock",
    "checkpoint_key_map", "WRAPPER_PREFIX", "optimize_for_inference",
    "mirror_index", "window_indices", "denoise_sequence_reference", "iter_denoise_sequence",
    "denoise_sequence", "auto_batch_size", "count_block_evaluations",
]
