"""The SV3D model: UNet, CLIP image tower, the photo's VAE encoder and the frame decoder.

Components and their released names (see keymap.py):

    unet          VideoUNet (diffusers blocks, per-frame vector)   model.diffusion_model
    image_encoder ClipImageEmbedder (OpenCLIP ViT-H/14)            conditioner.embedders.0.open_clip
    cond_vae      AutoencoderKL (encoder used; its decoder is in    conditioner.embedders.1.encoder
                  the release and loaded, never run)
    vae_decoder   Decoder of the same KL autoencoder (no            first_stage_model.decoder
                  post_quant_conv: upstream's first stage has none)
"""

from __future__ import annotations

import torch
from torch import nn

from ..autoencoder import AutoencoderKL, Decoder
from ..clip.vision import ClipImageEmbedder
from .config import SV3DParams
from .unet import VideoUNet


class SV3D(nn.Module):
    def __init__(self, params: SV3DParams):
        super().__init__()
        self.params = params
        self.unet = VideoUNet(params.unet)
        self.image_encoder = ClipImageEmbedder(params.clip)
        self.cond_vae = AutoencoderKL(params.vae)
        self.vae_decoder = Decoder(params.vae)

    @property
    def device(self) -> torch.device:
        return self.unet.net.conv_in.weight.device

    @property
    def dtype(self) -> torch.dtype:
        return self.unet.net.conv_in.weight.dtype

    def embed_image(self, image: torch.Tensor) -> torch.Tensor:
        """image (B, 3, H, W) in [-1, 1] -> (B, 1, D) CLIP image embedding (the pooled class token
        after `ln_post`, projected), SV3D's one cross-attention token."""
        visual = self.image_encoder.model.visual
        tokens = self.image_encoder(image)
        pooled = visual.ln_post(tokens[:, 0])
        return (pooled @ visual.proj)[:, None]

    def encode_concat(self, image: torch.Tensor) -> torch.Tensor:
        """image (B, 3, H, W) in [-1, 1] -> (B, 4, H/8, W/8) posterior mode, NOT scaled (SV3D's
        concat latent is the raw encoder output)."""
        dtype = self.cond_vae.quant_conv.weight.dtype
        return self.cond_vae.encode_posterior(image.to(dtype)).mode()

    def decode(self, latents: torch.Tensor, chunk: int = 14) -> torch.Tensor:
        """latents (T, 4, h, w) as sampled (scaled) -> (T, 3, 8h, 8w) in about [-1, 1], `chunk`
        frames per decoder call."""
        z = latents / self.params.scale_factor
        dtype = self.vae_decoder.conv_in.weight.dtype
        return torch.cat([self.vae_decoder(z[i:i + chunk].to(dtype)) for i in range(0, len(z), max(1, chunk))])
