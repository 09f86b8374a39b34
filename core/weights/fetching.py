"""Fetch and verify the files of a models.json entry (see `core.weights` for the rules)."""

from __future__ import annotations

import os
import shutil
import threading
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Iterator, Sequence

from ..errors import Cancelled, CheckpointError, ConfigError, WeightsMissing
from ..download import (HF_URL, USER_AGENT, DownloadFailed, _hub_error, _hub_file,  # noqa: F401
                       _hub_snapshot, download_url, offline_mode, snapshot_complete)
from ..hashing import CHUNK, ByteFn, file_digests, git_blob_id, sha256_file  # noqa: F401 (re-exported)
from ..progress import Progress, ProgressFn, as_progress
from ..registry import FETCH_COMMAND, ModelEntry, Registry, WeightFile

DEFAULT_REGISTRY = Path(__file__).resolve().parents[2] / "models.json"

_locks: dict[Path, threading.Lock] = {}
_locks_guard = threading.Lock()


def _lock_for(path: Path) -> threading.Lock:
    with _locks_guard:
        return _locks.setdefault(path.resolve(), threading.Lock())


# -- checksums ------------------------------------------------------------------------------------

def file_mismatch(path: Path, wf: WeightFile, on_bytes: ByteFn | None = None) -> str | None:
    """None if `path` matches every check models.json gives for `wf`, else what differs."""
    size = path.stat().st_size
    if wf.size is not None and size != wf.size:
        return f"is {size} bytes, expected {wf.size}"
    if wf.sha256 is None and wf.git_blob is None:
        return None
    got = file_digests(path, sha256=wf.sha256 is not None, git_blob=wf.git_blob is not None, on_bytes=on_bytes)
    for kind in ("sha256", "git_blob"):
        want = getattr(wf, kind)
        if want is not None and got[kind] != want:
            return f"fails its {kind.replace('_', ' ')} check (expected {want[:12]}..., got {got[kind][:12]}...)"
    return None


def has_checks(wf: WeightFile) -> bool:
    return wf.size is not None or wf.sha256 is not None or wf.git_blob is not None


def corrupt_path(target: Path) -> Path:
    return target.with_name(target.name + ".corrupt")


def _refuse(found: Path, target: Path, detail: str, entry: ModelEntry, wf: WeightFile) -> CheckpointError:
    """Move a file that failed its check aside and build the error to raise."""
    aside = corrupt_path(target)
    try:
        if aside.exists():
            aside.unlink()
        os.replace(found, aside)
        moved = f"moved it aside to {aside}"
    except OSError as exc:
        moved = f"could not move it aside ({exc}); delete it"
    return CheckpointError(f"{target.name} for {entry.label} {detail}; {moved}. {_how_to_get(entry, wf)}")


def _how_to_get(entry: ModelEntry, wf: WeightFile) -> str:
    if wf.repo or wf.url:
        return f"Run `{FETCH_COMMAND.format(name=entry.name)}` to download it again (from {source_url(wf)})."
    return f"Obtain it again: {wf.manual or 'see models.json'}"


def source_url(wf: WeightFile) -> str:
    """The exact URL a file comes from, for messages."""
    if wf.repo:
        if wf.snapshot:
            rev = f"/tree/{wf.revision}" if wf.revision and wf.revision != "main" else ""
            return f"{HF_URL}/{wf.repo}{rev}"
        return f"{HF_URL}/{wf.repo}/resolve/{wf.revision or 'main'}/{wf.filename}"
    return wf.url or (wf.manual or "no automatic source")


# -- fetch / verify -------------------------------------------------------------------------------

@dataclass(frozen=True)
class FileReport:
    """One file's state after `fetch` or `verify`."""

    entry: str
    role: str
    path: Path
    state: str  # "ok" | "fetched" | "present" | "missing" | "corrupt"
    detail: str = ""


def fetch(registry: Registry, name: str, progress: Progress | ProgressFn | None = None, *,
          token: str | None = None, endpoint: str | None = None, bar: bool = False,
          include_optional: bool = True, url_schemes: Sequence[str] = ("https",)) -> list[FileReport]:
    """Make every file of entry `name` present and verified; returns one report per file.

    progress: `progress(fraction, message)` over the whole entry (the dashboard's Download
    button); may raise Cancelled, which stops between chunks and keeps partial downloads for
    resuming. bar: tqdm bars on the terminal (the CLI). token: defaults to $HF_TOKEN.
    endpoint: another hub endpoint (mirrors, tests). url_schemes: schemes accepted for `url`
    sources at download time (models.json itself only admits https).
    """
    entry = registry.get(name)
    progress = as_progress(progress)
    token = token or os.environ.get("HF_TOKEN") or None
    files = [f for f in entry.files if include_optional or not f.optional]
    reports = []
    for i, wf in enumerate(files):
        sub = progress.sub(i / max(len(files), 1), (i + 1) / max(len(files), 1))
        try:
            reports.append(fetch_file(registry, entry, wf, sub, token=token, endpoint=endpoint, bar=bar,
                                      url_schemes=url_schemes))
        except WeightsMissing as err:
            if not wf.optional:
                raise
            # An optional file that cannot be fetched here does not block the entry.
            reports.append(FileReport(entry.name, wf.role, wf.resolve(registry.root), "missing", f"optional: {err}"))
    progress(1.0, f"{entry.label}: all files ready")
    return reports


def fetch_file(registry: Registry, entry: ModelEntry, wf: WeightFile, progress: Progress | None = None, *,
               token: str | None = None, endpoint: str | None = None, bar: bool = False,
               url_schemes: Sequence[str] = ("https",)) -> FileReport:
    """Fetch (if needed) and verify one file of `entry`."""
    progress = as_progress(progress)
    target = wf.resolve(registry.root)
    with _lock_for(target):
        if wf.snapshot:
            return _fetch_snapshot(entry, wf, target, progress, token=token, endpoint=endpoint, bar=bar)
        if target.exists():
            if target.is_dir():
                raise CheckpointError(f"{target} is a folder, but {entry.label} expects a file there.")
            progress(0.0, f"checking {target.name}")
            detail = file_mismatch(target, wf, _byte_reporter(progress, f"checking {target.name}", 0.0, 1.0))
            if detail is None:
                progress(1.0, f"{target.name}: present")
                return FileReport(entry.name, wf.role, target, "ok" if has_checks(wf) else "present")
            err = _refuse(target, target, detail, entry, wf)
            if not (wf.repo or wf.url):
                raise err
            # A source exists: fetch a fresh copy in place of the refused one.
        if not (wf.repo or wf.url):
            raise WeightsMissing(f"{entry.label} needs {target.name} at {target}, which has no automatic source; "
                                 f"{wf.manual or 'see models.json for how to obtain it'}.")
        progress(0.0, f"downloading {target.name}")
        on_bytes = _byte_reporter(progress, f"downloading {target.name}", 0.0, 0.9)
        if wf.repo:
            _fetch_hub_file(entry, wf, target, token=token, endpoint=endpoint, on_bytes=on_bytes, bar=bar)
        else:
            _fetch_url(entry, wf, target, on_bytes=on_bytes, bar=bar, url_schemes=url_schemes)
        progress(1.0, f"{target.name}: downloaded and verified")
        return FileReport(entry.name, wf.role, target, "fetched")


def _fetch_url(entry: ModelEntry, wf: WeightFile, target: Path, *, on_bytes: ByteFn | None, bar: bool,
               url_schemes: Sequence[str]) -> None:
    assert wf.url is not None

    def check(part: Path) -> None:
        detail = file_mismatch(part, wf)
        if detail is not None:
            raise _refuse(part, target, detail, entry, wf)

    if offline_mode():
        raise _missing(entry, wf, target, "offline mode is on (HF_HUB_OFFLINE=1)")
    with _tqdm_bar(bar, target.name, wf.size) as tbar:
        report = _tee(on_bytes, tbar)
        try:
            download_url(wf.url, target, expected_size=wf.size, on_bytes=report, check=check,
                         allowed_schemes=url_schemes)
        except DownloadFailed as exc:
            if exc.status is not None and 400 <= exc.status < 500 and exc.status not in (401, 403, 408, 429):
                raise _missing(entry, wf, target, f"{exc.reason}; the URL in models.json may be outdated") from None
            if exc.status in (401, 403):
                raise _missing(entry, wf, target, f"access denied ({exc.reason})") from None
            raise _missing(entry, wf, target, exc.reason) from None


@contextmanager
def _hub_errors(entry: ModelEntry, wf: WeightFile, target: Path) -> Iterator[None]:
    """Turn a hub failure into one clear line: ConfigError for a wrong repo/file name in
    models.json, WeightsMissing (command, URL, path) for offline, gated or denied access."""
    try:
        yield
    except (Cancelled, KeyboardInterrupt):
        raise
    except Exception as exc:  # noqa: BLE001 - mapped to one clear line below
        mapped = _hub_error(exc, wf)
        if mapped is None:
            raise
        reason, config_problem = mapped
        if config_problem:
            raise ConfigError(f"{entry.name}: {reason} (models.json, files role {wf.role!r}).") from None
        raise _missing(entry, wf, target, reason) from None


def _fetch_hub_file(entry: ModelEntry, wf: WeightFile, target: Path, *, token: str | None, endpoint: str | None,
                    on_bytes: ByteFn | None, bar: bool) -> None:
    staging = target.parent / ".downloads" / f"{entry.name}--{wf.role}"
    with _hub_errors(entry, wf, target):
        got = _hub_file(wf, staging, token=token, endpoint=endpoint, on_bytes=on_bytes, bar=bar)
    detail = file_mismatch(got, wf)
    if detail is not None:
        err = _refuse(got, target, detail, entry, wf)
        shutil.rmtree(staging, ignore_errors=True)
        raise err
    os.replace(got, target)
    shutil.rmtree(staging, ignore_errors=True)
    _prune_empty(target.parent / ".downloads")


def _fetch_snapshot(entry: ModelEntry, wf: WeightFile, target: Path, progress: Progress, *, token: str | None,
                    endpoint: str | None, bar: bool) -> FileReport:
    if snapshot_complete(target):
        progress(1.0, f"{target.name}: present")
        return FileReport(entry.name, wf.role, target, "present", "folder (not checksummed)")
    if target.exists() and not target.is_dir():
        raise CheckpointError(f"{target} is a file, but {entry.label} expects a model folder there.")
    if not wf.repo:
        raise WeightsMissing(f"{entry.label} needs the folder {target}, which is missing and has no automatic "
                             f"source; {wf.manual or 'see models.json for how to obtain it'}.")
    progress(0.0, f"downloading {wf.repo}")
    on_bytes = _byte_reporter(progress, f"downloading {wf.repo}", 0.0, 1.0)
    with _hub_errors(entry, wf, target):
        _hub_snapshot(wf, target, token=token, endpoint=endpoint, on_bytes=on_bytes, bar=bar)
    progress(1.0, f"{target.name}: downloaded")
    return FileReport(entry.name, wf.role, target, "fetched", "folder")


def _missing(entry: ModelEntry, wf: WeightFile, target: Path, reason: str) -> WeightsMissing:
    what = f"the {wf.repo} folder" if wf.snapshot else target.name
    return WeightsMissing(
        f"Cannot download {what} for {entry.label}: {reason}. On a machine with network access run "
        f"`{FETCH_COMMAND.format(name=entry.name)}` (source: {source_url(wf)}), or put the "
        f"{'folder' if wf.snapshot else 'file'} at {target}."
    )


def verify(registry: Registry, name: str, progress: Progress | ProgressFn | None = None) -> list[FileReport]:
    """Check every file of entry `name` without changing anything: missing, corrupt, ok (checked
    against models.json) or present (nothing to check against)."""
    entry = registry.get(name)
    progress = as_progress(progress)
    reports = []
    for i, wf in enumerate(entry.files):
        sub = progress.sub(i / len(entry.files), (i + 1) / len(entry.files))
        target = wf.resolve(registry.root)
        if wf.snapshot:
            if snapshot_complete(target):
                reports.append(FileReport(entry.name, wf.role, target, "present", "folder (not checksummed)"))
            else:
                state = "missing" if not target.exists() else "corrupt"
                detail = "" if state == "missing" else "the folder is empty or its download did not finish"
                reports.append(FileReport(entry.name, wf.role, target, state, detail + (" (optional)" if wf.optional else "")))
            continue
        if not target.is_file():
            reports.append(FileReport(entry.name, wf.role, target, "missing", "(optional)" if wf.optional else ""))
            continue
        detail = file_mismatch(target, wf, _byte_reporter(sub, f"checking {target.name}", 0.0, 1.0))
        if detail is not None:
            reports.append(FileReport(entry.name, wf.role, target, "corrupt", detail))
        elif has_checks(wf):
            reports.append(FileReport(entry.name, wf.role, target, "ok", _checked(wf)))
        else:
            reports.append(FileReport(entry.name, wf.role, target, "present", "no size or checksum in models.json"))
    return reports


def _checked(wf: WeightFile) -> str:
    return "matches " + ", ".join(k.replace("_", " ") for k in ("size", "sha256", "git_blob") if getattr(wf, k) is not None)


def raise_for_reports(entry: ModelEntry, reports: Iterable[FileReport]) -> None:
    """Turn a failed `verify` into the matching StudioError (corrupt first, then missing)."""
    reports = list(reports)
    for r in reports:
        if r.state == "corrupt":
            raise CheckpointError(f"{r.path.name} for {entry.label} {r.detail}. Run `{FETCH_COMMAND.format(name=entry.name)}` to replace it.")
    for r in reports:
        wf = entry.file(r.role)
        if r.state == "missing" and not wf.optional:
            raise WeightsMissing(f"{entry.label} needs {r.path.name}, which is missing at {r.path}; {_how_to_get(entry, wf)}")


def list_rows(registry: Registry, has_gpu: bool | None = None) -> list[dict[str, str]]:
    """One row per entry: name, kind, label, status ("available" or the reason)."""
    rows = []
    for e in registry:
        av = registry.availability(e, has_gpu=has_gpu)
        rows.append({"name": e.name, "kind": e.kind, "label": e.label,
                     "status": "available" if av.available else av.reason})
    return rows


# -- small helpers --------------------------------------------------------------------------------

def _byte_reporter(progress: Progress, label: str, start: float, end: float) -> ByteFn:
    def report(done: int, total: int | None) -> None:
        if total:
            progress(start + (end - start) * min(done / total, 1.0), f"{label}: {_mb(done)} of {_mb(total)}")
        else:
            progress(start, f"{label}: {_mb(done)}")

    return report


def _mb(n: int) -> str:
    return f"{n / 1e6:.1f} MB"


def _tee(on_bytes: ByteFn | None, tbar: Any) -> ByteFn:
    last = [0]

    def report(done: int, total: int | None) -> None:
        if tbar is not None:
            if total and tbar.total != total:
                tbar.total = total
            tbar.update(done - last[0])
            last[0] = done
        if on_bytes is not None:
            on_bytes(done, total)

    return report


class _tqdm_bar:
    """A tqdm byte bar when `enabled`, else None (context manager)."""

    def __init__(self, enabled: bool, desc: str, total: int | None):
        self.enabled, self.desc, self.total = enabled, desc, total
        self.bar: Any = None

    def __enter__(self) -> Any:
        if self.enabled:
            from tqdm.auto import tqdm

            self.bar = tqdm(total=self.total, desc=self.desc, unit="B", unit_scale=True, unit_divisor=1024)
        return self.bar

    def __exit__(self, *exc: Any) -> None:
        if self.bar is not None:
            self.bar.close()


def _prune_empty(folder: Path) -> None:
    try:
        folder.rmdir()
    except OSError:
        pass
