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

The package, by seam: `spec` (inputs, the grid, events, result, study.json), `runner` (cells
through the studio), `reports` (CSV, tables, stats, zip), `figures` (plotly box and paired plots,
plots.html) and `slurm` (job arrays and `collect`). Every name stays importable from `core.study`.
"""

from __future__ import annotations

from .spec import (  # noqa: F401
    BASE_COLUMNS, CELL_STATUSES, CELLS_DIR, CSV_FILE, DEFAULT_PATHS, DEFAULT_ROLES, IMAGE_EXTENSIONS,
    LOCK_FILE, LOGS_DIR, PLOTS_FILE, RUNS_DIR, SCHEMA, SLURM_MANIFEST, SLURM_SCRIPT, STANDARD_CHAINS,
    STATE_FILE, STATS_FILE, TABLE_FILE, TAIL_COLUMNS, TASKS_DIR, VARIANTS, ZIP_FILE, _folder_lock,
    _save_state, _settings_diff, Cell, cell_key, find_images, load_state, parse_assignments, parse_chains,
    parse_paths, parse_stage_params, parse_value, StudyEvent, StudyResult, StudySpec,
)
from .runner import (  # noqa: F401
    _run_cell, iter_study, new_study_dir, run_study,
)
from .reports import (  # noqa: F401
    _records, metric_row, render_tables, stats_csv, write_reports, zip_study,
)
from .figures import (  # noqa: F401
    PALETTE, PLOT_METRICS, box_figures, paired_figures, write_plots_html,
)
from .slurm import (  # noqa: F401
    collect, SlurmOptions, submit, task_command, write_slurm_array,
)
