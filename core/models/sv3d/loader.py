"""Load SV3D from a released file (`sv3d_u.safetensors` / `sv3d_p.safetensors`), strictly,
through keymap.py and core.models.checkpoint; and build the same layout from the weight rule
(tests and benchmarks: no download needed)."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Optional

import torch

from ...errors import CheckpointError
from .. import checkpoint as ckpt
from ..weight_rule import fill_with_rule
from . import keymap
from .config import PRESETS, SV3DParams
from .model import SV3D


def build(params: SV3DParams | str, device: str | torch.device = "meta") -> SV3D:
    """The model with uninitialised weights (on the meta device by default)."""
    p = PRESETS[params] if isinstance(params, str) else params
    with torch.device(device):
        return SV3D(p)


def expected_upstream_shapes(params: SV3DParams | str) -> dict[str, tuple[int, ...]]:
    """Released key -> shape for a variant (from our modules, renamed; a fresh dict)."""
    return dict(_expected(PRESETS[params] if isinstance(params, str) else params))


@lru_cache(maxsize=4)
def _expected(params: SV3DParams) -> tuple[tuple[str, tuple[int, ...]], ...]:
    # Building the full-width modules, even on the meta device, takes seconds: once per preset.
    model = build(params)
    p = model.params.unet
    return tuple((keymap.to_upstream(k, p), tuple(v.shape)) for k, v in model.state_dict().items())


def load_file(params: SV3DParams | str, path: str | Path, *, device: str | torch.device = "cpu",
              dtype: torch.dtype = torch.float32, hint: str = "") -> SV3D:
    """SV3D from a released file: every key of the file must map onto the model and every
    parameter must be present (CheckpointError naming the first few otherwise)."""
    model = build(params)
    p = model.params.unet
    f = ckpt.open_checkpoint(path, hint=hint)
    state = {}
    unknown = []
    for key in f.shapes:
        try:
            state[keymap.to_ours(key, p)] = key
        except KeyError:
            unknown.append(key)
    if unknown:
        raise CheckpointError(f"{path}: {ckpt.listing('keys of no SV3D component', unknown, 6)} "
                              f"(is this an {model.params.name} file?)")
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    found = {ours: f.shapes[up] for ours, up in state.items()}
    verdict = ckpt.compare_keys(expected, found)
    if not verdict.ok:
        raise CheckpointError(f"{path}: does not match {model.params.name} ({verdict.describe(6)}).")
    tensors = {ours: f.read(up).to(device=device, dtype=dtype) for ours, up in state.items()}
    ckpt.assign_strict(model, tensors, str(path))
    return model.eval().requires_grad_(False)


def rule_model(params: SV3DParams | str, device: str | torch.device = "cpu",
               dtype: Optional[torch.dtype] = None) -> SV3D:
    """The model with the deterministic weight rule applied under the released key names."""
    model = build(params)
    p = model.params.unet
    fill_with_rule(model, lambda k: keymap.to_upstream(k, p), device=device, dtype=dtype or torch.float32)
    return model.eval().requires_grad_(False)


def released_state_dict(model: SV3D) -> dict[str, torch.Tensor]:
    """A model's weights under the released key names (what `load_file` reads back)."""
    p = model.params.unet
    return {keymap.to_upstream(k, p): v for k, v in model.state_dict().items()}


# -- `python -m core.models inspect / verify` -------------------------------------------------

INSPECTABLE = ("sv3d-u", "sv3d-p")


def inspect_entries(name: str) -> list[tuple[str, tuple[int, ...], str]]:
    """[(released key, shape, dtype)] of a variant, built on the meta device."""
    model = build(name)
    p = model.params.unet
    return [(keymap.to_upstream(k, p), tuple(v.shape), str(v.dtype).removeprefix("torch."))
            for k, v in model.state_dict().items()]


def verify_file(name: str, path: str | Path) -> ckpt.FileVerdict:
    """Whether a file holds exactly the released layout of `name` (header only)."""
    try:
        f = ckpt.open_checkpoint(path)
    except CheckpointError as exc:
        return ckpt.FileVerdict(False, "unreadable", "", str(exc))
    verdict = ckpt.compare_keys(expected_upstream_shapes(name), f.shapes)
    if verdict.ok:
        return ckpt.FileVerdict(True, "full", name, f"{path}: a complete {name} checkpoint.")
    others = [n for n in PRESETS if n != name and n.startswith(name.split("-")[0] + "-")]  # the same width class
    other = [n for n in others if ckpt.compare_keys(expected_upstream_shapes(n), f.shapes).ok]
    hint = f" (it is a {other[0]} file)" if other else ""
    return ckpt.FileVerdict(False, "mismatch", other[0] if other else "",
                            f"{path}: does not match {name}{hint}: {verdict.describe(6)}.",
                            verdict.missing, verdict.unexpected, verdict.wrong_shape)
