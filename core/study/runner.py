"""Running a study: every cell through `Studio.run_job`, resumable, one runner per folder."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping, Sequence

from ..errors import Cancelled, InputError, StudioError
from ..fileio import atomic_write_bytes, to_json_text
from ..hashing import sha256_file
from ..progress import Progress, ProgressFn, as_progress
from .reports import write_reports
from .spec import (CELLS_DIR, SCHEMA, Cell, StudyEvent, StudyResult, StudySpec, _folder_lock, _now, _save_state,
                   _settings_diff, find_images, load_state, parse_chains, parse_paths)


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
    if spec.commercial_only:  # the whole study is refused up front, with the licence's reason
        studio.check_commercial(spec.model, spec.chains, spec.roles)
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
    from ..service import CameraSpec, JobRequest

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
        commercial_only=spec.commercial_only,
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


def new_study_dir(outputs: str | os.PathLike) -> Path:
    """A fresh study folder ``<outputs>/studies/<id>`` (id in the run-id form: sortable by time)."""
    from ..runs import new_run_id

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
