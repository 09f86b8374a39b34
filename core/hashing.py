"""Checksums of files and bytes: the one home of sha256-of-a-file in the studio.

`file_digests` reads a file once for both the sha256 and the git blob id (sha1 of
b"blob <size>\\0" + content, the id git and the Hugging Face hub show for small files), so
verifying a multi-GB checkpoint costs one pass. `cached_sha256_file` remembers digests by
(path, size, mtime) for callers that hash the same weight files on every job.
"""

from __future__ import annotations

import hashlib
import os
import threading
from pathlib import Path
from typing import Callable

CHUNK = 1 << 20

ByteFn = Callable[[int, "int | None"], None]  # (bytes done, bytes total or None)


def file_digests(path: str | os.PathLike, *, sha256: bool = True, git_blob: bool = True,
                 on_bytes: ByteFn | None = None, chunk: int = CHUNK) -> dict[str, str]:
    """sha256 and/or git blob id (sha1 of b"blob <size>\\0" + content) in one read."""
    path = Path(path)
    size = path.stat().st_size
    h256 = hashlib.sha256() if sha256 else None
    h1 = hashlib.sha1(b"blob %d\0" % size) if git_blob else None
    done = 0
    with open(path, "rb") as f:
        while block := f.read(chunk):
            if h256 is not None:
                h256.update(block)
            if h1 is not None:
                h1.update(block)
            done += len(block)
            if on_bytes is not None:
                on_bytes(done, size)
    out = {}
    if h256 is not None:
        out["sha256"] = h256.hexdigest()
    if h1 is not None:
        out["git_blob"] = h1.hexdigest()
    return out


def sha256_file(path: str | os.PathLike, chunk: int = CHUNK) -> str:
    """Hex sha256 of a file's content."""
    return file_digests(path, git_blob=False, chunk=chunk)["sha256"]


def git_blob_id(path: str | os.PathLike) -> str:
    """The git blob id of a file's content (what the hub shows for files kept outside LFS)."""
    return file_digests(path, sha256=False)["git_blob"]


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


_CACHE: dict[tuple[str, int, float], str] = {}
_CACHE_LOCK = threading.Lock()


def cached_sha256_file(path: str | os.PathLike) -> str:
    """`sha256_file`, remembered per (path, size, mtime): a file rewritten in place is hashed again."""
    st = os.stat(path)
    key = (str(path), st.st_size, st.st_mtime)
    with _CACHE_LOCK:
        if key in _CACHE:
            return _CACHE[key]
    digest = sha256_file(path)
    with _CACHE_LOCK:
        _CACHE[key] = digest
    return digest
