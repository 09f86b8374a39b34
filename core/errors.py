"""One exception family for everything a user can cause or fix.

Every `StudioError` carries a one-line, user-facing message (no traceback needed to act on it).
The UI shows `str(err)`; the CLI prints it and exits with `exit_code`.
"""

from __future__ import annotations


class StudioError(Exception):
    """Base class: a clear message for the user, and the CLI exit code."""

    exit_code = 1

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message


class InputError(StudioError):
    """Bad user input: a non-image, an absurd camera path, an out-of-range parameter."""

    exit_code = 2


class ConfigError(StudioError):
    """A broken models.json or settings file; the message names the entry and the field."""

    exit_code = 3


class WeightsMissing(StudioError):
    """A weight file is absent; the message names the file, the fetch command and the target path."""

    exit_code = 4


class CheckpointError(StudioError):
    """A weight file is present but corrupt, truncated, of the wrong variant, or fails its checksum."""

    exit_code = 5


class OutOfMemory(StudioError):
    """The device ran out of memory; the message says what to lower."""

    exit_code = 6


class Cancelled(StudioError):
    """The user cancelled the job; nothing half-written is left behind."""

    exit_code = 130


class Unavailable(StudioError):
    """A feature cannot run on this machine (no GPU, optional package missing); says why."""

    exit_code = 7


class OutOfDiskSpace(StudioError):
    """The outputs volume is (nearly) full; the message names the folder and the amounts."""

    exit_code = 8
