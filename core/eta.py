"""Honest progress for multi-step jobs: a timeline of steps whose ETA comes from measured rates.

A walkthrough is a known list of steps before it starts (generate, write the generator's clip,
then per chain its stage runs and the writing of its video and metrics). Each step has an amount
of work in *units* (megapixel-frames for post-processing and writing; one clip for a generator)
and a rate key ("stage:nlmeans", "write", "generate:kenburns"). `RateBook` keeps seconds per unit
as measured on this machine (kept across restarts in a small JSON file when given a path), with
priors measured on a 2-core CPU for the weight-free stages until a measurement exists.

Time left = (for the running step) its elapsed time x (1 - f) / f once it reported a fraction f,
else its estimate, + the estimates of the steps still to come. A rate measured on one step
(NL-means at 512x320) therefore predicts another size of the same stage (NL-means at 2048x1280
costs 16x) before it starts. The job's fraction is elapsed / (elapsed + time left), so the bar
and the ETA tell the same story; it never moves backwards, and it holds still (the messages
still count frames and steps) while a step to come has never been timed on this machine.
"""

from __future__ import annotations

import json
import math
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Mapping, Sequence

from .jobs import ProgressUpdate
from .progress import Progress

# Seconds per unit on an idle 2-core CPU (bench/readme_example.py, bench/postprocess.py); used only
# until this machine has measured the step itself.
PRIOR_RATES: dict[str, float] = {
    "stage:nlmeans": 3.0,  # s per megapixel-frame at the default (3-frame window, 15 px search)
    "stage:lanczos": 0.03,
    "write": 0.3,  # mp4 + metrics of one clip, per megapixel-frame
    "generate:kenburns": 0.6,  # per clip
    "adherence": 2.0,  # structure from motion on the generator's clip (rough)
    "stage:fastdvdnet": 30.0,  # CPU; a GPU replaces it with its own measurement after one run
    # per output megapixel-frame, CPU fp32, one thread on a loaded 2-core machine (bench/realesrgan.py)
    "stage:realesrgan": 11.0,
    "stage:realesrgan-x4plus": 130.0,
}


class RateBook:
    """Seconds per unit of work by rate key, measured on this machine. Thread-safe.

    path: a JSON file to load from and save to (None: in memory only). A new measurement
    replaces the old one half-way (exponential average), so one noisy run does not dominate.
    """

    def __init__(self, path: str | Path | None = None, priors: Mapping[str, float] | None = None):
        self.path = Path(path) if path else None
        self.priors = dict(PRIOR_RATES if priors is None else priors)
        self._measured: dict[str, float] = {}
        self._lock = threading.Lock()
        if self.path is not None and self.path.is_file():
            try:
                data = json.loads(self.path.read_text())
                self._measured = {str(k): float(v) for k, v in data.items()
                                  if isinstance(v, (int, float)) and math.isfinite(v) and v >= 0}
            except (OSError, ValueError, AttributeError):
                self._measured = {}  # a damaged cache only costs the priors

    def rate(self, key: str) -> float | None:
        with self._lock:
            return self._measured.get(key, self.priors.get(key))

    def measured(self, key: str) -> bool:
        with self._lock:
            return key in self._measured

    def record(self, key: str, seconds: float, units: float) -> None:
        if units <= 0 or not math.isfinite(seconds) or seconds < 0:
            return
        r = seconds / units
        with self._lock:
            old = self._measured.get(key)
            self._measured[key] = r if old is None else 0.5 * (old + r)
            data = dict(self._measured)
        if self.path is not None:
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                tmp = self.path.with_suffix(".tmp")
                tmp.write_text(json.dumps(data, indent=1, sort_keys=True))
                tmp.replace(self.path)
            except OSError:
                pass  # the cache is an optimisation; the job goes on


@dataclass
class Step:
    """One step of a timeline: label shown to the user, rate key, units of work."""

    key: str
    label: str
    units: float = 1.0
    started: float | None = None
    finished: float | None = None
    fraction: float = 0.0

    def estimate(self, rates: RateBook) -> float | None:
        if self.units <= 0:
            return 0.0
        r = rates.rate(self.key)
        return None if r is None else r * self.units


def megapixel_frames(width: int, height: int, frames: int) -> float:
    return width * height * frames / 1e6


def format_eta(seconds: float | None) -> str:
    """'about 40 s left', 'about 6 min left', '' when unknown or under a second."""
    if seconds is None or not math.isfinite(seconds) or seconds < 1:
        return ""
    if seconds < 90:
        return f"about {max(1, round(seconds))} s left"
    return f"about {round(seconds / 60)} min left"


class Timeline:
    """Steps in the order they run; `step(i)` gives the Progress sink of step i.

    emit(update) receives a `ProgressUpdate` (fraction of the whole job, message, stage, eta_s)
    at every report. cancel_event: the job's cancel flag (each sink raises Cancelled once set).
    """

    def __init__(self, steps: Sequence[Step], rates: RateBook, emit: Callable[[ProgressUpdate], None] | None,
                 cancel_event: threading.Event | None = None, clock: Callable[[], float] = time.monotonic):
        self.steps = list(steps)
        self.rates = rates
        self.emit = emit or (lambda u: None)
        self.cancel_event = cancel_event or threading.Event()
        self.clock = clock
        self.t0 = clock()
        self._lock = threading.RLock()
        self._last_fraction = 0.0

    def index(self, key_label: str) -> int:
        for i, s in enumerate(self.steps):
            if s.label == key_label:
                return i
        raise KeyError(key_label)

    def step(self, i: int) -> Progress:
        """Progress sink over step i's own [0, 1]; messages are shown as they are."""
        return Progress(lambda f, m: self.report(i, f, m), self.cancel_event)

    def start(self, i: int, message: str | None = None) -> None:
        self.report(i, 0.0, message or self.steps[i].label)

    def finish(self, i: int) -> None:
        """Mark step i finished and teach the rate book its measured rate."""
        with self._lock:
            s = self.steps[i]
            now = self.clock()
            if s.started is None:
                s.started = now
            if s.finished is None:
                s.finished = now
                s.fraction = 1.0
                self.rates.record(s.key, s.finished - s.started, s.units)

    def report(self, i: int, fraction: float, message: str) -> None:
        with self._lock:
            now = self.clock()
            s = self.steps[i]
            if s.started is None:
                s.started = now
            for j, prev in enumerate(self.steps[:i]):  # a step reached means every earlier one ended
                if prev.finished is None and prev.started is not None:
                    self.finish(j)
                elif prev.finished is None:
                    prev.started = prev.finished = now
                    prev.fraction = 1.0
            s.fraction = min(max(float(fraction), 0.0), 1.0)
            eta = self.eta(now)
            elapsed = now - self.t0
            if eta is None:
                # Some step to come was never timed here: hold the bar rather than invent a share.
                frac = self._last_fraction
            else:
                frac = elapsed / (elapsed + eta) if elapsed + eta > 0 else 1.0
            frac = max(self._last_fraction, min(frac, 1.0))
            self._last_fraction = frac
            update = ProgressUpdate(frac, message, s.label, eta)
        self.emit(update)

    def current(self) -> int | None:
        for i, s in enumerate(self.steps):
            if s.started is not None and s.finished is None:
                return i
        return None

    def eta(self, now: float | None = None) -> float | None:
        """Seconds left: the running step's own measured rate, plus estimates of later steps.
        None when some later step has no rate yet (an AI generator never timed here)."""
        now = self.clock() if now is None else now
        left = 0.0
        for s in self.steps:
            if s.finished is not None:
                continue
            if s.started is not None:
                elapsed = now - s.started
                est = s.estimate(self.rates)
                if s.fraction >= 0.05 and elapsed > 0.2:
                    left += elapsed * (1 - s.fraction) / s.fraction
                elif est is not None:
                    left += max(0.0, est - elapsed)
                else:
                    return None
                continue
            est = s.estimate(self.rates)
            if est is None:
                return None
            left += est
        return left

    def total_estimate(self) -> float | None:
        """Seconds the whole timeline should take, from the rates alone (before it starts)."""
        total = 0.0
        for s in self.steps:
            est = s.estimate(self.rates)
            if est is None:
                return None
            total += est
        return total


def with_eta(message: str, eta_s: float | None) -> str:
    """The message with its time left appended ("... · about 40 s left") when known."""
    eta = format_eta(eta_s)
    return f"{message} · {eta}" if eta else message
