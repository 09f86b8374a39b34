"""Rows of the Runs and Models tables (what a newcomer needs to recognise a run or a model).

Pure functions over the service's records, so they are tested without a browser; the tabs in
ui/app.py show them in `gr.Dataframe`s with elem_ids `runs-table`, `study-runs-table` and
`models-table`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

from .players import file_url

RUN_HEADERS = ["photo", "generator", "chains", "status", "created", "run", "error"]
RUN_TYPES = ["markdown", "str", "str", "str", "str", "str", "str"]
MODEL_HEADERS = ["name", "kind", "model", "available", "licence", "commercial use", "terms", "why not"]
MODEL_TYPES = ["str", "str", "str", "str", "str", "str", "markdown", "str"]


@dataclass(frozen=True)
class RunRows:
    """The run history split for display: normal runs and study cells, both newest first;
    each row follows RUN_HEADERS."""

    runs: list[list[str]]
    study: list[list[str]]
    openable: list[tuple[str, str]]  # (dropdown label, run id) of runs that can be shown


def study_run_ids(outputs: Path) -> dict[str, str]:
    """{run id: study folder name} for every cell recorded in <outputs>/studies/*/study.json."""
    found: dict[str, str] = {}
    for state in sorted(Path(outputs).glob("studies/*/study.json")):
        try:
            data = json.loads(state.read_text())
            cells = data.get("cells") or {}
        except (OSError, ValueError, AttributeError):
            continue
        for cell in cells.values() if isinstance(cells, dict) else []:
            rid = cell.get("run_id") if isinstance(cell, dict) else None
            if isinstance(rid, str):
                found[rid] = state.parent.name
    return found


def _photo_cell(summary: Any) -> str:
    data = summary.data or {}
    inp = data.get("input") or {}
    name = inp.get("original_name") or inp.get("file") or ""
    thumb = ""
    if inp.get("file"):
        f = Path(summary.path) / inp["file"]
        if f.is_file():
            thumb = f'<img class="thumb" src="{file_url(f)}" alt=""> '
    return f"{thumb}{name}".strip() or "(no photo)"


def run_rows(summaries: Iterable[Any], outputs: Path, labels: dict[str, str]) -> RunRows:
    """Rows for the Runs tab from `Studio.list_runs()`; `labels` maps model name -> label."""
    studies = study_run_ids(outputs)
    runs, study, openable = [], [], []
    for r in summaries:
        d = r.data or {}
        model = (d.get("params") or {}).get("model", "")
        generator = labels.get(model, model)
        row = [_photo_cell(r), generator, ", ".join(r.chains), r.status, (r.created or "")[:19].replace("T", " "),
               r.id, r.error or ""]
        if r.id in studies:
            row[5] = f"{r.id} (study {studies[r.id]})"
            study.append(row)
        else:
            runs.append(row)
        if r.status in ("complete", "failed", "cancelled", "interrupted", "running", "partial"):
            photo = (d.get("input") or {}).get("original_name") or ""
            openable.append((" · ".join(x for x in (r.id, photo, generator) if x), r.id))
    return RunRows(runs, study, openable)


def model_rows(infos: Iterable[Any]) -> list[list[str]]:
    """Every registry entry (generators, stages and the Qwen2-VL captioners), available first;
    the licence, whether it allows commercial use (yes / conditions / no / unknown) and a link to
    its terms come before the long 'why not' so they are never off-screen."""
    return [[i.name, i.kind, i.label, "yes" if i.available else "no", i.license or "",
             getattr(i, "commercial_use", "unknown"),
             f"[terms]({i.license_url})" if getattr(i, "license_url", "") else "", i.reason or ""]
            for i in infos]
