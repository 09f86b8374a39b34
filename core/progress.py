"""Progress reporting and cooperative cancellation.

Long work (DDIM steps, post-processing frames, study grids) calls `progress(fraction, message)`
between units of work. The callback may raise `core.errors.Cancelled`, which is how a cancel
button stops a job between steps. Nested stages report through `Progress.sub(start, end)`.
"""

from __future__ import annotations

import threading
from typing import Callable, Optional

from .errors import Cancelled

ProgressFn = Callable[[float, str], None]


def _noop(fraction: float, message: str) -> None:
    return None


class Progress:
    """A progress sink over [0, 1] with an optional cancel flag.

    `Progress(fn)(0.5, "step 12/25")` forwards to `fn`; `p.sub(0.2, 0.6)` maps its own
    [0, 1] onto [0.2, 0.6] of the parent. `check()` raises `Cancelled` once `cancel()` was
    called on this object or any parent.
    """

    def __init__(
        self,
        fn: Optional[ProgressFn] = None,
        cancel_event: Optional[threading.Event] = None,
        start: float = 0.0,
        end: float = 1.0,
    ):
        self._fn = fn or _noop
        self._cancel = cancel_event or threading.Event()
        self._start = start
        self._end = end

    def __call__(self, fraction: float, message: str = "") -> None:
        self.check()
        fraction = min(max(float(fraction), 0.0), 1.0)
        self._fn(self._start + (self._end - self._start) * fraction, message)

    def sub(self, start: float, end: float) -> "Progress":
        span = self._end - self._start
        return Progress(self._fn, self._cancel, self._start + span * start, self._start + span * end)

    def cancel(self) -> None:
        self._cancel.set()

    @property
    def cancelled(self) -> bool:
        return self._cancel.is_set()

    def check(self) -> None:
        if self._cancel.is_set():
            raise Cancelled("Cancelled by the user; nothing from this job was kept half-written.")


def as_progress(p: "Progress | ProgressFn | None") -> Progress:
    """Accept a Progress, a plain callback, or None."""
    if isinstance(p, Progress):
        return p
    return Progress(p)
