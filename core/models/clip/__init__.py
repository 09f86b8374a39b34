"""Native OpenCLIP-style text and image towers and the CLIP BPE tokenizer (no open_clip import)."""

from .text import TEXT_PRESETS, ClipTextEncoder, TextTransformer, TextTransformerParams
from .tokenizer import ClipTokenizer, clean_text
from .vision import (VISION_PRESETS, ClipImageEmbedder, ImageEmbedderParams, VisionTransformer,
                     VisionTransformerParams, resize_antialiased_bicubic)

__all__ = [
    "TEXT_PRESETS", "ClipTextEncoder", "TextTransformer", "TextTransformerParams",
    "ClipTokenizer", "clean_text",
    "VISION_PRESETS", "ClipImageEmbedder", "ImageEmbedderParams", "VisionTransformer",
    "VisionTransformerParams", "resize_antialiased_bicubic",
]
