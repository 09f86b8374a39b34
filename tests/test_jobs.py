"""Server-owned jobs (core/jobs.py), their progress timeline (core/eta.py) and per-frame stage
progress. Jobs here are either tiny synthetic bodies or 96x64 Ken Burns walkthroughs (CPU, < 1 s)."""

from __future__ import annotations

import json
import threading

import numpy as np
import pytest

from core.clip import Clip
from core.errors import Cancelled, StudioError
from core.eta import RateBook, Step, Timeline
from core.jobs import JobEvent, JobRegistry, ProgressUpdate
from core.postprocess import chains as chainlib
from core.postprocess.base import Stage
from core.service import JobRequest, Studio, StudioSettings

SMALL = {"width": 96, "height": 64}


def photo(h=120, w=180, seed=0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (h, w, 3), dtype=np.uint8)


@pytest.fixture()
def studio(tmp_path) -> Studio:
    return Studio(StudioSettings(root=tmp_path, outputs=tmp_path / "out", models=tmp_path / "none.json",
                                 min_free_bytes=0))


def gated_body(gates: list[threading.Event]):
    """A job that yields one "chain" event per gate, each after its gate opens."""

    def body(ctx):
        yield JobEvent("started", "run-x")
        for i, gate in enumerate(gates):
            while not gate.wait(0.05):
                ctx.progress.check()  # a cancel is honoured while waiting
            ctx.progress((i + 1) / len(gates), f"step {i + 1}")
            yield JobEvent("chain", chain=f"c{i}")

    return body


# -- the registry --------------------------------------------------------------------------------

def test_follow_from_the_middle_and_two_followers_see_the_same_log():
    reg = JobRegistry()
    gates = [threading.Event() for _ in range(3)]
    job = reg.submit(gated_body(gates), kind="test", user="ann")
    first: list[JobEvent] = []
    second: list[JobEvent] = []
    t1 = threading.Thread(target=lambda: first.extend(reg.follow(job)))
    t2 = threading.Thread(target=lambda: second.extend(reg.follow(job)))
    t1.start(), t2.start()
    gates[0].set()
    for ev in reg.follow(job):  # wait until the first chain is logged
        if ev.kind == "chain":
            break
    info = reg.info(job)
    assert info.status == "running" and info.run_id == "run-x" and info.user == "ann"
    mid = info.events
    for g in gates[1:]:
        g.set()
    late = list(reg.follow(job, since=mid))  # a late subscriber starting where the log was
    t1.join(5), t2.join(5)
    assert [e.seq for e in first] == list(range(len(first)))  # nothing missed, nothing twice
    assert [(e.kind, e.chain, e.seq) for e in first] == [(e.kind, e.chain, e.seq) for e in second]
    assert [e.seq for e in late] == list(range(mid, len(first)))
    assert [e.chain for e in first if e.kind == "chain"] == ["c0", "c1", "c2"]
    assert first[-1].kind == "done" and all(e.job_id == job for e in first)
    assert any(e.kind == "progress" and e.fraction == 1.0 for e in first)
    assert reg.info(job).status == "complete" and reg.jobs() == []  # no longer active
    assert [i.id for i in reg.jobs(active_only=False)] == [job]


def test_cancel_is_the_only_way_to_stop_and_queued_jobs_wait_their_turn():
    reg = JobRegistry()
    gates = [threading.Event()]
    running = reg.submit(gated_body(gates), kind="test", user="ann")
    queued = reg.submit(gated_body([threading.Event()]), kind="test", user="bob")
    assert reg.info(queued).status == "queued" and reg.info(queued).queue_position == 1
    assert [i.id for i in reg.jobs(user="bob")] == [queued]
    # a follower that goes away changes nothing
    it = reg.follow(running)
    assert next(it).kind == "started"
    it.close()
    assert reg.info(running).status == "running"
    assert not reg.cancel(running, user="bob")  # someone else's job
    assert reg.cancel(queued) and reg.cancel(running)
    assert reg.wait(running, 5).status == "cancelled"
    assert reg.wait(queued, 5).status == "cancelled"
    log = reg.events(running)
    assert log[-1].kind == "cancelled" and log[-1].error and log[-1].run_id == "run-x"
    assert not reg.cancel(running)  # finished: nothing to cancel


def test_a_failing_body_ends_with_one_failed_event_and_the_worker_goes_on():
    reg = JobRegistry()

    def bad(ctx):
        yield JobEvent("started", "run-y")
        yield JobEvent("chain", chain="kept")
        raise StudioError("The upscaler ran out of patience.")

    def boom(ctx):
        raise ZeroDivisionError("x")
        yield  # pragma: no cover

    a, b = reg.submit(bad), reg.submit(boom)
    assert reg.wait(a, 5).status == "failed" and reg.info(a).error == "The upscaler ran out of patience."
    kinds = [e.kind for e in reg.events(a)]
    assert kinds == ["started", "chain", "failed"]
    assert reg.wait(b, 5).status == "failed" and "ZeroDivisionError" in reg.info(b).error
    ok = reg.submit(gated_body([]))
    assert reg.wait(ok, 5).status == "complete"


def test_progress_events_are_thinned_but_the_last_state_is_kept():
    reg = JobRegistry()

    def chatty(ctx):
        for i in range(500):
            ctx.report(ProgressUpdate((i + 1) / 500, f"frame {i + 1} of 500", "stage"))
        yield JobEvent("chain", chain="x")

    job = reg.submit(chatty)
    reg.wait(job, 5)
    progress = [e for e in reg.events(job) if e.kind == "progress"]
    assert 1 <= len(progress) < 100 and progress[-1].fraction == 1.0


# -- walkthroughs as server jobs -----------------------------------------------------------------

def test_the_consumer_going_away_does_not_cancel_a_walkthrough(studio):
    job = studio.submit_job(JobRequest(photo(), params=SMALL, chains=("none", "upscale", "denoise")), user="ann")
    events = studio.follow(job)
    started = next(events)
    assert started.kind == "started"
    events.close()  # the browser tab went away
    info = studio.wait_job(job, 60)
    assert info.status == "complete", info.error
    run = studio.open_run(started.run_id)
    assert run.status == "complete"
    assert set(run.data["chains"]) == {"none", "upscale", "denoise"}
    assert all(c["files"].get("mp4") for c in run.data["chains"].values())
    metrics = json.loads(run.path("metrics").read_text())
    assert set(metrics["chains"]) == {"none", "upscale", "denoise"}
    # a second subscriber, later, still sees the whole story
    kinds = [e.kind for e in studio.follow(job)]
    assert kinds[0] == "started" and kinds[-1] == "done" and kinds.count("chain") == 2


class _Failing(Stage):
    name, label, role = "lanczos", "Failing Lanczos", "upscale"

    def process(self, clip, params, progress):
        progress(0.5, "half way")
        raise StudioError("The failing stage failed.")


def test_a_failure_keeps_what_was_produced(studio):
    studio._stages["lanczos"] = _Failing()  # the service's resident instance of "lanczos"
    job = studio.submit_job(JobRequest(photo(), params=SMALL, chains=("none", "denoise", "upscale")))
    info = studio.wait_job(job, 60)
    assert info.status == "failed" and info.error == "The failing stage failed."
    log = studio.jobs.events(job)
    assert log[-1].kind == "failed" and [e.chain for e in log if e.kind in ("generated", "chain")] == ["none", "denoise"]
    run = studio.open_run(info.run_id)
    assert run.status == "failed"
    for name in ("none", "denoise"):
        assert (run.dir / run.data["chains"][name]["files"]["mp4"]).is_file()


def test_cancel_a_server_job_through_the_studio(studio):
    gate = threading.Event()
    blocker = studio.submit(gated_body([gate]), kind="test")
    job = studio.submit_job(JobRequest(photo(), params=SMALL, chains=("none",)))
    assert [i.id for i in studio.active_jobs()] == [job, blocker]
    assert studio.cancel(job)
    gate.set()
    assert studio.wait_job(job, 30).status == "cancelled"


# -- progress: per frame, per chain, ETA from measured rates --------------------------------------

def test_every_stage_reports_each_frame_with_its_chain():
    rng = np.random.default_rng(1)
    clip = Clip(rng.integers(0, 256, (6, 24, 32, 3), dtype=np.uint8), 8.0)
    seen: dict[tuple[str, ...], list[str]] = {}

    def sink(k, prefix):
        return chainlib.Progress(lambda f, m: seen.setdefault(prefix, []).append(m))

    chainlib.run_chains(clip, ["denoise", "upscale+denoise"], {"lanczos": {"scale": 2}}, stage_progress=sink)
    assert list(seen) == [("nlmeans",), ("lanczos",), ("lanczos", "nlmeans")]
    for prefix, msgs in seen.items():
        frames = [m for m in msgs if "frame" in m]
        assert [m.split("frame ")[1].split()[0] for m in frames] == [f"{i}/6" for i in range(1, 7)], msgs
    assert all(m.startswith("chain 1 of 2 (denoise): ") for m in seen[("nlmeans",)])
    assert all(m.startswith("chain 2 of 2 (upscale+denoise): ") for m in seen[("lanczos", "nlmeans")])


def test_eta_comes_from_the_measured_rate_scaled_to_the_next_step():
    now = [0.0]
    updates: list[ProgressUpdate] = []
    rates = RateBook(priors={})
    # the same stage at 1x and then 16x the pixels (an x4 upscale in between)
    tl = Timeline([Step("stage:nl", "small", 1.0), Step("stage:nl", "large", 16.0)], rates, updates.append,
                  clock=lambda: now[0])
    assert tl.eta() is None  # nothing measured: no invented number
    tl.start(0)
    now[0] = 2.0
    tl.step(0)(0.5, "frame 8 of 16")
    assert updates[-1].eta_s is None  # the running step is measured, the next never was: no guess
    now[0] = 4.0
    tl.finish(0)
    tl.start(1)
    assert updates[-1].eta_s == pytest.approx(64.0)  # 4 s per unit x 16 units
    assert updates[-1].fraction == pytest.approx(4 / 68)
    assert rates.rate("stage:nl") == pytest.approx(4.0)
    with pytest.raises(Cancelled):
        tl.cancel_event.set()
        tl.step(1)(0.1, "frame 2 of 16")


def test_rates_persist_and_a_damaged_file_costs_only_the_priors(tmp_path):
    f = tmp_path / "rates.json"
    RateBook(f, priors={}).record("stage:x", 6.0, 2.0)
    assert RateBook(f, priors={}).rate("stage:x") == pytest.approx(3.0)
    f.write_text("{not json")
    assert RateBook(f, priors={"stage:x": 1.0}).rate("stage:x") == 1.0


def test_walkthrough_progress_has_stage_and_eta_and_ends_at_one(tmp_path):
    studio = Studio(StudioSettings(root=tmp_path, outputs=tmp_path / "out", models=tmp_path / "none.json",
                                   min_free_bytes=0, rates_file=tmp_path / "rates.json"))
    updates: list[ProgressUpdate] = []
    events = list(studio.run_job(JobRequest(photo(), params=SMALL, chains=("none", "denoise+upscale")),
                                 on_progress=updates.append))
    assert events[0].eta_s is not None and events[0].eta_s > 0  # the estimate is given up front
    fr = [u.fraction for u in updates]
    assert fr == sorted(fr) and fr[-1] == 1.0
    stages = {u.stage for u in updates}
    assert {"generate", "chain 1 of 1 (denoise+upscale): nlmeans",
            "chain 1 of 1 (denoise+upscale): lanczos"} <= stages
    assert any("frame 3/" in u.message and u.message.startswith("chain 1 of 1") for u in updates)
    assert all(u.eta_s is not None for u in updates if u.stage and u.stage.startswith("chain"))
    assert json.loads((tmp_path / "rates.json").read_text())["stage:nlmeans"] > 0


def test_the_dashboard_reads_jobs_and_differences_through_the_studio(studio):
    """The Runs tab, the API and the heat-map panel call these instead of reaching into the job
    registry or core.compare."""
    job = studio.submit_job(JobRequest(photo(), params=SMALL, chains=("none", "upscale")))
    info = studio.wait_job(job, 60)
    assert info.status == "complete"
    assert studio.job_of_run(info.run_id) == job and studio.job_of_run("no-such-run") is None
    log = studio.job_events(job)
    assert log == studio.jobs.events(job) and log[-1].kind == "done"
    videos = {e.chain: e.video for e in log if e.kind in ("generated", "chain")}
    out = videos["none"].parent / "diff.mp4"
    d = studio.difference_video(videos["none"], videos["upscale"], out)
    assert out.is_file() and len(d.mean_abs) > 0 and max(d.mean_abs) > 0  # upscaled differs from native
    with pytest.raises(StudioError):
        studio.difference_video(videos["none"], out.parent / "missing.mp4", out.parent / "x.mp4")
