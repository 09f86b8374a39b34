"""ModelManager: residency, LRU eviction under a budget, offload and restore, pinning, OOM
recovery, preload, status, thread safety. Small real torch modules on the CPU; offloading is
exercised through `SimulatedGPU`, a real module behind the manager's non-Module protocol that
records which device it was sent to (CI has no GPU)."""

from __future__ import annotations

import threading

import pytest
import torch

from core.errors import OutOfMemory
from core.manager import DROP, ModelManager, is_oom, module_bytes


def mlp(width: int, dtype=torch.float32) -> torch.nn.Module:
    torch.manual_seed(width)
    return torch.nn.Sequential(torch.nn.Linear(width, width), torch.nn.GELU(), torch.nn.Linear(width, 4)).to(dtype)


SIZE = module_bytes(mlp(32))  # every test model has the same footprint


class Loaders:
    """Loader factory that counts calls per name."""

    def __init__(self, width: int = 32, make=None):
        self.calls: dict[str, int] = {}
        self.width = width
        self.make = make or (lambda name, device: mlp(self.width).to(device))

    def __call__(self, name: str):
        def load(device):
            self.calls[name] = self.calls.get(name, 0) + 1
            return self.make(name, device)

        return load


class SimulatedGPU:
    """A real module that the manager can "move" between a pretend accelerator and the CPU."""

    def __init__(self, module: torch.nn.Module, device="cuda"):
        self.module = module
        self.device = torch.device(device)
        self.moves: list[str] = []

    @property
    def nbytes(self) -> int:
        return module_bytes(self.module)

    @property
    def dtype(self) -> torch.dtype:
        return next(self.module.parameters()).dtype

    def to(self, device):
        self.device = torch.device(device)
        self.moves.append(self.device.type)
        return self


def cpu_manager(models: float, **kw) -> ModelManager:
    return ModelManager("cpu", budget_bytes=int(models * SIZE), **kw)


def test_module_bytes_counts_parameters_and_buffers_once():
    m = torch.nn.BatchNorm1d(10)
    assert module_bytes(m) == (10 + 10 + 10 + 10) * 4 + 8  # weight, bias, running mean/var, count
    tied = torch.nn.Linear(8, 8, bias=False)
    holder = torch.nn.ModuleList([tied, tied])
    assert module_bytes(holder) == 64 * 4


def test_same_object_across_calls_no_reload():
    mgr, load = cpu_manager(4), Loaders()
    a = mgr.get("a", load("a"))
    assert mgr.get("a") is a and mgr.get("a", load("a")) is a
    assert load.calls == {"a": 1}
    x = torch.randn(2, 32)
    torch.testing.assert_close(mgr.get("a")(x), a(x))


def test_lru_eviction_order_and_reload_on_demand():
    mgr, load = cpu_manager(2.5), Loaders()
    a = mgr.get("a", load("a"))
    mgr.get("b", load("b"))
    mgr.get("c", load("c"))  # a is the least recently used
    assert [r["name"] for r in mgr.status() if r["state"] == "resident"] == ["c", "b"]
    assert not mgr.is_resident("a")
    mgr.get("b")  # now c is the LRU
    a2 = mgr.get("a")  # comes back (reloaded: on a CPU device eviction drops)
    assert a2 is not a and load.calls["a"] == 2
    assert mgr.is_resident("b") and not mgr.is_resident("c")
    assert mgr.used_bytes == 2 * SIZE <= mgr.budget_bytes
    assert mgr.stats.drops == {"a": 1, "c": 1}


def test_offload_to_cpu_and_back_keeps_the_object():
    load = Loaders(make=lambda name, device: SimulatedGPU(mlp(32), device))
    mgr = ModelManager("cuda", budget_bytes=int(1.5 * SIZE))
    a = mgr.get("a", load("a"))
    assert a.device.type == "cuda"
    b = mgr.get("b", load("b"))
    assert a.device.type == "cpu" and b.device.type == "cuda"
    rows = {r["name"]: r for r in mgr.status()}
    assert rows["a"]["state"] == "offloaded" and rows["a"]["device"] == "cpu"
    assert rows["b"]["state"] == "resident" and rows["b"]["device"] == "cuda"
    assert mgr.offloaded_bytes == SIZE and mgr.used_bytes == SIZE

    weights = a.module[0].weight.detach().clone()
    assert mgr.get("a") is a  # restored, not reloaded
    assert a.device.type == "cuda" and b.device.type == "cpu"
    assert a.moves == ["cpu", "cuda"]
    assert load.calls == {"a": 1, "b": 1}
    torch.testing.assert_close(a.module[0].weight, weights)
    assert mgr.stats.restores == {"a": 1} and mgr.stats.offloads == {"a": 1, "b": 1}


def test_drop_when_cpu_ram_is_short_or_by_policy():
    make = lambda name, device: SimulatedGPU(mlp(32), device)  # noqa: E731
    for kw in ({"cpu_budget_bytes": SIZE // 2}, {"policy": DROP}):
        load = Loaders(make=make)
        mgr = ModelManager("cuda", budget_bytes=int(1.5 * SIZE), **kw)
        mgr.get("a", load("a"))
        mgr.get("b", load("b"))
        assert [r["state"] for r in mgr.status() if r["name"] == "a"] == ["not loaded"]
        mgr.get("a")
        assert load.calls["a"] == 2, kw


def test_unmovable_model_is_dropped_instead_of_offloaded():
    class Stuck(SimulatedGPU):
        def to(self, device):
            if torch.device(device).type == "cpu":
                raise ValueError("4-bit models cannot be moved")
            return super().to(device)

    load = Loaders(make=lambda name, device: Stuck(mlp(32), device))
    mgr = ModelManager("cuda", budget_bytes=int(1.5 * SIZE))
    mgr.get("a", load("a"))
    mgr.get("b", load("b"))
    assert mgr.stats.drops == {"a": 1} and mgr.offloaded_bytes == 0


def test_pinned_models_are_not_evicted():
    mgr, load = cpu_manager(1.5), Loaders()
    with mgr.use("a", load("a")) as a:
        mgr.get("b", load("b"))  # over budget, but a is in use
        assert mgr.is_resident("a") and mgr.is_resident("b")
        assert any(r["pinned"] for r in mgr.status() if r["name"] == "a")
        mgr.get("c", load("c"))  # evicts b, never a
        assert mgr.is_resident("a") and not mgr.is_resident("b")
        assert mgr.get("a") is a
    mgr.get("b")  # a is free again and now the LRU
    assert not mgr.is_resident("a")


def test_size_hint_makes_room_before_loading():
    seen = []

    def make(name, device):
        seen.append([r["name"] for r in mgr.status() if r["state"] == "resident"])
        return mlp(32)

    mgr, load = cpu_manager(2.5), Loaders(make=make)
    mgr.get("a", load("a"))
    mgr.get("b", load("b"))
    mgr.get("c", load("c"), size_hint=2 * SIZE)
    assert seen[-1] == []  # both evicted before c's loader ran


def test_preload_and_status():
    mgr, load = cpu_manager(3), Loaders()
    for name in ("a", "b", "c"):
        mgr.register(name, load(name))
    assert mgr.preload(["a", "b"]) == ["a", "b"]
    mgr.get("a")
    assert load.calls == {"a": 1, "b": 1}
    rows = mgr.status()
    assert [(r["name"], r["state"]) for r in rows] == [("a", "resident"), ("b", "resident"), ("c", "not loaded")]
    a = rows[0]
    assert a["device"] == "cpu" and a["dtype"] == "float32" and a["bytes"] == SIZE and a["last_used"] > 0
    assert rows[0]["last_used"] >= rows[1]["last_used"]
    s = mgr.summary()
    assert s["used_bytes"] == 2 * SIZE and s["budget_bytes"] == 3 * SIZE
    with pytest.raises(KeyError, match="zzz"):
        mgr.preload(["zzz"])


def test_status_reports_dtype_of_half_models():
    mgr = cpu_manager(4)
    mgr.get("half", lambda device: mlp(32, torch.bfloat16))
    (row,) = mgr.status()
    assert row["dtype"] == "bfloat16" and row["bytes"] == SIZE // 2


def test_unload_and_clear():
    mgr, load = cpu_manager(4), Loaders()
    mgr.get("a", load("a"))
    mgr.get("b", load("b"))
    assert mgr.unload("a") and not mgr.unload("a")
    assert mgr.used_bytes == SIZE
    mgr.clear()
    assert mgr.used_bytes == 0
    mgr.get("a")
    assert load.calls["a"] == 2


# -- out-of-memory recovery ----------------------------------------------------------------------

class FlakyOOM:
    """Raises a (simulated) OOM the first `fail` times, then returns "done"."""

    def __init__(self, fail: int, exc: Exception | None = None):
        self.fail = fail
        self.calls = 0
        self.exc = exc or RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB")

    def __call__(self):
        self.calls += 1
        if self.calls <= self.fail:
            raise self.exc
        return "done"


def test_oom_recovery_evicts_idle_models_and_retries_once():
    mgr, load = cpu_manager(4), Loaders()
    mgr.get("a", load("a"))
    mgr.get("b", load("b"))
    job = FlakyOOM(1)
    assert mgr.run_with_oom_recovery(job, task="generation", keep=["b"]) == "done"
    assert job.calls == 2
    assert not mgr.is_resident("a") and mgr.is_resident("b")  # kept as asked


def test_oom_with_nothing_to_evict_names_what_to_lower():
    mgr = cpu_manager(4)
    job = FlakyOOM(5, torch.OutOfMemoryError("CUDA out of memory"))
    with pytest.raises(OutOfMemory) as err:
        mgr.run_with_oom_recovery(job, task="upscaling", hints=("the tile size", "the number of frames"))
    assert job.calls == 1
    msg = str(err.value)
    assert "upscaling" in msg and "the tile size or the number of frames" in msg and "\n" not in msg


def test_oom_twice_gives_up_after_one_retry():
    mgr, load = cpu_manager(4), Loaders()
    mgr.get("a", load("a"))
    job = FlakyOOM(5)
    with pytest.raises(OutOfMemory, match="even after unloading"):
        mgr.run_with_oom_recovery(job, task="generation")
    assert job.calls == 2


def test_other_errors_pass_through_untouched():
    mgr = cpu_manager(4)

    def broken():
        raise ValueError("shape mismatch")

    with pytest.raises(ValueError, match="shape mismatch"):
        mgr.run_with_oom_recovery(broken)
    with pytest.raises(ValueError):
        with mgr.oom_guard():
            broken()


def test_oom_guard_frees_memory_and_raises_clear_error():
    mgr, load = cpu_manager(4), Loaders()
    mgr.get("a", load("a"))
    with pytest.raises(OutOfMemory, match="denoising; lower the resolution"):
        with mgr.oom_guard(task="denoising", hints=("the resolution",)):
            raise torch.cuda.OutOfMemoryError("CUDA out of memory")
    assert mgr.used_bytes == 0
    # The manager keeps serving.
    assert mgr.get("a") is not None and load.calls["a"] == 2


def test_oom_while_loading_evicts_and_retries():
    mgr, load = cpu_manager(4), Loaders()
    mgr.get("a", load("a"))
    tries = []

    def big(device):
        tries.append(device)
        if len(tries) == 1:
            raise RuntimeError("CUDA out of memory")
        return mlp(32)

    mgr.get("big", big)
    assert len(tries) == 2 and not mgr.is_resident("a") and mgr.is_resident("big")


def test_model_that_never_fits_gives_a_clear_error_and_nothing_half_loaded():
    mgr, load = cpu_manager(4), Loaders()
    mgr.get("a", load("a"))

    def huge(device):
        raise torch.OutOfMemoryError("CUDA out of memory")

    with pytest.raises(OutOfMemory, match="loading huge even after unloading.*smaller model variant"):
        mgr.get("huge", huge)
    assert [r["state"] for r in mgr.status() if r["name"] == "huge"] == ["not loaded"]
    assert mgr.get("a") is not None


def test_is_oom():
    assert is_oom(torch.OutOfMemoryError("x"))
    assert is_oom(RuntimeError("CUDA error: out of memory"))
    assert is_oom(RuntimeError("DefaultCPUAllocator: can't allocate memory: you tried to allocate 1 bytes"))
    assert not is_oom(RuntimeError("expected scalar type Float"))
    assert not is_oom(MemoryError())  # Python heap exhaustion is not the device's


# -- threads --------------------------------------------------------------------------------------

def test_concurrent_gets_load_once():
    mgr, load = cpu_manager(4), Loaders()
    start = threading.Barrier(8)
    got = []

    def worker():
        start.wait()
        got.append(mgr.get("a", load("a")))

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert load.calls == {"a": 1} and len(got) == 8 and all(m is got[0] for m in got)


def test_bad_policy():
    with pytest.raises(ValueError, match="policy"):
        ModelManager("cpu", budget_bytes=1, policy="swap")
