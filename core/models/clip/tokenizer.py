"""The CLIP byte-level BPE tokenizer (OpenAI CLIP / OpenCLIP `tokenize`), 77 tokens per prompt.

Status: READY. `ClipTokenizer.default()(["a prompt"])` -> (1, 77) int64 token ids.

Text cleaning (ours, deterministic): HTML entities are decoded twice, typographic quotes,
ligatures and full-width forms are folded to ASCII, control characters dropped, Unicode
normalised to NFC, whitespace collapsed, then lower-cased. For plain ASCII prompts this is
exactly what upstream's `ftfy.fix_text` + `html.unescape` + whitespace cleaning does; ftfy's
mojibake repair is not reproduced. Token ids are [SOT] + BPE(text) + [EOT], zero-padded; an
over-long prompt is cut to the context length with EOT as its last token.

Where the vocabulary comes from:
- `default()`: the `instant-clip-tokenizer` package (MIT; the OpenAI CLIP vocabulary, MIT,
  compiled in; only needs numpy). Works offline.
- `from_files(vocab.json, merges.txt)`: Hugging Face-format files (e.g. from the hub repo
  `laion/CLIP-ViT-H-14-laion2B-s32B-b79K`, or a checkpoint's tokenizer folder), encoded by
  transformers' `CLIPTokenizerFast`.
- `from_openclip_merges(path)`: OpenCLIP's `bpe_simple_vocab_16e6.txt(.gz)` merges file, also
  through `CLIPTokenizerFast`.

Why the offline default is not a `CLIPTokenizerFast`: that class needs `vocab.json` + the ranked
merges, and no installed package ships them; `instant-clip-tokenizer` has the vocabulary compiled
into its extension and exposes only ids and (lossy, for partial UTF-8 tokens) decoding. The
merges *can* be recovered by probing it (checked: 49,404 of 49,406 tokens, and then
`CLIPTokenizerFast`, our former pure-Python BPE and `instant-clip-tokenizer` give identical ids on
every prompt of the tests and on the whole vocabulary), but shipping a vocabulary rebuilt by
probing a compiled extension, or a copy of OpenAI's files, is worse than using the package as is.
"""

from __future__ import annotations

import gzip
import html
import json
import unicodedata
from functools import lru_cache
from pathlib import Path
from typing import Callable, Optional, Sequence

import torch

from ...errors import ConfigError, Unavailable

CONTEXT_LENGTH = 77
# Number of merges OpenAI's CLIP vocabulary uses: 49152 tokens - 256 bytes - 2 specials.
_OPENAI_MERGES = 49152 - 256 - 2

_QUOTES = {
    "\u2018": "'", "\u2019": "'", "\u201a": "'", "\u201b": "'", "\u2032": "'",
    "\u201c": '"', "\u201d": '"', "\u201e": '"', "\u201f": '"', "\u2033": '"',
}
_LIGATURES = {"\ufb00": "ff", "\ufb01": "fi", "\ufb02": "fl", "\ufb03": "ffi", "\ufb04": "ffl", "\ufb05": "st", "\ufb06": "st"}


def clean_text(text: str) -> str:
    """Upstream-equivalent prompt cleaning for ordinary text; see the module docstring."""
    text = html.unescape(html.unescape(text))
    out = []
    for ch in text:
        o = ord(ch)
        if ch in _QUOTES:
            out.append(_QUOTES[ch])
        elif ch in _LIGATURES:
            out.append(_LIGATURES[ch])
        elif 0xFF01 <= o <= 0xFF5E:  # full-width ASCII forms
            out.append(chr(o - 0xFEE0))
        elif o == 0x3000:
            out.append(" ")
        elif unicodedata.category(ch) == "Cc" and ch not in "\t\n\r":
            continue
        else:
            out.append(ch)
    text = unicodedata.normalize("NFC", "".join(out))
    return " ".join(text.split()).lower()


@lru_cache(maxsize=1)
def _byte_alphabet() -> dict[int, str]:
    """Byte -> printable character table of byte-level BPE (GPT-2 / CLIP scheme).

    Printable Latin-1 bytes map to themselves; the remaining 68 bytes map, in byte order, to
    code points from 256 upwards, so no byte becomes whitespace or a control character.
    """
    keep = [*range(ord("!"), ord("~") + 1), *range(ord("\u00a1"), ord("\u00ac") + 1), *range(ord("\u00ae"), 256)]
    table = {b: chr(b) for b in keep}
    extra = 0
    for b in range(256):
        if b not in table:
            table[b] = chr(256 + extra)
            extra += 1
    return table


class ClipTokenizer:
    """Prompts -> (B, context_length) int64 token ids; see the module docstring."""

    def __init__(self, encode_fn: Callable[[str], list[int]], sot_id: int, eot_id: int, source: str):
        self._encode = encode_fn
        self.sot_id = sot_id
        self.eot_id = eot_id
        self.source = source

    # -- constructors --------------------------------------------------------------------
    @classmethod
    def default(cls) -> "ClipTokenizer":
        """The OpenAI CLIP vocabulary shipped by the `instant-clip-tokenizer` package."""
        return _default_tokenizer()

    @classmethod
    def from_files(cls, vocab_json: str | Path, merges_txt: str | Path) -> "ClipTokenizer":
        """Hugging Face-format `vocab.json` + `merges.txt` (CLIP's specials `<|startoftext|>`/`<|endoftext|>`)."""
        try:
            vocab = json.loads(Path(vocab_json).read_text(encoding="utf-8"))
            lines = Path(merges_txt).read_text(encoding="utf-8").splitlines()
        except FileNotFoundError as exc:
            raise ConfigError(f"CLIP tokenizer file missing: {exc.filename}") from None
        merges = [tuple(line.split()) for line in lines if line and not line.startswith("#version")]
        return cls._fast(vocab, merges, "<|startoftext|>", "<|endoftext|>", source=f"{vocab_json} + {merges_txt}")

    @classmethod
    def from_openclip_merges(cls, path: str | Path) -> "ClipTokenizer":
        """OpenCLIP / OpenAI `bpe_simple_vocab_16e6.txt[.gz]` (a header line, then ranked merges)."""
        path = Path(path)
        try:
            raw = gzip.open(path).read() if path.suffix == ".gz" else path.read_bytes()
        except FileNotFoundError:
            raise ConfigError(f"CLIP tokenizer file missing: {path}") from None
        lines = [line for line in raw.decode("utf-8").split("\n")[1:] if line.strip()]
        merges = [tuple(line.split()) for line in lines[:_OPENAI_MERGES]]
        alphabet = list(_byte_alphabet().values())
        tokens = alphabet + [a + "</w>" for a in alphabet] + ["".join(m) for m in merges]
        tokens += ["<start_of_text>", "<end_of_text>"]
        return cls._fast({t: i for i, t in enumerate(tokens)}, merges, "<start_of_text>",
                         "<end_of_text>", source=str(path))

    @classmethod
    def _fast(cls, vocab: dict[str, int], merges: Sequence[tuple[str, ...]], sot: str, eot: str,
              source: str) -> "ClipTokenizer":
        """transformers' `CLIPTokenizerFast` over a vocabulary and its ranked merges (pairs)."""
        from transformers import CLIPTokenizerFast

        if sot not in vocab or eot not in vocab:
            raise ConfigError(f"CLIP tokenizer {source}: the vocabulary lacks {sot} or {eot}.")
        fast = CLIPTokenizerFast(vocab=vocab, merges=[tuple(m) for m in merges], bos_token=sot, eos_token=eot, unk_token=eot,
                                 pad_token=eot)

        def encode(text: str) -> list[int]:
            return list(fast(text, add_special_tokens=False)["input_ids"])

        return cls(encode, vocab[sot], vocab[eot], source=source)

    # -- use -----------------------------------------------------------------------------
    def encode(self, text: str) -> list[int]:
        """BPE ids of the cleaned text, without SOT/EOT."""
        return self._encode(clean_text(text))

    def __call__(self, texts: Sequence[str] | str, context_length: int = CONTEXT_LENGTH) -> torch.Tensor:
        if isinstance(texts, str):
            texts = [texts]
        out = torch.zeros(len(texts), context_length, dtype=torch.long)
        for row, text in enumerate(texts):
            ids = [self.sot_id, *self.encode(text), self.eot_id]
            if len(ids) > context_length:
                ids = ids[:context_length]
                ids[-1] = self.eot_id
            out[row, : len(ids)] = torch.tensor(ids, dtype=torch.long)
        return out


@lru_cache(maxsize=1)
def _default_tokenizer() -> ClipTokenizer:
    try:
        import instant_clip_tokenizer
    except ImportError:
        raise Unavailable(
            "The CLIP tokenizer needs the Python package 'instant-clip-tokenizer' "
            "(pip install instant-clip-tokenizer==0.1.1), or vocabulary files passed to "
            "ClipTokenizer.from_files."
        ) from None
    tok = instant_clip_tokenizer.Tokenizer()
    return ClipTokenizer(lambda text: list(tok.encode(text)), tok.start_of_text(), tok.end_of_text(),
                         source="instant-clip-tokenizer")


def optional_tokenizer(vocab_dir: Optional[Path] = None) -> ClipTokenizer:
    """Files in `vocab_dir` when it holds `vocab.json` + `merges.txt`, else the default tokenizer."""
    if vocab_dir is not None and (vocab_dir / "vocab.json").exists() and (vocab_dir / "merges.txt").exists():
        return ClipTokenizer.from_files(vocab_dir / "vocab.json", vocab_dir / "merges.txt")
    return ClipTokenizer.default()
