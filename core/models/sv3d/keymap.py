"""The one key map between the released SV3D checkpoints and our modules.

Checkpoint format: ``sgm`` — the state dict of upstream's DiffusionEngine, as in
`sv3d_u.safetensors` / `sv3d_p.safetensors`:

    model.diffusion_model.*              -> unet.net.*        (VideoUNet -> diffusers names, below)
    conditioner.embedders.0.open_clip.*  -> image_encoder.*   (OpenCLIP ViT-H/14, text tower deleted)
    conditioner.embedders.1.encoder.*    -> cond_vae.*        (the KL autoencoder that encodes the photo)
    first_stage_model.decoder.*          -> vae_decoder.*     (the image decoder; no post_quant_conv)

Inside the UNet, upstream's flat `input_blocks` / `middle_block` / `output_blocks` lists become
diffusers' `down_blocks.i.{resnets,attentions,downsamplers}`, `mid_block` and `up_blocks`, and
the layer names inside each block are renamed:

    resnet     in_layers.0 norm1 | in_layers.2 conv1 | emb_layers.1 time_emb_proj | out_layers.0 norm2
               | out_layers.3 conv2 | skip_connection conv_shortcut; spatial half under
               spatial_res_block., `time_stack.` -> temporal_res_block.; time_mixer unchanged
    attention  time_stack.0. -> temporal_transformer_blocks.0. | time_pos_embed.0/.2 -> .linear_1/.linear_2
    down/up    op. -> conv. (downsampler), conv. (upsampler)
    top level  time_embed.0/.2 -> time_embedding.linear_1/_2 | label_emb.0.0/.0.2 -> add_embedding.linear_1/_2
               | input_blocks.0.0 -> conv_in | out.0 -> conv_norm_out | out.2 -> conv_out

The map is built from the UNet's params (levels, blocks per level, which levels attend) and is
a bijection on the keys of our model; tests check it both ways and against upstream's key list.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Mapping

from .config import VideoUNetParams

UNET = "model.diffusion_model."
_COMPONENTS: tuple[tuple[str, str], ...] = (
    (UNET, "unet.net."),
    ("conditioner.embedders.0.open_clip.", "image_encoder."),
    ("conditioner.embedders.1.encoder.", "cond_vae."),
    ("first_stage_model.decoder.", "vae_decoder."),
)

_RESNET = (("in_layers.0.", "norm1."), ("in_layers.2.", "conv1."), ("emb_layers.1.", "time_emb_proj."),
           ("out_layers.0.", "norm2."), ("out_layers.3.", "conv2."), ("skip_connection.", "conv_shortcut."))
_TOP = (("time_embed.0.", "time_embedding.linear_1."), ("time_embed.2.", "time_embedding.linear_2."),
        ("label_emb.0.0.", "add_embedding.linear_1."), ("label_emb.0.2.", "add_embedding.linear_2."),
        ("input_blocks.0.0.", "conv_in."), ("out.0.", "conv_norm_out."), ("out.2.", "conv_out."))


@lru_cache(maxsize=8)
def _blocks(p: VideoUNetParams) -> tuple[tuple[str, str, str], ...]:
    """(upstream block prefix, diffusers prefix, kind) for every block; kind is resnet,
    attention, down or up."""
    out: list[tuple[str, str, str]] = []
    levels = len(p.channel_mult)
    i = 1
    for lvl in range(levels):
        for j in range(p.num_res_blocks):
            out.append((f"input_blocks.{i}.0.", f"down_blocks.{lvl}.resnets.{j}.", "resnet"))
            if p.attention_levels[lvl]:
                out.append((f"input_blocks.{i}.1.", f"down_blocks.{lvl}.attentions.{j}.", "attention"))
            i += 1
        if lvl != levels - 1:
            out.append((f"input_blocks.{i}.0.", f"down_blocks.{lvl}.downsamplers.0.", "down"))
            i += 1
    out += [("middle_block.0.", "mid_block.resnets.0.", "resnet"), ("middle_block.1.", "mid_block.attentions.0.", "attention"),
            ("middle_block.2.", "mid_block.resnets.1.", "resnet")]
    i = 0
    for u, lvl in enumerate(reversed(range(levels))):
        for j in range(p.num_res_blocks + 1):
            out.append((f"output_blocks.{i}.0.", f"up_blocks.{u}.resnets.{j}.", "resnet"))
            k = 1
            if p.attention_levels[lvl]:
                out.append((f"output_blocks.{i}.1.", f"up_blocks.{u}.attentions.{j}.", "attention"))
                k = 2
            if j == p.num_res_blocks and lvl != 0:
                out.append((f"output_blocks.{i}.{k}.", f"up_blocks.{u}.upsamplers.0.", "up"))
            i += 1
    return tuple(out)


def _inner(rest: str, kind: str, reverse: bool) -> str:
    """Rename the part of a key after its block prefix."""
    if kind == "resnet":
        if reverse:
            if rest.startswith("time_mixer."):
                return rest
            temporal = rest.startswith("temporal_res_block.")
            rest = rest.split(".", 1)[1]
            for a, b in _RESNET:
                if rest.startswith(b):
                    rest = a + rest[len(b):]
                    break
            return ("time_stack." if temporal else "") + rest
        if rest.startswith("time_mixer."):
            return rest
        half = "spatial_res_block."
        if rest.startswith("time_stack."):
            half, rest = "temporal_res_block.", rest[len("time_stack."):]
        for a, b in _RESNET:
            if rest.startswith(a):
                return half + b + rest[len(a):]
        raise KeyError(rest)
    pairs = {"attention": (("time_stack.0.", "temporal_transformer_blocks.0."),
                           ("time_pos_embed.0.", "time_pos_embed.linear_1."),
                           ("time_pos_embed.2.", "time_pos_embed.linear_2.")),
             "down": (("op.", "conv."),), "up": (("conv.", "conv."),)}[kind]
    for a, b in pairs:
        src, dst = (b, a) if reverse else (a, b)
        if rest.startswith(src):
            return dst + rest[len(src):]
    return rest


def unet_to_ours(key: str, p: VideoUNetParams) -> str:
    """A VideoUNet key (without `model.diffusion_model.`) -> the diffusers key. KeyError if unknown."""
    for a, b in _TOP:
        if key.startswith(a):
            return b + key[len(a):]
    for up, ours, kind in _blocks(p):
        if key.startswith(up):
            return ours + _inner(key[len(up):], kind, reverse=False)
    raise KeyError(key)


def unet_to_upstream(key: str, p: VideoUNetParams) -> str:
    """A diffusers key -> the VideoUNet key (without `model.diffusion_model.`). KeyError if unknown."""
    for a, b in _TOP:
        if key.startswith(b):
            return a + key[len(b):]
    for up, ours, kind in _blocks(p):
        if key.startswith(ours):
            return up + _inner(key[len(ours):], kind, reverse=True)
    raise KeyError(key)


def to_ours(key: str, p: VideoUNetParams) -> str:
    """Released (sgm) key -> our state-dict key. KeyError for keys of no known component."""
    for up, ours in _COMPONENTS:
        if key.startswith(up):
            rest = key[len(up):]
            return ours + (unet_to_ours(rest, p) if up == UNET else rest)
    raise KeyError(key)


def to_upstream(key: str, p: VideoUNetParams) -> str:
    """Our state-dict key -> the released (sgm) key. KeyError for keys of no known component."""
    for up, ours in _COMPONENTS:
        if key.startswith(ours):
            rest = key[len(ours):]
            return up + (unet_to_upstream(rest, p) if up == UNET else rest)
    raise KeyError(key)


def rename_to_ours(state: Mapping[str, object], p: VideoUNetParams) -> dict[str, object]:
    """A released state dict under our names (values untouched). KeyError names the first unknown key."""
    return {to_ours(k, p): v for k, v in state.items()}
