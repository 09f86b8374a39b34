"""The Study tab and the export panel. Layout and wiring only: every action is one `Studio` call
(`run_study`, `cancel`, `export_run`, `check_watermark`); cancel goes through the Studio's job
registry like every other job.

Both functions create their components in the current `gr.Blocks` context; the dashboard calls
`build_study_tab(studio)` inside ``with gr.Tab("Study"):`` and `build_export_panel(studio,
state)` under the results. A study shares the device queue with generation
(``concurrency_id="gpu"``, limit 1), so it waits its turn like any other job.
"""

from __future__ import annotations

import sys
import traceback
from pathlib import Path
from typing import Any

import gradio as gr

from core import camera as cam
from core import exports as exportlib  # layout constants only (formats, labels, limits)
from core import stats as statslib
from core import study as studylib  # layout constants, report file names and the box plots
from core.errors import StudioError
from core.postprocess.chains import STANDARD_CHAINS
from core.service import Studio

from .feedback import stage_picker, status_error, status_ok
from .uploads import uploaded_file

ASSETS = Path(__file__).resolve().parents[1] / "assets"
GPU = "gpu"
DEFAULT_EXPORT_FORMATS = ["mp4", "camera-txt", "metrics-json"]


def _error(exc: BaseException) -> gr.Error:
    if isinstance(exc, StudioError):
        return gr.Error(str(exc), print_exception=False)
    traceback.print_exc(file=sys.stderr)
    return gr.Error(f"Unexpected error ({type(exc).__name__}: {exc}). Details are in the server log.")


def _user(request: gr.Request | None) -> str | None:
    """The logged-in user name of a request (None without --auth)."""
    return getattr(request, "username", None) if request is not None else None


def _run_id(value: Any) -> str | None:
    """The run id held by a state: a plain id, or the Create tab's {"run": id, ...}."""
    if isinstance(value, dict):
        value = value.get("run")
    return value if isinstance(value, str) and value else None


def build_study_tab(studio: Studio) -> dict[str, Any]:
    """Lay out the Study tab in the current Blocks context and wire its events; returns the
    components by name (for tests and for the lead's wiring)."""
    generators = studio.model_infos("generator")
    denoisers = studio.model_infos("denoiser")
    upscalers = studio.model_infos("upscaler")
    examples = sorted(str(p) for p in (ASSETS / "examples").glob("*.jpg"))

    gr.Markdown("Run every photo with every camera move and compare the post-processing chains over all "
                "videos, as in the UvA study (mean ± std per chain). Each photo x move is one job with all "
                "chains; it waits in the same queue as Generate.")
    with gr.Row(equal_height=False):
        with gr.Column(scale=4):
            photos = gr.File(label="Photos", file_count="multiple", file_types=["image"], type="filepath",
                             elem_id="study-photos")
            use_examples = gr.Checkbox(value=True, label=f"Include the {len(examples)} example rooms",
                                       visible=bool(examples), elem_id="study-examples")
            paths = gr.CheckboxGroup([(p.label, p.id) for p in cam.PRESETS.values()],
                                     value=list(studylib.DEFAULT_PATHS), label="Camera moves", elem_id="study-paths")
            chains = gr.CheckboxGroup(list(STANDARD_CHAINS), value=list(STANDARD_CHAINS), label="Chains",
                                      elem_id="study-chains")
            model = gr.Dropdown([(i.display, i.name) for i in generators], value=studio.default_generator(),
                                label="Generator", elem_id="study-model")
            with gr.Row():
                denoiser = stage_picker(denoisers, "nlmeans", "Denoise with")
                upscaler = stage_picker(upscalers, "lanczos", "Upscale with")
            seed = gr.Number(value=12333, precision=0, minimum=0, maximum=2**32 - 1, label="Seed")
            with gr.Row():
                run_btn = gr.Button("Run study", variant="primary", scale=3, elem_id="study-run")
                cancel_btn = gr.Button("Cancel", variant="stop", scale=1, elem_id="study-cancel")
            status = gr.Markdown(elem_id="study-status")
        with gr.Column(scale=6):
            table = gr.Markdown(elem_id="study-table")
            metric = gr.Dropdown([(title, col) for col, title in studylib.PLOT_METRICS.items()],
                                 value="tpsnr_mean", label="Box plot of", elem_id="study-metric")
            plot = gr.Plot(label="Per-video values by chain", elem_id="study-plot")
            # paired statistics (core.stats): every chain vs none, plus any two chains picked here
            gr.Markdown("### Paired statistics")
            with gr.Row():
                pair_a = gr.Dropdown(list(STANDARD_CHAINS), value="denoise+upscale", label="Compare chain",
                                     elem_id="study-pair-a")
                pair_b = gr.Dropdown(list(STANDARD_CHAINS), value="upscale+denoise", label="with chain",
                                     elem_id="study-pair-b")
                paired_metric = gr.Dropdown([(label, col) for col, (label, _) in statslib.METRICS.items()],
                                            value="warp_psnr_mean", label="Paired difference of",
                                            elem_id="study-paired-metric")
            paired_plot = gr.Plot(label="Paired difference (95% bootstrap CI)", elem_id="study-paired-plot")
            stats_md = gr.Markdown(elem_id="study-stats")
            downloads = gr.File(label="Downloads", file_count="multiple", interactive=False, elem_id="study-files")
    job_state = gr.State("")
    rows_state = gr.State([])

    def new_job() -> str:
        return studio.new_job_id()

    def cancel(job: str, request: gr.Request = None) -> str:
        if job and studio.cancel(job, user=_user(request)):
            return "Cancelling after the current step…"
        return "Nothing is running."

    def figure(rows: list[dict[str, Any]], col: str):
        figs = studylib.box_figures(rows) if rows else {}
        return figs.get(col)

    def paired_view(rows: list[dict[str, Any]], a: str, b: str, col: str):
        if not rows:
            return None, ""
        st = statslib.compare_chains(rows, pairs=[(a, b)] if a and b and a != b else [])
        return statslib.paired_figure(st, col), statslib.ranking_markdown(st)

    def run(job, files, with_examples, picked_paths, picked_chains, model_name, den, up, seed_value, col,
            request: gr.Request = None, progress=gr.Progress()):
        try:
            images = [str(uploaded_file(f, "Photo")) for f in (files or [])]
            if with_examples:
                images += examples
            spec, out, events = studio.run_study(  # in the user's own runs with --auth
                images, picked_paths, picked_chains, model_name, seed_value, {"denoise": den, "upscale": up},
                user=_user(request), job_id=job, progress=lambda f, m: progress(f, desc=m))
        except BaseException as exc:
            raise _error(exc)
        total = len(spec.cells())
        failed = 0
        yield {status: f"Study `{out.name}`: {total} video(s) queued…", table: "", downloads: None}
        try:
            for ev in events:
                if ev.kind == "cell":
                    failed += ev.status != "complete"
                    note = "" if ev.status == "complete" else f" — failed: {ev.error}"
                    yield {status: f"Study `{out.name}`: {ev.index + 1} of {ev.total} done "
                                   f"({ev.photo} / {ev.path}){note}"}
                elif ev.kind == "done":
                    result = ev.result
                    files = [str(p) for p in (result.csv_path, result.table_path, result.stats_path,
                                              result.plots_path) if p]
                    files.append(str(studio.zip_study(out)))
                    msg = status_ok(f"Study `{out.name}`: {result.complete} of {result.total} video(s).")
                    if failed:
                        msg += f" {failed} failed (listed in the table)."
                    yield {status: msg, table: result.markdown, rows_state: result.rows,
                           plot: figure(result.rows, col), downloads: files}
        except BaseException as exc:
            if isinstance(exc, StudioError):
                done = out / studylib.TABLE_FILE
                yield {status: status_error(exc, f"Finished cells are kept in `{out.name}`."),
                       table: done.read_text(encoding="utf-8") if done.is_file() else "",
                       downloads: [str(out / n) for n in (studylib.CSV_FILE, studylib.TABLE_FILE)
                                   if (out / n).is_file()] or None}
                return
            raise _error(exc)

    run_btn.click(new_job, None, [job_state], queue=False).then(
        run, [job_state, photos, use_examples, paths, chains, model, denoiser, upscaler, seed, metric],
        [status, table, rows_state, plot, downloads], concurrency_id=GPU, concurrency_limit=1, api_name="study")
    cancel_btn.click(cancel, [job_state], [status], queue=False)
    metric.change(figure, [rows_state, metric], [plot], queue=False)
    for comp in (rows_state, pair_a, pair_b, paired_metric):
        comp.change(paired_view, [rows_state, pair_a, pair_b, paired_metric], [paired_plot, stats_md], queue=False)
    return {"photos": photos, "use_examples": use_examples, "paths": paths, "chains": chains, "model": model,
            "denoiser": denoiser, "upscaler": upscaler, "seed": seed, "run": run_btn, "cancel": cancel_btn,
            "status": status, "table": table, "metric": metric, "plot": plot, "downloads": downloads,
            "rows": rows_state, "pair_a": pair_a, "pair_b": pair_b, "paired_metric": paired_metric,
            "paired_plot": paired_plot, "stats": stats_md}


def build_export_panel(studio: Studio, run_id_state: gr.State) -> dict[str, Any]:
    """An "Export" accordion for the run held by `run_id_state` (a run id, or a dict with
    "run"): formats, chains, visible and invisible watermark, a Download button returning one
    zip, and a check of a video for this installation's invisible watermark."""
    with gr.Accordion("Export", open=False, elem_id="export-panel"):
        with gr.Row():
            formats = gr.CheckboxGroup([(exportlib.FORMAT_LABELS[f], f) for f in exportlib.FORMATS],
                                       value=DEFAULT_EXPORT_FORMATS, label="Formats", elem_id="export-formats")
        with gr.Row():
            chain = gr.Dropdown([("All chains", "all")], value="all", label="Chains", elem_id="export-chain")
            text = gr.Textbox(label="Visible watermark", placeholder="e.g. © Your agency (empty: none)",
                              max_length=exportlib.MAX_WATERMARK_CHARS, elem_id="export-text")
            invisible = gr.Checkbox(label="Invisible watermark",
                                    info="A keyed mark this installation can detect later (see below).",
                                    elem_id="export-invisible")
        with gr.Row():
            export_btn = gr.Button("Download", variant="primary", elem_id="export-btn")
        export_file = gr.File(label="Export", interactive=False, elem_id="export-file")
        with gr.Accordion("Check a video for the invisible watermark", open=False):
            check_video = gr.File(label="Video (mp4/gif)", file_types=[".mp4", ".gif", ".mov", ".webm"],
                                  type="filepath")
            check_btn = gr.Button("Check", size="sm")
            check_md = gr.Markdown()

    def chains_for(value, request: gr.Request = None):
        run_id = _run_id(value)
        choices = [("All chains", "all")]
        if run_id:
            try:
                choices += [(c, c) for c in studio.export_chains(run_id, user=_user(request))]
            except StudioError:
                pass
        return gr.update(choices=choices, value="all")

    def do_export(value, picked_chain, picked_formats, wm_text, wm_invisible, request: gr.Request = None,
                  progress=gr.Progress()):
        run_id = _run_id(value)
        if not run_id:
            raise gr.Error("Generate or open a run first.")
        try:
            return str(studio.export_run(run_id, picked_chain, picked_formats or [], wm_text or "", bool(wm_invisible),
                                         user=_user(request), progress=lambda f, m: progress(f, desc=m)))
        except BaseException as exc:
            raise _error(exc)

    def do_check(path):
        if not path:
            raise gr.Error("Upload a video to check.")
        try:
            d = studio.check_watermark(uploaded_file(path, "Video"))
        except BaseException as exc:
            raise _error(exc)
        verdict = "Watermark found" if d.detected else "no watermark of this installation found"
        return f"**{verdict}** — score z = {d.z:.1f} (threshold {exportlib.Z_THRESHOLD:g}), confidence {d.confidence:.3f}"

    run_id_state.change(chains_for, [run_id_state], [chain], queue=False)
    export_btn.click(do_export, [run_id_state, chain, formats, text, invisible], [export_file],
                     concurrency_id="export", concurrency_limit=2, api_name="export")
    check_btn.click(do_check, [check_video], [check_md], concurrency_id="export", concurrency_limit=2)
    return {"formats": formats, "chain": chain, "text": text, "invisible": invisible, "button": export_btn,
            "file": export_file, "check_video": check_video, "check": check_btn, "check_result": check_md}
