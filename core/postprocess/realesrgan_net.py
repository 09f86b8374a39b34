"""Real-ESRGAN's network as the stage runs it: spandrel's module plus the denoise blend of the two
released general-x4v3 files. Imports torch, so the stage (core.postprocess.realesrgan) imports this
module only when it loads a network: listing the stages imports no torch.
"""

from __future__ import annotations

from typing import Any, Mapping

import torch


class RealESRGANNet(torch.nn.Module):
    """spandrel's network plus, for general-x4v3, the two released parameter sets to blend.

    forward(x): (B, 3, H, W) in [0, 1], the network's dtype and device -> (B, 3, 4H, 4W), not
    clamped. `set_denoise(s)` writes s * a + (1 - s) * b into the network's parameters (computed
    in float32, as upstream blends before casting) when the entry has the two files.
    """

    def __init__(self, descriptor: Any, blend: tuple[Mapping[str, Any], Mapping[str, Any]] | None = None):
        super().__init__()
        self.net = descriptor.model  # registered, so .to(device) and the manager's byte count see it
        self._descriptor = descriptor  # spandrel's callable wrapper around the same module
        self.scale = int(descriptor.scale)
        self.architecture = descriptor.architecture.id
        self.denoise: float | None = None
        self._names: list[str] = []
        if blend is not None:
            a, b = blend
            self._names = sorted(a)
            for i, k in enumerate(self._names):
                # float32 copies of both ends; buffers follow the module to its device
                self.register_buffer(f"dni_a{i}", a[k].float().clone(), persistent=False)
                self.register_buffer(f"dni_b{i}", b[k].float().clone(), persistent=False)

    @property
    def blendable(self) -> bool:
        return bool(self._names)

    def set_denoise(self, strength: float) -> None:
        if not self._names or self.denoise == strength:
            return
        target = self._descriptor.model.state_dict(keep_vars=True)
        with torch.no_grad():
            for i, k in enumerate(self._names):
                a, b = getattr(self, f"dni_a{i}"), getattr(self, f"dni_b{i}")
                target[k].copy_((strength * a + (1.0 - strength) * b).to(target[k].dtype))
        self.denoise = strength

    def forward(self, x):
        return self._descriptor(x)
