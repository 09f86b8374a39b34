"""SV3D's network: diffusers' spatio-temporal UNet driven with a per-frame vector condition.

The blocks are diffusers' `UNetSpatioTemporalConditionModel` (the SVD UNet; same layers as the
upstream `VideoUNet` with `extra_ff_mix_layer`, `learned_with_images` mixing and [3, 1, 1]
temporal kernels). Its own `forward` cannot be used: it embeds three scalars per *video*
(SVD's fps, motion bucket and noise augmentation) and repeats the result over the frames,
while SV3D-P's vector (cond_aug | polar | azimuth embeddings) differs from frame to frame.
So `forward` here runs the same blocks in the same order, with the embedding computed per
frame: emb = time_embedding(t_emb(c_noise)) + add_embedding(vector).

`add_time_proj`, the module that would embed SVD's scalars, holds no weights and is unused.
"""

from __future__ import annotations

import torch
from torch import nn

from .config import VideoUNetParams


def build_diffusers_unet(p: VideoUNetParams) -> nn.Module:
    """The diffusers module with SV3D's widths (weights uninitialised until loaded)."""
    from diffusers import UNetSpatioTemporalConditionModel

    down = tuple("CrossAttnDownBlockSpatioTemporal" if a else "DownBlockSpatioTemporal" for a in p.attention_levels)
    up = tuple("CrossAttnUpBlockSpatioTemporal" if a else "UpBlockSpatioTemporal" for a in reversed(p.attention_levels))
    return UNetSpatioTemporalConditionModel(
        in_channels=p.in_channels, out_channels=p.out_channels, down_block_types=down, up_block_types=up,
        block_out_channels=p.widths, layers_per_block=p.num_res_blocks, cross_attention_dim=p.context_dim,
        num_attention_heads=tuple(w // p.head_channels for w in p.widths),
        projection_class_embeddings_input_dim=p.adm_in_channels, addition_time_embed_dim=256,
        transformer_layers_per_block=1)


class VideoUNet(nn.Module):
    """(B, T, in_channels, h, w) latents -> (B, T, out_channels, h, w) model output (v).

    c_noise: (B, T) float (EDM's log(sigma)/4, one per frame); context: (B, L, context_dim);
    vector: (B, T, adm_in_channels). h and w should be multiples of 2**(levels - 1).
    """

    def __init__(self, params: VideoUNetParams):
        super().__init__()
        self.params = params
        self.net = build_diffusers_unet(params)

    def forward(self, x: torch.Tensor, c_noise: torch.Tensor, context: torch.Tensor,
                vector: torch.Tensor) -> torch.Tensor:
        net = self.net
        b, t = x.shape[:2]
        dtype = net.conv_in.weight.dtype
        t_emb = net.time_proj(c_noise.reshape(b * t)).to(dtype)
        emb = net.time_embedding(t_emb) + net.add_embedding(vector.reshape(b * t, -1).to(dtype))
        context = context.to(dtype).repeat_interleave(t, dim=0)
        indicator = torch.zeros(b, t, dtype=dtype, device=x.device)  # every frame is video, none image-only
        h = net.conv_in(x.reshape(b * t, *x.shape[2:]).to(dtype))
        skips = [h]
        for block in net.down_blocks:
            kw = {"encoder_hidden_states": context} if getattr(block, "has_cross_attention", False) else {}
            h, res = block(hidden_states=h, temb=emb, image_only_indicator=indicator, **kw)
            skips.extend(res)
        h = net.mid_block(hidden_states=h, temb=emb, encoder_hidden_states=context, image_only_indicator=indicator)
        for i, block in enumerate(net.up_blocks):
            n = len(block.resnets)
            res, skips = tuple(skips[-n:]), skips[:-n]
            kw = {"encoder_hidden_states": context} if getattr(block, "has_cross_attention", False) else {}
            size = skips[-1].shape[2:] if i < len(net.up_blocks) - 1 else None
            h = block(hidden_states=h, temb=emb, res_hidden_states_tuple=res, upsample_size=size,
                      image_only_indicator=indicator, **kw)
        h = net.conv_out(net.conv_act(net.conv_norm_out(h)))
        return h.reshape(b, t, *h.shape[1:])
