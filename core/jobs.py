"""Server-owned jobs: a registry that runs long jobs in one background worker and keeps their events.

A job is any iterator of `JobEvent`s (a walkthrough, a multi-shot tour, ...). `JobRegistry.submit`
queues it; one worker thread runs the queued jobs one at a time (they share the device), appends
every event the job yields, plus the progress it reports, to the job's append-only log, and ends
the log with exactly one terminal event: "done", "failed" or "cancelled". Any number of
subscribers follow the log from any position (`follow(job_id, since)`), blocking on a
`threading.Condition` until the next event; a subscriber that goes away (a closed browser tab)
changes nothing for the job. Only `cancel(job_id)` stops a job, between two steps.

The registry also hands out cancel flags for jobs a caller runs itself (the CLI iterating
`Studio.run_job` directly): `reserve()` and `cancel_event(job_id)`.
"""

from __future__ import annotations

import sys
import threading
import time
import traceback
import uuid
from collections import deque
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

from .errors import Cancelled, InputError, StudioError
from .progress import Progress

EVENT_KINDS = ("started", "progress", "generated", "chain", "done", "failed", "cancelled")
TERMINAL_KINDS = ("done", "failed", "cancelled")
JOB_STATUSES = ("queued", "running", "complete", "failed", "cancelled")
# Progress events closer together than this (same stage, not the last unit) are not logged:
# a per-frame Lanczos stage reports hundreds of times a second and followers need ~10 Hz.
PROGRESS_MIN_INTERVAL_S = 0.1


@dataclass
class JobEvent:
    """One entry of a job's log.

    kind: "started" | "progress" | "generated" | "chain" | "done" | "failed" | "cancelled".
    "generated" / "chain": `chain` is the chain name ("none" for the generator's own clip), `video`
    its mp4, `metrics` its `core.metrics.measure` result. "done" carries the summary `table` rows.
    "progress": `fraction` of the whole job in [0, 1], `message` ("chain 2 of 4: nlmeans, frame 3
    of 16"), `stage` (what runs now, e.g. "generate" or "upscale+denoise: nlmeans") and `eta_s`
    (seconds left, from measured rates; None while unknown). "failed" / "cancelled": `error` is
    the one-line reason; everything produced before stays in the run folder.
    `seq` is the event's position in the log (set by the registry), `job_id` the job's id.
    """

    kind: str
    run_id: str | None = None
    chain: str | None = None
    video: Path | None = None
    frames_dir: Path | None = None
    metrics: dict[str, Any] | None = None
    table: list[dict[str, Any]] | None = None
    message: str = ""
    fraction: float | None = None
    stage: str | None = None
    eta_s: float | None = None
    error: str | None = None
    seq: int = -1
    job_id: str | None = None
    # a job's own typed record of the step, when its kind needs more than the fields above
    # (a tour's shot events carry their core.tour.TourEvent here)
    detail: Any = None


@dataclass(frozen=True)
class ProgressUpdate:
    """How far a job is: fraction of the whole job in [0, 1], a one-line message, the stage that
    runs now and the estimated seconds left (None while nothing has been measured yet)."""

    fraction: float
    message: str
    stage: str | None = None
    eta_s: float | None = None


@dataclass(frozen=True)
class JobInfo:
    """A snapshot of one job for listings (the dashboard's running-jobs panel, the API).

    status: queued | running | complete | failed | cancelled. queue_position: jobs ahead of a
    queued one (0 for a running or finished job). fraction / message / stage / eta_s: its latest
    progress. events: how many events its log holds (follow from there to see only new ones).
    """

    id: str
    kind: str
    title: str
    user: str | None
    status: str
    run_id: str | None
    fraction: float
    message: str
    stage: str | None
    eta_s: float | None
    error: str | None
    created: float
    started: float | None
    finished: float | None
    queue_position: int
    events: int

    @property
    def active(self) -> bool:
        return self.status in ("queued", "running")


@dataclass
class JobContext:
    """What a job body receives: its id, a `Progress` (fraction/message, with the job's cancel flag;
    calling it raises `Cancelled` once `cancel(job_id)` was called) and `report`, which logs a
    `ProgressUpdate` with stage and ETA."""

    job_id: str
    cancel_event: threading.Event
    report: Callable[[ProgressUpdate], None]
    progress: Progress = field(init=False)

    def __post_init__(self) -> None:
        self.progress = Progress(lambda f, m: self.report(ProgressUpdate(f, m)), self.cancel_event)


JobBody = Callable[[JobContext], Iterable[JobEvent]]


class Job:
    """One submitted job: its body, log and state. Read it through `JobRegistry`."""

    def __init__(self, job_id: str, body: JobBody, *, kind: str, title: str, user: str | None):
        self.id = job_id
        self.body = body
        self.kind = kind
        self.title = title
        self.user = user
        self.status = "queued"
        self.run_id: str | None = None
        self.error: str | None = None
        self.created = time.time()
        self.started: float | None = None
        self.finished: float | None = None
        self.cancel_event = threading.Event()
        self.cancel_requested = False
        self.events: list[JobEvent] = []
        self.cond = threading.Condition()
        self.last = ProgressUpdate(0.0, "queued")
        self._last_logged = 0.0

    @property
    def done(self) -> bool:
        return self.status in ("complete", "failed", "cancelled")

    def append(self, ev: JobEvent) -> JobEvent:
        with self.cond:
            ev = replace(ev, seq=len(self.events), job_id=self.id)
            if ev.run_id is None:
                ev.run_id = self.run_id
            elif self.run_id is None:
                self.run_id = ev.run_id
            self.events.append(ev)
            self.cond.notify_all()
        return ev

    def progress(self, u: ProgressUpdate) -> None:
        with self.cond:
            previous = self.last
            self.last = u
            now = time.monotonic()
            if (now - self._last_logged < PROGRESS_MIN_INTERVAL_S and u.stage == previous.stage
                    and u.fraction < 1.0):
                return
            self._last_logged = now
        self.append(JobEvent("progress", message=u.message, fraction=u.fraction, stage=u.stage, eta_s=u.eta_s))


class JobRegistry:
    """Queued and recent jobs, one worker thread, and the cancel flags of inline jobs.

    keep_finished: how many finished jobs stay followable (oldest dropped first).
    """

    def __init__(self, *, keep_finished: int = 50, name: str = "studio-jobs"):
        self._lock = threading.Lock()
        self._jobs: dict[str, Job] = {}
        self._queue: deque[Job] = deque()
        self._wake = threading.Condition(self._lock)
        self._worker: threading.Thread | None = None
        self._inline: dict[str, threading.Event] = {}
        self._keep_finished = keep_finished
        self._name = name

    # -- ids and cancel flags ------------------------------------------------------------
    @staticmethod
    def _new_id() -> str:
        return uuid.uuid4().hex[:12]

    def reserve(self) -> str:
        """A fresh id with a cancel flag, for a job the caller runs itself (see `cancel_event`)."""
        job_id = self._new_id()
        with self._lock:
            self._inline[job_id] = threading.Event()
        return job_id

    def cancel_event(self, job_id: str) -> threading.Event:
        """The cancel flag of `job_id`: a submitted job's own, else an inline one (created if new)."""
        with self._lock:
            job = self._jobs.get(job_id)
            if job is not None:
                return job.cancel_event
            return self._inline.setdefault(job_id, threading.Event())

    def release(self, job_id: str) -> None:
        """Forget the cancel flag of an inline job that ended (submitted jobs stay listed)."""
        with self._lock:
            self._inline.pop(job_id, None)

    # -- submitting and running ----------------------------------------------------------
    def submit(self, body: JobBody, *, kind: str = "job", title: str = "", user: str | None = None,
               job_id: str | None = None) -> str:
        """Queue `body(context)` (an iterable of JobEvents) and return its job id at once."""
        with self._lock:
            job_id = job_id or self._new_id()
            if job_id in self._jobs:
                raise InputError(f"Job {job_id} already exists.")
            inline = self._inline.pop(job_id, None)
            job = Job(job_id, body, kind=kind, title=title, user=user)
            if inline is not None and inline.is_set():  # cancelled before it was even submitted
                job.cancel_event.set()
                job.cancel_requested = True
            self._jobs[job_id] = job
            self._queue.append(job)
            if self._worker is None or not self._worker.is_alive():
                self._worker = threading.Thread(target=self._work, name=self._name, daemon=True)
                self._worker.start()
            self._wake.notify_all()
        return job_id

    def _work(self) -> None:
        while True:
            with self._lock:
                while not self._queue:
                    self._wake.wait()
                job = self._queue.popleft()
            self._run(job)
            self._trim()

    def _run(self, job: Job) -> None:
        with job.cond:
            job.status = "running"
            job.started = time.time()
        ctx = JobContext(job.id, job.cancel_event, job.progress)
        terminal: JobEvent | None = None
        try:
            if job.cancel_event.is_set():
                raise Cancelled("Cancelled before it started.")
            iterator = iter(job.body(ctx))
            try:
                for ev in iterator:
                    if ev.kind == "progress":
                        job.progress(ProgressUpdate(ev.fraction or 0.0, ev.message, ev.stage, ev.eta_s))
                        continue
                    ev = job.append(ev)
                    if ev.kind in TERMINAL_KINDS:
                        terminal = ev
            finally:
                close = getattr(iterator, "close", None)
                if close is not None:
                    close()
            if terminal is None:
                terminal = job.append(JobEvent("done", message="done"))
            status, error = ("complete", None) if terminal.kind == "done" else (
                "cancelled" if terminal.kind == "cancelled" else "failed", terminal.error or terminal.message)
        except Cancelled as exc:
            status, error = "cancelled", str(exc)
            job.append(JobEvent("cancelled", message=error, error=error))
        except StudioError as exc:
            status, error = "failed", str(exc)
            job.append(JobEvent("failed", message=error, error=error))
        except BaseException as exc:  # noqa: BLE001 - a job must never kill the worker
            traceback.print_exc(file=sys.stderr)
            status = "failed"
            error = f"Unexpected error ({type(exc).__name__}: {' '.join(str(exc).split())}). Details are in the server log."
            job.append(JobEvent("failed", message=error, error=error))
        with job.cond:
            job.status, job.error, job.finished = status, error, time.time()
            if status == "complete":
                job.last = ProgressUpdate(1.0, "done", None, 0.0)
            job.cond.notify_all()

    def _trim(self) -> None:
        with self._lock:
            finished = [j for j in self._jobs.values() if j.done]
            for j in sorted(finished, key=lambda j: j.finished or 0)[:max(0, len(finished) - self._keep_finished)]:
                del self._jobs[j.id]

    # -- reading -------------------------------------------------------------------------
    def _get(self, job_id: str) -> Job:
        with self._lock:
            job = self._jobs.get(job_id or "")
        if job is None:
            raise InputError(f"No job {job_id!r} on this server (it may have finished long ago or the "
                             "server restarted); its run, if it started, is in the Runs tab.")
        return job

    def has(self, job_id: str) -> bool:
        with self._lock:
            return job_id in self._jobs

    def follow(self, job_id: str, since: int = 0, *, coalesce_progress: bool = False,
               timeout: float | None = None) -> Iterator[JobEvent]:
        """The job's events from position `since` on, as they come; ends after the terminal event.

        Blocks on the job's condition between events. coalesce_progress: of several progress
        events already waiting, yield only the newest (a slow reader sees the current state, not
        a backlog). timeout: give up (StopIteration) after this long without a new event.
        """
        job = self._get(job_id)
        pos = max(0, int(since))
        while True:
            with job.cond:
                if pos >= len(job.events) and not job.done:
                    job.cond.wait_for(lambda: pos < len(job.events) or job.done, timeout=timeout)
                batch = job.events[pos:]
                finished = job.done
            if not batch:
                if finished or timeout is not None:
                    return
                continue
            pos += len(batch)
            for i, ev in enumerate(batch):
                if coalesce_progress and ev.kind == "progress" and any(
                        e.kind == "progress" for e in batch[i + 1:]):
                    continue
                yield ev
            if finished and pos >= len(job.events):
                return

    def events(self, job_id: str) -> list[JobEvent]:
        """A copy of the job's log so far."""
        job = self._get(job_id)
        with job.cond:
            return list(job.events)

    def wait(self, job_id: str, timeout: float | None = None) -> JobInfo:
        """Block until the job ends (or `timeout`); its info then."""
        job = self._get(job_id)
        with job.cond:
            job.cond.wait_for(lambda: job.done, timeout=timeout)
        return self.info(job_id)

    def info(self, job_id: str) -> JobInfo:
        job = self._get(job_id)
        with self._lock:
            ahead = 0
            for q in self._queue:
                if q is job:
                    break
                ahead += 1
            else:
                ahead = 0
            running_ahead = any(j.status == "running" for j in self._jobs.values()) and job.status == "queued"
        with job.cond:
            last = job.last
            return JobInfo(job.id, job.kind, job.title, job.user, job.status, job.run_id,
                           last.fraction, last.message, last.stage, last.eta_s, job.error, job.created,
                           job.started, job.finished, ahead + (1 if running_ahead else 0), len(job.events))

    def jobs(self, *, user: str | None = None, active_only: bool = True) -> list[JobInfo]:
        """Jobs newest first; only queued/running ones unless active_only=False; only `user`'s when given."""
        with self._lock:
            ids = [j.id for j in sorted(self._jobs.values(), key=lambda j: j.created, reverse=True)
                   if (user is None or j.user == user) and (not active_only or not j.done)]
        return [self.info(i) for i in ids if self.has(i)]

    def find_run(self, run_id: str) -> str | None:
        """The id of the job that writes run `run_id`, if this server has it."""
        with self._lock:
            for j in self._jobs.values():
                if j.run_id == run_id:
                    return j.id
        return None

    # -- cancelling ----------------------------------------------------------------------
    def cancel(self, job_id: str, *, user: str | None = None) -> bool:
        """Ask a queued or running job to stop at its next step. False for an unknown or finished
        job, or when `user` is given and the job belongs to someone else."""
        with self._lock:
            job = self._jobs.get(job_id)
            if job is None:
                ev = self._inline.get(job_id)
                if ev is None:
                    return False
                ev.set()
                return True
        if job.done or (user is not None and job.user is not None and job.user != user):
            return False
        job.cancel_requested = True
        job.cancel_event.set()
        return True
