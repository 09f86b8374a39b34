"""Perceiver resampler: layout, per-frame token structure, and the CamI2V golden."""

from __future__ import annotations

import json

import torch

from core.models.resampler import RESAMPLER_PRESETS, Resampler
from core.models.weight_rule import fill_with_rule

PREFIX = "image_proj_model."


def _build(preset: str) -> Resampler:
    with torch.device("meta"):
        r = Resampler(RESAMPLER_PRESETS[preset])
    fill_with_rule(r, lambda k: PREFIX + k, device="cpu", dtype=torch.float32)
    return r.eval()


def test_layout_matches_manifest(manifests_dir):
    manifest = json.loads((manifests_dir / "003_cami2v_512x320.json").read_text())
    ref = {k[len(PREFIX):]: tuple(s) for k, s, _ in manifest["entries"] if k.startswith(PREFIX)}
    with torch.device("meta"):
        r = Resampler(RESAMPLER_PRESETS["dynamicrafter"])
    assert {k: tuple(v.shape) for k, v in r.state_dict().items()} == ref
    assert r.params.total_queries == 256


def test_tiny_shapes_batch_independence_and_bf16():
    r = _build("tiny")
    x = torch.randn(3, 17, 48)
    with torch.no_grad():
        out = r(x)
        single = r(x[1:2])
    assert out.shape == (3, 8, 32)  # 2 queries per frame x 4 frames
    torch.testing.assert_close(out[1:2], single, rtol=1e-5, atol=1e-5)
    # every output token depends on the image tokens
    with torch.no_grad():
        moved = r(x + 0.5)
    assert ((moved - out).abs().amax(dim=-1) > 1e-4).all()
    half = _build("tiny").to(torch.bfloat16)
    with torch.no_grad():
        hb = half(x.to(torch.bfloat16))
    assert hb.dtype == torch.bfloat16
    assert (hb.float() - out).abs().max() < 0.1


def test_golden_image_proj(golden_dir):
    inter = torch.load(golden_dir / "cami2v512" / "sampling_intermediates.pt", weights_only=False)
    r = _build("dynamicrafter")
    with torch.no_grad():
        for tokens, ref in zip(inter["embedder_out"], inter["image_proj_out"]):
            torch.testing.assert_close(r(tokens), ref, rtol=1e-4, atol=1e-4)
