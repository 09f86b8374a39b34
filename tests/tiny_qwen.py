"""Build a tiny, random-weight Qwen2-VL model folder offline (no hub, no torchvision).

The folder has the same layout as a real `Qwen/Qwen2-VL-*-Instruct` snapshot (config.json,
model.safetensors, generation_config.json, tokenizer files, preprocessor_config.json,
chat_template.jinja), so `core.captioner` loads it through exactly the code path it uses for
the released weights. The output text is random bytes, but it is deterministic.

Used by the test suite (a session fixture) and by the dashboard's browser test:

    python tests/tiny_qwen.py OUTDIR          # writes OUTDIR and prints its path
"""

from __future__ import annotations

import sys
from pathlib import Path

# Enough of Qwen's chat format for one user turn with images or videos: the real template adds
# a default system prompt and tool calls, which a random model does not need.
CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}"
    "{% else %}{% for part in message['content'] %}"
    "{% if part['type'] == 'image' %}<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif part['type'] == 'video' %}<|vision_start|><|video_pad|><|vision_end|>"
    "{% elif part['type'] == 'text' %}{{ part['text'] }}{% endif %}"
    "{% endfor %}{% endif %}"
    "<|im_end|>\n"
    "{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)

# Qwen's special tokens in their released order; after the 256 byte symbols they get ids 256..262.
SPECIAL_TOKENS = (
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<|vision_start|>",
    "<|vision_end|>",
    "<|image_pad|>",
    "<|video_pad|>",
)
VOCAB_SIZE = 256 + len(SPECIAL_TOKENS)


def build_tokenizer():
    """A byte-level BPE tokenizer with no merges: every byte is one token, plus Qwen's specials."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    alphabet = sorted(pre_tokenizers.ByteLevel.alphabet())
    vocab = {ch: i for i, ch in enumerate(alphabet)}
    tok = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.add_special_tokens(list(SPECIAL_TOKENS))
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        chat_template=CHAT_TEMPLATE,
    )


def build_config(arch: str = "qwen2_vl"):
    """A two-layer Qwen2-VL (or Qwen2.5-VL) config whose token ids match `build_tokenizer`."""
    from transformers import Qwen2_5_VLConfig, Qwen2VLConfig

    ids = {t: 256 + i for i, t in enumerate(SPECIAL_TOKENS)}
    if arch == "qwen2_vl":
        config_cls = Qwen2VLConfig
        # The merger projects vision features into the language model, so hidden sizes match.
        vision = dict(depth=2, embed_dim=32, hidden_size=64, num_heads=2, mlp_ratio=2)
    elif arch == "qwen2_5_vl":
        config_cls = Qwen2_5_VLConfig
        vision = dict(depth=2, hidden_size=32, intermediate_size=64, num_heads=2, out_hidden_size=64,
                      window_size=56, fullatt_block_indexes=[1])
    else:
        raise ValueError(f"arch must be 'qwen2_vl' or 'qwen2_5_vl', got {arch!r}")
    return config_cls(
        text_config=dict(
            vocab_size=VOCAB_SIZE,
            hidden_size=64,
            intermediate_size=128,
            num_hidden_layers=2,
            num_attention_heads=4,
            num_key_value_heads=2,
            max_position_embeddings=4096,
            # The three M-RoPE sections must sum to head_dim / 2 = 64 / 4 / 2.
            rope_parameters={"rope_type": "default", "rope_theta": 10000.0, "mrope_section": [2, 3, 3]},
            bos_token_id=ids["<|endoftext|>"],
            eos_token_id=ids["<|im_end|>"],
            pad_token_id=ids["<|endoftext|>"],
        ),
        vision_config=vision,
        image_token_id=ids["<|image_pad|>"],
        video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"],
        vision_end_token_id=ids["<|vision_end|>"],
    )


def build_tiny_qwen2vl(outdir: str | Path, seed: int = 0, arch: str = "qwen2_vl") -> Path:
    """Write the tiny model folder to `outdir` (created if needed) and return its path.

    arch: "qwen2_vl" (Qwen2-VL, the default) or "qwen2_5_vl" (Qwen2.5-VL).
    """
    import torch
    from transformers import Qwen2_5_VLForConditionalGeneration, Qwen2VLForConditionalGeneration
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil

    out = Path(outdir)
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    model_cls = Qwen2VLForConditionalGeneration if arch == "qwen2_vl" else Qwen2_5_VLForConditionalGeneration
    model = model_cls(build_config(arch)).eval()
    model.save_pretrained(out)
    build_tokenizer().save_pretrained(out)
    # Small images keep the tests fast; the captioner sets its own pixel budget anyway.
    Qwen2VLImageProcessorPil(min_pixels=56 * 56, max_pixels=128 * 128).save_pretrained(out)
    (out / "chat_template.jinja").write_text(CHAT_TEMPLATE, encoding="utf-8")
    return out


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1 or args[0].startswith("-"):
        print("usage: python tests/tiny_qwen.py OUTDIR", file=sys.stderr)
        return 2
    print(build_tiny_qwen2vl(args[0]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
