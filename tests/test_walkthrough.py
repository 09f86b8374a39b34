"""The walkthrough pipeline (core.walkthrough): the device is held only while a model computes.

Encoding a chain's video and measuring it are CPU work: another job must get the device while
they run, and one job's own steps must still run in order. Events, not sleeps, order the
threads; a bounded wait only turns a deadlock into a failure.
"""

from __future__ import annotations

import threading

import numpy as np
import pytest

from core import catalogue
from core.generators.kenburns import KenBurnsGenerator
from core.runs import Run
from core.service import CameraSpec, JobRequest, Studio, StudioSettings

SMALL = {"width": 96, "height": 64, "num_frames": 6}
WAIT_S = 30  # only reached when the code under test deadlocks


def photo(h=120, w=180, seed=0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.integers(0, 255, (h, w, 3), dtype=np.uint8)


@pytest.fixture()
def studio(tmp_path) -> Studio:
    return Studio(StudioSettings(root=tmp_path, outputs=tmp_path / "out", models=tmp_path / "none.json",
                                 min_free_bytes=0))


def test_a_second_job_gets_the_device_while_the_first_encodes(studio, monkeypatch):
    first_encoding = threading.Event()
    second_generating = threading.Event()
    seen: dict[str, bool] = {}
    real_write = Run.write_chain_video
    real_generate = KenBurnsGenerator.generate

    def write_chain_video(self, name, clip, fmt="mp4", **options):
        if name == "denoise" and fmt == "mp4":  # the first job's chain, computed on the device
            first_encoding.set()
            seen["second generated during the encode"] = second_generating.wait(WAIT_S)
        return real_write(self, name, clip, fmt, **options)

    def generate(self, request, progress):
        if request.seed == 2:
            second_generating.set()  # only reachable while holding the device lock
        return real_generate(self, request, progress)

    monkeypatch.setattr(Run, "write_chain_video", write_chain_video)
    monkeypatch.setattr(KenBurnsGenerator, "generate", generate)
    results: dict[int, list] = {}

    def run(seed: int, chains: tuple[str, ...]) -> None:
        results[seed] = list(studio.run_job(JobRequest(photo(), CameraSpec(preset="push-in"), seed=seed,
                                                       params=SMALL, chains=chains)))

    first = threading.Thread(target=run, args=(1, ("denoise",)))
    first.start()
    assert first_encoding.wait(WAIT_S)
    second = threading.Thread(target=run, args=(2, ("none",)))
    second.start()
    second.join(WAIT_S)
    first.join(WAIT_S)
    assert seen == {"second generated during the encode": True}
    assert [e.kind for e in results[1]] == ["started", "chain", "done"]
    assert [e.kind for e in results[2]] == ["started", "generated", "done"]


def test_one_jobs_steps_stay_in_order_and_the_device_is_held_while_stages_run(studio, monkeypatch):
    from core.postprocess.classical import LanczosUpscale, NLMeansDenoise

    log: list[tuple[str, bool]] = []
    lock = studio._device_lock
    real_write = Run.write_chain_video

    def free() -> bool:  # whether another job could take the device now (asked from this thread)
        if lock._is_owned():
            return False
        got = lock.acquire(blocking=False)
        if got:
            lock.release()
        return got

    def wrap(cls):
        real = cls.process

        def process(self, clip, params, progress):
            log.append((f"stage {self.name}", lock._is_owned()))
            return real(self, clip, params, progress)
        monkeypatch.setattr(cls, "process", process)

    wrap(NLMeansDenoise)
    wrap(LanczosUpscale)

    def write_chain_video(self, name, clip, fmt="mp4", **options):
        log.append((f"write {name}", not free()))
        return real_write(self, name, clip, fmt, **options)

    monkeypatch.setattr(Run, "write_chain_video", write_chain_video)
    events = list(studio.run_job(JobRequest(photo(), params=SMALL, chains=("denoise", "denoise+upscale"),
                                            stage_params={"lanczos": {"scale": 2}})))
    assert [e.chain for e in events if e.kind == "chain"] == ["denoise", "denoise+upscale"]
    # stages compute holding the device; each write runs with the device free, before the next stage
    assert log == [("stage nlmeans", True), ("write denoise", False),
                   ("stage lanczos", True), ("write denoise+upscale", False)]


def test_every_variant_row_names_functions_not_module_paths():
    for name, variant in catalogue.VARIANTS.items():
        assert variant.kind in ("generator", "stage"), name
        assert callable(variant.factory) and (variant.loader is None or callable(variant.loader)), name
    assert {"cami2v", "svd", "fastdvdnet", "upscale-a-video", "rife"} <= {
        n for n, v in catalogue.VARIANTS.items() if v.loader is not None}
