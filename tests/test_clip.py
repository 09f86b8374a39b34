"""Native OpenCLIP towers and the CLIP tokenizer: layout, behaviour, and the CamI2V golden."""

from __future__ import annotations

import gzip
import json

import pytest
import torch
import torch.nn.functional as F

from core.models.clip import (TEXT_PRESETS, VISION_PRESETS, ClipImageEmbedder, ClipTextEncoder, ClipTokenizer,
                              TextTransformer, TextTransformerParams, clean_text, resize_antialiased_bicubic)
from core.models.clip.tokenizer import _byte_alphabet
from core.models.weight_rule import fill_with_rule

SOT, EOT = 49406, 49407


def _manifest_shapes(manifests_dir, prefix):
    manifest = json.loads((manifests_dir / "003_cami2v_512x320.json").read_text())
    shapes = {k[len(prefix):]: tuple(s) for k, s, _ in manifest["entries"] if k.startswith(prefix)}
    return shapes, manifest["parameters_per_top_level_prefix"][prefix.split(".")[0]]


# -- tokenizer -------------------------------------------------------------------------------


def test_default_tokenizer_known_ids_and_framing():
    tok = ClipTokenizer.default()
    ids = tok(["A person riding a motorcycle", ""])
    assert ids.shape == (2, 77) and ids.dtype == torch.long
    assert ids[0, :7].tolist() == [SOT, 320, 2533, 6765, 320, 10297, EOT]
    assert ids[0, 7:].eq(0).all()
    assert ids[1, :3].tolist() == [SOT, EOT, 0]


def test_long_prompt_is_cut_with_eot_last():
    tok = ClipTokenizer.default()
    ids = tok("word " * 200)
    assert ids.shape == (1, 77)
    assert ids[0, 0] == SOT and ids[0, -1] == EOT and ids[0, 1:-1].ne(0).all()
    assert tok("room", context_length=5)[0].tolist() == [SOT, tok.encode("room")[0], EOT, 0, 0]


def test_cleaning_matches_upstream_for_common_text():
    assert clean_text("  Hello\n\tWORLD  ") == "hello world"
    assert clean_text("Tom &amp;amp; Jerry") == "tom & jerry"  # unescaped twice
    assert clean_text("\u201cquoted\u201d it\u2019s") == "\"quoted\" it's"
    assert clean_text("\ufb01ne \uff21\uff22") == "fine ab"
    tok = ClipTokenizer.default()
    assert tok.encode("It\u2019s a  ROOM") == tok.encode("it's a room")


def _tiny_bpe_files(tmp_path):
    alphabet = list(_byte_alphabet().values())
    merges = [("h", "e"), ("l", "l"), ("he", "ll"), ("hell", "o</w>")]
    tokens = alphabet + [a + "</w>" for a in alphabet] + ["".join(m) for m in merges]
    tokens += ["<|startoftext|>", "<|endoftext|>"]
    vocab = {t: i for i, t in enumerate(tokens)}
    (tmp_path / "vocab.json").write_text(json.dumps(vocab))
    (tmp_path / "merges.txt").write_text("#version: 0.2\n" + "\n".join(" ".join(m) for m in merges) + "\n")
    with gzip.open(tmp_path / "bpe.txt.gz", "wt", encoding="utf-8") as f:
        f.write("header\n" + "\n".join(" ".join(m) for m in merges) + "\n")
    return vocab


def test_python_bpe_from_files(tmp_path):
    vocab = _tiny_bpe_files(tmp_path)
    tok = ClipTokenizer.from_files(tmp_path / "vocab.json", tmp_path / "merges.txt")
    # "hello" merges h+e, l+l, he+ll, hell+o</w> -> one token; "help" stops at "he" "l" "p</w>"
    assert tok.encode("Hello") == [vocab["hello</w>"]]
    assert tok.encode("help") == [vocab["he"], vocab["l"], vocab["p</w>"]]
    assert tok.encode("hi, 42") == [vocab["h"], vocab["i</w>"], vocab[",</w>"], vocab["4</w>"], vocab["2</w>"]]
    ids = tok("hello", context_length=4)
    assert ids[0].tolist() == [vocab["<|startoftext|>"], vocab["hello</w>"], vocab["<|endoftext|>"], 0]


def test_python_bpe_openclip_merges_layout(tmp_path):
    _tiny_bpe_files(tmp_path)
    tok = ClipTokenizer.from_openclip_merges(tmp_path / "bpe.txt.gz")
    # OpenAI layout: 256 bytes, 256 bytes + </w>, then one id per merge, then SOT/EOT
    assert tok.encode("hello") == [512 + 3]
    assert (tok.sot_id, tok.eot_id) == (512 + 4, 512 + 5)
    with pytest.raises(Exception, match="missing"):
        ClipTokenizer.from_openclip_merges(tmp_path / "absent.txt.gz")


# -- text tower ------------------------------------------------------------------------------


def _filled(module, prefix):
    fill_with_rule(module, lambda k: prefix + k, device="cpu", dtype=torch.float32)
    return module.eval()


def test_text_encoder_layout_matches_manifest(manifests_dir):
    shapes, count = _manifest_shapes(manifests_dir, "cond_stage_model.")
    with torch.device("meta"):
        enc = ClipTextEncoder(TEXT_PRESETS["openclip-vit-h-14"])
    assert {k: tuple(v.shape) for k, v in enc.state_dict().items()} == shapes
    assert sum(p.numel() for p in enc.parameters()) == count


def test_text_tower_is_causal_and_skips_last_layers():
    with torch.device("meta"):
        enc = ClipTextEncoder(TEXT_PRESETS["tiny"])
    enc = _filled(enc, "t.")
    tok = torch.tensor([[SOT, 320, 2533, EOT, 0]])
    tok2 = tok.clone()
    tok2[0, 3] = 999
    with torch.no_grad():
        a, b = enc(tok), enc(tok2)
    assert a.shape == (1, 5, 32)
    torch.testing.assert_close(a[:, :3], b[:, :3])  # earlier positions never see later tokens
    assert (a[:, 3] - b[:, 3]).abs().max() > 1e-3
    # skip_last_layers=1 equals running the first layers-1 blocks then ln_final
    m = enc.model
    with torch.no_grad():
        x = m.token_embedding(tok) + m.positional_embedding
        for blk in m.transformer.resblocks[:-1]:
            x = blk(x, causal=True)
        torch.testing.assert_close(a, m.ln_final(x))
    assert enc.encode(["a room", "a hall"]).shape == (2, 5, 32)


def test_separate_qkv_layout_equals_fused():
    p = TextTransformerParams(context_length=6, width=32, heads=4, layers=2, skip_last_layers=0,
                              projection_dim=None, activation="quick_gelu")
    fused = _filled(TextTransformer(p), "f.")
    sep = TextTransformer(TextTransformerParams(**{**p.__dict__, "qkv_layout": "separate"}))
    sd = {}
    for k, v in fused.state_dict().items():
        if k.endswith("attn.in_proj_weight") or k.endswith("attn.in_proj_bias"):
            base, kind = k.rsplit(".in_proj_", 1)
            for name, part in zip(("q_proj", "k_proj", "v_proj"), v.chunk(3)):
                sd[f"{base}.{name}.{kind}"] = part
        else:
            sd[k] = v
    sep.load_state_dict(sd, strict=True)
    tok = torch.randint(0, 49408, (2, 6))
    with torch.no_grad():
        torch.testing.assert_close(sep(tok), fused(tok))
    assert not hasattr(sep, "text_projection")


# -- image tower -----------------------------------------------------------------------------


def test_image_embedder_layout_matches_manifest(manifests_dir):
    shapes, count = _manifest_shapes(manifests_dir, "embedder.")
    with torch.device("meta"):
        emb = ClipImageEmbedder(VISION_PRESETS["openclip-vit-h-14"])
    assert {k: tuple(v.shape) for k, v in emb.state_dict().items()} == shapes
    assert sum(p.numel() for p in emb.parameters()) == count
    assert len(list(emb.buffers())) == 0


def test_resize_behaviour():
    x = torch.rand(1, 3, 40, 64)
    out = resize_antialiased_bicubic(x, (22, 22))
    assert out.shape == (1, 3, 22, 22)
    const = resize_antialiased_bicubic(torch.full((1, 3, 50, 70), 0.3), (22, 22))
    torch.testing.assert_close(const, torch.full_like(const, 0.3))
    # upscaling: no blur, plain bicubic with aligned corners
    small = torch.rand(1, 3, 10, 12)
    torch.testing.assert_close(resize_antialiased_bicubic(small, (20, 24)),
                               F.interpolate(small, (20, 24), mode="bicubic", align_corners=True))
    # shrinking blurs first: differs from plain bicubic
    assert (out - F.interpolate(x, (22, 22), mode="bicubic", align_corners=True)).abs().max() > 1e-3


def test_resize_matches_kornia_when_installed():
    kornia = pytest.importorskip("kornia")
    x = torch.rand(2, 3, 320, 512) * 2 - 1
    ref = kornia.geometry.resize(x, (224, 224), interpolation="bicubic", align_corners=True, antialias=True)
    torch.testing.assert_close(resize_antialiased_bicubic(x, (224, 224)), ref, rtol=1e-5, atol=1e-5)


def test_tiny_image_embedder_shapes_and_grey_image():
    with torch.device("meta"):
        emb = ClipImageEmbedder(VISION_PRESETS["tiny"])
    emb = _filled(emb, "e.")
    img = torch.rand(2, 3, 40, 64) * 2 - 1
    with torch.no_grad():
        out = emb(img)
        grey = emb(torch.zeros(1, 3, 40, 64))
    assert out.shape == (2, 17, 48)
    pre = emb.preprocess(torch.zeros(1, 3, 8, 8))
    expected = (0.5 - torch.tensor([0.48145466, 0.4578275, 0.40821073])) / torch.tensor([0.26862954, 0.26130258, 0.27577711])
    torch.testing.assert_close(pre[0, :, 0, 0], expected)
    assert torch.isfinite(grey).all()


# -- golden ------------------------------------------------------------------------------------


@pytest.mark.heavy
def test_golden_text_encoder(golden_dir):
    """Caption (with the demo suffix, as recorded), the empty prompt and the negative prompt."""
    g = golden_dir / "cami2v512"
    inter = torch.load(g / "sampling_intermediates.pt", weights_only=False)
    inputs = torch.load(g / "sampling_inputs.pt", weights_only=False)
    with torch.device("meta"):
        enc = ClipTextEncoder(TEXT_PRESETS["openclip-vit-h-14"])
    enc = _filled(enc, "cond_stage_model.")
    prompts = [inputs["caption_full"], "", inputs["negative_prompt"]]
    assert inputs["caption_full"].endswith("detailed fur, smooth motion")
    out = enc.encode(prompts)
    for i in range(3):
        torch.testing.assert_close(out[i:i + 1], inter["learned_conditioning"][i], rtol=1e-4, atol=1e-4)


@pytest.mark.heavy
def test_golden_image_embedder(golden_dir):
    """The photo and the all-zero (grey) image of the unconditional branch."""
    g = golden_dir / "cami2v512"
    inter = torch.load(g / "sampling_intermediates.pt", weights_only=False)
    inputs = torch.load(g / "sampling_inputs.pt", weights_only=False)
    image = inputs["batch"]["video_first_frame"][:, :, 0]
    with torch.device("meta"):
        emb = ClipImageEmbedder(VISION_PRESETS["openclip-vit-h-14"])
    emb = _filled(emb, "embedder.")
    with torch.no_grad():
        out = emb(torch.cat([image, torch.zeros_like(image)]))
    for i in range(2):
        torch.testing.assert_close(out[i:i + 1], inter["embedder_out"][i], rtol=1e-4, atol=2e-4)


def test_optional_tokenizer_prefers_vocab_files(tmp_path):
    from core.models.clip.tokenizer import optional_tokenizer

    vocab = _tiny_bpe_files(tmp_path)
    assert optional_tokenizer(tmp_path).encode("hello") == [vocab["hello</w>"]]
    assert optional_tokenizer(tmp_path / "absent").source == "instant-clip-tokenizer"
    assert optional_tokenizer(None).encode("hello") == ClipTokenizer.default().encode("hello")
