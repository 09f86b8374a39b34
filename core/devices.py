"""Is there a CUDA GPU torch can use? Answered without importing torch.

Importing torch costs seconds, and the dashboard needs the answer while it builds the page (the
device badge, which models are offered), long before any model runs. When torch is already
imported its own answer is used. Otherwise two cheap facts decide:

* the installed torch is a CUDA build: its generated `torch/version.py` says `cuda = '12.x'`
  (read as text, not imported); a CPU build (`cuda = None`) never sees a GPU;
* the NVIDIA driver reports at least one device: `cuInit` + `cuDeviceGetCount` from libcuda, the
  same driver calls torch's own check ends in (and `CUDA_VISIBLE_DEVICES` applies to both).

Anything this cannot read (a ROCm build, an unexpected version file) falls back to importing
torch and asking it.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import importlib.util
import re
import sys
from pathlib import Path

_CUDA_LINE = re.compile(r"^(cuda|hip)\s*(?::[^=]*)?=\s*(.+?)\s*$", re.M)


def cuda_available() -> bool:
    """True when torch will find a CUDA device (see the module docstring)."""
    torch = sys.modules.get("torch")
    if torch is not None:
        return bool(torch.cuda.is_available())
    build = torch_cuda_build()
    if build is None:  # cannot tell from the files: ask torch itself
        return _ask_torch()
    return build and driver_device_count() > 0


def torch_cuda_build() -> bool | None:
    """True for a CUDA build of the installed torch, False for a CPU-only build or no torch,
    None when its version file does not say (ROCm, or a layout this does not know)."""
    try:
        spec = importlib.util.find_spec("torch")  # locates the package, does not import it
    except (ImportError, ValueError):
        return False
    if spec is None or not spec.origin:
        return False
    try:
        text = (Path(spec.origin).parent / "version.py").read_text(encoding="utf-8")
    except OSError:
        return None
    values = {k: v for k, v in _CUDA_LINE.findall(text)}
    if "cuda" not in values or values.get("hip", "None") != "None":
        return None
    return values["cuda"] != "None"


def driver_device_count() -> int:
    """CUDA devices the NVIDIA driver reports (0 without a driver or a GPU)."""
    names = ["nvcuda.dll"] if sys.platform == "win32" else ["libcuda.so.1", "libcuda.so"]
    found = ctypes.util.find_library("cuda")
    if found:
        names.append(found)
    for name in names:
        try:
            lib = ctypes.CDLL(name)
        except OSError:
            continue
        try:
            if lib.cuInit(0) != 0:
                return 0
            count = ctypes.c_int(0)
            if lib.cuDeviceGetCount(ctypes.byref(count)) != 0:
                return 0
            return max(0, count.value)
        except (AttributeError, OSError):
            return 0
    return 0


def _ask_torch() -> bool:
    try:
        import torch

        return bool(torch.cuda.is_available())
    except Exception:  # torch missing or broken: no GPU to offer
        return False
