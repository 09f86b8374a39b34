"""Our own PyTorch implementations of every model the studio runs, each loading the officially
released checkpoints unchanged through one explicit key map.

`python -m core.models` inspects model layouts and checks downloaded files:

    python -m core.models list
    python -m core.models inspect cami2v-512 --json     # {"entries": [[key, shape, dtype], ...]}
    python -m core.models verify cami2v-512 ckpts/512_cami2v_100k.pt

Families register here by name; each family module provides `INSPECTABLE` (preset names),
`inspect_entries(name)` and `verify_file(name, path)`. Each family is imported by a plain import
statement on first use, so `import core.models` stays cheap.
"""

from __future__ import annotations

from types import ModuleType
from typing import Callable


def _cami2v() -> ModuleType:
    from . import cami2v

    return cami2v


def _fastdvdnet() -> ModuleType:
    from . import fastdvdnet

    return fastdvdnet


def _rife() -> ModuleType:
    from . import rife

    return rife


def _sv3d() -> ModuleType:
    from . import sv3d

    return sv3d


# (the names a family can inspect, kept literal so listing imports nothing heavy; its importer)
FAMILIES: tuple[tuple[tuple[str, ...], Callable[[], ModuleType]], ...] = (
    (("cami2v-512", "cami2v-256", "cameractrl-256", "motionctrl-256", "dynamicrafter-512", "dynamicrafter-256"),
     _cami2v),
    (("fastdvdnet",), _fastdvdnet),
    (("rife-4.25", "rife-4.26", "rife-4.26.heavy"), _rife),
    (("sv3d-u", "sv3d-p"), _sv3d),
)


def inspectable_names() -> list[str]:
    return [name for names, _ in FAMILIES for name in names]


def family_of(name: str) -> ModuleType:
    """The module implementing `name`; ValueError listing the known names otherwise."""
    for names, load in FAMILIES:
        if name in names:
            return load()
    raise ValueError(f"unknown model {name!r}; known: {', '.join(inspectable_names())}")
