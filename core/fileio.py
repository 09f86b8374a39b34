"""Files written whole or not at all, and the free-space checks that go before them.

Every output file of the studio is written through `atomic_output`: to a hidden temporary name in
the same folder (``.<stem>.<8 hex>.part<suffix>``), fsynced, then renamed, so a half-written file
never carries its final name. A full disk (ENOSPC/EDQUOT, or ffmpeg saying so) becomes
`OutOfDiskSpace` with one clear line and leaves earlier files intact; `check_free_space` refuses
to start a large write when the volume is nearly full. `to_json_text` is the strict JSON (no
NaN/inf, numpy values converted) every record file uses.

Nothing here knows about runs or videos; `core.runs` and `core.video` both build on it.
"""

from __future__ import annotations

import contextlib
import errno
import json
import math
import os
import re
import secrets
import shutil
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping

import numpy as np

from .errors import InputError, OutOfDiskSpace, StudioError

# Space kept free on the volume beyond each write's own estimate.
DEFAULT_MIN_FREE_BYTES = 256 * 1024**2

FreeSpaceFn = Callable[[Path], int]

# Hidden temporaries of `atomic_output` (and of the key writer): ".<stem>.<8 hex>.part<suffix>".
PART_RE = re.compile(r"^\..+\.[0-9a-f]{8}\.part(\.[^/]*)?$")


def _free_bytes(path: Path) -> int:
    return int(shutil.disk_usage(path).free)


def _mb(n: float) -> str:
    return f"{n / 1024**2:.0f} MB"


def check_free_space(
    folder: str | os.PathLike,
    needed_bytes: int,
    *,
    what: str = "the output",
    min_free_bytes: int = DEFAULT_MIN_FREE_BYTES,
    free_space_fn: FreeSpaceFn | None = None,
) -> int:
    """Raise `OutOfDiskSpace` unless `needed_bytes + min_free_bytes` are free where `folder`
    lives. free_space_fn(path) -> free bytes replaces `shutil.disk_usage` (tests inject fakes).
    Returns the free byte count."""
    folder = Path(folder)
    probe = folder
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    free = (free_space_fn or _free_bytes)(probe)
    if free < needed_bytes + min_free_bytes:
        raise OutOfDiskSpace(
            f"Not enough disk space for {what} in {folder}: {_mb(free)} free, about "
            f"{_mb(needed_bytes + min_free_bytes)} needed; free some space or choose another outputs folder."
        )
    return free


def ensure_writable_dir(folder: str | os.PathLike, what: str = "The outputs folder") -> Path:
    """Create `folder` if needed and prove a file can be written in it; otherwise one-line
    InputError naming the folder and why (a file in the way, no permission, read-only disk)."""
    folder = Path(folder).expanduser()
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe = folder / f".write-test.{secrets.token_hex(4)}"
        with open(probe, "wb") as fh:
            fh.write(b"ok")
        probe.unlink()
    except OSError as exc:
        if is_disk_full(exc):
            raise OutOfDiskSpace(f"{what} {folder} is on a full disk; free some space or choose another.") from None
        raise InputError(f"{what} {folder} is not writable ({exc.strerror or exc}); choose another.") from None
    return folder


def fsync_dir(folder: Path) -> None:
    # Makes the rename itself durable; not supported everywhere (e.g. Windows), where it is skipped.
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def remove_path(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()


def is_disk_full(exc: BaseException) -> bool:
    if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return True
    # ffmpeg reports a full disk on its stderr, which imageio wraps in a plain error message.
    return "No space left on device" in str(exc)


@contextlib.contextmanager
def atomic_output(path: str | os.PathLike, *, what: str | None = None) -> Iterator[Path]:
    """Yield a temporary path beside `path`; on success rename it to `path`, on any error
    remove it (file or folder) and re-raise, with a full disk turned into `OutOfDiskSpace`.

    The temporary name keeps the final suffix (ffmpeg picks the container from it) and starts
    with a dot, so listings and globbing for final names never see it.
    """
    path = Path(path)
    tmp = path.with_name(f".{path.stem}.{secrets.token_hex(4)}.part{path.suffix}")
    try:
        yield tmp
        if tmp.is_file():
            with open(tmp, "rb") as fh:
                os.fsync(fh.fileno())
        elif not tmp.exists():
            raise StudioError(f"Nothing was written for {path.name}.")
        if tmp.is_dir() and path.is_dir():
            # A folder can only replace an empty folder; anything else must not be clobbered.
            if any(path.iterdir()):
                raise InputError(f"{path} already exists and is not empty.")
        os.replace(tmp, path)
        fsync_dir(path.parent)
    except BaseException as exc:
        remove_path(tmp)
        if is_disk_full(exc) and not isinstance(exc, OutOfDiskSpace):
            raise OutOfDiskSpace(
                f"The disk is full while writing {what or path.name} in {path.parent}; "
                "earlier files were kept. Free some space and run again."
            ) from exc
        raise


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write `data` to `path` atomically (temp + fsync + rename)."""
    with atomic_output(path) as tmp:
        with open(tmp, "wb") as fh:
            fh.write(data)


def _json_default(obj: Any) -> Any:
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return obj.as_posix()
    if isinstance(obj, (set, frozenset, tuple)):
        return list(obj)
    raise TypeError(f"{type(obj).__name__} is not JSON serialisable")


def _finite(obj: Any) -> Any:
    """Replace NaN/inf floats by None so the file is strict JSON."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, np.floating):
        v = float(obj)
        return v if math.isfinite(v) else None
    if isinstance(obj, np.ndarray):
        return _finite(obj.tolist())
    if isinstance(obj, Mapping):
        return {str(k): _finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite(v) for v in obj]
    return obj


def to_json_text(obj: Any) -> str:
    """Strict JSON (no NaN/inf; numpy scalars and arrays converted), indented."""
    return json.dumps(_finite(obj), indent=2, ensure_ascii=False, allow_nan=False, default=_json_default) + "\n"


def jsonable(obj: Any) -> Any:
    """A JSON-ready copy of a generator's info: mappings (string keys), lists, numpy values and
    plain scalars as they are, anything else as its `str` (NaN stays; `to_json_text` nulls it)."""
    if isinstance(obj, Mapping):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, (str, int, float, bool)) or obj is None:
        return obj
    return str(obj)


def atomic_write_json(path: str | os.PathLike, obj: Any) -> None:
    atomic_write_bytes(path, to_json_text(obj).encode("utf-8"))
