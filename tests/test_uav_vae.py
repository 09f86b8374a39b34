"""Upscale-A-Video video VAE: manifests, key map, loader, frame-pooled GroupNorm, golden decodes."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from core.errors import CheckpointError, WeightsMissing
from core.models.upscale_a_video.vae import (VAE_PRESETS, AutoencoderKLVideo, FrameGroupNorm, VideoVAEParams,
                                             build_vae, vae_key_from_upstream, vae_key_to_upstream,
                                             vae_state_dict_from_upstream)
from core.models.upscale_a_video.loader import load_vae
from core.models.weight_rule import fill_with_rule, rule_tensor

TINY_3D = VideoVAEParams(block_out_channels=(32, 64), layers_per_block=1, norm_num_groups=8)
TINY_VIDEO = VideoVAEParams(block_out_channels=(32, 64), layers_per_block=1, norm_num_groups=8,
                            temporal_decoder=True, lr_condition=True, lr_condition_channels=16)


def _tiny(params: VideoVAEParams) -> AutoencoderKLVideo:
    model = build_vae(params)
    fill_with_rule(model, vae_key_to_upstream)
    return model


def _randn(*shape, seed=0):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


# -- structure -----------------------------------------------------------------------------------

@pytest.mark.parametrize("preset", ["vae_3d", "vae_video"])
def test_state_dict_matches_manifest(manifests_dir, preset):
    manifest = json.loads((manifests_dir / f"upscale_a_video_{preset}.json").read_text())
    model = build_vae(preset)
    ours = [(vae_key_to_upstream(k), list(v.shape)) for k, v in model.state_dict().items()]
    assert ours == [(k, shape) for k, shape, _ in manifest["entries"]]
    assert sum(p.numel() for p in model.parameters()) == manifest["total_params"]


def test_presets_follow_the_release_configs():
    for name in ("vae_3d", "vae_video"):
        p = VAE_PRESETS[name]
        assert (p.block_out_channels, p.layers_per_block, p.latent_channels, p.scaling_factor) == \
            ((128, 256, 512), 2, 4, 0.08333)
    assert not VAE_PRESETS["vae_3d"].temporal_decoder and not VAE_PRESETS["vae_3d"].lr_condition
    assert VAE_PRESETS["vae_video"].temporal_decoder and VAE_PRESETS["vae_video"].lr_condition
    assert VAE_PRESETS["vae_video"].lr_condition_channels == 128


def test_key_map_renames_only_the_attention():
    assert vae_key_to_upstream("decoder.mid_block.attentions.0.to_q.weight") == \
        "decoder.mid_block.attentions.0.query.weight"
    assert vae_key_to_upstream("encoder.mid_block.attentions.0.norm.bias") == \
        "encoder.mid_block.attentions.0.group_norm.bias"
    assert vae_key_to_upstream("decoder.up_blocks.0.resnets.0.norm1.weight") == \
        "decoder.up_blocks.0.resnets.0.norm1.weight"
    for key in build_vae("vae_video").state_dict():
        assert vae_key_from_upstream(vae_key_to_upstream(key)) == key


# -- behaviour (tiny configs) --------------------------------------------------------------------

def test_decode_shapes_and_encode():
    model = _tiny(TINY_3D)
    z = _randn(2, 4, 3, 8, 10)
    with torch.no_grad():
        x = model.decode(z)
        mean, logvar = model.encode(x)
    assert x.shape == (2, 3, 3, 16, 20)
    assert mean.shape == logvar.shape == (2, 4, 3, 8, 10)
    assert logvar.max() <= 20 and logvar.min() >= -30


def test_groupnorm_statistics_span_frames():
    """Decoding two frames alone differs from decoding them inside a longer clip."""
    model = _tiny(TINY_3D)
    z = _randn(1, 4, 4, 8, 8)
    with torch.no_grad():
        whole = model.decode(z)
        alone = model.decode(z[:, :, :2])
        per_frame = torch.cat([model.decode(z[:, :, i:i + 1]) for i in range(4)], dim=2)
    assert (whole[:, :, :2] - alone).abs().max() > 1e-3
    # the 3-D VAE has no temporal layers: one frame at a time only changes the statistics
    assert (whole - per_frame).abs().max() > 1e-3


def test_decode_chunked_is_concatenation_of_windows():
    model = _tiny(TINY_VIDEO)
    z, lr = _randn(1, 4, 5, 8, 8), _randn(1, 3, 5, 8, 8, seed=1).clamp(-1, 1)
    with torch.no_grad():
        chunked = model.decode_chunked(z, lr, 0.7, chunk_frames=2)
        manual = torch.cat([model.decode(z[:, :, s:s + 2], lr[:, :, s:s + 2], 0.7) for s in (0, 2, 4)], dim=2)
        whole = model.decode(z, lr, 0.7)
    torch.testing.assert_close(chunked, manual, rtol=0, atol=0)
    assert (chunked - whole).abs().max() > 1e-3


def test_lr_conditioning():
    video = _tiny(TINY_VIDEO)
    plain = _tiny(TINY_3D)
    z = _randn(1, 4, 2, 8, 8)
    lr1, lr2 = _randn(1, 3, 2, 8, 8, seed=1), _randn(1, 3, 2, 8, 8, seed=2)
    with torch.no_grad():
        # w_lr = 0 removes the LR residual entirely
        torch.testing.assert_close(video.decode(z, lr1, 0.0), video.decode(z, lr2, 0.0), rtol=0, atol=0)
        assert (video.decode(z, lr1, 1.0) - video.decode(z, lr2, 1.0)).abs().max() > 1e-3
        assert (video.decode(z, lr1, 1.0) - video.decode(z, lr1, 0.5)).abs().max() > 1e-3
        # the 3-D VAE ignores the LR frames
        torch.testing.assert_close(plain.decode(z, lr1), plain.decode(z), rtol=0, atol=0)
    with pytest.raises(ValueError, match="LR frames"):
        video.decode(z)
    with pytest.raises(ValueError, match="do not match"):
        video.decode(z, lr1[:, :, :1])


def test_temporal_branch_mixes_frames():
    """vae_video's 3x3x3 convs make a frame's output depend on its neighbours' latents."""
    model = _tiny(TINY_VIDEO)
    z, lr = _randn(1, 4, 3, 8, 8), _randn(1, 3, 3, 8, 8, seed=1)
    z2 = z.clone()
    z2[:, :, 2] += 1.0
    with torch.no_grad():
        a, b = model.decode(z, lr), model.decode(z2, lr)
    assert (a[:, :, 0] - b[:, :, 0]).abs().max() > 1e-3


def test_groupnorm_runs_in_float32_for_half_inputs():
    norm = FrameGroupNorm(2, 4, eps=1e-6)
    x = torch.randn(1, 4, 2, 3, 3) * 300  # squares overflow fp16
    for dtype in (torch.float16, torch.bfloat16):
        out = norm(x.to(dtype))
        assert out.dtype == dtype
        assert torch.isfinite(out.float()).all()
        torch.testing.assert_close(out.float(), norm(x.to(dtype).float()), rtol=1e-2, atol=1e-2)


def test_attention_in_blocks_matches_one_call(monkeypatch):
    import core.models.upscale_a_video.vae as vae_module

    q, k, v = (_randn(3, 1, 50, 8, seed=s) for s in (1, 2, 3))
    ref = torch.nn.functional.scaled_dot_product_attention(q, k, v)
    monkeypatch.setattr(vae_module, "_MAX_SCORES", 700)  # forces per-frame, 14-query blocks
    torch.testing.assert_close(vae_module._attention_in_blocks(q, k, v), ref, rtol=1e-5, atol=1e-6)


def test_bfloat16_decode_close_to_float32():
    model = _tiny(TINY_VIDEO)
    z, lr = _randn(1, 4, 2, 8, 8), _randn(1, 3, 2, 8, 8, seed=1)
    with torch.no_grad():
        ref = model.decode(z, lr)
        out = model.to(torch.bfloat16).decode(z.bfloat16(), lr.bfloat16()).float()
    assert ((out - ref).abs().mean() / ref.abs().mean()) < 0.05


# -- loading -------------------------------------------------------------------------------------

def _upstream_state(model):
    return {vae_key_to_upstream(k): v.clone() for k, v in model.state_dict().items()}


def test_load_round_trip_bin_and_safetensors(tmp_path):
    from safetensors.torch import save_file

    ref = _tiny(TINY_VIDEO)
    state = _upstream_state(ref)
    torch.save(state, tmp_path / "vae.bin")
    save_file(state, str(tmp_path / "vae.safetensors"))
    z, lr = _randn(1, 4, 2, 8, 8), _randn(1, 3, 2, 8, 8, seed=1)
    with torch.no_grad():
        expected = ref.decode(z, lr)
        for name in ("vae.bin", "vae.safetensors"):
            got = load_vae(tmp_path / name, TINY_VIDEO).decode(z, lr)
            torch.testing.assert_close(got, expected, rtol=0, atol=0)
    # the rule value under the upstream name lands on our renamed parameter
    loaded = load_vae(tmp_path / "vae.bin", TINY_VIDEO)
    key = "decoder.mid_block.attentions.0.query.weight"
    torch.testing.assert_close(loaded.decoder.mid_block.attentions[0].to_q.weight, rule_tensor(key, (64, 64)))


def test_load_errors(tmp_path):
    state = _upstream_state(_tiny(TINY_3D))
    missing = dict(state)
    del missing["decoder.mid_block.attentions.0.proj_attn.weight"]
    torch.save(missing, tmp_path / "missing.bin")
    with pytest.raises(CheckpointError, match="1 missing keys: decoder.mid_block.attentions.0.to_out.weight"):
        load_vae(tmp_path / "missing.bin", TINY_3D)
    extra = dict(state, **{"decoder.condition_in.0.conv1.weight": torch.zeros(1)})
    torch.save(extra, tmp_path / "extra.bin")
    with pytest.raises(CheckpointError, match="unexpected keys: decoder.condition_in.0.conv1.weight"):
        load_vae(tmp_path / "extra.bin", TINY_3D)
    wrong = dict(state, **{"post_quant_conv.weight": torch.zeros(4, 4, 3, 3)})
    torch.save(wrong, tmp_path / "wrong.bin")
    with pytest.raises(CheckpointError, match="wrong shape: post_quant_conv.weight"):
        load_vae(tmp_path / "wrong.bin", TINY_3D)
    (tmp_path / "junk.bin").write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="cannot read"):
        load_vae(tmp_path / "junk.bin", TINY_3D)
    with pytest.raises(WeightsMissing, match="absent.bin"):
        load_vae(tmp_path / "absent.bin", TINY_3D)
    with pytest.raises(ValueError, match="unknown VAE preset"):
        load_vae(tmp_path / "missing.bin", "vae_4d")


def test_from_upstream_is_a_pure_rename():
    state = {"decoder.mid_block.attentions.0.value.bias": torch.ones(3), "quant_conv.bias": torch.zeros(2)}
    out = vae_state_dict_from_upstream(state)
    assert set(out) == {"decoder.mid_block.attentions.0.to_v.bias", "quant_conv.bias"}
    assert out["decoder.mid_block.attentions.0.to_v.bias"] is state["decoder.mid_block.attentions.0.value.bias"]


# -- golden decodes with the release architecture (weight rule) ----------------------------------

@pytest.fixture(scope="module")
def golden_inputs(golden_dir):
    d = golden_dir / "upscale_a_video"
    return d, torch.from_numpy(np.load(d / "vae_in_z.npy")), torch.from_numpy(np.load(d / "vae_in_img.npy"))


def _release(preset):
    torch.manual_seed(0)
    model = build_vae(preset)
    fill_with_rule(model, vae_key_to_upstream)
    return model


@pytest.mark.heavy
def test_golden_vae_3d_decode(golden_inputs):
    d, z, img = golden_inputs
    with torch.no_grad():
        out = _release("vae_3d").decode(z, img, 1.0)
    torch.testing.assert_close(out, torch.from_numpy(np.load(d / "vae_3d_decode_out.npy")), rtol=1e-4, atol=2e-4)


@pytest.fixture(scope="module")
def vae_video(golden_inputs):
    return _release("vae_video")


@pytest.mark.heavy
def test_golden_vae_video_decode(golden_inputs, vae_video):
    d, z, img = golden_inputs
    with torch.no_grad():
        out = vae_video.decode(z, img, 1.0)
    torch.testing.assert_close(out, torch.from_numpy(np.load(d / "vae_video_decode_out.npy")), rtol=1e-4, atol=2e-4)


@pytest.mark.heavy
def test_golden_vae_video_decode_w_lr_half(golden_inputs, vae_video):
    d, z, img = golden_inputs
    with torch.no_grad():
        out = vae_video.decode(z, img, 0.5)
    torch.testing.assert_close(out, torch.from_numpy(np.load(d / "vae_video_decode_wlr0.5_out.npy")),
                               rtol=1e-4, atol=2e-4)


@pytest.mark.heavy
def test_golden_vae_video_decode_chunks_of_three(golden_inputs, vae_video):
    """The fixture decodes frames [0:3], [3:6], [6:8]; windows are independent, so decoding
    frames 3..7 in chunks of 3 must reproduce its last two windows (a full one and a short one)."""
    d, z, img = golden_inputs
    with torch.no_grad():
        out = vae_video.decode_chunked(z[:, :, 3:], img[:, :, 3:], 1.0, chunk_frames=3)
    ref = torch.from_numpy(np.load(d / "vae_video_decode_chunk3_out.npy"))[:, :, 3:]
    torch.testing.assert_close(out, ref, rtol=1e-4, atol=2e-4)
