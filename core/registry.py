"""The model registry: `models.json`, parsed into typed entries.

Schema (one object; `models` maps a registry name to an entry):

    {
      "schema": 1,
      "models": {
        "cami2v-512": {
          "kind": "generator",            # generator | captioner | denoiser | upscaler | interpolator
          "variant": "cami2v",            # which implementation builds it
          "label": "CamI2V 512x320",      # what the UI shows
          "description": "...",
          "license": "MIT",               # SPDX id or the licence's name (of the weights)
          "commercial_use": "yes",        # yes | conditions | no | unknown (see core.licences)
          "license_url": "https://...",   # where the terms are
          "needs_gpu": false,             # true: listed as unavailable without CUDA
          "requires": ["transformers"],   # importable Python modules it needs
          "defaults": {"steps": 25},      # default parameters (validated by the model)
          "options": {"preset": "..."},   # implementation options (preset names, dtypes)
          "files": [{
            "role": "checkpoint",         # what the implementation calls this file
            "path": "ckpts/512_cami2v_100k.pt",   # relative to the registry's root, or absolute
            "repo": "MuteApo/CamI2V", "filename": "512_cami2v_100k.pt", "revision": "main",
            "url": null,                  # plain HTTPS source instead of the hub
            "sha256": null, "size": null, "git_blob": null,
            "optional": false,
            "manual": null,               # how to obtain it when no automatic source exists
            "snapshot": false,            # true: `repo` is fetched whole into the folder `path`
            "include": []                 # with snapshot: only files matching these globs
          }]
        }
      }
    }

A broken file or entry raises `ConfigError` with one line naming the entry and the field.
"""

from __future__ import annotations

import importlib.util
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping

from .errors import ConfigError, WeightsMissing
from .licences import COMMERCIAL_USE

KINDS = ("generator", "captioner", "denoiser", "upscaler", "interpolator")
# The kind each known implementation provides: an entry claiming another can never work, so it is
# refused when models.json is read rather than when a job first uses it. Unknown variants are
# left to the code that builds them (it names the entry then).
VARIANT_KINDS = {
    "kenburns": "generator", "cami2v": "generator", "svd": "generator", "sv3d": "generator",
    "nlmeans": "denoiser", "fastdvdnet": "denoiser",
    "lanczos": "upscaler", "upscale-a-video": "upscaler", "realesrgan": "upscaler",
    "qwen2-vl": "captioner",
    "dis-interp": "interpolator", "rife": "interpolator",
}
_NAME_RE = re.compile(r"^[a-z0-9][a-z0-9._-]*$")
_SHA_RE = re.compile(r"^[0-9a-f]{64}$")
_BLOB_RE = re.compile(r"^[0-9a-f]{40}$")

FETCH_COMMAND = "python -m core.weights fetch {name}"


@dataclass(frozen=True)
class WeightFile:
    role: str
    path: str  # as written in models.json
    repo: str | None = None
    filename: str | None = None
    revision: str | None = None
    url: str | None = None
    sha256: str | None = None
    size: int | None = None
    git_blob: str | None = None
    optional: bool = False
    manual: str | None = None
    # For a hub snapshot of a whole folder (e.g. a transformers model): the repo is fetched
    # into `path` as a directory; `include` (glob patterns) limits it to the files needed.
    snapshot: bool = False
    include: tuple[str, ...] = ()

    def resolve(self, root: Path) -> Path:
        p = Path(self.path).expanduser()
        return p if p.is_absolute() else (root / p)

    @property
    def source(self) -> str:
        """Human-readable origin, for messages."""
        if self.repo:
            return f"https://huggingface.co/{self.repo}" + (f" ({self.filename})" if self.filename else "")
        if self.url:
            return self.url
        return self.manual or "no automatic source"


@dataclass(frozen=True)
class ModelEntry:
    name: str
    kind: str
    variant: str
    label: str
    description: str = ""
    license: str = ""
    commercial_use: str = "unknown"  # one of core.licences.COMMERCIAL_USE
    license_url: str = ""
    needs_gpu: bool = False
    requires: tuple[str, ...] = ()
    defaults: Mapping[str, Any] = field(default_factory=dict)
    options: Mapping[str, Any] = field(default_factory=dict)
    files: tuple[WeightFile, ...] = ()

    def file(self, role: str) -> WeightFile:
        for f in self.files:
            if f.role == role:
                return f
        raise KeyError(f"{self.name} has no file with role {role!r}")

    def has_file(self, role: str) -> bool:
        return any(f.role == role for f in self.files)


@dataclass(frozen=True)
class Availability:
    available: bool
    reason: str = ""  # empty when available


class Registry:
    """Parsed models.json plus the root that relative weight paths are resolved against."""

    def __init__(self, entries: Iterable[ModelEntry], root: Path, source: str = "models.json"):
        self.root = Path(root)
        self.source = source
        self._entries: dict[str, ModelEntry] = {}
        for e in entries:
            self._entries[e.name] = e

    # -- loading -------------------------------------------------------------------------
    @classmethod
    def load(cls, path: str | Path, root: str | Path | None = None) -> "Registry":
        """Read and validate a registry file. `root` defaults to the file's folder."""
        path = Path(path)
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise ConfigError(f"{path}: model registry not found.") from None
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"{path}: cannot read the model registry ({exc}).") from None
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ConfigError(f"{path}: not valid JSON (line {exc.lineno}, column {exc.colno}: {exc.msg}).") from None
        except RecursionError:
            # a file of thousands of nested brackets; no registry is nested more than a few levels
            raise ConfigError(f"{path}: nested too deeply to be a model registry.") from None
        return cls.from_dict(data, root=Path(root) if root else path.resolve().parent, source=str(path))

    @classmethod
    def from_dict(cls, data: Any, root: Path, source: str = "models.json") -> "Registry":
        if not isinstance(data, dict):
            raise ConfigError(f"{source}: the top level must be an object with a 'models' field.")
        models = data.get("models")
        if not isinstance(models, dict):
            raise ConfigError(f"{source}: field 'models' must be an object mapping names to entries.")
        entries = [_parse_entry(source, name, raw) for name, raw in models.items()]
        return cls(entries, root=root, source=source)

    # -- queries -------------------------------------------------------------------------
    def __contains__(self, name: str) -> bool:
        return name in self._entries

    def __iter__(self):
        return iter(self._entries.values())

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, name: str) -> ModelEntry:
        try:
            return self._entries[name]
        except KeyError:
            known = ", ".join(sorted(self._entries)) or "none"
            raise ConfigError(f"{self.source}: no model named {name!r} (known: {known}).") from None

    def of_kind(self, kind: str) -> list[ModelEntry]:
        return [e for e in self._entries.values() if e.kind == kind]

    def path(self, entry: ModelEntry | str, role: str) -> Path:
        """Absolute path of one of an entry's files."""
        e = self.get(entry) if isinstance(entry, str) else entry
        return e.file(role).resolve(self.root)

    def missing_files(self, entry: ModelEntry | str) -> list[WeightFile]:
        e = self.get(entry) if isinstance(entry, str) else entry
        return [f for f in e.files if not f.optional and not f.resolve(self.root).exists()]

    def availability(self, entry: ModelEntry | str, has_gpu: bool | None = None) -> Availability:
        """Whether the entry can run here, and if not, the one-line reason."""
        e = self.get(entry) if isinstance(entry, str) else entry
        for mod in e.requires:
            if importlib.util.find_spec(mod) is None:
                return Availability(False, f"needs the Python package '{mod}', which is not installed")
        if e.needs_gpu:
            if has_gpu is None:
                has_gpu = _cuda_available()
            if not has_gpu:
                return Availability(False, "needs a CUDA GPU, and none is available on this machine")
        missing = self.missing_files(e)
        if missing:
            f = missing[0]
            more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
            return Availability(False, f"weights missing: {f.resolve(self.root)}{more}")
        return Availability(True)

    def require_files(self, entry: ModelEntry | str) -> None:
        """Raise WeightsMissing naming the file, the command and the path, if any file is absent."""
        e = self.get(entry) if isinstance(entry, str) else entry
        missing = self.missing_files(e)
        if not missing:
            return
        f = missing[0]
        target = f.resolve(self.root)
        if f.repo or f.url:
            how = f"run `{FETCH_COMMAND.format(name=e.name)}` (from {f.source})"
        else:
            how = f"obtain it manually: {f.manual or 'see models.json'}"
        raise WeightsMissing(f"{e.label} needs {Path(f.path).name}, which is missing at {target}; {how}.")


# -- parsing helpers -------------------------------------------------------------------------

def _cuda_available() -> bool:
    from .devices import cuda_available  # torch-free: listing models must not import torch

    return cuda_available()


def _err(source: str, name: str, fld: str, msg: str) -> ConfigError:
    return ConfigError(f"{source}: entry {name!r}, field '{fld}': {msg}.")


def _get(source, name, raw, fld, typ, default=..., allow_none=False, where=""):
    shown = f"{where}.{fld}" if where else fld
    if fld not in raw:
        if default is ...:
            raise _err(source, name, shown, "is required")
        return default
    v = raw[fld]
    if v is None and allow_none:
        return None
    if typ is bool:
        ok = isinstance(v, bool)
    elif typ is int:
        ok = isinstance(v, int) and not isinstance(v, bool)
    else:
        ok = isinstance(v, typ)
    if not ok:
        tname = {str: "a string", bool: "true or false", int: "an integer", dict: "an object", list: "a list"}[typ]
        raise _err(source, name, shown, f"must be {tname}, got {json.dumps(v)[:60]}")
    return v


_ENTRY_FIELDS = {"kind", "variant", "label", "description", "license", "commercial_use", "license_url", "needs_gpu",
                 "requires", "defaults", "options", "files"}
_FILE_FIELDS = {"role", "path", "repo", "filename", "revision", "url", "sha256", "size", "git_blob", "optional",
                "manual", "snapshot", "include", "note"}


def _parse_entry(source: str, name: Any, raw: Any) -> ModelEntry:
    if not isinstance(name, str) or not _NAME_RE.match(name):
        raise ConfigError(f"{source}: model name {name!r} must be lower-case letters, digits, '.', '_' or '-'.")
    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: entry {name!r} must be an object.")
    unknown = set(raw) - _ENTRY_FIELDS
    if unknown:
        raise _err(source, name, sorted(unknown)[0], "is not a known field")
    kind = _get(source, name, raw, "kind", str)
    if kind not in KINDS:
        raise _err(source, name, "kind", f"must be one of {', '.join(KINDS)}, got {kind!r}")
    variant = _get(source, name, raw, "variant", str)
    if variant in VARIANT_KINDS and VARIANT_KINDS[variant] != kind:
        raise _err(source, name, "kind", f"variant {variant!r} is a {VARIANT_KINDS[variant]}, not a {kind}")
    label = _get(source, name, raw, "label", str, default=name)
    requires = _get(source, name, raw, "requires", list, default=[])
    for i, r in enumerate(requires):
        if not isinstance(r, str) or not r:
            raise _err(source, name, f"requires[{i}]", "must be a module name")
    commercial_use = _get(source, name, raw, "commercial_use", str, default="unknown")
    if commercial_use not in COMMERCIAL_USE:
        raise _err(source, name, "commercial_use", f"must be one of {', '.join(COMMERCIAL_USE)}, got {commercial_use!r}")
    license_url = _get(source, name, raw, "license_url", str, default="")
    if license_url and not license_url.startswith("https://"):
        raise _err(source, name, "license_url", "must be an https:// URL")
    files_raw = _get(source, name, raw, "files", list, default=[])
    files = []
    roles = set()
    for i, fr in enumerate(files_raw):
        wf = _parse_file(source, name, i, fr)
        if wf.role in roles:
            raise _err(source, name, f"files[{i}].role", f"duplicate role {wf.role!r}")
        roles.add(wf.role)
        files.append(wf)
    return ModelEntry(
        name=name,
        kind=kind,
        variant=variant,
        label=label,
        description=_get(source, name, raw, "description", str, default=""),
        license=_get(source, name, raw, "license", str, default=""),
        commercial_use=commercial_use,
        license_url=license_url,
        needs_gpu=_get(source, name, raw, "needs_gpu", bool, default=False),
        requires=tuple(requires),
        defaults=dict(_get(source, name, raw, "defaults", dict, default={})),
        options=dict(_get(source, name, raw, "options", dict, default={})),
        files=tuple(files),
    )


def _parse_file(source: str, name: str, i: int, raw: Any) -> WeightFile:
    pre = f"files[{i}]"
    if not isinstance(raw, dict):
        raise _err(source, name, pre, "must be an object")
    unknown = set(raw) - _FILE_FIELDS
    if unknown:
        raise _err(source, name, f"{pre}.{sorted(unknown)[0]}", "is not a known field")

    def g(fld, typ, default=None):
        return _get(source, name, raw, fld, typ, default=default, allow_none=True, where=pre) if fld in raw else default

    role = _get(source, name, raw, "role", str, where=pre)
    path = _get(source, name, raw, "path", str, where=pre)
    if not path.strip():
        raise _err(source, name, f"{pre}.path", "must not be empty")
    sha = g("sha256", str)
    if sha is not None and not _SHA_RE.match(sha):
        raise _err(source, name, f"{pre}.sha256", "must be 64 lower-case hex digits")
    blob = g("git_blob", str)
    if blob is not None and not _BLOB_RE.match(blob):
        raise _err(source, name, f"{pre}.git_blob", "must be 40 lower-case hex digits")
    size = g("size", int)
    if size is not None and size <= 0:
        raise _err(source, name, f"{pre}.size", "must be a positive number of bytes")
    url = g("url", str)
    if url is not None and not url.startswith("https://"):
        raise _err(source, name, f"{pre}.url", "must be an https:// URL")
    repo = g("repo", str)
    filename = g("filename", str)
    snapshot = bool(g("snapshot", bool, False))
    include = g("include", list, [])
    if include and (not snapshot or any(not isinstance(x, str) or not x for x in include)):
        raise _err(source, name, f"{pre}.include", "must be a list of glob patterns, on a snapshot file")
    if repo and not filename and not snapshot:
        raise _err(source, name, f"{pre}.filename", "is required with 'repo' (or set \"snapshot\": true)")
    return WeightFile(
        role=role,
        path=path,
        repo=repo,
        filename=filename,
        revision=g("revision", str),
        url=url,
        sha256=sha,
        size=size,
        git_blob=blob,
        optional=bool(g("optional", bool, False)),
        manual=g("manual", str),
        snapshot=snapshot,
        include=tuple(include),
    )
