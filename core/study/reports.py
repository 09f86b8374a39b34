"""A study's reports: study.csv (one row per video and chain), table.md (mean (±std) per chain,
then paired statistics), stats.csv, plots.html, and study.zip."""

from __future__ import annotations

import csv
import io
import json
import os
import re
import zipfile
from pathlib import Path
from typing import Any, Mapping, Sequence

from ..fileio import atomic_output, atomic_write_bytes
from .figures import write_plots_html
from .spec import (BASE_COLUMNS, CSV_FILE, PLOTS_FILE, RUNS_DIR, STATE_FILE, STATS_FILE, TABLE_FILE, TAIL_COLUMNS,
                   VARIANTS, ZIP_FILE, Cell, StudyResult, _settings_diff, cell_key, load_state)


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
    from .. import metrics as metriclib

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
    from .. import stats as statslib

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


def render_tables(tables: Mapping[str, list[dict[str, Any]]], settings: Mapping[str, Any],
                  records: Sequence[Mapping[str, Any]], total: int,
                  incomplete: Sequence[Mapping[str, Any]]) -> str:
    """table.md: a header, then the study-format table (mean (±std) of per-video means, per
    chain) for each metrics variant."""
    from .. import metrics as metriclib

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
