"""Load Upscale-A-Video's parts from the release files, strictly, and assemble the pipeline.

The release (the authors' Google Drive folder `pretrained_models/upscale_a_video/`) holds:

    unet/unet_video.bin (+ unet_video_config.json)     the video UNet          -> load_unet
    vae/vae_3d.bin, vae/vae_video.bin                   the two decoders        -> load_vae
    propagator/raft-things.pth                          RAFT (propagation only) -> load_raft
    text_encoder/, tokenizer/                           the SD x4 upscaler's    -> load_text_encoder
    scheduler/, low_res_scheduler/                      scheduler configs       -> scheduler.NoiseSchedule

Each part has one key map next to its model (`unet.to_upstream_key`, `vae.vae_key_to_upstream`,
`raft.raft_key_to_upstream`, `text_encoder.text_key_to_upstream`); the loaders live here, not in
the model files, and read and assign through `core.models.checkpoint`: loading is strict and a
mismatch raises CheckpointError naming the missing, unexpected and wrong-shape keys. `build_with_rule`
makes the same pipeline with the golden fixtures' deterministic weights (tests, benchmarks).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import torch
from torch import nn

from ...errors import CheckpointError, ConfigError, WeightsMissing
from .. import checkpoint as ckpt
from ..clip.text import ClipTextEncoder, TextTransformerParams
from ..weight_rule import fill_with_rule
from .pipeline import UpscaleAVideo
from .raft import RAFT, build_raft, raft_state_dict_from_upstream
from .text_encoder import UAV_TEXT_PARAMS, _weight_file, build_text_encoder, text_state_dict_from_upstream
from .vae import VAE_PRESETS, AutoencoderKLVideo, VideoVAEParams, build_vae, vae_state_dict_from_upstream
from .scheduler import LOW_RES_SCHEDULE, SAMPLING_SCHEDULE, NoiseSchedule
from .unet import PRESETS, UNetVideo, UNetVideoParams, build_unet, to_upstream_key

VAE_VARIANTS = ("vae_3d", "vae_video")

# Where each part sits inside the release folder.
RELEASE_LAYOUT = {
    "unet": "unet/unet_video.bin",
    "unet_config": "unet/unet_video_config.json",
    "vae_3d": "vae/vae_3d.bin",
    "vae_video": "vae/vae_video.bin",
    "raft": "propagator/raft-things.pth",
    "text_encoder": "text_encoder",
    "tokenizer": "tokenizer",
    "scheduler_config": "scheduler/scheduler_config.json",
    "low_res_scheduler_config": "low_res_scheduler/scheduler_config.json",
}


@dataclass(frozen=True)
class ReleaseFiles:
    """Paths of the parts to load. Optional ones may be None (or absent on disk)."""

    unet: Path
    vae: Path
    text_encoder: Path  # the text_encoder/ folder or its weight file
    vae_variant: str = "vae_3d"
    raft: Optional[Path] = None
    tokenizer: Optional[Path] = None  # folder with vocab.json + merges.txt; else the built-in vocabulary
    unet_config: Optional[Path] = None
    scheduler_config: Optional[Path] = None
    low_res_scheduler_config: Optional[Path] = None

    @classmethod
    def from_folder(cls, root: str | Path, vae_variant: str = "vae_3d") -> "ReleaseFiles":
        """The release folder as the authors lay it out (optional parts only when present)."""
        if vae_variant not in VAE_VARIANTS:
            raise ConfigError(f"unknown Upscale-A-Video VAE {vae_variant!r}; choose one of {', '.join(VAE_VARIANTS)}.")
        root = Path(root)

        def optional(role: str) -> Optional[Path]:
            p = root / RELEASE_LAYOUT[role]
            return p if p.exists() else None

        return cls(unet=root / RELEASE_LAYOUT["unet"], vae=root / RELEASE_LAYOUT[vae_variant],
                   text_encoder=root / RELEASE_LAYOUT["text_encoder"], vae_variant=vae_variant,
                   raft=optional("raft"), tokenizer=optional("tokenizer"), unet_config=optional("unet_config"),
                   scheduler_config=optional("scheduler_config"),
                   low_res_scheduler_config=optional("low_res_scheduler_config"))


# -- UNet ------------------------------------------------------------------------------------------

# unet_video_config.json field -> our params field, for the values that shape the network.
_CONFIG_FIELDS = {
    "in_channels": "in_channels",
    "out_channels": "out_channels",
    "block_out_channels": "block_channels",
    "layers_per_block": "layers_per_block",
    "attention_head_dim": "num_heads",
    "cross_attention_dim": "cross_attention_dim",
    "only_cross_attention": "only_cross_attention",
    "num_class_embeds": "num_class_embeds",
    "norm_num_groups": "norm_groups",
    "norm_eps": "norm_eps",
    "flip_sin_to_cos": "flip_sin_to_cos",
    "freq_shift": "freq_shift",
    "down_temporal_idx": "temporal_down",
    "mid_temporal": "temporal_mid",
    "up_temporal_idx": "temporal_up",
}


def check_unet_config(path: str | Path, params: UNetVideoParams = PRESETS["upscale-a-video"]) -> None:
    """Compare the release's `unet_video_config.json` with `params`; ConfigError on a difference.

    Our network is built from the preset, so a config describing another architecture must
    not be silently ignored.
    """
    path = Path(path)
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read the UNet config ({exc}).") from None
    diffs = []
    for key, ours in _CONFIG_FIELDS.items():
        if key not in raw:
            continue
        want = getattr(params, ours)
        got = raw[key]
        got = tuple(got) if isinstance(got, list) else got
        if want != got and not (isinstance(want, float) and isinstance(got, (int, float)) and float(got) == want):
            diffs.append(f"{key}={raw[key]!r} (expected {want!r})")
    types = (raw.get("down_block_types"), raw.get("up_block_types"))
    want_down = tuple("CrossAttnDownBlock3D" if a else "DownBlock3D" for a in params.attention)
    want_up = tuple("CrossAttnUpBlock3D" if a else "UpBlock3D" for a in reversed(params.attention))
    if types[0] is not None and tuple(types[0]) != want_down:
        diffs.append(f"down_block_types={types[0]!r}")
    if types[1] is not None and tuple(types[1]) != want_up:
        diffs.append(f"up_block_types={types[1]!r}")
    attn = raw.get("temporal_module_config", {}).get("attention_block_types")
    if attn is not None and any(attn):
        diffs.append(f"temporal_module_config.attention_block_types={attn!r} (temporal attention modules "
                     "are not implemented)")
    if diffs:
        raise ConfigError(f"{path}: describes a different UNet than ours: {'; '.join(diffs[:4])}.")


def _load_module(module: nn.Module, state: dict[str, torch.Tensor], to_upstream, source: str,
                 device, dtype, keep_float32: tuple[str, ...] = ()) -> None:
    """Rename an upstream state dict to `module`'s keys with the part's key map, cast each tensor
    once to (device, dtype) and assign strictly (no second copy of the model). Our keys ending in
    one of `keep_float32` stay float32."""
    ours_by_upstream = {}
    for k in module.state_dict(keep_vars=True):
        ours_by_upstream.setdefault(to_upstream(k), []).append(k)
    renamed: dict[str, torch.Tensor] = {}
    for k, v in state.items():
        targets = ours_by_upstream.get(k, [k])  # unknown keys stay, so the strict check names them
        for ours in targets:
            if not v.is_floating_point():
                cast = v.dtype
            else:
                cast = torch.float32 if ours.endswith(keep_float32) else dtype
            renamed[ours] = v.to(device=device, dtype=cast)
    ckpt.assign_strict(module, renamed, source)


def read_checkpoint(path: str | Path) -> dict[str, torch.Tensor]:
    """A release weight file (.bin/.pth/.safetensors) on the CPU (`core.models.checkpoint`).
    WeightsMissing when absent, CheckpointError when it cannot be read."""
    path = Path(path)
    if not path.is_file():
        raise WeightsMissing(f"weight file {path.name} is missing at {path}; see models.json for how to obtain it.")
    return ckpt.read_state_dict(path)


def load_vae(path: str | Path, preset: str | VideoVAEParams, device: torch.device | str = "cpu",
             dtype: torch.dtype = torch.float32) -> AutoencoderKLVideo:
    """Load `vae_3d.bin` (preset "vae_3d") or `vae_video.bin` (preset "vae_video") strictly."""
    if isinstance(preset, str) and preset not in VAE_PRESETS:
        raise ValueError(f"unknown VAE preset {preset!r} (known: {', '.join(VAE_PRESETS)})")
    state = vae_state_dict_from_upstream(read_checkpoint(path))
    model = build_vae(preset)
    ckpt.assign_strict(model, state, str(path))
    return model.to(device=device, dtype=dtype).eval()


def load_text_encoder(path: str | Path, device: torch.device | str = "cpu",
                      dtype: torch.dtype = torch.float32,
                      params: TextTransformerParams = UAV_TEXT_PARAMS) -> ClipTextEncoder:
    """Load the release's `text_encoder/` (folder or weight file) strictly."""
    file = _weight_file(Path(path))
    state = text_state_dict_from_upstream(read_checkpoint(file), source=str(file),
                                          context_length=params.context_length)
    model = build_text_encoder(params=params)
    ckpt.assign_strict(model, state, str(file))
    return model.to(device=device, dtype=dtype).eval()


def load_raft(path: str | Path, device: torch.device | str = "cpu") -> RAFT:
    """Load `raft-things.pth` strictly; returns a float32 RAFT on `device`."""
    state = raft_state_dict_from_upstream(read_checkpoint(path))
    model = build_raft()
    ckpt.assign_strict(model, state, str(path))
    return model.to(device=device, dtype=torch.float32).eval()


def load_unet(path: str | Path, params: UNetVideoParams | str = "upscale-a-video",
              device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32) -> UNetVideo:
    """Load `unet_video.bin` (or a .safetensors with the same keys) strictly.

    The RoPE frequencies appear under 17 keys in the file and are one tensor here (kept in
    float32 whatever `dtype` is).
    """
    state = read_checkpoint(path)
    model = build_unet(params)
    _load_module(model, state, to_upstream_key, str(path), device, dtype, keep_float32=("rope.freqs",))
    return model.to_channels_last().eval()


# -- whole pipeline --------------------------------------------------------------------------------

def _schedules(files: ReleaseFiles) -> tuple[NoiseSchedule, NoiseSchedule]:
    sampling = (NoiseSchedule.from_config_file(files.scheduler_config, SAMPLING_SCHEDULE)
                if files.scheduler_config else SAMPLING_SCHEDULE)
    low_res = (NoiseSchedule.from_config_file(files.low_res_scheduler_config, LOW_RES_SCHEDULE)
               if files.low_res_scheduler_config else LOW_RES_SCHEDULE)
    return sampling, low_res


def _propagation_parts(raft_model) -> tuple:
    from .propagation import propagate_latents
    from .raft import BidirectionalRAFT

    flows = BidirectionalRAFT(raft_model).eval()
    return flows, propagate_latents


def attach_propagation(pipe: UpscaleAVideo, raft_path: str | Path) -> UpscaleAVideo:
    """Load RAFT (float32) onto the pipeline's device and enable propagation steps."""
    pipe.flow_estimator, pipe.propagator = _propagation_parts(load_raft(raft_path, device=pipe.device))
    return pipe


def load_pipeline(files: ReleaseFiles, device: torch.device | str = "cuda", dtype: torch.dtype = torch.float16,
                  with_propagation: bool = False,
                  unet_params: UNetVideoParams | str = "upscale-a-video", vae_params=None,
                  text_params=None) -> UpscaleAVideo:
    """Load every part and assemble the pipeline on `device`.

    UNet and text encoder in `dtype` (fp16 upstream); VAE and RAFT in float32 (upstream decodes
    in float32 because the x4 decoder overflows in fp16). RAFT is loaded only with
    `with_propagation`. unet_params / vae_params / text_params override the release
    architectures (tiny configs in tests).
    """
    if files.vae_variant not in VAE_VARIANTS:
        raise ConfigError(f"unknown Upscale-A-Video VAE {files.vae_variant!r}; choose one of {', '.join(VAE_VARIANTS)}.")
    device = torch.device(device)
    params = PRESETS[unet_params] if isinstance(unet_params, str) else unet_params
    if files.unet_config is not None:
        check_unet_config(files.unet_config, params)
    sampling, low_res = _schedules(files)
    unet = load_unet(files.unet, params, device=device, dtype=dtype)
    vp = vae_params if vae_params is not None else VAE_PRESETS[files.vae_variant]
    vae = load_vae(files.vae, vp, device=device, dtype=torch.float32)
    text = (load_text_encoder(files.text_encoder, device=device, dtype=dtype) if text_params is None
            else load_text_encoder(files.text_encoder, device=device, dtype=dtype, params=text_params))
    if files.tokenizer is not None:
        from ..clip.tokenizer import optional_tokenizer

        text.tokenizer = optional_tokenizer(Path(files.tokenizer))
    pipe = UpscaleAVideo(unet=unet, vae=vae, encode_prompts=text.encode,
                         latent_scale=vp.scaling_factor, latent_channels=vp.latent_channels,
                         sampling_schedule=sampling, low_res_schedule=low_res, device=device)
    if with_propagation:
        if files.raft is None:
            raise CheckpointError("Propagation needs RAFT (propagator/raft-things.pth), which was not given.")
        attach_propagation(pipe, files.raft)
    return pipe


def _fill(module: nn.Module, to_upstream, device, dtype) -> nn.Module:
    """Rule weights for parameters; buffers get what the model computes (BatchNorm: 0 / 1 / 0,
    the UNet's RoPE frequencies)."""
    fill_with_rule(module, to_upstream, device=device, dtype=dtype)
    if isinstance(module, UNetVideo):
        module.reset_buffers(device)
    for owner in module.modules():
        if isinstance(owner, nn.modules.batchnorm._BatchNorm) and owner.track_running_stats:
            c = owner.num_features
            owner.running_mean = torch.zeros(c, device=device)
            owner.running_var = torch.ones(c, device=device)
            owner.num_batches_tracked = torch.zeros((), dtype=torch.long, device=device)
    leftover = [n for n, b in module.named_buffers() if b is not None and b.is_meta]
    if leftover:
        raise RuntimeError(f"buffers left on the meta device: {leftover[:4]}")
    return module.eval()


def build_with_rule(device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32,
                    vae_variant: str = "vae_3d", with_propagation: bool = False,
                    unet_params: UNetVideoParams | str = "upscale-a-video", vae_params=None,
                    text_params=None) -> UpscaleAVideo:
    """The pipeline with the deterministic weight rule instead of files (same shapes, no download).

    vae_params / text_params override the release architectures (tiny configs for tests); the
    rule then still keys on the release's names.
    """
    from .raft import raft_key_to_upstream
    from .text_encoder import text_key_to_upstream
    from .vae import vae_key_to_upstream

    device = torch.device(device)
    unet = build_unet(unet_params)
    _fill(unet, to_upstream_key, device, dtype).to_channels_last()
    vp = vae_params if vae_params is not None else VAE_PRESETS[vae_variant]
    with torch.device("meta"):
        vae = AutoencoderKLVideo(vp)
        text = ClipTextEncoder(text_params if text_params is not None else UAV_TEXT_PARAMS)
    _fill(vae, vae_key_to_upstream, device, torch.float32)
    _fill(text, text_key_to_upstream, device, dtype)
    flows = propagate = None
    if with_propagation:
        raft = _fill(build_raft(), raft_key_to_upstream, device, torch.float32)
        flows, propagate = _propagation_parts(raft)
    return UpscaleAVideo(unet=unet, vae=vae, encode_prompts=text.encode, latent_scale=vp.scaling_factor,
                         latent_channels=vp.latent_channels, flow_estimator=flows, propagator=propagate,
                         device=device)
