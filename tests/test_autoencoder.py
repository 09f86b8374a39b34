"""KL-f8 VAE: layout against the upstream manifest, tiny-config behaviour, and the CamI2V golden."""

from __future__ import annotations

import json

import pytest
import torch

from core.models.autoencoder import AUTOENCODER_PRESETS, AutoencoderKL, AutoencoderParams
from core.models.weight_rule import fill_with_rule

PREFIX = "first_stage_model."


def _tiny(seed_prefix: str = "") -> AutoencoderKL:
    with torch.device("meta"):
        vae = AutoencoderKL(AUTOENCODER_PRESETS["tiny"])
    fill_with_rule(vae, lambda k: seed_prefix + PREFIX + k, device="cpu", dtype=torch.float32)
    return vae.eval()


def test_state_dict_matches_upstream_manifest(manifests_dir):
    manifest = json.loads((manifests_dir / "003_cami2v_512x320.json").read_text())
    ref = {k[len(PREFIX):]: tuple(s) for k, s, _ in manifest["entries"] if k.startswith(PREFIX)}
    with torch.device("meta"):
        vae = AutoencoderKL(AUTOENCODER_PRESETS["kl-f8"])
    ours = {k: tuple(v.shape) for k, v in vae.state_dict().items()}
    assert ours == ref
    assert sum(p.numel() for p in vae.parameters()) == manifest["parameters_per_top_level_prefix"]["first_stage_model"]


def test_params_validation():
    with pytest.raises(ValueError):
        AutoencoderParams(base_channels=48)
    assert AUTOENCODER_PRESETS["kl-f8"].downscale == 8


def test_video_round_trip_shapes_and_chunk_independence():
    vae = _tiny()
    video = torch.rand(2, 3, 3, 16, 24) * 2 - 1
    g = torch.Generator().manual_seed(5)
    z1 = vae.encode_video(video, generator=g, chunk=1)
    z4 = vae.encode_video(video, generator=torch.Generator().manual_seed(5), chunk=4)
    assert z1.shape == (2, 4, 3, 2, 3)
    torch.testing.assert_close(z1, z4, rtol=1e-5, atol=1e-5)
    # a different seed gives a different posterior sample
    z_other = vae.encode_video(video, generator=torch.Generator().manual_seed(6))
    assert (z_other - z1).abs().max() > 1e-3
    x1 = vae.decode_video(z1, chunk=1)
    x5 = vae.decode_video(z1, chunk=5)
    assert x1.shape == (2, 3, 3, 16, 24)
    torch.testing.assert_close(x1, x5, rtol=1e-5, atol=1e-5)


def test_injected_noise_is_mean_plus_std_times_noise():
    vae = _tiny()
    video = torch.rand(1, 3, 2, 16, 16) * 2 - 1
    noise = torch.randn(1, 4, 2, 2, 2)
    z = vae.encode_video(video, noise=noise)
    post = vae.encode_posterior(video[:, :, 1])
    expected = vae.scale_factor * (post.mean + post.std * noise[:, :, 1])
    torch.testing.assert_close(z[:, :, 1], expected)
    mode = vae.encode_video(video, sample=False)
    torch.testing.assert_close(mode[:, :, 0], vae.scale_factor * vae.encode_posterior(video[:, :, 0]).mean)
    assert post.logvar.max() <= 20.0 and post.logvar.min() >= -30.0


def test_decode_progress_hook_and_bf16():
    vae = _tiny()
    z = torch.randn(1, 4, 3, 4, 4)
    seen = []
    ref = vae.decode_video(z, chunk=2, on_chunk=lambda done, total: seen.append((done, total)))
    assert seen == [(2, 3), (3, 3)]
    half = _tiny().to(torch.bfloat16)
    out = half.decode_video(z.to(torch.bfloat16), chunk=3)
    assert out.dtype == torch.bfloat16 and torch.isfinite(out.float()).all()
    assert (out.float() - ref).abs().max() < 0.1 * ref.abs().max()


def test_meta_build_is_cheap():
    with torch.device("meta"):
        vae = AutoencoderKL(AUTOENCODER_PRESETS["kl-f8"])
    assert all(p.is_meta for p in vae.parameters())


@pytest.mark.heavy
def test_golden_encode_and_decode(golden_dir):
    """Encode with the recorded posterior draws, decode the recorded final latent (frame 0)."""
    golden_dir = golden_dir / "cami2v512"
    inter = torch.load(golden_dir / "sampling_intermediates.pt", weights_only=False)
    inputs = torch.load(golden_dir / "sampling_inputs.pt", weights_only=False)
    draws = [d for _, d in torch.load(golden_dir / "sampling_random_draws.pt", weights_only=False)["random_draws_in_order"]]
    out_video = torch.load(golden_dir / "sampling_output_video_stride4.pt", weights_only=False)["samples_raw_stride4"]
    with torch.device("meta"):
        vae = AutoencoderKL(AUTOENCODER_PRESETS["kl-f8"])
    fill_with_rule(vae, lambda k: PREFIX + k, device="cpu", dtype=torch.float32)
    image = inputs["batch"]["video_first_frame"]  # (1, 3, 1, 320, 512); all 16 frames are this image
    ref = inter["encode_first_stage_z"]  # (1, 4, 16, 40, 64), 16 posterior draws in frame order

    with torch.no_grad():
        z0 = vae.encode_video(image, noise=draws[0][:, :, None])
        post = vae.encode_posterior(image[:, :, 0])
    torch.testing.assert_close(z0[:, :, 0], ref[:, :, 0], rtol=1e-4, atol=1e-5)
    noise = torch.stack(draws[:16], dim=2)
    z_all = vae.scale_factor * (post.mean[:, :, None] + post.std[:, :, None] * noise)
    torch.testing.assert_close(z_all, ref, rtol=1e-4, atol=1e-5)

    final_latent = inter["ddim_steps"][1]["x_prev"]
    with torch.no_grad():
        decoded = vae.decode_video(final_latent[:, :, :1])
    torch.testing.assert_close(decoded[..., ::4, ::4], out_video[:, :, :1], rtol=1e-4, atol=1e-4)
