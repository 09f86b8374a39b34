"""CLIP text tower written natively (no open_clip import).

Status: READY. `ClipTextEncoder(TEXT_PRESETS["openclip-vit-h-14"])` is DynamiCrafter's/CamI2V's
`cond_stage_model`: its state-dict keys are the upstream keys after `cond_stage_model.`
(`model.token_embedding.weight`, `model.positional_embedding`, `model.transformer.resblocks.N.*`,
`model.ln_final.*`, `model.text_projection`, `model.logit_scale`). Builds on the meta device.

`TextTransformer` is generic (width, depth, heads, MLP ratio, activation, vocabulary, context,
attention-projection layout, how many final blocks to skip), so other text encoders of the CLIP
family (e.g. the SD x4 upscaler's Hugging Face `CLIPTextModel`) can reuse it with their own key map.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence

import torch
from torch import nn

from .tokenizer import ClipTokenizer
from .transformer import ACTIVATIONS, QKV_LAYOUTS, LayerNorm32, Transformer


@dataclass(frozen=True)
class TextTransformerParams:
    """Architecture of a CLIP text tower.

    skip_last_layers: how many of the final blocks are *not* run (1 = OpenCLIP "penultimate"
        layer as in SD 2.x / DynamiCrafter; the skipped blocks still exist so checkpoints load).
    projection_dim: width of `text_projection`; also creates `logit_scale`. Neither is used by
        `forward` (the conditioning is the per-token hidden state) but OpenCLIP checkpoints hold
        them. None: no such parameters.
    """

    vocab_size: int = 49408
    context_length: int = 77
    width: int = 1024
    heads: int = 16
    layers: int = 24
    mlp_ratio: float = 4.0
    activation: str = "gelu"
    qkv_layout: str = "fused"
    skip_last_layers: int = 1
    projection_dim: Optional[int] = 1024
    causal: bool = True
    ln_eps: float = 1e-5

    def __post_init__(self) -> None:
        if self.activation not in ACTIVATIONS:
            raise ValueError(f"activation must be one of {ACTIVATIONS}, got {self.activation!r}")
        if self.qkv_layout not in QKV_LAYOUTS:
            raise ValueError(f"qkv_layout must be one of {QKV_LAYOUTS}, got {self.qkv_layout!r}")
        if not 0 <= self.skip_last_layers <= self.layers:
            raise ValueError(f"skip_last_layers must be in [0, {self.layers}], got {self.skip_last_layers}")
        if self.width % self.heads:
            raise ValueError(f"width {self.width} is not divisible by {self.heads} heads")


TEXT_PRESETS: dict[str, TextTransformerParams] = {
    # OpenCLIP ViT-H-14 text tower, penultimate layer (DynamiCrafter / CamI2V `cond_stage_model`).
    "openclip-vit-h-14": TextTransformerParams(),
    # For CPU tests only; matches `core.models.cami2v.config.tiny_params` (5 text tokens, width 32).
    "tiny": TextTransformerParams(context_length=5, width=32, heads=2, layers=3, projection_dim=16),
}


class TextTransformer(nn.Module):
    """Token ids (B, L) -> hidden states (B, L, width) after `ln_final`.

    Runs `layers - skip_last_layers` blocks with a causal mask; no pooling, no projection.
    """

    def __init__(self, params: TextTransformerParams):
        super().__init__()
        p = params
        self.params = p
        self.token_embedding = nn.Embedding(p.vocab_size, p.width)
        self.positional_embedding = nn.Parameter(torch.empty(p.context_length, p.width))
        self.transformer = Transformer(p.width, p.layers, p.heads, p.mlp_ratio, p.activation, p.qkv_layout, p.ln_eps)
        self.ln_final = LayerNorm32(p.width, eps=p.ln_eps)
        if p.projection_dim is not None:
            self.text_projection = nn.Parameter(torch.empty(p.width, p.projection_dim))
            self.logit_scale = nn.Parameter(torch.empty(()))

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        if tokens.dim() != 2 or tokens.shape[1] > self.params.context_length:
            raise ValueError(f"expected token ids (B, <= {self.params.context_length}), got {tuple(tokens.shape)}")
        x = self.token_embedding(tokens) + self.positional_embedding[: tokens.shape[1]]
        x = self.transformer(x, num_layers=self.params.layers - self.params.skip_last_layers,
                             causal=self.params.causal)
        return self.ln_final(x)


class ClipTextEncoder(nn.Module):
    """Prompts -> per-token text conditioning (B, context_length, width).

    Holds the tower under `model` (the upstream `cond_stage_model.model`). The tokenizer is
    created on first use (`ClipTokenizer.default()`) unless one is given.
    """

    def __init__(self, params: TextTransformerParams = TEXT_PRESETS["openclip-vit-h-14"],
                 tokenizer: Optional[ClipTokenizer] = None):
        super().__init__()
        self.model = TextTransformer(params)
        self._tokenizer = tokenizer

    @property
    def tokenizer(self) -> ClipTokenizer:
        if self._tokenizer is None:
            self._tokenizer = ClipTokenizer.default()
        return self._tokenizer

    @tokenizer.setter
    def tokenizer(self, value: ClipTokenizer) -> None:
        self._tokenizer = value

    def tokenize(self, prompts: Sequence[str]) -> torch.Tensor:
        return self.tokenizer(prompts, context_length=self.model.params.context_length)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.model(tokens)

    @torch.no_grad()
    def encode(self, prompts: Sequence[str] | str) -> torch.Tensor:
        """prompts -> (B, 77, 1024) in the module's dtype and device."""
        if isinstance(prompts, str):
            prompts = [prompts]
        tokens = self.tokenize(list(prompts)).to(self.model.token_embedding.weight.device)
        return self.model(tokens)
