"""Keep loaded models resident on the accelerator, within a memory budget, across requests.

`ModelManager.get(name, loader)` returns the resident model (the same object every call) or
loads it. When a model does not fit, the least recently used ones are moved to the CPU (or
dropped, by policy or when CPU RAM is short too) and come back on the next `get`. Models in use
(`with manager.use(name) as m:`) are never evicted. `run_with_oom_recovery(fn)` turns a CUDA
out-of-memory error into eviction plus one retry, and otherwise into `core.errors.OutOfMemory`
with what the user can lower, so the app keeps serving.

A managed model is any `torch.nn.Module`, or an object with `to(device)`, `nbytes`, `device` and
`dtype` (the captioner, a pipeline bundling several modules).
"""

from __future__ import annotations

import gc
import logging
import threading
import time
from collections import Counter
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Iterator, Sequence, TypeVar

import torch

from .errors import OutOfMemory, StudioError
from .model_memory import (Managed, available_ram, is_oom, model_bytes, model_device, model_dtype, module_bytes,
                           module_dtype, moved, same_device, total_ram)

# Managed, module_bytes, module_dtype and is_oom are imported from here by the models' code.
__all__ = ["DROP", "OFFLOAD", "POLICIES", "DEFAULT_HINTS", "Loader", "Managed", "ModelManager", "is_oom",
           "module_bytes", "module_dtype"]

log = logging.getLogger(__name__)

GiB = 1024**3
T = TypeVar("T")

OFFLOAD = "offload"  # evicted models move to CPU RAM while it has room, else they are dropped
DROP = "drop"  # evicted models are released and reloaded on demand
POLICIES = (OFFLOAD, DROP)

_CUDA_HEADROOM = 512 * 1024**2
_LOAD_ADVICE = "choose a smaller model variant or close other programs that use the GPU"

DEFAULT_HINTS = ("the resolution", "the number of frames", "the number of steps", "the tile size")


Loader = Callable[[torch.device], Any]


@dataclass
class _Slot:
    name: str
    model: Any
    bytes: int
    last_used: float  # time.time(), for the status panel
    tick: int  # monotonic use counter, for LRU order
    pins: int = 0


@dataclass
class _Stats:
    loads: Counter = field(default_factory=Counter)
    offloads: Counter = field(default_factory=Counter)
    drops: Counter = field(default_factory=Counter)
    restores: Counter = field(default_factory=Counter)


class ModelManager:
    """Named models resident on one device, evicted least-recently-used first.

    device:        where models run (default: CUDA if available, else CPU).
    budget_bytes:  room for resident models on `device`. Default on CUDA: total memory minus
                   `reserve_bytes` (activations, other processes); on CPU: half the RAM.
    reserve_bytes: CUDA headroom kept free for activations (default max(4 GiB, 10 % of total)).
    policy:        "offload" (evicted models go to CPU RAM while `cpu_budget_bytes` and the
                   machine's available RAM allow, else they are dropped) or "drop".
    cpu_budget_bytes: cap on offloaded bytes (default: available RAM minus 2 GiB at eviction).

    All methods are thread-safe; loads happen under the manager's lock, so two requests never
    load the same model twice.
    """

    def __init__(self, device: torch.device | str | None = None, *, budget_bytes: int | None = None,
                 reserve_bytes: int | None = None, policy: str = OFFLOAD, cpu_budget_bytes: int | None = None):
        if policy not in POLICIES:
            raise ValueError(f"policy must be one of {POLICIES}, got {policy!r}")
        self.device = torch.device(device) if device is not None else (
            torch.device("cuda") if torch.cuda.is_available() else torch.device("cpu"))
        self.policy = policy
        self.reserve_bytes = reserve_bytes
        self.budget_bytes = budget_bytes if budget_bytes is not None else self._default_budget()
        self.cpu_budget_bytes = cpu_budget_bytes
        self._lock = threading.RLock()
        self._loaders: dict[str, Loader] = {}
        self._resident: dict[str, _Slot] = {}
        self._offloaded: dict[str, _Slot] = {}
        self._tick = 0
        self.stats = _Stats()

    # -- budget ------------------------------------------------------------------------------
    def _default_budget(self) -> int:
        if self.device.type == "cuda":
            _free, total = torch.cuda.mem_get_info(self.device)
            reserve = self.reserve_bytes if self.reserve_bytes is not None else max(4 * GiB, total // 10)
            return max(total - reserve, 0)
        return total_ram() // 2

    @property
    def used_bytes(self) -> int:
        with self._lock:
            return sum(s.bytes for s in self._resident.values())

    @property
    def offloaded_bytes(self) -> int:
        with self._lock:
            return sum(s.bytes for s in self._offloaded.values())

    # -- registration and access ----------------------------------------------------------------
    def register(self, name: str, loader: Loader) -> None:
        """Remember how to (re)load `name`: `loader(device)` returns the model, ideally already on
        `device` (the manager moves it there otherwise)."""
        with self._lock:
            self._loaders[name] = loader

    def provider(self, name: str, loader: Loader) -> Callable[[], Any]:
        """Register `loader` for `name` and return `get()` for it: what a stage or generator
        receives as its model (loaded on the first call, then resident)."""
        self.register(name, loader)
        return lambda: self.get(name)

    def get(self, name: str, loader: Loader | None = None, *, size_hint: int | None = None) -> Any:
        """The model `name` on the manager's device: resident, restored from CPU, or loaded.

        `size_hint` (bytes) lets the manager make room before a load that would otherwise not fit.
        """
        with self._lock:
            if loader is not None:
                self._loaders[name] = loader
            slot = self._resident.get(name)
            if slot is None:
                slot = self._restore(name) if name in self._offloaded else self._load(name, size_hint)
            self._touch(slot)
            return slot.model

    @contextmanager
    def use(self, name: str, loader: Loader | None = None, *, size_hint: int | None = None) -> Iterator[Any]:
        """`get`, and keep the model pinned (never evicted) until the block ends."""
        with self._lock:
            model = self.get(name, loader, size_hint=size_hint)
            slot = self._resident[name]
            slot.pins += 1
        try:
            yield model
        finally:
            with self._lock:
                slot.pins -= 1
                self._touch(slot)

    def preload(self, names: Iterable[str]) -> list[str]:
        """Load registered models now (in order) so the first request does not wait; returns the
        names that are resident afterwards (a later one may have evicted an earlier one)."""
        for name in names:
            if name not in self._loaders:
                raise KeyError(f"no loader registered for model {name!r}")
            self.get(name)
        with self._lock:
            return [n for n in names if n in self._resident]

    def is_resident(self, name: str) -> bool:
        with self._lock:
            return name in self._resident

    def unload(self, name: str) -> bool:
        """Release `name` (resident or offloaded); True if it was loaded."""
        with self._lock:
            slot = self._resident.pop(name, None) or self._offloaded.pop(name, None)
        if slot is None:
            return False
        del slot
        self._collect()
        return True

    def clear(self) -> None:
        with self._lock:
            self._resident.clear()
            self._offloaded.clear()
        self._collect()

    # -- status ------------------------------------------------------------------------------
    def status(self) -> list[dict[str, Any]]:
        """One row per known model for a status panel: name, state ("resident" | "offloaded" |
        "not loaded"), device, dtype, bytes, last_used (epoch seconds or None), pinned."""
        with self._lock:
            rows = []
            for state, slots in (("resident", self._resident), ("offloaded", self._offloaded)):
                for s in sorted(slots.values(), key=lambda s: -s.tick):
                    rows.append({"name": s.name, "state": state, "device": str(model_device(s.model)),
                                 "dtype": str(model_dtype(s.model)).removeprefix("torch."), "bytes": s.bytes,
                                 "last_used": s.last_used, "pinned": s.pins > 0})
            for name in self._loaders:
                if name not in self._resident and name not in self._offloaded:
                    rows.append({"name": name, "state": "not loaded", "device": None, "dtype": None,
                                 "bytes": 0, "last_used": None, "pinned": False})
            return rows

    def summary(self) -> dict[str, Any]:
        """Device-level figures: budget, bytes held by resident and offloaded models, and (CUDA)
        what the driver reports free and total."""
        out: dict[str, Any] = {"device": str(self.device), "budget_bytes": self.budget_bytes,
                               "used_bytes": self.used_bytes, "offloaded_bytes": self.offloaded_bytes,
                               "policy": self.policy}
        if self.device.type == "cuda":
            free, total = torch.cuda.mem_get_info(self.device)
            out.update(free_bytes=free, total_bytes=total, peak_allocated_bytes=torch.cuda.max_memory_allocated(self.device))
        return out

    # -- out-of-memory recovery ------------------------------------------------------------------
    def free_memory(self, keep: Iterable[str] = ()) -> int:
        """Evict every unpinned resident model not in `keep`, then release cached memory; returns
        the bytes evicted."""
        keep = set(keep)
        with self._lock:
            victims = [s for s in sorted(self._resident.values(), key=lambda s: s.tick)
                       if s.pins == 0 and s.name not in keep]
            freed = 0
            for s in victims:
                freed += s.bytes
                self._evict(s)
        self._collect()
        return freed

    def run_with_oom_recovery(self, fn: Callable[[], T], *, task: str = "this job",
                              hints: Sequence[str] = DEFAULT_HINTS, keep: Iterable[str] = (),
                              advice: str | None = None) -> T:
        """Run `fn()`; on out-of-memory evict idle models (all but `keep` and pinned ones), free
        cached memory and retry once if that freed anything. A second failure (or nothing to
        evict) raises OutOfMemory naming `task` and what to lower (`hints`, each completing
        "lower ..."), or `advice` verbatim when given."""
        keep = tuple(keep)
        try:
            return fn()
        except Exception as exc:  # noqa: BLE001 - filtered by is_oom
            if not is_oom(exc):
                raise
        # Outside the except block, so the failed attempt's frames (and tensors) are released.
        freed = self.free_memory(keep)
        if freed == 0:
            raise self._oom_error(task, hints, retried=False, advice=advice)
        log.warning("out of memory during %s; evicted %.2f GiB and retrying once", task, freed / GiB)
        try:
            return fn()
        except Exception as exc:  # noqa: BLE001
            if not is_oom(exc):
                raise
        self.free_memory(keep)
        raise self._oom_error(task, hints, retried=True, advice=advice)

    @contextmanager
    def oom_guard(self, *, task: str = "this job", hints: Sequence[str] = DEFAULT_HINTS,
                  keep: Iterable[str] = ()) -> Iterator[None]:
        """Turn an out-of-memory error inside the block into OutOfMemory after freeing memory
        (evicting idle models), so the next request starts clean. No retry: use
        `run_with_oom_recovery` for that."""
        try:
            yield
        except StudioError:
            raise
        except Exception as exc:  # noqa: BLE001
            if not is_oom(exc):
                raise
            del exc
            self.free_memory(keep)
            raise self._oom_error(task, hints, retried=False) from None

    def _oom_error(self, task: str, hints: Sequence[str], retried: bool, advice: str | None = None) -> OutOfMemory:
        where = "GPU" if self.device.type == "cuda" else "CPU"
        what = advice or (f"lower {_join(hints)}" if hints else "use smaller settings")
        also = " even after unloading the other models" if retried else ""
        return OutOfMemory(f"Ran out of {where} memory during {task}{also}; {what} and try again.")

    # -- internals -------------------------------------------------------------------------
    def _touch(self, slot: _Slot) -> None:
        self._tick += 1
        slot.tick = self._tick
        slot.last_used = time.time()

    def _load(self, name: str, size_hint: int | None) -> _Slot:
        loader = self._loaders.get(name)
        if loader is None:
            raise KeyError(f"no loader registered for model {name!r}")
        if size_hint:
            self._make_room(size_hint, exclude=name)

        def attempt() -> Any:
            model = loader(self.device)
            if not same_device(model_device(model), self.device):
                model = moved(model, self.device)
            return model

        model = self.run_with_oom_recovery(attempt, task=f"loading {name}", advice=_LOAD_ADVICE)
        slot = _Slot(name, model, model_bytes(model), time.time(), 0)
        self._resident[name] = slot
        self.stats.loads[name] += 1
        self._touch(slot)
        self._make_room(0, exclude=name)
        return slot

    def _restore(self, name: str) -> _Slot:
        slot = self._offloaded.pop(name)
        self._make_room(slot.bytes, exclude=name)
        try:
            slot.model = self.run_with_oom_recovery(lambda: moved(slot.model, self.device),
                                                    task=f"moving {name} back to the {self.device.type.upper()}",
                                                    advice=_LOAD_ADVICE)
        except BaseException:
            self._offloaded[name] = slot
            raise
        self._resident[name] = slot
        self.stats.restores[name] += 1
        return slot

    def _make_room(self, incoming: int, exclude: str) -> None:
        """Evict LRU unpinned models until resident bytes + `incoming` fit the budget and (CUDA)
        the driver reports room for `incoming` plus a little headroom."""
        while True:
            over_budget = self.used_bytes + incoming > self.budget_bytes
            short = incoming > 0 and self._device_free() < incoming + _CUDA_HEADROOM
            if not (over_budget or short):
                break
            victims = [s for s in self._resident.values() if s.pins == 0 and s.name != exclude]
            if not victims:
                if over_budget:
                    log.warning("model budget exceeded: %.2f GiB resident + %.2f GiB incoming > %.2f GiB",
                                self.used_bytes / GiB, incoming / GiB, self.budget_bytes / GiB)
                break
            self._evict(min(victims, key=lambda s: s.tick))
            self._collect_cuda()

    def _device_free(self) -> int:
        """Free bytes on a CUDA device as the driver sees them (other processes included);
        unbounded elsewhere (the budget alone applies)."""
        if self.device.type != "cuda" or not torch.cuda.is_available():
            return 1 << 62
        return int(torch.cuda.mem_get_info(self.device)[0])

    def _evict(self, slot: _Slot) -> None:
        del self._resident[slot.name]
        if self.policy == OFFLOAD and self.device.type != "cpu" and self._cpu_has_room(slot.bytes):
            try:
                slot.model = moved(slot.model, torch.device("cpu"))
            except Exception as exc:  # noqa: BLE001 - e.g. 4-bit models cannot move; drop them instead
                log.info("cannot offload %s to CPU (%s); dropping it", slot.name, exc)
            else:
                self._offloaded[slot.name] = slot
                self.stats.offloads[slot.name] += 1
                return
        self.stats.drops[slot.name] += 1
        slot.model = None

    def _cpu_has_room(self, nbytes: int) -> bool:
        if self.cpu_budget_bytes is not None and self.offloaded_bytes + nbytes > self.cpu_budget_bytes:
            return False
        return available_ram() - 2 * GiB >= nbytes

    def _collect(self) -> None:
        gc.collect()
        self._collect_cuda()

    def _collect_cuda(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.empty_cache()


def _join(items: Sequence[str]) -> str:
    items = list(items)
    if len(items) <= 1:
        return "".join(items)
    return ", ".join(items[:-1]) + " or " + items[-1]
