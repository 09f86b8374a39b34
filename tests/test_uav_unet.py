"""The Upscale-A-Video video UNet: release layout, building blocks, strict loading, golden outputs."""

from __future__ import annotations

import json
import math
import re

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from core.errors import CheckpointError, ConfigError
from core.models.upscale_a_video import unet as U
from core.models.upscale_a_video import unet_blocks as B
from core.models.upscale_a_video.loader import check_unet_config, load_unet
from core.models.upscale_a_video.unet import build_unet, to_upstream_key
from core.models.upscale_a_video.unet_blocks import TemporalRope, group_norm, relative_position_buckets

# The release's configs/unet_video_config.json (values as listed in the manifest notes).
RELEASE_CONFIG = {
    "_class_name": "UNetVideoModel", "act_fn": "silu", "attention_head_dim": 8,
    "block_out_channels": [256, 512, 512, 1024], "center_input_sample": False, "cross_attention_dim": 1024,
    "down_block_types": ["DownBlock3D", "CrossAttnDownBlock3D", "CrossAttnDownBlock3D", "CrossAttnDownBlock3D"],
    "downsample_padding": 1, "dual_cross_attention": False, "flip_sin_to_cos": True, "freq_shift": 0,
    "in_channels": 7, "layers_per_block": 2, "mid_block_scale_factor": 1, "norm_eps": 1e-05, "norm_num_groups": 32,
    "num_class_embeds": 1000, "only_cross_attention": [True, True, True, False], "out_channels": 4,
    "sample_size": 128, "up_block_types": ["CrossAttnUpBlock3D", "CrossAttnUpBlock3D", "CrossAttnUpBlock3D", "UpBlock3D"],
    "use_linear_projection": True, "down_temporal_idx": [0, 1, 2, 3], "mid_temporal": True,
    "up_temporal_idx": [0, 1, 2, 3], "temporal_module_config": {"attention_block_types": ["", ""]},
}


@pytest.fixture(autouse=True)
def _one_thread_for_tiny_models(request):
    """Tiny models are dominated by per-op overhead, where a second thread only adds contention."""
    if "heavy" in request.keywords:
        yield
        return
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def _tiny(seed: int = 0) -> U.UNetVideo:
    torch.manual_seed(seed)
    model = build_unet("tiny", device="cpu").eval()
    with torch.no_grad():  # randomise the zero-initialised biases/embeddings so every path matters
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return model


def _tiny_inputs(b=1, t=4, h=12, w=20, seed=1):
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(b, 4, t, h, w, generator=g), torch.tensor([500] * b),
            torch.randn(b, 3, t, h, w, generator=g), torch.randn(b, 77, 32, generator=g), torch.tensor([120] * b))


# -- release layout ---------------------------------------------------------------------------------

def test_state_dict_is_the_release_layout(manifests_dir):
    manifest = json.loads((manifests_dir / "upscale_a_video_unet.json").read_text())
    model = build_unet()  # meta device: no memory
    ours = [(to_upstream_key(k), list(v.shape)) for k, v in model.state_dict().items()]
    ref = [(k, shape) for k, shape, _ in manifest["entries"]]
    assert len(ours) == manifest["state_dict_entries"] == 1158
    assert {k for k, _ in ours} == {k for k, _ in ref}
    assert ours == ref  # same keys, shapes and order
    # the 17 RoPE keys are one tensor here, as upstream
    values = model.state_dict(keep_vars=True)
    group = manifest["alias_groups"][0]
    ours_by_up = {to_upstream_key(k): v for k, v in values.items()}
    assert len(group) == 17 and all(ours_by_up[k] is ours_by_up[group[0]] for k in group)
    n_params = sum(p.numel() for p in model.parameters())
    assert n_params + model.rope.freqs.numel() == manifest["total_params"]


def test_key_map_is_injective_and_every_rule_is_used():
    keys = list(build_unet().state_dict().keys())
    mapped = [to_upstream_key(k) for k in keys]
    assert len(set(mapped)) == len(mapped)
    for pattern, _ in U._KEY_RULES:
        assert any(re.search(pattern, k) for k in keys), pattern
    assert to_upstream_key("down_blocks.1.attentions.0.block.ff.proj_in.weight") == \
        "down_blocks.1.attentions.0.transformer_blocks.0.ff.net.0.proj.weight"


def test_release_config_matches_the_preset(tmp_path):
    path = tmp_path / "unet_video_config.json"
    path.write_text(json.dumps(RELEASE_CONFIG))
    check_unet_config(path)
    path.write_text(json.dumps({**RELEASE_CONFIG, "block_out_channels": [320, 640, 1280, 1280]}))
    with pytest.raises(ConfigError, match="block_out_channels"):
        check_unet_config(path)
    path.write_text(json.dumps({**RELEASE_CONFIG, "temporal_module_config": {"attention_block_types": ["Temporal_Self", ""]}}))
    with pytest.raises(ConfigError, match="attention_block_types"):
        check_unet_config(path)


# -- building blocks --------------------------------------------------------------------------------

def test_group_norm_pools_statistics_over_frames():
    g = torch.Generator().manual_seed(0)
    b, c, t, h, w = 2, 16, 3, 5, 7
    x5 = torch.randn(b, c, t, h, w, generator=g) * 3 + torch.arange(t).view(1, 1, t, 1, 1)
    weight, bias = torch.randn(c, generator=g), torch.randn(c, generator=g)
    folded = B.fold_frames(x5)
    pooled = B.unfold_frames(group_norm(folded, 4, weight, bias, 1e-6, frames=t), t)
    torch.testing.assert_close(pooled, F.group_norm(x5, 4, weight, bias, 1e-6), rtol=1e-5, atol=1e-5)
    per_frame = B.unfold_frames(group_norm(folded, 4, weight, bias, 1e-6, frames=1), t)
    ref = F.group_norm(x5.transpose(1, 2).reshape(b * t, c, h, w), 4, weight, bias, 1e-6)
    torch.testing.assert_close(per_frame, ref.reshape(b, t, c, h, w).transpose(1, 2), rtol=1e-5, atol=1e-5)
    assert (pooled - per_frame).abs().max() > 0.1  # the two really differ on this input


def test_group_norm_keeps_half_precision_inputs_accurate():
    g = torch.Generator().manual_seed(1)
    x = (torch.randn(4, 32, 9, 9, generator=g) * 0.05 + 40.0)  # large mean, small spread
    weight, bias = torch.ones(32), torch.zeros(32)
    ref = group_norm(x, 8, weight, bias, 1e-6, frames=2)
    out = group_norm(x.to(torch.bfloat16), 8, weight.bfloat16(), bias.bfloat16(), 1e-6, frames=2)
    assert out.dtype == torch.bfloat16
    # bf16 rounds 40 + 0.05 z to steps of 0.25, so compare with the same rounding of the input
    ref_rounded = group_norm(x.to(torch.bfloat16).float(), 8, weight, bias, 1e-6, frames=2)
    torch.testing.assert_close(out.float(), ref_rounded, rtol=0.02, atol=0.02)
    assert ref.std() > 0.9


def test_rope_rotates_interleaved_pairs_of_the_first_channels():
    rope = TemporalRope(8, 10000.0)
    g = torch.Generator().manual_seed(2)
    x = torch.randn(3, 2, 5, 12, generator=g)  # (batch, heads, frames, head_dim)
    out = rope(x)
    torch.testing.assert_close(out[..., 8:], x[..., 8:])  # channels past the rotary dim pass through
    pairs = torch.view_as_complex(x[..., :8].reshape(3, 2, 5, 4, 2).contiguous())
    angle = torch.arange(5.0)[:, None] * (1.0 / 10000 ** (torch.arange(0, 8, 2) / 8.0))[None]
    rotated = torch.view_as_real(pairs * torch.polar(torch.ones_like(angle), angle)).reshape(3, 2, 5, 8)
    torch.testing.assert_close(out[..., :8], rotated, rtol=1e-5, atol=1e-6)
    # attention scores depend on relative positions only
    q = k = rope(x)
    shifted = torch.cat([torch.zeros(3, 2, 2, 12), x], dim=2)
    s1 = q[..., 1, :] @ k[..., 3, :].transpose(-1, -2)
    s2 = rope(shifted)[..., 3, :] @ rope(shifted)[..., 5, :].transpose(-1, -2)
    torch.testing.assert_close(s1, s2, rtol=1e-4, atol=1e-5)


def test_relative_position_buckets_are_t5_bidirectional():
    buckets = relative_position_buckets(40, 32, 32)

    def expected(i, j):
        n = i - j
        out = 16 if n < 0 else 0
        n = abs(n)
        if n < 8:
            return out + n
        return out + min(8 + int(math.log(n / 8) / math.log(32 / 8) * 8), 15)

    for i in range(40):
        for j in range(40):
            assert buckets[i, j] == expected(i, j), (i, j)
    assert buckets[7, 0] == 7 and buckets[0, 7] == 23 and buckets[39, 0] == 15


def test_tiny_unet_shapes_determinism_and_frame_mixing():
    model = _tiny()
    x, t, lr, ctx, lvl = _tiny_inputs(b=2, t=4, h=12, w=20)  # 12x20 is not a multiple of 8
    with torch.no_grad():
        out = model(x, t, lr, ctx, lvl)
        again = model(x, t, lr, ctx, lvl)
        first_two = model(x[:, :, :2], t, lr[:, :, :2], ctx, lvl)
        other_level = model(x, t, lr, ctx, torch.tensor([121, 121]))
    assert out.shape == (2, 4, 4, 12, 20) and out.dtype == torch.float32 and out.is_contiguous()
    assert torch.equal(out, again)
    # frames interact (temporal layers, pooled GroupNorm): a shorter window changes the result
    assert (out[:, :, :2] - first_two).abs().max() > 1e-3
    # the noise level is a class label that changes the output
    assert (out - other_level).abs().max() > 1e-4
    # batch items are independent
    with torch.no_grad():
        single = model(x[:1], t[:1], lr[:1], ctx[:1], lvl[:1])
    torch.testing.assert_close(single, out[:1], rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_tiny_unet_runs_in_half_precision(dtype):
    model = _tiny()
    x, t, lr, ctx, lvl = _tiny_inputs()
    with torch.no_grad():
        ref = model(x, t, lr, ctx, lvl)
        model.to(dtype)
        out = model(x, t, lr, ctx, lvl)
    assert out.dtype == dtype and torch.isfinite(out.float()).all()
    assert (out.float() - ref).abs().max() < 0.1 * ref.abs().max()


def test_unet_refuses_a_noise_level_above_the_maximum():
    model = _tiny()
    x, t, lr, ctx, _ = _tiny_inputs()
    with pytest.raises(ValueError, match="noise level"):
        model(x, t, lr, ctx, torch.tensor([351]))


# -- strict loading -----------------------------------------------------------------------------

def _save_release_layout(model: U.UNetVideo, path):
    state = {to_upstream_key(k): v.clone() for k, v in model.state_dict().items()}
    torch.save(state, path)
    return state


def test_load_unet_round_trip_from_the_release_layout(tmp_path):
    model = _tiny()
    path = tmp_path / "unet_video.bin"
    state = _save_release_layout(model, path)
    n_attn = sum(isinstance(m, B.TemporalAttention) for m in model.modules())
    assert sum(k.endswith("rotary_emb.freqs") for k in state) == n_attn + 1  # one per block + the top level
    loaded = load_unet(path, "tiny")
    x, t, lr, ctx, lvl = _tiny_inputs()
    with torch.no_grad():
        torch.testing.assert_close(loaded(x, t, lr, ctx, lvl), model(x, t, lr, ctx, lvl), rtol=1e-4, atol=1e-5)
    half = load_unet(path, "tiny", dtype=torch.bfloat16)
    assert half.conv_in.weight.dtype == torch.bfloat16 and half.rope.freqs.dtype == torch.float32


def test_load_unet_names_missing_unexpected_and_misshaped_keys(tmp_path):
    model = _tiny()
    state = {to_upstream_key(k): v for k, v in model.state_dict().items()}
    path = tmp_path / "bad.bin"

    broken = dict(state)
    del broken["mid_block.attentions.0.transformer_blocks.0.attn_temporal.to_q.weight"]
    broken["mid_block.attentions.0.transformer_blocks.0.attn_temporal.extra.weight"] = torch.zeros(1)
    torch.save(broken, path)
    with pytest.raises(CheckpointError) as err:
        load_unet(path, "tiny")
    msg = str(err.value)
    assert "1 missing" in msg and "mid_block.attentions.0.block.attn_temporal.to_q.weight" in msg
    assert "1 unexpected" in msg and "attn_temporal.extra.weight" in msg

    misshaped = dict(state)
    misshaped["conv_in.weight"] = torch.zeros(32, 8, 3, 3)
    torch.save(misshaped, path)
    with pytest.raises(CheckpointError, match="conv_in.weight"):
        load_unet(path, "tiny")

    no_rope = {k: v for k, v in state.items() if not k.endswith("rotary_emb.freqs")}
    torch.save(no_rope, path)
    with pytest.raises(CheckpointError, match="missing"):
        load_unet(path, "tiny")


# -- the released architecture against the upstream golden outputs --------------------------------

@pytest.fixture(scope="module")
def rule_unet():
    """The full 691M-parameter UNet with the fixtures' weight rule, float32 on the CPU (2.8 GB)."""
    from core.models.weight_rule import fill_with_rule

    torch.set_num_threads(2)
    model = build_unet()
    fill_with_rule(model, to_upstream_key, device="cpu", dtype=torch.float32)
    model.reset_buffers("cpu")  # RoPE frequencies are exempt from the rule
    yield model.eval()
    del model


def _golden(golden_dir, name):
    return torch.from_numpy(np.load(golden_dir / "upscale_a_video" / name))


@pytest.mark.heavy
@pytest.mark.parametrize("frames,name", [(8, "unet_out.npy"), (4, "unet_out_first4frames.npy")])
def test_unet_matches_upstream_golden(rule_unet, golden_dir, frames, name):
    x = _golden(golden_dir, "unet_in_sample.npy")[:, :, :frames]
    lr = _golden(golden_dir, "unet_in_low_res.npy")[:, :, :frames]
    ctx = _golden(golden_dir, "unet_in_encoder_hidden_states.npy")
    t = _golden(golden_dir, "unet_in_timestep.npy")
    level = _golden(golden_dir, "unet_in_class_labels.npy")
    torch.testing.assert_close(rule_unet.rope.freqs, 1.0 / 10000 ** (torch.arange(0, 32, 2) / 32.0))
    with torch.no_grad():
        out = rule_unet(x, t, lr, ctx, level)
    ref = _golden(golden_dir, name)
    assert out.shape == ref.shape
    err = (out - ref).abs().max().item()
    assert err <= 1e-4 * ref.abs().max().item(), err
