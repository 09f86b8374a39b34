"""Checkpoint I/O shared by every model family: open a weight file, compare its keys with a
model, and assign it strictly. Each family keeps only its key map (released key <-> ours).

Accepted files: `.safetensors`, or torch pickles (`.pt` / `.ckpt` / `.pth` / `.bin`, zip or
legacy format) holding a raw state dict or one wrapped as `{"state_dict": ...}` (Lightning),
`{"module": ...}` (DeepSpeed) or `{"params_ema": ...}` / `{"params": ...}` (BasicSR, e.g.
Real-ESRGAN). Only tensors are unpickled (`weights_only=True`).

Memory: safetensors files are read one tensor at a time (the header alone for inspection);
zip-format torch files are memory-mapped. `assign_strict` assigns the given tensors into the
module (`load_state_dict(assign=True)`), so a model built on the meta device is materialised
without a second copy.

Errors are one line: WeightsMissing for an absent file, CheckpointError for an unreadable file
or a key mismatch; a mismatch names the missing, unexpected and wrong-shape keys (first few of
each, with counts).
"""

from __future__ import annotations

import json
import pickle
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Mapping, Optional, Sequence

import torch
from torch import Tensor, nn

from ..errors import CheckpointError, WeightsMissing

LIST_LIMIT = 8  # keys shown per list in error messages
TORCH_SUFFIXES = (".pt", ".ckpt", ".pth", ".bin")
# Keys a torch file may wrap its state dict in, in order of preference: Lightning, DeepSpeed, and
# BasicSR's (Real-ESRGAN), whose "params_ema" (the averaged weights) is preferred over "params".
WRAPPERS = ("state_dict", "module", "params_ema", "params")

_ST_DTYPES = {
    "F64": torch.float64, "F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16,
    "I64": torch.int64, "I32": torch.int32, "I16": torch.int16, "I8": torch.int8, "U8": torch.uint8,
    "BOOL": torch.bool,
}

Shape = tuple[int, ...]


@dataclass
class CheckpointFile:
    """One opened weight file: (normalised) key -> shape and dtype, plus a tensor reader.

    `read(key)` returns the tensor (memory-mapped or freshly read, on the CPU); `wrapper` is
    None or one of WRAPPERS; `renamed` tells whether `normalise` changed any key;
    `original` maps each normalised key to the key in the file; `format` is a family's name
    for the key layout (set by the family's loader, "" when it has only one).
    """

    path: Path
    shapes: dict[str, Shape]
    dtypes: dict[str, torch.dtype]
    read: Callable[[str], Tensor]
    wrapper: Optional[str] = None
    renamed: bool = False
    original: dict[str, str] = field(default_factory=dict)
    format: str = ""

    def state_dict(self) -> dict[str, Tensor]:
        """Every tensor, under the normalised keys."""
        return {k: self.read(k) for k in self.shapes}


def corrupt(path: Path, why: str, hint: str = "") -> CheckpointError:
    """The one-line error for a file that cannot be read as a checkpoint."""
    how = f" ({hint})" if hint else ""
    return CheckpointError(f"{path}: cannot read it as a checkpoint ({why}); the file may be truncated or corrupt — "
                           f"delete it and fetch it again{how}")


def _first_line(e: BaseException) -> str:
    text = " ".join(str(e).strip().splitlines()[:1])
    return text[:200] or type(e).__name__


def _normalised(raw_keys, normalise: Optional[Callable[[str], str]]) -> tuple[dict[str, str], bool]:
    original: dict[str, str] = {}
    renamed = False
    for k in raw_keys:
        nk = normalise(k) if normalise is not None else k
        renamed |= nk != k
        original[nk] = k
    return original, renamed


def _read_safetensors_header(path: Path, hint: str) -> dict:
    size = path.stat().st_size
    with open(path, "rb") as f:
        head = f.read(8)
        if len(head) < 8:
            raise corrupt(path, "shorter than a safetensors header", hint)
        (n,) = struct.unpack("<Q", head)
        if n > size - 8 or n > 512 * 1024 * 1024:
            raise corrupt(path, "safetensors header length exceeds the file", hint)
        try:
            header = json.loads(f.read(n))
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            raise corrupt(path, f"safetensors header is not JSON: {e}", hint) from None
    header.pop("__metadata__", None)
    end = max((int(v["data_offsets"][1]) for v in header.values()), default=0)
    if 8 + n + end > size:
        raise corrupt(path, f"data ends at byte {8 + n + end} but the file has {size} bytes", hint)
    return header


def _open_safetensors(path: Path, normalise, hint: str) -> CheckpointFile:
    header = _read_safetensors_header(path, hint)
    original, renamed = _normalised(header, normalise)
    shapes = {k: tuple(int(s) for s in header[o]["shape"]) for k, o in original.items()}
    dtypes = {k: _ST_DTYPES.get(header[o]["dtype"], torch.float32) for k, o in original.items()}
    handle = None

    def read(key: str) -> Tensor:
        nonlocal handle
        from safetensors import SafetensorError, safe_open

        try:
            if handle is None:
                handle = safe_open(str(path), framework="pt", device="cpu")
            return handle.get_tensor(original[key])
        except SafetensorError as e:
            raise corrupt(path, str(e), hint) from None

    return CheckpointFile(path, shapes, dtypes, read, None, renamed, original)


def _torch_load(path: Path) -> object:
    try:
        return torch.load(path, map_location="cpu", mmap=True, weights_only=True)
    except RuntimeError as e:
        if "mmap" not in str(e):
            raise
    # Legacy (pre-zip) serialisation cannot be memory-mapped; it is read whole.
    return torch.load(path, map_location="cpu", weights_only=True)


def _open_torch(path: Path, normalise, hint: str) -> CheckpointFile:
    try:
        obj = _torch_load(path)
    except pickle.UnpicklingError as e:
        # a well-formed pickle with objects besides tensors, as opposed to a damaged file
        if "unsupported global" in str(e).lower():
            raise CheckpointError(f"{path}: holds Python objects besides tensors, which are not unpickled "
                                  f"(weights_only); re-save its state dict or use the safetensors file") from None
        raise corrupt(path, f"UnpicklingError: {_first_line(e)}", hint) from None
    except Exception as e:  # the zip/pickle stack raises many types for a damaged file
        raise corrupt(path, f"{type(e).__name__}: {_first_line(e)}", hint) from None
    wrapper = None
    for name in WRAPPERS:
        if isinstance(obj, dict) and isinstance(obj.get(name), dict):
            obj, wrapper = obj[name], name
            break
    if not isinstance(obj, dict):
        raise CheckpointError(f"{path}: expected a state dict, found {type(obj).__name__}")
    tensors = {k: v for k, v in obj.items() if isinstance(k, str) and isinstance(v, Tensor)}
    if not tensors:
        raise CheckpointError(f"{path}: holds no tensors (keys: {', '.join(map(str, list(obj)[:LIST_LIMIT]))})")
    original, renamed = _normalised(tensors, normalise)
    shapes = {k: tuple(tensors[o].shape) for k, o in original.items()}
    dtypes = {k: tensors[o].dtype for k, o in original.items()}
    return CheckpointFile(path, shapes, dtypes, lambda key: tensors[original[key]], wrapper, renamed, original)


def open_checkpoint(path: str | Path, *, normalise: Optional[Callable[[str], str]] = None,
                    hint: str = "") -> CheckpointFile:
    """Open `path` lazily (see the module docstring), keys passed through `normalise`.

    Absent -> WeightsMissing; damaged or not a state dict -> CheckpointError (`hint`, e.g. the
    fetch command, is added to the damaged-file message).
    """
    path = Path(path)
    if not path.is_file():
        raise WeightsMissing(f"checkpoint file not found: {path}")
    if path.suffix == ".safetensors":
        return _open_safetensors(path, normalise, hint)
    if path.suffix in TORCH_SUFFIXES:
        return _open_torch(path, normalise, hint)
    raise CheckpointError(f"{path}: unknown checkpoint extension {path.suffix!r} (expected .safetensors, .pt or .ckpt)")


def read_state_dict(path: str | Path, *, normalise: Optional[Callable[[str], str]] = None,
                    hint: str = "") -> dict[str, Tensor]:
    """Every tensor of a weight file on the CPU, under the (normalised) keys; see `open_checkpoint`."""
    return open_checkpoint(path, normalise=normalise, hint=hint).state_dict()


# ---------------------------------------------------------------------------------------------
# The verdict


def listing(title: str, keys: Sequence[str], limit: int = LIST_LIMIT) -> str:
    """"3 missing keys: a, b, c" (first `limit` shown, then "... (+n more)")."""
    shown = ", ".join(keys[:limit])
    more = f", ... (+{len(keys) - limit} more)" if len(keys) > limit else ""
    return f"{len(keys)} {title}: {shown}{more}"


@dataclass
class KeyVerdict:
    """How a file's keys compare with a model's: each list in the model's (or file's) order;
    `wrong_shape` entries read "key [file shape] != [model shape]"."""

    missing: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    wrong_shape: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not (self.missing or self.unexpected or self.wrong_shape)

    def describe(self, limit: int = LIST_LIMIT) -> str:
        """One line naming the first few keys of each kind, with counts; "" when ok."""
        parts = []
        if self.missing:
            parts.append(listing("missing keys", self.missing, limit))
        if self.unexpected:
            parts.append(listing("unexpected keys", self.unexpected, limit))
        if self.wrong_shape:
            parts.append(listing("keys with the wrong shape", self.wrong_shape, limit))
        return "; ".join(parts)


@dataclass
class FileVerdict:
    """Whether a weight file fits a model (what `python -m core.models verify` prints).

    kind: the family's word for what the file is ("full", "camera-only", "base", "mismatch",
    "unreadable"); identified: which release or variant it looks like; message: one line.
    """

    ok: bool
    kind: str
    identified: str
    message: str
    missing: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    wrong_shape: list[str] = field(default_factory=list)


def compare_keys(expected: Mapping[str, Shape], found: Mapping[str, Shape], *,
                 optional: Callable[[str], bool] = lambda key: False) -> KeyVerdict:
    """Expected (model) key -> shape against found (file) key -> shape; keys for which
    `optional` is true may be absent from the file."""
    return KeyVerdict(
        missing=[k for k in expected if k not in found and not optional(k)],
        unexpected=[k for k in found if k not in expected],
        wrong_shape=[f"{k} {list(found[k])} != {list(expected[k])}" for k in expected
                     if k in found and tuple(found[k]) != tuple(expected[k])],
    )


def assign_strict(module: nn.Module, state: Mapping[str, Tensor], source: str) -> None:
    """Assign `state` (already in `module`'s key names) strictly; `module` may be on the meta
    device. Tensors are assigned as they are (cast them first, or call `.to` afterwards).

    CheckpointError "<source>: does not match <Module> (<verdict>)" on any missing, unexpected
    or wrong-shape key.
    """
    expected = {k: tuple(v.shape) for k, v in module.state_dict().items()}
    verdict = compare_keys(expected, {k: tuple(v.shape) for k, v in state.items()})
    if not verdict.ok:
        raise CheckpointError(f"{source}: does not match {type(module).__name__} ({verdict.describe(6)}).")
    module.load_state_dict(state, strict=True, assign=True)
