"""CLIP image tower written natively (no open_clip, kornia or torchvision import).

Status: READY. `ClipImageEmbedder(VISION_PRESETS["openclip-vit-h-14"])` is DynamiCrafter's/CamI2V's
`embedder`: its state-dict keys are the upstream keys after `embedder.` (`model.visual.*` plus
the leftover text-side tensors `model.token_embedding.weight`, `model.positional_embedding`,
`model.ln_final.*`, `model.text_projection`, `model.logit_scale`, which a strict load requires
even though nothing reads them). Builds on the meta device; it has no buffers.

The embedding is all 257 tokens (CLS + 16x16 patches) of the last transformer block, without
`ln_post` and without the projection.
"""

from __future__ import annotations

from dataclasses import dataclass
import torch
import torch.nn.functional as F
from torch import nn

from .text import TEXT_PRESETS, TextTransformerParams
from .transformer import ACTIVATIONS, LayerNorm32, Transformer

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


@dataclass(frozen=True)
class VisionTransformerParams:
    image_size: int = 224
    patch_size: int = 14
    width: int = 1280
    layers: int = 32
    heads: int = 16
    mlp_ratio: float = 4.0
    output_dim: int = 1024  # `proj` width (unused by the embedder, present in checkpoints)
    activation: str = "gelu"
    ln_eps: float = 1e-5

    def __post_init__(self) -> None:
        if self.image_size % self.patch_size:
            raise ValueError("image_size must be a multiple of patch_size")
        if self.activation not in ACTIVATIONS:
            raise ValueError(f"activation must be one of {ACTIVATIONS}, got {self.activation!r}")

    @property
    def num_tokens(self) -> int:
        return (self.image_size // self.patch_size) ** 2 + 1


@dataclass(frozen=True)
class ImageEmbedderParams:
    """The visual tower plus the shapes of the unused text-side tensors the checkpoint keeps."""

    visual: VisionTransformerParams = VisionTransformerParams()
    leftover_text: TextTransformerParams = TEXT_PRESETS["openclip-vit-h-14"]


VISION_PRESETS: dict[str, ImageEmbedderParams] = {
    # OpenCLIP ViT-H-14 (DynamiCrafter / CamI2V `embedder`).
    "openclip-vit-h-14": ImageEmbedderParams(),
    # For CPU tests only.
    "tiny": ImageEmbedderParams(
        visual=VisionTransformerParams(image_size=28, patch_size=7, width=48, layers=2, heads=2, output_dim=16),
        leftover_text=TEXT_PRESETS["tiny"],
    ),
}


class VisionTransformer(nn.Module):
    """OpenCLIP `visual`: normalised image (B, 3, S, S) -> tokens (B, 1 + (S/p)^2, width)."""

    def __init__(self, params: VisionTransformerParams):
        super().__init__()
        p = params
        self.params = p
        self.conv1 = nn.Conv2d(3, p.width, p.patch_size, stride=p.patch_size, bias=False)
        self.class_embedding = nn.Parameter(torch.empty(p.width))
        self.positional_embedding = nn.Parameter(torch.empty(p.num_tokens, p.width))
        self.ln_pre = LayerNorm32(p.width, eps=p.ln_eps)
        self.transformer = Transformer(p.width, p.layers, p.heads, p.mlp_ratio, p.activation, "fused", p.ln_eps)
        # Not used for the embedding; kept because checkpoints hold them.
        self.ln_post = LayerNorm32(p.width, eps=p.ln_eps)
        self.proj = nn.Parameter(torch.empty(p.width, p.output_dim))

    def forward_tokens(self, x: torch.Tensor) -> torch.Tensor:
        """Last-block tokens, no `ln_post`/`proj`."""
        x = self.conv1(x).flatten(2).transpose(1, 2)  # (B, grid^2, width)
        cls = self.class_embedding.to(x.dtype).expand(x.shape[0], 1, -1)
        x = torch.cat([cls, x], dim=1) + self.positional_embedding.to(x.dtype)
        return self.transformer(self.ln_pre(x))


class OpenClipImageSide(nn.Module):
    """What upstream keeps of an OpenCLIP model after deleting its text transformer."""

    def __init__(self, params: ImageEmbedderParams):
        super().__init__()
        t = params.leftover_text
        self.visual = VisionTransformer(params.visual)
        self.token_embedding = nn.Embedding(t.vocab_size, t.width)
        self.positional_embedding = nn.Parameter(torch.empty(t.context_length, t.width))
        self.ln_final = LayerNorm32(t.width, eps=t.ln_eps)
        if t.projection_dim is not None:
            self.text_projection = nn.Parameter(torch.empty(t.width, t.projection_dim))
            self.logit_scale = nn.Parameter(torch.empty(()))


# -- preprocessing ---------------------------------------------------------------------------


def _gaussian_kernel1d(size: int, sigma: float, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    x = torch.arange(size, dtype=dtype, device=device) - size // 2
    g = torch.exp(-x.pow(2) / (2 * sigma**2))
    return g / g.sum()


def _blur(x: torch.Tensor, ky: torch.Tensor, kx: torch.Tensor) -> torch.Tensor:
    """Separable depthwise blur with reflect padding: rows first, then columns."""
    c = x.shape[1]
    x = F.pad(x, (kx.numel() // 2, kx.numel() // 2, 0, 0), mode="reflect")
    x = F.conv2d(x, kx.view(1, 1, 1, -1).expand(c, 1, 1, -1), groups=c)
    x = F.pad(x, (0, 0, ky.numel() // 2, ky.numel() // 2), mode="reflect")
    return F.conv2d(x, ky.view(1, 1, -1, 1).expand(c, 1, -1, 1), groups=c)


def resize_antialiased_bicubic(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Resize (B, C, H, W) to `size` = (h, w) the way the upstream embedder does.

    Equivalent to kornia's `resize(..., interpolation="bicubic", align_corners=True,
    antialias=True)`: when shrinking, a Gaussian blur with sigma = (factor - 1) / 2 per axis
    (kernel size the odd number >= max(4 sigma, 3)) and reflect padding, then bicubic
    interpolation with aligned corners. The aspect ratio is not preserved.
    """
    h, w = x.shape[-2:]
    fy, fx = h / size[0], w / size[1]
    if max(fy, fx) > 1.0:
        sy, sx = max((fy - 1.0) / 2.0, 0.001), max((fx - 1.0) / 2.0, 0.001)
        ky, kx = (int(max(4.0 * s, 3)) for s in (sy, sx))
        ky, kx = ky + (ky % 2 == 0), kx + (kx % 2 == 0)
        x = _blur(x, _gaussian_kernel1d(ky, sy, x.dtype, x.device), _gaussian_kernel1d(kx, sx, x.dtype, x.device))
    return F.interpolate(x, size=size, mode="bicubic", align_corners=True)


class ClipImageEmbedder(nn.Module):
    """Image in [-1, 1] (B, 3, H, W), any size -> CLIP tokens (B, 257, 1280).

    Preprocessing (float32): antialiased bicubic resize to 224x224 (aspect not kept), map to
    [0, 1], normalise with the CLIP mean/std. Holds the towers under `model` (the upstream
    `embedder.model`).
    """

    def __init__(self, params: ImageEmbedderParams = VISION_PRESETS["openclip-vit-h-14"]):
        super().__init__()
        self.params = params
        self.model = OpenClipImageSide(params)

    def preprocess(self, image: torch.Tensor) -> torch.Tensor:
        s = self.params.visual.image_size
        x = resize_antialiased_bicubic(image.float(), (s, s))
        x = (x + 1.0) / 2.0
        mean = torch.tensor(CLIP_MEAN, device=x.device).view(1, 3, 1, 1)
        std = torch.tensor(CLIP_STD, device=x.device).view(1, 3, 1, 1)
        return (x - mean) / std

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        dtype = self.model.visual.conv1.weight.dtype
        return self.model.visual.forward_tokens(self.preprocess(image).to(dtype))

