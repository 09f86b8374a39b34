"""The Gradio Blocks dashboard. Layout and wiring only: every action calls the `Studio` service.

All device work (caption, generate, post-process, model downloads that load) shares one queue
(`concurrency_id="gpu"`, limit 1), so jobs from several browser sessions run one at a time and
each session sees its place in the line.
"""

from __future__ import annotations

import random
import re
import sys
import time
import traceback
from pathlib import Path
from typing import Any

import anyio
import gradio as gr
import numpy as np
from gradio.data_classes import FileData
from PIL import Image, ImageDraw

from core import apiargs, limits
from core import camera as cam
from core import metrics as metriclib
from core.errors import StudioError
from core.eta import with_eta
from core.params import ParamSpec
from core.postprocess.chains import STANDARD_CHAINS
from core.service import CameraSpec, JobRequest, Studio

from .feedback import request_user as _user
from .feedback import (ClickBook, PhotoInput, camera_export_path, error_line, generator_caption, hide_internal_endpoints,
                       named_downloads, scroll_on_finish, status_error, status_note, status_ok)
from .figures import camera_figure, metric_figure, quality_figure
from . import longshot as ui_longshot  # Length / Output fps controls, segment marks, seam line
from . import commercial  # the "Commercial use only" switch
from .study_tab import build_export_panel, build_study_tab
from .uploads import uploaded_file
from .camera_notes import camera_note as path_note_for
from .players import SYNC_JS, Player, build_compare_panel, players_html
from .runs_models import MODEL_HEADERS, MODEL_TYPES, RUN_HEADERS, RUN_TYPES, model_rows, run_rows

ASSETS = Path(__file__).resolve().parents[1] / "assets"
GPU = "gpu"  # the one concurrency id of every event that uses the device
MODES = ("Preset", "Keyframes", "Waypoints", "File")
KF_HEADERS = ["time", "x", "y", "z", "yaw", "pitch", "roll"]
MAX_CAMERA_FILE_BYTES = 2 * 1024**2  # 1024 frames of RealEstate10K text take about 0.4 MB
CHAIN_HELP = {
    "none": "the generator's clip as it is",
    "denoise": "denoise only",
    "upscale": "upscale only",
    "denoise+upscale": "denoise, then upscale",
    "upscale+denoise": "upscale, then denoise",
    "interpolate": "more frames per second (frame interpolation)",
}
UI_CHAINS = STANDARD_CHAINS + ("interpolate",)


# ---------------------------------------------------------------------------------------- helpers

def cover_box(w: int, h: int, tw: int, th: int) -> tuple[float, float, float, float]:
    """The centred crop (x0, y0, x1, y1) of a w x h photo that covers a tw x th frame."""
    scale = max(tw / w, th / h)
    cw, ch = tw / scale, th / scale
    x0, y0 = (w - cw) / 2, (h - ch) / 2
    return x0, y0, x0 + cw, y0 + ch


def framing_preview(image: np.ndarray | None, width: int, height: int,
                    waypoints: list[tuple[float, float]]) -> np.ndarray | None:
    """The photo dimmed outside the model's crop, with the clicked waypoints drawn in order."""
    if image is None:
        return None
    h, w = image.shape[:2]
    scale = min(1.0, 960 / max(w, h))
    im = Image.fromarray(image)
    if scale < 1:
        im = im.resize((max(1, round(w * scale)), max(1, round(h * scale))), Image.BILINEAR)
    x0, y0, x1, y1 = (v * scale for v in cover_box(w, h, width, height))
    arr = np.asarray(im).astype(np.float32)
    mask = np.full(arr.shape[:2], 0.45, np.float32)
    mask[int(round(y0)):int(round(y1)), int(round(x0)):int(round(x1))] = 1.0
    im = Image.fromarray((arr * mask[..., None]).astype(np.uint8))
    d = ImageDraw.Draw(im)
    d.rectangle([x0, y0, x1 - 1, y1 - 1], outline=(255, 255, 255), width=2)
    pts = [(x0 + (x1 - x0) * u, y0 + (y1 - y0) * v) for u, v in waypoints]
    start = ((x0 + x1) / 2, (y0 + y1) / 2)
    if pts:
        d.line([start] + pts, fill=(255, 200, 0), width=3)
    for k, (px, py) in enumerate(pts, 1):
        d.ellipse([px - 9, py - 9, px + 9, py + 9], fill=(255, 200, 0), outline=(0, 0, 0))
        d.text((px - 3, py - 6), str(k), fill=(0, 0, 0))
    return np.asarray(im)


def spec_component(spec: ParamSpec, visible: bool = True):
    """A gradio control for one ParamSpec."""
    label = spec.label or spec.name
    if spec.kind == "bool":
        return gr.Checkbox(value=bool(spec.default), label=label, info=spec.help or None)
    if spec.kind == "choice":
        return gr.Dropdown(choices=list(spec.choices), value=spec.default, label=label, info=spec.help or None)
    if spec.kind == "str":
        return gr.Textbox(value=str(spec.default), label=label, info=spec.help or None, lines=2)
    if spec.minimum is not None and spec.maximum is not None and spec.maximum - spec.minimum <= 10000:
        step = spec.step or (1 if spec.kind == "int" else (spec.maximum - spec.minimum) / 100)
        return gr.Slider(spec.minimum, spec.maximum, value=spec.default, step=step, label=label,
                         info=spec.help or None)
    return gr.Number(value=spec.default, label=label, info=spec.help or None,
                     precision=0 if spec.kind == "int" else None)


def safe_stem(text: str, default: str = "path") -> str:
    """A file-name stem made of letters, digits, '-' and '_' only (user text never becomes a path)."""
    return re.sub(r"[^A-Za-z0-9_-]+", "-", str(text)).strip("-")[:60] or default


def _error(exc: BaseException) -> gr.Error:
    if isinstance(exc, StudioError):
        return gr.Error(str(exc), print_exception=False)
    traceback.print_exc(file=sys.stderr)
    return gr.Error(f"Unexpected error ({type(exc).__name__}: {exc}). Details are in the server log.")


def adherence_markdown(a: dict[str, Any]) -> str:
    """One line on how well the video follows the requested camera path."""
    if not a.get("available"):
        return f"Camera adherence: not measured ({a.get('reason', 'no estimate')})."
    return (f"**Camera adherence** ({a.get('estimator')}): RotErr {a['RotErr']:.3f} rad "
            f"({a['RotErr_deg']:.1f}°), TransErr {a['TransErr']:.3f}, CamMC {a['CamMC']:.3f} "
            "— sums over frames against the requested path; lower is closer, 0 is exact.")


def _keyframe_rows(path: cam.CameraPath, n: int = 5) -> list[list[float]]:
    rows = []
    for kf in cam.keyframes_from_path(path, n):
        rows.append([round(kf.time, 4), *(round(v, 4) for v in kf.position),
                     round(kf.yaw, 3), round(kf.pitch, 3), round(kf.roll, 3)])
    return rows


def _rows_to_list(rows: Any) -> list[list[float]]:
    """A keyframe table's non-empty rows as plain lists (pandas frame or list of lists)."""
    if rows is None:
        return []
    values = rows.values.tolist() if hasattr(rows, "values") else list(rows)
    return [list(r) for r in values if any(c not in (None, "") and not (isinstance(c, float) and np.isnan(c))
                                           for c in r)]


def _rows_to_keyframes(rows: Any) -> tuple[dict[str, Any], ...]:
    if rows is None:
        return ()
    values = rows.values.tolist() if hasattr(rows, "values") else list(rows)
    limits.check_rows(len(values), "The keyframe table", limits.MAX_KEYFRAMES)  # before any row is read
    out = []
    for k, row in enumerate(values, 1):
        cells = [c for c in row]
        if all(c in (None, "") or (isinstance(c, float) and np.isnan(c)) for c in cells):
            continue
        try:
            t, x, y, z, yaw, pitch, roll = (float(c) if c not in (None, "") else 0.0 for c in cells[:7])
        except (TypeError, ValueError):
            raise StudioError(f"Keyframe row {k}: every cell must be a number.") from None
        out.append({"time": t, "position": [x, y, z], "yaw": yaw, "pitch": pitch, "roll": roll})
    return tuple(out)


# ---------------------------------------------------------------------------------------- the UI

def build_ui(studio: Studio) -> tuple[gr.Blocks, dict[str, Any]]:
    """Lay out the dashboard over `studio`; returns the Blocks and the launch() keywords."""
    generators = studio.model_infos("generator")
    denoisers = studio.model_infos("denoiser")
    upscalers = studio.model_infos("upscaler")
    interpolators = studio.model_infos("interpolator")
    default_model = studio.default_generator()
    infos = {i.name: i for i in generators}
    cap = studio.captioner_status()
    examples = sorted(str(p) for p in (ASSETS / "examples").glob("*.jpg"))

    def model_size(name: str) -> tuple[int, int]:
        info = infos.get(name)
        return (info.width or 512, info.height or 320) if info else (512, 320)

    click_book = ClickBook()  # waypoints per session, so fast clicks never overwrite each other

    with gr.Blocks(title="CamI2V Studio") as demo:
        photo_state = gr.State(None)  # (H, W, 3) uint8 of the current photo
        waypoints_state = gr.State([])  # normalised clicks inside the crop
        kf_auto = gr.State([])  # the keyframe rows last filled in automatically (not the user's)
        job_state = gr.State("")
        results_state = gr.State({"run": None, "chains": {}})

        with gr.Row(elem_classes="header"):
            gr.Markdown("# CamI2V Studio\nOne interior photo → a camera-controlled walkthrough, "
                        "post-processed and compared side by side.")
            gr.Markdown(f"**Device:** {studio.device} · {studio.dtype_name}", elem_classes="device-badge")
        for msg in studio.startup_messages():
            gr.Markdown(status_note(msg), elem_classes="warning-banner")

        with gr.Tabs() as tabs:
            # ------------------------------------------------------------------ Create
            with gr.Tab("Create", id="create"):
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
                            from core.captioner import DEFAULT_PROMPT

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
                    psnr_plot = gr.Plot(metric_figure({}, "tpsnr"), label="Temporal PSNR", elem_id="psnr-plot")
                    ssim_plot = gr.Plot(metric_figure({}, "tssim"), label="Temporal SSIM", elem_id="ssim-plot")
                # metrics panel: motion-compensated + no-reference curves, and looking closely (ui/players.py)
                quality_plot = gr.Plot(quality_figure({}), label="Motion-compensated and no-reference measures",
                                       elem_id="quality-plot")
                table = gr.Markdown(elem_id="table")
                build_compare_panel(results_state, table)
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

            # ------------------------------------------------------------------ Runs
            with gr.Tab("Runs", id="runs") as runs_tab:
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

            # ------------------------------------------------------------------ Study
            with gr.Tab("Study", id="study"):
                build_study_tab(studio)

            # ------------------------------------------------------------------ Tour (ui/tour_tab.py)
            with gr.Tab("Tour", id="tour"):
                from .tour_tab import build_tour_tab

                build_tour_tab(studio)

            # ------------------------------------------------------------------ Models
            with gr.Tab("Models", id="models"):
                models_table = gr.Dataframe(headers=MODEL_HEADERS, datatype=MODEL_TYPES, interactive=False, wrap=True,
                                            max_height=1200,
                                            elem_id="models-table")
                with gr.Row():
                    dl_pick = gr.Dropdown(label="Fetch weights of", choices=[
                        (e.label, e.name) for e in studio.registry if e.files], scale=4)
                    dl_btn = gr.Button("Download", scale=1)
                dl_log = gr.Markdown()
                gr.Markdown("### Loaded models")
                status_table = gr.Dataframe(headers=["name", "state", "device", "dtype", "MiB", "last used"],
                                            interactive=False)
                mem_md = gr.Markdown()
                status_refresh = gr.Button("Refresh", size="sm")

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

        def camera_spec(mode, pid, amt, dist, ease, kf_rows, wps, dep, fpath, wp_amt=1.0) -> CameraSpec:
            if mode == "Keyframes":
                return CameraSpec(mode="keyframes", keyframes=_rows_to_keyframes(kf_rows))
            if mode == "Waypoints":
                if not wps:
                    raise StudioError("Click the framing preview to add at least one waypoint.")
                return CameraSpec(mode="waypoints", waypoints=tuple(tuple(p) for p in wps), depth=float(dep),
                                  amount=None if wp_amt is None or float(wp_amt) >= 1.0 else float(wp_amt))
            if mode == "File":
                if not fpath:
                    raise StudioError("Upload a RealEstate10K camera file (.txt) first.")
                f = uploaded_file(fpath, "The camera file")
                try:
                    if f.stat().st_size > MAX_CAMERA_FILE_BYTES:
                        raise StudioError(f"The camera file is {f.stat().st_size / 1024**2:.1f} MB; a RealEstate10K "
                                          f"path of up to 1024 frames is well under {MAX_CAMERA_FILE_BYTES // 1024**2} MB.")
                    text = f.read_text(encoding="utf-8", errors="replace")
                except OSError as exc:
                    raise StudioError(f"Cannot read the camera file: {exc.strerror}.") from None
                return CameraSpec(mode="file", text=text, distance=float(dist))
            return CameraSpec(mode="preset", preset=pid, amount=float(amt), distance=float(dist), easing=ease)

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
            info = infos.get(name)
            if info is None or info.variant != "kenburns":
                return None
            from core.generators.kenburns import camera_problem

            w, h = model_size(name)
            return camera_problem(path, w, h)

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
            w, h = model_size(name)
            n = infos[name].num_frames if name in infos and infos[name].num_frames else 16
            path = cam.preset_path(pid, num_frames=n, amount=amt, distance=dist, aspect=w / h, easing=ease)
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

        def resume_partial(run_id, var, request: gr.Request = None, progress=gr.Progress()):
            """Runs tab → Resume partial run: submit the resume as a server job and follow it."""
            if not run_id:
                raise gr.Error("Pick a partial run first.")
            try:
                job = studio.submit_resume(run_id, user=_user(request))
            except BaseException as exc:
                raise _error(exc)
            yield {job_state: job, status: f"Resuming run `{run_id}`…", tabs: gr.Tabs(selected="create")}
            yield from follow_job(job, var, progress, user=_user(request))

        def newest_job(user):
            jobs = studio.active_jobs(user=user)
            running = [j for j in jobs if j.status == "running"]
            return (running or jobs or [None])[0]

        def reattach(var, request: gr.Request, progress=gr.Progress()):
            """On page load: follow the newest running job (the user's own when logging in is on)."""
            job = newest_job(_user(request))
            if job is None:
                yield {job_state: ""}
                return
            yield {job_state: job.id, status: f"Re-attached to job `{job.id}` ({job.status})…"}
            yield from follow_job(job.id, var, progress, user=_user(request))

        def follow_opened_run(run_id, var, request: gr.Request, progress=gr.Progress()):
            """Runs tab → Show: a run still being written is followed live (its job on this server)."""
            job = studio.jobs.find_run(run_id) if run_id else None
            if job is None or not studio.job_info(job).active:
                yield {}
                return
            info = studio.job_info(job)
            if info.user is not None and _user(request) not in (None, info.user):
                yield {}
                return
            yield from follow_job(job, var, progress, user=_user(request))

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
                return {status: status_error("Pick a run first.")}
            try:
                run = studio.open_run(run_id, user=_user(request))
            except StudioError as exc:
                return {status: status_error(exc)}
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
            psnr_fig, ssim_fig, md = render_results(state, var)
            out = {players: render_players(state), psnr_plot: psnr_fig, ssim_plot: ssim_fig, table: md,
                   results_state: state, downloads: result_downloads(state) or files,
                   status: f"Showing run `{run_id}` ({run.effective_status}).", tabs: gr.Tabs(selected="create")}
            out.update(restore_form(run))
            if waypoints_state in out:
                click_book.set(request, out[waypoints_state])
            return out

        def restore_form(run) -> dict[Any, Any]:
            """Form updates that put a run's inputs back (what run.json recorded)."""
            p = run.data.get("params") or {}
            out: dict[Any, Any] = {}
            src = run.dir / ((run.data.get("input") or {}).get("file") or "")
            if src.is_file():
                try:
                    image = studio.load_image(src)
                    out.update({photo: str(src), photo_state: image})
                except StudioError:
                    pass
            if p.get("model") in infos:
                out[model] = p["model"]
            c = p.get("camera") or {}
            mode = c.get("mode")
            if mode == "preset" and c.get("preset") in cam.PRESETS:
                spec = cam.PRESETS[c["preset"]]
                out.update({cam_mode: "Preset", preset: c["preset"], preset_desc: spec.description,
                            amount: spec.default_amount if c.get("amount") is None else c["amount"],
                            distance: spec.default_distance if c.get("distance") is None else c["distance"],
                            easing: c.get("easing") or "linear"})
            elif mode == "keyframes":
                rows = [[k.get("time", 0.0), *(list(k.get("position") or [0, 0, 0]) + [0, 0, 0])[:3],
                         k.get("yaw", 0.0), k.get("pitch", 0.0), k.get("roll", 0.0)] for k in c.get("keyframes", [])]
                out.update({cam_mode: "Keyframes", kf_table: rows})
            elif mode == "waypoints":
                wps = [tuple(w) for w in c.get("waypoints", [])]
                out.update({cam_mode: "Waypoints", waypoints_state: wps, depth: c.get("depth") or 1.0})
                if photo_state in out:
                    w, h = model_size(p.get("model", ""))
                    out[preview] = framing_preview(out[photo_state], w, h, wps)
            picked = [str(x) for x in p.get("chains") or []]
            if picked:
                out[chains] = [x for x in picked if x in STANDARD_CHAINS]
                out[custom_chain] = ", ".join(x for x in picked if x not in STANDARD_CHAINS)
            if isinstance(p.get("prompt"), str):
                out[prompt] = p["prompt"]
            seed_value = (run.data.get("seeds") or {}).get("generator")
            if isinstance(seed_value, int):
                out[seed] = seed_value
            return out

        def loaded_models():
            st = [[r["name"], r["state"], str(r.get("device") or ""), str(r.get("dtype") or ""),
                   round((r.get("bytes") or 0) / 2**20, 1),
                   time.strftime("%H:%M:%S", time.localtime(r["last_used"])) if r.get("last_used") else ""]
                  for r in studio.model_status()]
            mem = studio.memory_summary()
            parts = []
            for k, v in mem.items():
                if isinstance(v, (dict, list)):
                    continue
                if k.endswith("_bytes") and isinstance(v, (int, float)):
                    k, v = k[:-6], f"{v / 2**30:.2f} GiB"
                parts.append(f"**{k.replace('_', ' ')}**: {v}")
            return st, " · ".join(parts)

        def refresh_models():
            return (model_rows(studio.model_infos()), *loaded_models())

        def download(name, progress=gr.Progress()):
            if not name:
                raise gr.Error("Pick a model to download.")
            from core import weights

            try:
                reports = weights.fetch(studio.registry, name, progress=lambda f, m: progress(f, desc=m))
            except StudioError as exc:
                return status_error(exc)
            return status_ok("; ".join(str(getattr(r, "message", r)) for r in reports))

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
            for infos, cur, fb in ((generators, gen, "kenburns"), (denoisers, den, "nlmeans"),
                                   (upscalers, up, "lanczos"), (interpolators, interp, "dis-interp")):
                opts, value = commercial.choices(infos, bool(on), cur, fb)
                out.append(gr.update(choices=opts, value=value))
            return out + [commercial.hidden_note(generators + denoisers + upscalers + interpolators, bool(on))]

        commercial_box.change(commercial_changed, [commercial_box, model, denoiser, upscaler, interpolator],
                              [model, denoiser, upscaler, interpolator, commercial_note], queue=False)

        gen_inputs = {commercial_box, model, photo, photo_state, prompt, adherence_box, seed, chains, custom_chain, denoiser,
                      upscaler, interpolator, variant, *cam_inputs, length_s, out_fps,
                      *(c for _, _, c in param_controls),
                      *(c for _, _, c in stage_controls)}
        # The job runs on the server's job worker (one at a time on the device); these events only
        # follow it, so any number may run at once and none holds the device queue.
        job_outputs = [players, psnr_plot, ssim_plot, table, results_state, downloads, status, job_state]
        # One follower per page at a time: Generate and Show stop following an earlier job (the
        # job itself goes on).
        reattached = demo.load(reattach, [variant], job_outputs, concurrency_limit=None, show_progress_on=[status],
                               api_visibility="private")
        generate_btn.click(run_generate, gen_inputs, job_outputs, concurrency_limit=None, api_name="generate",
                           show_progress_on=[status], cancels=[reattached])
        cancel_btn.click(cancel_job, [job_state], [status], queue=False)
        variant.change(render_results, [results_state, variant], [psnr_plot, ssim_plot, table], queue=False)
        # metrics panel: the quality curves follow the table (it changes with every chain, run and variant)
        table.change(lambda st, var: quality_figure({k: v["metrics"] for k, v in (st or {}).get("chains", {}).items()
                                                     if v.get("metrics")}, var if var != "study" else "native"),
                     [results_state, variant], [quality_plot], queue=False)

        runs_refresh.click(refresh_runs, None, [runs_table, study_runs_table, run_pick])
        runs_tab.select(refresh_runs, None, [runs_table, study_runs_table, run_pick])
        runs_tab.select(jobs_markdown, None, [jobs_md], queue=False)
        # a partial long shot (cancelled after some segments) continues from its last finished
        # segment as a server job, followed here like a Generate
        run_resume.click(resume_partial, [run_pick, variant], job_outputs, concurrency_limit=None,
                         show_progress_on=[status], api_visibility="private", cancels=[reattached]) \
            .then(refresh_runs, None, [runs_table, study_runs_table, run_pick])
        run_open.click(open_run, [run_pick, variant],
                       [players, psnr_plot, ssim_plot, table, results_state, downloads, status, tabs, photo,
                        photo_state, preview, model, cam_mode, preset, preset_desc, amount, distance, easing,
                        kf_table, waypoints_state, depth, chains, custom_chain, prompt, seed])
        run_open.click(follow_opened_run, [run_pick, variant], job_outputs, concurrency_limit=None,
                       show_progress_on=[status], api_visibility="private", cancels=[reattached])
        runs_refresh.click(jobs_markdown, None, [jobs_md], queue=False)
        status_refresh.click(refresh_models, None, [models_table, status_table, mem_md])
        # the loaded-models panel follows the manager on its own (cheap: no model is touched)
        gr.Timer(10).tick(loaded_models, None, [status_table, mem_md], queue=False, show_progress="hidden")
        dl_btn.click(download, [dl_pick], [dl_log], concurrency_id="download", concurrency_limit=1)
        async def walkthrough(photo: FileData, model: str = "kenburns", preset: str = "push-in",
                              chains: list[str] = ["none"], seed: int = 0, prompt: str = "",
                              params: dict = {}, amount: float = -1.0, distance: float = -1.0,
                              request: gr.Request = None) -> dict:
            """Programmatic walkthrough (gradio_client): photo -> run folder; returns the run id,
            each chain's mp4 path on the server and its mean temporal PSNR/SSIM. The call owns its
            server job: cancelling the call (or disconnecting) cancels the job."""
            user = _user(request)
            try:
                path = uploaded_file(photo, "photo")
                image = studio.load_image(path)
                amt, dist = apiargs.number_arg(amount, "amount"), apiargs.number_arg(distance, "distance")
                job_request = JobRequest(
                    image=image, image_bytes=Path(path).read_bytes(), model=apiargs.text_arg(model, "model", 100),
                    camera=CameraSpec(preset=apiargs.text_arg(preset, "preset", 100), amount=None if amt < 0 else amt,
                                      distance=None if dist < 0 else dist),
                    prompt=apiargs.text_arg(prompt, "prompt"), seed=seed, params=apiargs.params_arg(params),
                    chains=apiargs.chains_arg(chains))
                job = studio.submit_job(job_request, user=user)
            except BaseException as exc:
                raise _error(exc)
            try:
                info = await anyio.to_thread.run_sync(studio.wait_job, job, abandon_on_cancel=True)
            except BaseException:  # the caller cancelled or went away: the job is this call's
                studio.cancel(job)
                raise
            out: dict[str, Any] = {"run_id": info.run_id, "seed": seed, "chains": {}}
            for ev in studio.jobs.events(job):
                if ev.kind in ("generated", "chain"):
                    native = ev.metrics["native"]
                    out["chains"][ev.chain] = {"video": str(ev.video), "size": ev.metrics["size"],
                                               "tpsnr": native["tpsnr"]["mean"], "tssim": native["tssim"]["mean"]}
            if info.status != "complete":
                raise _error(StudioError(info.error or f"The job ended {info.status}."))
            return out

        gr.api(walkthrough, api_name="walkthrough", concurrency_limit=None)

        demo.load(jobs_markdown, None, [jobs_md], queue=False)
        demo.load(refresh_runs, None, [runs_table, study_runs_table, run_pick]) \
            .then(refresh_models, None, [models_table, status_table, mem_md]) \
            .then(model_changed, [model, photo_state, waypoints_state],
                  [model_note, camera_note, preview] + list(param_boxes.values())) \
            .then(update_camera, [model] + cam_inputs, [camera_plot, camera_msg])

    # [dash] the API page lists the public endpoints only; results scroll into view after Generate
    hide_internal_endpoints(demo)
    scroll_on_finish(demo, "generate")

    launch_kwargs = dict(
        theme=gr.themes.Soft(primary_hue="blue"),
        css_paths=[ASSETS / "style.css"],
        allowed_paths=[str(studio.settings.outputs)],
        max_file_size=studio.settings.max_image_bytes,
    )
    return demo, launch_kwargs
