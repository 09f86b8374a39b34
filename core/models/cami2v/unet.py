"""The DynamiCrafter 3D UNet, with the camera variant's temporal blocks built in.

Structure (state-dict indices, as in the checkpoints):
`input_blocks.0` conv -> `init_attn` temporal transformer -> per level `num_res_blocks` x
[ResBlock, SpatialTransformer, TemporalTransformer] (transformers only at `attention_levels`)
and a Downsample between levels -> `middle_block` [ResBlock, ST, TT, ResBlock] ->
`output_blocks` mirroring the input side with skip concatenation -> `out`.

Camera variants differ only in the transformer block class of the temporal transformers
(`blocks.py`): CamI2V and CameraCtrl in the 16 level/middle TTs, MotionCtrl also in `init_attn`.
"""

from __future__ import annotations

import math
from contextlib import contextmanager
from typing import Iterator, Optional

import torch
from torch import Tensor, nn

from .attention import CrossKV
from .blocks import (
    CameraCtrlTemporalBlock,
    CamI2VTemporalBlock,
    Downsample,
    GroupNorm32,
    LevelCamera,
    MotionCtrlTemporalBlock,
    ResBlock,
    SpatialTransformer,
    TemporalBlock,
    TemporalTransformer,
    Upsample,
    timestep_embedding,
)
from .camera import CameraCondition
from .config import UNetParams


class FrameContext:
    """The cross-attention conditioning of B videos of T frames, split as the frames use it.

    text:  (B, text_tokens, D) prompt tokens, attended alike by every frame.
    image: (B*T, Li, D) per-frame image tokens, or (B, Li, D) shared by all frames (Li may be 0).
    Each spatial transformer's keys/values are computed from these on first use and kept
    (`keys_values`); they depend on nothing else but the layer's weights.
    """

    def __init__(self, text: Tensor, image: Tensor, frames: int):
        self.text, self.image, self.frames = text, image, frames
        self._kv: dict[int, tuple[CrossKV, ...]] = {}

    def keys_values(self, layer: SpatialTransformer) -> tuple[CrossKV, ...]:
        key = id(layer)
        if key not in self._kv:
            self._kv[key] = layer.keys_values(self.text, self.image, self.frames)
        return self._kv[key]


class UNetStage(nn.ModuleList):
    """One entry of `input_blocks` / `middle_block` / `output_blocks`: layers applied in order.

    `level` is the stage's latent downsampling factor (1, 2, 4, 8) at which its transformers run.
    """

    def __init__(self, layers: list[nn.Module], level: int):
        super().__init__(layers)
        self.level = level

    def forward(self, h: Tensor, emb: Tensor, context: FrameContext, frames: int,
                camera: Optional[LevelCamera]) -> Tensor:
        for layer in self:
            if isinstance(layer, ResBlock):
                h = layer(h, emb, frames)
            elif isinstance(layer, SpatialTransformer):
                h = layer(h, context.keys_values(layer))
            elif isinstance(layer, TemporalTransformer):
                h = layer(h, frames, camera)
            else:
                h = layer(h)
        return h


def _mlp(dim_in: int, dim: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(dim_in, dim), nn.SiLU(), nn.Linear(dim, dim))


class UNet3D(nn.Module):
    """DynamiCrafter's video UNet (lvdm `UNetModel` with temporal convs and attention)."""

    def __init__(self, p: UNetParams):
        super().__init__()
        self.params = p
        mc, emb_dim, groups = p.model_channels, p.time_embed_dim, p.norm_groups

        self.time_embed = _mlp(mc, emb_dim)
        self.fps_embedding = _mlp(mc, emb_dim) if p.fs_condition else None

        def spatial(ch: int) -> SpatialTransformer:
            return SpatialTransformer(ch, ch // p.head_channels, p.head_channels, p.context_dim,
                                      p.text_tokens, p.learnable_image_scale, groups)

        def temporal(ch: int) -> TemporalTransformer:
            heads = ch // p.head_channels
            return TemporalTransformer(ch, heads, p.head_channels, self._temporal_block(ch, heads, p.head_channels),
                                       linear=True, groups=groups)

        input_blocks = [UNetStage([nn.Conv2d(p.in_channels, mc, 3, padding=1)], level=1)]
        skip_channels = [mc]
        ch, level = mc, 1
        for i, mult in enumerate(p.channel_mult):
            for _ in range(p.num_res_blocks):
                layers: list[nn.Module] = [ResBlock(ch, emb_dim, mult * mc, groups)]
                ch = mult * mc
                if level in p.attention_levels:
                    layers += [spatial(ch), temporal(ch)]
                input_blocks.append(UNetStage(layers, level))
                skip_channels.append(ch)
            if i != len(p.channel_mult) - 1:
                input_blocks.append(UNetStage([Downsample(ch)], level))
                skip_channels.append(ch)
                level *= 2
        self.input_blocks = nn.ModuleList(input_blocks)

        # Registered after `input_blocks` to keep the checkpoint's state-dict order.
        init_inner = p.init_attn_heads * p.head_channels
        init_block = (MotionCtrlTemporalBlock(init_inner, p.init_attn_heads, p.head_channels, p.motion_pose_dim)
                      if p.camera == "motionctrl" else TemporalBlock(init_inner, p.init_attn_heads, p.head_channels))
        self.init_attn = TemporalTransformer(mc, p.init_attn_heads, p.head_channels, init_block,
                                             linear=False, groups=groups)

        self.middle_block = UNetStage(
            [ResBlock(ch, emb_dim, ch, groups), spatial(ch), temporal(ch), ResBlock(ch, emb_dim, ch, groups)],
            level)

        output_blocks = []
        for i, mult in reversed(list(enumerate(p.channel_mult))):
            for j in range(p.num_res_blocks + 1):
                layers = [ResBlock(ch + skip_channels.pop(), emb_dim, mult * mc, groups)]
                ch = mult * mc
                if level in p.attention_levels:
                    layers += [spatial(ch), temporal(ch)]
                stage_level = level
                if i and j == p.num_res_blocks:
                    layers.append(Upsample(ch))
                    level //= 2
                output_blocks.append(UNetStage(layers, stage_level))
        self.output_blocks = nn.ModuleList(output_blocks)

        self.out = nn.Sequential(GroupNorm32(groups, ch), nn.SiLU(), nn.Conv2d(mc, p.out_channels, 3, padding=1))
        # [(context seen, its FrameContext)] while a `context_cache()` block is open, else None.
        self._context_cache: Optional[list[tuple[Tensor, FrameContext]]] = None

    def _temporal_block(self, dim: int, heads: int, head_dim: int) -> TemporalBlock:
        p = self.params
        if p.camera == "cami2v":
            return CamI2VTemporalBlock(dim, heads, head_dim, p.epipolar.num_register_tokens)
        if p.camera == "cameractrl":
            return CameraCtrlTemporalBlock(dim, heads, head_dim)
        if p.camera == "motionctrl":
            return MotionCtrlTemporalBlock(dim, heads, head_dim, p.motion_pose_dim)
        return TemporalBlock(dim, heads, head_dim)

    @property
    def dtype(self) -> torch.dtype:
        return self.input_blocks[0][0].weight.dtype

    def frame_context(self, context: Tensor, frames: int) -> Tensor:
        """(B, text + 16*T, D) -> (B*T, text + 16, D): text repeated per frame, image tokens split
        so frame t gets tokens [16t, 16t+16). Any other length is repeated whole per frame."""
        p = self.params
        b, length, d = context.shape
        if length == p.text_tokens + frames * p.image_tokens_per_frame:
            text = context[:, : p.text_tokens].repeat_interleave(frames, dim=0)
            image = context[:, p.text_tokens:].reshape(b * frames, p.image_tokens_per_frame, d)
            return torch.cat([text, image], dim=1)
        return context.repeat_interleave(frames, dim=0)

    def split_context(self, context: Tensor, frames: int) -> FrameContext:
        """(B, text + 16*T, D) -> text (B, text, D) and per-frame image tokens (B*T, 16, D), the
        split `frame_context` makes; any other length: text and the rest, shared by all frames."""
        p = self.params
        b, length, d = context.shape
        text, image = context[:, : p.text_tokens], context[:, p.text_tokens:]
        if length == p.text_tokens + frames * p.image_tokens_per_frame:
            image = image.reshape(b * frames, p.image_tokens_per_frame, d)
        return FrameContext(text, image, frames)

    @contextmanager
    def context_cache(self) -> Iterator[None]:
        """Within this block (one sampling call), `forward` reuses the cross-attention keys and
        values of any context it has already seen (equal values, shape, dtype and device, same
        frame count) instead of recomputing them at every step: the prompt and image tokens are
        fixed per video, so only the UNet batches (cond+uncond, single branches) differ. The
        weights must not change inside the block; leaving it drops the cache."""
        previous = self._context_cache
        self._context_cache = []
        try:
            yield
        finally:
            self._context_cache = previous

    def _frame_context(self, context: Tensor, frames: int) -> FrameContext:
        # Never while tracing (the OpenVINO export): cached keys/values would become constants.
        if self._context_cache is None or torch.jit.is_tracing():
            return self.split_context(context, frames)
        for seen, prepared in self._context_cache:
            if (seen.shape == context.shape and seen.dtype == context.dtype and seen.device == context.device
                    and prepared.frames == frames and torch.equal(seen, context)):
                return prepared
        prepared = self.split_context(context, frames)
        self._context_cache.append((context.clone(), prepared))
        return prepared

    def _level_camera(self, camera: Optional[CameraCondition], level: int,
                      grids: dict[int, tuple[int, int]]) -> Optional[LevelCamera]:
        if camera is None:
            return None
        index = int(math.log2(level))
        return LevelCamera(
            pose=None if camera.pose_features is None else camera.pose_features[index],
            mask=None if camera.epipolar_masks is None else camera.epipolar_masks.get(level),
            motion_rt=camera.motion_rt,
            attention=camera.attention_mask(level, grids[level], self.dtype) if level in grids else None,
        )

    def forward(self, x: Tensor, timesteps: Tensor, context: Tensor, fs: Optional[Tensor] = None,
                camera: Optional[CameraCondition] = None) -> Tensor:
        """Predict noise (eps models) or velocity (v models) for a batch of videos.

        x:         (B, 8, T, h, w) noisy latent (4) ‖ image latent (4), any float dtype.
        timesteps: (B,) long in [0, 999].
        context:   (B, 77 + 16*T, context_dim) text tokens ‖ per-frame image tokens.
        fs:        (B,) long, fps (512 model) or frame stride (256 models); default `default_fs`.
        camera:    a `CameraCondition` of this UNet's variant, batch 1 (shared) or B; None runs
                   the plain DynamiCrafter path.
        Returns (B, out_channels, T, h, w) in x's dtype. Computation runs in the parameters' dtype.
        """
        p = self.params
        b, _, frames, height, width = x.shape
        dtype = self.dtype
        if camera is not None:
            camera.check_for(p.camera, b, frames)

        emb = self.time_embed(timestep_embedding(timesteps, p.model_channels).to(dtype))
        if self.fps_embedding is not None:
            if fs is None:
                fs = torch.full((b,), p.default_fs, dtype=torch.long, device=x.device)
            emb = emb + self.fps_embedding(timestep_embedding(fs, p.model_channels).to(dtype))
        emb = emb.repeat_interleave(frames, dim=0)
        ctx = self._frame_context(context.to(dtype), frames)
        # (h, w) of the token map at each level (the stride-2 convs round up).
        grids, (gh, gw) = {}, (height, width)
        for level in (1, 2, 4, 8, 16, 32):
            grids[level] = (gh, gw)
            gh, gw = (gh + 1) // 2, (gw + 1) // 2

        h = x.to(dtype).transpose(1, 2).reshape(b * frames, -1, height, width)
        skips = []
        for i, stage in enumerate(self.input_blocks):
            h = stage(h, emb, ctx, frames, self._level_camera(camera, stage.level, grids))
            if i == 0:
                h = self.init_attn(h, frames, self._level_camera(camera, 1, grids) if p.camera == "motionctrl" else None)
            skips.append(h)
        h = self.middle_block(h, emb, ctx, frames, self._level_camera(camera, self.middle_block.level, grids))
        for stage in self.output_blocks:
            h = torch.cat([h, skips.pop()], dim=1)
            h = stage(h, emb, ctx, frames, self._level_camera(camera, stage.level, grids))
        y = self.out(h)
        return y.view(b, frames, -1, height, width).transpose(1, 2).to(x.dtype)

    def compile_blocks(self, **compile_kwargs) -> None:
        """Optional GPU speed-up: `torch.compile` every residual and transformer block in place.

        Blocks (not the whole UNet) are compiled so the Python-level stage loop, camera lookup
        and skip bookkeeping stay eager and graph breaks stay local.
        """
        for module in self.modules():
            if isinstance(module, (ResBlock, SpatialTransformer, TemporalTransformer)):
                module.compile(**compile_kwargs)
