"""spandrel (architectures built from a state dict), imported where torchvision is absent.

Why this module exists: spandrel 0.4.2's package `__init__` imports its whole architecture
registry, and two of those architectures (LaMa, RestoreFormer) import `torchvision` at module
level. We use neither, but on the CPU build of our torch there is no working torchvision (PyPI's
wheel fails with "operator torchvision::nms does not exist", and a broken torchvision is worse
than none: libraries that probe it get a RuntimeError). So when torchvision is not installed,
`import_spandrel` imports spandrel once with a stand-in for the three names those two modules
take from `torchvision.transforms.functional`, and removes the stand-in from `sys.modules`
straight after, so `import torchvision` keeps raising ImportError for everyone else. Calling a
stand-in (only LaMa or RestoreFormer would) raises a clear error. Where torchvision is installed
(the GPU install), spandrel is imported as it is.

`build_network(state_dict, ...)` turns a state dict into spandrel's model descriptor and checks
that it is the expected architecture and scale.
"""

from __future__ import annotations

import importlib.machinery
import importlib.util
import sys
import threading
import types
from typing import Any, Mapping

from ..errors import CheckpointError, Unavailable

_lock = threading.Lock()
_STANDIN = ("torchvision", "torchvision.transforms", "torchvision.transforms.functional")


def _needs_torchvision(*_args: Any, **_kwargs: Any) -> Any:
    raise Unavailable("This spandrel architecture needs torchvision, which is not installed here.")


class _InterpolationMode:  # the one member LaMa reads at import time
    BILINEAR = "bilinear"


def _standin_modules() -> dict[str, types.ModuleType]:
    mods = {}
    for name in _STANDIN:
        m = types.ModuleType(name, "stand-in used only while spandrel is imported (see core.postprocess.spandrel_import)")
        m.__spec__ = importlib.machinery.ModuleSpec(name, None)
        mods[name] = m
    fn = mods["torchvision.transforms.functional"]
    fn.rotate = fn.normalize = _needs_torchvision
    fn.InterpolationMode = _InterpolationMode
    mods["torchvision"].transforms = mods["torchvision.transforms"]
    mods["torchvision.transforms"].functional = fn
    return mods


def import_spandrel() -> types.ModuleType:
    """The spandrel module; Unavailable (one line) when it is not installed or cannot load."""
    with _lock:
        if "spandrel" in sys.modules and hasattr(sys.modules["spandrel"], "ModelLoader"):
            return sys.modules["spandrel"]
        if importlib.util.find_spec("spandrel") is None:
            raise Unavailable("Real-ESRGAN needs the Python package 'spandrel', which is not installed; "
                              "run `pip install --no-deps spandrel==0.4.2` (see requirements.txt).")
        if importlib.util.find_spec("torchvision") is not None:
            return _plain_import()
        sys.modules.update(_standin_modules())
        try:
            return _plain_import()
        finally:
            for name in _STANDIN:
                sys.modules.pop(name, None)


def _plain_import() -> types.ModuleType:
    try:
        import spandrel
    except Exception as exc:  # a broken install (e.g. a torchvision that fails to load)
        raise Unavailable(f"spandrel cannot be imported here ({type(exc).__name__}: {exc}).") from None
    return spandrel


def build_network(state_dict: Mapping[str, Any], *, architecture: str, scale: int, source: str) -> Any:
    """spandrel's ImageModelDescriptor for `state_dict`, checked to be `architecture` (spandrel's
    id, e.g. "ESRGAN", "Compact") at `scale`; CheckpointError naming `source` otherwise."""
    spandrel = import_spandrel()
    try:
        desc = spandrel.ModelLoader().load_from_state_dict(dict(state_dict))
    except Exception as exc:  # spandrel raises UnsupportedModelError, KeyError, size mismatches
        raise CheckpointError(f"{source}: spandrel cannot build a network from it "
                              f"({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}).") from None
    if desc.architecture.id != architecture or desc.scale != scale:
        raise CheckpointError(f"{source}: holds a {desc.architecture.id} x{desc.scale} network, "
                              f"expected {architecture} x{scale}.")
    return desc


__all__ = ["import_spandrel", "build_network"]
