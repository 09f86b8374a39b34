"""The CamI2V UNet's speed paths give the outputs of the plain ones: the epipolar mask prepared
once per video (additive and gathered forms), the cross-attention keys/values computed once per
video and the per-sampling-call context cache."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from core.models.cami2v import camera as C
from core.models.cami2v.attention import attend
from core.models.cami2v.config import tiny_params
from core.models.cami2v.masked_attention import EpipolarMask
from core.models.cami2v.model import build_with_weight_rule

pytestmark = pytest.mark.usefixtures("torch_one_thread")

FRAMES = 4


def _slide_mask(frames: int, height: int, width: int, stride: int, registers: int = 4) -> torch.Tensor:
    """A sideways camera's epipolar mask (horizontal lines: few keys per tile)."""
    c2w = torch.eye(4).repeat(1, frames, 1, 1)
    c2w[0, :, 0, 3] = torch.arange(frames) * 0.1
    pairs = C.pairwise_transforms(c2w)
    t = C.perturb_zero_translations(pairs[..., :3, 3:4], generator=torch.Generator().manual_seed(0))
    K = torch.tensor([[[width / 2, 0.0, width / 2], [0.0, width / 2, height / 2], [0.0, 0.0, 1.0]]])
    return C.epipolar_mask(C.fundamental_matrices(K, pairs[..., :3, :3], t), height, width, stride, registers)


def test_prepared_masks_match_the_boolean_mask():
    frames, h, w = FRAMES, 8, 16
    mask = _slide_mask(frames, h * 16, w * 16, 16)
    assert 0.05 < mask[..., 4:].float().mean() < 0.4
    g = torch.Generator().manual_seed(0)
    L, inner, heads = frames * h * w, 64, 4
    q = torch.randn(2, L, inner, generator=g)
    k, v = torch.randn(2, 2, 4 + L, inner, generator=g)
    ref = attend(q, k, v, heads, mask)

    dense = EpipolarMask.prepare(mask, frames, (h, w), torch.float32, gather=False)
    assert not dense.gathered and dense.dense.dtype == torch.float32
    assert torch.equal(dense.dense == 0, mask) and torch.isneginf(dense.dense[~mask]).all()
    torch.testing.assert_close(dense.attend(q, k, v, heads), ref, atol=1e-6, rtol=0)

    gathered = EpipolarMask.prepare(mask, frames, (h, w), torch.float32, gather=True)
    assert gathered.gathered and gathered.density < 0.9  # tiles skip keys no query of theirs sees
    # every query lands in exactly one tile group
    covered = torch.cat([grp.queries for grp in gathered.groups]).sort().values
    assert torch.equal(covered, torch.arange(L))
    torch.testing.assert_close(gathered.attend(q, k, v, heads), ref, atol=1e-5, rtol=0)
    torch.testing.assert_close(gathered.attend(q[:1], k[:1], v[:1], heads), ref[:1], atol=1e-5, rtol=0)

    # a half-precision compute dtype keeps the mask in that dtype
    assert EpipolarMask.prepare(mask, frames, (h, w), torch.bfloat16, gather=False).dense.dtype == torch.bfloat16
    with pytest.raises(ValueError, match="does not fit"):
        EpipolarMask.prepare(mask, frames, (h, w + 1), torch.float32)


def test_gathered_form_is_skipped_where_it_cannot_help():
    frames, h, w = FRAMES, 8, 16
    mask = _slide_mask(frames, h * 16, w * 16, 16)
    per_sample = mask.expand(2, -1, -1, -1)  # a camera per sample: one dense mask each
    assert not EpipolarMask.prepare(per_sample, frames, (h, w), torch.float32, gather=True).gathered
    everything = torch.ones_like(mask)  # no sparsity: the dense form is cheaper
    assert not EpipolarMask.prepare(everything, frames, (h, w), torch.float32).gathered


def _tiny_cami2v():
    params = tiny_params("cami2v", learnable_image_scale=True, num_frames=FRAMES)
    return build_with_weight_rule(params, parts=("unet", "pose_encoder"), component_presets="tiny")


def _inputs(batch: int, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(batch, 8, FRAMES, 8, 8, generator=g)
    t = torch.tensor([10, 700][:batch])
    context = torch.randn(batch, 5 + 2 * FRAMES, 32, generator=g)
    return x, t, context, torch.tensor([3, 5][:batch])


def _camera(model):
    c2w = torch.eye(4).repeat(1, FRAMES, 1, 1)
    c2w[0, :, 0, 3] = torch.arange(FRAMES) * 0.2
    K = torch.tensor([[[32.0, 0.0, 32.0], [0.0, 32.0, 32.0], [0.0, 0.0, 1.0]]])
    return model.camera_condition(c2w, K, generator=torch.Generator().manual_seed(1))


def test_mask_prepared_once_per_video_and_dtype():
    model = _tiny_cami2v()
    cam = _camera(model)
    first = cam.attention_mask(2, (4, 4), torch.float32)
    assert first is cam.attention_mask(2, (4, 4), torch.float32)  # reused at every step
    assert cam.attention_mask(2, (4, 4), torch.bfloat16) is not first
    assert cam.attention_mask(1, (8, 8), torch.float32) is None  # an unmasked level
    assert cam.to(dtype=torch.float32).attention_mask(2, (4, 4), torch.float32) is not first
    x, t, ctx, fs = _inputs(2)
    with torch.no_grad():
        y = model.unet(x, t, ctx, fs, cam)  # tiny tiles: the dense additive form
        assert not cam.attention_mask(2, (4, 4), torch.float32).gathered
        # the same masks in the gathered form, through the whole UNet, both CFG-like samples
        gathered = dataclasses.replace(cam, gather=True)  # the condition's own switch
        assert gathered.attention_mask(2, (4, 4), torch.float32).gathered
        assert gathered.to(dtype=torch.float32).gather is True  # a moved condition keeps it
        assert not dataclasses.replace(cam, gather=False).attention_mask(2, (4, 4), torch.float32).gathered
        y_gathered = model.unet(x, t, ctx, fs, gathered)
    torch.testing.assert_close(y_gathered, y, atol=1e-5, rtol=1e-5)


def test_cross_attention_keys_values_and_context_cache():
    model = _tiny_cami2v()
    unet = model.unet
    cam = _camera(model)
    x, t, ctx, fs = _inputs(2)
    st = unet.input_blocks[1][1]  # a SpatialTransformer
    h = torch.randn(2 * FRAMES, st.proj_in.in_features, 8, 8)
    with torch.no_grad():
        # per layer: precomputed keys/values == the per-frame context tensor
        by_tensor = st(h, unet.frame_context(ctx, FRAMES))
        by_kv = st(h, unet.split_context(ctx, FRAMES).keys_values(st))
        torch.testing.assert_close(by_kv, by_tensor, atol=1e-5, rtol=1e-5)
        shared = torch.randn(2, 9, 32)  # a context of another length: shared by all frames
        torch.testing.assert_close(st(h, unet.split_context(shared, FRAMES).keys_values(st)),
                                   st(h, unet.frame_context(shared, FRAMES)), atol=1e-5, rtol=1e-5)

        reference = [unet(x, t + i, ctx, fs, cam) for i in range(3)]
        with unet.context_cache():
            cached = [unet(x, t + i, ctx.clone(), fs, cam) for i in range(3)]  # new tensors, same values
            assert len(unet._context_cache) == 1
            single = unet(x[:1], t[:1], ctx[:1], fs[:1], cam)  # another batch: its own entry
            assert len(unet._context_cache) == 2
            other = ctx + 1.0  # another video's tokens are never served from the cache
            y_other = unet(x, t, other, fs, cam)
            assert len(unet._context_cache) == 3
        assert unet._context_cache is None  # leaving the block drops it
        y_other_ref = unet(x, t, other, fs, cam)
    for a, b in zip(cached, reference):
        assert torch.equal(a, b)
    torch.testing.assert_close(single, reference[0][:1], atol=2e-5, rtol=1e-5)
    assert torch.equal(y_other, y_other_ref)
    assert (y_other - reference[0]).abs().max() > 1e-4
