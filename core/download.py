"""Downloads: plain HTTPS files (resumable, through huggingface_hub's `http_get`) and files or
whole snapshots from the Hugging Face hub, with hub and network failures turned into one line.

`core.weights` decides what to fetch and verifies it; this module only moves bytes.
"""

from __future__ import annotations

import http.client
import io
import os
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any, Callable, Sequence

from .errors import ConfigError
from .hashing import CHUNK, ByteFn
from .registry import WeightFile

HF_URL = "https://huggingface.co"
USER_AGENT = "cami2v-studio-weights/1"


def offline_mode() -> bool:
    """HF_HUB_OFFLINE / TRANSFORMERS_OFFLINE, read at call time (not at import)."""
    for var in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"):
        if os.environ.get(var, "").strip().lower() in ("1", "true", "yes", "on"):
            return True
    return False


# -- plain HTTPS ------------------------------------------------------------------------------------

class DownloadFailed(Exception):
    """A transfer failed; `reason` is one human line, `status` the HTTP code if any."""

    def __init__(self, reason: str, status: int | None = None):
        super().__init__(reason)
        self.reason = reason
        self.status = status


# Why this is hand-written and not huggingface_hub's `http_get` (tried; see test_weights.py):
# * `http_get` refuses every URL, not only the hub's, while HF_HUB_OFFLINE=1 is set, and the
#   plain-URL tests run under it (conftest), so `test_download_resumes_with_range` and its
#   neighbours fail before a byte moves;
# * on a connection cut mid-body it keeps fewer bytes than arrived (0 of 100,000 in that
#   test), so the next run cannot resume from where the transfer stopped, and unless a private
#   argument (`_nb_retries`) is passed it sleeps and retries inside the call;
# * a complete `.part` answered with HTTP 416 is an error there, not a finished download.
# The hub's own files and snapshots do go through `hf_hub_download` / `snapshot_download`.


def download_url(url: str, dest: str | Path, *, expected_size: int | None = None,
                 on_bytes: ByteFn | None = None, check: Callable[[Path], None] | None = None,
                 allowed_schemes: Sequence[str] = ("https",), timeout: float = 60.0,
                 headers: dict[str, str] | None = None) -> Path:
    """Stream `url` into `dest`, resuming `<dest>.part` with a Range request when it exists.

    `check(part)` runs on the complete `.part` before it is renamed to `dest` (raise to refuse
    it). Raises DownloadFailed (network, HTTP status, truncated transfer; the `.part` is kept
    for the next attempt) or ConfigError for a URL scheme not in `allowed_schemes`.
    """
    dest = Path(dest)
    scheme = urllib.parse.urlsplit(url).scheme.lower()
    if scheme not in allowed_schemes:
        raise ConfigError(f"{url}: only {' or '.join(s + '://' for s in allowed_schemes)} URLs are downloaded.")
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    have = part.stat().st_size if part.exists() else 0
    if expected_size is not None and have > expected_size:
        part.unlink()
        have = 0
    if not (expected_size is not None and have == expected_size and have > 0):
        have = _transfer(url, part, have, expected_size, on_bytes, timeout, headers or {})
    if check is not None:
        check(part)
    os.replace(part, dest)
    return dest


def _transfer(url: str, part: Path, have: int, expected_size: int | None, on_bytes: ByteFn | None,
              timeout: float, headers: dict[str, str]) -> int:
    req_headers = {"User-Agent": USER_AGENT, "Accept-Encoding": "identity", **headers}
    if have:
        req_headers["Range"] = f"bytes={have}-"
    req = urllib.request.Request(url, headers=req_headers)
    try:
        resp = urllib.request.urlopen(req, timeout=timeout)
    except urllib.error.HTTPError as exc:
        if exc.code == 416 and have:
            # The server has nothing past what we hold: the .part is already complete.
            return have
        raise DownloadFailed(f"the server answered HTTP {exc.code} {exc.reason}", exc.code) from None
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise DownloadFailed(f"no connection to {urllib.parse.urlsplit(url).netloc} ({reason})") from None
    with resp:
        status = resp.status
        resumed = have > 0 and status == 206 and _range_start(resp.headers.get("Content-Range")) == have
        if not resumed:
            have = 0
        length = resp.headers.get("Content-Length")
        total = have + int(length) if length and length.isdigit() else expected_size
        done = have
        try:
            with open(part, "ab" if resumed else "wb") as f:
                while chunk := resp.read(CHUNK):
                    f.write(chunk)
                    done += len(chunk)
                    if on_bytes is not None:
                        on_bytes(done, total)
        except (OSError, http.client.HTTPException) as exc:
            raise DownloadFailed(f"the transfer broke off after {done} bytes ({exc}); run the same command again to resume") from None
    if total is not None and done < total:
        raise DownloadFailed(f"the transfer broke off after {done} of {total} bytes; run the same command again to resume")
    return done


def _range_start(content_range: str | None) -> int | None:
    # "bytes 100-199/200"
    if not content_range or not content_range.startswith("bytes "):
        return None
    try:
        return int(content_range[6:].split("-", 1)[0])
    except ValueError:
        return None


# -- the hub ----------------------------------------------------------------------------------------

def _forwarding_tqdm(on_bytes: ByteFn) -> type:
    """A tqdm class for huggingface_hub that reports bytes to `on_bytes` and prints nothing."""
    from tqdm.auto import tqdm

    class Forward(tqdm):
        def __init__(self, *args: Any, **kwargs: Any):
            kwargs.pop("name", None)
            kwargs["file"] = io.StringIO()
            kwargs["disable"] = False
            super().__init__(*args, **kwargs)

        def update(self, n: float | None = 1) -> bool | None:
            out = super().update(n)
            on_bytes(int(self.n), int(self.total) if self.total else None)
            return out

    return Forward


def _hub_error(exc: BaseException, wf: WeightFile) -> tuple[str, bool] | None:
    """(reason, config_problem) for a huggingface_hub / network failure, or None if unknown."""
    from huggingface_hub import errors as hf

    if isinstance(exc, hf.HFValidationError):
        return f"invalid repo id or file name ({exc})".replace("\n", " "), True
    if isinstance(exc, hf.OfflineModeIsEnabled):
        return "offline mode is on (HF_HUB_OFFLINE=1)", False
    if isinstance(exc, hf.GatedRepoError):
        return (f"{wf.repo} is a gated repo: accept its terms at {HF_URL}/{wf.repo} and set HF_TOKEN", False)
    if isinstance(exc, hf.RevisionNotFoundError):
        return f"revision {wf.revision!r} does not exist in {wf.repo}", True
    if isinstance(exc, hf.RemoteEntryNotFoundError):
        return f"{wf.repo} has no file {wf.filename!r}", True
    if isinstance(exc, hf.RepositoryNotFoundError):
        return (f"{wf.repo} was not found or needs a token (HTTP 401/404): check the name, or set HF_TOKEN", False)
    status = _http_status(exc)
    if status in (401, 403):
        return (f"access denied (HTTP {status}): {wf.repo} may be gated or private; accept its terms at "
                f"{HF_URL}/{wf.repo} and set HF_TOKEN", False)
    if isinstance(exc, hf.LocalEntryNotFoundError):
        if offline_mode():
            return "offline mode is on (HF_HUB_OFFLINE=1)", False
        return "the Hugging Face hub cannot be reached (no network?)", False
    if isinstance(exc, hf.HfHubHTTPError):
        return f"the hub answered HTTP {status}", False
    if isinstance(exc, (OSError, ConnectionError)) or type(exc).__module__.startswith(("httpx", "httpcore")):
        return f"the Hugging Face hub cannot be reached ({type(exc).__name__}: {exc})".replace("\n", " "), False
    return None


def _http_status(exc: BaseException) -> int | None:
    """The HTTP status behind a hub error; huggingface_hub sometimes wraps it (a 403 on the
    metadata request surfaces as LocalEntryNotFoundError)."""
    seen = 0
    cur: BaseException | None = exc
    while cur is not None and seen < 6:
        response = getattr(cur, "response", None)
        code = getattr(response, "status_code", None)
        if isinstance(code, int):
            return code
        cur = cur.__cause__ or cur.__context__
        seen += 1
    return None


def _hub_file(wf: WeightFile, staging: Path, *, token: str | None, endpoint: str | None,
              on_bytes: ByteFn | None, bar: bool) -> Path:
    from huggingface_hub import hf_hub_download

    kwargs: dict[str, Any] = {}
    if on_bytes is not None and not bar:
        kwargs["tqdm_class"] = _forwarding_tqdm(on_bytes)
    got = hf_hub_download(wf.repo, wf.filename, revision=wf.revision, local_dir=staging, token=token,
                          endpoint=endpoint, local_files_only=offline_mode(), **kwargs)
    return Path(got)


def _hub_snapshot(wf: WeightFile, target: Path, *, token: str | None, endpoint: str | None,
                  on_bytes: ByteFn | None, bar: bool) -> Path:
    from huggingface_hub import snapshot_download

    kwargs: dict[str, Any] = {}
    if on_bytes is not None and not bar:
        kwargs["tqdm_class"] = _forwarding_tqdm(on_bytes)
    if wf.include:
        kwargs["allow_patterns"] = list(wf.include)
    got = snapshot_download(wf.repo, revision=wf.revision, local_dir=target, token=token, endpoint=endpoint,
                            local_files_only=offline_mode(), **kwargs)
    return Path(got)


def snapshot_complete(folder: Path) -> bool:
    """A snapshot folder exists, is not empty, and holds no unfinished hub download."""
    if not folder.is_dir():
        return False
    if not any(p for p in folder.iterdir() if p.name != ".cache"):
        return False
    pending = folder / ".cache" / "huggingface" / "download"
    return not (pending.is_dir() and any(pending.rglob("*.incomplete")))
