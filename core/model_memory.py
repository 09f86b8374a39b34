"""What a model held by the model manager occupies and where: bytes, device and dtype of a
`torch.nn.Module` or of any object with `to(device)`, `nbytes`, `device` and `dtype` (the
captioner, a pipeline bundling several modules); how an out-of-memory error looks; host RAM.
"""

from __future__ import annotations

from collections import Counter
from typing import Any, Protocol

import torch


class Managed(Protocol):
    """What the manager needs from a non-Module model."""

    nbytes: int
    device: torch.device
    dtype: torch.dtype

    def to(self, device: Any) -> Any: ...


def module_bytes(module: torch.nn.Module) -> int:
    """Bytes held by a module's parameters and buffers (tied tensors counted once)."""
    seen: set[int] = set()
    total = 0
    for t in list(module.parameters()) + list(module.buffers()):
        if id(t) in seen:
            continue
        seen.add(id(t))
        total += t.numel() * t.element_size()
    return total


def module_dtype(module: torch.nn.Module) -> torch.dtype:
    """The dtype most of a module's floating-point parameters have (float32 when it has none)."""
    counts: Counter[torch.dtype] = Counter()
    for p in module.parameters():
        if p.dtype.is_floating_point:
            counts[p.dtype] += p.numel()
    return counts.most_common(1)[0][0] if counts else torch.float32


def model_bytes(model: Any) -> int:
    return module_bytes(model) if isinstance(model, torch.nn.Module) else int(model.nbytes)


def model_device(model: Any) -> torch.device:
    if isinstance(model, torch.nn.Module):
        for t in model.parameters():
            return t.device
        for t in model.buffers():
            return t.device
        return torch.device("cpu")
    return torch.device(model.device)


def model_dtype(model: Any) -> torch.dtype:
    return module_dtype(model) if isinstance(model, torch.nn.Module) else model.dtype


def is_oom(exc: BaseException) -> bool:
    """True for a CUDA out-of-memory error, or an allocator failure reported as RuntimeError."""
    if isinstance(exc, torch.OutOfMemoryError):
        return True
    if isinstance(exc, RuntimeError):
        msg = str(exc).lower()
        return "out of memory" in msg or "can't allocate memory" in msg or "failed to allocate" in msg
    return False


def same_device(a: torch.device, b: torch.device) -> bool:
    if a.type != b.type:
        return False
    if a.type != "cuda":
        return True
    cur = torch.cuda.current_device() if torch.cuda.is_available() else 0
    return (a.index if a.index is not None else cur) == (b.index if b.index is not None else cur)


def moved(model: Any, device: torch.device) -> Any:
    """`model` on `device` (moved in place or a moved copy, whichever its `to` gives)."""
    out = model.to(device)
    # nn.Module.to returns self; other objects may return a new one or None.
    return model if out is None else out


def total_ram() -> int:
    """Bytes of RAM on this machine."""
    try:
        import psutil

        return int(psutil.virtual_memory().total)
    except ImportError:  # pragma: no cover - psutil comes with accelerate
        import os

        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def available_ram() -> int:
    """Bytes of RAM available to new allocations now."""
    try:
        import psutil

        return int(psutil.virtual_memory().available)
    except ImportError:  # pragma: no cover
        import os

        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_AVPHYS_PAGES")
