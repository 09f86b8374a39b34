"""The Runs tab: every run and study cell of this user, the running jobs, and "Show in Create" /
"Resume partial run". Layout and wiring only: each handler is one `Studio` call (list_runs,
open_run, submit_resume, active_jobs); a shown or resumed run fills the Create tab's form and
results (`CreateTab`).
"""

from __future__ import annotations

from typing import Any

import gradio as gr

from core import camera as cam
from core.errors import StudioError
from core.postprocess.chains import STANDARD_CHAINS
from core.service import Studio

from . import longshot as ui_longshot
from .create_tab import CreateTab
from .feedback import request_user as _user
from .feedback import status_error
from .forms import _error, framing_preview
from .runs_models import RUN_HEADERS, RUN_TYPES, run_rows


def build_runs_tab(studio: Studio, create: CreateTab, tabs: gr.Tabs, runs_tab: gr.Tab) -> dict[str, Any]:
    """Lay out the Runs tab in the current Blocks context (inside ``with gr.Tab("Runs") as
    runs_tab``) and wire its events; returns its components, and `refresh_runs` / `jobs_markdown`
    (the dashboard also runs them on page load)."""
    gr.Markdown("Every run keeps its own folder with `run.json`, the input photo, every video and "
                "the metrics. Pick one to show it in the Create tab.")
    with gr.Row():
        runs_refresh = gr.Button("Refresh", size="sm")
        run_pick = gr.Dropdown(label="Run", choices=[], scale=4)
        run_open = gr.Button("Show in Create", size="sm")
        run_resume = gr.Button("Resume partial run", size="sm", elem_id="resume-btn")
    jobs_md = gr.Markdown(elem_id="jobs")
    runs_table = gr.Dataframe(headers=RUN_HEADERS, datatype=RUN_TYPES, interactive=False, wrap=True,
                              max_height=900, elem_id="runs-table")
    with gr.Accordion("Study cells (runs made by the Study tab)", open=False):
        study_runs_table = gr.Dataframe(headers=RUN_HEADERS, datatype=RUN_TYPES, interactive=False,
                                        wrap=True, max_height=600, elem_id="study-runs-table")

    # ============================================================== handlers
    def resume_partial(run_id, var, request: gr.Request = None, progress=gr.Progress()):
        """Runs tab → Resume partial run: submit the resume as a server job and follow it."""
        if not run_id:
            raise gr.Error("Pick a partial run first.")
        try:
            job = studio.submit_resume(run_id, user=_user(request))
        except BaseException as exc:
            raise _error(exc)
        yield {create.job_state: job, create.status: f"Resuming run `{run_id}`…", tabs: gr.Tabs(selected="create")}
        yield from create.follow_job(job, var, progress, user=_user(request))

    def follow_opened_run(run_id, var, request: gr.Request, progress=gr.Progress()):
        """Runs tab → Show: a run still being written is followed live (its job on this server)."""
        job = studio.job_of_run(run_id) if run_id else None
        if job is None or not studio.job_info(job).active:
            yield {}
            return
        info = studio.job_info(job)
        if info.user is not None and _user(request) not in (None, info.user):
            yield {}
            return
        yield from create.follow_job(job, var, progress, user=_user(request))

    def jobs_markdown(request: gr.Request):
        jobs = studio.active_jobs(user=_user(request))
        if not jobs:
            return "No job is running."
        lines = ["| job | run | what | status | progress | time left |", "|---|---|---|---|---|---|"]
        for j in jobs:
            eta = "" if j.eta_s is None else (f"{j.eta_s:.0f} s" if j.eta_s < 90 else f"{j.eta_s / 60:.0f} min")
            lines.append(f"| `{j.id}` | `{j.run_id or '…'}` | {j.title} | {j.status} | "
                         f"{100 * j.fraction:.0f}% {j.message[:60]} | {eta} |")
        return "Running jobs (Show re-attaches to one):\n\n" + "\n".join(lines)

    def refresh_runs(request: gr.Request = None):
        rows = run_rows(studio.list_runs(100, user=_user(request)), studio.settings.outputs,
                        {i.name: i.label for i in studio.model_infos()})
        return rows.runs, rows.study, gr.update(choices=rows.openable)

    def open_run(run_id, var, request: gr.Request = None):
        """Show a past run in Create: its players, plots and table, and its photo, model,
        camera, chains, prompt and seed back in the form (so it can be rerun or varied)."""
        if not run_id:
            return {create.status: status_error("Pick a run first.")}
        try:
            run = studio.open_run(run_id, user=_user(request))
        except StudioError as exc:
            return {create.status: status_error(exc)}
        state = {"run": run_id, "chains": {}, "seams": ui_longshot.run_seams(studio, run_id)}
        files = []
        for name, entry in run.data.get("chains", {}).items():
            f = (entry.get("files") or {}).get("mp4")
            m = entry.get("metrics") or {}
            if not f:
                continue
            w, h = m.get("size", [0, 0])
            state["chains"][name] = {"video": str(run.dir / f), "metrics": m, "width": w, "height": h,
                                     "fps": m.get("fps") or 10.0}
            files.append(str(run.dir / f))
        psnr_fig, ssim_fig, md = create.render_results(state, var)
        out = {create.players: create.render_players(state), create.psnr_plot: psnr_fig, create.ssim_plot: ssim_fig,
               create.table: md, create.results_state: state,
               create.downloads: create.result_downloads(state) or files,
               create.status: f"Showing run `{run_id}` ({run.effective_status}).", tabs: gr.Tabs(selected="create")}
        out.update(restore_form(run))
        if create.waypoints_state in out:
            create.click_book.set(request, out[create.waypoints_state])
        return out

    def restore_form(run) -> dict[Any, Any]:
        """Form updates that put a run's inputs back (what run.json recorded)."""
        p = run.data.get("params") or {}
        out: dict[Any, Any] = {}
        src = run.dir / ((run.data.get("input") or {}).get("file") or "")
        if src.is_file():
            try:
                image = studio.load_image(src)
                out.update({create.photo: str(src), create.photo_state: image})
            except StudioError:
                pass
        if p.get("model") in create.infos:
            out[create.model] = p["model"]
        c = p.get("camera") or {}
        mode = c.get("mode")
        if mode == "preset" and c.get("preset") in cam.PRESETS:
            spec = cam.PRESETS[c["preset"]]
            out.update({create.cam_mode: "Preset", create.preset: c["preset"], create.preset_desc: spec.description,
                        create.amount: spec.default_amount if c.get("amount") is None else c["amount"],
                        create.distance: spec.default_distance if c.get("distance") is None else c["distance"],
                        create.easing: c.get("easing") or "linear"})
        elif mode == "keyframes":
            rows = [[k.get("time", 0.0), *(list(k.get("position") or [0, 0, 0]) + [0, 0, 0])[:3],
                     k.get("yaw", 0.0), k.get("pitch", 0.0), k.get("roll", 0.0)] for k in c.get("keyframes", [])]
            out.update({create.cam_mode: "Keyframes", create.kf_table: rows})
        elif mode == "waypoints":
            wps = [tuple(w) for w in c.get("waypoints", [])]
            out.update({create.cam_mode: "Waypoints", create.waypoints_state: wps,
                        create.depth: c.get("depth") or 1.0})
            if create.photo_state in out:
                w, h = create.model_size(p.get("model", ""))
                out[create.preview] = framing_preview(out[create.photo_state], w, h, wps)
        picked = [str(x) for x in p.get("chains") or []]
        if picked:
            out[create.chains] = [x for x in picked if x in STANDARD_CHAINS]
            out[create.custom_chain] = ", ".join(x for x in picked if x not in STANDARD_CHAINS)
        if isinstance(p.get("prompt"), str):
            out[create.prompt] = p["prompt"]
        seed_value = (run.data.get("seeds") or {}).get("generator")
        if isinstance(seed_value, int):
            out[create.seed] = seed_value
        return out

    # ============================================================== wiring
    runs_refresh.click(refresh_runs, None, [runs_table, study_runs_table, run_pick])
    runs_tab.select(refresh_runs, None, [runs_table, study_runs_table, run_pick])
    runs_tab.select(jobs_markdown, None, [jobs_md], queue=False)
    # a partial long shot (cancelled after some segments) continues from its last finished
    # segment as a server job, followed here like a Generate
    run_resume.click(resume_partial, [run_pick, create.variant], create.job_outputs, concurrency_limit=None,
                     show_progress_on=[create.status], api_visibility="private", cancels=[create.reattached]) \
        .then(refresh_runs, None, [runs_table, study_runs_table, run_pick])
    shown = [create.players, create.psnr_plot, create.ssim_plot, create.table, create.results_state, create.downloads,
             create.status, tabs, create.photo, create.photo_state, create.preview, create.model, create.cam_mode,
             create.preset, create.preset_desc, create.amount, create.distance, create.easing, create.kf_table,
             create.waypoints_state, create.depth, create.chains, create.custom_chain, create.prompt, create.seed]
    run_open.click(open_run, [run_pick, create.variant], shown)
    run_open.click(follow_opened_run, [run_pick, create.variant], create.job_outputs, concurrency_limit=None,
                   show_progress_on=[create.status], api_visibility="private", cancels=[create.reattached])
    runs_refresh.click(jobs_markdown, None, [jobs_md], queue=False)
    return {"refresh": runs_refresh, "pick": run_pick, "open": run_open, "resume": run_resume, "jobs": jobs_md,
            "runs_table": runs_table, "study_runs_table": study_runs_table, "refresh_runs": refresh_runs,
            "jobs_markdown": jobs_markdown}
