"""SV3D architecture as typed configs and named presets.

SV3D (Stability AI, 2024) is SVD's spatio-temporal video UNet fine-tuned to render 21 views of
an object on an orbit around it, at 576x576. What differs from SVD is only the vector
conditioning added to the timestep embedding:

    SV3D-U  [emb(cond_aug, 256)]                                        -> 256 wide
    SV3D-P  [emb(cond_aug, 256) | emb(polar, 512) | emb(azimuth, 512)]  -> 1280 wide

each `emb` a sinusoidal embedding (cos half, then sin half; `conditioning.sinusoidal`),
per frame. The image enters twice, as in SVD: the CLIP ViT-H/14 image embedding (1024) as the
single cross-attention token, and the VAE latent of the photo concatenated to the noisy latent.
The denoiser is v-prediction with EDM's c_noise = log(sigma) / 4 (core/sampling/edm.py).
"""

from __future__ import annotations

from dataclasses import dataclass

from ..autoencoder import AUTOENCODER_PRESETS, AutoencoderParams
from ..clip.vision import VISION_PRESETS, ImageEmbedderParams, VisionTransformerParams

NUM_FRAMES = 21
NATIVE_SIZE = 576


@dataclass(frozen=True)
class VideoUNetParams:
    """The spatio-temporal UNet (upstream `VideoUNet`, diffusers `UNetSpatioTemporalConditionModel`).

    `attention_levels[i]` says whether level i (finest first) has transformer blocks; the middle
    block always has one. Heads are `width / head_channels` at every level.
    """

    model_channels: int = 320
    channel_mult: tuple[int, ...] = (1, 2, 4, 4)
    attention_levels: tuple[bool, ...] = (True, True, True, False)
    num_res_blocks: int = 2
    head_channels: int = 64
    context_dim: int = 1024
    adm_in_channels: int = 1280
    in_channels: int = 8
    out_channels: int = 4

    def __post_init__(self) -> None:
        if len(self.attention_levels) != len(self.channel_mult):
            raise ValueError("attention_levels needs one entry per level of channel_mult")
        if any((self.model_channels * m) % self.head_channels for m in self.channel_mult):
            raise ValueError("every level width must be a multiple of head_channels")

    @property
    def widths(self) -> tuple[int, ...]:
        return tuple(self.model_channels * m for m in self.channel_mult)

    @property
    def time_embed_dim(self) -> int:
        return 4 * self.model_channels


@dataclass(frozen=True)
class SV3DParams:
    """One SV3D variant: the UNet, the vector conditioning widths and the image towers.

    vector_dims: widths of the per-frame sinusoidal embeddings, in concatenation order
    (cond_aug, then polar and azimuth for SV3D-P); their sum is the UNet's adm_in_channels.
    """

    name: str
    unet: VideoUNetParams
    vector_dims: tuple[int, ...]
    clip: ImageEmbedderParams = VISION_PRESETS["openclip-vit-h-14"]
    vae: AutoencoderParams = AUTOENCODER_PRESETS["kl-f8"]
    num_frames: int = NUM_FRAMES
    # Latents are multiplied by this after encoding for the diffusion model; SV3D's concat
    # latent is NOT scaled (the conditioner's scale is 1), only sampled latents are divided.
    scale_factor: float = 0.18215
    sigma_max: float = 700.0
    max_guidance: float = 2.5
    cond_aug: float = 1e-5

    def __post_init__(self) -> None:
        if sum(self.vector_dims) != self.unet.adm_in_channels:
            raise ValueError(f"vector_dims {self.vector_dims} sum to {sum(self.vector_dims)}, "
                             f"not the UNet's adm_in_channels {self.unet.adm_in_channels}")

    @property
    def conditions_on_camera(self) -> bool:
        return len(self.vector_dims) == 3


_TINY_UNET = dict(model_channels=32, channel_mult=(1, 2), attention_levels=(True, False), num_res_blocks=1,
                  head_channels=16, context_dim=32)
# The tiny CLIP tower projects to 32, the tiny UNet's context width.
_TINY_CLIP = ImageEmbedderParams(
    visual=VisionTransformerParams(image_size=28, patch_size=7, width=48, layers=2, heads=2, output_dim=32),
    leftover_text=VISION_PRESETS["tiny"].leftover_text)

PRESETS: dict[str, SV3DParams] = {
    p.name: p for p in (
        SV3DParams("sv3d-p", VideoUNetParams(adm_in_channels=1280), (256, 512, 512)),
        SV3DParams("sv3d-u", VideoUNetParams(adm_in_channels=256), (256,)),
        # For CPU tests only: the real vector conditioning on a two-level UNet and tiny towers.
        SV3DParams("tiny-p", VideoUNetParams(adm_in_channels=1280, **_TINY_UNET), (256, 512, 512),
                   clip=_TINY_CLIP, vae=AUTOENCODER_PRESETS["tiny"]),
        SV3DParams("tiny-u", VideoUNetParams(adm_in_channels=256, **_TINY_UNET), (256,),
                   clip=_TINY_CLIP, vae=AUTOENCODER_PRESETS["tiny"]),
    )
}
