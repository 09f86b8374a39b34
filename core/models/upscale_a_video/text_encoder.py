"""Upscale-A-Video's text encoder: the SD x4 upscaler's OpenCLIP ViT-H text tower, HF layout.

Public API (used by the pipeline / loader):

    enc = loader.load_text_encoder(path, device="cuda", dtype=torch.float16)
          # path: the release's text_encoder/ folder (model.safetensors or pytorch_model.bin)
          #       or one of those files; strict
    emb = enc.encode(["a prompt", ""])     # (B, 77, 1024): last_hidden_state after final LN
    ids = enc.tokenize(["a prompt"])       # (B, 77) int64, zero-padded (the SD 2.x pad id)
    emb = enc(ids)

    UAV_TEXT_PARAMS                        # TextTransformerParams of this model
    build_text_encoder(device="meta") -> ClipTextEncoder
    text_key_to_upstream(our_key) -> HF key  (the key map; also feeds the weight rule)
    text_state_dict_from_upstream(hf_sd) -> our sd

The network is the shared CLIP text transformer (`core.models.clip.text`) configured as the Hugging
Face `CLIPTextModel` the release ships: 23 blocks (OpenCLIP ViT-H's 24 minus the last, which SD 2.x
drops), exact-erf GELU, causal mask, separate q/k/v projections, final layer norm applied, no
projection head. No attention mask is used (as the upstream pipeline).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Mapping

import torch

from ...errors import CheckpointError, WeightsMissing
from ..clip.text import ClipTextEncoder, TextTransformerParams

UAV_TEXT_PARAMS = TextTransformerParams(
    vocab_size=49408,
    context_length=77,
    width=1024,
    heads=16,
    layers=23,
    mlp_ratio=4.0,
    activation="gelu",
    qkv_layout="separate",
    skip_last_layers=0,
    projection_dim=None,
    causal=True,
    ln_eps=1e-5,
)

_HF = "text_model."
# Our name (inside ClipTextEncoder) -> HF CLIPTextModel name, for the non-block tensors.
_FIXED = {
    "model.token_embedding.weight": _HF + "embeddings.token_embedding.weight",
    "model.positional_embedding": _HF + "embeddings.position_embedding.weight",
    "model.ln_final.weight": _HF + "final_layer_norm.weight",
    "model.ln_final.bias": _HF + "final_layer_norm.bias",
}
# Per block: our sub-name -> HF sub-name.
_BLOCK = {
    "ln_1": "layer_norm1",
    "ln_2": "layer_norm2",
    "attn.q_proj": "self_attn.q_proj",
    "attn.k_proj": "self_attn.k_proj",
    "attn.v_proj": "self_attn.v_proj",
    "attn.out_proj": "self_attn.out_proj",
    "mlp.c_fc": "mlp.fc1",
    "mlp.c_proj": "mlp.fc2",
}
_OUR_BLOCK_RE = re.compile(r"^model\.transformer\.resblocks\.(\d+)\.(.+)\.(weight|bias)$")
_HF_BLOCK_RE = re.compile(r"^text_model\.encoder\.layers\.(\d+)\.(.+)\.(weight|bias)$")
_FIXED_INV = {v: k for k, v in _FIXED.items()}
_BLOCK_INV = {v: k for k, v in _BLOCK.items()}
_TEXT_MODEL_CHILDREN = ("embeddings", "encoder", "final_layer_norm")
# transformers <= 4.30 saved the position ids as a persistent buffer; later files lack it.
POSITION_IDS_KEY = _HF + "embeddings.position_ids"


def text_key_to_upstream(key: str) -> str:
    """Our state-dict key -> the HF `CLIPTextModel` key."""
    if key in _FIXED:
        return _FIXED[key]
    m = _OUR_BLOCK_RE.match(key)
    if m and m.group(2) in _BLOCK:
        return f"{_HF}encoder.layers.{m.group(1)}.{_BLOCK[m.group(2)]}.{m.group(3)}"
    raise KeyError(f"no HF name for {key!r}")


def _key_from_upstream(key: str) -> str | None:
    if key in _FIXED_INV:
        return _FIXED_INV[key]
    m = _HF_BLOCK_RE.match(key)
    if m and m.group(2) in _BLOCK_INV:
        return f"model.transformer.resblocks.{m.group(1)}.{_BLOCK_INV[m.group(2)]}.{m.group(3)}"
    return None


def text_state_dict_from_upstream(state: Mapping[str, torch.Tensor], source: str = "text encoder",
                                  context_length: int = UAV_TEXT_PARAMS.context_length) -> dict[str, torch.Tensor]:
    """Rename a HF `CLIPTextModel` state dict to ours.

    The optional `position_ids` buffer is checked (it must be 0..76) and dropped: positions are
    implicit here. Files saved by transformers >= 5 lack the `text_model.` level; it is added.
    Unknown keys are kept under their HF name so the strict load reports them.
    """
    out: dict[str, torch.Tensor] = {}
    for k, v in state.items():
        if k.split(".", 1)[0] in _TEXT_MODEL_CHILDREN:
            k = _HF + k
        if k == POSITION_IDS_KEY:
            ids = v.reshape(-1).double().round().long()
            if ids.numel() != context_length or not torch.equal(ids, torch.arange(context_length)):
                raise CheckpointError(f"{source}: {k} is not 0..{context_length - 1}.")
            continue
        ours = _key_from_upstream(k)
        out[ours if ours is not None else k] = v
    return out


def build_text_encoder(device: torch.device | str = "meta",
                       params: TextTransformerParams = UAV_TEXT_PARAMS) -> ClipTextEncoder:
    """The text encoder (meta device by default); `params` other than the release's are for tests."""
    with torch.device(device):
        return ClipTextEncoder(params).eval()


_WEIGHT_NAMES = ("model.safetensors", "pytorch_model.bin")


def _weight_file(path: Path) -> Path:
    if path.is_dir():
        for name in _WEIGHT_NAMES:
            if (path / name).is_file():
                return path / name
        raise WeightsMissing(f"no text-encoder weights ({' or '.join(_WEIGHT_NAMES)}) in {path}; "
                             "see models.json for how to obtain the Upscale-A-Video release.")
    return path
