"""Reading and strictly loading RIFE v4.x weights (`flownet.pkl`, or a safetensors copy).

`convert_state_dict` maps a released-layout state dict onto our names through `keymap` and
refuses anything else with one line naming the missing / unexpected keys or the wrong shapes
(a file of another version has other shapes). `load_rife` reads a file (torch pickles with
``weights_only=True``: tensors only, no code runs) and returns the network in eval mode.
"""

from __future__ import annotations

from pathlib import Path
from typing import Mapping, Sequence

import torch
from torch import Tensor

from ...errors import CheckpointError
from ..checkpoint import FileVerdict
from . import keymap
from .config import RIFEConfig, get_preset
from .model import IFNet

SHOW = 6  # keys listed per kind in an error message


def _fmt(keys: Sequence[str]) -> str:
    more = f", ... ({len(keys) - SHOW} more)" if len(keys) > SHOW else ""
    return ", ".join(keys[:SHOW]) + more


def convert_state_dict(state: Mapping[str, Tensor], cfg: RIFEConfig, source: str = "checkpoint") -> dict[str, Tensor]:
    """Released keys (all with ``module.`` or all without) -> our keys, checked strictly.

    Raises CheckpointError (one line) on missing or unexpected keys or a shape that does not fit
    `cfg`; the training-only modules named in `keymap.TRAINING_ONLY_PREFIXES` are skipped.
    """
    keys = list(state)
    if not keys:
        raise CheckpointError(f"{source}: empty state dict, not RIFE weights.")
    for k in keys:
        if not isinstance(k, str) or not isinstance(state[k], Tensor):
            raise CheckpointError(f"{source}: not a RIFE state dict (entry {k!r} is not a named tensor).")
    prefixed = [k.startswith(keymap.WRAPPER_PREFIX) for k in keys]
    if any(prefixed) and not all(prefixed):
        raise CheckpointError(f"{source}: mixes keys with and without the {keymap.WRAPPER_PREFIX!r} prefix.")
    n = len(keymap.WRAPPER_PREFIX) if all(prefixed) else 0
    bare = {k[n:]: state[k] for k in keys if not k[n:].startswith(keymap.TRAINING_ONLY_PREFIXES)}
    kmap = keymap.key_map(cfg)
    wanted = set(kmap.values())
    missing = sorted(wanted - bare.keys())
    unexpected = sorted(bare.keys() - wanted)
    if missing or unexpected:
        parts = []
        if missing:
            parts.append(f"missing {len(missing)} key(s): {_fmt(missing)}")
        if unexpected:
            parts.append(f"unexpected {len(unexpected)} key(s): {_fmt(unexpected)}")
        raise CheckpointError(f"{source}: not RIFE {cfg.version} weights; " + "; ".join(parts) + ".")
    with torch.device("meta"):
        ref = IFNet(cfg)
    shapes = {k: tuple(v.shape) for k, v in ref.state_dict().items()}
    out: dict[str, Tensor] = {}
    for ours, up in kmap.items():
        v = bare[up]
        if tuple(v.shape) != shapes[ours]:
            raise CheckpointError(f"{source}: {keymap.WRAPPER_PREFIX if n else ''}{up} has shape {tuple(v.shape)}, "
                                  f"RIFE {cfg.version} expects {shapes[ours]} (a file of another RIFE version?).")
        out[ours] = v
    return out


def read_state_dict(path: str | Path) -> dict[str, Tensor]:
    """Tensors of a `.pkl`/`.pth` (torch) or `.safetensors` file; CheckpointError when unreadable."""
    p = Path(path)
    if not p.is_file():
        raise CheckpointError(f"{p}: RIFE weight file not found.")
    try:
        if p.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(p))
        else:
            state = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as exc:  # zip/pickle/EOF errors all mean the same thing to the user
        reason = " ".join(str(exc).split())[:160] or type(exc).__name__
        raise CheckpointError(f"{p}: cannot read the RIFE weights, the file is truncated or corrupt ({reason}); "
                              f"delete it and download it again.") from None
    if isinstance(state, Mapping) and "state_dict" in state and isinstance(state["state_dict"], Mapping):
        state = state["state_dict"]
    if not isinstance(state, Mapping):
        raise CheckpointError(f"{p}: expected a state dict of tensors, found {type(state).__name__}.")
    return dict(state)


def build_model(state: Mapping[str, Tensor], cfg: RIFEConfig, *, source: str = "checkpoint",
                device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32) -> IFNet:
    """IFNet for `cfg` with `state` (released layout) loaded strictly, eval mode, no grad."""
    ours = convert_state_dict(state, cfg, source)
    with torch.device("meta"):
        net = IFNet(cfg)
    net.load_state_dict({k: v.to(device=device, dtype=dtype) for k, v in ours.items()}, strict=True, assign=True)
    return net.eval().requires_grad_(False)


def load_rife(path: str | Path, version: str | RIFEConfig = "4.25", *, device: torch.device | str = "cpu",
              dtype: torch.dtype = torch.float32) -> IFNet:
    """Read `path` and return the network of that RIFE version (see `config.PRESETS`)."""
    cfg = version if isinstance(version, RIFEConfig) else get_preset(version)
    return build_model(read_state_dict(path), cfg, source=str(path), device=device, dtype=dtype)


def rule_state_dict(cfg: RIFEConfig) -> dict[str, Tensor]:
    """A state dict in the released layout (``module.`` keys) built under the deterministic weight
    rule (shared/reference/golden/README.md) on the released key names: the test weights."""
    from ..weight_rule import rule_tensor

    with torch.device("meta"):
        net = IFNet(cfg)
    kmap = keymap.key_map(cfg)
    return {keymap.WRAPPER_PREFIX + kmap[k]: rule_tensor(kmap[k], tuple(p.shape)) for k, p in net.state_dict().items()}


# -- `python -m core.models inspect / verify` --------------------------------------------------

INSPECTABLE = tuple(f"rife-{v}" for v in ("4.25", "4.26", "4.26.heavy"))


# Result of checking a file against one RIFE version's layout (`verify_file`): core.models.checkpoint.FileVerdict
Verdict = FileVerdict


def _config_of(name: str) -> RIFEConfig:
    if name not in INSPECTABLE:
        raise ValueError(f"unknown RIFE model {name!r}; known: {', '.join(INSPECTABLE)}")
    return get_preset(name[len("rife-"):])


def inspect_entries(name: str = "rife-4.25") -> list[tuple[str, tuple[int, ...], str]]:
    """[(released key, shape, dtype)] of `name` in the released layout, built on the meta device."""
    cfg = _config_of(name)
    with torch.device("meta"):
        net = IFNet(cfg)
    kmap = keymap.key_map(cfg)
    return [(keymap.WRAPPER_PREFIX + kmap[k], tuple(v.shape), str(v.dtype).replace("torch.", ""))
            for k, v in net.state_dict().items()]


def verify_file(name: str, path: str | Path) -> Verdict:
    """Check a weight file against `name`'s key layout and shapes (no values are judged)."""
    expected = {k: s for k, s, _ in inspect_entries(name)}
    try:
        state = read_state_dict(path)
    except CheckpointError as exc:
        return Verdict(False, "unreadable", "", str(exc))
    found = {(k if k.startswith(keymap.WRAPPER_PREFIX) else keymap.WRAPPER_PREFIX + k): v
             for k, v in state.items() if isinstance(v, Tensor)}
    skip = tuple(keymap.WRAPPER_PREFIX + p for p in keymap.TRAINING_ONLY_PREFIXES)
    found = {k: v for k, v in found.items() if not k.startswith(skip)}
    missing = sorted(expected.keys() - found.keys())
    unexpected = sorted(found.keys() - expected.keys())
    wrong = sorted(k for k in expected.keys() & found.keys() if tuple(found[k].shape) != expected[k])
    if missing or unexpected or wrong:
        parts = [f"missing {len(missing)} key(s): {_fmt(missing)}"] if missing else []
        parts += [f"unexpected {len(unexpected)} key(s): {_fmt(unexpected)}"] if unexpected else []
        parts += [f"{len(wrong)} wrong shape(s): {wrong[0]}"] if wrong else []
        return Verdict(False, "mismatch", "", f"{path}: not the {name} layout; {'; '.join(parts)}.",
                       missing, unexpected, wrong)
    return Verdict(True, "full", name, f"{path}: {name} weights OK ({len(expected)} tensors).")
