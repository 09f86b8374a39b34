"""Studies on a SLURM cluster: a job array with one task per cell, and `collect`, which merges the
task folders into one set of reports."""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from ..errors import InputError, StudioError
from ..fileio import atomic_write_bytes, to_json_text
from .reports import write_reports
from .spec import (LOGS_DIR, SCHEMA, SLURM_MANIFEST, SLURM_SCRIPT, STATE_FILE, TASKS_DIR, StudyResult, StudySpec, _now,
                   load_state)

_SLURM_VALUE = re.compile(r"^[A-Za-z0-9_.:,=/@+%-]+$")


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
    if spec.commercial_only:
        args += ["--commercial-only"]
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
    repo = Path(__file__).resolve().parents[2]
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
