"""Our own PyTorch implementations of every model the studio runs, each loading the officially
released checkpoints unchanged through one explicit key map.

`python -m core.models` inspects model layouts and checks downloaded files:

    python -m core.models list
    python -m core.models inspect cami2v-512 --json     # {"entries": [[key, shape, dtype], ...]}
    python -m core.models verify cami2v-512 ckpts/512_cami2v_100k.pt

Families register here by name; each family module provides `INSPECTABLE` (preset names),
`inspect_entries(name)` and `verify_file(name, path)`. Modules are imported on first use so
`import core.models` stays cheap.
"""

from __future__ import annotations

import importlib
from types import ModuleType

# family module -> the names it can inspect (kept literal so listing imports nothing heavy)
FAMILIES: dict[str, tuple[str, ...]] = {
    "core.models.cami2v": ("cami2v-512", "cami2v-256", "cameractrl-256", "motionctrl-256",
                           "dynamicrafter-512", "dynamicrafter-256"),
    "core.models.fastdvdnet_loader": ("fastdvdnet",),
    "core.models.rife": ("rife-4.25", "rife-4.26", "rife-4.26.heavy"),
    "core.models.sv3d": ("sv3d-u", "sv3d-p"),
}


def inspectable_names() -> list[str]:
    return [name for names in FAMILIES.values() for name in names]


def family_of(name: str) -> ModuleType:
    """The module implementing `name`; ValueError listing the known names otherwise."""
    for module, names in FAMILIES.items():
        if name in names:
            return importlib.import_module(module)
    raise ValueError(f"unknown model {name!r}; known: {', '.join(inspectable_names())}")
