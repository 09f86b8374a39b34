"""Reading, checking and strictly loading FastDVDnet weight files (the released `model.pth`).

The file I/O and the strict assignment are `core.models.checkpoint`'s; this module holds only
what is FastDVDnet's own: the released layout (`module.` prefix, `checkpoint_key_map`), the
tolerated missing BatchNorm counters, and the released files' git blob ids for `verify`.
`python -m core.models inspect / verify fastdvdnet` goes through `inspect_entries` / `verify_file`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Mapping, Sequence

import torch

from ...errors import CheckpointError, WeightsMissing
from ..checkpoint import FileVerdict, assign_strict, read_state_dict
from .keymap import OPTIONAL_SUFFIX, WRAPPER_PREFIX, checkpoint_key_map
from .model import PRESETS, FastDVDnet, FastDVDnetParams, optimize_for_inference


def convert_checkpoint(state: Mapping[str, torch.Tensor], source: str = "checkpoint") -> dict[str, torch.Tensor]:
    """Map a released-layout state dict (keys with or without `module.`) onto our key names.

    Raises CheckpointError listing missing and unexpected keys (missing `num_batches_tracked`
    counters are tolerated: eval-mode BatchNorm never reads them).
    """
    bare: dict[str, torch.Tensor] = {}
    for k, v in state.items():
        if not isinstance(k, str) or not isinstance(v, torch.Tensor):
            raise CheckpointError(f"{source}: not a FastDVDnet state dict (entry {k!r} is not a named tensor).")
        bare[k[len(WRAPPER_PREFIX):] if k.startswith(WRAPPER_PREFIX) else k] = v
    kmap = checkpoint_key_map()
    wanted = set(kmap.values())
    missing = sorted(k for k in wanted - bare.keys() if not k.endswith(OPTIONAL_SUFFIX))
    unexpected = sorted(bare.keys() - wanted)
    if missing or unexpected:
        raise CheckpointError(f"{source}: not the FastDVDnet layout; " + _describe_mismatch(missing, unexpected))
    return {ours: bare[up] for ours, up in kmap.items() if up in bare}


def _describe_mismatch(missing: Sequence[str], unexpected: Sequence[str], show: int = 8) -> str:
    def fmt(keys: Sequence[str]) -> str:
        more = f", ... ({len(keys) - show} more)" if len(keys) > show else ""
        return ", ".join(keys[:show]) + more

    parts = []
    if missing:
        parts.append(f"missing {len(missing)} key(s): {fmt(missing)}")
    if unexpected:
        parts.append(f"unexpected {len(unexpected)} key(s): {fmt(unexpected)}")
    return "; ".join(parts) + "."


def read_checkpoint(path: str | Path) -> dict[str, torch.Tensor]:
    """Read a FastDVDnet weight file (a plain state dict, .pth or .safetensors) onto the CPU;
    CheckpointError if unreadable or absent."""
    try:
        return read_state_dict(path, hint="`python -m core.weights fetch fastdvdnet`")
    except WeightsMissing:
        raise CheckpointError(f"{path}: FastDVDnet weight file not found.") from None


def load_state(model: FastDVDnet, state: Mapping[str, torch.Tensor], source: str = "checkpoint") -> None:
    """Strictly load a released-layout state dict into `model`. Tensors are assigned, not copied
    into, so `model` may live on the meta device (it then ends up on the CPU); otherwise they are
    moved to its device and dtype. Shapes are checked; CheckpointError on any mismatch."""
    ours = convert_checkpoint(state, source)
    own = model.state_dict()
    full: dict[str, torch.Tensor] = {}
    for k, ref in own.items():
        device = torch.device("cpu") if ref.is_meta else ref.device
        v = ours.get(k)
        if v is None:  # an absent counter: eval-mode BatchNorm never reads it
            v = torch.zeros(ref.shape, dtype=ref.dtype)
        elif tuple(v.shape) != tuple(ref.shape):
            raise CheckpointError(
                f"{source}: {checkpoint_key_map()[k]} has shape {tuple(v.shape)}, FastDVDnet expects "
                f"{tuple(ref.shape)} (wrong model variant?)."
            )
        full[k] = v.to(device=device, dtype=ref.dtype)
    assign_strict(model, full, source)


def build_from_checkpoint(state: Mapping[str, torch.Tensor], params: FastDVDnetParams = PRESETS["fastdvdnet"],
                          source: str = "checkpoint") -> FastDVDnet:
    """A CPU float32 FastDVDnet in eval mode holding `state` (built on the meta device, so no
    random initialisation runs and the global RNG is left untouched)."""
    with torch.device("meta"):
        model = FastDVDnet(params)
    load_state(model, state, source)
    return model.eval().requires_grad_(False)


def load_fastdvdnet(path: str | Path, *, params: FastDVDnetParams = PRESETS["fastdvdnet"],
                    device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32,
                    optimize: bool = False) -> FastDVDnet:
    """Build FastDVDnet, load `path` strictly, and return it in eval mode on `device` / `dtype`
    (default: CPU float32). optimize: apply `optimize_for_inference` before the cast."""
    model = build_from_checkpoint(read_checkpoint(path), params, source=str(path))
    if optimize:
        optimize_for_inference(model)
    return model.to(device=device, dtype=dtype)


# -- inspection (python -m core.models inspect / verify) -------------------------------------


INSPECTABLE = ("fastdvdnet",)

# Git blob ids of the files released in m-tassano/fastdvdnet (from the repository tree).
RELEASED_BLOBS = {
    "001d08c260a2cde36b0c023e251e6be97f9f48dc": "model.pth (released Nov 2019, AWGN)",
    "413d19765b821355e31906ca16332006d8d3a4eb": "model_clipped_noise.pth (clipped AWGN)",
}


# Result of checking a file against the FastDVDnet layout (`verify_file`): core.models.checkpoint.FileVerdict
Verdict = FileVerdict


def inspect_entries(name: str = "fastdvdnet") -> list[tuple[str, tuple[int, ...], str]]:
    """[(released key, shape, dtype)] in the released file's order, built on the meta device."""
    params = _preset(name)
    with torch.device("meta"):
        model = FastDVDnet(params)
    kmap = checkpoint_key_map()
    return [(WRAPPER_PREFIX + kmap[k], tuple(v.shape), str(v.dtype).replace("torch.", ""))
            for k, v in model.state_dict().items()]


def verify_file(name: str, path: str | Path) -> Verdict:
    """Check a weight file against preset `name`: key layout, shapes, and whether it is one of
    the released files (by git blob id)."""
    from ...weights import git_blob_id

    expected = {k: s for k, s, _ in inspect_entries(name)}
    try:
        state = read_checkpoint(path)
    except CheckpointError as exc:
        return Verdict(False, "unreadable", "", str(exc))
    found = {(k if k.startswith(WRAPPER_PREFIX) else WRAPPER_PREFIX + k): v for k, v in state.items()
             if isinstance(v, torch.Tensor)}
    missing = sorted(k for k in expected.keys() - found.keys() if not k.endswith(OPTIONAL_SUFFIX))
    unexpected = sorted(found.keys() - expected.keys())
    wrong = sorted(k for k in expected.keys() & found.keys() if tuple(found[k].shape) != expected[k])
    if missing or unexpected or wrong:
        detail = _describe_mismatch(missing, unexpected).rstrip(".")
        if wrong:
            detail = (detail + "; " if missing or unexpected else "") + f"{len(wrong)} wrong shape(s): {wrong[0]}"
        return Verdict(False, "mismatch", "", f"{path}: not the {name} layout; {detail}.", missing, unexpected, wrong)
    blob = git_blob_id(path)
    identified = RELEASED_BLOBS.get(blob, f"not a released file, git blob {blob}")
    return Verdict(True, "full", identified, f"{path}: {name} weights OK ({identified}).")


def _preset(name: str) -> FastDVDnetParams:
    try:
        return PRESETS[name]
    except KeyError:
        raise ValueError(f"unknown FastDVDnet preset {name!r}; known: {', '.join(PRESETS)}") from None
