"""Our model layouts against the upstream state-dict manifests: every key, shape and dtype, in
upstream order, for every released CamI2V-family model; plus the key map's round trip and the
`python -m core.models inspect` command."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest

from core.models.cami2v import inspect_entries, keymap
from core.models.cami2v.config import get_preset
from core.models.cami2v.model import build_meta

MANIFESTS = {
    "003_cami2v_512x320.json": "cami2v-512",
    "003_cami2v_256x256.json": "cami2v-256",
    "002_cameractrl_256x256.json": "cameractrl-256",
    "001_motionctrl_256x256.json": "motionctrl-256",
}


def _manifest(manifests_dir, filename):
    return json.loads((manifests_dir / filename).read_text())


def test_every_cami2v_manifest_is_covered(manifests_dir):
    found = sorted(p.name for p in manifests_dir.glob("00*_*.json"))
    assert found == sorted(MANIFESTS)


@pytest.mark.parametrize("filename", sorted(MANIFESTS))
def test_inspect_equals_manifest(manifests_dir, filename):
    manifest = _manifest(manifests_dir, filename)
    ours = [[key, list(shape), dtype] for key, shape, dtype in inspect_entries(MANIFESTS[filename])]
    expected = manifest["entries"]
    assert len(ours) == len(expected) == manifest["num_keys"]
    for i, (a, b) in enumerate(zip(ours, expected)):
        assert a == b, f"entry {i}: ours {a} != upstream {b}"
    # parameter totals as upstream counted them (buffers excluded)
    model = build_meta(MANIFESTS[filename])
    assert sum(p.numel() for p in model.parameters()) == manifest["total_parameters"]
    assert sum(1 for _ in model.buffers()) == manifest["num_buffer_keys"]


@pytest.mark.parametrize("filename", sorted(MANIFESTS))
def test_keymap_round_trip(manifests_dir, filename):
    keys = [e[0] for e in _manifest(manifests_dir, filename)["entries"]]
    ours = [keymap.to_ours(k) for k in keys]
    assert len(set(ours)) == len(keys)
    assert [keymap.to_upstream(k) for k in ours] == keys
    # and ours is exactly our module's state dict
    assert set(ours) == set(build_meta(MANIFESTS[filename]).state_dict())


def test_keymap_renames():
    assert keymap.to_ours("model.diffusion_model.input_blocks.1.0.temopral_conv.conv1.0.weight") == \
        "unet.input_blocks.1.0.temporal_conv.conv1.0.weight"
    assert keymap.to_ours("model.diffusion_model.output_blocks.3.2.transformer_blocks.0.pluker_projection.bias") == \
        "unet.output_blocks.3.2.transformer_blocks.0.plucker_projection.bias"
    assert keymap.to_ours("model.diffusion_model.middle_block.2.transformer_blocks.0.epipolar.epipolar_attn.register_tokens") == \
        "unet.middle_block.2.transformer_blocks.0.epipolar.register_tokens"
    assert keymap.to_ours("model.diffusion_model.init_attn.0.proj_in.weight") == "unet.init_attn.proj_in.weight"
    assert keymap.to_ours("pose_encoder.encoder_down_attention_blocks.2.1.attention_blocks.0.pos_encoder.pe") == \
        "pose_encoder.encoder_down_attention_blocks.2.1.attn.pos_encoder.pe"
    assert keymap.to_ours("pose_encoder.encoder_down_attention_blocks.0.0.norms.0.weight") == \
        "pose_encoder.encoder_down_attention_blocks.0.0.norm.weight"
    assert keymap.to_ours("cond_stage_model.model.ln_final.bias") == "text_encoder.model.ln_final.bias"
    assert keymap.to_ours("scale_arr") == "scale_arr"
    assert keymap.normalize_upstream_key("model.diffusion_model.framestride_embed.2.bias") == \
        "model.diffusion_model.fps_embedding.2.bias"
    with pytest.raises(KeyError):
        keymap.to_ours("lvlb_weights_or_anything_else.weight")
    with pytest.raises(KeyError):
        keymap.to_upstream("nothing.weight")


def test_presets_are_consistent():
    for name in ("cami2v-512", "cami2v-256", "cameractrl-256", "motionctrl-256"):
        p = get_preset(name)
        assert p.base is not None and get_preset(p.base).camera == "none"
        assert p.latent_size == ((40, 64) if name.endswith("512") else (32, 32))
    assert get_preset("cami2v-512").diffusion.parameterization == "v"
    assert get_preset("cami2v-256").unet.learnable_image_scale
    with pytest.raises(ValueError, match="known"):
        get_preset("cami2v-1024")


def test_inspect_cli_json_matches_manifest(manifests_dir, repo_root):
    env = dict(os.environ, PYTHONPATH=str(repo_root))
    start = time.perf_counter()
    out = subprocess.run([sys.executable, "-m", "core.models", "inspect", "cami2v-512", "--json"],
                         cwd=repo_root, env=env, capture_output=True, text=True, timeout=300)
    elapsed = time.perf_counter() - start
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout) == {"entries": _manifest(manifests_dir, "003_cami2v_512x320.json")["entries"]}
    print(f"inspect cami2v-512 --json (subprocess, incl. imports): {elapsed:.2f} s")
    bad = subprocess.run([sys.executable, "-m", "core.models", "inspect", "nope"], cwd=repo_root, env=env,
                         capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and "known:" in bad.stderr
