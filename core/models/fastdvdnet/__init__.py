"""FastDVDnet (Tassano, Delon, Veit, CVPR 2020), our implementation.

    model.py      the network (`FastDVDnet`, `FastDVDnetParams`, `PRESETS`, `optimize_for_inference`)
    keymap.py     the one key map to the released `model.pth`
    loader.py     reading, checking and strictly loading weight files; `inspect_entries` / `verify_file`
    sequence.py   denoising a whole clip (mirrored 5-frame windows; the cached, batched procedure)
"""

from .keymap import WRAPPER_PREFIX, checkpoint_key_map
from .loader import INSPECTABLE, inspect_entries, load_fastdvdnet, verify_file
from .model import PRESETS, DenoisingBlock, FastDVDnet, FastDVDnetParams, optimize_for_inference
from .sequence import (auto_batch_size, count_block_evaluations, denoise_sequence, denoise_sequence_reference,
                       iter_denoise_sequence, mirror_index, window_indices)

__all__ = [
    "FastDVDnet", "FastDVDnetParams", "PRESETS", "DenoisingBlock",
    "checkpoint_key_map", "WRAPPER_PREFIX", "optimize_for_inference",
    "mirror_index", "window_indices", "denoise_sequence_reference", "iter_denoise_sequence",
    "denoise_sequence", "auto_batch_size", "count_block_evaluations",
    "INSPECTABLE", "inspect_entries", "load_fastdvdnet", "verify_file",
]
