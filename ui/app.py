"""The Gradio Blocks dashboard: the header, one tab per module, the page-load refreshes and the
API. Every action calls the `Studio` service.

    Create  ui/create_tab.py   photo, camera, chains, Generate; results, metrics, export
    Runs    ui/runs_tab.py     past runs and running jobs; Show in Create, Resume
    Study   ui/study_tab.py    every photo x move, chains compared (UvA study)
    Tour    ui/tour_tab.py     multi-shot tours
    Models  ui/models_tab.py   availability, weights download, loaded models
    API     ui/api.py          /walkthrough for gradio_client

All device work (caption, generate, post-process, model downloads that load) shares one queue
(`concurrency_id="gpu"`, limit 1), so jobs from several browser sessions run one at a time and
each session sees its place in the line.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import gradio as gr

from core.service import Studio

from .api import add_walkthrough_api
from .create_tab import build_create_tab
from .feedback import hide_internal_endpoints, scroll_on_finish, status_note
# re-exported: these form helpers lived here before the tabs had their own modules
from .forms import _rows_to_keyframes, safe_stem  # noqa: F401
from .models_tab import build_models_tab
from .runs_tab import build_runs_tab
from .study_tab import build_study_tab
from .tour_tab import build_tour_tab

ASSETS = Path(__file__).resolve().parents[1] / "assets"


def build_ui(studio: Studio, max_queue: int = 32) -> tuple[gr.Blocks, dict[str, Any]]:
    """Lay out the dashboard over `studio`; returns the Blocks and the launch() keywords.
    max_queue: most events waiting in the queue (the device queue's line included)."""
    with gr.Blocks(title="CamI2V Studio") as demo:
        # Set before any component exists: queue() rebuilds the app from the whole config, which
        # costs a start-up about 0.1 s once the ~400 blocks are there. Event limits are read
        # when events arrive, so the default of 1 applies to every handler below.
        demo.queue(max_size=max_queue, default_concurrency_limit=1)
        with gr.Row(elem_classes="header"):
            gr.Markdown("# CamI2V Studio\nOne interior photo → a camera-controlled walkthrough, "
                        "post-processed and compared side by side.")
            gr.Markdown(f"**Device:** {studio.device} · {studio.dtype_name}", elem_classes="device-badge")
        for msg in studio.startup_messages():
            gr.Markdown(status_note(msg), elem_classes="warning-banner")

        with gr.Tabs() as tabs:
            with gr.Tab("Create", id="create"):
                create = build_create_tab(studio, demo)
            with gr.Tab("Runs", id="runs") as runs_tab:
                runs = build_runs_tab(studio, create, tabs, runs_tab)
            with gr.Tab("Study", id="study"):
                study = build_study_tab(studio)
            with gr.Tab("Tour", id="tour"):
                tour = build_tour_tab(studio)
            with gr.Tab("Models", id="models"):
                models = build_models_tab(studio, create, pickers=[
                    (study["model"], "generator"), (study["denoiser"], "denoiser"), (study["upscaler"], "upscaler"),
                    (tour["model"], "generator")])

        # the loaded-models panel follows the manager on its own (cheap: no model is touched)
        gr.Timer(10).tick(models["loaded_models"], None, [models["status"], models["memory"]], queue=False,
                          show_progress="hidden")
        add_walkthrough_api(studio)

        # every page load: the runs, the models, then the chosen model's note and camera path
        demo.load(runs["jobs_markdown"], None, [runs["jobs"]], queue=False)
        demo.load(runs["refresh_runs"], None, [runs["runs_table"], runs["study_runs_table"], runs["pick"]]) \
            .then(models["refresh_models"], None, models["refreshed"]) \
            .then(create.model_changed, [create.model, create.photo_state, create.waypoints_state],
                  [create.model_note, create.camera_note, create.preview] + list(create.param_boxes.values())) \
            .then(create.update_camera, [create.model] + create.cam_inputs, [create.camera_plot, create.camera_msg])

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
