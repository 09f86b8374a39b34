"""Studies: every photo x camera move through the generator and every chain, with reports.

A study is a grid of *cells*, one per (photo, camera preset), in a fixed order (photos as given,
then presets). Each cell is one `Studio.run_job` with all the study's chains, so shared
post-processing prefixes are computed once per clip. This reproduces and extends the UvA CV2
2025 study (6 photos x 3 moves x 4 chains, a table of mean (±std) per chain).

Study folder (every name is a fixed pattern; nothing is named after user text)::

    <out>/study.json            grid state: settings, and per cell its status and run id
    <out>/cells/<id>.json       a finished cell's metrics per chain (id: 16 hex digits of the
                                cell key's SHA-256), written before the cell is marked complete
    <out>/runs/<run id>/        the run folders (CLI; the dashboard keeps its usual outputs)
    <out>/study.csv             one row per video and chain, every metric
    <out>/table.md              mean (±std) per chain over all videos: native, common, study; then
                                paired statistics of every chain vs none (core.stats)
    <out>/stats.csv             those paired statistics: mean difference, bootstrap CI, Wilcoxon p
    <out>/plots.html            a box plot per metric, chains on x (plotly.js inlined: offline)
    <out>/study-array.sh, study-array.json, tasks/<i>/, logs/    SLURM job arrays (below)

Resuming: study.json is rewritten atomically after every change of a cell. A re-run with the
same settings skips complete cells (whose cell file exists and whose photo is unchanged) and
redoes pending, failed, cancelled and interrupted ones, so an interrupted study finishes only
what is missing. Settings that change the results (model, chains, seed, parameters, roles) must
match the folder's; a new photo or preset simply adds cells. A lock file keeps two runners out
of one folder.

Cluster: `write_slurm_array` writes a job-array script with one task per cell; task i runs the
same runner on cell i only, into ``<out>/tasks/<i>/``; `collect` merges every task folder (and
the folder's own cells) into the same CSV, table and plots, listing missing or unfinished cells.
"""

from __future__ import annotations

import contextlib
import csv
import datetime as _dt
import hashlib
import io
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import time
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping, Sequence

from . import camera as cam
from .errors import Cancelled, InputError, StudioError
from .postprocess.chains import DEFAULT_ROLES, STANDARD_CHAINS
from .progress import Progress, ProgressFn, as_progress
from .fileio import atomic_output, atomic_write_bytes, to_json_text
from .hashing import sha256_file

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
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff")
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
# Box plots: CSV column -> title.
PLOT_METRICS: dict[str, str] = {
    "warp_psnr_mean": "Warped PSNR (dB, motion-compensated), own size",
    "warp_mae_mean": "Warped error (MAE, 0-255, motion-compensated), own size",
    "flicker_mean": "Flicker (grey levels, motion-compensated), own size",
    "common_warp_psnr_mean": "Warped PSNR (dB), generator's size",
    "common_flicker_mean": "Flicker (grey levels), generator's size",
    "lap_var_mean": "Sharpness: Laplacian variance on the 512x320 grid",
    "grad_energy_mean": "Sharpness: gradient energy on the 512x320 grid",
    "noise_sigma_mean": "Residual noise sigma (0-255, wavelet MAD)",
    "tpsnr_mean": "Temporal PSNR (dB, includes camera motion), own size",
    "tssim_mean": "Temporal SSIM (includes camera motion), own size",
    "common_tpsnr_mean": "Temporal PSNR (dB, includes camera motion), generator's size",
    "common_tssim_mean": "Temporal SSIM (includes camera motion), generator's size",
    "study_tpsnr_mean": "Temporal PSNR (dB), UvA study definition",
    "study_tssim_mean": "Temporal SSIM, UvA study definition",
    "tmse_mean": "Temporal MSE (0-255 scale, includes camera motion)",
    "sharpness_mean": "Sharpness (variance of the Laplacian)",
    "brightness_mean": "Brightness (mean grey level)",
    "fidelity_psnr": "Fidelity PSNR (dB): frame 0 vs the photo",
    "fidelity_ssim": "Fidelity SSIM: frame 0 vs the photo",
}
# Adherence fields that are bookkeeping (or a duplicate in other units), not scores worth a plot.
_ADHERENCE_NOT_PLOTTED = {"available", "frames", "seconds", "RotErr"}
PALETTE = ("#2563eb", "#dc2626", "#16a34a", "#9333ea", "#ea580c", "#0891b2", "#be185d", "#4d7c0f")
_SLURM_VALUE = re.compile(r"^[A-Za-z0-9_.:,=/@+%-]+$")


# --------------------------------------------------------------------------------- inputs


def find_images(spec: str | os.PathLike | Sequence[str | os.PathLike]) -> list[Path]:
    """Photos from a file, a folder (its images, sorted by name) or a list of files/folders."""
    specs = [spec] if isinstance(spec, (str, os.PathLike)) else list(spec)
    out: list[Path] = []
    for s in specs:
        p = Path(s).expanduser()
        if p.is_dir():
            found = sorted(q for q in p.iterdir() if q.is_file() and q.suffix.lower() in IMAGE_EXTENSIONS)
            if not found:
                raise InputError(f"No images ({', '.join(IMAGE_EXTENSIONS)}) in {p}.")
            out.extend(found)
        elif p.is_file():
            out.append(p)
        else:
            raise InputError(f"No such image or folder: {p}.")
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
        name = "+".join(w.strip().lower() for w in str(c).split("+") if w.strip())
        if name == "all":
            out.extend(STANDARD_CHAINS)
        elif name:
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

    def __post_init__(self) -> None:
        object.__setattr__(self, "images", tuple(Path(p) for p in self.images))
        if self.seconds is not None:
            from .tour import MAX_SHOT_SECONDS

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


# --------------------------------------------------------------------------------- running


def iter_study(
    studio: Any,
    spec: StudySpec,
    out: str | os.PathLike,
    progress: Progress | ProgressFn | None = None,
    *,
    task_index: int | None = None,
    on_cell: Callable[[StudyEvent], None] | None = None,
) -> Iterator[StudyEvent]:
    """Run the study's missing cells, yielding a `StudyEvent` per cell and a final "done" event
    with the `StudyResult` (reports written). Runs go to `studio.settings.outputs`.

    task_index: run only that cell of the grid (a job-array task). on_cell: called after every
    cell's state is saved (the CLI prints from it; tests interrupt through it). A failing cell
    (a StudioError, e.g. a move the generator cannot render) is recorded and the study goes on;
    Cancelled (after writing the reports of the finished cells), and any other exception, stop
    it with the cell marked cancelled / interrupted.
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    prog = as_progress(progress)
    cells = spec.cells()
    if task_index is not None:
        if not 0 <= task_index < len(cells):
            raise InputError(f"Task {task_index} is outside the grid of {len(cells)} cells (0-{len(cells) - 1}).")
        todo = [cells[task_index]]
    else:
        todo = cells
    runs_root = Path(studio.settings.outputs).resolve()
    with _folder_lock(out):
        state = load_state(out)
        settings = spec.settings()
        if state is None:
            state = {"schema": SCHEMA, "kind": "study", "created": _now(), "settings": settings, "cells": {}}
        else:
            diff = _settings_diff(state.get("settings") or {}, settings)
            if diff:
                raise InputError(f"{out} holds a study with other settings ({diff}); use another output folder.")
        state["runs"] = os.path.relpath(runs_root, out.resolve())
        state["grid"] = {"photos": [c.label for c in cells[:: len(spec.paths)]], "paths": list(spec.paths),
                         "size": len(cells)}
        if task_index is not None:
            state["task_index"] = task_index
        _save_state(out, state)

        total = len(todo)
        for n, cell in enumerate(todo):
            sub = prog.sub(n / total, (n + 1) / total)
            entry = state["cells"].get(cell.key)
            photo_sha = sha256_file(cell.photo) if cell.photo.is_file() else None
            if (entry and entry.get("status") == "complete" and (out / entry.get("file", "")).is_file()
                    and entry.get("photo_sha256") == photo_sha):
                ev = StudyEvent("skipped", n, total, cell.label, cell.path, "complete", entry.get("run_id"))
                sub(1.0, f"{cell.label} / {cell.path}: already done")
                if on_cell:
                    on_cell(ev)
                yield ev
                continue
            entry = {"index": cell.index, "photo": cell.label, "photo_file": str(cell.photo),
                     "photo_sha256": photo_sha, "path": cell.path, "status": "running", "run_id": None,
                     "error": None, "file": f"{CELLS_DIR}/{cell.file_id}.json", "started": _now()}
            state["cells"][cell.key] = entry
            _save_state(out, state)
            t0 = time.perf_counter()
            try:
                record = _run_cell(studio, spec, cell, sub, entry)
                (out / CELLS_DIR).mkdir(exist_ok=True)
                atomic_write_bytes(out / entry["file"], to_json_text(record).encode("utf-8"))
                entry.update(status="complete", seconds=time.perf_counter() - t0, finished=_now())
            except Cancelled as exc:
                entry.update(status="cancelled", error=exc.message, finished=_now())
                _save_state(out, state)
                # The user stopped the study: the reports show what was finished.
                write_reports(out, [state], cells=todo if task_index is not None else cells,
                              plots=task_index is None)
                raise
            except StudioError as exc:
                entry.update(status="failed", error=exc.message, finished=_now())
            except BaseException as exc:
                entry.update(status="interrupted", error=f"{type(exc).__name__}: {exc}", finished=_now())
                _save_state(out, state)
                raise
            _save_state(out, state)
            ev = StudyEvent("cell", n, total, cell.label, cell.path, entry["status"], entry["run_id"],
                            entry["error"])
            if on_cell:
                on_cell(ev)
            yield ev

        # A job-array task reports on its own cell only, and leaves the plots to `collect`.
        result = write_reports(out, [state], cells=todo if task_index is not None else cells,
                               plots=task_index is None)
    prog(1.0, "study done")
    yield StudyEvent("done", total, total, status="done", result=result)


def _run_cell(studio: Any, spec: StudySpec, cell: Cell, progress: Progress,
              entry: dict[str, Any]) -> dict[str, Any]:
    """One job: the photo with the preset, all chains; returns the cell record."""
    from .service import CameraSpec, JobRequest

    image = studio.load_image(cell.photo)
    camera = CameraSpec(mode="preset", preset=cell.path, amount=spec.amount, distance=spec.distance)
    if spec.seconds is not None:  # a long shot: seconds x the model's fps frames
        fps = studio.generator(spec.model).fps
        camera = studio.camera_path(camera, spec.model, num_frames=max(2, int(round(spec.seconds * fps))))
    request = JobRequest(
        image=image, image_bytes=cell.photo.read_bytes(), image_name=cell.photo.name, model=spec.model,
        camera=camera,
        prompt=spec.prompt, negative_prompt=spec.negative_prompt, seed=spec.seed, params=dict(spec.params),
        chains=tuple(spec.chains), roles=dict(spec.roles), stage_params={k: dict(v) for k, v in spec.stage_params.items()},
    )
    measured: dict[str, dict[str, Any]] = {}
    run_id = None
    for ev in studio.run_job(request, lambda f, m: progress(f, f"{cell.label} / {cell.path}: {m}")):
        run_id = ev.run_id
        entry["run_id"] = run_id
        if ev.chain and ev.metrics is not None:
            measured[ev.chain] = ev.metrics
    run = studio.open_run(run_id)
    run_level = run.data.get("adherence")
    chains: dict[str, Any] = {}
    for name, m in measured.items():
        rec = (run.data.get("chains") or {}).get(name) or {}
        metrics = dict(rec.get("metrics") or m)
        # Camera-adherence scores may sit in the metrics, in the chain's record or at the run's
        # top level by chain; the first found is kept with the metrics.
        if not isinstance(metrics.get("adherence"), Mapping):
            if isinstance(rec.get("adherence"), Mapping):
                metrics["adherence"] = rec["adherence"]
            elif isinstance(run_level, Mapping) and isinstance(run_level.get(name), Mapping):
                metrics["adherence"] = run_level[name]
        chains[name] = {"metrics": metrics, "video": f"{run_id}/{(rec.get('files') or {}).get('mp4', '')}",
                        "stages": rec.get("stages") or []}
    return {"schema": SCHEMA, "index": cell.index, "photo": cell.label, "path": cell.path,
            "model": spec.model, "seed": int(spec.seed), "run_id": run_id, "chains": chains}


def run_study(
    studio: Any,
    images: str | os.PathLike | Sequence[str | os.PathLike],
    paths: str | Sequence[str],
    chains: str | Sequence[str],
    model: str,
    out: str | os.PathLike,
    progress: Progress | ProgressFn | None = None,
    *,
    task_index: int | None = None,
    on_cell: Callable[[StudyEvent], None] | None = None,
    **settings: Any,
) -> StudyResult:
    """Run (or resume) a study and return its reports. images: files and/or folders; paths:
    preset ids; chains: chain texts or "all"; settings: the other `StudySpec` fields (seed,
    params, roles, stage_params, prompt, negative_prompt, amount, distance)."""
    spec = StudySpec(tuple(find_images(images)), parse_paths(paths), parse_chains(chains), model, **settings)
    result = None
    for ev in iter_study(studio, spec, out, progress, task_index=task_index, on_cell=on_cell):
        if ev.kind == "done":
            result = ev.result
    assert result is not None
    return result


# --------------------------------------------------------------------------------- reports


def _get(obj: Any, *keys: str) -> Any:
    for k in keys:
        if not isinstance(obj, Mapping):
            return None
        obj = obj.get(k)
    return obj


def _flatten_numbers(obj: Any, prefix: str) -> dict[str, float]:
    """Scalar numbers of a nested mapping as {prefix_key_subkey: value} (lists are skipped)."""
    out: dict[str, float] = {}
    if isinstance(obj, Mapping):
        for k, v in obj.items():
            out.update(_flatten_numbers(v, f"{prefix}_{re.sub(r'[^A-Za-z0-9]+', '_', str(k)).strip('_')}"))
    elif isinstance(obj, bool):
        out[prefix] = float(obj)
    elif isinstance(obj, (int, float)):
        out[prefix] = float(obj)
    return out


def metric_row(record: Mapping[str, Any], chain: str) -> dict[str, Any]:
    """One CSV row: a cell record's chain (see BASE_COLUMNS; adherence_* columns when the
    metrics carry an "adherence" mapping of numbers)."""
    c = record["chains"][chain]
    m = c.get("metrics") or {}
    size = m.get("size") or [None, None]
    row: dict[str, Any] = {
        "photo": record.get("photo"), "path": record.get("path"), "chain": chain, "model": record.get("model"),
        "seed": record.get("seed"), "width": size[0], "height": size[1], "frames": m.get("num_frames"),
    }
    for variant, prefix in (("native", ""), ("common", "common_"), ("study", "study_")):
        for metric in ("tpsnr", "tssim"):
            row[f"{prefix}{metric}_mean"] = _get(m, variant, metric, "mean")
            row[f"{prefix}{metric}_std"] = _get(m, variant, metric, "std")
    row["tmse_mean"] = _get(m, "native", "tmse", "mean")
    row["tmse_std"] = _get(m, "native", "tmse", "std")
    row["common_tmse_mean"] = _get(m, "common", "tmse", "mean")
    for metric in ("sharpness", "brightness"):
        row[f"{metric}_mean"] = _get(m, "native", metric, "mean")
        row[f"{metric}_std"] = _get(m, "native", metric, "std")
    row["fidelity_psnr"] = _get(m, "fidelity", "native", "psnr")
    row["fidelity_ssim"] = _get(m, "fidelity", "native", "ssim")
    row["fidelity_common_psnr"] = _get(m, "fidelity", "common", "psnr")
    row["fidelity_common_ssim"] = _get(m, "fidelity", "common", "ssim")
    for variant, prefix in (("native", ""), ("common", "common_")):
        for metric in ("warp_mae", "warp_mse", "warp_psnr", "warp_ssim", "valid_fraction", "flicker",
                       "lap_var", "grad_energy", "noise_sigma"):
            row[f"{prefix}{metric}_mean"] = _get(m, variant, metric, "mean")
            row[f"{prefix}{metric}_std"] = _get(m, variant, metric, "std")
    adherence = m.get("adherence") if isinstance(m, Mapping) else None
    if isinstance(adherence, Mapping):
        row.update(_flatten_numbers(adherence, "adherence"))
    row["run_id"] = record.get("run_id")
    row["video"] = c.get("video")
    return row


def _csv_cell(value: Any) -> Any:
    """A CSV value; text that a spreadsheet would run as a formula (a photo named "=cmd|...")
    is quoted with a leading apostrophe."""
    if value is None:
        return ""
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@", "\t", "\r"):
        return "'" + value
    return value


def _records(out: Path, state: Mapping[str, Any]) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    """(state entry, cell record) of every complete cell whose record file is readable."""
    found = []
    for entry in state.get("cells", {}).values():
        if entry.get("status") != "complete":
            continue
        path = out / str(entry.get("file", ""))
        try:
            record = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if isinstance(record, dict) and isinstance(record.get("chains"), dict):
            found.append((entry, record))
    return found


def write_reports(
    out: str | os.PathLike,
    states: Sequence[Mapping[str, Any]],
    *,
    cells: Sequence[Cell] | None = None,
    sources: Sequence[Path] | None = None,
    expected: Sequence[Mapping[str, Any]] | None = None,
    plots: bool = True,
) -> StudyResult:
    """Write study.csv, table.md and plots.html into `out` from the cell records of `states`
    (study.json contents; `sources[i]` is the folder of states[i], default `out`). cells /
    expected: the full grid, so cells without results are listed as incomplete. plots: also
    write plots.html (about 5 MB: plotly.js is inlined so the file works offline)."""
    from . import metrics as metriclib

    out = Path(out)
    sources = list(sources) if sources is not None else [out] * len(states)
    by_key: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {}
    status_by_key: dict[str, dict[str, Any]] = {}
    warnings: list[str] = []
    base_settings = None
    for state, folder in zip(states, sources):
        s = state.get("settings") or {}
        if base_settings is None:
            base_settings = s
        elif (diff := _settings_diff(base_settings, s)):
            warnings.append(f"{folder} was run with other settings ({diff}).")
        for key, entry in (state.get("cells") or {}).items():
            if (status_by_key.get(key) or {}).get("status") != "complete":
                status_by_key[key] = entry
        for entry, record in _records(Path(folder), state):
            key = cell_key(record.get("photo"), record.get("path"))
            by_key[key] = (entry, record)
            status_by_key[key] = entry

    if cells is not None:
        grid = [{"index": c.index, "photo": c.label, "path": c.path, "key": c.key} for c in cells]
    elif expected is not None:
        grid = [dict(e, key=cell_key(e["photo"], e["path"])) for e in expected]
    else:
        grid = sorted(({"index": int(e.get("index", 0)), "photo": e.get("photo"), "path": e.get("path"),
                        "key": k} for k, e in status_by_key.items()), key=lambda g: g["index"])
    order = {g["key"]: i for i, g in enumerate(grid)}
    records = sorted((r for k, (_, r) in by_key.items() if k in order),
                     key=lambda r: order[cell_key(r["photo"], r["path"])])
    incomplete = []
    for g in grid:
        if g["key"] in by_key:
            continue
        e = status_by_key.get(g["key"]) or {}
        incomplete.append({"index": g["index"], "photo": g["photo"], "path": g["path"],
                           "status": e.get("status", "missing"), "error": e.get("error")})

    chain_order: list[str] = list((base_settings or {}).get("chains") or [])
    for r in records:
        for c in r["chains"]:
            if c not in chain_order:
                chain_order.append(c)
    rows = [metric_row(r, c) for r in records for c in chain_order if c in r["chains"]]

    extra = sorted({k for row in rows for k in row if k not in BASE_COLUMNS and k not in TAIL_COLUMNS})
    columns = list(BASE_COLUMNS) + extra + list(TAIL_COLUMNS)
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: _csv_cell(row.get(k)) for k in columns})
    csv_path = out / CSV_FILE
    atomic_write_bytes(csv_path, buf.getvalue().encode("utf-8"))

    by_chain: dict[str, list[Mapping[str, Any]]] = {c: [] for c in chain_order}
    for r in records:
        for c in chain_order:
            if c in r["chains"]:
                by_chain[c].append(r["chains"][c]["metrics"])
    by_chain = {c: v for c, v in by_chain.items() if v}
    tables: dict[str, list[dict[str, Any]]] = {}
    for variant in VARIANTS:
        if by_chain and all(all(m.get(variant) for m in ms) for ms in by_chain.values()):
            tables[variant] = metriclib.summary_table(by_chain, variant=variant)
    from . import stats as statslib

    paired = statslib.compare_chains(rows) if rows else []
    markdown = render_tables(tables, base_settings or {}, records, len(grid), incomplete)
    if paired:
        markdown = markdown.rstrip() + "\n\n## Paired statistics: every chain vs none\n\n" + \
            statslib.ranking_markdown(paired).rstrip() + "\n"
    table_path = out / TABLE_FILE
    atomic_write_bytes(table_path, markdown.encode("utf-8"))
    stats_path = out / STATS_FILE
    atomic_write_bytes(stats_path, stats_csv(paired).encode("utf-8"))

    plots_path = out / PLOTS_FILE
    if rows and plots:
        write_plots_html(rows, plots_path, title=f"Study: {len(records)} videos", stats=paired)
    elif plots_path.exists():
        plots_path.unlink()
    return StudyResult(out, rows, tables, markdown, csv_path, table_path, plots_path if rows and plots else None,
                       len(grid), len(records), incomplete, warnings, paired, stats_path)


def stats_csv(paired: Sequence[Any]) -> str:
    """stats.csv: one row per metric x (chain, baseline): n, mean_diff, ci_low, ci_high, p_value,
    significant (see core.stats)."""
    buf = io.StringIO()
    cols = ["metric", "chain", "baseline", "n", "mean_diff", "ci_low", "ci_high", "p_value", "significant"]
    writer = csv.DictWriter(buf, fieldnames=cols, lineterminator="\n")
    writer.writeheader()
    for st in paired:
        writer.writerow({k: _csv_cell(v) for k, v in st.as_row().items()})
    return buf.getvalue()


def paired_figures(paired: Sequence[Any]) -> dict[str, Any]:
    """Paired-difference plots ("paired:" + CSV column -> Figure) of core.stats results."""
    from . import stats as statslib

    return {f"paired:{m}": statslib.paired_figure(paired, m) for m in dict.fromkeys(st.metric for st in paired)
            if any(st.metric == m and st.mean_diff is not None for st in paired)}


def render_tables(tables: Mapping[str, list[dict[str, Any]]], settings: Mapping[str, Any],
                  records: Sequence[Mapping[str, Any]], total: int,
                  incomplete: Sequence[Mapping[str, Any]]) -> str:
    """table.md: a header, then the study-format table (mean (±std) of per-video means, per
    chain) for each metrics variant."""
    from . import metrics as metriclib

    photos = sorted({r["photo"] for r in records})
    paths = list(dict.fromkeys(r["path"] for r in records))
    lines = [f"# Study: {settings.get('model', '?')}, seed {settings.get('seed', '?')}", "",
             f"{len(records)} of {total} videos ({len(photos)} photo(s) x {len(paths)} camera move(s): "
             f"{', '.join(paths) or '-'}). Each cell is the mean (±std) over videos of the per-video mean over "
             "consecutive frame pairs. Temporal PSNR/SSIM measure steadiness, not quality.", ""]
    if incomplete:
        lines += [f"Missing or unfinished: {len(incomplete)} cell(s): " +
                  "; ".join(f"{c['photo']} / {c['path']} ({c['status']})" for c in incomplete[:20]) +
                  (" ..." if len(incomplete) > 20 else ""), ""]
    for variant, rows in tables.items():
        lines += [f"## {VARIANTS[variant]}", "", metriclib.render_markdown(rows)]
    if not tables:
        lines += ["No finished videos yet.", ""]
    return "\n".join(lines).rstrip() + "\n"


def box_figures(rows: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """One plotly box plot per metric (PLOT_METRICS plus adherence_* columns), chains on x,
    one point per video (hover: photo / move)."""
    import plotly.graph_objects as go

    chains = list(dict.fromkeys(r["chain"] for r in rows))
    metrics = dict(PLOT_METRICS)
    for k in sorted({k for r in rows for k in r if k.startswith("adherence_")}):
        name = k[len("adherence_"):]
        if name not in _ADHERENCE_NOT_PLOTTED:
            metrics[k] = "Camera adherence: " + name.replace("_", " ")
    figs = {}
    for col, title in metrics.items():
        if not any(isinstance(r.get(col), (int, float)) for r in rows):
            continue
        fig = go.Figure()
        for k, chain in enumerate(chains):
            sel = [r for r in rows if r["chain"] == chain and isinstance(r.get(col), (int, float))]
            fig.add_trace(go.Box(
                y=[r[col] for r in sel], name=chain, boxpoints="all", jitter=0.4, pointpos=0,
                text=[f"{r['photo']} / {r['path']}" for r in sel], marker=dict(color=PALETTE[k % len(PALETTE)]),
                hovertemplate="%{text}<br>%{y:.4g}<extra>" + chain + "</extra>"))
        fig.update_layout(title=dict(text=title, font=dict(size=14)), height=360, showlegend=False,
                          margin=dict(l=60, r=10, t=40, b=40), template="plotly_white", xaxis_title="chain",
                          yaxis_title=title.split(",")[0])
        figs[col] = fig
    return figs


def write_plots_html(rows: Sequence[Mapping[str, Any]], path: Path, *, title: str = "Study",
                     stats: Sequence[Any] = ()) -> Path:
    """Every box plot (and paired-difference plot of `stats`) in one standalone HTML file;
    plotly.js is inlined once, so it opens offline."""
    import html

    figs = {**box_figures(rows), **paired_figures(stats)}
    parts = []
    for i, fig in enumerate(figs.values()):
        parts.append(fig.to_html(full_html=False, include_plotlyjs=(i == 0)))
    doc = ("<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>" + html.escape(title) +
           "</title></head><body style=\"font-family:sans-serif;max-width:1100px;margin:auto\">\n<h1>" +
           html.escape(title) + "</h1>\n" + "\n".join(parts) + "\n</body></html>\n")
    atomic_write_bytes(path, doc.encode("utf-8"))
    return path


def new_study_dir(outputs: str | os.PathLike) -> Path:
    """A fresh study folder ``<outputs>/studies/<id>`` (id in the run-id form: sortable by time)."""
    from .runs import new_run_id

    root = Path(outputs) / "studies"
    root.mkdir(parents=True, exist_ok=True)
    for _ in range(20):
        path = root / new_run_id()
        try:
            path.mkdir()
        except FileExistsError:
            continue
        return path
    raise StudioError(f"Could not create a study folder in {root}.")  # pragma: no cover


def zip_study(out: str | os.PathLike, *, include_videos: bool = True) -> Path:
    """study.zip with the reports, study.json, the cell records and (optionally) every video as
    ``videos/cell-<index>-chain-<k>.mp4`` listed in ``videos/index.csv``."""
    out = Path(out)
    state = load_state(out) or {"cells": {}}
    inside = out.resolve()

    def packable(p: Path) -> bool:
        # a cell's JSON names its files; only what really lies inside the study folder (after
        # resolving "..", absolute paths and symlinks) may be packed
        try:
            return p.resolve().is_relative_to(inside) and p.is_file()
        except (OSError, ValueError):
            return False

    runs_root = out / str(state.get("runs", RUNS_DIR))
    target = out / ZIP_FILE
    index_rows = [("file", "photo", "path", "chain", "run_id")]
    with atomic_output(target) as tmp:
        with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED) as zf:
            for name in (CSV_FILE, TABLE_FILE, PLOTS_FILE, STATE_FILE, STATS_FILE):
                if (out / name).is_file():
                    zf.write(out / name, arcname=name)
            for entry, record in _records(out, state):
                if not packable(out / str(entry["file"])):
                    continue
                zf.write(out / entry["file"], arcname=(out / entry["file"]).resolve().relative_to(inside).as_posix())
                if not include_videos:
                    continue
                for k, (chain, c) in enumerate(record["chains"].items()):
                    video = runs_root / str(c.get("video", ""))
                    if c.get("video") and packable(video):
                        arc = f"videos/cell-{int(record['index']):03d}-chain-{k:02d}.mp4"
                        zf.write(video, arcname=arc, compress_type=zipfile.ZIP_STORED)
                        index_rows.append((arc, record["photo"], record["path"], chain, record.get("run_id")))
            if include_videos:
                buf = io.StringIO()
                csv.writer(buf, lineterminator="\n").writerows(index_rows)
                zf.writestr("videos/index.csv", buf.getvalue())
    return target


# --------------------------------------------------------------------------------- cluster


@dataclass(frozen=True)
class SlurmOptions:
    """`#SBATCH` settings of a study job array (one GPU task per cell by default)."""

    job_name: str = "cami2v-study"
    partition: str = "gpu"
    gpus: int = 1
    cpus: int = 8
    mem: str | None = None
    time: str = "02:00:00"
    account: str | None = None
    max_parallel: int | None = None
    extra: tuple[str, ...] = ()  # more sbatch options, e.g. "--qos=short"
    setup: tuple[str, ...] = ()  # shell lines before the runner, e.g. "module load 2023"
    python: str | None = None  # default: this interpreter

    def __post_init__(self) -> None:
        for name in ("job_name", "partition", "mem", "time", "account"):
            v = getattr(self, name)
            if v is not None and not _SLURM_VALUE.match(str(v)):
                raise InputError(f"SLURM {name.replace('_', '-')} {v!r} may only contain letters, digits and _.:,=/@+%-.")
        for v in self.extra:
            if not v.startswith("--") or not _SLURM_VALUE.match(v[2:]):
                raise InputError(f"Extra sbatch option {v!r} must look like --name=value.")
        for line in self.setup:
            if "\n" in line or "\r" in line:
                raise InputError("Each setup line must be a single line.")
        if self.gpus < 0 or self.cpus < 1:
            raise InputError("SLURM --gpus must be >= 0 and --cpus >= 1.")
        if self.max_parallel is not None and self.max_parallel < 1:
            raise InputError("SLURM --max-parallel must be at least 1.")


def task_command(spec: StudySpec, out: Path, *, python: str, models: str | None = None, device: str = "auto",
                 dtype: str = "auto") -> list[str]:
    """The runner's argument list for one array task, before the task arguments."""
    args = [python, "-m", "core", "study"]
    for img in spec.images:
        args += ["--images", str(Path(img).resolve())]
    args += ["--paths", ",".join(spec.paths), "--chains", ",".join(spec.chains), "--model", spec.model,
             "--seed", str(int(spec.seed)), "--device", device, "--dtype", dtype]
    for k, v in spec.params.items():
        args += ["--param", f"{k}={v}"]
    for stage, params in spec.stage_params.items():
        for k, v in params.items():
            args += ["--stage-param", f"{stage}.{k}={v}"]
    if spec.roles.get("denoise"):
        args += ["--denoiser", spec.roles["denoise"]]
    if spec.roles.get("upscale"):
        args += ["--upscaler", spec.roles["upscale"]]
    if spec.prompt:
        args += ["--prompt", spec.prompt]
    if spec.negative_prompt:
        args += ["--negative-prompt", spec.negative_prompt]
    if spec.amount is not None:
        args += ["--amount", repr(float(spec.amount))]
    if spec.distance is not None:
        args += ["--distance", repr(float(spec.distance))]
    if spec.seconds is not None:
        args += ["--seconds", repr(float(spec.seconds))]
    if models:
        args += ["--models", str(Path(models).resolve())]
    args += ["--out", str(out.resolve())]
    return args


def write_slurm_array(
    spec: StudySpec,
    out: str | os.PathLike,
    options: SlurmOptions | None = None,
    *,
    models: str | None = None,
    device: str = "auto",
    dtype: str = "auto",
) -> Path:
    """Write ``<out>/study-array.sh`` (one array task per cell) and ``study-array.json`` (the
    grid, for `collect`). Task i runs ``python -m core study ... --task-index i --task-count N
    --task-out <out>/tasks/i``. Returns the script path."""
    opts = options or SlurmOptions()
    out = Path(out).resolve()
    cells = spec.cells()
    n = len(cells)
    (out / LOGS_DIR).mkdir(parents=True, exist_ok=True)
    (out / TASKS_DIR).mkdir(exist_ok=True)
    repo = Path(__file__).resolve().parents[1]
    python = opts.python or sys.executable
    base = task_command(spec, out, python=python, models=models, device=device, dtype=dtype)
    array = f"0-{n - 1}" + (f"%{opts.max_parallel}" if opts.max_parallel else "")
    lines = ["#!/bin/bash", f"#SBATCH --job-name={opts.job_name}", f"#SBATCH --array={array}",
             f"#SBATCH --partition={opts.partition}"]
    if opts.gpus:
        lines.append(f"#SBATCH --gres=gpu:{opts.gpus}")
    lines += [f"#SBATCH --cpus-per-task={opts.cpus}", f"#SBATCH --time={opts.time}",
              f"#SBATCH --output={out / LOGS_DIR}/task-%A_%a.out"]
    if opts.mem:
        lines.append(f"#SBATCH --mem={opts.mem}")
    if opts.account:
        lines.append(f"#SBATCH --account={opts.account}")
    lines += [f"#SBATCH {e}" for e in opts.extra]
    lines += ["", "# One cell (photo x camera move) of the study per array task; merge them afterwards with",
              f"#   {shlex.quote(python)} -m core study --collect {shlex.quote(str(out))}",
              "set -euo pipefail", 'TASK="${SLURM_ARRAY_TASK_ID:?submit this script with sbatch}"',
              f"cd {shlex.quote(str(repo))}"]
    lines += list(opts.setup)
    cmd = " ".join(shlex.quote(a) for a in base)
    lines.append(f'{cmd} --task-index "$TASK" --task-count {n} --task-out {shlex.quote(str(out / TASKS_DIR))}/"$TASK"')
    script = out / SLURM_SCRIPT
    atomic_write_bytes(script, ("\n".join(lines) + "\n").encode("utf-8"))
    os.chmod(script, 0o755)
    manifest = {"schema": SCHEMA, "kind": "study-array", "created": _now(), "settings": spec.settings(),
                "tasks": n, "cells": [{"index": c.index, "photo": c.label, "path": c.path} for c in cells],
                "script": SLURM_SCRIPT}
    atomic_write_bytes(out / SLURM_MANIFEST, to_json_text(manifest).encode("utf-8"))
    return script


def submit(script: Path) -> tuple[bool, str]:
    """`sbatch script` when sbatch is on PATH: (True, its output); else (False, the command)."""
    sbatch = shutil.which("sbatch")
    command = f"sbatch {shlex.quote(str(script))}"
    if sbatch is None:
        return False, command
    r = subprocess.run([sbatch, str(script)], capture_output=True, text=True, timeout=120)
    if r.returncode != 0:
        last = ((r.stderr or r.stdout).strip().splitlines() or ["no output"])[-1]
        raise StudioError(f"sbatch failed (exit {r.returncode}): {last}")
    return True, r.stdout.strip()


def collect(out: str | os.PathLike) -> StudyResult:
    """Merge ``<out>/tasks/<i>/`` (and `out`'s own cells) into study.csv, table.md and
    plots.html in `out`. Missing tasks (no folder, no state) and unfinished ones are listed in
    `incomplete`; the grid comes from study-array.json when present."""
    out = Path(out)
    if not out.is_dir():
        raise InputError(f"No such study folder: {out}.")
    states, sources = [], []
    warnings: list[str] = []
    own = load_state(out)
    if own is not None:
        states.append(own)
        sources.append(out)
    tasks = out / TASKS_DIR
    if tasks.is_dir():
        for d in sorted((p for p in tasks.iterdir() if p.is_dir() and p.name.isdigit()), key=lambda p: int(p.name)):
            try:
                st = load_state(d)
            except StudioError as exc:
                warnings.append(str(exc))
                continue
            if st is not None:
                states.append(st)
                sources.append(d)
    expected = None
    manifest_path = out / SLURM_MANIFEST
    if manifest_path.is_file():
        try:
            expected = json.loads(manifest_path.read_text(encoding="utf-8"))["cells"]
        except (OSError, ValueError, KeyError, TypeError) as exc:
            warnings.append(f"{manifest_path} is damaged ({exc}); listing only the cells found.")
    if not states and expected is None:
        raise InputError(f"{out} holds no study (no {STATE_FILE}, no {TASKS_DIR}/<i>/{STATE_FILE}, "
                         f"no {SLURM_MANIFEST}).")
    result = write_reports(out, states, sources=sources, expected=expected)
    result.warnings[:0] = warnings
    return result
