"""Fetch, verify and list the weight files that models.json names.

    python -m core.weights list                   # name, kind, available or why not
    python -m core.weights fetch NAME [NAME...]   # download what is missing, then verify
    python -m core.weights verify NAME [NAME...]  # check size / sha256 / git blob id

Sources, per file of an entry (see `core.registry`):

* `repo` + `filename`: one file from the Hugging Face hub (`hf_hub_download`, resumable);
* `repo` + `"snapshot": true`: the whole repo into the folder `path` (`snapshot_download`);
* `url`: a plain HTTPS download, resumed with an HTTP Range request from `<path>.part`;
* neither: a local file, used as is; its `manual` text says how to obtain it.

A file that already exists and verifies is never fetched again. A file whose `size`, `sha256`
or `git_blob` (sha1 of b"blob <size>\\0" + content, the id git and the hub show for small files)
does not match is moved aside as `<path>.corrupt` and refused with CheckpointError. No network,
offline mode (`HF_HUB_OFFLINE=1`) or a gated repo gives one WeightsMissing line naming the
command, the source URL and the target path. The hub token comes from `HF_TOKEN` (or
`hf auth login`).

The package: `fetching` (what to fetch, verification, reports), `cli` (the command line); the
byte transfers are in `core.download` and the checksums in `core.hashing`. Every name stays
importable from `core.weights`.
"""

from __future__ import annotations

from .fetching import (  # noqa: F401
    CHUNK, DEFAULT_REGISTRY, HF_URL, USER_AGENT, corrupt_path, download_url, DownloadFailed, fetch,
    fetch_file, file_mismatch, FileReport, has_checks, list_rows, offline_mode, raise_for_reports,
    snapshot_complete, source_url, verify,
)
from .fetching import ByteFn, file_digests, git_blob_id, sha256_file  # noqa: F401 (core.hashing)
from .cli import main  # noqa: F401
