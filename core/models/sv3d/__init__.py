"""SV3D (orbit views of an object from one photo): config, key map, model, loader."""

from .config import NATIVE_SIZE, NUM_FRAMES, PRESETS, SV3DParams, VideoUNetParams
from .loader import INSPECTABLE, inspect_entries, verify_file

__all__ = ["NATIVE_SIZE", "NUM_FRAMES", "PRESETS", "SV3DParams", "VideoUNetParams", "INSPECTABLE",
           "inspect_entries", "verify_file"]
