"""SV3D (orbit views of an object from one photo): config, key map, model, loader."""

from .config import NATIVE_SIZE, NUM_FRAMES, PRESETS, SV3DParams, VideoUNetParams

__all__ = ["NATIVE_SIZE", "NUM_FRAMES", "PRESETS", "SV3DParams", "VideoUNetParams"]
