"""Upscale-A-Video text encoder (HF CLIPTextModel layout on the shared CLIP text transformer)."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest
import torch

from core.errors import CheckpointError, WeightsMissing
from core.models.upscale_a_video.text_encoder import (POSITION_IDS_KEY, UAV_TEXT_PARAMS, build_text_encoder,
                                                      text_key_to_upstream, text_state_dict_from_upstream)
from core.models.upscale_a_video.loader import load_text_encoder
from core.models.weight_rule import fill_with_rule

TINY = replace(UAV_TEXT_PARAMS, vocab_size=100, context_length=9, width=32, heads=4, layers=3)


def test_state_dict_matches_manifest(manifests_dir):
    manifest = json.loads((manifests_dir / "upscale_a_video_text_encoder.json").read_text())
    assert UAV_TEXT_PARAMS.layers == 23 and UAV_TEXT_PARAMS.activation == "gelu"
    assert manifest["built_from"]["config"]["hidden_act"] == "gelu"
    model = build_text_encoder()
    ours = {text_key_to_upstream(k): list(v.shape) for k, v in model.state_dict().items()}
    ours[POSITION_IDS_KEY] = [1, UAV_TEXT_PARAMS.context_length]
    assert ours == {k: shape for k, shape, _ in manifest["entries"]}
    assert len(ours) == 373
    assert sum(p.numel() for p in model.parameters()) == manifest["total_params"]


def test_key_map():
    assert text_key_to_upstream("model.transformer.resblocks.22.mlp.c_fc.weight") == \
        "text_model.encoder.layers.22.mlp.fc1.weight"
    assert text_key_to_upstream("model.positional_embedding") == "text_model.embeddings.position_embedding.weight"
    with pytest.raises(KeyError):
        text_key_to_upstream("model.text_projection")
    model = build_text_encoder(params=TINY)
    hf = {text_key_to_upstream(k): v for k, v in model.state_dict().items()}
    assert set(text_state_dict_from_upstream(hf, context_length=TINY.context_length)) == set(model.state_dict())


def _hf_model():
    """A tiny transformers CLIPTextModel with random weights: the layout we must load."""
    from transformers import CLIPTextConfig, CLIPTextModel

    cfg = CLIPTextConfig(vocab_size=TINY.vocab_size, hidden_size=TINY.width, intermediate_size=4 * TINY.width,
                         num_hidden_layers=TINY.layers, num_attention_heads=TINY.heads,
                         max_position_embeddings=TINY.context_length, hidden_act="gelu", layer_norm_eps=1e-5,
                         projection_dim=16, bos_token_id=0, eos_token_id=2, pad_token_id=1)
    torch.manual_seed(0)
    model = CLIPTextModel(cfg).eval()
    with torch.no_grad():  # make the layer norms non-trivial
        for name, p in model.named_parameters():
            if "layer_norm" in name:
                p.add_(0.1 * torch.randn_like(p))
    return model


def test_matches_transformers_clip_text_model(tmp_path):
    hf = _hf_model()
    # transformers >= 5 names the tensors without the `text_model.` level the release has
    state = {k if k.startswith("text_model.") else "text_model." + k: v for k, v in hf.state_dict().items()}
    state[POSITION_IDS_KEY] = torch.arange(TINY.context_length)[None]  # transformers <= 4.30 files
    torch.save(state, tmp_path / "pytorch_model.bin")
    ours = load_text_encoder(tmp_path, params=TINY)
    ids = torch.tensor([[0, 5, 17, 99, 1, 0, 0, 0, 0], [0, 3, 1, 0, 0, 0, 0, 0, 0]])
    with torch.no_grad():
        expected = hf(input_ids=ids).last_hidden_state
        got = ours(ids)
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)


def test_loader_file_choice_and_errors(tmp_path):
    from safetensors.torch import save_file

    hf = _hf_model()
    state = {k: v.contiguous() for k, v in hf.state_dict().items()}  # as transformers >= 5 saves it
    save_file(state, str(tmp_path / "model.safetensors"))
    load_text_encoder(tmp_path, params=TINY)
    load_text_encoder(tmp_path / "model.safetensors", params=TINY)

    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(WeightsMissing, match="no text-encoder weights"):
        load_text_encoder(empty, params=TINY)
    bad_ids = dict(state, **{POSITION_IDS_KEY: torch.arange(TINY.context_length)[None].flip(-1)})
    torch.save(bad_ids, tmp_path / "bad_ids.bin")
    with pytest.raises(CheckpointError, match="position_ids"):
        load_text_encoder(tmp_path / "bad_ids.bin", params=TINY)
    extra = dict(state, **{"text_projection.weight": torch.zeros(16, TINY.width)})
    torch.save(extra, tmp_path / "with_projection.bin")
    with pytest.raises(CheckpointError, match="unexpected keys: text_projection.weight"):
        load_text_encoder(tmp_path / "with_projection.bin", params=TINY)


def test_tokenizer_pads_with_zero():
    ids = build_text_encoder(params=UAV_TEXT_PARAMS).tokenize(["a living room"])
    assert ids.shape == (1, 77)
    assert ids[0, 0] == 49406 and (ids[0] == 49407).sum() == 1 and ids[0, -1] == 0


@pytest.mark.heavy
def test_golden_last_hidden_state(golden_dir):
    d = golden_dir / "upscale_a_video"
    model = build_text_encoder()
    fill_with_rule(model, text_key_to_upstream)
    with torch.no_grad():
        out = model(torch.from_numpy(np.load(d / "text_in_input_ids.npy")))
    torch.testing.assert_close(out, torch.from_numpy(np.load(d / "text_out_last_hidden_state.npy")),
                               rtol=1e-4, atol=1e-4)
