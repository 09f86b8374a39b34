"""A study's inputs, its grid of cells (`StudySpec`, `Cell`), its events and result types, and
its state file (study.json, rewritten atomically; a lock file keeps two runners out).
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence

from .. import camera as cam
from ..errors import InputError, StudioError
from ..fileio import atomic_write_bytes, to_json_text
from ..imagefiles import IMAGE_EXTENSIONS, images_in  # noqa: F401 (IMAGE_EXTENSIONS re-exported)
from ..postprocess.chains import DEFAULT_ROLES, STANDARD_CHAINS  # noqa: F401 (re-exported)
from ..postprocess.chains import chain_name, chain_words


SCHEMA = 1
STATE_FILE = "study.json"
CELLS_DIR = "cells"
RUNS_DIR = "runs"
TASKS_DIR = "tasks"
LOGS_DIR = "logs"
CSV_FILE = "study.csv"
TABLE_FILE = "table.md"
PLOTS_FILE = "plots.html"
ZIP_FILE = "study.zip"
SLURM_SCRIPT = "study-array.sh"
SLURM_MANIFEST = "study-array.json"
LOCK_FILE = ".study.lock"
DEFAULT_PATHS = ("push-in", "slide-left", "pan-left")
CELL_STATUSES = ("pending", "running", "complete", "failed", "cancelled", "interrupted")
VARIANTS = {"native": "at each clip's own size", "common": "at the generator's size (resolution-aligned)",
            "study": "UvA study definitions (grey SSIM 7x7, range of the first frame)"}

# CSV columns before the adherence columns (whatever the teammate's scorer reports) and run id.
BASE_COLUMNS = (
    "photo", "path", "chain", "model", "seed", "width", "height", "frames",
    "tpsnr_mean", "tpsnr_std", "tssim_mean", "tssim_std",
    "common_tpsnr_mean", "common_tpsnr_std", "common_tssim_mean", "common_tssim_std",
    "study_tpsnr_mean", "study_tpsnr_std", "study_tssim_mean", "study_tssim_std",
    "tmse_mean", "tmse_std", "common_tmse_mean",
    "sharpness_mean", "sharpness_std", "brightness_mean", "brightness_std",
    "fidelity_psnr", "fidelity_ssim", "fidelity_common_psnr", "fidelity_common_ssim",
) + tuple(  # motion-compensated and no-reference measures (core.consistency), own and generator's size
    f"{prefix}{m}_{s}" for prefix in ("", "common_")
    for m in ("warp_mae", "warp_mse", "warp_psnr", "warp_ssim", "valid_fraction", "flicker",
              "lap_var", "grad_energy", "noise_sigma")
    for s in ("mean", "std"))
STATS_FILE = "stats.csv"
TAIL_COLUMNS = ("run_id", "video")


# --------------------------------------------------------------------------------- inputs


def find_images(spec: str | os.PathLike | Sequence[str | os.PathLike]) -> list[Path]:
    """Photos from a file, a folder (its images, sorted by name) or a list of files/folders."""
    specs = [spec] if isinstance(spec, (str, os.PathLike)) else list(spec)
    out = [p for s in specs for p in images_in(s)]
    if not out:
        raise InputError("Pick at least one photo for the study.")
    return [p.resolve() for p in out]


def parse_paths(paths: str | Sequence[str]) -> tuple[str, ...]:
    """Camera preset ids from "a,b,c" or a list; unknown ids are an InputError listing the known."""
    items = paths.split(",") if isinstance(paths, str) else list(paths)
    out = tuple(dict.fromkeys(p.strip().lower() for p in items if p and p.strip()))
    if not out:
        raise InputError(f"Pick at least one camera move ({', '.join(cam.PRESETS)}).")
    for p in out:
        if p not in cam.PRESETS:
            raise InputError(f"Unknown camera preset {p!r}; known: {', '.join(cam.PRESETS)}.")
    return out


def parse_chains(chains: str | Sequence[str]) -> tuple[str, ...]:
    """Chain texts from "all" (the five standard chains), "a,b" or a list, normalised."""
    items = chains.split(",") if isinstance(chains, str) else list(chains)
    out: list[str] = []
    for c in items:
        if not chain_words(c):
            continue  # an empty item between commas
        name = chain_name(c)
        if name == "all":
            out.extend(STANDARD_CHAINS)
        else:
            out.append(name)
    out = list(dict.fromkeys(out))
    if not out:
        raise InputError("Pick at least one chain (none, denoise, upscale, denoise+upscale, upscale+denoise, all).")
    return tuple(out)


def parse_value(text: str) -> Any:
    """A command-line value: an int, a float, true/false, or the text itself."""
    t = text.strip()
    for conv in (int, float):
        try:
            return conv(t)
        except ValueError:
            pass
    if t.lower() in ("true", "false"):
        return t.lower() == "true"
    return t


def parse_assignments(items: Sequence[str], what: str = "--param") -> dict[str, Any]:
    """["NAME=VALUE", ...] -> {NAME: value} with `parse_value`."""
    out: dict[str, Any] = {}
    for item in items:
        key, sep, value = str(item).partition("=")
        if not sep or not key.strip():
            raise InputError(f"{what} expects NAME=VALUE, got {item!r}.")
        out[key.strip()] = parse_value(value)
    return out


def parse_stage_params(items: Sequence[str]) -> dict[str, dict[str, Any]]:
    """["STAGE.NAME=VALUE", ...] -> {STAGE: {NAME: value}} (e.g. lanczos.scale=2)."""
    out: dict[str, dict[str, Any]] = {}
    for key, value in parse_assignments(items, "--stage-param").items():
        stage, dot, name = key.partition(".")
        if not dot or not stage or not name:
            raise InputError(f"--stage-param expects STAGE.NAME=VALUE (e.g. lanczos.scale=2), got {key!r}.")
        out.setdefault(stage, {})[name] = value
    return out


# --------------------------------------------------------------------------------- the grid


def cell_key(photo: str, path: str) -> str:
    """A cell's key in study.json: photo label and preset id, joined by a unit separator."""
    return f"{photo}\x1f{path}"


@dataclass(frozen=True)
class Cell:
    """One (photo, camera preset) job of the grid. label: the photo's file name, made unique."""

    index: int
    photo: Path
    label: str
    path: str

    @property
    def key(self) -> str:
        return cell_key(self.label, self.path)

    @property
    def file_id(self) -> str:
        return hashlib.sha256(self.key.encode("utf-8")).hexdigest()[:16]


@dataclass(frozen=True)
class StudySpec:
    """What a study runs: the grid (images x paths) and the settings every job shares.

    params: generator parameters; roles: {"denoise": stage, "upscale": stage};
    stage_params: stage -> parameters. amount/distance: preset move amount and scale (None:
    the preset's defaults)."""

    images: tuple[Path, ...]
    paths: tuple[str, ...] = DEFAULT_PATHS
    chains: tuple[str, ...] = STANDARD_CHAINS
    model: str = "kenburns"
    seed: int = 0
    params: Mapping[str, Any] = field(default_factory=dict)
    roles: Mapping[str, str] = field(default_factory=dict)
    stage_params: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    prompt: str = ""
    negative_prompt: str = ""
    amount: float | None = None
    distance: float | None = None
    # Shot length in seconds (None: the model's native clip); the path gets seconds x model fps frames.
    seconds: float | None = None
    # Refuse models whose licence does not allow commercial use (core.licences), before any cell runs.
    commercial_only: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "images", tuple(Path(p) for p in self.images))
        if self.seconds is not None:
            from ..tour import MAX_SHOT_SECONDS

            try:
                secs = float(self.seconds)
            except (TypeError, ValueError):
                raise InputError(f"--seconds must be a number, got {self.seconds!r}.") from None
            if not 0.2 <= secs <= MAX_SHOT_SECONDS:
                raise InputError(f"--seconds must be between 0.2 and {MAX_SHOT_SECONDS:g}, got {self.seconds!r}.")
            object.__setattr__(self, "seconds", secs)
        object.__setattr__(self, "paths", parse_paths(self.paths))
        object.__setattr__(self, "chains", parse_chains(self.chains))
        object.__setattr__(self, "roles", {**DEFAULT_ROLES, **{k: v for k, v in dict(self.roles).items() if v}})
        if not self.images:
            raise InputError("Pick at least one photo for the study.")

    def settings(self) -> dict[str, Any]:
        """Everything but the grid that decides the results (JSON-ready)."""
        return {
            "model": self.model, "seed": int(self.seed), "chains": list(self.chains),
            "params": dict(self.params), "roles": dict(self.roles),
            "stage_params": {k: dict(v) for k, v in self.stage_params.items()},
            "prompt": self.prompt, "negative_prompt": self.negative_prompt,
            "amount": self.amount, "distance": self.distance,
            **({"seconds": self.seconds} if self.seconds is not None else {}),
            **({"commercial_only": True} if self.commercial_only else {}),
        }

    def cells(self) -> list[Cell]:
        labels: list[str] = []
        for p in self.images:
            name, k = p.name, 2
            while name in labels:
                name, k = f"{p.stem}-{k}{p.suffix}", k + 1
            labels.append(name)
        return [Cell(i * len(self.paths) + j, photo, label, path)
                for i, (photo, label) in enumerate(zip(self.images, labels))
                for j, path in enumerate(self.paths)]


@dataclass
class StudyEvent:
    """Progress of a study. kind: "cell" (a cell finished: status complete or failed), "skipped"
    (already complete), "done" (result set). index/total count the cells this call handles."""

    kind: str
    index: int = 0
    total: int = 0
    photo: str = ""
    path: str = ""
    status: str = ""
    run_id: str | None = None
    error: str | None = None
    result: "StudyResult | None" = None


@dataclass
class StudyResult:
    """The reports of a study folder. rows: the CSV rows; tables: variant -> summary_table rows;
    markdown: table.md's text; incomplete: cells without results (index, photo, path, status,
    error); warnings: e.g. task folders made with different settings."""

    out: Path
    rows: list[dict[str, Any]]
    tables: dict[str, list[dict[str, Any]]]
    markdown: str
    csv_path: Path
    table_path: Path
    plots_path: Path | None
    total: int
    complete: int
    incomplete: list[dict[str, Any]] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    # paired statistics (core.stats.PairedStat) of every chain against "none"; stats.csv
    stats: list[Any] = field(default_factory=list)
    stats_path: Path | None = None

    def figures(self) -> dict[str, Any]:
        """Plotly box plots (CSV column -> Figure) of these rows, then the paired-difference
        plots ("paired:" + column)."""
        from .figures import box_figures, paired_figures

        return {**box_figures(self.rows), **paired_figures(self.stats)}


# --------------------------------------------------------------------------------- state files


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def load_state(out: str | os.PathLike) -> dict[str, Any] | None:
    """The study.json of a folder, or None when there is none; StudioError when damaged."""
    path = Path(out) / STATE_FILE
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise StudioError(f"{path} is damaged: {exc}") from exc
    if not isinstance(data, dict) or data.get("kind") != "study" or not isinstance(data.get("cells"), dict):
        raise StudioError(f"{path} is damaged: not a study record")
    return data


def _save_state(out: Path, state: dict[str, Any]) -> None:
    state["updated"] = _now()
    atomic_write_bytes(out / STATE_FILE, to_json_text(state).encode("utf-8"))


@contextlib.contextmanager
def _folder_lock(out: Path) -> Iterator[None]:
    """An exclusive lock on the study folder for this process (POSIX; a no-op elsewhere)."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows
        yield
        return
    fh = open(out / LOCK_FILE, "a+")
    try:
        try:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            raise InputError(f"Another study runner is using {out}; wait for it or pick another folder.") from None
        yield
    finally:
        fh.close()


def _settings_diff(a: Mapping[str, Any], b: Mapping[str, Any]) -> str | None:
    """The first setting that differs, as "name: A, now B" (None when equal)."""
    for k in sorted(set(a) | set(b)):
        if json.loads(json.dumps(a.get(k))) != json.loads(json.dumps(b.get(k))):
            return f"{k}: {json.dumps(a.get(k))}, now {json.dumps(b.get(k))}"
    return None
