"""The deterministic weight rule used by the golden fixtures (shared/reference/golden/README.md).

Every parameter's value is a function of its *upstream* state-dict key and shape, so a model
built with the same key names reproduces the upstream weights with no file at all. Tests and
benchmarks use it to build full-size models without downloading anything.
"""

from __future__ import annotations

import math
import zlib
from typing import Callable, Optional

import torch
from torch import nn


def rule_tensor(key: str, shape: tuple[int, ...]) -> torch.Tensor:
    """The rule's value for one parameter, float32 on the CPU."""
    shape = tuple(int(s) for s in shape)
    g = torch.Generator().manual_seed(zlib.crc32(key.encode()))
    if len(shape) == 1 and key.endswith("weight"):
        return 1.0 + 0.1 * torch.randn(shape, generator=g)
    if len(shape) <= 1:
        return 0.02 * torch.randn(shape, generator=g)
    return torch.randn(shape, generator=g) / math.sqrt(math.prod(shape[1:]))


@torch.no_grad()
def fill_with_rule(
    module: nn.Module,
    to_upstream_key: Callable[[str], str] = lambda k: k,
    device: Optional[torch.device | str] = None,
    dtype: Optional[torch.dtype] = None,
) -> None:
    """Replace every parameter of `module` (which may live on the meta device) with its rule value.

    Each value is drawn in float32 on the CPU, cast once to `dtype` and moved to `device`, then
    swapped in, so peak memory is the final model plus one tensor. `to_upstream_key` maps our
    parameter names to the upstream state-dict keys the rule is defined on. Shared (tied)
    parameters are filled once. Buffers are left alone: the caller computes them.
    """
    seen: dict[int, nn.Parameter] = {}
    for name, p in list(module.named_parameters(remove_duplicate=False)):
        owner_name, _, attr = name.rpartition(".")
        owner = module.get_submodule(owner_name) if owner_name else module
        if id(p) in seen:
            setattr(owner, attr, seen[id(p)])
            continue
        value = rule_tensor(to_upstream_key(name), tuple(p.shape))
        value = value.to(device=device if device is not None else ("cpu" if p.is_meta else p.device),
                         dtype=dtype if dtype is not None else p.dtype)
        new = nn.Parameter(value, requires_grad=False)
        seen[id(p)] = new
        setattr(owner, attr, new)
