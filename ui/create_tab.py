"""The Create tab: photo, generator, camera, chains and Generate; the results below (players, curves,
table, downloads, export). Layout and wiring only: each handler is one `Studio` call (load_image,
camera_path, caption, submit_job, follow, cancel, open_run), plus presentation.

`build_create_tab(studio, demo)` lays the tab out in the current Blocks context (the dashboard calls
it inside ``with gr.Tab("Create")``) and returns a `CreateTab`: its components and the functions
the Runs and Models tabs share (following a job, showing a run, refreshing the model lists).
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any, Callable

import gradio as gr

from core import camera as cam
from core import metrics as metriclib
from core.errors import StudioError
from core.eta import with_eta
from core.params import ParamSpec
from core.service import CameraSpec, JobRequest, ModelInfo, Studio

from . import commercial  # the "Commercial use only" switch
from . import longshot as ui_longshot  # Length / Output fps controls, segment marks, seam line
from .camera_notes import camera_note as path_note_for
from .feedback import request_user as _user
from .feedback import (ClickBook, PhotoInput, camera_export_path, error_line, generator_caption, named_downloads,
                       status_error, status_note, status_ok)
from .figures import camera_figure, empty_metric_figures, metric_figure, quality_figure
from .forms import (CHAIN_HELP, KF_HEADERS, MODES, UI_CHAINS, _keyframe_rows, _rows_to_list,
                    adherence_markdown, camera_spec, cover_box, framing_preview, safe_stem, spec_component)
from .players import SYNC_JS, Player, build_compare_panel, players_html
from .study_tab import build_export_panel
from .uploads import uploaded_file

ASSETS = Path(__file__).resolve().parents[1] / "assets"
GPU = "gpu"  # the one concurrency id of every event that uses the device


class CreateTab:
    """The Create tab's components (by name, as attributes) and the handlers other tabs reuse."""

    def __init__(self, **items: Any):
        self.__dict__.update(items)

    # set by build_create_tab (listed for readers and type checkers)
    studio: Studio
    infos: dict[str, ModelInfo]
    job_outputs: list[Any]
    reattached: Any
    follow_job: Callable[..., Any]
    refresh_catalogue: Callable[..., list[Any]]


def build_create_tab(studio: Studio, demo: gr.Blocks) -> CreateTab:
    """Lay out the Create tab in the current Blocks context and wire its events."""
    generators = studio.model_infos("generator")
    denoisers = studio.model_infos("denoiser")
    upscalers = studio.model_infos("upscaler")
    interpolators = studio.model_infos("interpolator")
    default_model = studio.default_generator()
    infos = {i.name: i for i in generators}  # refreshed in place after a weights download
    cap = studio.captioner_status()
    examples = sorted(str(p) for p in (ASSETS / "examples").glob("*.jpg"))

    def model_size(name: str) -> tuple[int, int]:
        info = infos.get(name)
        return (info.width or 512, info.height or 320) if info else (512, 320)

    click_book = ClickBook()  # waypoints per session, so fast clicks never overwrite each other

    photo_state = gr.State(None)  # (H, W, 3) uint8 of the current photo
    waypoints_state = gr.State([])  # normalised clicks inside the crop
    kf_auto = gr.State([])  # the keyframe rows last filled in automatically (not the user's)
    job_state = gr.State("")
    results_state = gr.State({"run": None, "chains": {}})

    with gr.Row(equal_height=False):
        with gr.Column(scale=5):
            photo = PhotoInput(label="Interior photo", type="filepath", sources=["upload", "clipboard"],
                             height=260, elem_id="photo")
            if examples:
                gr.Examples(examples=[[e] for e in examples], inputs=[photo], label="Example rooms")
            preview = gr.Image(label="Framing at the model's size (click to add waypoints)",
                               interactive=False, height=260, elem_id="framing")
            with gr.Row():
                prompt = gr.Textbox(label="Prompt", lines=2, scale=5, elem_id="prompt",
                                    placeholder="What the room looks like (AI models use it)")
                caption_btn = gr.Button("Caption", scale=1, interactive=cap.available,
                                        elem_id="caption-btn")
            gr.Markdown(f"Captioner: {cap.reason}" if cap.available else
                        f"Caption is unavailable: {cap.reason}", elem_classes="dim")
            with gr.Accordion("Caption instructions", open=False):
                from core.captioner import DEFAULT_PROMPT  # torch-free (core.captioner.defaults)

                caption_prompt = gr.Textbox(value=DEFAULT_PROMPT, label="What to ask the captioner",
                                            lines=3)
        with gr.Column(scale=5):
            model = gr.Dropdown(choices=[(i.display, i.name) for i in generators], value=default_model,
                                label="Generator", elem_id="model")
            model_note = gr.Markdown(elem_classes="dim")
            commercial_box = gr.Checkbox(value=False, label=commercial.LABEL, info=commercial.HELP,
                                         elem_id="commercial-only")
            commercial_note = gr.Markdown(elem_id="commercial-note")
            param_boxes: dict[str, Any] = {}
            param_controls: list[tuple[str, ParamSpec, Any]] = []
            with gr.Accordion("Generator settings", open=False):
                for info in generators:
                    with gr.Group(visible=info.name == default_model) as box:
                        for spec in info.params:
                            param_controls.append((info.name, spec, spec_component(spec)))
                    param_boxes[info.name] = box
                with gr.Row():
                    seed = gr.Number(value=12333, precision=0, label="Seed", minimum=0,
                                     maximum=2**32 - 1, scale=4)
                    dice = gr.Button("Random", scale=1, min_width=60)

            with gr.Group():
                gr.Markdown("### Camera")
                camera_note = gr.Markdown(elem_classes="dim")
                cam_mode = gr.Radio(list(MODES), value="Preset", label="Describe the move by",
                                    elem_id="cam-mode")
                with gr.Group(visible=True) as preset_box:
                    preset = gr.Dropdown(choices=[(p.label, p.id) for p in cam.PRESETS.values()],
                                         value="push-in", label="Camera move", elem_id="preset")
                    preset_desc = gr.Markdown(cam.PRESETS["push-in"].description, elem_classes="dim")
                    with gr.Row():
                        amount = gr.Slider(0.01, 1.0, value=cam.PRESETS["push-in"].default_amount,
                                           step=0.01, label="Move amount",
                                           info="How much of the full move the clip covers")
                        distance = gr.Slider(0.0, 5.0, value=1.0, step=0.05, label="Distance",
                                             info="Scales how far the camera travels")
                    easing = gr.Radio(["linear", "ease-in-out"], value="linear", label="Speed")
                with gr.Group(visible=False) as kf_box:
                    kf_table = gr.Dataframe(headers=KF_HEADERS, datatype=["number"] * 7,
                                            column_count=(7, "fixed"), interactive=True,
                                            label="Keyframes (position in scene units; angles in degrees)")
                    kf_fill = gr.Button("Fill from the preset", size="sm")
                with gr.Group(visible=False) as wp_box:
                    gr.Markdown("Click the framing preview to add points the camera travels "
                                "through, in order.", elem_classes="dim")
                    with gr.Row():
                        depth = gr.Slider(0.2, 5.0, value=1.0, step=0.1, label="Depth of the points")
                        wp_amount = gr.Slider(0.05, 1.0, value=1.0, step=0.05, label="Move amount",
                                              info="How much of the clicked walk the clip covers",
                                              elem_id="wp-amount")
                        wp_clear = gr.Button("Clear points", size="sm")
                with gr.Group(visible=False) as file_box:
                    cam_file = gr.File(label="RealEstate10K camera file (.txt)", file_types=[".txt"],
                                       type="filepath")
                length_s, out_fps = ui_longshot.length_controls()  # long shots (issue 11)
                camera_plot = gr.Plot(label="Camera path (blue → red over time)", elem_id="camera-plot")
                camera_msg = gr.Markdown(elem_classes="warning", elem_id="camera-msg")
                with gr.Row():
                    adherence_box = gr.Checkbox(
                        value=False, label="Score camera adherence",
                        info="Estimate the video's camera by structure from motion and compare it with "
                             "this path (CamI2V's RotErr / TransErr / CamMC); seconds of CPU.")
                    camera_export = gr.DownloadButton("Download camera path (.txt)", size="sm")

            with gr.Group():
                gr.Markdown("### Post-processing chains")
                chains = gr.CheckboxGroup(choices=[(f"{c} — {CHAIN_HELP[c]}", c) for c in UI_CHAINS],
                                          value=["none", "denoise", "upscale"], label="Compare",
                                          elem_id="chains")
                custom_chain = gr.Textbox(label="Custom chains (comma-separated)",
                                          placeholder="e.g. fastdvdnet+lanczos, lanczos+nlmeans, denoise+interpolate")
                with gr.Row():
                    denoiser = gr.Dropdown(choices=[(i.display, i.name) for i in denoisers],
                                           value=next((i.name for i in denoisers if i.available), "nlmeans"),
                                           label="Denoise with")
                    upscaler = gr.Dropdown(choices=[(i.display, i.name) for i in upscalers],
                                           value=next((i.name for i in upscalers if i.available), "lanczos"),
                                           label="Upscale with")
                    interpolator = gr.Dropdown(choices=[(i.display, i.name) for i in interpolators],
                                               value=next((i.name for i in interpolators if i.available),
                                                          "dis-interp"),
                                               label="Interpolate with", elem_id="interpolator")
                stage_controls: list[tuple[str, ParamSpec, Any]] = []
                with gr.Accordion("Stage settings", open=False):
                    for info in denoisers + upscalers + interpolators:
                        if not info.params:
                            continue
                        gr.Markdown(f"**{info.label}**" + (f" — {info.license}" if info.license else ""))
                        for spec in info.params:
                            stage_controls.append((info.name, spec, spec_component(spec)))

            with gr.Row():
                generate_btn = gr.Button("Generate", variant="primary", elem_id="generate-btn", scale=3)
                cancel_btn = gr.Button("Cancel", variant="stop", elem_id="cancel-btn", scale=1)
            status = gr.Markdown(elem_id="status")

    gr.Markdown("## Results")
    players = gr.HTML(players_html([]), js_on_load=SYNC_JS, elem_id="players")
    with gr.Row():
        variant = gr.Radio([("at each clip's own size", "native"),
                            ("at the generator's size (fair for x4 chains)", "common"),
                            ("UvA study definitions", "study"),
                            ("at the generator's size and frame rate (fair for interpolated chains)",
                             "generator_rate")], value="native",
                           label="Measure temporal consistency", elem_id="variant")
    with gr.Row():
        # empty until the page loads (reattach draws the blank axes): building plotly figures here
        # would cost every server start a third of a second
        psnr_plot = gr.Plot(label="Temporal PSNR", elem_id="psnr-plot")
        ssim_plot = gr.Plot(label="Temporal SSIM", elem_id="ssim-plot")
    # metrics panel: motion-compensated + no-reference curves, and looking closely (ui/players.py)
    quality_plot = gr.Plot(label="Motion-compensated and no-reference measures",
                           elem_id="quality-plot")
    table = gr.Markdown(elem_id="table")
    build_compare_panel(studio, results_state, table)
    # end metrics panel
    downloads = gr.File(label="Downloads", file_count="multiple", interactive=False)
    build_export_panel(studio, results_state)
    with gr.Accordion("How the metrics are defined", open=False):
        gr.Markdown("\n".join(f"- **{k}**: {v}" for k, v in metriclib.DEFINITIONS.items()) +
                    "\n\nTemporal PSNR/SSIM compare consecutive frames of one clip and include "
                    "camera motion: higher means steadier, not better. Camera motion itself "
                    "lowers them, and blur or upscaling raises them. The warped measures follow "
                    "the motion first (dense optical flow, occlusions masked), so they separate "
                    "flicker from camera motion; sharpness and noise need no reference. Compare "
                    "chains at the generator's size.")


    # ============================================================== handlers
    def run_input(value) -> Path | None:
        """The path when `value` is a run's stored input photo (outputs/<run>/input.*)."""
        raw = value.get("path") if isinstance(value, dict) else value
        if not isinstance(raw, (str, Path)):
            return None
        p = Path(raw).resolve()
        root = Path(studio.settings.outputs).resolve()
        return p if p.name.startswith("input.") and p.parent.parent == root and p.is_file() else None

    def load_photo(path, model_name, wps, request: gr.Request = None):
        if not path:
            return None, None, []
        try:
            image = studio.load_image(run_input(path) or uploaded_file(path, "The photo"))
        except StudioError as exc:
            # one clear line (the CLI's); the last good photo, preview and points stay
            gr.Warning(error_line(exc))
            return gr.update(), gr.update(), gr.update()
        w, h = model_size(model_name)
        kept = list(wps or []) if run_input(path) else []  # a restored run keeps its points
        return image, framing_preview(image, w, h, kept), click_book.set(request, kept)

    def model_changed(name, image, wps):
        info = infos.get(name)
        w, h = model_size(name)
        if info is None:
            note = ""
        elif not info.available:
            note = status_note(f"{info.label} is unavailable here: {info.reason}.")
        elif not info.is_ai:
            note = (f"**{info.label}** — a no-AI preview: it moves a camera over the photo as a flat picture "
                    "(no parallax, nothing new is imagined). AI generators take over once their weights are present.")
        else:
            note = f"**{info.label}** · {w}x{h} · {info.num_frames} frames at {info.fps:g} fps" + (
                f" · licence: {info.license}" if info.license else "")
        cam_note = path_note_for(info)
        boxes = [gr.update(visible=n == name) for n in param_boxes]
        return [note, cam_note,
                framing_preview(image, w, h, wps)] + boxes

    def preset_changed(pid):
        spec = cam.PRESETS.get(pid)
        if spec is None:
            return gr.update(), gr.update(), ""
        return spec.default_amount, spec.default_distance, spec.description

    def mode_changed(mode):
        return [gr.update(visible=mode == m) for m in MODES]

    cam_inputs = [cam_mode, preset, amount, distance, easing, kf_table, waypoints_state, depth, cam_file, wp_amount]

    def update_camera(name, *args):
        w, h = model_size(name)
        starts: tuple[int, ...] = ()
        try:
            if len(args) > len(cam_inputs):  # with the shot length: the whole multi-segment path
                path, starts = ui_longshot.path_for_view(studio, name, camera_spec(*args[:len(cam_inputs)]),
                                                         *args[len(cam_inputs):])
            else:
                path = studio.camera_path(camera_spec(*args), name)
        except StudioError as exc:
            return camera_figure(None, w, h, "Camera path not valid"), status_note(error_line(exc))
        except Exception as exc:  # keep the panel alive on anything unexpected
            return camera_figure(None, w, h, "Camera path not valid"), status_note(error_line(exc))
        m = path.motion_summary()
        summary = ", ".join(f"{k.replace('_', ' ')} {v:.3g}" for k, v in m.items())
        segs = f" · {len(starts) + 1} segments" if starts else ""
        fig = camera_figure(path, w, h, segment_starts=starts)
        problem = path_problem(name, path)
        if problem:  # say it now, not after Generate
            extra = " (Move amount is next to the points; or remove a point.)" if args[0] == "Waypoints" else ""
            return fig, status_note(f"Generate will refuse this path: {problem}{extra}")
        points = f"{len(args[6] or [])} point(s) · " if args[0] == "Waypoints" else ""
        return fig, f"{points}{path.num_frames} frames{segs} · {summary}"

    def path_problem(name, path) -> str | None:
        """What the chosen generator would refuse about `path` (the preview's turn limit)."""
        return studio.camera_problem(name, path) if name in infos else None

    def keyframes_for_mode(mode, rows, auto, pid, amt, dist, ease, name):
        """Entering Keyframes starts from the current preset, unless the table holds the
        user's own edits (anything other than what was filled in automatically)."""
        current = _rows_to_list(rows)
        if mode != "Keyframes" or (current and current != auto):
            return gr.update(), auto
        try:
            filled, _ = fill_keyframes(pid, amt, dist, ease, name)
        except StudioError:
            return gr.update(), auto
        return filled, filled

    def fill_keyframes(pid, amt, dist, ease, name):
        path = studio.camera_path(CameraSpec(mode="preset", preset=pid, amount=amt, distance=dist, easing=ease), name)
        return _keyframe_rows(path), "Keyframes"

    def add_waypoint(image, wps, name, evt: gr.SelectData, request: gr.Request = None):
        if image is None:
            return wps, None, gr.update()
        w, h = model_size(name)
        ih, iw = image.shape[:2]
        scale = min(1.0, 960 / max(iw, ih))
        x0, y0, x1, y1 = cover_box(iw, ih, w, h)
        px, py = evt.index[0] / scale, evt.index[1] / scale
        u, v = (px - x0) / (x1 - x0), (py - y0) / (y1 - y0)
        if not (0 <= u <= 1 and 0 <= v <= 1):
            gr.Warning("That point is outside the frame the model sees; click inside the bright area.")
            return wps, framing_preview(image, w, h, wps), gr.update()
        wps = click_book.append(request, wps, (round(u, 4), round(v, 4)))  # every click lands
        return wps, framing_preview(image, w, h, wps), "Waypoints"

    def clear_waypoints(image, name, request: gr.Request = None):
        w, h = model_size(name)
        return click_book.set(request, []), framing_preview(image, w, h, [])

    def export_camera(name, *args):
        """The download button's file for the current path, prepared whenever the path
        changes (a DownloadButton serves what it holds at click time); None when invalid."""
        try:
            path = studio.camera_path(camera_spec(*args), name)
            # A folder per path text: sessions never overwrite each other's file, and the
            # path's name (which a camera file can set) only ever yields a sanitised stem.
            text = path.to_realestate10k()
            f = camera_export_path(studio.settings.outputs, text, safe_stem(path.name))
        except Exception:
            return None  # nothing to download while the path is not valid
        return str(f)

    def do_caption(image, instructions, progress=gr.Progress()):
        if image is None:
            gr.Warning("Upload a photo first.")
            return gr.update()
        try:
            return studio.caption(image, instructions, progress=lambda f, m: progress(f, desc=m))
        except Exception as exc:  # one line; the prompt keeps its text
            gr.Warning(error_line(exc))
            return gr.update()

    def cancel_job(job, request: gr.Request):
        if job and studio.cancel(job, user=_user(request)):
            return "Cancelling after the current step…"
        return "Nothing is running."

    def run_model(state) -> tuple[str, str, bool]:
        """(model name, caption, is_ai) of the run a results state shows; remembered in the
        state (read once from run.json, which names the generator from the start)."""
        if not state.get("model") and state.get("run"):
            try:
                state["model"] = (studio.open_run(state["run"]).data.get("params") or {}).get("model", "")
            except StudioError:
                state["model"] = ""
        name = state.get("model") or ""
        info = infos.get(name)
        is_ai = info.is_ai if info else True
        return name, (generator_caption(name, info.label if info else None, is_ai) if name else ""), is_ai

    def run_notes(state) -> list[str]:
        """The generator's own notes on the clip (Ken Burns: how far it zoomed in to stay
        inside the photo, or that part of a frame is the labelled outside fill)."""
        if "notes" not in state and state.get("run") and state.get("chains"):
            try:
                gi = studio.open_run(state["run"]).data.get("generator_info") or {}
            except StudioError:
                gi = {}
            notes = [gi["framing"]] if isinstance(gi.get("framing"), str) else []
            notes += [w for w in gi.get("warnings") or [] if isinstance(w, str)]
            state["notes"] = notes
        return list(state.get("notes") or [])

    def result_downloads(state) -> list[str]:
        """The chains' videos named '<chain>__<model>.mp4' (like the CLI's <chain>.mp4)."""
        name, _, is_ai = run_model(state)
        videos = {k: v["video"] for k, v in state.get("chains", {}).items() if Path(v["video"]).exists()}
        if not videos or not state.get("run"):
            return list(videos.values())
        try:
            return named_downloads(studio.open_run(state["run"]).dir, videos, name or "model", is_ai)
        except (OSError, StudioError):
            return list(videos.values())

    def render_results(state, var):
        chains_ = state.get("chains", {})
        order = list(chains_)
        ms = {k: v["metrics"] for k, v in chains_.items() if v.get("metrics")}
        if var == "generator_rate":  # each chain's frames at the generator's frame times
            ms, var = {k: m.get("generator_rate") or m for k, m in ms.items()}, "common"
        rows = metriclib.summary_table(  # metrics panel: the new measures too (not in study mode)
            ms, variant=var, **({} if var == "study" else {"metrics": metriclib.DASHBOARD_METRICS})) if ms else []
        md = metriclib.render_markdown(rows) if rows else ""
        if md and state.get("run"):
            made_by = run_model(state)[1]
            md = (f"Run `{state['run']}`" + (f" · made by **{made_by}**" if made_by else "") +
                  " · mean (±std) over consecutive frame pairs\n\n" + md)
        notes = run_notes(state)
        if md and notes:
            md += "\n\n" + " ".join(notes)
        adh = next((m["adherence"] for m in ms.values() if m.get("adherence")), None)
        if adh:
            md += "\n\n" + adherence_markdown(adh)
        if md:
            md += ui_longshot.seams_markdown(state.get("seams"))
        return metric_figure(ms, "tpsnr", var, order), metric_figure(ms, "tssim", var, order), md

    def render_players(state, note=""):
        made_by = run_model(state)[1]
        ps = [Player(k, Path(v["video"]), v["width"], v["height"], v["fps"], v.get("caption") or made_by)
              for k, v in state.get("chains", {}).items()]
        return players_html(ps, note)

    # -- server-owned jobs: Generate submits, every page (and a reload) follows ---------
    def follow_job(job_id, var, progress, since=0, user=None):
        """UI updates while following server job `job_id`: players, plots and table fill in as
        chains finish; the one progress bar (on the status line) shows stage, frame and ETA.
        Leaving the page stops only this follower, never the job."""
        state = {"run": None, "chains": {}}
        files: list[str] = []
        expected = 0
        info = studio.job_info(job_id)
        if info.status == "queued":
            yield {status: f"Queued: {info.queue_position} job(s) ahead of this one…", job_state: job_id}
        for ev in studio.follow(job_id, since, coalesce_progress=True):
            if ev.kind == "progress":
                progress(ev.fraction or 0.0, desc=with_eta(ev.message, ev.eta_s))
                continue
            if ev.kind == "started":
                state["run"] = ev.run_id
                try:
                    expected = len(studio.open_run(ev.run_id, user).data.get("params", {}).get("chains") or [])
                except StudioError:
                    expected = 0
                yield {status: f"Run `{ev.run_id}` started ({ev.message.partition('; ')[2] or 'running'})…",
                       results_state: state, job_state: job_id, players: players_html([], "Generating…")}
            elif ev.kind in ("generated", "chain"):
                m = ev.metrics or {}
                w, h = m.get("size", [0, 0])
                state["chains"][ev.chain] = {"video": str(ev.video), "metrics": m, "width": w,
                                             "height": h, "fps": m.get("fps") or 10.0}
                if "seams" not in state:  # read once per run, not at every chain
                    state["seams"] = ui_longshot.run_seams(studio, ev.run_id)
                files.append(str(ev.video))
                psnr_fig, ssim_fig, md = render_results(state, var)
                yield {players: render_players(state), psnr_plot: psnr_fig, ssim_plot: ssim_fig,
                       table: md, results_state: state, downloads: result_downloads(state) or list(files),
                       status: f"Run `{state['run']}`: {len(state['chains'])} of {expected or '?'} chain(s) ready…"}
            elif ev.kind == "done":
                run = studio.open_run(ev.run_id, user)
                extra = [str(run.path("metrics")), str(run.dir / "run.json"), str(run.path("camera"))]
                yield {downloads: (result_downloads(state) or files) + [f for f in extra if Path(f).exists()],
                       status: status_ok(f"Run `{ev.run_id}` complete: {len(state['chains'])} chain(s)."),
                       results_state: state}
            elif ev.kind in ("failed", "cancelled"):
                kept = f"{len(state['chains'])} finished chain(s) were kept in run `{state['run']}`." \
                    if state["chains"] else ""
                # one error line in the status; the players leave "Generating…" for what was kept
                yield {status: status_error(ev.error or ev.message, kept),
                       players: render_players(state) if state["chains"] else
                       players_html([], f"No result: the run {'was cancelled' if ev.kind == 'cancelled' else 'failed'}.")}

    def run_generate(data, request: gr.Request = None, progress=gr.Progress()):
        name = data[model]
        image = data[photo_state]
        if image is None:  # one status line, not an Error badge on every output
            yield {status: status_error("Upload a photo first (or pick an example room).")}
            return
        try:
            spec = camera_spec(*(data[c] for c in cam_inputs))
            params = {s.name: data[c] for m, s, c in param_controls if m == name}
            stage_params: dict[str, dict[str, Any]] = {}
            for m, s, c in stage_controls:
                stage_params.setdefault(m, {})[s.name] = data[c]
            picked = list(data[chains] or [])
            picked += [c.strip() for c in (data[custom_chain] or "").split(",") if c.strip()]
            if not picked:
                raise StudioError("Tick at least one chain to compare (for example 'none').")
            photo_file = data.get(photo)
            job_request = JobRequest(
                image=image, camera=spec, model=name, prompt=data[prompt] or "",
                image_name=Path(photo_file).name if isinstance(photo_file, str) and photo_file else None,
                seed=int(data[seed] or 0), params=params, measure_adherence=bool(data[adherence_box]),
                chains=tuple(picked), roles={"denoise": data[denoiser], "upscale": data[upscaler],
                                               "interpolate": data[interpolator]},
                stage_params=stage_params, **ui_longshot.length_fields(data[length_s], data[out_fps]),
                commercial_only=bool(data[commercial_box]),
            )
            job = studio.submit_job(job_request, user=_user(request))
        except Exception as exc:  # one status line; the last results stay
            yield {status: status_error(exc)}
            return
        yield {job_state: job, status: "Submitted…", players: players_html([], "Generating…")}
        yield from follow_job(job, data[variant], progress, user=_user(request))

    def newest_job(user):
        jobs = studio.active_jobs(user=user)
        running = [j for j in jobs if j.status == "running"]
        return (running or jobs or [None])[0]

    def reattach(var, request: gr.Request, progress=gr.Progress()):
        """On page load: follow the newest running job (the user's own when logging in is on)."""
        job = newest_job(_user(request))
        blank = dict(zip((psnr_plot, ssim_plot, quality_plot), empty_metric_figures()))
        if job is None:
            yield {job_state: "", **blank}
            return
        # the blank axes first, in the same stream as the job's curves, so they never overwrite them
        yield {job_state: job.id, status: f"Re-attached to job `{job.id}` ({job.status})…", **blank}
        yield from follow_job(job.id, var, progress, user=_user(request))

    # ============================================================== wiring
    photo.change(load_photo, [photo, model, waypoints_state], [photo_state, preview, waypoints_state]) \
        .then(update_camera, [model] + cam_inputs, [camera_plot, camera_msg])
    model.change(model_changed, [model, photo_state, waypoints_state],
                 [model_note, camera_note, preview] + list(param_boxes.values())) \
        .then(update_camera, [model] + cam_inputs, [camera_plot, camera_msg])
    preset.input(preset_changed, [preset], [amount, distance, preset_desc])
    cam_mode.change(mode_changed, [cam_mode], [preset_box, kf_box, wp_box, file_box])
    cam_mode.change(keyframes_for_mode, [cam_mode, kf_table, kf_auto, preset, amount, distance, easing, model],
                    [kf_table, kf_auto], queue=False)
    for comp in (cam_mode, preset, amount, distance, easing, kf_table, depth, cam_file, wp_amount, length_s,
                 out_fps):
        comp.change(update_camera, [model] + cam_inputs + [length_s, out_fps], [camera_plot, camera_msg],
                    queue=False)
    kf_fill.click(fill_keyframes, [preset, amount, distance, easing, model], [kf_table, cam_mode])
    preview.select(add_waypoint, [photo_state, waypoints_state, model], [waypoints_state, preview, cam_mode],
                   trigger_mode="multiple", show_progress="hidden") \
        .then(update_camera, [model] + cam_inputs, [camera_plot, camera_msg])
    wp_clear.click(clear_waypoints, [photo_state, model], [waypoints_state, preview]) \
        .then(update_camera, [model] + cam_inputs, [camera_plot, camera_msg])
    camera_plot.change(export_camera, [model] + cam_inputs, [camera_export], queue=False)
    dice.click(lambda: random.randint(0, 2**31 - 1), None, [seed], queue=False)
    caption_btn.click(do_caption, [photo_state, caption_prompt], [prompt], concurrency_id=GPU,
                      concurrency_limit=1, api_name="caption")

    def commercial_changed(on, gen, den, up, interp):
        """Commercial use only: hide the models whose licence forbids it (or states none)."""
        out = []
        for kind_infos, cur, fb in ((generators, gen, "kenburns"), (denoisers, den, "nlmeans"),
                                    (upscalers, up, "lanczos"), (interpolators, interp, "dis-interp")):
            opts, value = commercial.choices(kind_infos, bool(on), cur, fb)
            out.append(gr.update(choices=opts, value=value))
        return out + [commercial.hidden_note(generators + denoisers + upscalers + interpolators, bool(on))]

    commercial_box.change(commercial_changed, [commercial_box, model, denoiser, upscaler, interpolator],
                          [model, denoiser, upscaler, interpolator, commercial_note], queue=False)

    gen_inputs = {commercial_box, model, photo, photo_state, prompt, adherence_box, seed, chains, custom_chain,
                  denoiser, upscaler, interpolator, variant, *cam_inputs, length_s, out_fps,
                  *(c for _, _, c in param_controls),
                  *(c for _, _, c in stage_controls)}
    # The job runs on the server's job worker (one at a time on the device); these events only
    # follow it, so any number may run at once and none holds the device queue.
    job_outputs = [players, psnr_plot, ssim_plot, table, results_state, downloads, status, job_state]
    # One follower per page at a time: Generate and Show stop following an earlier job (the
    # job itself goes on).
    reattached = demo.load(reattach, [variant], job_outputs + [quality_plot], concurrency_limit=None,
                           show_progress_on=[status], api_visibility="private")
    generate_btn.click(run_generate, gen_inputs, job_outputs, concurrency_limit=None, api_name="generate",
                       show_progress_on=[status], cancels=[reattached])
    cancel_btn.click(cancel_job, [job_state], [status], queue=False)
    variant.change(render_results, [results_state, variant], [psnr_plot, ssim_plot, table], queue=False)
    # metrics panel: the quality curves follow the table (it changes with every chain, run and variant)
    table.change(lambda st, var: quality_figure({k: v["metrics"] for k, v in (st or {}).get("chains", {}).items()
                                                 if v.get("metrics")}, var if var != "study" else "native"),
                 [results_state, variant], [quality_plot], queue=False)

    def refresh_catalogue(fresh: list[ModelInfo] | None = None, commercial_only: bool = False) -> list[Any]:
        """Which models are available now (weights may have arrived since start-up): the model
        notes and the commercial switch follow at once, and the pickers' labels as updates for
        [model, denoiser, upscaler, interpolator] (without the models the switch hides when
        `commercial_only`). fresh: `studio.model_infos()` when the caller has it already."""
        fresh = studio.model_infos() if fresh is None else fresh
        infos.update({i.name: i for i in fresh if i.kind == "generator"})  # one dict for every session
        updates = []
        for kind, kind_infos in (("generator", generators), ("denoiser", denoisers), ("upscaler", upscalers),
                                 ("interpolator", interpolators)):
            kind_infos[:] = [i for i in fresh if i.kind == kind]  # in place: commercial_changed reads them
            updates.append(gr.update(choices=[(i.display, i.name)
                                              for i in commercial.visible(kind_infos, bool(commercial_only))]))
        return updates

    return CreateTab(
        studio=studio, infos=infos, model_size=model_size, click_book=click_book,
        # form
        photo=photo, photo_state=photo_state, preview=preview, prompt=prompt, model=model, model_note=model_note,
        commercial_box=commercial_box, commercial_note=commercial_note,
        param_boxes=param_boxes, seed=seed, camera_note=camera_note, cam_mode=cam_mode, preset=preset,
        preset_desc=preset_desc, amount=amount, distance=distance, easing=easing, kf_table=kf_table,
        waypoints_state=waypoints_state, depth=depth, cam_inputs=cam_inputs, camera_plot=camera_plot,
        camera_msg=camera_msg, chains=chains, custom_chain=custom_chain, denoiser=denoiser, upscaler=upscaler,
        interpolator=interpolator, status=status, job_state=job_state,
        # results
        players=players, variant=variant, psnr_plot=psnr_plot, ssim_plot=ssim_plot, table=table,
        results_state=results_state, downloads=downloads, job_outputs=job_outputs, reattached=reattached,
        # shared handlers
        model_changed=model_changed, commercial_changed=commercial_changed, update_camera=update_camera,
        follow_job=follow_job,
        render_results=render_results, render_players=render_players, result_downloads=result_downloads,
        refresh_catalogue=refresh_catalogue,
    )
