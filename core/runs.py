"""One folder per run under an outputs root, with a `run.json` that is always complete JSON.

Layout of a run folder (every name is a fixed pattern; nothing comes from user text)::

    <root>/<run id>/run.json           record of the run (schema below), rewritten atomically
    <root>/<run id>/input.<png|jpg|webp|...>   copy of the input image as uploaded
    <root>/<run id>/chain-00.mp4       outputs, numbered in the order chains were added
    <root>/<run id>/chain-00.gif / chain-00-frames/frame-0000.png / metrics.json / camera.json

Run ids are generated: UTC timestamp to the microsecond plus 6 random hex digits,
``YYYYMMDD-HHMMSS-ffffff-xxxxxx``, so sorting ids sorts runs by start time.

`run.json` fields: ``schema`` (1), ``id``, ``kind``, ``status`` (running | complete | failed |
cancelled | partial), ``error`` (one line or null), ``created``/``updated`` (ISO 8601 UTC), ``pid``/``host``
(to tell a run that died with its process from one still going), ``input`` (file, sha256, bytes,
width, height, format, original_name), ``params``, ``seeds``, ``models`` (name -> {weights: {file:
sha256}, ...}), ``timings`` (step -> seconds), ``chains`` (name -> {index, stages, files,
metrics}), ``metrics``, ``files`` (relative path -> bytes). It is written after every step
(temp file, fsync, rename), so a failure in a later stage never loses what was already produced.

Every file is written through `core.fileio.atomic_output` (temporary name, fsync, rename), so a
half-written file never carries its final name and a full disk becomes one `OutOfDiskSpace` line;
the file primitives and checksums are re-exported here for older callers.

Why this file is longer than ~450 lines: the run record (`Run`) and the listing (`list_runs`,
`clean_stale_temporaries`) share the run.json schema and the in-process table of failures that
could not be written (`_UNSAVED`); splitting them would put that table in a second home or make
the two modules import each other.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import io
import json
import os
import re
import secrets
import socket
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from .errors import Cancelled, InputError, OutOfDiskSpace, StudioError  # noqa: F401 (OutOfDiskSpace re-exported)
# The file primitives live in core.fileio / core.hashing; they stay importable from here.
from .fileio import (DEFAULT_MIN_FREE_BYTES, PART_RE as _PART_RE, FreeSpaceFn, atomic_output,  # noqa: F401
                     atomic_write_bytes, atomic_write_json, check_free_space, ensure_writable_dir,
                     remove_path as _remove, to_json_text)
from .hashing import sha256_bytes, sha256_file  # noqa: F401
from .imagefiles import FORMAT_EXTENSIONS

SCHEMA = 1
RUN_JSON = "run.json"
# "partial": a long shot stopped (cancelled or failed) after finishing some of its segments;
# `Studio.resume` continues it. Never shown as complete.
STATUSES = ("running", "complete", "failed", "cancelled", "partial")
RUN_ID_RE = re.compile(r"^\d{8}-\d{6}-\d{6}-[0-9a-f]{6}$")

# Output file names by kind; `index` is the chain number. Only these names are ever created.
FILE_PATTERNS: dict[str, str] = {
    "chain_mp4": "chain-{index:02d}.mp4",
    "chain_gif": "chain-{index:02d}.gif",
    "chain_frames": "chain-{index:02d}-frames",
    "metrics": "metrics.json",
    "camera": "camera.json",
}
# Input image formats (as detected by PIL, never from the upload's name) -> file extension.
INPUT_EXTENSIONS = FORMAT_EXTENSIONS

# With per-user runs, each authenticated user's runs live in <outputs>/users/<user_folder(name)>/.
USERS_DIR = "users"

# Runs whose failure could not be written to run.json (a full disk): run dir -> (status, error).
# Listing and opening consult it, so the run shows as failed while this process lives; the
# file is rewritten as soon as a later listing finds space again.
_UNSAVED: dict[Path, tuple[str, str]] = {}
_UNSAVED_LOCK = threading.Lock()


def user_folder(user: str) -> str:
    """The folder name of a user's runs: a readable slug of the name plus a hash of it, so two
    names never share a folder and no name (with '/', '..', unicode) becomes a path."""
    slug = re.sub(r"[^A-Za-z0-9_-]+", "-", str(user)).strip("-")[:32] or "user"
    return f"{slug}-{hashlib.sha256(str(user).encode('utf-8')).hexdigest()[:10]}"


def outputs_root(runs_root: str | os.PathLike) -> Path:
    """The outputs folder a runs root belongs to (itself, or two levels up for a user's runs)."""
    root = Path(runs_root)
    return root.parent.parent if root.parent.name == USERS_DIR else root


# --------------------------------------------------------------------------- run ids


def _utcnow() -> _dt.datetime:
    return _dt.datetime.now(_dt.timezone.utc)


def _iso(t: _dt.datetime) -> str:
    return t.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def new_run_id(now: _dt.datetime | None = None) -> str:
    """``YYYYMMDD-HHMMSS-ffffff-xxxxxx`` (UTC, microseconds, random hex): unique and sortable."""
    t = (now or _utcnow()).astimezone(_dt.timezone.utc)
    return f"{t:%Y%m%d-%H%M%S-%f}-{secrets.token_hex(3)}"


def validate_run_id(run_id: str) -> str:
    """Return `run_id` if it has the generated form, else raise InputError (ids reach paths)."""
    if not isinstance(run_id, str) or not RUN_ID_RE.match(run_id):
        raise InputError(f"Not a run id: {run_id!r}.")
    return run_id


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError):
        return True
    return True


# --------------------------------------------------------------------------- the run


class Run:
    """A run folder and its `run.json`. Thread-safe; every mutating method saves at once.

    Create with `Run.create(root, ...)`, reopen with `Run.open(root, run_id)`. As a context
    manager it marks the run complete on a normal exit, cancelled on `Cancelled`, and failed
    (with the one-line error) on any other exception, which it re-raises.
    """

    def __init__(
        self,
        root: Path,
        data: dict[str, Any],
        *,
        min_free_bytes: int = DEFAULT_MIN_FREE_BYTES,
        free_space_fn: FreeSpaceFn | None = None,
    ):
        self.root = Path(root)
        self.id = validate_run_id(data["id"])
        self.dir = self.root / self.id
        self.data = data
        self.min_free_bytes = min_free_bytes
        self.free_space_fn = free_space_fn
        self._lock = threading.RLock()

    # ----------------------------------------------------------------- creation / loading

    @classmethod
    def create(
        cls,
        root: str | os.PathLike,
        *,
        kind: str = "walkthrough",
        params: Mapping[str, Any] | None = None,
        seeds: Mapping[str, Any] | None = None,
        min_free_bytes: int = DEFAULT_MIN_FREE_BYTES,
        free_space_fn: FreeSpaceFn | None = None,
    ) -> "Run":
        """Make a new run folder under `root` (created if needed) and write its run.json."""
        root = Path(root)
        root.mkdir(parents=True, exist_ok=True)
        check_free_space(root, 1024**2, what="a new run", min_free_bytes=min_free_bytes, free_space_fn=free_space_fn)
        for _ in range(20):
            now = _utcnow()
            run_id = new_run_id(now)
            try:
                (root / run_id).mkdir()
            except FileExistsError:
                continue
            break
        else:  # pragma: no cover - 20 collisions of 24 random bits in one microsecond
            raise StudioError(f"Could not create a unique run folder in {root}.")
        data: dict[str, Any] = {
            "schema": SCHEMA,
            "id": run_id,
            "kind": kind,
            "status": "running",
            "error": None,
            "created": _iso(now),
            "updated": _iso(now),
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "input": None,
            "params": dict(params or {}),
            "seeds": dict(seeds or {}),
            "models": {},
            "timings": {},
            "chains": {},
            "metrics": {},
            "files": {},
        }
        run = cls(root, data, min_free_bytes=min_free_bytes, free_space_fn=free_space_fn)
        run.save()
        return run

    @classmethod
    def open(cls, root: str | os.PathLike, run_id: str, **kwargs: Any) -> "Run":
        """Load an existing run; InputError for an unknown id, StudioError for a damaged file."""
        root = Path(root)
        validate_run_id(run_id)
        path = root / run_id / RUN_JSON
        if not path.is_file():
            raise InputError(f"No run {run_id} in {root}.")
        data = _read_run_json(path)
        if data.get("id") != run_id:
            raise StudioError(f"{path} belongs to run {data.get('id')!r}, not {run_id}.")
        return cls(root, data, **kwargs)

    # ----------------------------------------------------------------- persistence

    def save(self) -> None:
        """Rewrite run.json atomically with the current data and `updated` time."""
        with self._lock:
            self.data["updated"] = _iso(_utcnow())
            atomic_write_json(self.dir / RUN_JSON, self.data)

    def __enter__(self) -> "Run":
        return self

    def __exit__(self, exc_type, exc, tb) -> bool:
        if exc is None:
            if self.status == "running":
                self.finish()
        else:
            self.fail(exc)
        return False

    @property
    def status(self) -> str:
        return self.data["status"]

    def path(self, kind: str, index: int | None = None) -> Path:
        """Absolute path of an output file of a fixed kind (see FILE_PATTERNS)."""
        if kind not in FILE_PATTERNS:
            raise ValueError(f"unknown output kind {kind!r}")
        pattern = FILE_PATTERNS[kind]
        if "{index" in pattern:
            if not isinstance(index, int) or not 0 <= index < 100:
                raise ValueError(f"output index must be an int in [0, 100), got {index!r}")
            return self.dir / pattern.format(index=index)
        return self.dir / pattern

    def _record_file(self, path: Path) -> str:
        rel = path.relative_to(self.dir).as_posix()
        if path.is_dir():
            size = sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
        else:
            size = path.stat().st_size
        self.data["files"][rel] = size
        return rel

    def check_space(self, needed_bytes: int, what: str) -> None:
        check_free_space(
            self.dir, needed_bytes, what=what, min_free_bytes=self.min_free_bytes, free_space_fn=self.free_space_fn
        )

    # ----------------------------------------------------------------- recording

    def save_input_image(self, data: bytes | np.ndarray, *, original_name: str | None = None) -> dict[str, Any]:
        """Copy the input image into the run: encoded bytes are kept as uploaded (the extension
        comes from the detected format), an (H, W, 3) uint8 array is stored as PNG. Records
        file, sha256 of the stored bytes, size and dimensions; original_name is kept as data only."""
        from PIL import Image

        if isinstance(data, np.ndarray):
            buf = io.BytesIO()
            Image.fromarray(np.ascontiguousarray(data)).save(buf, format="PNG")
            blob, fmt, (w, h) = buf.getvalue(), "PNG", (data.shape[1], data.shape[0])
        else:
            blob = bytes(data)
            try:
                with Image.open(io.BytesIO(blob)) as im:
                    fmt, (w, h) = (im.format or ""), im.size
            except Exception as exc:
                raise InputError("The input is not a readable image.") from exc
        ext = INPUT_EXTENSIONS.get(fmt.upper(), ".img")
        self.check_space(len(blob), "the input image")
        path = self.dir / f"input{ext}"
        with self._lock:
            atomic_write_bytes(path, blob)
            self.data["input"] = {
                "file": self._record_file(path),
                "sha256": sha256_bytes(blob),
                "bytes": len(blob),
                "format": fmt,
                "width": int(w),
                "height": int(h),
                "original_name": original_name,
            }
            self.save()
            return dict(self.data["input"])

    def update(self, **fields: Any) -> None:
        """Merge top-level dict fields (params, seeds, metrics, ...) or set scalar fields."""
        with self._lock:
            for key, value in fields.items():
                if key in ("id", "schema", "files"):
                    raise ValueError(f"run.json field {key!r} is managed by Run")
                current = self.data.get(key)
                if isinstance(current, dict) and isinstance(value, Mapping):
                    current.update(value)
                else:
                    self.data[key] = value
            self.save()

    def add_model(self, name: str, *, weights: Mapping[str, str] | None = None, **info: Any) -> None:
        """Record a model used by the run: weight file -> sha256, plus any descriptive fields."""
        with self._lock:
            self.data["models"][name] = {"weights": dict(weights or {}), **info}
            self.save()

    def add_timing(self, step: str, seconds: float) -> None:
        with self._lock:
            self.data["timings"][step] = float(seconds)
            self.save()

    def add_chain(
        self,
        name: str,
        *,
        stages: list[Mapping[str, Any]] | None = None,
        metrics: Mapping[str, Any] | None = None,
    ) -> int:
        """Register a chain (or update its stages/metrics); returns its file index."""
        with self._lock:
            entry = self._chain_entry(name)
            if stages is not None:
                entry["stages"] = [dict(s) for s in stages]
            if metrics is not None:
                entry["metrics"] = metrics
            self.save()
            return entry["index"]

    def _chain_entry(self, name: str) -> dict[str, Any]:
        entry = self.data["chains"].get(name)
        if entry is None:
            entry = {"index": len(self.data["chains"]), "stages": [], "files": {}, "metrics": None}
            self.data["chains"][name] = entry
        return entry

    def write_chain_video(self, name: str, clip: Any, fmt: str = "mp4", **options: Any) -> Path:
        """Write a chain's clip as mp4, gif or PNG frames under its fixed name, after a free-space
        check; records the file in run.json. Returns the absolute path."""
        from . import video

        with self._lock:
            index = self._chain_entry(name)["index"]
        if fmt == "mp4":
            path, writer = self.path("chain_mp4", index), video.write_mp4
        elif fmt == "gif":
            path, writer = self.path("chain_gif", index), video.write_gif
        elif fmt == "png":
            path, writer = self.path("chain_frames", index), video.write_png_frames
        else:
            raise InputError(f"Unknown video format {fmt!r}; use mp4, gif or png.")
        self.check_space(video.estimate_bytes(clip, fmt), f"the {fmt} of chain {name!r}")
        writer(clip, path, **options)
        with self._lock:
            self.data["chains"][name]["files"][fmt] = self._record_file(path)
            self.save()
        return path

    def write_json(self, kind: str, obj: Any) -> Path:
        """Write metrics.json or camera.json (fixed names) and record it."""
        path = self.path(kind)
        if path.suffix != ".json":
            raise ValueError(f"{kind} is not a JSON output")
        text = to_json_text(obj).encode("utf-8")
        self.check_space(len(text), path.name)
        with self._lock:
            atomic_write_bytes(path, text)
            self._record_file(path)
            self.save()
        return path

    def finish(self, status: str = "complete") -> None:
        if status not in STATUSES:
            raise ValueError(f"unknown status {status!r}")
        self.update(status=status)

    def fail(self, exc: BaseException | str) -> None:
        """Mark the run failed (or cancelled for `Cancelled`) with a one-line message. Never
        raises: if even run.json cannot be written, the previous complete file stays."""
        if isinstance(exc, GeneratorExit) and self.status == "complete":
            return  # the consumer stopped reading after the job had finished: nothing was lost
        if isinstance(exc, GeneratorExit):
            # The consumer (a closed browser tab) stopped reading the job's events.
            exc = Cancelled("The session that started this job closed before it finished.")
        status = "cancelled" if isinstance(exc, Cancelled) else "failed"
        if self._has_finished_segments():
            status = "partial"
        if isinstance(exc, StudioError):
            msg = exc.message
        elif isinstance(exc, BaseException):
            msg = f"{type(exc).__name__}: {exc}"
        else:
            msg = str(exc)
        msg = " ".join(msg.split())
        try:
            self.update(status=status, error=msg)
        except Exception:  # the disk may be full; run.json keeps its last complete state
            with self._lock:
                self.data["status"], self.data["error"] = status, msg
            with _UNSAVED_LOCK:
                _UNSAVED[self.dir] = (status, msg)

    @property
    def effective_status(self) -> str:
        """The status to show: run.json's, except "interrupted" for a run still marked running
        whose process on this host is gone, and the unsaved failure of a run on a full disk."""
        with _UNSAVED_LOCK:
            unsaved = _UNSAVED.get(self.dir)
        if unsaved is not None and self.status == "running":
            return unsaved[0]
        return _live_status(self.data)


    def _has_finished_segments(self) -> bool:
        """True when a long shot saved finished segments here (the run can be resumed)."""
        try:
            from .generators.segments import finished_segments

            return finished_segments(self.dir) > 0
        except Exception:  # never let this check hide the original error
            return False


# --------------------------------------------------------------------------- listing


def _read_run_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise StudioError(f"{path} is damaged: {exc}") from exc
    if not isinstance(data, dict) or data.get("status") not in STATUSES:
        raise StudioError(f"{path} is damaged: not a run record")
    return data


@dataclass
class RunSummary:
    """One line of the run history. status adds "interrupted" (running, but its process on this
    host is gone) and "damaged" (run.json missing or unreadable; `error` says why)."""

    id: str
    path: Path
    status: str
    created: str | None = None
    updated: str | None = None
    error: str | None = None
    chains: list[str] = field(default_factory=list)
    input_file: str | None = None
    data: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "path": self.path.as_posix(),
            "status": self.status,
            "created": self.created,
            "updated": self.updated,
            "error": self.error,
            "chains": list(self.chains),
            "input_file": self.input_file,
        }


def _live_status(data: Mapping[str, Any]) -> str:
    status = data.get("status", "running")
    pid = data.get("pid")
    if status == "running" and data.get("host") == socket.gethostname() and isinstance(pid, int) \
            and pid != os.getpid() and not _pid_alive(pid):
        return "interrupted"
    return status


def _resolve_unsaved(path: Path, data: dict[str, Any], status: str, error: str | None) -> tuple[str, str | None]:
    """The failure of a run that could not be saved (see _UNSAVED); written now when possible."""
    with _UNSAVED_LOCK:
        unsaved = _UNSAVED.get(path)
    if unsaved is None:
        return status, error
    data = {**data, "status": unsaved[0], "error": unsaved[1], "updated": _iso(_utcnow())}
    try:
        atomic_write_json(path / RUN_JSON, data)
    except Exception:  # still no space: keep showing the failure from memory
        return unsaved
    with _UNSAVED_LOCK:
        _UNSAVED.pop(path, None)
    return unsaved


def clean_stale_temporaries(root: str | os.PathLike) -> list[Path]:
    """Remove the hidden `.part` temporaries left in run folders under `root` (and its users'
    folders) by a process that died (kill -9, power loss): only in runs no live process on this
    host owns. Returns what was removed."""
    root = Path(root)
    roots = [root] + (sorted(p for p in (root / USERS_DIR).iterdir() if p.is_dir())
                      if (root / USERS_DIR).is_dir() else [])
    removed = []
    me = os.getpid()
    for r in roots:
        for run_dir in (p for p in r.iterdir() if p.is_dir() and RUN_ID_RE.match(p.name)):
            try:
                data = json.loads((run_dir / RUN_JSON).read_text(encoding="utf-8"))
            except (OSError, ValueError):
                data = {}
            pid = data.get("pid") if isinstance(data, dict) else None
            if isinstance(data, dict) and data.get("status") == "running" and (
                    data.get("host") != socket.gethostname()
                    or (isinstance(pid, int) and (pid == me or _pid_alive(pid)))):
                continue  # a live job (here or on another node) may be writing these right now
            for p in run_dir.iterdir():
                if _PART_RE.match(p.name):
                    _remove(p)
                    removed.append(p)
    return removed


def list_runs(root: str | os.PathLike, *, limit: int | None = None) -> list[RunSummary]:
    """Runs under `root`, newest first. Never raises for a bad run folder: a missing or corrupt
    run.json is listed with status "damaged". Folders whose names are not run ids are ignored."""
    root = Path(root)
    if not root.is_dir():
        return []
    ids = sorted((p.name for p in root.iterdir() if p.is_dir() and RUN_ID_RE.match(p.name)), reverse=True)
    if limit is not None:
        ids = ids[:limit]
    out = []
    for run_id in ids:
        path = root / run_id
        try:
            data = _read_run_json(path / RUN_JSON)
            if data.get("id") != run_id:
                raise StudioError(f"run.json belongs to {data.get('id')!r}")
        except StudioError as exc:
            reason = "no run.json" if not (path / RUN_JSON).exists() else str(exc)
            out.append(RunSummary(run_id, path, "damaged", error=reason))
            continue
        status = _live_status(data)
        error = data.get("error")
        if status == "running":
            status, error = _resolve_unsaved(path, data, status, error)
        inp = data.get("input") if isinstance(data.get("input"), dict) else {}
        chains = data.get("chains") if isinstance(data.get("chains"), dict) else {}
        out.append(
            RunSummary(
                run_id,
                path,
                status,
                created=data.get("created"),
                updated=data.get("updated"),
                error=error,
                chains=list(chains),
                input_file=inp.get("file"),
                data=data,
            )
        )
    return out
