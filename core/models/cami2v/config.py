"""Typed parameters and named presets for the DynamiCrafter family of models.

Every released model is one `ModelParams` preset: the 3D UNet (`UNetParams`), optionally a camera
pose encoder (`PoseEncoderParams`) and epipolar attention (`EpipolarParams`), and the diffusion /
latent settings (`DiffusionParams`). Camera variants are selected by `UNetParams.camera`:

- ``"none"``       plain DynamiCrafter,
- ``"cami2v"``     Plücker features + epipolar attention added to the main temporal branch,
- ``"cameractrl"`` Plücker features projected into the temporal self-attention input,
- ``"motionctrl"`` the 12 numbers of the relative world-to-camera matrix fused after self-attention.

Numbers follow the upstream inference configs (CamI2V repo, configs/inference/00*_*.yaml).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Literal, Optional

CameraVariant = Literal["none", "cami2v", "cameractrl", "motionctrl"]


@dataclass(frozen=True)
class EpipolarParams:
    """CamI2V epipolar attention.

    `mask_levels` are the latent downsampling factors (upstream `attention_resolution`; pixel
    stride = 8 x level) whose temporal blocks use a boolean epipolar mask. Blocks at any other
    level attend to every token of every frame (unmasked 3D attention): upstream gets this for the
    512x320 model's finest level because its mask dictionary has no entry for stride 8, and we
    keep that behaviour, explicitly.
    """

    num_register_tokens: int = 4
    mask_levels: tuple[int, ...] = (8, 4, 2, 1)
    # Pairs with (almost) zero relative translation have no epipolar geometry; upstream replaces
    # their translation by 1e-6 * N(0, 1) so the mask becomes a random line through the point.
    perturb_zero_translation: bool = True
    zero_translation_eps: float = 1e-6


@dataclass(frozen=True)
class PoseEncoderParams:
    """CameraCtrl's pose encoder: Plücker map (6 channels at pixel resolution) -> 4 feature maps."""

    downscale_factor: int = 8
    channels: tuple[int, ...] = (320, 640, 1280, 1280)
    blocks_per_level: int = 2
    num_heads: int = 8
    max_frames: int = 16  # length of the sinusoidal position table

    @property
    def in_channels(self) -> int:
        return 6 * self.downscale_factor**2


@dataclass(frozen=True)
class UNetParams:
    """The DynamiCrafter 3D UNet (lvdm openaimodel3d with temporal convs and attention)."""

    in_channels: int = 8  # 4 noisy latent + 4 concatenated image latent
    out_channels: int = 4
    model_channels: int = 320
    channel_mult: tuple[int, ...] = (1, 2, 4, 4)
    num_res_blocks: int = 2
    attention_levels: tuple[int, ...] = (4, 2, 1)  # latent downsampling factors with ST + TT
    head_channels: int = 64
    context_dim: int = 1024
    num_frames: int = 16
    init_attn_heads: int = 8  # `init_attn`: 8 heads x head_channels
    text_tokens: int = 77
    image_tokens_per_frame: int = 16
    learnable_image_scale: bool = False  # 256 models: image branch weighted by tanh(alpha) + 1
    fs_condition: bool = True
    default_fs: int = 10
    norm_groups: int = 32
    camera: CameraVariant = "none"
    epipolar: Optional[EpipolarParams] = None  # required when camera == "cami2v"
    motion_pose_dim: int = 12  # MotionCtrl: flattened 3x4 relative w2c

    def __post_init__(self) -> None:
        if self.camera == "cami2v" and self.epipolar is None:
            raise ValueError("camera='cami2v' needs EpipolarParams")
        if self.camera != "cami2v" and self.epipolar is not None:
            raise ValueError(f"camera={self.camera!r} takes no EpipolarParams")

    @property
    def time_embed_dim(self) -> int:
        return 4 * self.model_channels

    @property
    def uses_pose_encoder(self) -> bool:
        return self.camera in ("cami2v", "cameractrl")


@dataclass(frozen=True)
class DiffusionParams:
    """Noise schedule, prediction target and latent settings.

    The schedule is recomputed from these numbers; checkpoint schedule buffers are ignored.
    """

    parameterization: Literal["eps", "v"] = "eps"
    num_timesteps: int = 1000
    linear_start: float = 0.00085
    linear_end: float = 0.012
    zero_terminal_snr: bool = False
    dynamic_rescale: bool = False  # 512 model: x0 rescaled by `scale_arr`
    base_scale: float = 0.7
    turning_step: int = 400
    scale_factor: float = 0.18215  # VAE latent scale
    fps_condition: Literal["fps", "fs"] = "fs"  # what the `fs` input means: fps or frame stride
    latent_channels: int = 4


@dataclass(frozen=True)
class ModelParams:
    """One full model: what `inspect` lists and what a checkpoint must contain."""

    name: str
    height: int
    width: int
    unet: UNetParams
    diffusion: DiffusionParams
    pose_encoder: Optional[PoseEncoderParams] = None
    # The DynamiCrafter preset whose checkpoint a camera-only file is laid over.
    base: Optional[str] = None

    def __post_init__(self) -> None:
        if self.unet.uses_pose_encoder != (self.pose_encoder is not None):
            raise ValueError(f"{self.name}: pose encoder presence does not match camera={self.unet.camera!r}")

    @property
    def num_frames(self) -> int:
        return self.unet.num_frames

    @property
    def latent_size(self) -> tuple[int, int]:
        return self.height // 8, self.width // 8

    @property
    def camera(self) -> CameraVariant:
        return self.unet.camera


_UNET_512 = UNetParams(learnable_image_scale=False, default_fs=10)
_UNET_256 = UNetParams(learnable_image_scale=True, default_fs=3)
_DIFF_512 = DiffusionParams(parameterization="v", zero_terminal_snr=True, dynamic_rescale=True,
                            base_scale=0.7, fps_condition="fps")
_DIFF_256 = DiffusionParams(parameterization="eps", zero_terminal_snr=False, dynamic_rescale=False,
                            base_scale=1.0, fps_condition="fs")
_POSE = PoseEncoderParams()

PRESETS: dict[str, ModelParams] = {
    "dynamicrafter-512": ModelParams("dynamicrafter-512", 320, 512, _UNET_512, _DIFF_512),
    "dynamicrafter-256": ModelParams("dynamicrafter-256", 256, 256, _UNET_256, _DIFF_256),
    "cami2v-512": ModelParams(
        "cami2v-512", 320, 512,
        replace(_UNET_512, camera="cami2v", epipolar=EpipolarParams(mask_levels=(8, 4, 2))),
        _DIFF_512, _POSE, base="dynamicrafter-512"),
    "cami2v-256": ModelParams(
        "cami2v-256", 256, 256,
        replace(_UNET_256, camera="cami2v", epipolar=EpipolarParams(mask_levels=(8, 4, 2, 1))),
        _DIFF_256, _POSE, base="dynamicrafter-256"),
    "cameractrl-256": ModelParams(
        "cameractrl-256", 256, 256, replace(_UNET_256, camera="cameractrl"), _DIFF_256, _POSE,
        base="dynamicrafter-256"),
    "motionctrl-256": ModelParams(
        "motionctrl-256", 256, 256, replace(_UNET_256, camera="motionctrl"), _DIFF_256,
        base="dynamicrafter-256"),
}


def get_preset(name: str) -> ModelParams:
    """The preset called `name`; a ValueError lists the known names otherwise."""
    try:
        return PRESETS[name]
    except KeyError:
        raise ValueError(f"unknown model preset {name!r}; known: {', '.join(sorted(PRESETS))}") from None


def tiny_params(camera: CameraVariant = "none", *, learnable_image_scale: bool = False,
                num_frames: int = 4, height: int = 64, width: int = 64) -> ModelParams:
    """A ~2 M-parameter UNet (plus a small pose encoder) of the same structure, for CPU unit tests.

    Two UNet levels (32, 64 channels, attention at both), 16-channel heads, 32-wide context.
    At 64x64 pixels the latent is 8x8, so levels run at 8x8 and 4x4 (pixel strides 8 and 16).
    """
    unet = UNetParams(
        model_channels=32, channel_mult=(1, 2), num_res_blocks=1, attention_levels=(1, 2),
        head_channels=16, context_dim=32, num_frames=num_frames, init_attn_heads=2,
        text_tokens=5, image_tokens_per_frame=2, learnable_image_scale=learnable_image_scale,
        default_fs=3, camera=camera,
        epipolar=EpipolarParams(mask_levels=(2,)) if camera == "cami2v" else None,
    )
    pose = (PoseEncoderParams(channels=(32, 64), blocks_per_level=1, num_heads=2, max_frames=max(16, num_frames))
            if unet.uses_pose_encoder else None)
    return ModelParams(f"tiny-{camera}", height, width, unet, DiffusionParams(), pose)
