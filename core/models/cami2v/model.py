"""The full latent video diffusion model (DynamiCrafter, CamI2V, CameraCtrl, MotionCtrl).

`LatentVideoDiffusion` only owns the components and the derived schedule buffers; sampling lives
in `core.sampling` and the end-to-end flow in `pipeline.py`. Component attributes and their
upstream (LightningModule) prefixes:

    unet          model.diffusion_model.   UNet3D (camera blocks built in)
    vae           first_stage_model.       AutoencoderKL
    text_encoder  cond_stage_model.        ClipTextEncoder (OpenCLIP ViT-H-14 text side)
    image_encoder embedder.                ClipImageEmbedder (OpenCLIP ViT-H-14 visual side)
    image_proj    image_proj_model.        Resampler
    pose_encoder  pose_encoder.            PoseEncoder (CamI2V, CameraCtrl)

A model may be built with only some `parts` (e.g. just the UNet and pose encoder for tests);
the others are None and are absent from its state dict.
"""

from __future__ import annotations

from typing import Collection, Optional

import torch
from torch import Tensor, nn

from ..autoencoder import AUTOENCODER_PRESETS, AutoencoderKL
from ..clip import TEXT_PRESETS, VISION_PRESETS, ClipImageEmbedder, ClipTextEncoder
from ..resampler import RESAMPLER_PRESETS, Resampler
from ...sampling.schedules import make_schedule
from .camera import CameraCondition, build_camera_condition
from .config import DiffusionParams, ModelParams, get_preset
from .keymap import SCHEDULE_BUFFERS  # noqa: F401  (re-exported: its home is the key map)
from .pose_encoder import PoseEncoder, sinusoidal_table
from .unet import UNet3D

ALL_PARTS = ("unet", "vae", "text_encoder", "image_encoder", "image_proj", "pose_encoder")



def schedule_buffers(p: DiffusionParams, device=None) -> dict[str, Tensor]:
    """The DDPM buffers upstream keeps in its state dict, float32, computed from the config.

    Kept only so our state dict mirrors the checkpoints; samplers use `core.sampling`'s
    float64 `NoiseSchedule` directly. v-models store zeros for `sqrt_recip(m1)_alphas_cumprod`
    (they would be infinite under a zero-terminal-SNR schedule), as upstream does.
    """
    s = make_schedule(p.num_timesteps, p.linear_start, p.linear_end, zero_terminal_snr=p.zero_terminal_snr,
                      parameterization=p.parameterization, dynamic_rescale=p.dynamic_rescale,
                      base_scale=p.base_scale, turning_step=p.turning_step)
    betas = s.betas.double()
    ac = s.alphas_cumprod.double()
    ac_prev = torch.cat([torch.ones(1, dtype=torch.float64), ac[:-1]])
    post_var = betas * (1.0 - ac_prev) / (1.0 - ac)
    if p.parameterization == "v":
        recip, recipm1 = torch.zeros_like(ac), torch.zeros_like(ac)
    else:
        recip, recipm1 = (1.0 / ac).sqrt(), (1.0 / ac - 1.0).sqrt()
    values = {
        "betas": betas,
        "alphas_cumprod": ac,
        "alphas_cumprod_prev": ac_prev,
        "sqrt_alphas_cumprod": ac.sqrt(),
        "sqrt_one_minus_alphas_cumprod": (1.0 - ac).sqrt(),
        "log_one_minus_alphas_cumprod": (1.0 - ac).log(),
        "sqrt_recip_alphas_cumprod": recip,
        "sqrt_recipm1_alphas_cumprod": recipm1,
        "posterior_variance": post_var,
        "posterior_log_variance_clipped": post_var.clamp(min=1e-20).log(),
        "posterior_mean_coef1": betas * ac_prev.sqrt() / (1.0 - ac),
        "posterior_mean_coef2": (1.0 - ac_prev) * (1.0 - betas).sqrt() / (1.0 - ac),
    }
    if s.scale_table is not None:
        values["scale_arr"] = s.scale_table
    return {k: v.to(device=device, dtype=torch.float32) for k, v in values.items()}


class LatentVideoDiffusion(nn.Module):
    """All components of one preset; see the module docstring for names and prefixes."""

    def __init__(self, params: ModelParams, parts: Collection[str] = ALL_PARTS,
                 component_presets: str = "full"):
        """`component_presets`: "full" (ViT-H-14, KL-f8, 256-query resampler) or "tiny" (tests)."""
        super().__init__()
        unknown = set(parts) - set(ALL_PARTS)
        if unknown:
            raise ValueError(f"unknown parts {sorted(unknown)}; known: {ALL_PARTS}")
        if component_presets not in ("full", "tiny"):
            raise ValueError(f"component_presets must be 'full' or 'tiny', got {component_presets!r}")
        self.params = params
        # What this instance holds (the pose encoder only exists for CamI2V / CameraCtrl).
        self.parts = tuple(part for part in ALL_PARTS if part in parts
                           and (part != "pose_encoder" or params.pose_encoder is not None))
        for name, value in schedule_buffers(params.diffusion).items():
            self.register_buffer(name, value)

        tiny = component_presets == "tiny"
        self.unet = UNet3D(params.unet) if "unet" in parts else None
        self.vae = (AutoencoderKL(AUTOENCODER_PRESETS["tiny" if tiny else "kl-f8"])
                    if "vae" in parts else None)
        self.text_encoder = (ClipTextEncoder(TEXT_PRESETS["tiny" if tiny else "openclip-vit-h-14"])
                             if "text_encoder" in parts else None)
        self.image_encoder = (ClipImageEmbedder(VISION_PRESETS["tiny" if tiny else "openclip-vit-h-14"])
                              if "image_encoder" in parts else None)
        self.image_proj = (Resampler(RESAMPLER_PRESETS["tiny" if tiny else "dynamicrafter"])
                           if "image_proj" in parts else None)
        self.pose_encoder = (PoseEncoder(params.pose_encoder)
                             if "pose_encoder" in parts and params.pose_encoder is not None else None)

    def derived_buffers(self, device=None) -> dict[str, Tensor]:
        """Every persistent buffer computed from the config (our state-dict names)."""
        out = schedule_buffers(self.params.diffusion, device)
        if self.pose_encoder is not None:
            for name, buf in self.pose_encoder.named_buffers(prefix="pose_encoder"):
                out[name] = sinusoidal_table(buf.shape[1], buf.shape[2], device=device)
        return out

    def reset_buffers(self, device=None) -> None:
        """Recompute every derived buffer on `device` (after a meta-device build or a load)."""
        for name, value in schedule_buffers(self.params.diffusion, device).items():
            setattr(self, name, value)
        if self.pose_encoder is not None:
            self.pose_encoder.reset_buffers(device)

    @torch.no_grad()
    def camera_condition(self, rel_c2w: Tensor, K: Tensor, *, translation_noise: Optional[Tensor] = None,
                         translation_values: Optional[Tensor] = None,
                         generator: Optional[torch.Generator] = None) -> CameraCondition:
        """This model's `CameraCondition` for relative c2w (B, T, 4, 4) and pixel K, per frame
        (B, T, 3, 3) or shared (B, 3, 3); see `build_camera_condition` for the perturbation inputs.

        Computed once per video; pass it to every UNet call (both CFG branches share it).
        """
        p = self.params
        if p.camera == "none":
            raise ValueError(f"{p.name} has no camera conditioning")
        device = self.unet.input_blocks[0][0].weight.device if self.unet is not None else rel_c2w.device
        dtype = self.unet.dtype if self.unet is not None else None
        return build_camera_condition(
            p.camera, rel_c2w.to(device), K.to(device), p.height, p.width,
            pose_encoder=self.pose_encoder, epipolar=p.unet.epipolar, latent_factor=8,
            translation_noise=translation_noise, translation_values=translation_values, generator=generator,
            dtype=dtype)



def build_meta(params: ModelParams | str, parts: Collection[str] = ALL_PARTS,
               component_presets: str = "full") -> LatentVideoDiffusion:
    """The model on the meta device: shapes only, no memory. Materialise it by loading
    (`loader.load_pretrained` / `loader.load_weights`) or with `build_with_weight_rule`."""
    params = get_preset(params) if isinstance(params, str) else params
    with torch.device("meta"):
        return LatentVideoDiffusion(params, parts, component_presets)


def build_with_weight_rule(params: ModelParams | str, device="cpu", dtype: torch.dtype = torch.float32,
                           parts: Collection[str] = ALL_PARTS,
                           component_presets: str = "full") -> LatentVideoDiffusion:
    """The model with the golden fixtures' deterministic weights (`core.models.weight_rule`).

    Built on the meta device, then each parameter is drawn under its *upstream* key and written
    straight into `dtype` on `device` (peak memory: the model plus one tensor). Derived buffers
    are computed on `device`. `parts` limits what is built (e.g. ("unet", "pose_encoder")).
    """
    from ..weight_rule import fill_with_rule
    from .keymap import to_upstream

    model = build_meta(params, parts, component_presets)
    fill_with_rule(model, to_upstream, device=device, dtype=dtype)
    model.reset_buffers(device)
    return model.eval().requires_grad_(False)
